//! The copy tests' part of the harness (`copy.rs`, `devices.rs`, `edge.rs`,
//! `decoders.rs`, `wild_bmaps.rs`). What every test binary shares (the environment
//! rule, the clean command, the run assertions, waits, data generators, procfs) is the
//! `test_support` crate's, re-exported here under the names these tests have always
//! used. Only what is theirs lives here: running the real binary with stdin from a file
//! or a pipe, the test data (made at test time by `common/testdata.rs`; the reference's
//! own data in `../shared/conformance` only for the extra conformance tests), a bmap
//! reader independent of the product's parser, sparseness checks, and guards that undo
//! what a test set up (loop devices, mounts) even when the test fails.
//!
//! Environment rule: a test that needs root, loop devices, a mount, `python3`, the
//! reference tool or `../shared/conformance` asks [`require`] first. When the need is
//! not met the test is skipped with a note on stderr, unless `BMAPTOOL_TEST_STRICT=1`
//! (CI), where it fails.

#[path = "../common/testdata.rs"]
mod testdata;

mod sparse;
#[allow(
    unused_imports,
    reason = "each test file that includes this harness uses its own subset"
)]
pub use sparse::{allocated, assert_sparse_as, data_pages, fiemap_extents, on_tmpfs};

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
#[allow(
    unused_imports,
    reason = "each test file that includes this harness uses its own subset"
)]
pub use test_support::procfs::{self, HANG};
#[allow(
    unused_imports,
    reason = "the names the copy tests have always used; each uses its own subset"
)]
pub use test_support::{
    KillOnDrop, MIB, REFERENCE, STRICT_VAR, assert_fails, assert_no_panic, clean_command,
    eventually, flip_byte, is_root, merge, need_conformance, need_loop_devices, need_mount,
    need_python, need_reference, random_bytes, read, require, runs, signal, stderr, strict,
    succeeds, wait_for, write_filled,
};
#[allow(
    unused_imports,
    reason = "each test file that includes this harness uses its own subset"
)]
pub use testdata::{
    BLOCK, GOLDEN_IMAGES, TEST_IMAGE_MAPPED_BLOCKS, TEST_IMAGE_RANGES, TEST_IMAGE_SIZE,
    element_text, fixture_bmap, golden_bytes, golden_fixture_bmap, self_checksum_holds,
    test_image_bytes,
};

/// The four bmap versions the test data comes in.
pub const VERSIONS: [&str; 4] = ["1.2", "1.3", "1.4", "2.0"];
/// SHA-256 of the generated `test.image` (pins the generator: the same on every machine).
pub const TEST_IMAGE_SHA256: &str =
    "164a8efa06a5ceb2bc537f615ddeca0cae45dd050c7dbf2a29a1e854f10f2855";
/// SHA-256 of the reference's own `test.image` (`../shared/conformance`).
pub const REFERENCE_TEST_IMAGE_SHA256: &str =
    "d1ff17fa5f20ff1c4fffa079fc466819fcd0b3308ac89e7c13a91da948e09f5b";
/// Page size used to describe allocation (all the test bmaps use 4 KiB blocks).
pub const PAGE: u64 = 4096;

// ---------------------------------------------------------------------------------
// Paths and data

/// `../shared/conformance`, read-only: the reference's own test data. Only the extra
/// conformance tests read it, after [`need_conformance`].
pub fn conformance() -> PathBuf {
    testdata::conformance_path()
}

/// The bmap of `test.image` in format `version`: written by the test fixture from the
/// format's rules (a file under `target/tmp`; do not modify it, copy it).
pub fn test_bmap(version: &str) -> PathBuf {
    testdata::test_image_bmap(version)
}

/// The reference's own bmap of its `test.image` in format `version` (conformance).
pub fn reference_test_bmap(version: &str) -> PathBuf {
    conformance()
        .join("reference-test-data")
        .join(format!("test.image.bmap.v{version}"))
}

