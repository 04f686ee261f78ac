//! Black-box tests of what `bmaptool copy` does for a block device besides writing:
//! the fail-safe order (a copy killed halfway leaves no partition table; the plain
//! order, `--no-fail-safe`, leaves one), `--zero-holes` and `--discard` on the
//! unmapped ranges of a reused device, and `--skip-unchanged` (a second copy of the
//! same image writes nothing; a changed image writes only its changed chunk), with the
//! bytes written counted by the kernel (`/sys/block/loopN/stat`), and the move of a GPT
//! image's backup to the end of a larger device (`--no-gpt-move` keeps it).
//!
//! All of them need root, loop devices and `sgdisk`/`sfdisk`/`blkid`: they skip when
//! those are missing, unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use copy_support::*;
use tempfile::TempDir;

/// The test image's size: two 20 MiB partitions with data, holes around and in them.
const SIZE: u64 = 64 * MIB;

/// Where the image holds data (partition 1 from 1 MiB, partition 2 from 21 MiB), each
/// piece `(offset, len)`; the rest of the partitions are holes.
const DATA: [(u64, u64); 3] = [(MIB, 15 * MIB), (21 * MIB, 6 * MIB), (30 * MIB, 10 * MIB)];

fn need_tools() -> bool {
    need_loop_devices()
        && ["sgdisk", "sfdisk", "blkid"]
            .iter()
            .all(|tool| test_support::need_tool(tool))
}

/// A GPT image with data in its partitions, and its bmap made by our `create`.
struct GptImage {
    _dir: TempDir,
    image: PathBuf,
    bmap: PathBuf,
    bytes: Vec<u8>,
}

impl GptImage {
    fn new(seed: u64) -> GptImage {
        let dir = tempdir();
        let image = dir.path().join("gpt.img");
        File::create(&image)
            .and_then(|f| f.set_len(SIZE))
            .expect("make the image");
        succeeds(
            Command::new("sgdisk")
                .args(["-n1:2048:+20M", "-n2:0:+20M"])
                .arg(&image),
        );
        let file = OpenOptions::new().write(true).open(&image).expect("open");
        for (n, &(offset, len)) in DATA.iter().enumerate() {
            let data = random_bytes(seed + n as u64, len as usize);
            file.write_all_at(&data, offset).expect("write the data");
        }
        drop(file);
        let bmap = dir.path().join("gpt.img.bmap");
        assert_ok(&run([
            "create".as_ref(),
            "-o".as_ref(),
            bmap.as_os_str(),
            image.as_os_str(),
        ]));
        let bytes = read(&image);
        GptImage {
            _dir: dir,
            image,
            bmap,
            bytes,
        }
    }

    /// `copy --bmap BMAP [extra...] IMAGE DEV`.
    fn copy(&self, dev: &LoopDevice, extra: &[&str]) -> Output {
        let mut args: Vec<&std::ffi::OsStr> = vec!["copy".as_ref(), "--bmap".as_ref()];
        args.push(self.bmap.as_os_str());
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.push(self.image.as_os_str());
        args.push(dev.path().as_os_str());
        run(args)
    }

    /// Changes one byte of the image (inside the data at `offset`, so its holes stay
    /// holes) and makes its bmap again.
    fn change(&mut self, offset: u64) {
        self.bytes[offset as usize] ^= 0x5a;
        let file = OpenOptions::new()
            .write(true)
            .open(&self.image)
            .expect("open");
        file.write_all_at(&self.bytes[offset as usize..=offset as usize], offset)
            .expect("write");
        drop(file);
        assert_ok(&run([
            "create".as_ref(),
            "-o".as_ref(),
            self.bmap.as_os_str(),
            self.image.as_os_str(),
        ]));
    }
}

/// The non-zero 4 KiB blocks of `bytes`, merged into spans.
fn mapped(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (n, block) in bytes.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            let at = n as u64 * 4096;
            match spans.last_mut() {
                Some((start, len)) if *start + *len == at => *len += block.len() as u64,
                _ => spans.push((at, block.len() as u64)),
            }
        }
    }
    spans
}

