//! Test inputs made at test time, with the same bytes on every machine, so that the
//! tests need nothing from outside the repository: an image laid out like the
//! reference's `test.image` (821,752 bytes, the same 48 mapped ranges) filled from a
//! seeded generator; the six golden images of the reference's `golden/make-images.py`
//! (ported, with Python's Mersenne Twister, so the bytes are identical); and bmaps of
//! every format version (1.2, 1.3, 1.4, 2.0) written from the format's rules
//! (REFERENCE.md section 1), independently of the product's emitter and parser.
//!
//! Shared by the test binaries through `#[path]`; each uses a subset.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the test data"
)]

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Block size of the test image and of every golden image's bmap.
pub const BLOCK: u64 = 4096;

// ---------------------------------------------------------------------------------
// The test image: the reference's layout, our bytes

/// Size of `test.image` (201 blocks of 4096, the last one partial and a hole).
pub const TEST_IMAGE_SIZE: u64 = 821_752;

/// The mapped block ranges of `test.image` (inclusive), as in the reference's bmaps.
#[rustfmt::skip]
pub const TEST_IMAGE_RANGES: [(u64, u64); 48] = [
    (0, 1), (3, 5), (9, 10), (12, 12), (15, 18), (20, 20),
    (22, 22), (24, 24), (30, 32), (34, 35), (40, 40), (42, 43),
    (45, 45), (47, 47), (49, 50), (52, 53), (55, 56), (60, 63),
    (65, 67), (70, 70), (72, 72), (78, 80), (82, 83), (85, 85),
    (88, 88), (90, 91), (96, 96), (98, 105), (111, 111), (114, 116),
    (119, 133), (135, 135), (137, 137), (140, 140), (142, 144), (146, 147),
    (150, 151), (155, 155), (157, 157), (159, 160), (163, 174), (177, 177),
    (181, 186), (188, 189), (191, 191), (193, 193), (195, 195), (198, 199),
];

/// Mapped blocks of `test.image`.
pub const TEST_IMAGE_MAPPED_BLOCKS: u64 = 117;

/// The bytes of `test.image`: as the reference's generator (`tests/helpers.py`) makes
/// its images, every mapped block holds one run of a single non-zero byte, at a
/// pseudo-random offset and of pseudo-random length; everything else is zero.
pub fn test_image_bytes() -> Vec<u8> {
    let mut image = vec![0u8; TEST_IMAGE_SIZE as usize];
    let mut rng = SplitMix(0x746573742e696d67); // "test.img"
    for &(first, last) in &TEST_IMAGE_RANGES {
        for block in first..=last {
            let start = (block * BLOCK) as usize;
            let end = (((block + 1) * BLOCK).min(TEST_IMAGE_SIZE)) as usize;
            let len = end - start;
            let offset = rng.below(len as u64) as usize;
            let run = 1 + rng.below((len - offset) as u64) as usize;
            let byte = 1 + rng.below(255) as u8;
            image[start + offset..start + offset + run].fill(byte);
        }
    }
    image
}

pub use test_support::SplitMix;

// ---------------------------------------------------------------------------------
// The golden images of golden/make-images.py

/// Names of the golden images, in the order `make-images.py` seeds them.
pub const GOLDEN_IMAGES: [&str; 6] = [
    "empty.img",
    "full.img",
    "many.img",
    "mixed.img",
    "one-byte.img",
    "tail.img",
];

/// One write of a golden image: offset, length, random (`true`) or zero bytes.
type Write = (u64, u64, bool);

/// Size and writes of golden image `name`, as `make-images.py` defines them.
pub fn golden_layout(name: &str) -> (u64, Vec<Write>) {
    const MIB: u64 = 1 << 20;
    const BS: u64 = BLOCK;
    match name {
        // Holes in the middle, a range ending in a partial block, size not aligned.
        "mixed.img" => (
            10 * MIB + 1234,
            vec![
                (0, 2 * BS, true),
                (5 * BS, 3 * BS, true),
                (9 * BS, 1, true),
                (100 * BS + 17, 5000, true),
                (1000 * BS, 8 * BS, false), // mapped blocks full of zeroes: not holes
                (10 * MIB, 1234, true),     // the partial last block
            ],
        ),
        "tail.img" => (4 * MIB, vec![(4 * MIB - 3 * BS, 3 * BS, true)]),
        "empty.img" => (8 * MIB, vec![]),
        "full.img" => (64 * BS + 100, vec![(0, 64 * BS + 100, true)]),
        "many.img" => (
            32 * MIB,
            (0..2700).map(|i| (i * 3 * BS, BS, true)).collect(),
        ),
        "one-byte.img" => (1, vec![(0, 1, true)]),
        other => panic!("no golden image {other}"),
    }
}

