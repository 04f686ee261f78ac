//! The create and README tests' part of the harness (`create.rs`, `readme.rs`): what
//! every test binary shares (the environment rule, the clean command, waits, data
//! generators, procfs) is the `test_support` crate's, re-exported here under the names
//! these tests have always used. Here: the command builder, scratch directories on a
//! chosen file system (ext4, tmpfs; loop- or tmpfs-mounted when root and the temporary
//! directory is something else), sparse image builders with an in-memory model of
//! their bytes, and bmap assertions.
//!
//! The test data (golden images, fixture bmaps) is made at test time by `testdata.rs`;
//! the reference's own golden output in `../shared/conformance` is read only by the
//! extra conformance tests.
//!
//! Environment rule: a test that needs root, a mount, `python3`, `fallocate`, the
//! reference tool or `../shared/conformance` calls [`require`]. When the need is not
//! met the test is skipped with a message on stderr, unless `BMAPTOOL_TEST_STRICT=1`
//! (set by CI), where it fails.

#![allow(
    dead_code,
    reason = "each test file uses its own subset of the harness"
)]

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use bmap::format::{Bmap, ChecksumKind, SelfCheck};
use tempfile::TempDir;

pub mod testdata;

#[allow(
    unused_imports,
    reason = "the names the create and readme tests have always used; each uses a subset"
)]
pub use test_support::{
    KillOnDrop, REFERENCE, STRICT_VAR, assert_no_panic, clean_command, have_reference, is_root,
    merge as merge_ranges, need_conformance, procfs, random_bytes, read, require, runs,
    send_signal, stderr, strict, succeeds,
};

/// Names of the golden images (the images of `golden/make-images.py`).
pub const GOLDEN_IMAGES: [&str; 6] = testdata::GOLDEN_IMAGES;

/// `statfs` magic of ext2/3/4.
pub const EXT4_MAGIC: u64 = 0xEF53;
/// `statfs` magic of tmpfs.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------
// Paths and environment probes

/// `../shared/conformance`, read-only: the reference's own data, for the extra
/// conformance tests (after [`need_conformance`]).
pub fn conformance_dir() -> PathBuf {
    testdata::conformance_path()
}

/// `../shared/conformance/golden`.
pub fn golden_dir() -> PathBuf {
    conformance_dir().join("golden")
}