/// A fresh directory on the system's temporary file system.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("bmaptool-copy-test-")
        .tempdir()
        .expect("cannot make a temporary directory")
}

/// Writes the generated `test.image` into `dir/test.image`; returns its path and bytes.
pub fn test_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("test.image");
    let bytes = test_image_bytes();
    assert_eq!(bytes.len() as u64, TEST_IMAGE_SIZE);
    assert_eq!(
        testdata::sha256_hex(&bytes),
        TEST_IMAGE_SHA256,
        "the test image generator no longer makes the same bytes"
    );
    fs::write(&path, &bytes).expect("write test.image");
    (path, bytes)
}

/// Decompresses the reference's own `test.image.gz` (conformance) into
/// `dir/test.image` with the real gzip, checks it, returns its path and bytes.
pub fn reference_test_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("test.image");
    let out = succeeds(
        Command::new("gzip")
            .arg("-dc")
            .arg(conformance().join("reference-test-data/test.image.gz")),
    );
    fs::write(&path, &out.stdout).expect("write test.image");
    assert_eq!(out.stdout.len() as u64, TEST_IMAGE_SIZE);
    assert_eq!(sha256(&path), REFERENCE_TEST_IMAGE_SHA256);
    (path, out.stdout)
}

/// Writes the six golden images (the bytes of `golden/make-images.py`) into `dir`.
pub fn golden_images(dir: &Path) {
    testdata::write_golden_images(dir);
}

/// SHA-256 of a file, by `sha256sum`.
pub fn sha256(path: &Path) -> String {
    let out = succeeds(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_owned()
}

/// Reads the first `len` bytes of a file or device.
#[track_caller]
pub fn read_prefix(path: &Path, len: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|f| f.take(len).read_to_end(&mut buf))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    buf
}

/// `mkfifo PATH`.
pub fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {} failed", path.display());
}

// ---------------------------------------------------------------------------------
// Bmaps, read by hand (independent of the product's parser)

/// What a test needs to know about a bmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmapFacts {
    /// `ImageSize`.
    pub image_size: u64,
    /// `BlockSize`.
    pub block_size: u64,
    /// The `<Range>`s, inclusive block numbers, in file order.
    pub ranges: Vec<(u64, u64)>,
}

impl BmapFacts {
    /// Reads a bmap file.
    pub fn read(path: &Path) -> BmapFacts {
        let text = String::from_utf8(read(path)).expect("bmap is UTF-8");
        let number = |element: &str| -> u64 {
            let open = format!("<{element}>");
            let start = text.find(&open).expect("element present") + open.len();
            let end = start + text[start..].find('<').expect("element closes");
            text[start..end]
                .trim()
                .parse()
                .expect("element is a number")
        };
        let mut ranges = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("<Range") {
            rest = &rest[at..];
            let body_start = rest.find('>').expect("<Range> closes") + 1;
            let body_end = rest.find("</Range>").expect("</Range> present");
            let body = rest[body_start..body_end].trim();
            let (a, b) = body.split_once('-').unwrap_or((body, body));
            ranges.push((
                a.trim().parse().expect("range start"),
                b.trim().parse().expect("range end"),
            ));
            rest = &rest[body_end..];
        }
        BmapFacts {
            image_size: number("ImageSize"),
            block_size: number("BlockSize"),
            ranges,
        }
    }

    /// The mapped ranges in 4 KiB pages, merged, clipped at the image's end.
    pub fn pages(&self) -> Vec<(u64, u64)> {
        let last_page = self.image_size.div_ceil(PAGE).saturating_sub(1);
        merge(self.ranges.iter().map(|&(a, b)| {
            let first = a * self.block_size / PAGE;
            let last = ((b + 1) * self.block_size).div_ceil(PAGE) - 1;
            (first, last.min(last_page))
        }))
    }

    /// Whether byte `offset` lies in a mapped block.
    pub fn is_mapped(&self, offset: u64) -> bool {
        let block = offset / self.block_size;
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&block))
    }
}