/// The bytes of golden image `name`, identical to what `make-images.py` writes.
pub fn golden_bytes(name: &str) -> Vec<u8> {
    let seed = GOLDEN_IMAGES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("no golden image {name}"));
    let (size, writes) = golden_layout(name);
    let mut rng = PyRandom::new(seed as u32);
    let mut image = vec![0u8; size as usize];
    for (offset, len, random) in writes {
        let range = offset as usize..(offset + len) as usize;
        if random {
            image[range].copy_from_slice(&rng.randbytes(len as usize));
        } else {
            image[range].fill(0);
        }
    }
    image
}

/// The mapped ranges of golden image `name`: every block a write touched.
pub fn golden_ranges(name: &str) -> Vec<(u64, u64)> {
    let (_, writes) = golden_layout(name);
    test_support::merge(
        writes
            .iter()
            .map(|&(offset, len, _)| (offset / BLOCK, (offset + len - 1) / BLOCK)),
    )
}

/// Writes the six golden images into `dir` as `make-images.py` does: a sparse file of
/// the image's size, then each write (zero writes included: those blocks are mapped).
pub fn write_golden_images(dir: &Path) {
    fs::create_dir_all(dir).expect("make the golden image directory");
    for name in GOLDEN_IMAGES {
        let bytes = golden_bytes(name);
        let (size, writes) = golden_layout(name);
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        file.set_len(size).expect("size the golden image");
        for (offset, len, _) in writes {
            file.write_all_at(&bytes[offset as usize..(offset + len) as usize], offset)
                .expect("write a golden image");
        }
        file.sync_all().expect("sync a golden image");
    }
}

/// Python's `random.Random(seed)` (MT19937 seeded by `init_by_array`), enough of it
/// for `randbytes`.
#[derive(Debug)]
pub struct PyRandom {
    state: [u32; 624],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a seed below 2**32.
    pub fn new(seed: u32) -> PyRandom {
        let mut mt = [0u32; 624];
        mt[0] = 19_650_218;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        // init_by_array with the one-word key [seed].
        let (mut i, mut k) = (1usize, 624);
        while k > 0 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525)).wrapping_add(seed);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
            k -= 1;
        }
        for _ in 0..623 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt[0] = mt[623];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        PyRandom {
            state: mt,
            index: 624,
        }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `randbytes(n)`: `getrandbits(8 * n).to_bytes(n, "little")`.
    pub fn randbytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 4);
        for _ in 0..n / 4 {
            out.extend_from_slice(&self.next_u32().to_le_bytes());
        }
        let rest = n % 4;
        if rest > 0 {
            // getrandbits keeps the most significant bits of the last word.
            let word = self.next_u32() >> (32 - 8 * rest as u32);
            out.extend_from_slice(&word.to_le_bytes()[..rest]);
        }
        out
    }
}

// ---------------------------------------------------------------------------------
// Bmaps written from the format's rules

/// How a format version carries its checksums (REFERENCE.md 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// 1.0-1.2: `sha1` range attributes, no file checksum, `MappedBlocksCount` after
    /// the `BlockMap`.
    Old,
    /// 1.3: `sha1` range attributes and `BmapFileSHA1`.
    Sha1,
    /// 1.4 and 2.x: `ChecksumType` sha256, `chksum` range attributes and
    /// `BmapFileChecksum`.
    Sha256,
}

impl Scheme {
    fn of(version: &str) -> Scheme {
        match version {
            "1.0" | "1.1" | "1.2" => Scheme::Old,
            "1.3" => Scheme::Sha1,
            "1.4" | "2.0" => Scheme::Sha256,
            other => panic!("the fixture writes no bmap of format {other}"),
        }
    }

    /// The range attribute's name.
    fn attribute(self) -> &'static str {
        match self {
            Scheme::Old | Scheme::Sha1 => "sha1",
            Scheme::Sha256 => "chksum",
        }
    }

    /// Hex digest of `bytes` with this scheme's algorithm.
    fn digest(self, bytes: &[u8]) -> String {
        match self {
            Scheme::Old | Scheme::Sha1 => hex(&Sha1::digest(bytes)),
            Scheme::Sha256 => hex(&Sha256::digest(bytes)),
        }
    }
}

