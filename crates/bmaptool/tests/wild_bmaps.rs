//! Black-box tests of `bmaptool copy` with bmaps from the wild: what tools other than
//! bmaptool write and the reference copies (ranges past the image's end, ranges out of
//! order or listed twice: accepted, verified, one warning each), what the reference
//! finds only after writing (a wrong `MappedBlocksCount`: refused here before the
//! destination is touched), and a bmap with a million ranges (parsed in linear time
//! and memory, measured on the real binary).
//!
//! Tests that need loop devices, the reference tool, gzip or GNU time skip when those
//! are missing, unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code)] // the copy tests' harness; this file uses part of it
mod copy_support;

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bmap::format::ChecksumKind;
use copy_support::*;

const BLOCK: u64 = 4096;

/// An image of 11 blocks (the last 100 bytes long) on disk, mapped where `mapped` says
/// (pseudo-random bytes) and zero elsewhere.
struct Image {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Image {
    fn new(dir: &Path, mapped: &[(u64, u64)]) -> Image {
        let size = 10 * BLOCK + 100;
        let mut bytes = vec![0u8; size as usize];
        let data = random_bytes(42, bytes.len());
        for &(a, b) in mapped {
            let (start, end) = (a * BLOCK, ((b + 1) * BLOCK).min(size));
            bytes[start as usize..end as usize]
                .copy_from_slice(&data[start as usize..end as usize]);
        }
        let path = dir.join("wild.img");
        let file = File::create(&path).expect("create image");
        file.set_len(size).expect("size image");
        for &(a, b) in mapped {
            let (start, end) = (a * BLOCK, ((b + 1) * BLOCK).min(size));
            file.write_all_at(&bytes[start as usize..end as usize], start)
                .expect("write image");
        }
        Image { path, bytes }
    }

    /// SHA-256 of blocks `a..=b`, clipped at the image's end (as a bmap's digest).
    fn digest(&self, a: u64, b: u64) -> String {
        let len = self.bytes.len() as u64;
        let (start, end) = ((a * BLOCK).min(len), ((b + 1) * BLOCK).min(len));
        ChecksumKind::Sha256
            .digest(&self.bytes[start as usize..end as usize])
            .to_hex()
    }
}

/// A 2.0 bmap of `image` listing `ranges` as given, each with the digest of the bytes
/// the image has there, and `MappedBlocksCount` = `mapped_count`.
fn bmap_text(image: &Image, ranges: &[(u64, u64)], mapped_count: u64) -> String {
    let size = image.bytes.len() as u64;
    let mut text = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n    <ImageSize> {size} </ImageSize>\n    \
         <BlockSize> {BLOCK} </BlockSize>\n    <BlocksCount> {} </BlocksCount>\n    \
         <MappedBlocksCount> {mapped_count} </MappedBlocksCount>\n    \
         <ChecksumType> sha256 </ChecksumType>\n    <BmapFileChecksum> {} </BmapFileChecksum>\n    \
         <BlockMap>\n",
        size.div_ceil(BLOCK),
        "0".repeat(64)
    );
    for &(a, b) in ranges {
        let digest = image.digest(a, b);
        text += &format!("        <Range chksum=\"{digest}\"> {a}-{b} </Range>\n");
    }
    text += "    </BlockMap>\n</bmap>\n";
    with_self_checksum(text)
}

/// Fills in a 2.0 bmap's own checksum (the file hashed with the digest as zeros).
fn with_self_checksum(text: String) -> String {
    let zeros = "0".repeat(64);
    let digest = ChecksumKind::Sha256.digest(text.as_bytes()).to_hex();
    text.replacen(&zeros, &digest, 1)
}

/// `copy --bmap BMAP IMAGE DEST`.
fn copy_args(bmap: &Path, image: &Path, dest: &Path) -> Vec<OsString> {
    test_support::with_bmap(bmap, image, dest)
}

/// The `WARNING` lines of a run.
fn warnings(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("WARNING")).collect()
}

/// What the wild tool wrote: the last range runs 4 blocks past the image's last block
/// (10), its digest covers the bytes the image has, and the count is what the reference
/// counts (the ranges cut at the image's end).
const PAST_END: [(u64, u64); 2] = [(0, 3), (6, 14)];
const PAST_END_COUNT: u64 = 9;
const MAPPED: [(u64, u64); 2] = [(0, 3), (6, 10)];

#[test]
fn a_range_past_the_end_copies_and_verifies_with_one_warning() {
    let dir = tempdir();
    let image = Image::new(dir.path(), &MAPPED);
    let bmap = dir.path().join("wild.bmap");
    fs::write(&bmap, bmap_text(&image, &PAST_END, PAST_END_COUNT)).expect("write bmap");
    let dest = dir.path().join("out.img");
    let out = run(copy_args(&bmap, &image.path, &dest));
    assert_ok(&out);
    let text = stderr(&out);
    let warned = warnings(&text);
    assert_eq!(warned.len(), 1, "one warning:\n{text}");
    assert!(
        warned[0].contains(
            "ranges run past the end of the image, which has 11 blocks (the first is 6-14): \
             1 cut at the image's end, where its checksum must end too"
        ),
        "{text}"
    );
    assert!(text.contains("2 of 2 ranges verified"), "{text}");
    assert_eq!(read(&dest), image.bytes);
}

