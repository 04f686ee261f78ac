//! What the parser says about a bmap: the [`ParseError`]s that refuse it before
//! anything is written, and the [`Warning`]s that accept it with a note for the user.
//! Which rule gives which is decided (and tabled) in the parser's documentation.

use std::fmt;

use super::{ChecksumKind, Digest, HexError, InvalidBmap, Version};

/// Something odd in a bmap that the parser accepted (see the table in [`parse`](super::parse)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Ranges run past the image's last block (written by tools other than bmaptool):
    /// each is cut at the image's end, and its digest is checked against the bytes the
    /// image has there; ranges lying wholly beyond the image are dropped.
    PastEnd {
        /// The first such range, as the bmap writes it.
        example: String,
        /// Ranges cut at the image's end.
        clamped: u64,
        /// Ranges dropped because they start beyond the image.
        dropped: u64,
        /// Blocks the image has.
        blocks: u64,
    },
    /// The ranges are not in ascending order; they are copied in order.
    Unordered {
        /// The first range that comes before its predecessor.
        range: String,
        /// Its predecessor in the file.
        previous: String,
    },
    /// Ranges share blocks: identical duplicates, or ranges without a digest that
    /// overlap others. Each block is copied once.
    Overlapping {
        /// The first range found overlapping another.
        range: String,
        /// The range it overlaps.
        previous: String,
        /// How many ranges overlap an earlier one.
        count: u64,
    },
    /// No `MappedBlocksCount` element; the ranges are used.
    MappedCountMissing,
    /// The range digests are MD5, which catches damage but not deliberate changes.
    WeakChecksum(ChecksumKind),
    /// An old (1.0-1.2) bmap without `ImageSize`: the image is assumed to fill its last block.
    ImageSizeAssumed(u64),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::PastEnd {
                example,
                clamped,
                dropped,
                blocks,
            } => {
                write!(
                    f,
                    "ranges run past the end of the image, which has {blocks} blocks (the \
                     first is {example}): "
                )?;
                let mut parts = Vec::new();
                match clamped {
                    0 => {}
                    1 => parts.push(
                        "1 cut at the image's end, where its checksum must end too".to_owned(),
                    ),
                    n => parts.push(format!(
                        "{n} cut at the image's end, where their checksums must end too"
                    )),
                }
                if *dropped > 0 {
                    parts.push(format!("{dropped} lying wholly beyond it skipped"));
                }
                f.write_str(&parts.join("; "))
            }
            Warning::Unordered { range, previous } => write!(
                f,
                "the ranges are not in ascending order (range {range} comes after \
                 {previous}); copying them in order"
            ),
            Warning::Overlapping {
                range,
                previous,
                count,
            } => write!(
                f,
                "{count} range{} overlap others (range {range} overlaps {previous}); each \
                 block is copied once",
                if *count == 1 { "" } else { "s" }
            ),
            Warning::WeakChecksum(kind) => write!(
                f,
                "the bmap's checksums are {kind}, which catches damage but not deliberate \
                 changes (colliding {kind} inputs are cheap to make)"
            ),
            Warning::MappedCountMissing => {
                f.write_str("the bmap has no MappedBlocksCount; using its ranges")
            }
            Warning::ImageSizeAssumed(size) => write!(
                f,
                "the bmap has no ImageSize; assuming {size} bytes (BlocksCount * BlockSize)"
            ),
        }
    }
}