/// The bmap of an image in format `version` ("1.2", "1.3", "1.4" or "2.0"), written
/// by hand from the format's rules: every range carries the digest of its bytes
/// (clipped at the image's end), and the file's own checksum is the digest of the
/// whole file with the checksum's text replaced by as many `0`s.
pub fn fixture_bmap(
    version: &str,
    image: &[u8],
    block_size: u64,
    ranges: &[(u64, u64)],
) -> Vec<u8> {
    let scheme = Scheme::of(version);
    let size = image.len() as u64;
    let blocks = size.div_ceil(block_size);
    let mapped: u64 = ranges.iter().map(|(a, b)| b - a + 1).sum();
    let percent = format!("{:.1}", mapped as f64 * 100.0 / blocks.max(1) as f64);
    let mapped_comment = format!(
        "Count of mapped blocks: {} or {percent}%",
        human(mapped * block_size)
    );
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" ?>\n");
    x.push_str("<!-- A block map written by bmaptool's test fixtures from the rules of the\n");
    x.push_str("     bmap format; it lists the blocks of the image that hold data. -->\n\n");
    writeln!(x, "<bmap version=\"{version}\">").expect("write");
    let size_comment = format!("Image size in bytes: {}", human(size));
    element(&mut x, &size_comment, "ImageSize", size);
    element(&mut x, "Size of a block in bytes", "BlockSize", block_size);
    element(
        &mut x,
        "Count of blocks in the image file",
        "BlocksCount",
        blocks,
    );
    if scheme != Scheme::Old {
        element(&mut x, &mapped_comment, "MappedBlocksCount", mapped);
    }
    let placeholder = "0".repeat(scheme.digest(b"").len());
    checksum_elements(&mut x, scheme, &placeholder);
    block_map(&mut x, scheme, image, block_size, ranges);
    if scheme == Scheme::Old {
        x.push('\n');
        element(&mut x, &mapped_comment, "MappedBlocksCount", mapped);
        x.pop(); // no blank line before the end
    }
    x.push_str("</bmap>\n");
    match scheme {
        Scheme::Old => x.into_bytes(),
        Scheme::Sha1 | Scheme::Sha256 => seal(x, &placeholder, |b| scheme.digest(b)),
    }
}

/// The elements that say how the file is checksummed, the file's own checksum as
/// `placeholder` (zeros) for now.
fn checksum_elements(x: &mut String, scheme: Scheme, placeholder: &str) {
    match scheme {
        Scheme::Old => {}
        Scheme::Sha1 => {
            x.push_str("    <!-- The SHA-1 of this file, computed with this value all zeros -->\n");
            writeln!(x, "    <BmapFileSHA1> {placeholder} </BmapFileSHA1>\n").expect("write");
        }
        Scheme::Sha256 => {
            x.push_str("    <!-- Type of checksum used in this file -->\n");
            x.push_str("    <ChecksumType> sha256 </ChecksumType>\n\n");
            x.push_str(
                "    <!-- The checksum of this file, computed with this value all zeros -->\n",
            );
            writeln!(
                x,
                "    <BmapFileChecksum> {placeholder} </BmapFileChecksum>\n"
            )
            .expect("write");
        }
    }
}

/// The `<BlockMap>` element: one `<Range>` per range, with the digest of its bytes.
fn block_map(x: &mut String, scheme: Scheme, image: &[u8], block_size: u64, ranges: &[(u64, u64)]) {
    let size = image.len() as u64;
    x.push_str("    <!-- Mapped blocks: single blocks or inclusive ranges, with the digest of\n");
    x.push_str("         their bytes (up to the image's end) -->\n");
    x.push_str("    <BlockMap>\n");
    for &(first, last) in ranges {
        let start = (first * block_size).min(size) as usize;
        let end = ((last + 1) * block_size).min(size) as usize;
        let digest = scheme.digest(&image[start..end]);
        let blocks = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        let attribute = scheme.attribute();
        writeln!(
            x,
            "        <Range {attribute}=\"{digest}\"> {blocks} </Range>"
        )
        .expect("write");
    }
    x.push_str("    </BlockMap>\n");
}

