//! The device end of `bmaptool copy` with `O_DIRECT`: a loop device and a regular file
//! are really written with `O_DIRECT` (the open flags read from `/proc/PID/fdinfo`
//! while the tool waits for input); bmaps with 512- and 1024-byte blocks on a loop
//! device with 4096-byte sectors keep every byte outside their ranges; an image whose
//! size is not a multiple of 4096 copies exactly to a file and to devices; a file
//! system that refuses `O_DIRECT` (ramfs) and tmpfs still get exact copies; and the
//! library's `Dest` reads back what it wrote and discards.
//!
//! Tests that need root, loop devices or mounts skip when those are missing, unless
//! `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use bmap::dest::{self, AlignedBuf, Dest, Kind};
use bmap::format::{BlockRange, Bmap, ChecksumKind};
use copy_support::procfs::{exited, waits_reading_a_pipe, within_hang};
use copy_support::*;

/// `O_DIRECT` in the `flags` of `/proc/PID/fdinfo/N` (octal, as `open(2)` takes it).
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const O_DIRECT: u32 = 0o40000;
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const O_DIRECT: u32 = 0o200000;

/// The byte the devices are filled with before a copy: what holes must keep.
const OLD: u8 = 0xAA;

// ---------------------------------------------------------------------------------
// Images and bmaps

/// An image with random bytes in its mapped blocks and zeros elsewhere, and its bmap
/// (with SHA-256 digests) built by the format's rules, whatever the block size.
struct Layout {
    bytes: Vec<u8>,
    bmap: Vec<u8>,
    block_size: u64,
    ranges: Vec<(u64, u64)>,
}

impl Layout {
    fn new(size: u64, block_size: u64, ranges: &[(u64, u64)]) -> Layout {
        let mut bytes = vec![0u8; usize::try_from(size).expect("fits")];
        let mut block_ranges = Vec::new();
        for (seed, &(first, last)) in ranges.iter().enumerate() {
            let (start, end) = span(first, last, block_size, size);
            bytes[start..end].copy_from_slice(&random_bytes(seed as u64 + 11, end - start));
            let digest = ChecksumKind::Sha256.digest(&bytes[start..end]);
            block_ranges.push(BlockRange::new(first, last, Some(digest)).expect("range"));
        }
        let bmap = Bmap::new(size, block_size, Some(ChecksumKind::Sha256), block_ranges)
            .expect("a valid bmap");
        Layout {
            bytes,
            bmap: bmap.to_xml(),
            block_size,
            ranges: ranges.to_vec(),
        }
    }

    /// Writes `image` (sparse: only the mapped ranges) and `image.bmap` into `dir`.
    fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let image = dir.join("image");
        let file = File::create(&image).expect("create the image");
        file.set_len(self.bytes.len() as u64)
            .expect("size the image");
        for &(first, last) in &self.ranges {
            let (start, end) = span(first, last, self.block_size, self.bytes.len() as u64);
            file.write_all_at(&self.bytes[start..end], start as u64)
                .expect("write the image");
        }
        let bmap = dir.join("image.bmap");
        fs::write(&bmap, &self.bmap).expect("write the bmap");
        (image, bmap)
    }

    /// Whether byte `offset` is inside a mapped range.
    fn mapped(&self, offset: usize) -> bool {
        self.ranges.iter().any(|&(first, last)| {
            let (start, end) = span(first, last, self.block_size, self.bytes.len() as u64);
            (start..end).contains(&offset)
        })
    }

    /// Asserts that `device` holds the image's bytes in the mapped ranges and the old
    /// fill everywhere else, before and after the image's end.
    #[track_caller]
    fn assert_on_device(&self, device: &[u8], what: &str) {
        assert!(device.len() >= self.bytes.len(), "{what}: device too small");
        for (offset, &byte) in device.iter().enumerate() {
            let want = if offset < self.bytes.len() && self.mapped(offset) {
                self.bytes[offset]
            } else {
                OLD
            };
            assert_eq!(
                byte,
                want,
                "{what}: byte {offset} is {byte:#04x}, expected {want:#04x} (mapped: {})",
                offset < self.bytes.len() && self.mapped(offset)
            );
        }
    }
}

/// Byte span `[start, end)` of blocks `first..=last`, clipped at the image's end.
fn span(first: u64, last: u64, block_size: u64, size: u64) -> (usize, usize) {
    let start = first * block_size;
    let end = ((last + 1) * block_size).min(size);
    (
        usize::try_from(start).expect("fits"),
        usize::try_from(end).expect("fits"),
    )
}