/// Sectors (512 bytes) the kernel has written to the device: field 7 of its stat.
fn sectors_written(dev: &LoopDevice) -> u64 {
    let stat = dev.sysfs("stat");
    let field = stat.split_whitespace().nth(6).expect("stat field 7");
    field.parse().expect("a number")
}

/// The first `len` bytes of the device, read through the page cache as tools do.
fn device_bytes(dev: &LoopDevice, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    File::open(dev.path())
        .and_then(|f| f.read_exact_at(&mut buf, 0))
        .expect("read the device");
    buf
}

/// Writes an old GPT with three partitions to the device and checks tools see it.
fn old_table(dev: &LoopDevice) {
    succeeds(
        Command::new("sgdisk")
            .args(["-o", "-n1:2048:+8M", "-n2:0:+8M", "-n3:0:0"])
            .arg(dev.path()),
    );
    let dump = sfdisk_dump(dev).expect("the old table is seen");
    assert_eq!(dump.matches("start=").count(), 3, "{dump}");
}

/// `sfdisk -d DEV`: the table it finds, `None` when it finds none.
fn sfdisk_dump(dev: &LoopDevice) -> Option<String> {
    let out = Command::new("sfdisk")
        .arg("-d")
        .arg(dev.path())
        .output()
        .expect("sfdisk runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `blkid -p DEV`: what it finds (empty when nothing).
fn blkid(dev: &LoopDevice) -> String {
    let out = Command::new("blkid")
        .arg("-p")
        .arg(dev.path())
        .output()
        .expect("blkid runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Feeds the first half of the image to `copy - DEV` through a pipe, waits until the
/// device has taken 12 MiB of it, and kills the tool with SIGKILL.
fn kill_halfway(image: &GptImage, dev: &LoopDevice, extra: &[&str]) {
    let log = dev.backing().with_extension("log");
    let mut child = KillOnDrop(
        bmaptool()
            .arg("copy")
            .arg("--bmap")
            .arg(&image.bmap)
            .args(extra)
            .arg("-")
            .arg(dev.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log"))
            .spawn()
            .expect("bmaptool starts"),
    );
    let before = sectors_written(dev);
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    let half = (SIZE / 2) as usize;
    if let Err(e) = stdin.write_all(&image.bytes[..half]) {
        panic!("the tool stopped reading ({e}): {}", read_log(&log));
    }
    let wrote = eventually(Duration::from_secs(120), || {
        sectors_written(dev) - before >= 12 * MIB / 512
    });
    assert!(wrote, "the device never took 12 MiB: {}", read_log(&log));
    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "the tool ended with half an image: {}",
        read_log(&log)
    );
    signal(&child.0, "KILL");
    let status = wait_for(&mut child.0, Duration::from_secs(60)).expect("killed");
    assert!(!status.success());
    drop(stdin);
    // The copy was under way: data of the first partition is on the device.
    let on_device = device_bytes(dev, 8 * MIB);
    assert!(
        on_device[2 * MIB as usize..8 * MIB as usize]
            == image.bytes[2 * MIB as usize..8 * MIB as usize]
    );
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Whether the GPT signature is at LBA 1 or at the device's last LBA (512-byte sectors).
fn gpt_signatures(dev: &LoopDevice) -> (bool, bool) {
    let bytes = device_bytes(dev, SIZE);
    let at = |o: usize| &bytes[o..o + 8] == b"EFI PART";
    (at(512), at(SIZE as usize - 512))
}

#[test]
fn a_copy_killed_halfway_leaves_no_partition_table() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(1);
    let dev = LoopDevice::new(SIZE, 0x55);
    old_table(&dev);
    kill_halfway(&image, &dev, &[]);
    assert_eq!(sfdisk_dump(&dev), None, "sfdisk found a partition table");
    let found = blkid(&dev);
    assert!(!found.contains("PTTYPE"), "blkid found {found}");
    assert_eq!(
        gpt_signatures(&dev),
        (false, false),
        "a GPT header survived"
    );
}

#[test]
fn a_copy_killed_halfway_in_the_plain_order_leaves_a_table() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(2);
    let dev = LoopDevice::new(SIZE, 0x55);
    old_table(&dev);
    kill_halfway(&image, &dev, &["--no-fail-safe"]);
    // The new primary GPT (written first) and the old backup: a half-new system.
    let dump = sfdisk_dump(&dev).expect("a partition table");
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(blkid(&dev).contains("PTTYPE=\"gpt\""));
    assert_eq!(gpt_signatures(&dev), (true, true));
}

#[test]
fn a_checksum_mismatch_stops_the_copy_before_the_partition_tables_are_written() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(7);
    // Damage the image after its bmap was made, in the second partition's data.
    let offset = 31 * MIB + 99;
    let file = OpenOptions::new()
        .write(true)
        .open(&image.image)
        .expect("open");
    file.write_all_at(&[image.bytes[offset as usize] ^ 1], offset)
        .expect("write");
    drop(file);
    let dev = LoopDevice::new(SIZE, 0x55);
    old_table(&dev);
    let out = image.copy(&dev, &[]);
    assert_fails(&out, &["checksum mismatch"]);
    assert_eq!(sfdisk_dump(&dev), None, "sfdisk found a partition table");
    assert_eq!(
        gpt_signatures(&dev),
        (false, false),
        "a GPT header was written"
    );
}

#[test]
fn a_completed_copy_passes_sfdisk_and_sgdisk_and_equals_the_image() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(3);
    let dev = LoopDevice::new(SIZE, 0x55);
    old_table(&dev);
    let out = image.copy(&dev, &["--zero-holes"]);
    assert_ok(&out);
    assert!(stderr(&out).contains("fail-safe order: wiped the old partition tables"));
    succeeds(Command::new("sfdisk").arg("--verify").arg(dev.path()));
    let check = succeeds(Command::new("sgdisk").arg("-v").arg(dev.path()));
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("No problems found"), "{text}");
    assert!(device_bytes(&dev, SIZE) == image.bytes);
    let dump = sfdisk_dump(&dev).expect("the new table");
    assert_eq!(dump.matches("start=").count(), 2, "{dump}");
}