/// The reference 3.9's bmap of golden image `name` (conformance).
pub fn golden_bmap(name: &str) -> Vec<u8> {
    let path = golden_dir().join(format!("{name}.bmap"));
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Whether `python3` is on PATH.
pub fn have_python3() -> bool {
    runs("python3", &["--version"])
}

/// The `statfs` magic of the file system holding `path` (via `stat -f`).
pub fn fs_magic(path: &Path) -> Option<u64> {
    let out = StdCommand::new("stat")
        .args(["-f", "-c", "%t"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).ok()
}

/// Runs a setup command that must succeed.
#[track_caller]
fn run_setup(program: &str, args: &[&str]) {
    succeeds(StdCommand::new(program).args(args));
}

// ---------------------------------------------------------------------------------
// Scratch directories

/// A fresh directory on a known file system, mounted for the test when needed
/// (unmounted and removed on drop).
#[derive(Debug)]
pub struct Scratch {
    dir: TempDir,
    mounted: bool,
    // Holds the loop-mounted file system image; dropped after the unmount.
    _backing: Option<TempDir>,
}

impl Scratch {
    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A plain temporary directory under `parent`.
    pub fn plain_in(parent: &Path) -> Scratch {
        Scratch {
            dir: temp_dir_in(parent),
            mounted: false,
            _backing: None,
        }
    }

    /// A plain temporary directory in the system's temporary directory.
    pub fn plain() -> Scratch {
        Scratch::plain_in(&std::env::temp_dir())
    }

    /// A directory for files whose file system does not matter, in memory when
    /// possible: under /dev/shm if it is tmpfs, else in the temporary directory.
    pub fn fast() -> Scratch {
        let shm = Path::new("/dev/shm");
        if fs_magic(shm) == Some(TMPFS_MAGIC) {
            Scratch::plain_in(shm)
        } else {
            Scratch::plain()
        }
    }

    /// A directory on ext4: the temporary directory if it is ext4, else (root) a
    /// loop-mounted 64 MiB ext4 with 4 KiB blocks. `None`: skipped.
    pub fn ext4() -> Option<Scratch> {
        let plain = Scratch::plain();
        if fs_magic(plain.path()) == Some(EXT4_MAGIC) {
            return Some(plain);
        }
        let tools = runs("mkfs.ext4", &["-V"]) && runs("mount", &["--version"]);
        if !require(
            is_root() && tools,
            "an ext4 directory (TMPDIR on ext4, or root with mkfs.ext4 and mount)",
        ) {
            return None;
        }
        let backing = temp_dir_in(&std::env::temp_dir());
        let image = backing.path().join("ext4.img");
        File::create(&image)
            .and_then(|f| f.set_len(64 * MIB))
            .expect("cannot make the ext4 backing file");
        run_setup(
            "mkfs.ext4",
            &["-q", "-F", "-b", "4096", &image.to_string_lossy()],
        );
        let scratch = Scratch {
            dir: mount(&["-o", "loop", &image.to_string_lossy()])?,
            mounted: true,
            _backing: Some(backing),
        };
        assert_eq!(
            fs_magic(scratch.path()),
            Some(EXT4_MAGIC),
            "the loop mount is not ext4"
        );
        Some(scratch)
    }

    /// A directory on tmpfs: under /dev/shm or the temporary directory if either is
    /// tmpfs, else (root) a fresh tmpfs mount. `None`: skipped.
    pub fn tmpfs() -> Option<Scratch> {
        for parent in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
            if fs_magic(&parent) == Some(TMPFS_MAGIC) {
                return Some(Scratch::plain_in(&parent));
            }
        }
        Scratch::mount_tmpfs("size=1g")
    }

    /// A fresh tmpfs mounted with `options` (e.g. `size=64k`); needs root. `None`: skipped.
    pub fn mount_tmpfs(options: &str) -> Option<Scratch> {
        if !require(is_root(), "root, to mount a tmpfs") {
            return None;
        }
        let scratch = Scratch {
            dir: mount(&["-t", "tmpfs", "-o", options, "tmpfs"])?,
            mounted: true,
            _backing: None,
        };
        assert_eq!(
            fs_magic(scratch.path()),
            Some(TMPFS_MAGIC),
            "the mount is not tmpfs"
        );
        Some(scratch)
    }

    /// File names in the directory, sorted.
    pub fn list(&self) -> Vec<String> {
        list_dir(self.path())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let ok = runs("umount", &[&self.dir.path().to_string_lossy()])
                || runs("umount", &["-l", &self.dir.path().to_string_lossy()]);
            if !ok {
                eprintln!("warning: cannot unmount {}", self.dir.path().display());
            }
        }
    }
}

/// A fresh temporary directory under `parent`.
fn temp_dir_in(parent: &Path) -> TempDir {
    tempfile::Builder::new()
        .prefix("bmaptool-test-")
        .tempdir_in(parent)
        .unwrap_or_else(|e| panic!("cannot make a directory in {}: {e}", parent.display()))
}

/// `mount ARGS... DIR` on a fresh directory; the caller unmounts it. `None`: the
/// mount failed (no permission in this container, no loop device...), skipped.
fn mount(args: &[&str]) -> Option<TempDir> {
    let dir = temp_dir_in(&std::env::temp_dir());
    let out = StdCommand::new("mount")
        .args(args)
        .arg(dir.path())
        .output()
        .expect("mount runs");
    let why = String::from_utf8_lossy(&out.stderr);
    require(
        out.status.success(),
        &format!("permission to mount ({args:?}: {})", why.trim()),
    )
    .then_some(dir)
}

/// File names in `dir`, sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("readable directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "lost+found")
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------
// Running the binary