/// The same through a stream (gzip), where nothing can be read past the end either.
#[test]
fn a_range_past_the_end_copies_from_a_compressed_image() {
    if !require(runs("gzip", &["--version"]), "gzip") {
        return;
    }
    let dir = tempdir();
    let image = Image::new(dir.path(), &MAPPED);
    let bmap = dir.path().join("wild.bmap");
    fs::write(&bmap, bmap_text(&image, &PAST_END, PAST_END_COUNT)).expect("write bmap");
    assert!(runs("gzip", &["-k", &image.path.to_string_lossy()]));
    let dest = dir.path().join("out.img");
    let out = run(copy_args(&bmap, &dir.path().join("wild.img.gz"), &dest));
    assert_ok(&out);
    assert_eq!(warnings(&stderr(&out)).len(), 1);
    assert_eq!(read(&dest), image.bytes);
}

/// Clamping does not weaken verification: a byte changed in the part of the range the
/// image has fails the copy, naming the range as cut.
#[test]
fn a_wrong_image_with_a_range_past_the_end_still_fails() {
    let dir = tempdir();
    let image = Image::new(dir.path(), &MAPPED);
    let bmap = dir.path().join("wild.bmap");
    fs::write(&bmap, bmap_text(&image, &PAST_END, PAST_END_COUNT)).expect("write bmap");
    flip_byte(&image.path, 10 * BLOCK + 99);
    let dest = dir.path().join("out.img");
    let out = run(copy_args(&bmap, &image.path, &dest));
    assert_fails(&out, &["checksum mismatch for blocks range 6-10"]);
    assert!(!dest.exists(), "a failed copy leaves no new file behind");
}

/// Out of order and listed twice: the reference copies this from a raw file but fails
/// mid-copy on a stream. Sorted and copied once here, from either.
#[test]
fn unordered_and_duplicate_ranges_copy_with_a_warning_each() {
    if !require(runs("gzip", &["--version"]), "gzip") {
        return;
    }
    let dir = tempdir();
    let image = Image::new(dir.path(), &MAPPED);
    let bmap = dir.path().join("wild.bmap");
    let listed = [(6, 10), (0, 3), (6, 10)];
    fs::write(&bmap, bmap_text(&image, &listed, 14)).expect("write bmap");
    assert!(runs("gzip", &["-k", &image.path.to_string_lossy()]));
    for source in ["wild.img", "wild.img.gz"] {
        let dest = dir.path().join(format!("out-{source}"));
        let out = run(copy_args(&bmap, &dir.path().join(source), &dest));
        assert_ok(&out);
        let text = stderr(&out);
        let warned = warnings(&text);
        assert_eq!(warned.len(), 2, "{source}:\n{text}");
        assert!(warned[0].contains("not in ascending order"), "{text}");
        assert!(warned[1].contains("each block is copied once"), "{text}");
        assert_eq!(read(&dest), image.bytes, "{source}");
    }
}

/// The bmap of [`PAST_END`] with a count that includes the blocks past the end: the
/// reference overwrites the destination, then fails ("does not belong to this image").
fn wrong_count_bmap(dir: &Path, image: &Image) -> PathBuf {
    let bmap = dir.join("wrong-count.bmap");
    fs::write(&bmap, bmap_text(image, &PAST_END, 13)).expect("write bmap");
    bmap
}

#[test]
fn a_wrong_mapped_count_is_refused_and_an_existing_file_keeps_its_bytes() {
    let dir = tempdir();
    let image = Image::new(dir.path(), &MAPPED);
    let bmap = wrong_count_bmap(dir.path(), &image);
    let dest = dir.path().join("precious.img");
    write_filled(&dest, 3 * MIB, 0xA5);
    let before = fs::metadata(&dest)
        .expect("stat")
        .modified()
        .expect("mtime");
    let out = run(copy_args(&bmap, &image.path, &dest));
    assert_fails(
        &out,
        &["MappedBlocksCount says 13 blocks are mapped, but the ranges hold 9"],
    );
    assert_eq!(read(&dest), vec![0xA5; 3 * MIB as usize], "DEST untouched");
    let after = fs::metadata(&dest)
        .expect("stat")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "DEST not even opened for writing");
}

#[test]
fn a_wrong_mapped_count_is_refused_and_a_loop_device_keeps_its_bytes() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let image = Image::new(dir.path(), &MAPPED);
    let bmap = wrong_count_bmap(dir.path(), &image);
    let device = LoopDevice::new(MIB, 0x5A);
    let out = run(copy_args(&bmap, &image.path, device.path()));
    assert_fails(&out, &["says 13 blocks", "hold 9"]);
    assert_eq!(read_prefix(device.path(), MIB), vec![0x5A; MIB as usize]);
}