/// What a bmap says, read by hand, for comparing two bmaps whatever their comments
/// and layout: the version, the numbers, the checksum type, every range with its
/// digest attribute (`chksum` or `sha1`), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmapValues {
    /// The `version` attribute.
    pub version: String,
    /// `ImageSize`, `BlockSize`, `BlocksCount`, `MappedBlocksCount`, `ChecksumType`.
    pub elements: Vec<Option<String>>,
    /// `(range text, digest)` per `<Range>`.
    pub ranges: Vec<(String, Option<String>)>,
}

impl BmapValues {
    /// Reads a bmap file.
    pub fn read(path: &Path) -> BmapValues {
        let text = String::from_utf8(read(path)).expect("bmap is UTF-8");
        let version = text
            .split_once("<bmap version=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .expect("a version attribute")
            .0
            .to_owned();
        let elements = [
            "ImageSize",
            "BlockSize",
            "BlocksCount",
            "MappedBlocksCount",
            "ChecksumType",
        ]
        .iter()
        .map(|name| element_text(&text, name))
        .collect();
        let mut ranges = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("<Range") {
            rest = &rest[at..];
            let tag_end = rest.find('>').expect("<Range> closes");
            let digest = rest[..tag_end]
                .split_once("=\"")
                .and_then(|(_, value)| value.split_once('"'))
                .map(|(value, _)| value.to_owned());
            let body_end = rest.find("</Range>").expect("</Range> present");
            ranges.push((rest[tag_end + 1..body_end].trim().to_owned(), digest));
            rest = &rest[body_end..];
        }
        BmapValues {
            version,
            elements,
            ranges,
        }
    }
}

// ---------------------------------------------------------------------------------
// Running the binary

/// `bmaptool` with the harness's clean environment ([`test_support::clean_command`]).
pub fn bmaptool() -> Command {
    test_support::clean_command(env!("CARGO_BIN_EXE_bmaptool"))
}

/// Runs `bmaptool ARGS...`.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    bmaptool().args(args).output().expect("bmaptool runs")
}

/// Runs `bmaptool ARGS... < FILE` (standard input redirected from a file).
pub fn run_stdin_file<I, S>(args: I, file: &Path) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    bmaptool()
        .args(args)
        .stdin(File::open(file).expect("open stdin file"))
        .output()
        .expect("bmaptool runs")
}

/// Runs `bmaptool ARGS...` with `bytes` fed through a real pipe by a writer thread.
pub fn run_stdin_pipe<I, S>(args: I, bytes: Vec<u8>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = bmaptool()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bmaptool starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    // The tool may stop reading early (a refusal): a broken pipe is no test failure.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let output = child.wait_with_output().expect("bmaptool runs");
    feeder.join().expect("the feeder thread does not panic");
    output
}

/// Asserts success (exit 0, nothing on stdout, no error line, no panic).
#[track_caller]
pub fn assert_ok(output: &Output) {
    test_support::assert_ok(output);
}

// ---------------------------------------------------------------------------------
// Guards

/// A loop device over a backing file in its own temporary directory; detached (and
/// the file removed) on drop.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    backing: PathBuf,
    /// The scheduler when the device was set up; put back on drop (loop devices
    /// outlive their binding, and a test may change it).
    scheduler: String,
    _dir: TempDir,
}

impl LoopDevice {
    /// A device of `size` bytes, filled with `fill` (zero: a sparse backing file).
    pub fn new(size: u64, fill: u8) -> LoopDevice {
        let dir = tempdir();
        let backing = dir.path().join("backing.img");
        if fill == 0 {
            File::create(&backing)
                .and_then(|f| f.set_len(size))
                .expect("make the backing file");
        } else {
            write_filled(&backing, size, fill);
        }
        let out = succeeds(Command::new("losetup").args(["-f", "--show"]).arg(&backing));
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(path.starts_with("/dev/"), "losetup printed {path:?}");
        let mut device = LoopDevice {
            path,
            backing,
            scheduler: String::new(),
            _dir: dir,
        };
        device.scheduler = device.scheduler();
        device
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backing file: what reached it went through the device to its medium.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// `loopN`.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .expect("device name")
            .to_string_lossy()
            .into_owned()
    }