/// The binary under test.
pub fn bin_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("bmaptool")
}

/// `bmaptool` with the harness's clean environment ([`test_support::clean_command`]).
pub fn bmaptool() -> assert_cmd::Command {
    assert_cmd::Command::from_std(test_support::clean_command(bin_path()))
}

/// Runs `bmaptool ARGS...` and returns what it did.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    bmaptool().args(args).output().expect("bmaptool runs")
}

/// Standard error as lines.
pub fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts a clean error: exit code 1, nothing on stdout, exactly one stderr line,
/// `bmaptool: ERROR: ...` containing `needle`, and no panic or backtrace.
#[track_caller]
pub fn assert_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr:\n{stderr}"
    );
    assert!(output.stdout.is_empty(), "stdout not empty on error");
    assert_no_panic(&stderr);
    let lines = stderr_lines(output);
    assert_eq!(lines.len(), 1, "one stderr line expected, got:\n{stderr}");
    assert!(
        lines[0].starts_with("bmaptool: ERROR: "),
        "not an error line: {:?}",
        lines[0]
    );
    assert!(
        lines[0].contains(needle),
        "error line {:?} does not mention {needle:?}",
        lines[0]
    );
}

/// Asserts success with nothing at all on stderr.
#[track_caller]
pub fn assert_quiet_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit status {:?}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "unexpected stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------
// Images

/// What a piece of an image is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Pseudo-random bytes from a seed.
    Random(u64),
    /// Explicitly written zero bytes: still mapped.
    Zero,
}

/// One write into an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Byte offset.
    pub offset: u64,
    /// Byte count (at least 1).
    pub len: u64,
    /// The bytes.
    pub fill: Fill,
}

/// A sparse image: `set_len(size)` then the pieces written in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseImage {
    /// Image size in bytes.
    pub size: u64,
    /// Writes, inside `0..size`.
    pub pieces: Vec<Piece>,
}

impl SparseImage {
    /// Writes the image at `path` (a new file), syncs it, and returns its bytes.
    pub fn write(&self, path: &Path) -> Vec<u8> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        file.set_len(self.size).expect("set_len");
        let mut model = vec![0u8; usize::try_from(self.size).expect("image fits in memory")];
        for piece in &self.pieces {
            assert!(
                piece.len > 0 && piece.offset + piece.len <= self.size,
                "bad piece {piece:?}"
            );
            let start = usize::try_from(piece.offset).expect("offset fits");
            let len = usize::try_from(piece.len).expect("length fits");
            let bytes = match piece.fill {
                Fill::Random(seed) => random_bytes(seed, len),
                Fill::Zero => vec![0; len],
            };
            file.write_all_at(&bytes, piece.offset)
                .expect("write piece");
            model[start..start + len].copy_from_slice(&bytes);
        }
        file.sync_all().expect("sync image");
        model
    }

    /// Mapped blocks the test expects: a block is mapped iff a piece wrote into it.
    pub fn expected_ranges(&self, block_size: u64) -> Vec<(u64, u64)> {
        merge_ranges(
            self.pieces
                .iter()
                .map(|p| (p.offset / block_size, (p.offset + p.len - 1) / block_size)),
        )
    }
}

/// Writes the six golden images into `dir`, the bytes `golden/make-images.py` writes.
pub fn make_golden_images(dir: &Path) {
    testdata::write_golden_images(dir);
}

// ---------------------------------------------------------------------------------
// Bmaps

/// Parses a bmap, failing the test with the text when it is not valid.
#[track_caller]
pub fn parse_bmap(bytes: &[u8]) -> Bmap {
    match bmap::format::parse(bytes) {
        Ok(parsed) => {
            assert!(
                parsed.warnings.is_empty(),
                "bmap parsed with warnings {:?}",
                parsed.warnings
            );
            assert!(
                matches!(parsed.self_check, SelfCheck::Verified(_)),
                "bmap has no self checksum: {:?}",
                parsed.self_check
            );
            parsed.bmap
        }
        Err(e) => panic!("not a valid bmap: {e}\n{}", String::from_utf8_lossy(bytes)),
    }
}