/// Pins the split against the reference itself: it copies the bmap with a range past
/// the end (so it must be accepted here), and writes over the destination before
/// failing on the wrong count (so refusing it up front loses nothing).
#[test]
fn the_reference_copies_the_past_end_bmap_and_fails_late_on_the_wrong_count() {
    if !need_reference() {
        return;
    }
    let dir = tempdir();
    let image = Image::new(dir.path(), &MAPPED);
    let bmap = dir.path().join("wild.bmap");
    fs::write(&bmap, bmap_text(&image, &PAST_END, PAST_END_COUNT)).expect("write bmap");
    let dest = dir.path().join("reference.img");
    let out = Command::new(REFERENCE)
        .args(copy_args(&bmap, &image.path, &dest))
        .stdin(Stdio::null())
        .output()
        .expect("the reference runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(&dest), image.bytes);

    let wrong = wrong_count_bmap(dir.path(), &image);
    write_filled(&dest, 3 * MIB, 0xA5);
    let out = Command::new(REFERENCE)
        .args(copy_args(&wrong, &image.path, &dest))
        .stdin(Stdio::null())
        .output()
        .expect("the reference runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not belong to this image"),
        "{}",
        stderr(&out)
    );
    assert_ne!(
        read(&dest),
        vec![0xA5; 3 * MIB as usize],
        "the reference wrote first"
    );
}

/// Parsing was quadratic in the range count (60,000 ranges: 27 s; 160,000 did not
/// finish in 2 minutes), and `create` writes such bmaps for fragmented images. A
/// million ranges now parse in seconds; were it quadratic again this would run for
/// hours, and the deadline below turns that into a failure. Peak memory is measured
/// by GNU time on the real binary and must stay proportional to the file. A million
/// ranges is kept on purpose: just under the range cap (2^20, docs/limits.md).
#[test]
fn a_bmap_with_a_million_ranges_parses_in_seconds_with_bounded_memory() {
    if !require(
        runs("/usr/bin/time", &["-f", "%M", "true"]),
        "GNU time (/usr/bin/time, Debian package time)",
    ) {
        return;
    }
    let dir = tempdir();
    let ranges: u64 = 1_000_000;
    let blocks = 2 * ranges;
    let digest = ChecksumKind::Sha256.digest(b"any").to_hex();
    let mut text = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n    <ImageSize> {} </ImageSize>\n    \
         <BlockSize> {BLOCK} </BlockSize>\n    <BlocksCount> {blocks} </BlocksCount>\n    \
         <MappedBlocksCount> {ranges} </MappedBlocksCount>\n    \
         <ChecksumType> sha256 </ChecksumType>\n    <BmapFileChecksum> {} </BmapFileChecksum>\n    \
         <BlockMap>\n",
        blocks * BLOCK,
        "0".repeat(64)
    );
    text.reserve(100 * ranges as usize);
    for block in (0..blocks).step_by(2) {
        text += "        <Range chksum=\"";
        text += &digest;
        text += "\"> ";
        text += &block.to_string();
        text += " </Range>\n";
    }
    text += "    </BlockMap>\n</bmap>\n";
    let text = with_self_checksum(text);
    let bmap = dir.path().join("million.bmap");
    fs::write(&bmap, &text).expect("write bmap");
    let file_len = text.len() as u64;
    drop(text);
    // A one-byte image: the copy stops right after the bmap is parsed and trusted.
    let image = dir.path().join("tiny.img");
    fs::write(&image, b"x").expect("write image");
    let rss_file = dir.path().join("rss");

    let mut child = clean_command("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_bmaptool"))
        .args(copy_args(&bmap, &image, &dir.path().join("out.img")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU time runs bmaptool");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
        text
    });
    let status = wait_for(&mut child, Duration::from_secs(600));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("parsing a million ranges did not finish in 10 minutes: quadratic again?");
    }
    let text = reader.join().expect("stderr reader");
    assert!(
        text.contains("8192000000") && !text.contains("cannot use bmap file"),
        "the bmap parsed and was trusted; the image size check stopped the copy:\n{text}"
    );
    let rss_kib: u64 = fs::read_to_string(&rss_file)
        .expect("GNU time wrote the peak memory")
        .trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a number of KiB");
    // The file, the ranges (88 bytes each) and little else: the ranges of a bmap as
    // `create` writes it are read without the XML tree (480 MB before, 200 now).
    let bound = 2 * file_len + 64 * MIB;
    eprintln!(
        "a {} MB bmap of {ranges} ranges: peak RSS {} MB (bound {} MB)",
        file_len >> 20,
        rss_kib >> 10,
        bound >> 20
    );
    assert!(
        rss_kib * 1024 <= bound,
        "peak RSS {rss_kib} KiB for a {file_len}-byte bmap"
    );
}
