//! The bmap file itself: the [`Bmap`] value and its invariants, the parser for every
//! format version the reference reads (1.0-2.x), and the writer of format 2.0 in the
//! reference's exact layout. No files, threads or network here: bytes in, bytes out.
//!
//! An image builder that already knows its mapped ranges can build a bmap without
//! touching files:
//!
//! ```
//! use bmap::format::{BlockRange, Bmap, ChecksumKind};
//!
//! let data = vec![7u8; 4096];
//! let digest = ChecksumKind::Sha256.digest(&data);
//! let ranges = vec![BlockRange::new(0, 0, Some(digest))?];
//! let bmap = Bmap::new(3 * 4096, 4096, Some(ChecksumKind::Sha256), ranges)?;
//! let xml = bmap.to_xml();
//! let parsed = bmap::format::parse(&xml)?;
//! assert_eq!(parsed.bmap.ranges(), bmap.ranges());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod diagnostics;
mod digest;
mod emit;
mod fastpath;
mod human;
pub mod limits;
mod parse;
mod prescan;
mod ranges;

use std::fmt;

pub use diagnostics::{ParseError, Warning};
pub use digest::{ChecksumKind, Digest, Hasher, HexError, self_checksum};
pub use human::{human_size, human_time};
pub(crate) use parse::cut_and_tree;
pub use parse::{Parsed, SelfCheck, inspect, parse};

/// A bmap format version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible changes bump this (1 or 2 are read).
    pub major: u32,
    /// Compatible changes bump this.
    pub minor: u32,
}

impl Version {
    /// The version `create` writes.
    pub const CURRENT: Version = Version { major: 2, minor: 0 };

    /// Whether this version names its checksum algorithm in `ChecksumType` and uses
    /// `BmapFileChecksum` / `chksum` (2.x, and 1.4, which was 2.0 published by mistake).
    pub fn has_checksum_type(self) -> bool {
        self.major >= 2 || (self.major == 1 && self.minor == 4)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// An inclusive run of mapped blocks, with the digest of its bytes when the bmap has one.
///
/// The digest covers the bytes of blocks `first..=last`, clipped at the image's end
/// (the last block of an image may be partial; it is never zero-padded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRange {
    first: u64,
    last: u64,
    digest: Option<Digest>,
}

impl BlockRange {
    /// A range of blocks `first..=last`.
    pub fn new(first: u64, last: u64, digest: Option<Digest>) -> Result<BlockRange, InvalidBmap> {
        if last < first {
            return Err(InvalidBmap::Reversed { first, last });
        }
        Ok(BlockRange {
            first,
            last,
            digest,
        })
    }

    /// First block of the range.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Last block of the range (inclusive).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The range's digest, if the bmap carries one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

impl fmt::Display for BlockRange {
    /// `A-B`, or `A` for a single block, as bmap files write ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Why a set of values does not make a valid bmap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBmap {
    /// Block size zero.
    #[error("the block size is zero")]
    ZeroBlockSize,
    /// Image too large to address with 64-bit signed offsets: the end of its last block,
    /// `ImageSize + BlockSize` at most, must stay within `i64::MAX`.
    #[error(
        "image size {image_size} bytes is too large for {block_size}-byte blocks: \
         ImageSize + BlockSize must be at most {max} (2^63 - 1, the largest file offset), \
         and here it is {}", *.image_size + u128::from(*.block_size), max = i64::MAX
    )]
    TooLarge {
        /// The image size (`BlocksCount * BlockSize` when an old bmap gives no
        /// `ImageSize`, which can exceed 64 bits).
        image_size: u128,
        /// The block size.
        block_size: u64,
    },
    /// A range ends before it starts.
    #[error("range {first}-{last} ends before it starts")]
    Reversed {
        /// First block.
        first: u64,
        /// Last block.
        last: u64,
    },
    /// A range goes past the image's last block.
    #[error("range {range} lies beyond the image, which has {blocks} blocks")]
    Beyond {
        /// The range as written.
        range: String,
        /// Blocks the image has.
        blocks: u64,
    },
    /// A range starts at or before the end of the previous one.
    #[error("range {range} overlaps or comes before the previous range {previous}")]
    Unordered {
        /// The range.
        range: String,
        /// The range before it.
        previous: String,
    },
    /// A range's digest is of another algorithm than the bmap's.
    #[error("range {range} has a {found} digest but the bmap uses {expected}")]
    DigestKind {
        /// The range.
        range: String,
        /// Kind the bmap declares.
        expected: String,
        /// Kind of the digest.
        found: ChecksumKind,
    },
}

