//! Bytes -> [`Bmap`] for every format version the reference reads (1.0-1.4, 2.x).
//!
//! The file's own checksum is verified on the raw bytes before any parsed value is
//! trusted; every number from the XML is checked (order, overlap, bounds, overflow).
//! Errors name the line and the element. Harmless oddities the reference accepts
//! (whitespace, unknown elements, a wrong `MappedBlocksCount`) are accepted and
//! reported as [`Warning`]s for the caller to show.

use std::fmt;

use roxmltree::{Document, Node, ParsingOptions};

use super::{BlockRange, Bmap, ChecksumKind, Digest, InvalidBmap, Version, self_checksum};

/// A successfully parsed bmap and what was odd about it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The bmap.
    pub bmap: Bmap,
    /// How the bmap's own checksum was checked.
    pub self_check: SelfCheck,
    /// Harmless oddities worth telling the user about.
    pub warnings: Vec<Warning>,
}

/// Whether the bmap file carried a checksum of itself, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfCheck {
    /// Formats 1.0-1.2 have no checksum of themselves.
    Absent,
    /// The file's checksum matched.
    Verified(ChecksumKind),
}

/// Something odd but harmless in a bmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// `MappedBlocksCount` disagrees with the ranges; the ranges are used.
    MappedCountMismatch {
        /// What the element says.
        declared: u64,
        /// What the ranges add up to.
        actual: u64,
    },
    /// No `MappedBlocksCount` element; the ranges are used.
    MappedCountMissing,
    /// An old (1.0-1.2) bmap without `ImageSize`: the image is assumed to fill its last block.
    ImageSizeAssumed(u64),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MappedCountMismatch { declared, actual } => write!(
                f,
                "the bmap says {declared} blocks are mapped but its ranges hold {actual}; \
                 using the ranges"
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
    #[error("not a valid XML file: {0}")]
    Xml(#[from] roxmltree::Error),
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
    #[error("line {line}: <{element}> holds '{value}', which is not a whole number of 0 or more")]
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
    /// `ChecksumType` names an algorithm we do not have.
    #[error(
        "line {line}: unsupported checksum type '{name}' (supported: sha1, sha224, sha256, \
         sha384, sha512)"
    )]
    UnknownChecksumType {
        /// The name.
        name: String,
        /// Line number.
        line: u32,
    },
    /// A digest's text is not a digest of the declared kind.
    #[error("line {line}: bad {element}: {source}")]
    BadDigest {
        /// Element or attribute.
        element: String,
        /// Line number.
        line: u32,
        /// What is wrong.
        source: super::HexError,
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
    #[error("line {line}: {source}")]
    Invalid {
        /// Line number.
        line: u32,
        /// The broken invariant.
        source: InvalidBmap,
    },
}

/// Parses and verifies a bmap file's bytes.
///
/// The bytes must be the plain XML (a clearsigned bmap's signed text, once verified).
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8(e.valid_up_to()))?;
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options)?;
    Parser { doc: &doc, bytes }.parse()
}

struct Parser<'a, 'input> {
    doc: &'a Document<'input>,
    bytes: &'a [u8],
}

/// Which checksum elements a version uses.
struct Scheme {
    /// Kind of the file checksum and range digests, when fixed or declared.
    kind: Option<ChecksumKind>,
    /// Element holding the file's own checksum.
    file_element: &'static str,
    /// Whether that element must be present.
    file_required: bool,
    /// Range attribute holding the range digest.
    range_attribute: &'static str,
}