/// The comments of Debian's bmap-tools 3.6 that 3.9 words differently (its only
/// differences in `create`'s output, see `../shared/conformance/README.md`).
const WORDING_3_6_TO_3_9: [(&str, &str); 3] = [
    (
        "     The block map an optimization which allows to copy or flash the image to\n     \
         the image quicker",
        "     The block map is an optimization which allows to copy or flash the image\n     \
         to the image quicker",
    ),
    ("the checksum has be zero", "the checksum has to be zero"),
    (
        "the checksum of this blocks range.",
        "the checksum of this block range.",
    ),
];

/// What the reference 3.9 writes for `create IMAGE`, from the installed reference
/// (Debian's 3.6): its output with the three comments worded as 3.9 words them and the
/// bmap's own checksum recomputed by the format's rule. Needs [`have_reference`].
#[track_caller]
pub fn reference_create_3_9(image: &Path) -> Vec<u8> {
    let out = succeeds(StdCommand::new(REFERENCE).arg("create").arg(image));
    assert_eq!(
        testdata::self_checksum_holds(&out.stdout),
        Some(true),
        "the reference's own bmap does not verify"
    );
    let mut text = String::from_utf8(out.stdout).expect("the reference writes UTF-8");
    for (old, new) in WORDING_3_6_TO_3_9 {
        if !text.contains(new) {
            assert_eq!(
                text.matches(old).count(),
                1,
                "the reference's comment {old:?}"
            );
            text = text.replacen(old, new, 1);
        }
    }
    let stored = testdata::element_text(&text, "BmapFileChecksum").expect("BmapFileChecksum");
    let at = text.find(&stored).expect("the stored checksum");
    let mut bytes = text.into_bytes();
    bytes[at..at + stored.len()].fill(b'0');
    let sum = testdata::sha256_hex(&bytes);
    bytes[at..at + stored.len()].copy_from_slice(sum.as_bytes());
    bytes
}

/// The `(first, last)` pairs of a bmap.
pub fn ranges_of(bmap: &Bmap) -> Vec<(u64, u64)> {
    bmap.ranges()
        .iter()
        .map(|r| (r.first(), r.last()))
        .collect()
}

/// The `(first, last, hex digest)` of a bmap's ranges.
pub fn ranges_with_digests(bmap: &Bmap) -> Vec<(u64, u64, Option<String>)> {
    bmap.ranges()
        .iter()
        .map(|r| (r.first(), r.last(), r.digest().map(|d| d.to_hex())))
        .collect()
}

/// Checks every range digest against SHA-256 of `image[range]`, clipped at its end.
/// Returns a description of the first mismatch.
pub fn check_digests(bmap: &Bmap, image: &[u8]) -> Result<(), String> {
    if bmap.checksum_kind() != Some(ChecksumKind::Sha256) {
        return Err(format!("checksum kind {:?}", bmap.checksum_kind()));
    }
    let size = image.len() as u64;
    for range in bmap.ranges() {
        let start = range.first() * bmap.block_size();
        let end = ((range.last() + 1) * bmap.block_size()).min(size);
        let (s, e) = (
            usize::try_from(start).expect("fits"),
            usize::try_from(end).expect("fits"),
        );
        let want = ChecksumKind::Sha256.digest(&image[s..e]);
        match range.digest() {
            Some(got) if *got == want => {}
            got => {
                return Err(format!(
                    "range {range}: digest {:?}, expected {}",
                    got.map(|d| d.to_hex()),
                    want.to_hex()
                ));
            }
        }
    }
    Ok(())
}

/// The block size `create` should use for a file: the file system's.
pub fn fs_block_size(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .blksize()
}

/// Writes a data-only pattern file of `size` bytes (every block mapped, not zero).
pub fn write_pattern_file(path: &Path, size: u64) {
    test_support::write_chunks(path, size, &random_bytes(7, MIB as usize));
}
