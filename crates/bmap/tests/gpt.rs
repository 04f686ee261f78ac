//! `bmap::gpt` against the real tools: GPT images made by `sgdisk` and `sfdisk`
//! (512-byte sectors on files, 4096-byte sectors on loop devices), grown, their backup
//! moved by our writes, then checked with `sgdisk -v`/`-p` and compared byte for byte
//! with what `sgdisk -e` (or `sfdisk --relocate gpt-bak-std`) makes of the same file;
//! `undo_relocation` giving back the image's first sectors; and hostile images (bad
//! CRCs, absurd fields, truncation, MBR-only, hybrid, random corruption) that must end
//! in a `NotMoved` reason or a clean error, never a panic.

use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bmap::gpt::{self, MbrChange, NotMoved, Relocation};
use tempfile::TempDir;
use test_support::{MIB, eventually, need_loop_devices, need_tool, runs, succeeds};

const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
/// The ending CHS address of the first MBR record: `sgdisk -e` recomputes it, we keep it.
const PMBR_END_CHS: Range<usize> = 451..454;

#[path = "gpt/hostile.rs"]
mod hostile;

// ---------------------------------------------------------------------------------
// Tools and files

/// Runs `program args... path` (must succeed) and returns its stdout.
fn run(program: &str, args: &[&str], path: &Path) -> String {
    let out = succeeds(Command::new(program).args(args).arg(path));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file of `size` bytes (sparse).
fn sized(path: &Path, size: u64) {
    File::create(path)
        .and_then(|f| f.set_len(size))
        .expect("make a sparse file");
}

/// An 8 MiB image with a GPT of three partitions, made by `sgdisk`.
fn sgdisk_image(dir: &Path) -> PathBuf {
    sgdisk_image_with(dir, &[])
}

/// [`sgdisk_image`] with `options` before the partitions.
fn sgdisk_image_with(dir: &Path, options: &[&str]) -> PathBuf {
    let image = dir.join("sgdisk.img");
    sized(&image, 8 * MIB);
    let partitions = [
        "-n1:2048:+2M",
        "-n2:0:+2M",
        "-n3:0:0",
        "-t1:ef00",
        "-c1:esp",
    ];
    run("sgdisk", &[options, &partitions].concat(), &image);
    image
}

/// An 8 MiB image with a GPT of three partitions, made by `sfdisk` (FirstUsableLBA 2048).
fn sfdisk_image(dir: &Path) -> PathBuf {
    let image = dir.join("sfdisk.img");
    sized(&image, 8 * MIB);
    let script = "label: gpt\n,2M,U\n,2M,L\n,,L\n";
    test_support::pipe_through(
        Command::new("sfdisk").arg("-q").arg(&image),
        script.as_bytes(),
    );
    image
}

/// A copy of `image` grown to `size` bytes, at `dir/name`.
fn grown(image: &Path, dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    fs::copy(image, &path).expect("copy the image");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(size))
        .expect("grow the copy");
    path
}

/// Plans the move for `image` on a device of `device_size` bytes; it must be planned.
fn plan(image: &Path, device_size: u64, sector: u64) -> Relocation {
    let file = File::open(image).expect("open the image");
    let size = file.metadata().expect("stat the image").len();
    gpt::plan_relocation(&file, size, device_size, sector)
        .expect("the image reads")
        .unwrap_or_else(|reason| panic!("not moved: {reason}"))
}

/// Writes the relocation's sectors into `path`, in order.
fn apply(path: &Path, relocation: &Relocation) {
    let file = OpenOptions::new().write(true).open(path).expect("open");
    for write in &relocation.writes {
        file.write_all_at(&write.bytes, write.offset)
            .expect("write");
    }
}

fn bytes_at(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0; len as usize];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut buf, offset))
        .expect("read");
    buf
}

/// The first and the last MiB of a file.
fn ends(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let size = fs::metadata(path).expect("stat").len();
    (bytes_at(path, 0, MIB), bytes_at(path, size - MIB, MIB))
}