impl<'input> Parser<'_, 'input> {
    fn parse(&self) -> Result<Parsed, ParseError> {
        let root = self.doc.root_element();
        let version = self.version(root)?;
        let mut warnings = Vec::new();

        let block_size = self.number(root, "BlockSize", version)?;
        let blocks_count = self.number(root, "BlocksCount", version)?;
        let image_size = match self.optional_number(root, "ImageSize")? {
            Some(size) => size,
            None if version.major == 1 && version.minor <= 2 => {
                let size = blocks_count
                    .checked_mul(block_size)
                    .ok_or(ParseError::Invalid {
                        line: self.line(root),
                        source: InvalidBmap::TooLarge(u64::MAX),
                    })?;
                warnings.push(Warning::ImageSizeAssumed(size));
                size
            }
            None => {
                return Err(ParseError::MissingElement {
                    element: "ImageSize",
                    version,
                });
            }
        };
        if block_size == 0 {
            return Err(ParseError::Invalid {
                line: self.line(self.child(root, "BlockSize").unwrap_or(root)),
                source: InvalidBmap::ZeroBlockSize,
            });
        }
        let expected = image_size.div_ceil(block_size);
        if blocks_count != expected {
            return Err(ParseError::Inconsistent {
                image_size,
                block_size,
                blocks_count,
                expected,
            });
        }

        let scheme = self.scheme(root, version)?;
        let self_check = self.verify_self_checksum(root, &scheme, version)?;
        let ranges = self.ranges(root, &scheme, version)?;
        let mut bmap = Bmap::new(image_size, block_size, scheme.kind, ranges)
            .map_err(|source| self.locate(root, source))?;
        bmap.set_version(version);

        let actual = bmap.mapped_blocks();
        match self.optional_number(root, "MappedBlocksCount")? {
            Some(declared) if declared != actual => {
                warnings.push(Warning::MappedCountMismatch { declared, actual });
            }
            Some(_) => {}
            None => warnings.push(Warning::MappedCountMissing),
        }
        Ok(Parsed {
            bmap,
            self_check,
            warnings,
        })
    }

    fn version(&self, root: Node<'_, 'input>) -> Result<Version, ParseError> {
        let line = self.line(root);
        let value = root
            .attribute("version")
            .ok_or_else(|| ParseError::MissingVersion {
                root: root.tag_name().name().to_owned(),
                line,
            })?;
        let bad = || ParseError::BadVersion {
            value: value.to_owned(),
            line,
        };
        let trimmed = value.trim();
        let (major, minor) = trimmed.split_once('.').unwrap_or((trimmed, "0"));
        let version = Version {
            major: parse_u64(major)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?,
            minor: parse_u64(minor)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?,
        };
        if version.major == 0 || version.major > 2 {
            return Err(ParseError::UnsupportedVersion(version));
        }
        Ok(version)
    }

    fn scheme(&self, root: Node<'_, 'input>, version: Version) -> Result<Scheme, ParseError> {
        // The elements decide as much as the version: a 1.x file that carries
        // `ChecksumType` is read as 2.0 (so an edited version number cannot switch
        // verification off), and `BmapFileSHA1` is verified in any 1.x file.
        if version.has_checksum_type()
            || self.child(root, "ChecksumType").is_some()
            || self.child(root, "BmapFileChecksum").is_some()
        {
            let node = self
                .child(root, "ChecksumType")
                .ok_or(ParseError::MissingElement {
                    element: "ChecksumType",
                    version,
                })?;
            let name = node.text().unwrap_or("").trim();
            let kind =
                ChecksumKind::from_name(name).ok_or_else(|| ParseError::UnknownChecksumType {
                    name: name.to_owned(),
                    line: self.line(node),
                })?;
            return Ok(Scheme {
                kind: Some(kind),
                file_element: "BmapFileChecksum",
                file_required: true,
                range_attribute: "chksum",
            });
        }
        // Major 1, minor other than 4: SHA-1 where present. 1.3 requires the file's own
        // checksum; 1.0-1.2 (and later 1.x) may carry per-range `sha1` attributes, which
        // we verify (the reference ignores them).
        let has_sha1 = self.child(root, "BmapFileSHA1").is_some()
            || self
                .child(root, "BlockMap")
                .is_some_and(|map| range_nodes(map).any(|r| r.has_attribute("sha1")));
        Ok(Scheme {
            kind: (version.minor == 3 || has_sha1).then_some(ChecksumKind::Sha1),
            file_element: "BmapFileSHA1",
            file_required: version.minor == 3,
            range_attribute: "sha1",
        })
    }

    fn verify_self_checksum(
        &self,
        root: Node<'_, 'input>,
        scheme: &Scheme,
        version: Version,
    ) -> Result<SelfCheck, ParseError> {
        let Some(node) = self.child(root, scheme.file_element) else {
            if scheme.file_required {
                return Err(ParseError::MissingElement {
                    element: scheme.file_element,
                    version,
                });
            }
            return Ok(SelfCheck::Absent);
        };
        let kind = scheme.kind.unwrap_or(ChecksumKind::Sha1);
        let raw = node.text().unwrap_or("");
        let expected = raw.trim();
        Digest::from_hex(kind, expected).map_err(|source| ParseError::BadDigest {
            element: format!("<{}>", scheme.file_element),
            line: self.line(node),
            source,
        })?;
        let at = self.digest_offset(node, raw, expected);
        let actual =
            self_checksum(kind, self.bytes, at).expect("the digest's text lies inside the file");
        if !actual.to_hex().eq_ignore_ascii_case(expected) {
            return Err(ParseError::SelfChecksumMismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
        Ok(SelfCheck::Verified(kind))
    }

    /// Byte offset of the checksum's text: where the element's text starts, past its
    /// leading whitespace. Should the raw bytes there differ (an entity or CDATA in the
    /// text), fall back to the reference's rule: the digest's first occurrence.
    fn digest_offset(&self, node: Node<'_, 'input>, raw: &str, digest: &str) -> usize {
        let lead = raw.len() - raw.trim_start().len();
        let positional = node
            .first_child()
            .map(|text| text.range().start + lead)
            .filter(|&at| self.bytes.get(at..at + digest.len()) == Some(digest.as_bytes()));
        positional.unwrap_or_else(|| {
            self.bytes
                .windows(digest.len())
                .position(|w| w == digest.as_bytes())
                .unwrap_or(0)
        })
    }

    fn ranges(
        &self,
        root: Node<'_, 'input>,
        scheme: &Scheme,
        version: Version,
    ) -> Result<Vec<BlockRange>, ParseError> {
        let map = self
            .child(root, "BlockMap")
            .ok_or(ParseError::MissingElement {
                element: "BlockMap",
                version,
            })?;
        let mut ranges = Vec::new();
        for node in range_nodes(map) {
            let line = self.line(node);
            let text = node.text().unwrap_or("");
            let bad = || ParseError::BadRange {
                text: text.trim().to_owned(),
                line,
            };
            let (first, last) = match text.split_once('-') {
                Some((a, b)) => (parse_u64(a).ok_or_else(bad)?, parse_u64(b).ok_or_else(bad)?),
                None => {
                    let n = parse_u64(text).ok_or_else(bad)?;
                    (n, n)
                }
            };
            let digest = match (node.attribute(scheme.range_attribute), scheme.kind) {
                (Some(hex), Some(kind)) => {
                    Some(Digest::from_hex(kind, hex.trim()).map_err(|source| {
                        ParseError::BadDigest {
                            element: format!("'{}' attribute", scheme.range_attribute),
                            line,
                            source,
                        }
                    })?)
                }
                _ => None,
            };
            let range = BlockRange::new(first, last, digest)
                .map_err(|source| ParseError::Invalid { line, source })?;
            ranges.push(range);
        }
        Ok(ranges)
    }

    /// Turns a [`Bmap::new`] error into one that names the line of the offending range.
    fn locate(&self, root: Node<'_, 'input>, source: InvalidBmap) -> ParseError {
        let wanted = match &source {
            InvalidBmap::Beyond { range, .. }
            | InvalidBmap::Unordered { range, .. }
            | InvalidBmap::DigestKind { range, .. } => Some(range.clone()),
            _ => None,
        };
        let node = wanted
            .and_then(|wanted| {
                let map = self.child(root, "BlockMap")?;
                range_nodes(map).find(|n| normalise_range(n.text().unwrap_or("")) == wanted)
            })
            .unwrap_or(root);
        ParseError::Invalid {
            line: self.line(node),
            source,
        }
    }

    fn child<'a>(&self, node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
        node.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
    }

    fn optional_number(
        &self,
        root: Node<'_, 'input>,
        name: &str,
    ) -> Result<Option<u64>, ParseError> {
        let Some(node) = self.child(root, name) else {
            return Ok(None);
        };
        let value = node.text().unwrap_or("");
        parse_u64(value)
            .map(Some)
            .ok_or_else(|| ParseError::BadNumber {
                element: name.to_owned(),
                value: value.trim().to_owned(),
                line: self.line(node),
            })
    }

    fn number(
        &self,
        root: Node<'_, 'input>,
        name: &'static str,
        version: Version,
    ) -> Result<u64, ParseError> {
        self.optional_number(root, name)?
            .ok_or(ParseError::MissingElement {
                element: name,
                version,
            })
    }

    fn line(&self, node: Node<'_, '_>) -> u32 {
        self.doc.text_pos_at(node.range().start).row
    }
}

fn range_nodes<'a, 'input>(map: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    map.children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Range")
}

/// A range's text as [`BlockRange`]'s `Display` writes it, to find its element again.
fn normalise_range(text: &str) -> String {
    match text.split_once('-') {
        Some((a, b)) if a.trim() == b.trim() => a.trim().to_owned(),
        Some((a, b)) => format!("{}-{}", a.trim(), b.trim()),
        None => text.trim().to_owned(),
    }
}

/// A decimal number with optional surrounding whitespace (and an optional `+`, which
/// Python's `int()` accepts).
fn parse_u64(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