/// Offsets up to the end of the last (possibly partial) block must fit an `off_t`:
/// `image_size + block_size <= i64::MAX`.
pub(crate) fn check_size(image_size: u128, block_size: u64) -> Result<(), InvalidBmap> {
    let limit = i64::MAX as u128;
    if image_size + u128::from(block_size) > limit {
        return Err(InvalidBmap::TooLarge {
            image_size,
            block_size,
        });
    }
    Ok(())
}

/// A parsed or built block map: image size, block size and the mapped ranges.
///
/// Invariants (checked by [`Bmap::new`]): block size is non-zero; ranges are sorted,
/// do not overlap and lie inside the image; every digest is of the bmap's
/// [`checksum_kind`](Bmap::checksum_kind); byte offsets fit in `i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    version: Version,
    image_size: u64,
    block_size: u64,
    checksum_kind: Option<ChecksumKind>,
    ranges: Vec<BlockRange>,
}

impl Bmap {
    /// Builds a bmap (format [`Version::CURRENT`]) and checks its invariants.
    ///
    /// `checksum_kind` is the algorithm of the range digests (`None`: ranges carry no
    /// digests). Ranges without a digest are allowed either way.
    pub fn new(
        image_size: u64,
        block_size: u64,
        checksum_kind: Option<ChecksumKind>,
        ranges: Vec<BlockRange>,
    ) -> Result<Bmap, InvalidBmap> {
        if block_size == 0 {
            return Err(InvalidBmap::ZeroBlockSize);
        }
        check_size(u128::from(image_size), block_size)?;
        let blocks = image_size.div_ceil(block_size);
        let mut previous: Option<&BlockRange> = None;
        for range in &ranges {
            if range.last < range.first {
                return Err(InvalidBmap::Reversed {
                    first: range.first,
                    last: range.last,
                });
            }
            if range.last >= blocks {
                return Err(InvalidBmap::Beyond {
                    range: range.to_string(),
                    blocks,
                });
            }
            if let Some(prev) = previous
                && range.first <= prev.last
            {
                return Err(InvalidBmap::Unordered {
                    range: range.to_string(),
                    previous: prev.to_string(),
                });
            }
            if let Some(digest) = &range.digest
                && Some(digest.kind()) != checksum_kind
            {
                return Err(InvalidBmap::DigestKind {
                    range: range.to_string(),
                    expected: checksum_kind.map_or("no checksums".into(), |k| k.to_string()),
                    found: digest.kind(),
                });
            }
            previous = Some(range);
        }
        Ok(Bmap {
            version: Version::CURRENT,
            image_size,
            block_size,
            checksum_kind,
            ranges,
        })
    }

    /// The format version the bmap was read from ([`Version::CURRENT`] when built).
    pub fn version(&self) -> Version {
        self.version
    }