#[test]
fn zero_holes_makes_the_holes_of_a_reused_device_read_as_zero() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(4);
    let dev = LoopDevice::new(SIZE, 0xaa);
    // Without it the old bytes stay in the holes (so the check below can fail).
    assert_ok(&image.copy(&dev, &[]));
    let plain = device_bytes(&dev, SIZE);
    assert!(plain[(17 * MIB) as usize] == 0xaa && plain != image.bytes);
    let out = image.copy(&dev, &["--zero-holes"]);
    assert_ok(&out);
    assert!(stderr(&out).contains("zeroed"), "{}", stderr(&out));
    // Holes read as zero and the mapped ranges hold the image: the device is the image.
    assert!(device_bytes(&dev, SIZE) == image.bytes);
}

#[test]
fn discard_punches_the_holes_out_of_a_loop_devices_backing_file() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(5);
    let dev = LoopDevice::new(SIZE, 0xaa);
    let discards = dev
        .sysfs("queue/discard_max_bytes")
        .parse::<u64>()
        .unwrap_or(0)
        > 0;
    if !require(
        discards,
        "a loop device that discards (its backing file system punches holes)",
    ) {
        return;
    }
    let before = allocated(dev.backing());
    let out = image.copy(&dev, &["--discard"]);
    assert_ok(&out);
    assert!(stderr(&out).contains("discarded"), "{}", stderr(&out));
    let after = allocated(dev.backing());
    let holes = SIZE - DATA.iter().map(|d| d.1).sum::<u64>();
    assert!(
        after + holes / 2 <= before,
        "backing file: {before} bytes allocated before, {after} after"
    );
    let on_device = device_bytes(&dev, SIZE);
    for (start, len) in mapped(&image.bytes) {
        let (a, b) = (start as usize, (start + len) as usize);
        assert!(on_device[a..b] == image.bytes[a..b], "bytes {a}-{b} differ");
    }
}