    /// `/sys/block/loopN/FILE`, trimmed.
    #[track_caller]
    pub fn sysfs(&self, file: &str) -> String {
        self.try_sysfs(file)
            .unwrap_or_else(|| panic!("cannot read /sys/block/{}/{file}", self.name()))
    }

    fn try_sysfs(&self, file: &str) -> Option<String> {
        let path = PathBuf::from("/sys/block").join(self.name()).join(file);
        fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
    }

    /// The current I/O scheduler (the bracketed entry; empty when unreadable).
    pub fn scheduler(&self) -> String {
        let text = self.try_sysfs("queue/scheduler").unwrap_or_default();
        text.split_whitespace()
            .find_map(|s| s.strip_prefix('[').and_then(|s| s.strip_suffix(']')))
            .unwrap_or(&text)
            .to_owned()
    }

    /// Tries to select scheduler `name`; whether it is now selected.
    pub fn set_scheduler(&self, name: &str) -> bool {
        let path = PathBuf::from("/sys/block")
            .join(self.name())
            .join("queue/scheduler");
        fs::write(path, name).is_ok() && self.scheduler() == name
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if self.scheduler() != self.scheduler {
            let _ = self.set_scheduler(&self.scheduler.clone());
        }
        let path = self.path.to_string_lossy().into_owned();
        // A just-closed device can be briefly busy (udev probing it): retry.
        let detached = eventually(Duration::from_secs(30), || runs("losetup", &["-d", &path]));
        if !detached {
            eprintln!("warning: cannot detach {path}");
        }
    }
}

/// A mount on a fresh temporary directory; unmounted on drop.
#[derive(Debug)]
pub struct Mount {
    dir: TempDir,
}

impl Mount {
    /// `mount ARGS... DIR`.
    pub fn new(args: &[&OsStr]) -> Mount {
        let dir = tempdir();
        succeeds(Command::new("mount").args(args).arg(dir.path()));
        Mount { dir }
    }

    /// A tmpfs with mount options `options` (e.g. `size=256k`).
    pub fn tmpfs(options: &str) -> Mount {
        Mount::new(&[
            OsStr::new("-t"),
            OsStr::new("tmpfs"),
            OsStr::new("-o"),
            OsStr::new(options),
            OsStr::new("tmpfs"),
        ])
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let unmounted = eventually(Duration::from_secs(30), || runs("umount", &[&dir]))
            || runs("umount", &["-l", &dir]);
        if !unmounted {
            eprintln!("warning: cannot unmount {dir}");
        }
    }
}

/// A sparse image `DIR/disk.img` of `size` bytes with random data (seeded by `seed`)
/// at each `(seed, offset, len)`, synced, and its bmap `DIR/disk.img.bmap` made by our
/// `create`; returns both paths.
#[allow(
    dead_code,
    reason = "not every test binary that includes this module uses it"
)]
pub fn sparse_image_with_bmap(
    dir: &Path,
    size: u64,
    chunks: &[(u64, u64, usize)],
) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::FileExt;
    let image = dir.join("disk.img");
    let file = File::create(&image).expect("create the image");
    file.set_len(size).expect("size the image");
    for &(seed, offset, len) in chunks {
        file.write_all_at(&random_bytes(seed, len), offset)
            .expect("write image data");
    }
    file.sync_all().expect("sync the image");
    let bmap = dir.join("disk.img.bmap");
    let output = run([
        OsStr::new("create"),
        OsStr::new("-o"),
        bmap.as_os_str(),
        image.as_os_str(),
    ]);
    assert_ok(&output);
    (image, bmap)
}