/// Why bytes are not a usable bmap.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not UTF-8 text.
    #[error("not a text file: invalid UTF-8 at byte {0}")]
    NotUtf8(usize),
    /// Not well-formed XML (roxmltree's message names line and column).
    #[error("not a valid XML file")]
    Xml(#[from] roxmltree::Error),
    /// An element with more attributes than any bmap's (the XML parser's time grows with
    /// the square of their number: a hostile bmap could keep it busy for hours).
    #[error(
        "line {line}: an element with more than {max} attributes, which no bmap has: this is \
         not a bmap"
    )]
    TooManyAttributes {
        /// Line number.
        line: u32,
        /// The most attributes accepted on one element.
        max: usize,
    },
    /// More ranges than [`MAX_RANGES`](super::limits::MAX_RANGES): far more than any
    /// real bmap lists; refused before parsing, so they cost no memory.
    #[error(
        "the bmap lists more than {max} ranges, far more than any real image needs (the \
         largest list tens of thousands): refusing it rather than spending gigabytes on it"
    )]
    TooManyRanges {
        /// The most ranges accepted.
        max: usize,
    },
    /// The XML has more nodes than [`MAX_NODES`](super::limits::MAX_NODES) (elements,
    /// texts, comments): no bmap within the range limit has that many.
    #[error(
        "the bmap's XML has more than {max} nodes (elements, texts, comments), more than \
         any bmap within the range limit has: this is not a bmap"
    )]
    TooManyNodes {
        /// The most nodes accepted.
        max: u32,
    },
    /// More namespace declarations than any bmap's (the XML parser copies the ones in
    /// scope into every element: time quadratic in their nesting).
    #[error(
        "line {line}: more than {max} XML namespace declarations, which no bmap has: this \
         is not a bmap"
    )]
    TooManyNamespaces {
        /// Line number.
        line: u32,
        /// The most namespace declarations accepted.
        max: usize,
    },
    /// The root element has no `version` attribute.
    #[error("line {line}: the <{root}> element has no 'version' attribute")]
    MissingVersion {
        /// Root element name.
        root: String,
        /// Line number.
        line: u32,
    },
    /// `version` is not `MAJOR.MINOR`.
    #[error("line {line}: bad format version '{value}', expected MAJOR.MINOR such as 2.0")]
    BadVersion {
        /// The attribute's text.
        value: String,
        /// Line number.
        line: u32,
    },
    /// A format version we cannot read.
    #[error(
        "bmap format version {0} is not supported: this bmaptool reads versions 1.0 to 2.x; \
         a newer bmaptool may read it"
    )]
    UnsupportedVersion(Version),
    /// A required element is missing.
    #[error("the bmap has no <{element}> element, which format {version} requires")]
    MissingElement {
        /// Element name.
        element: &'static str,
        /// Format version.
        version: Version,
    },
    /// An element that should hold a number does not.
    #[error(
        "line {line}: <{element}> holds '{value}', which is not a whole number from 0 to {}",
        u64::MAX
    )]
    BadNumber {
        /// Element name.
        element: String,
        /// Its text.
        value: String,
        /// Line number.
        line: u32,
    },
    /// `BlocksCount` disagrees with `ImageSize` and `BlockSize`.
    #[error(
        "inconsistent bmap: an image of {image_size} bytes has {expected} blocks of \
         {block_size} bytes, but BlocksCount says {blocks_count}"
    )]
    Inconsistent {
        /// ImageSize.
        image_size: u64,
        /// BlockSize.
        block_size: u64,
        /// BlocksCount as written.
        blocks_count: u64,
        /// What it should be.
        expected: u64,
    },
    /// `MappedBlocksCount` disagrees with the ranges. The reference finds this only
    /// after writing the whole image ("does not belong to this image").
    #[error(
        "line {line}: MappedBlocksCount says {declared} blocks are mapped, but the ranges \
         hold {actual}{}: the bmap is inconsistent (damaged, edited, or made for another \
         image)",
        if *.clamped { " once cut at the image's end" } else { "" }
    )]
    MappedCountMismatch {
        /// What the element says.
        declared: u64,
        /// What the ranges add up to (cut at the image's end).
        actual: u64,
        /// Whether ranges were cut at the image's end.
        clamped: bool,
        /// Line number of the element.
        line: u32,
    },
    /// One range listed twice with different digests: one of them cannot match.
    #[error(
        "line {line}: range {range} is listed twice with different checksums: at most one \
         of them can match the image"
    )]
    ConflictingDuplicate {
        /// The range.
        range: String,
        /// Line number of the second listing.
        line: u32,
    },
    /// Two different ranges with digests share blocks.
    #[error(
        "line {line}: ranges {previous} and {range} share blocks and each has its own \
         checksum: the shared blocks cannot be checked against both in one pass over the \
         image; a bmap's ranges must not overlap"
    )]
    OverlappingChecksums {
        /// The later range.
        range: String,
        /// The range it overlaps.
        previous: String,
        /// Line number of the later range.
        line: u32,
    },
    /// `ChecksumType` names an algorithm we do not have.
    #[error(
        "line {line}: unsupported checksum type '{name}' (supported: {})",
        ChecksumKind::names()
    )]
    UnknownChecksumType {
        /// The name.
        name: String,
        /// Line number.
        line: u32,
    },
    /// A digest's text is not a digest of the declared kind.
    #[error("line {line}: bad {element}")]
    BadDigest {
        /// Element or attribute.
        element: String,
        /// Line number.
        line: u32,
        /// What is wrong.
        source: HexError,
    },
    /// The file's own checksum does not match its contents.
    #[error(
        "the bmap file's checksum does not match its contents (calculated {actual}, the \
         file says {expected}): the bmap is corrupt or was edited after it was made"
    )]
    SelfChecksumMismatch {
        /// What the file says.
        expected: String,
        /// What its bytes hash to.
        actual: Digest,
    },
    /// A `<Range>` whose text is not `A-B` or `A`.
    #[error("line {line}: bad block range '{text}', expected FIRST-LAST or a single block number")]
    BadRange {
        /// The text.
        text: String,
        /// Line number.
        line: u32,
    },
    /// Values that break a bmap invariant, with the line where it shows.
    #[error("line {line}")]
    Invalid {
        /// Line number.
        line: u32,
        /// The broken invariant.
        source: InvalidBmap,
    },
}