#[test]
fn skip_unchanged_writes_nothing_on_an_unchanged_device_and_only_the_changed_chunk_otherwise() {
    if !need_tools() {
        return;
    }
    let mut image = GptImage::new(6);
    let dev = LoopDevice::new(SIZE, 0);
    assert_ok(&image.copy(&dev, &[]));
    let before = sectors_written(&dev);
    let out = image.copy(&dev, &["--skip-unchanged"]);
    assert_ok(&out);
    assert_eq!(sectors_written(&dev), before, "{}", stderr(&out));
    assert!(stderr(&out).contains("skip-unchanged:"), "{}", stderr(&out));
    // One byte changed in the second partition: only its chunk (1 MiB at most) is
    // written, in the plain order.
    image.change(32 * MIB + 12_345);
    let before = sectors_written(&dev);
    assert_ok(&image.copy(&dev, &["--skip-unchanged", "--no-fail-safe"]));
    let wrote = (sectors_written(&dev) - before) * 512;
    assert!((1..=MIB).contains(&wrote), "wrote {wrote} bytes");
    assert!(device_bytes(&dev, SIZE) == image.bytes);
    // In the fail-safe order the tables are wiped first and written again: the chunk,
    // 2 MiB of wipe and the held first and last MiB at most.
    image.change(22 * MIB + 7);
    let before = sectors_written(&dev);
    assert_ok(&image.copy(&dev, &["--skip-unchanged"]));
    let wrote = (sectors_written(&dev) - before) * 512;
    assert!((2 * MIB..=5 * MIB).contains(&wrote), "wrote {wrote} bytes");
    assert!(device_bytes(&dev, SIZE) == image.bytes);
    succeeds(Command::new("sgdisk").arg("-v").arg(dev.path()));
}