/// `copy --bmap BMAP --no-fail-safe IMAGE DEST`: in the plain order, because these
/// tests check that every unmapped byte of a device is kept, and the fail-safe order
/// zeroes a device's first and last MiB (see `failsafe.rs`).
fn copy_args(bmap: &Path, image: impl AsRef<OsStr>, dest: impl AsRef<OsStr>) -> Vec<OsString> {
    vec![
        "copy".into(),
        "--bmap".into(),
        bmap.into(),
        "--no-fail-safe".into(),
        image.as_ref().to_owned(),
        dest.as_ref().to_owned(),
    ]
}

// ---------------------------------------------------------------------------------
// Devices, file systems and open flags

/// A loop device of `size` bytes filled with [`OLD`], with `sector`-byte logical blocks.
fn loop_device(size: u64, sector: u32) -> LoopDevice {
    let device = LoopDevice::new(size, OLD);
    if sector != 512 {
        let path = device.path().to_string_lossy().into_owned();
        // The kernel may refuse for a moment while udev probes the new device.
        let size = sector.to_string();
        assert!(
            eventually(HANG, || runs("losetup", &["--sector-size", &size, &path])),
            "losetup --sector-size {sector} {path} failed"
        );
    }
    assert_eq!(
        device.sysfs("queue/logical_block_size"),
        sector.to_string(),
        "the loop device's logical block size"
    );
    device
}

/// Whether the kernel lets a file in `dir` be opened with `O_DIRECT` (the oracle for
/// what the tool must do there).
fn accepts_o_direct(dir: &Path) -> bool {
    let probe = dir.join("o-direct-probe");
    let opened = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(O_DIRECT as i32)
        .open(&probe);
    let _ = fs::remove_file(&probe);
    match opened {
        Ok(_) => true,
        Err(e) if e.raw_os_error() == Some(22) => false,
        Err(e) => panic!("cannot probe O_DIRECT in {}: {e}", dir.display()),
    }
}

/// The `flags` of every descriptor of process `pid` open on `path` (none once the
/// process is gone).
fn open_flags(pid: u32, path: &Path) -> Vec<u32> {
    let Ok(target) = fs::canonicalize(path) else {
        return Vec::new();
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut flags = Vec::new();
    for fd in fds.flatten() {
        if fs::read_link(fd.path()).is_ok_and(|t| t == target) {
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            let Ok(text) = fs::read_to_string(&info) else {
                continue;
            };
            let octal = text
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .expect("a flags line")
                .trim();
            flags.push(u32::from_str_radix(octal, 8).expect("octal flags"));
        }
    }
    flags
}

/// Runs `bmaptool ARGS...` with the image read from a pipe the test holds: feeds the
/// first `first` bytes, waits until the tool waits for more input with `fds`
/// descriptors open on `dest`, takes their flags, then feeds the rest. Returns the
/// flags and what the tool did.
fn run_holding_stdin(
    args: &[OsString],
    image: &[u8],
    first: usize,
    dest: &Path,
    fds: usize,
) -> (Vec<u32>, Output) {
    let mut child = bmaptool()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bmaptool starts");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let _ = stdin.write_all(&image[..first]);
    let state = within_hang(|| {
        exited(pid) || (waits_reading_a_pipe(pid) && open_flags(pid, dest).len() >= fds)
    });
    let flags = if state && !exited(pid) {
        open_flags(pid, dest)
    } else {
        Vec::new()
    };
    let rest = image[first..].to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&rest);
    });
    let output = child.wait_with_output().expect("bmaptool runs");
    feeder.join().expect("the feeder does not panic");
    assert!(
        state,
        "bmaptool never waited for input with {} open",
        dest.display()
    );
    (flags, output)
}

/// Asserts that one descriptor on the destination is `O_DIRECT` and one is not (the
/// buffered one for partial blocks).
#[track_caller]
fn assert_direct_and_buffered(flags: &[u32], output: &Output) {
    assert!(
        !flags.is_empty(),
        "the destination was not open while the tool waited; stderr:\n{}",
        stderr(output)
    );
    assert!(
        flags.iter().any(|f| f & O_DIRECT != 0),
        "no descriptor with O_DIRECT: flags {:?}",
        flags.iter().map(|f| format!("{f:o}")).collect::<Vec<_>>()
    );
    assert!(
        flags.iter().any(|f| f & O_DIRECT == 0),
        "no buffered descriptor for partial blocks: flags {:?}",
        flags.iter().map(|f| format!("{f:o}")).collect::<Vec<_>>()
    );
}