/// Whether a bmap's own checksum holds by the format's rule (REFERENCE.md 1.5): the
/// first occurrence of the stored digest replaced by as many `0`s, the whole file hashed
/// (SHA-1 for `BmapFileSHA1`, else SHA-256). `None`: the bmap carries no checksum.
pub fn self_checksum_holds(bytes: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (stored, sha1) = match element_text(text, "BmapFileSHA1") {
        Some(stored) => (stored, true),
        None => (element_text(text, "BmapFileChecksum")?, false),
    };
    let at = text.find(&stored)?;
    let mut zeroed = bytes.to_vec();
    zeroed[at..at + stored.len()].fill(b'0');
    let sum = if sha1 {
        hex(&Sha1::digest(&zeroed))
    } else {
        hex(&Sha256::digest(&zeroed))
    };
    Some(sum == stored)
}

/// The trimmed text of the first `<name>` element of a bmap, comments skipped.
pub fn element_text(text: &str, name: &str) -> Option<String> {
    let mut rest = text;
    let mut plain = String::new();
    while let Some(at) = rest.find("<!--") {
        plain.push_str(&rest[..at]);
        rest = rest[at..].split_once("-->").map_or("", |(_, after)| after);
    }
    plain.push_str(rest);
    let open = format!("<{name}>");
    let start = plain.find(&open)? + open.len();
    let end = start + plain[start..].find('<')?;
    Some(plain[start..end].trim().to_owned())
}

/// `    <!-- COMMENT -->`, `    <NAME> VALUE </NAME>` and a blank line.
fn element(x: &mut String, comment: &str, name: &str, value: u64) {
    writeln!(
        x,
        "    <!-- {comment} -->\n    <{name}> {value} </{name}>\n"
    )
    .expect("write");
}

/// Replaces the (only) all-zeros placeholder with the digest of the whole file.
fn seal(text: String, placeholder: &str, digest: impl Fn(&[u8]) -> String) -> Vec<u8> {
    let at = text
        .find(&format!("> {placeholder} <"))
        .expect("the checksum placeholder")
        + 2;
    assert_eq!(text.matches(placeholder).count(), 1, "one placeholder");
    let sum = digest(text.as_bytes());
    let mut bytes = text.into_bytes();
    bytes[at..at + placeholder.len()].copy_from_slice(sum.as_bytes());
    bytes
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").expect("write");
        s
    })
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A size as a bmap comment shows it ("802.5 KiB").
fn human(size: u64) -> String {
    if size < 1024 {
        return format!("{size} bytes");
    }
    let mut value = size as f64 / 1024.0;
    for unit in ["KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return format!("{value:.1} {unit}");
        }
        value /= 1024.0;
    }
    format!("{value:.1} TiB")
}

// ---------------------------------------------------------------------------------
// Where the generated files live

/// A directory for generated inputs shared by the tests of one build:
/// `target/tmp/bmaptool-testdata` (cargo's `CARGO_TARGET_TMPDIR`).
pub fn testdata_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bmaptool-testdata");
    fs::create_dir_all(&dir).expect("make target/tmp/bmaptool-testdata");
    dir
}

/// Writes `bytes` to `testdata_dir()/name` unless it already holds them; atomic, so
/// that tests running at the same time never see half a file. Returns the path.
pub fn generated(name: &str, bytes: &[u8]) -> PathBuf {
    let path = testdata_dir().join(name);
    if fs::read(&path).is_ok_and(|old| old == bytes) {
        return path;
    }
    let tmp = tempfile::NamedTempFile::new_in(testdata_dir()).expect("temporary file");
    fs::write(tmp.path(), bytes).expect("write generated test data");
    tmp.persist(&path).expect("rename generated test data");
    path
}

/// The fixture bmap of `test.image` in format `version`, as a file.
pub fn test_image_bmap(version: &str) -> PathBuf {
    let bytes = fixture_bmap(version, &test_image_bytes(), BLOCK, &TEST_IMAGE_RANGES);
    generated(&format!("test.image.bmap.v{version}"), &bytes)
}

/// The fixture bmap (format 2.0) of golden image `name`, as a file.
pub fn golden_fixture_bmap(name: &str) -> PathBuf {
    let bytes = fixture_bmap("2.0", &golden_bytes(name), BLOCK, &golden_ranges(name));
    generated(&format!("{name}.bmap"), &bytes)
}

/// The reference's own test data and golden output, `../shared/conformance` beside
/// the repository; present only where the project is developed.
pub fn conformance_path() -> PathBuf {
    test_support::conformance_path()
}
