//! `copy --seek OFFSET` and `verify --seek OFFSET`: a partition image (a real ext4 file
//! system made by mkfs.ext4, its bmap by our `create`) written into the second
//! partition of a whole-disk loop device leaves the partition table, the first
//! partition and every byte outside the image's mapped ranges as they were, mounts,
//! and verifies at the offset (and not after a byte changed); a regular-file DEST keeps
//! its head and tail (grown only when shorter, sparse when new, kept on failure);
//! offsets that are not aligned, too large or not numbers are refused before anything
//! is written; the fail-safe order is turned off with a notice; read-back,
//! skip-unchanged and zero-holes work inside the window; and the engine's direct
//! writes (and verify's reads) stay direct at a seek of 512 bytes and of 1 MiB (the
//! buffers are placed by the device's offsets, not the image's).
//!
//! Tests that need root, loop devices, sfdisk, mkfs.ext4 or mount skip when those are
//! missing, unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bmap::copy::{self, DestWriter, RangeSink, Span, Verdict};
use bmap::dest::{self, Dest};
use bmap::format::{BlockRange, Bmap, ChecksumKind};
use copy_support::*;

// ---------------------------------------------------------------------------------
// Images

/// A sparse image with random bytes in its mapped blocks, and its bmap.
struct Image {
    path: PathBuf,
    bmap: PathBuf,
    bytes: Vec<u8>,
    /// Mapped byte spans `[start, end)`.
    mapped: Vec<(usize, usize)>,
}

impl Image {
    /// `size` bytes with blocks `first..=last` of each range mapped, written to `dir`.
    fn new(dir: &Path, size: u64, block_size: u64, ranges: &[(u64, u64)]) -> Image {
        let mut bytes = vec![0u8; usize::try_from(size).expect("fits")];
        let mut block_ranges = Vec::new();
        let mut mapped = Vec::new();
        let path = dir.join("part.img");
        let file = File::create(&path).expect("create the image");
        file.set_len(size).expect("size the image");
        for (seed, &(first, last)) in ranges.iter().enumerate() {
            let start = usize::try_from(first * block_size).expect("fits");
            let end = usize::try_from(((last + 1) * block_size).min(size)).expect("fits");
            bytes[start..end].copy_from_slice(&random_bytes(seed as u64 + 77, end - start));
            file.write_all_at(&bytes[start..end], start as u64)
                .expect("write the image");
            let digest = ChecksumKind::Sha256.digest(&bytes[start..end]);
            block_ranges.push(BlockRange::new(first, last, Some(digest)).expect("range"));
            mapped.push((start, end));
        }
        let bmap = Bmap::new(size, block_size, Some(ChecksumKind::Sha256), block_ranges)
            .expect("a valid bmap");
        let bmap_path = dir.join("part.img.bmap");
        fs::write(&bmap_path, bmap.to_xml()).expect("write the bmap");
        Image {
            path,
            bmap: bmap_path,
            bytes,
            mapped,
        }
    }