/// A sparse image of 3 MiB and 5000 bytes (its size not a multiple of 4096, its partial
/// last block mapped) in 4096-byte blocks.
fn odd_sized() -> Layout {
    Layout::new(
        3 * MIB + 5000,
        4096,
        &[(0, 4), (256, 271), (513, 513), (768, 769)],
    )
}

// ---------------------------------------------------------------------------------
// 1. O_DIRECT is really used

#[test]
fn loop_device_is_written_with_o_direct() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let layout = odd_sized();
    let (_, bmap) = layout.write(dir.path());
    let device = loop_device(8 * MIB, 512);
    let args = copy_args(&bmap, "-", device.path());
    let (flags, output) = run_holding_stdin(&args, &layout.bytes, 64 << 10, device.path(), 2);
    assert_ok(&output);
    assert_direct_and_buffered(&flags, &output);
    layout.assert_on_device(&read(device.backing()), "loop device");
}

#[test]
fn regular_file_is_written_with_o_direct_where_its_file_system_accepts_it() {
    let dir = tempdir();
    let layout = odd_sized();
    let (_, bmap) = layout.write(dir.path());
    let dest = dir.path().join("out.img");
    // The file must exist for the tool to have it open: an existing file is truncated.
    fs::write(&dest, b"old").expect("write the old file");
    let args = copy_args(&bmap, "-", &dest);
    let direct = accepts_o_direct(dir.path());
    let (flags, output) = run_holding_stdin(
        &args,
        &layout.bytes,
        64 << 10,
        &dest,
        if direct { 2 } else { 1 },
    );
    assert_ok(&output);
    if direct {
        assert_direct_and_buffered(&flags, &output);
    } else {
        assert!(flags.iter().all(|f| f & O_DIRECT == 0), "{flags:?}");
    }
    assert!(
        read(&dest) == layout.bytes,
        "the copy differs from the image"
    );
}

// ---------------------------------------------------------------------------------
// 2. Small blocks on a device with 4096-byte sectors

/// An image in `block_size` blocks whose ranges start and end inside 4096-byte
/// blocks, share 4096-byte blocks with each other, span whole aligned blocks (one of
/// them over several 1 MiB chunks), and end with the image's partial last block.
fn small_blocks(block_size: u64) -> Layout {
    let per_page = 4096 / block_size;
    let size: u64 = 3 * MIB + 700;
    let blocks = size.div_ceil(block_size);
    Layout::new(
        size,
        block_size,
        &[
            // Two ranges inside the first 4096-byte block, a hole between them.
            (1, 1),
            (3, 3),
            // From inside one 4096-byte block to inside another, across whole ones.
            (per_page * 2 + 1, per_page * 9 + 1),
            // Whole aligned 4096-byte blocks only.
            (per_page * 12, per_page * 16 - 1),
            // 2.5 MiB from inside a 4096-byte block: several chunks.
            (
                per_page * 20 + 3,
                per_page * 20 + 3 + (5 * MIB / 2) / block_size,
            ),
            // The last block, partial, sharing its 4096-byte block with a hole.
            (blocks - 1, blocks - 1),
        ],
    )
}

#[test]
fn bmaps_with_512_and_1024_byte_blocks_on_a_4096_sector_device_keep_neighbouring_bytes() {
    if !need_loop_devices() {
        return;
    }
    for block_size in [512, 1024] {
        let layout = small_blocks(block_size);
        for from_stdin in [false, true] {
            let dir = tempdir();
            let (image, bmap) = layout.write(dir.path());
            let device = loop_device(4 * MIB, 4096);
            let output = if from_stdin {
                run_stdin_file(copy_args(&bmap, "-", device.path()), &image)
            } else {
                run(copy_args(&bmap, &image, device.path()))
            };
            assert_ok(&output);
            let what = format!("{block_size}-byte blocks, stdin: {from_stdin}");
            layout.assert_on_device(&read(device.backing()), &what);
        }
    }
}

// ---------------------------------------------------------------------------------
// 3. An image size that is not a multiple of 4096

#[test]
fn image_size_not_a_multiple_of_4096_copies_exactly_to_a_file() {
    let dir = tempdir();
    let layout = odd_sized();
    let (image, bmap) = layout.write(dir.path());
    for (name, from_stdin) in [("from-file.img", false), ("from-stdin.img", true)] {
        let dest = dir.path().join(name);
        let output = if from_stdin {
            run_stdin_file(copy_args(&bmap, "-", &dest), &image)
        } else {
            run(copy_args(&bmap, &image, &dest))
        };
        assert_ok(&output);
        assert_eq!(fs::metadata(&dest).expect("stat").len(), 3 * MIB + 5000);
        assert!(read(&dest) == layout.bytes, "{name} differs from the image");
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}

#[test]
fn image_size_not_a_multiple_of_4096_copies_exactly_to_loop_devices() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let layout = odd_sized();
    let (image, bmap) = layout.write(dir.path());
    for sector in [512, 4096] {
        let device = loop_device(4 * MIB, sector);
        let output = run(copy_args(&bmap, &image, device.path()));
        assert_ok(&output);
        layout.assert_on_device(&read(device.backing()), &format!("{sector}-byte sectors"));
    }
}

