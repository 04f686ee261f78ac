//! The signature tests' part of the harness (`tests/signed.rs`): what every test
//! binary shares (the environment rule, the clean command, the run assertions, the gpg
//! fixtures, the HTTP server) is the `test_support` crate's, re-exported here under
//! the names these tests have always used. Here: a test image and its format-2.0 bmap
//! written by the test from the format's rules (digests by `sha256sum`, independent of
//! the product), a work directory per test, running the real binary with a chosen
//! GnuPG home, the assertions every signature failure must pass, the reference's signed
//! test data when `../shared/conformance` is there, and the test HTTP server by file
//! name. Keys and signatures come from `gpg` (`test_support::gpg`, shared with the
//! library's tests).

#![allow(
    dead_code,
    reason = "a harness: not every test binary that includes it uses every helper"
)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tempfile::TempDir;

#[allow(
    unused_imports,
    reason = "the names the signature tests have always used; each uses its own subset"
)]
pub use test_support::{
    assert_fails, assert_no_panic, assert_ok, clean_command, copy_args, gpg, need_python,
    pipe_through, read, require, runs, stderr,
};

// ---------------------------------------------------------------------------------
// The environment

/// `sha256sum` (the fixture's digests) and `gzip` (the reference's image).
#[track_caller]
pub fn need_tools() -> bool {
    require(
        runs("gzip", &["--version"]) && runs("sha256sum", &["--version"]),
        "gzip and sha256sum",
    )
}

/// The tools and a gpg home; `None`: skipped.
#[track_caller]
pub fn need_gpg() -> Option<gpg::Gpg> {
    if !need_tools() {
        return None;
    }
    gpg::Gpg::new()
}

// ---------------------------------------------------------------------------------
// The test image and its bmap

/// Size of the test image: 200 blocks and a partial one.
pub const IMAGE_SIZE: usize = 821_752;
/// Block size of its bmap.
pub const BLOCK: usize = 4096;
/// Its mapped ranges (first and last block, inclusive); the last one holds the
/// partial block. Block 193 is a range of its own (removed by
/// [`bmap_without_range_193`]).
pub const RANGES: [(usize, usize); 15] = [
    (0, 3),
    (8, 8),
    (10, 17),
    (30, 30),
    (40, 49),
    (64, 64),
    (70, 79),
    (100, 100),
    (120, 139),
    (150, 150),
    (160, 169),
    (180, 180),
    (193, 193),
    (195, 195),
    (198, 200),
];

/// "N of N ranges verified" for the test bmap, or for it without one range.
pub fn ranges_verified(without_one: bool) -> String {
    let n = RANGES.len() - usize::from(without_one);
    format!("{n} of {n} ranges verified")
}

fn mapped_blocks() -> usize {
    RANGES.iter().map(|(a, b)| b - a + 1).sum()
}

/// The test image: pseudo-random bytes in the mapped blocks, zeros elsewhere.
pub fn image_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut image = vec![0u8; IMAGE_SIZE];
        for &(first, last) in &RANGES {
            for block in first..=last {
                let start = block * BLOCK;
                let end = (start + BLOCK).min(IMAGE_SIZE);
                image[start..end].copy_from_slice(&noise(block as u64 + 1, end - start));
            }
        }
        image
    })
}

/// The format-2.0 bmap of the test image, written from the format's rules.
pub fn bmap_text() -> String {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let image = image_bytes();
        let blocks = IMAGE_SIZE.div_ceil(BLOCK);
        let mut text = format!(
            "<?xml version=\"1.0\" ?>\n\
             <!-- The block map of the signed tests' image, written by the test -->\n\
             <bmap version=\"2.0\">\n    \
             <ImageSize> {IMAGE_SIZE} </ImageSize>\n    \
             <BlockSize> {BLOCK} </BlockSize>\n    \
             <BlocksCount> {blocks} </BlocksCount>\n    \
             <MappedBlocksCount> {} </MappedBlocksCount>\n    \
             <ChecksumType> sha256 </ChecksumType>\n    \
             <BmapFileChecksum> {} </BmapFileChecksum>\n    \
             <BlockMap>\n",
            mapped_blocks(),
            "0".repeat(64)
        );
        for &(first, last) in &RANGES {
            let bytes = &image[first * BLOCK..((last + 1) * BLOCK).min(IMAGE_SIZE)];
            let blocks = if first == last {
                format!("{first}")
            } else {
                format!("{first}-{last}")
            };
            text.push_str(&format!(
                "        <Range chksum=\"{}\"> {blocks} </Range>\n",
                sha256_hex(bytes)
            ));
        }
        text.push_str("    </BlockMap>\n</bmap>\n");
        with_fixed_checksum(&text)
    })
    .clone()
}