    /// Size of the image in bytes.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    /// Size of a block in bytes.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Number of blocks in the image (the last one may be partial).
    pub fn blocks_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size)
    }

    /// Number of mapped blocks (the sum of the ranges' lengths).
    pub fn mapped_blocks(&self) -> u64 {
        self.ranges.iter().map(BlockRange::blocks).sum()
    }

    /// Bytes of image data the ranges cover (the partial last block counts its real length).
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| self.byte_span(r).1).sum()
    }

    /// Algorithm of the range digests, if the bmap has any.
    pub fn checksum_kind(&self) -> Option<ChecksumKind> {
        self.checksum_kind
    }

    /// The mapped ranges, ascending.
    pub fn ranges(&self) -> &[BlockRange] {
        &self.ranges
    }

    /// Byte offset and length of a range of this bmap, clipped at the image's end.
    pub fn byte_span(&self, range: &BlockRange) -> (u64, u64) {
        // Cannot overflow: Bmap::new checked that the last block's end fits in i64.
        let start = range.first * self.block_size;
        let end = ((range.last + 1) * self.block_size).min(self.image_size);
        (start, end - start)
    }

    /// Writes the bmap as format 2.0 XML, byte for byte as the reference's `create`
    /// writes it, with its own checksum filled in. Without range digests the file still
    /// names SHA-256 for its own checksum, as the reference's `--no-checksum` does.
    pub fn to_xml(&self) -> Vec<u8> {
        emit::to_xml(self)
    }

    pub(crate) fn set_version(&mut self, version: Version) {
        self.version = version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> BlockRange {
        BlockRange::new(first, last, None).expect("valid range")
    }

    #[test]
    fn invariants() {
        assert_eq!(
            Bmap::new(10, 0, None, vec![]),
            Err(InvalidBmap::ZeroBlockSize)
        );
        assert!(matches!(
            Bmap::new(8192, 4096, None, vec![r(0, 2)]),
            Err(InvalidBmap::Beyond { blocks: 2, .. })
        ));
        assert!(matches!(
            Bmap::new(10 * 4096, 4096, None, vec![r(3, 4), r(4, 5)]),
            Err(InvalidBmap::Unordered { .. })
        ));
        assert!(matches!(
            Bmap::new(u64::MAX - 1, 4096, None, vec![]),
            Err(InvalidBmap::TooLarge { .. })
        ));
        assert!(BlockRange::new(5, 3, None).is_err());
        let digest = ChecksumKind::Sha1.digest(b"");
        assert!(matches!(
            Bmap::new(
                4096,
                4096,
                Some(ChecksumKind::Sha256),
                vec![BlockRange::new(0, 0, Some(digest)).expect("range")]
            ),
            Err(InvalidBmap::DigestKind { .. })
        ));
    }

    /// The limit is `ImageSize + BlockSize <= 2^63 - 1`, and the message says so with
    /// the numbers (it used to claim "more than 2^63 - 1" for smaller sizes).
    #[test]
    fn too_large_states_the_real_rule_with_the_numbers() {
        let max = i64::MAX as u64;
        assert!(Bmap::new(max - 4096, 4096, None, vec![]).is_ok());
        let err = Bmap::new(max - 4095, 4096, None, vec![]).expect_err("one byte over");
        assert_eq!(
            err.to_string(),
            format!(
                "image size {} bytes is too large for 4096-byte blocks: ImageSize + BlockSize \
                 must be at most {max} (2^63 - 1, the largest file offset), and here it is {}",
                max - 4095,
                max + 1
            )
        );
        let err = Bmap::new(u64::MAX, u64::MAX, None, vec![]).expect_err("overflows u64");
        assert!(
            err.to_string()
                .ends_with(&(2 * u128::from(u64::MAX)).to_string())
        );
    }

    #[test]
    fn partial_last_block_is_clipped() {
        let bmap = Bmap::new(4096 + 100, 4096, None, vec![r(0, 1)]).expect("valid");
        assert_eq!(bmap.blocks_count(), 2);
        assert_eq!(bmap.mapped_blocks(), 2);
        assert_eq!(bmap.byte_span(&bmap.ranges()[0]), (0, 4196));
        assert_eq!(bmap.mapped_bytes(), 4196);
    }
}