// ---------------------------------------------------------------------------------
// 4. File systems without O_DIRECT, and tmpfs

#[test]
fn a_file_system_that_refuses_o_direct_gets_an_exact_buffered_copy() {
    if !need_mount() {
        return;
    }
    let mount = Mount::new(&[OsStr::new("-t"), OsStr::new("ramfs"), OsStr::new("ramfs")]);
    if !require(
        !accepts_o_direct(mount.path()),
        "a file system that refuses O_DIRECT (ramfs did)",
    ) {
        return;
    }
    let dir = tempdir();
    let layout = odd_sized();
    let (_, bmap) = layout.write(dir.path());
    let dest = mount.path().join("out.img");
    fs::write(&dest, b"old").expect("write the old file");
    let args = copy_args(&bmap, "-", &dest);
    let (flags, output) = run_holding_stdin(&args, &layout.bytes, 64 << 10, &dest, 1);
    assert_ok(&output);
    assert!(!flags.is_empty(), "the destination was not open");
    assert!(
        flags.iter().all(|f| f & O_DIRECT == 0),
        "O_DIRECT on ramfs: {flags:?}"
    );
    assert!(
        read(&dest) == layout.bytes,
        "the copy differs from the image"
    );
}

#[test]
fn tmpfs_destination_gets_an_exact_sparse_copy() {
    if !need_mount() {
        return;
    }
    let mount = Mount::tmpfs("size=64m");
    let dir = tempdir();
    let layout = odd_sized();
    let (image, bmap) = layout.write(dir.path());
    let dest = mount.path().join("out.img");
    let output = run(copy_args(&bmap, &image, &dest));
    assert_ok(&output);
    assert!(
        read(&dest) == layout.bytes,
        "the copy differs from the image"
    );
    assert_sparse_as(&dest, &BmapFacts::read(&bmap));
}