    /// A 6 MiB image in 4096-byte blocks: ranges at its start, across chunks, at its end.
    fn small(dir: &Path) -> Image {
        Image::new(dir, 6 * MIB, 4096, &[(0, 3), (100, 700), (1530, 1535)])
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn bmap_facts_mapped(bmap: &Path) -> Vec<(usize, usize)> {
        let facts = BmapFacts::read(bmap);
        facts
            .ranges
            .iter()
            .map(|&(first, last)| {
                let start = first * facts.block_size;
                let end = ((last + 1) * facts.block_size).min(facts.image_size);
                (start as usize, end as usize)
            })
            .collect()
    }
}

/// Asserts that `after` holds `image` at `seek` in its mapped spans and `before`
/// everywhere else (before the seek, in the image's holes, after its end).
#[track_caller]
fn assert_written_at(
    before: &[u8],
    after: &[u8],
    seek: usize,
    image: &[u8],
    mapped: &[(usize, usize)],
) {
    assert_eq!(before.len(), after.len(), "DEST changed length");
    let mut at = 0;
    for &(start, end) in mapped {
        let (start, end) = (seek + start, seek + end);
        assert!(
            before[at..start] == after[at..start],
            "bytes {at}..{start} (outside the image's mapped ranges) changed"
        );
        assert!(
            after[start..end] == image[start - seek..end - seek],
            "bytes {start}..{end} do not hold the image's mapped range"
        );
        at = end;
    }
    assert!(
        before[at..] == after[at..],
        "bytes from {at} (after the image's last mapped range) changed"
    );
}

fn copy_at(seek: &str, image: &Image, dest: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec!["copy".as_ref(), "--bmap".as_ref(), image.bmap.as_ref()];
    args.extend(["--seek", seek].into_iter().map(OsStr::new));
    args.extend(extra.iter().map(OsStr::new));
    args.extend([image.path.as_os_str(), dest.as_os_str()]);
    run(args)
}

fn verify_at(seek: &str, bmap: &Path, target: &Path) -> Output {
    run([
        OsStr::new("verify"),
        OsStr::new("--seek"),
        OsStr::new(seek),
        OsStr::new("--bmap"),
        bmap.as_os_str(),
        target.as_os_str(),
    ])
}

/// Writes `bytes` at `offset` of a device or file, and syncs.
fn write_at(path: &Path, bytes: &[u8], offset: u64) {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for writing");
    file.write_all_at(bytes, offset).expect("write");
    file.sync_all().expect("sync");
}

// ---------------------------------------------------------------------------------
// A partition image into a whole-disk loop device

/// The disk: 48 MiB; partition 1 at 1 MiB (16 MiB), partition 2 at 18 MiB (24 MiB);
/// random bytes everywhere before the table is written.
const DISK: u64 = 48 * MIB;
const PART_SIZE: u64 = 24 * MIB;

fn need_partition_tools() -> bool {
    need_loop_devices()
        && need_mount()
        && ["sfdisk", "mkfs.ext4"]
            .iter()
            .all(|tool| test_support::need_tool(tool))
}

/// Runs `program ARGS...` with `input` on its standard input; panics unless it succeeds.
fn run_with_input(program: &str, args: &[&OsStr], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .expect("feed stdin");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A loop device with a DOS partition table (two partitions, random data in the first
/// and in the gaps); returns it and the second partition's byte offset, as sfdisk
/// reads it back.
fn partitioned_disk() -> (LoopDevice, u64) {
    let disk = LoopDevice::new(DISK, 0);
    write_at(disk.path(), &random_bytes(5, DISK as usize), 0);
    let script = "label: dos\nstart=2048, size=32768, type=83\nstart=36864, size=49152, type=83\n";
    let device = disk.path().as_os_str();
    run_with_input(
        "sfdisk",
        &[
            "-q".as_ref(),
            "--no-reread".as_ref(),
            "--no-tell-kernel".as_ref(),
            device,
        ],
        script.as_bytes(),
    );
    write_at(disk.path(), &random_bytes(6, 16 * MIB as usize), MIB);
    let json = succeeds(Command::new("sfdisk").arg("--json").arg(disk.path()));
    let table: serde_json::Value = serde_json::from_slice(&json.stdout).expect("sfdisk JSON");
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions");
    assert_eq!(parts.len(), 2, "two partitions: {table}");
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    let start = parts[1]["start"].as_u64().expect("start") * sector;
    assert_eq!(parts[1]["size"].as_u64().expect("size") * sector, PART_SIZE);
    (disk, start)
}

/// An ext4 file system made by mkfs.ext4 in a sparse file of the partition's size,
/// holding `files` (name, bytes), with its bmap made by our `create`.
fn ext4_image(dir: &Path, files: &[(&str, Vec<u8>)]) -> (PathBuf, PathBuf) {
    let src = dir.join("src");
    fs::create_dir(&src).expect("mkdir");
    for (name, bytes) in files {
        fs::write(src.join(name), bytes).expect("write a file");
    }
    let image = dir.join("part2.ext4");
    File::create(&image)
        .and_then(|f| f.set_len(PART_SIZE))
        .expect("sparse image");
    succeeds(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-L", "seek-test", "-d"])
            .arg(&src)
            .arg(&image),
    );
    let bmap = dir.join("part2.ext4.bmap");
    assert_ok(&run([
        OsStr::new("create"),
        OsStr::new("-o"),
        bmap.as_os_str(),
        image.as_os_str(),
    ]));
    (image, bmap)
}

#[test]
fn a_partition_image_goes_into_the_second_partition_and_nothing_else_on_the_disk_changes() {
    if !need_partition_tools() {
        return;
    }
    let dir = tempdir();
    let files = [
        ("small.txt", b"written at an offset\n".to_vec()),
        ("big.bin", random_bytes(9, 3 * MIB as usize + 123)),
    ];
    let (image, bmap) = ext4_image(dir.path(), &files);
    let (disk, offset) = partitioned_disk();
    assert_eq!(offset, 18 * MIB);
    let before = read(disk.path());
    let part = Image {
        path: image.clone(),
        bmap: bmap.clone(),
        bytes: read(&image),
        mapped: Image::bmap_facts_mapped(&bmap),
    };
    // The fail-safe order is on by default: with --seek it is turned off, with a word.
    let out = copy_at(&offset.to_string(), &part, disk.path(), &[]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("the fail-safe order is off"),
        "no word that the fail-safe order is off:\n{}",
        stderr(&out)
    );
    let after = read(disk.path());
    assert!(
        after[..512] == before[..512],
        "the partition table (MBR) changed"
    );
    assert_written_at(&before, &after, offset as usize, &part.bytes, &part.mapped);
    // The partition holds the file system and its files.
    let mount = Mount::new(&[
        OsStr::new("-t"),
        OsStr::new("ext4"),
        OsStr::new("-o"),
        OsStr::new(&format!("ro,offset={offset},sizelimit={PART_SIZE}")),
        disk.path().as_os_str(),
    ]);
    for (name, bytes) in &files {
        assert!(
            read(&mount.path().join(name)) == *bytes,
            "{name} differs in the mounted partition"
        );
    }
    drop(mount);
    assert_ok(&verify_at(
        &format!("{}K", offset / 1024),
        &bmap,
        disk.path(),
    ));
    // One changed byte inside a mapped range: verify at the offset finds it.
    let (start, _) = part.mapped[part.mapped.len() / 2];
    let at = offset + start as u64 + 100;
    write_at(disk.path(), &[after[at as usize] ^ 0xff], at);
    let out = verify_at(&offset.to_string(), &bmap, disk.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn an_offset_too_large_for_the_device_or_not_aligned_is_refused_with_nothing_written() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let image = Image::small(dir.path());
    let disk = LoopDevice::new(8 * MIB, 0x5A);
    let before = read(disk.path());
    // 3 MiB + 6 MiB > 8 MiB.
    let out = copy_at("3M", &image, disk.path(), &["--no-fail-safe"]);
    assert_fails(&out, &["does not fit", "written at offset 3145728"]);
    // Not a multiple of the bmap's 4096-byte blocks.
    let out = copy_at("1536", &image, disk.path(), &[]);
    assert_fails(
        &out,
        &["not a multiple of the bmap's block size (4096 bytes)"],
    );
    assert!(read(disk.path()) == before, "the device changed");
    // verify checks that the target holds the offset plus the image too.
    let out = verify_at("3M", &image.bmap, disk.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("smaller than the offset 3145728 plus the image"));
}

#[test]
fn skip_unchanged_verify_written_and_zero_holes_act_inside_the_window() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let image = Image::small(dir.path());
    let disk = LoopDevice::new(16 * MIB, 0x33);
    let before = read(disk.path());
    let out = copy_at("1MiB", &image, disk.path(), &["--verify-written"]);
    assert_ok(&out);
    assert!(stderr(&out).contains("all matched"), "{}", stderr(&out));
    let after = read(disk.path());
    assert_written_at(&before, &after, MIB as usize, &image.bytes, &image.mapped);
    // A second copy finds every chunk unchanged.
    let out = copy_at("1MiB", &image, disk.path(), &["--skip-unchanged"]);
    assert_ok(&out);
    let text = stderr(&out);
    let line = text
        .lines()
        .find(|l| l.contains("skip-unchanged:"))
        .unwrap_or_else(|| panic!("no skip-unchanged line:\n{text}"));
    assert!(line.contains("wrote 0 bytes"), "{line}");
    assert!(read(disk.path()) == after, "the device changed");
    // --zero-holes zeroes the image's holes at the offset, nothing outside it.
    let out = copy_at("1MiB", &image, disk.path(), &["--zero-holes"]);
    assert_ok(&out);
    let zeroed = read(disk.path());
    let window = MIB as usize..(MIB + image.size()) as usize;
    assert!(
        zeroed[window.clone()] == image.bytes[..],
        "the window is not the image"
    );
    assert!(
        zeroed[..window.start] == before[..window.start],
        "the head changed"
    );
    assert!(
        zeroed[window.end..] == before[window.end..],
        "the tail changed"
    );
}

// ---------------------------------------------------------------------------------
// Regular files

#[test]
fn a_regular_file_dest_keeps_its_head_and_tail_and_grows_only_when_shorter() {
    let dir = tempdir();
    let image = Image::small(dir.path());
    // Longer than the seek plus the image: its length and its other bytes are kept.
    let long = dir.path().join("disk.img");
    fs::write(&long, random_bytes(3, 12 * MIB as usize)).expect("write");
    let before = read(&long);
    assert_ok(&copy_at("2M", &image, &long, &[]));
    assert_written_at(
        &before,
        &read(&long),
        2 * MIB as usize,
        &image.bytes,
        &image.mapped,
    );
    assert_ok(&verify_at("2M", &image.bmap, &long));
    // Shorter: made just long enough, its head kept, the new part holes.
    let short = dir.path().join("short.img");
    fs::write(&short, random_bytes(4, 3 * MIB as usize)).expect("write");
    let head = read(&short);
    assert_ok(&copy_at("2M", &image, &short, &[]));
    let after = read(&short);
    assert_eq!(after.len() as u64, 2 * MIB + image.size());
    let mut expected = head.clone();
    expected.resize(after.len(), 0);
    assert_written_at(
        &expected,
        &after,
        2 * MIB as usize,
        &image.bytes,
        &image.mapped,
    );
    // New: created sparse, its first bytes a hole.
    let new = dir.path().join("new.img");
    assert_ok(&copy_at("64M", &image, &new, &[]));
    let after = read(&new);
    assert_eq!(after.len() as u64, 64 * MIB + image.size());
    let zeros = vec![0u8; after.len()];
    assert_written_at(
        &zeros,
        &after,
        64 * MIB as usize,
        &image.bytes,
        &image.mapped,
    );
    let mapped: usize = image.mapped.iter().map(|(a, b)| b - a).sum();
    assert!(
        allocated(&new) < mapped as u64 + MIB,
        "the new file is not sparse: {} bytes allocated for {mapped} mapped",
        allocated(&new)
    );
    assert_ok(&verify_at("64M", &image.bmap, &new));
    let out = verify_at("60M", &image.bmap, &new);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // --seek 0 writes into the file too: its tail is kept, not truncated.
    fs::write(&long, &before).expect("write");
    assert_ok(&copy_at("0", &image, &long, &[]));
    assert_written_at(&before, &read(&long), 0, &image.bytes, &image.mapped);
}

#[test]
fn a_failed_copy_at_a_seek_keeps_an_existing_file_and_removes_a_new_one() {
    let dir = tempdir();
    let image = Image::small(dir.path());
    // A byte of the image's last range no longer matches its checksum.
    let (start, _) = *image.mapped.last().expect("ranges");
    flip_byte(&image.path, start as u64 + 5);
    let kept = dir.path().join("disk.img");
    fs::write(&kept, random_bytes(8, 5 * MIB as usize)).expect("write");
    let before = read(&kept);
    let out = copy_at("1M", &image, &kept, &[]);
    assert_fails(&out, &["keeps its bytes before offset 1048576", "checksum"]);
    let after = read(&kept);
    assert_eq!(after.len(), before.len(), "the old length is not back");
    assert!(
        after[..MIB as usize] == before[..MIB as usize],
        "the head changed"
    );
    let new = dir.path().join("new.img");
    let out = copy_at("1M", &image, &new, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!new.exists(), "the new file was left behind");
}

#[test]
fn bad_offsets_are_refused_before_anything_is_written() {
    let dir = tempdir();
    let image = Image::small(dir.path());
    let dest = dir.path().join("disk.img");
    fs::write(&dest, random_bytes(2, MIB as usize)).expect("write");
    let before = read(&dest);
    for (seek, needle) in [
        ("-512", "is not a byte count"),
        ("1.5M", "is not a unit"),
        ("12Q", "'Q' in '12Q' is not a unit"),
        ("0x200", "is not a unit"),
        ("99999999999999999999", "too large"),
        ("17179869184G", "too large"),
        ("", "is not a byte count"),
    ] {
        let out = copy_at(seek, &image, &dest, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--seek {seek:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(needle),
            "--seek {seek:?}: {}",
            stderr(&out)
        );
        assert_no_panic(&stderr(&out));
    }
    for seek in ["1000", "2048", "1kB"] {
        let out = copy_at(seek, &image, &dest, &[]);
        assert_fails(&out, &["is not a multiple of", "nearest offsets"]);
    }
    // Without a bmap, a multiple of 512 is enough; anything else is refused.
    let out = run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        OsStr::new("--seek"),
        OsStr::new("100"),
        image.path.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_fails(&out, &["not a multiple of 512 bytes"]);
    // An offset whose image would end past the largest file offset: refused, not
    // wrapped.
    for seek in ["8388608T", "18446744073709547520"] {
        let out = copy_at(seek, &image, &dest, &[]);
        assert_fails(&out, &["beyond the largest offset"]);
    }
    assert!(read(&dest) == before, "DEST changed");
    // Neither a file nor a block device: cannot be written at an offset.
    let out = copy_at("4096", &image, Path::new("/dev/null"), &[]);
    assert_fails(&out, &["needs a block device or a regular file"]);
}

#[test]
fn a_seek_with_no_bmap_writes_the_whole_image_at_a_sector_offset() {
    let dir = tempdir();
    let image = Image::small(dir.path());
    let dest = dir.path().join("disk.img");
    fs::write(&dest, random_bytes(12, 8 * MIB as usize)).expect("write");
    let mut expected = read(&dest);
    let out = run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        OsStr::new("--seek"),
        OsStr::new("1536"),
        image.path.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_ok(&out);
    expected[1536..1536 + image.bytes.len()].copy_from_slice(&image.bytes);
    assert!(
        read(&dest) == expected,
        "not the whole image at 1536, the rest kept"
    );
}

// ---------------------------------------------------------------------------------
// Direct writes at a seek

/// A sink around the writer that notes how many bytes went through the page cache
/// before the writer is finished.
struct Watch {
    writer: DestWriter,
    buffered: Option<u64>,
}

impl RangeSink for Watch {
    fn alignment(&self) -> usize {
        self.writer.alignment()
    }
    fn shift(&self) -> u64 {
        self.writer.shift()
    }
    fn begin(&mut self, span: &Span) -> Result<(), copy::Error> {
        self.writer.begin(span)
    }
    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), copy::Error> {
        self.writer.chunk(data, offset)
    }
    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), copy::Error> {
        self.writer.end(span, verdict)
    }
    fn finish(&mut self, image_size: u64) -> Result<(), copy::Error> {
        self.buffered = self.writer.dest().map(Dest::buffered_bytes);
        self.writer.finish(image_size)
    }
}

/// Copies `image` at `seek` into a loop device with the library; returns the bytes
/// that went through the page cache and the device's bytes.
fn copy_with_the_engine(image: &Image, seek: u64, disk: &LoopDevice) -> (u64, Vec<u8>) {
    let bmap = bmap::format::parse(&read(&image.bmap)).expect("bmap").bmap;
    let opened = bmap::source::open(&image.path).expect("open the image");
    let plan = copy::Plan::new(opened.image, Some(bmap), None).expect("plan");
    let options = dest::Options {
        seek: Some(seek),
        ..plan.dest_options(false)
    };
    let dest = Dest::open(disk.path(), &options).expect("open the device");
    assert!(dest.is_direct(), "a loop device takes O_DIRECT");
    let mut sink = Watch {
        writer: DestWriter::new(dest),
        buffered: None,
    };
    plan.run(&mut sink, &mut copy::NoEvents, &copy::Options::default())
        .expect("copy");
    (sink.buffered.expect("finished"), read(disk.path()))
}

#[test]
fn direct_writes_stay_direct_at_a_seek_of_512_bytes_and_of_1_mib() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    // 512-byte blocks: ranges from and to odd sectors, and across several chunks.
    let small = Image::new(
        dir.path(),
        6 * MIB,
        512,
        &[(1, 9), (17, 5000), (9000, 12287)],
    );
    let large_dir = dir.path().join("large");
    fs::create_dir(&large_dir).expect("mkdir");
    let large = Image::small(&large_dir);
    for (image, seek) in [(&small, 512), (&large, MIB), (&small, MIB + 3584)] {
        let disk = LoopDevice::new(16 * MIB, 0x77);
        let before = read(disk.path());
        let (buffered, after) = copy_with_the_engine(image, seek, &disk);
        assert_written_at(&before, &after, seek as usize, &image.bytes, &image.mapped);
        // At most the partial 4096-byte blocks at each range's two ends are buffered;
        // with buffers placed by the image's offsets, every byte would be.
        let limit = image.mapped.len() as u64 * 2 * 4096;
        assert!(
            buffered <= limit,
            "seek {seek}: {buffered} bytes went through the page cache (at most {limit} \
             expected)"
        );
        // verify --seek reads the same way: by the device's offsets, directly.
        let out = run([
            OsStr::new("verify"),
            OsStr::new("--json"),
            OsStr::new("--seek"),
            OsStr::new(&seek.to_string()),
            OsStr::new("--bmap"),
            image.bmap.as_os_str(),
            disk.path().as_os_str(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let read_buffered = report["bytes_buffered"].as_u64().expect("bytes_buffered");
        assert!(
            read_buffered <= limit,
            "verify --seek {seek}: {read_buffered} bytes read through the page cache"
        );
    }
}