#[test]
fn hole_options_are_refused_without_a_bmap_and_together() {
    let dir = tempdir();
    let image = dir.path().join("image");
    std::fs::write(&image, [1u8; 4096]).expect("image");
    let dest = dir.path().join("dest");
    let out = run([
        "copy".as_ref(),
        "--nobmap".as_ref(),
        "--zero-holes".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_fails(&out, &["--zero-holes acts on the image's unmapped ranges"]);
    assert!(!dest.exists());
    let out = run([
        "copy".as_ref(),
        "--discard".as_ref(),
        "--zero-holes".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn hole_and_skip_options_on_a_regular_file_say_there_is_nothing_to_do() {
    let dir = tempdir();
    let image = dir.path().join("image");
    let bytes = random_bytes(8, 3 * 4096);
    let file = File::create(&image).expect("image");
    file.set_len(MIB).expect("size");
    file.write_all_at(&bytes, 64 * 1024).expect("data");
    drop(file);
    let bmap = dir.path().join("image.bmap");
    assert_ok(&run([
        "create".as_ref(),
        "-o".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
    ]));
    let dest = dir.path().join("dest");
    std::fs::write(&dest, vec![0xaa; MIB as usize]).expect("old file");
    for flag in ["--zero-holes", "--discard", "--skip-unchanged"] {
        let out = run([
            "copy".as_ref(),
            "--bmap".as_ref(),
            bmap.as_os_str(),
            flag.as_ref(),
            image.as_os_str(),
            dest.as_os_str(),
        ]);
        assert_ok(&out);
        let text = stderr(&out);
        let said = if flag == "--skip-unchanged" {
            "--skip-unchanged compares with a block device only"
        } else {
            "already read as zeros, nothing to do"
        };
        assert!(text.contains(said), "{flag}: {text}");
        assert!(!text.contains("fail-safe order"), "{text}");
        assert!(read(&dest) == read(&image), "{flag}: the copy differs");
    }
}

/// `sgdisk -v DEV`'s report.
fn sgdisk_verify(dev: &LoopDevice) -> String {
    let out = succeeds(Command::new("sgdisk").arg("-v").arg(dev.path()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `verify --bmap BMAP DEV`.
fn verify(image: &GptImage, dev: &LoopDevice) -> Output {
    run([
        "verify".as_ref(),
        "--bmap".as_ref(),
        image.bmap.as_os_str(),
        dev.path().as_os_str(),
    ])
}

#[test]
fn a_gpt_image_on_a_larger_device_gets_its_backup_at_the_device_end_and_verifies() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(11);
    let device = 2 * SIZE;
    // The fail-safe order patches the held primary header; the plain order writes it
    // after the rest; the read-back checks the moved sectors too.
    for extra in [&[][..], &["--no-fail-safe", "--verify-written"][..]] {
        let dev = LoopDevice::new(device, 0x55);
        old_table(&dev);
        let out = image.copy(&dev, extra);
        assert_ok(&out);
        assert!(
            stderr(&out).contains(&format!(
                "moved the image's backup GPT from LBA {} to the end of",
                SIZE / 512 - 1
            )),
            "{extra:?}: {}",
            stderr(&out)
        );
        let report = sgdisk_verify(&dev);
        assert!(report.contains("No problems found"), "{extra:?}: {report}");
        succeeds(Command::new("sfdisk").arg("--verify").arg(dev.path()));
        let bytes = device_bytes(&dev, device);
        let last = (device - 512) as usize;
        assert_eq!(&bytes[last..last + 8], b"EFI PART", "{extra:?}");
        let dump = sfdisk_dump(&dev).expect("the table");
        assert_eq!(dump.matches("start=").count(), 2, "{dump}");
        // Of the image's mapped bytes, only the MBR and the primary header differ.
        for (start, len) in mapped(&image.bytes) {
            let span = start.max(1024) as usize..(start + len) as usize;
            assert!(bytes[span.clone()] == image.bytes[span], "{extra:?}");
        }
        assert!(bytes[..1024] != image.bytes[..1024], "{extra:?}");
        let out = verify(&image, &dev);
        assert_ok(&out);
        assert!(
            stderr(&out).contains("backup GPT was moved to its end"),
            "{}",
            stderr(&out)
        );
        let out = run([
            "verify".as_ref(),
            "--json".as_ref(),
            "--bmap".as_ref(),
            image.bmap.as_os_str(),
            dev.path().as_os_str(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(report["gpt_moved"], true, "{report}");
        assert_eq!(report["result"], "good", "{report}");
    }
}

#[test]
fn a_moved_gpt_does_not_hide_a_changed_byte_next_to_it() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(12);
    let dev = LoopDevice::new(2 * SIZE, 0);
    assert_ok(&image.copy(&dev, &[]));
    // A byte of the MBR's boot code, in the same range as the moved header.
    let file = OpenOptions::new()
        .write(true)
        .open(dev.path())
        .expect("open the device");
    file.write_all_at(&[0xa5], 100).expect("change a byte");
    file.sync_all().expect("sync");
    drop(file);
    let out = verify(&image, &dev);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad range: blocks 0-"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_gpt_move_keeps_the_images_bytes_and_says_nothing_moved() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(13);
    let dev = LoopDevice::new(2 * SIZE, 0);
    let out = image.copy(&dev, &["--no-gpt-move"]);
    assert_ok(&out);
    assert!(!stderr(&out).contains("backup GPT"), "{}", stderr(&out));
    assert!(device_bytes(&dev, SIZE) == image.bytes);
    let report = sgdisk_verify(&dev);
    assert!(
        report.contains("doesn't reside") || report.contains("Problem"),
        "sgdisk -v should see the backup in the middle: {report}"
    );
    let out = verify(&image, &dev);
    assert_ok(&out);
    assert!(!stderr(&out).contains("moved"), "{}", stderr(&out));
}

#[test]
fn a_device_without_room_for_the_backup_keeps_the_gpt_as_it_is() {
    if !need_tools() {
        return;
    }
    let image = GptImage::new(14);
    let dev = LoopDevice::new(SIZE, 0);
    let out = image.copy(&dev, &[]);
    assert_ok(&out);
    assert!(!stderr(&out).contains("backup GPT"), "{}", stderr(&out));
    assert!(device_bytes(&dev, SIZE) == image.bytes);
    // Larger by less than the backup's 32 sectors of entries and its header: moving
    // it would overwrite the image's own last sectors.
    let dev = LoopDevice::new(SIZE + 16 * 512, 0);
    let out = image.copy(&dev, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("backup GPT not moved: the device (131088 sectors) is not larger"),
        "{}",
        stderr(&out)
    );
    assert!(device_bytes(&dev, SIZE) == image.bytes);
    assert_ok(&verify(&image, &dev));
}