#[test]
fn a_new_file_the_umask_makes_read_only_is_still_copied_by_an_ordinary_user() {
    if !require(is_root(), "root (to run the tool as nobody)")
        || !require(runs("setpriv", &["--version"]), "setpriv (util-linux)")
    {
        return;
    }
    let dir = tempdir();
    let layout = odd_sized();
    let (image, bmap) = layout.write(dir.path());
    for path in [dir.path(), &image, &bmap] {
        let mode = if path.is_dir() { 0o777 } else { 0o644 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let dest = dir.path().join("out.img");
    // The file is created with mode 0444: a second open for writing (the O_DIRECT one)
    // is refused, so the copy goes buffered instead of failing.
    let output = std::process::Command::new("sh")
        .args(["-c", "umask 0222 && exec \"$@\"", "sh", "setpriv"])
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_bmaptool"))
        .args(copy_args(&bmap, &image, &dest))
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert_ok(&output);
    assert_eq!(
        fs::metadata(&dest).expect("stat").permissions().mode() & 0o777,
        0o444
    );
    assert!(
        read(&dest) == layout.bytes,
        "the copy differs from the image"
    );
}

// ---------------------------------------------------------------------------------
// 5. The library's Dest: reads, discards

/// Writes a pattern through `dest` at unaligned and aligned places, from aligned and
/// unaligned memory, and reads it back the same ways.
fn write_and_read_back(dest: &Dest, base: u64) {
    let align = dest.alignment();
    assert!(
        align >= 4096 && align.is_power_of_two(),
        "alignment {align}"
    );
    let pattern = random_bytes(99, 5 * align + 1234);
    // Aligned memory holding bytes for offset `base + 512` at index 512: the whole
    // blocks inside go direct, the partial ones buffered.
    let mut aligned = AlignedBuf::new(pattern.len() + 512, align);
    aligned[512..].copy_from_slice(&pattern);
    dest.write_at(&aligned[512..], base + 512).expect("write");
    // A plain Vec (any alignment) at an odd offset.
    dest.write_at(&pattern[..777], base + 9 * align as u64 + 3)
        .expect("write");

    let mut back = AlignedBuf::new(12 * align, align);
    let got = dest.read_at(&mut back, base).expect("read");
    assert_eq!(got, back.len());
    assert!(
        back[..512].iter().all(|&b| b == 0),
        "bytes before the write"
    );
    assert!(
        back[512..512 + pattern.len()] == pattern[..],
        "aligned read"
    );
    let odd = 9 * align + 3;
    assert!(back[odd..odd + 777] == pattern[..777], "the second write");
    // Unaligned memory and offset.
    let mut plain = vec![0u8; 1000];
    let got = dest.read_at(&mut plain, base + 700).expect("read");
    assert_eq!(got, 1000);
    assert!(plain[..] == pattern[188..1188], "unaligned read");
}

#[test]
fn dest_reads_back_what_it_wrote_and_punches_holes_in_a_file() {
    let dir = tempdir();
    let path = dir.path().join("dest.img");
    // An existing file: a new one is unnamed (O_TMPFILE) until finished, and its
    // blocks are counted through its path.
    File::create(&path).expect("create the file");
    let options = dest::Options {
        image_size: Some(MIB),
        ..Default::default()
    };
    let dest = Dest::open(&path, &options).expect("open");
    assert_eq!(dest.kind(), Kind::File);
    assert!(matches!(dest, Dest::File(_)));
    assert_eq!(dest.is_direct(), accepts_o_direct(dir.path()));
    write_and_read_back(&dest, 0);
    // Past the end: a short read.
    let mut tail = vec![0u8; 100];
    assert_eq!(dest.read_at(&mut tail, MIB - 10).expect("read"), 10);
    // A punched hole reads as zeros and frees its blocks.
    let before = allocated(&path);
    dest.discard(0, 8192).expect("punch a hole");
    let mut back = AlignedBuf::new(8192, dest.alignment());
    assert_eq!(dest.read_at(&mut back, 0).expect("read"), 8192);
    assert!(back.iter().all(|&b| b == 0), "the hole reads as zeros");
    assert!(allocated(&path) < before, "no blocks freed");
    dest.finish(MIB).expect("finish");
    assert_eq!(fs::metadata(&path).expect("stat").len(), MIB);
}

#[test]
fn dest_reads_back_and_discards_on_a_4096_sector_loop_device() {
    if !need_loop_devices() {
        return;
    }
    let device = loop_device(MIB, 4096);
    let dest = Dest::open(device.path(), &dest::Options::default()).expect("open");
    assert!(matches!(dest, Dest::BlockDevice(_)));
    assert!(dest.is_direct(), "a block device is written with O_DIRECT");
    assert_eq!(dest.alignment(), 4096);
    let flags = open_flags(std::process::id(), device.path());
    assert!(flags.iter().any(|f| f & O_DIRECT != 0), "{flags:?}");
    // The device was filled with OLD: write over it, read back.
    let mut back = vec![0u8; 512];
    dest.read_at(&mut back, 0).expect("read");
    assert!(back.iter().all(|&b| b == OLD), "the old fill");
    write_and_read_back_over_old(&dest);
    // A discard of a span with partial blocks at both ends keeps those blocks.
    let mut before = AlignedBuf::new(5 * 4096, 4096);
    assert_eq!(dest.read_at(&mut before, 0).expect("read"), before.len());
    dest.discard(4096 + 100, 3 * 4096).expect("discard");
    let mut after = AlignedBuf::new(5 * 4096, 4096);
    assert_eq!(dest.read_at(&mut after, 0).expect("read"), after.len());
    assert!(
        after[..8192] == before[..8192],
        "the partial first block changed"
    );
    assert!(
        after[8192..4 * 4096].iter().all(|&b| b == 0),
        "the discarded whole blocks of a loop device read as zeros"
    );
    assert!(
        after[4 * 4096..] == before[4 * 4096..],
        "the partial last block changed"
    );
    dest.sync().expect("sync");
}

/// [`write_and_read_back`] on a device filled with [`OLD`]: the bytes around the
/// writes keep it.
fn write_and_read_back_over_old(dest: &Dest) {
    let pattern = random_bytes(5, 3 * 4096);
    dest.write_at(&pattern, 4096 + 512).expect("write");
    let mut back = AlignedBuf::new(5 * 4096, 4096);
    assert_eq!(dest.read_at(&mut back, 0).expect("read"), back.len());
    assert!(
        back[..4096 + 512].iter().all(|&b| b == OLD),
        "before the write"
    );
    assert!(back[4096 + 512..4 * 4096 + 512] == pattern[..], "the write");
    assert!(
        back[4 * 4096 + 512..].iter().all(|&b| b == OLD),
        "after the write"
    );
}