/// The bmap with range 193 removed (and the mapped count and its own checksum fixed):
/// a consistent bmap that copies one block less than the signed one.
pub fn bmap_without_range_193() -> String {
    let text = bmap_text();
    let line = text
        .lines()
        .find(|l| l.contains("> 193 </Range>"))
        .expect("range 193")
        .to_owned();
    let mapped = mapped_blocks();
    let edited = text.replacen(&format!("{line}\n"), "", 1).replacen(
        &format!("<MappedBlocksCount> {mapped} </MappedBlocksCount>"),
        &format!("<MappedBlocksCount> {} </MappedBlocksCount>", mapped - 1),
        1,
    );
    assert!(edited.contains(&format!("> {} </Mapped", mapped - 1)));
    with_fixed_checksum(&edited)
}

/// SHA-256 (hex) of `bytes`, by `sha256sum` (independent of the product).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let out = pipe_through(&mut Command::new("sha256sum"), bytes);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

/// A format-2.0 bmap text with its `BmapFileChecksum` recomputed (the SHA-256 of the
/// file with the checksum's value replaced by 64 zeros), so that only a signature can
/// tell it was edited.
pub fn with_fixed_checksum(text: &str) -> String {
    let open = "<BmapFileChecksum>";
    let close = "</BmapFileChecksum>";
    let start = text.find(open).expect("a BmapFileChecksum") + open.len();
    let end = start + text[start..].find(close).expect("its end");
    let value = text[start..end].trim();
    assert_eq!(value.len(), 64, "a sha256 checksum");
    let value_at = start + text[start..end].find(value).expect("the value");
    let mut zeroed = text.to_owned();
    zeroed.replace_range(value_at..value_at + 64, &"0".repeat(64));
    let digest = sha256_hex(zeroed.as_bytes());
    zeroed.replace_range(value_at..value_at + 64, &digest);
    zeroed
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

pub fn copy_file(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}

// ---------------------------------------------------------------------------------
// A test's directory

/// A test's work directory: `x.img` (an image) and `x.img.bmap` (its v2.0 bmap), and
/// an empty GnuPG home (`empty-gnupg`) for runs that must use `--keyring` only.
#[derive(Debug)]
pub struct Work {
    pub dir: TempDir,
    /// The image's bytes.
    pub image: Vec<u8>,
}

impl Work {
    /// The test image and its bmap.
    pub fn new() -> Work {
        Work::with(image_bytes().to_vec(), &bmap_text())
    }

    fn with(image: Vec<u8>, bmap: &str) -> Work {
        let dir = tempfile::Builder::new()
            .prefix("bmaptool-signed-")
            .tempdir()
            .expect("cannot make a temporary directory");
        let work = Work { dir, image };
        write(&work.image(), &work.image);
        write(&work.bmap(), bmap);
        fs::create_dir(work.empty_home()).expect("mkdir empty-gnupg");
        work
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn image(&self) -> PathBuf {
        self.path("x.img")
    }

    pub fn bmap(&self) -> PathBuf {
        self.path("x.img.bmap")
    }

    pub fn empty_home(&self) -> PathBuf {
        self.path("empty-gnupg")
    }
}

// ---------------------------------------------------------------------------------
// The reference's signed test data

/// The key of the reference's keybox.
pub const REF_KEY: &str = "927FF9746434704C5774BE648D49DFB1163BDFB4";
/// When it expired (after it signed the test data in 2022).
pub const REF_KEY_EXPIRED: &str = "2024-06-12 20:04:40 UTC";
/// The key that made the reference's wrong-key signature (not in the keybox).
pub const REF_WRONG_KEY: &str = "B58A01EDEC4BA009366352C078C1F1FE48CA7604";
/// Size of the reference's `test.image`.
pub const REF_IMAGE_SIZE: usize = 821_752;

/// `../shared/conformance/reference-test-data`; `None` (skipped, or failing when
/// strict) when it is not beside the repository.
#[track_caller]
pub fn conformance() -> Option<PathBuf> {
    if !need_tools() {
        return None;
    }
    test_support::reference_test_data()
}

impl Work {
    /// The reference's `test.image` and its v2.0 bmap (the one its signatures sign).
    pub fn reference(data: &Path) -> Work {
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(data.join("test.image.gz"))
            .output()
            .expect("gzip runs");
        assert!(out.status.success(), "gzip -dc test.image.gz failed");
        assert_eq!(out.stdout.len(), REF_IMAGE_SIZE, "test.image size");
        let bmap = fs::read_to_string(data.join("test.image.bmap.v2.0")).expect("the v2.0 bmap");
        Work::with(out.stdout, &bmap)
    }
}

// ---------------------------------------------------------------------------------
// Running the binary

/// `bmaptool` with the harness's clean environment
/// ([`test_support::clean_command`]) and `GNUPGHOME` and `HOME` both `gnupghome` (so
/// that the user's own keys never count).
pub fn bmaptool(gnupghome: &Path) -> Command {
    let mut cmd = test_support::clean_command(env!("CARGO_BIN_EXE_bmaptool"));
    cmd.env("GNUPGHOME", gnupghome).env("HOME", gnupghome);
    cmd
}

/// Runs `bmaptool ARGS...` with `GNUPGHOME=gnupghome`.
pub fn run<S: AsRef<OsStr>>(gnupghome: &Path, args: impl IntoIterator<Item = S>) -> Output {
    bmaptool(gnupghome)
        .args(args)
        .output()
        .expect("bmaptool runs")
}

/// Asserts a refusal before anything was written: a clean failure and no `dest`.
#[track_caller]
pub fn assert_refused(output: &Output, dest: &Path, needles: &[&str]) -> String {
    let line = assert_fails(output, needles);
    assert!(
        !dest.exists(),
        "{} was created although the signature check failed ({line})",
        dest.display()
    );
    line
}

/// Asserts a successful copy equal to `image`; returns stderr.
#[track_caller]
pub fn assert_copied_image(output: &Output, dest: &Path, image: &[u8]) -> String {
    let text = assert_ok(output);
    assert!(
        read(dest) == image,
        "{} differs from the image",
        dest.display()
    );
    text
}

/// Asserts a successful copy equal to the test image; returns stderr.
#[track_caller]
pub fn assert_copied(output: &Output, dest: &Path) -> String {
    assert_copied_image(output, dest, image_bytes())
}

/// Asserts a good signature by `uid` and key `fingerprint` was reported.
#[track_caller]
pub fn assert_verified_by(text: &str, uid: &str, fingerprint: &str) {
    let wanted =
        format!("successfully verified bmap file signature of {uid} (fingerprint {fingerprint})");
    assert!(
        text.contains(&wanted),
        "stderr does not say {wanted:?}:\n{text}"
    );
}

/// Asserts the detached signature `name` (as shown) was the one discovered.
#[track_caller]
pub fn assert_discovered_sig(text: &str, name: &str) {
    let line = text
        .lines()
        .find(|l| l.contains("discovered signature file"))
        .unwrap_or_else(|| panic!("no signature discovered:\n{text}"));
    assert!(
        line.ends_with(&format!("'{name}'")),
        "expected {name:?} to be discovered, got: {line}"
    );
}

// ---------------------------------------------------------------------------------
// The test HTTP server

/// `tests/fixtures/httpd.py --root DIR` ([`test_support::HttpServer`]), addressed by
/// file name.
#[derive(Debug)]
pub struct Httpd(test_support::HttpServer);

impl Httpd {
    /// `None`: skipped (no python3).
    #[track_caller]
    pub fn start(root: &Path) -> Option<Httpd> {
        test_support::HttpServer::start(root).map(Httpd)
    }

    /// `http://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        self.0.url(&format!("/{name}"))
    }
}