/// The offsets where `a` and `b` differ.
fn differences(a: &[u8], b: &[u8]) -> Vec<usize> {
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

/// `sgdisk -v` finds no problem.
fn assert_verifies(path: &Path) {
    let out = run("sgdisk", &["-v"], path);
    assert!(
        out.contains("No problems found"),
        "sgdisk -v {}:\n{out}",
        path.display()
    );
}

/// `sfdisk --verify` (libfdisk, a second implementation) finds no error and warns of
/// nothing; `false` when it complains.
fn sfdisk_verifies(path: &Path) -> bool {
    let out = succeeds(Command::new("sfdisk").arg("--verify").arg(path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.contains("No errors detected") && out.stderr.is_empty()
}

/// The partition lines of `sgdisk -p`.
fn partitions(path: &Path) -> Vec<String> {
    let out = run("sgdisk", &["-p"], path);
    let table = out.split_once("\nNumber").expect("a partition table").1;
    table.lines().skip(1).map(str::to_owned).collect()
}

/// Our result equals the oracle's in the first and the last MiB, except in the ending
/// CHS of the protective record, where ours keeps the image's.
fn assert_matches_oracle(ours: &Path, oracle: &Path, image: &Path) {
    let (ours_head, ours_tail) = ends(ours);
    let (oracle_head, oracle_tail) = ends(oracle);
    assert_eq!(
        differences(&ours_tail, &oracle_tail),
        Vec::<usize>::new(),
        "last MiB"
    );
    let diff = differences(&ours_head, &oracle_head);
    assert!(
        diff.iter().all(|i| PMBR_END_CHS.contains(i)),
        "first MiB differs at {diff:?}"
    );
    let image_chs = bytes_at(image, PMBR_END_CHS.start as u64, 3);
    assert_eq!(
        ours_head[PMBR_END_CHS],
        image_chs[..],
        "our PMBR ending CHS"
    );
}

/// `undo_relocation` on the moved copy gives back the image's sectors 0 and 1.
fn assert_undoes(moved: &Path, image: &Path, sector: u64) {
    let size = fs::metadata(image).expect("stat").len();
    let file = File::open(moved).expect("open");
    let device_size = fs::metadata(moved).expect("stat").len();
    let writes = gpt::undo_relocation(&file, size, device_size)
        .expect("reads")
        .expect("a moved copy of the image's GPT");
    let offsets: Vec<u64> = writes.iter().map(|w| w.offset).collect();
    assert_eq!(offsets, [0, sector]);
    for write in writes {
        let original = bytes_at(image, write.offset, sector);
        assert!(
            write.bytes == original,
            "sector at {} not restored",
            write.offset
        );
    }
    let unmoved = File::open(image).expect("open");
    assert_eq!(
        gpt::undo_relocation(&unmoved, size, size).expect("reads"),
        None
    );
}

// ---------------------------------------------------------------------------------
// Against the tools

#[test]
fn sgdisk_images_move_as_sgdisk_e_does() {
    if !need_tool("sgdisk") || !need_tool("sfdisk") {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let image = sgdisk_image(dir.path());
    // Within CHS range, beyond it, and beyond what a protective record can count.
    for device_size in [16 * MIB, 9 * GIB, 3 * TIB] {
        let relocation = check_against_sgdisk(&image, dir.path(), device_size);
        let last = device_size / 512 - 1;
        assert_eq!(relocation.sector, 512);
        assert_eq!(relocation.old_backup_lba, 8 * MIB / 512 - 1);
        assert_eq!(relocation.new_backup_lba, last);
        assert_eq!(relocation.last_usable_lba, last - 33);
        let to = u32::try_from(last).unwrap_or(u32::MAX);
        let resized = MbrChange::Resized { from: 16383, to };
        assert_eq!(relocation.mbr, resized, "device of {device_size} bytes");
        let offsets: Vec<u64> = relocation.writes.iter().map(|w| w.offset).collect();
        assert_eq!(offsets, [(last - 32) * 512, last * 512, 512, 0]);
    }
}

#[test]
fn larger_entry_arrays_move_as_sgdisk_e_does() {
    if !need_tool("sgdisk") || !need_tool("sfdisk") {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    // 256 entries: an array of 64 sectors.
    let image = sgdisk_image_with(dir.path(), &["--resize-table=256"]);
    let relocation = check_against_sgdisk(&image, dir.path(), 16 * MIB);
    assert_eq!(relocation.last_usable_lba, 16 * MIB / 512 - 1 - 64 - 1);
}

/// Moves the backup of `image` on a device of `device_size` bytes (512-byte sectors),
/// checks the result with both tools, against `sgdisk -e`, and its undoing.
fn check_against_sgdisk(image: &Path, dir: &Path, device_size: u64) -> Relocation {
    let ours = grown(image, dir, "ours.img", device_size);
    let oracle = grown(image, dir, "oracle.img", device_size);
    let relocation = plan(image, device_size, 512);
    apply(&ours, &relocation);
    run("sgdisk", &["-e"], &oracle);

    assert_verifies(&ours);
    assert!(sfdisk_verifies(&ours), "sfdisk --verify {}", ours.display());
    let unmoved = grown(image, dir, "unmoved.img", device_size);
    let complaint = "sfdisk --verify accepts an unmoved backup";
    assert!(!sfdisk_verifies(&unmoved), "{complaint}");
    assert_eq!(partitions(&ours), partitions(image));
    assert_matches_oracle(&ours, &oracle, image);
    assert_undoes(&ours, image, 512);
    relocation
}

#[test]
fn sfdisk_images_move_as_sfdisk_relocate_does() {
    if !need_tool("sgdisk") || !need_tool("sfdisk") {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let image = sfdisk_image(dir.path());
    let ours = grown(&image, dir.path(), "ours.img", 16 * MIB);
    let oracle = grown(&image, dir.path(), "oracle.img", 16 * MIB);
    apply(&ours, &plan(&image, 16 * MIB, 512));
    run("sfdisk", &["-q", "--relocate", "gpt-bak-std"], &oracle);

    assert_verifies(&ours);
    assert!(sfdisk_verifies(&ours), "sfdisk --verify {}", ours.display());
    assert_eq!(partitions(&ours), partitions(&image));
    assert_eq!(
        ends(&ours),
        ends(&oracle),
        "byte for byte what sfdisk makes"
    );
    assert_undoes(&ours, &image, 512);

    // The documented difference: sgdisk -e mirrors FirstUsableLBA (2048) at the end.
    let sgdisk = grown(&image, dir.path(), "sgdisk.img", 16 * MIB);
    run("sgdisk", &["-e"], &sgdisk);
    let last_usable = |path: &Path| {
        u64::from_le_bytes(
            bytes_at(path, 512 + 48, 8)
                .try_into()
                .expect("an 8-byte slice"),
        )
    };
    assert_eq!(last_usable(&sgdisk), 32768 - 2048);
    assert_eq!(last_usable(&ours), 32768 - 34);
}

#[test]
fn boot_flag_and_disk_signature_survive_where_sgdisk_clears_them() {
    if !need_tool("sgdisk") {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let image = sgdisk_image(dir.path());
    let file = OpenOptions::new().write(true).open(&image).expect("open");
    // parted's pmbr_boot flag, and a disk signature.
    file.write_all_at(&[0x80], 446).expect("write");
    file.write_all_at(&[0xDE, 0xAD, 0xBE, 0xEF], 440)
        .expect("write");
    let ours = grown(&image, dir.path(), "ours.img", 16 * MIB);
    let oracle = grown(&image, dir.path(), "oracle.img", 16 * MIB);
    apply(&ours, &plan(&image, 16 * MIB, 512));
    run("sgdisk", &["-e"], &oracle);

    assert_eq!(
        bytes_at(&ours, 440, 7),
        [0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0x80]
    );
    assert_eq!(bytes_at(&oracle, 440, 7), [0; 7], "sgdisk -e clears them");
    assert_verifies(&ours);
    assert_undoes(&ours, &image, 512);
}

#[test]
fn hybrid_mbr_is_left_alone() {
    if !need_tool("sgdisk") {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let image = sgdisk_image(dir.path());
    run("sgdisk", &["-h", "1"], &image);
    let sector0 = bytes_at(&image, 0, 512);
    let ours = grown(&image, dir.path(), "ours.img", 16 * MIB);
    let oracle = grown(&image, dir.path(), "oracle.img", 16 * MIB);
    let relocation = plan(&image, 16 * MIB, 512);
    assert_eq!(relocation.mbr, MbrChange::KeptHybrid);
    let sector0_written = relocation.writes.iter().any(|w| w.offset == 0);
    assert!(!sector0_written, "sector 0 written");
    apply(&ours, &relocation);
    // Its 0xEE record ends where partition 1 starts: sgdisk -e leaves it too.
    run("sgdisk", &["-e"], &oracle);
    assert_eq!(
        ends(&ours),
        ends(&oracle),
        "byte for byte what sgdisk -e makes"
    );

    assert_eq!(bytes_at(&ours, 0, 512), sector0);
    assert_verifies(&ours);
    assert_eq!(partitions(&ours), partitions(&image));
    assert_undoes(&ours, &image, 512);
}

/// A loop device over a file with 4096-byte logical sectors; detached on drop.
struct Loop4k(String);

impl Loop4k {
    fn new(backing: &Path) -> Loop4k {
        let out = run("losetup", &["-b", "4096", "-f", "--show"], backing);
        let path = out.trim().to_owned();
        assert!(path.starts_with("/dev/loop"), "losetup printed {path:?}");
        Loop4k(path)
    }

    fn path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl Drop for Loop4k {
    fn drop(&mut self) {
        // A just-closed device can be briefly busy (udev probing it): retry.
        if !eventually(Duration::from_secs(30), || {
            runs("losetup", &["-d", &self.0])
        }) {
            eprintln!("warning: cannot detach {}", self.0);
        }
    }
}

#[test]
fn four_k_sector_images_move_as_sgdisk_e_does() {
    if !need_loop_devices() || !need_tool("sgdisk") {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let image = dir.path().join("4k.img");
    sized(&image, 8 * MIB);
    {
        let device = Loop4k::new(&image);
        run(
            "sgdisk",
            &["-n1:0:+2M", "-n2:0:+2M", "-n3:0:0"],
            device.path(),
        );
    }
    let ours = grown(&image, dir.path(), "ours.img", 16 * MIB);
    let oracle = grown(&image, dir.path(), "oracle.img", 16 * MIB);
    let file = File::open(&image).expect("open");
    let mismatch = gpt::plan_relocation(&file, 8 * MIB, 16 * MIB, 512).expect("reads");
    let expected = NotMoved::SectorSize {
        image: 4096,
        device: 512,
    };
    assert_eq!(mismatch, Err(expected));
    let relocation = plan(&image, 16 * MIB, 4096);
    assert_eq!(relocation.sector, 4096);
    assert_eq!(relocation.new_backup_lba, 4095);
    assert_eq!(relocation.last_usable_lba, 4095 - 4 - 1);
    apply(&ours, &relocation);
    run("sgdisk", &["-e"], Loop4k::new(&oracle).path());

    {
        let device = Loop4k::new(&ours);
        assert_verifies(device.path());
        let image_device = Loop4k::new(&image);
        assert_eq!(partitions(device.path()), partitions(image_device.path()));
    }
    assert_matches_oracle(&ours, &oracle, &image);
    assert_undoes(&ours, &image, 4096);
}
