//! Bytes -> [`Bmap`] for every format version the reference reads (1.0-1.4, 2.x).
//!
//! The file's own checksum is verified on the raw bytes before any parsed value is
//! trusted; every number from the XML is checked (order, overlap, bounds, overflow).
//! Parsing is linear in the file's size: line numbers are counted only for an error.
//!
//! # What is accepted, and what is refused
//!
//! Two rules decide: *never write data that cannot verify*, and *never refuse what the
//! reference (bmaptool 3.6) copies correctly when its data verifies*. What the reference
//! finds only after writing is refused here before anything is written. "Crash" below
//! means a Python traceback before any data is written (after DEST was truncated).
//!
//! | The bmap has | Reference 3.6 | Here |
//! |---|---|---|
//! | bytes that are not UTF-8, or not well-formed XML | refuses up front | refuse |
//! | a DTD with declarations (`<!DOCTYPE bmap [ ... ]>`) | expands the entities | refuse: no bmap needs one, and expansion is an attack surface |
//! | a document type without declarations (`<!DOCTYPE bmap>`, or naming an external DTD) | accepts (never reads the external DTD) | accept silently, the same |
//! | any root element name, unknown elements and attributes, spaces around values, `3 - 5`, `+3`, `1_0` | accepts | accept silently |
//! | comments or processing instructions inside a value (`<ImageSize><!-- x -->42</ImageSize>`, `1<!-- -->-2`) | drops them, reads the text around them as one | the same |
//! | no `version` attribute | crash | refuse |
//! | `version="2"` (no minor) | crash | accept, read as 2.0 |
//! | major version 0, or above 2 | 0: copies, unverified; above 2: crash | refuse, naming the version |
//! | version 1.4 or 2.x | read as 2.0 | read as 2.0 |
//! | version 1.5-1.9 | no checksums | no checksums, unless it carries checksum elements: then they are verified |
//! | no `BlockSize`, `BlocksCount` or (1.3 and later) `ImageSize`, or a value that is not a number | crash | refuse |
//! | `BlockSize` 0 | crash | refuse |
//! | `BlocksCount` other than ImageSize / BlockSize rounded up | refuses up front | refuse, with the numbers |
//! | `ImageSize + BlockSize` above 2^63 - 1 | fails later, sizing or seeking the destination | refuse, with the numbers |
//! | 1.0-1.2 without `ImageSize` | crash | accept, warn: BlocksCount * BlockSize |
//! | no `MappedBlocksCount` | crash | accept, warn: the ranges are counted |
//! | `MappedBlocksCount` other than the ranges' blocks (cut at the image's end) | fails after writing everything ("does not belong to this image"), or mid-copy when too small | refuse up front, naming both numbers |
//! | no `ChecksumType` (1.4, 2.x), or a name hashlib does not know | refuses up front (crash when missing) | refuse |
//! | `ChecksumType` sha3_*, blake2b/s, sha512_224/256, or an upper-case name | accepts | accept silently |
//! | `ChecksumType` md5 | accepts | accept, warn: MD5 catches damage, not tampering |
//! | no `BmapFileChecksum` (1.4, 2.x) or `BmapFileSHA1` (1.3) | crash | refuse |
//! | a file checksum that does not match | refuses up front | refuse |
//! | a file checksum in upper case | refuses (compares strings) | accept |
//! | `sha1` range attributes in 1.0-1.2 | ignores them | verifies them (a wrong one fails the copy at that range) |
//! | a range that is not `A-B` or `A` (empty, negative, `1-2-3`) | crash when reached, after writing earlier ranges | refuse |
//! | a range `5-3` | fails when reached, after writing earlier ranges | refuse |
//! | a range digest of the wrong length or not hex | mismatch when reached, after writing it | refuse |
//! | a range digest in upper case | mismatch (compares strings) | accept |
//! | a range running past the image's last block | copies it; the digest covers the bytes the image has (and goes unchecked when the range runs 1 MiB or more past the end) | accept: cut at the end, digest checked, one warning |
//! | a range wholly beyond the image | stops reading there; succeeds if MappedBlocksCount agrees | accept: dropped, in the same warning |
//! | ranges out of ascending order | copies local raw images; streams fail mid-copy (no backward seek) | accept: sorted, warn |
//! | a range listed twice, same digest | local raw: written twice, counted twice; streams fail mid-copy | accept: copied once, counted twice for MappedBlocksCount (either count is accepted), warn |
//! | ranges overlapping where one has no digest | local raw: written twice; streams fail mid-copy | accept: blocks without a digest give way to those with one, warn |
//! | ranges overlapping, each with its own digest, or one range twice with different digests | local raw: copies, checking both; streams fail mid-copy | refuse: one pass over the image cannot check the shared blocks twice (different digests for one range cannot both match) |
//! | an empty `BlockMap` | all-hole output | accept silently |
//! | `ImageSize` 0 | crash | accept: an empty image |
//! | `BlockSize` above 1 MiB | writes nothing, then fails | accept: copies |
//!
//! Accepted oddities come back as [`Warning`]s for the caller to show; refusals are
//! [`ParseError`]s naming the line and the values.

use std::borrow::Cow;

use roxmltree::{Document, Node, ParsingOptions};

use super::diagnostics::{ParseError, Warning};
use super::fastpath::Cut;
use super::limits;
use super::prescan;
use super::ranges::{self, Conflict};
use super::{BlockRange, Bmap, ChecksumKind, Digest, InvalidBmap, Version, self_checksum};

/// A successfully parsed bmap and what was odd about it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The bmap.
    pub bmap: Bmap,
    /// How the bmap's own checksum was checked.
    pub self_check: SelfCheck,
    /// Oddities worth telling the user about.
    pub warnings: Vec<Warning>,
}

/// Whether the bmap file carried a checksum of itself, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfCheck {
    /// Formats 1.0-1.2 have no checksum of themselves.
    Absent,
    /// The file's checksum matched.
    Verified(ChecksumKind),
    /// The file's checksum did not match (only from [`inspect`]; [`parse`] refuses).
    Mismatch {
        /// What the file says.
        expected: Digest,
        /// What its bytes hash to.
        actual: Digest,
    },
}

/// Parses and verifies a bmap file's bytes.
///
/// The bytes must be the plain XML (a clearsigned bmap's signed text, once verified).
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    parse_with(bytes, false)
}

/// Parses a bmap file's bytes to describe them: as [`parse`], except that a file
/// checksum that does not match comes back as [`SelfCheck::Mismatch`] instead of an
/// error. For showing what a bmap says (`bmaptool info`), never for copying with it.
pub fn inspect(bytes: &[u8]) -> Result<Parsed, ParseError> {
    parse_with(bytes, true)
}

fn parse_with(bytes: &[u8], lenient: bool) -> Result<Parsed, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8(e.valid_up_to()))?;
    let allow_dtd = prescan::doctype_without_declarations(text);
    prescan::check_attribute_counts(text)?;
    if let Some(parsed) = parse_cut(text, bytes, lenient, allow_dtd) {
        return Ok(parsed);
    }
    parse_tree(text, bytes, lenient, allow_dtd)
}

/// The whole document in the XML tree, without the cut.
fn parse_tree(
    text: &str,
    bytes: &[u8],
    lenient: bool,
    allow_dtd: bool,
) -> Result<Parsed, ParseError> {
    let doc = Document::parse_with_options(text, options(allow_dtd)).map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => ParseError::TooManyNodes {
            max: limits::MAX_NODES,
        },
        e => ParseError::Xml(e),
    })?;
    Parser {
        doc: &doc,
        bytes,
        lenient,
        cut: None,
    }
    .parse()
}

/// For the fuzzer and its replay ([`crate::fuzzing`]): when the cut reads `bytes`
/// ([`fastpath`]), its reading and the whole tree's, which must be the same.
pub(crate) fn cut_and_tree(
    bytes: &[u8],
    lenient: bool,
) -> Option<(Parsed, Result<Parsed, ParseError>)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let allow_dtd = prescan::doctype_without_declarations(text);
    prescan::check_attribute_counts(text).ok()?;
    let cut = parse_cut(text, bytes, lenient, allow_dtd)?;
    Some((cut, parse_tree(text, bytes, lenient, allow_dtd)))
}

/// [`parse_with`], for the tests.
#[cfg(test)]
pub(super) fn parse_with_for_tests(bytes: &[u8], lenient: bool) -> Result<Parsed, ParseError> {
    parse_with(bytes, lenient)
}

/// [`parse_with`] without the cut: the whole document in the tree (the tests compare).
#[cfg(test)]
pub(super) fn parse_whole(bytes: &[u8], lenient: bool) -> Result<Parsed, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8(e.valid_up_to()))?;
    let doc = Document::parse_with_options(text, options(true))?;
    Parser {
        doc: &doc,
        bytes,
        lenient,
        cut: None,
    }
    .parse()
}

/// The XML parser's options: a document type declaration only when it declares
/// nothing, and at most [`limits::MAX_NODES`] nodes.
fn options<'i>(allow_dtd: bool) -> ParsingOptions<'i> {
    ParsingOptions {
        allow_dtd,
        nodes_limit: limits::MAX_NODES,
        ..ParsingOptions::default()
    }
}

/// Parses a bmap whose `BlockMap` holds only what `create` writes without the tree of
/// its ranges ([`fastpath`]); `None` when it holds more, or when anything fails, so
/// that the whole document is parsed and any error is the full parser's.
fn parse_cut(text: &str, bytes: &[u8], lenient: bool, allow_dtd: bool) -> Option<Parsed> {
    let cut = Cut::find(text)?;
    let skeleton = cut.skeleton(text);
    // The tree of the whole document would also hold the content's nodes.
    let limited = ParsingOptions {
        nodes_limit: limits::MAX_NODES.checked_sub(cut.nodes)?,
        ..options(allow_dtd)
    };
    let doc = Document::parse_with_options(&skeleton, limited).ok()?;
    let root = doc.root_element();
    let map = root
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "BlockMap")?;
    // The element cut is the one the tree reads, and it held nothing else.
    if map.range().start != cut.element_start() || map.has_children() {
        return None;
    }
    Parser {
        doc: &doc,
        bytes,
        lenient,
        cut: Some(cut),
    }
    .parse()
    .ok()
}

struct Parser<'a, 'input> {
    doc: &'a Document<'input>,
    bytes: &'a [u8],
    /// A file checksum that does not match is reported, not refused.
    lenient: bool,
    /// The `BlockMap`'s ranges when they were cut out of the document the tree holds
    /// (positions in the tree are then mapped back to `bytes`).
    cut: Option<Cut<'a>>,
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

/// The image's geometry from the header.
struct Geometry {
    image_size: u64,
    block_size: u64,
}

impl<'input> Parser<'_, 'input> {
    fn parse(&self) -> Result<Parsed, ParseError> {
        let root = self.doc.root_element();
        let version = self.version(root)?;
        let mut warnings = Vec::new();
        let geometry = self.geometry(root, version, &mut warnings)?;
        let scheme = self.scheme(root, version)?;
        let self_check = self.verify_self_checksum(root, &scheme, version)?;
        let listed = self.ranges(root, &scheme, version)?;
        if scheme.kind == Some(ChecksumKind::Md5) {
            warnings.push(Warning::WeakChecksum(ChecksumKind::Md5));
        }

        let blocks = geometry.image_size.div_ceil(geometry.block_size);
        let tidied = ranges::tidy(listed, blocks).map_err(|c| self.conflict(root, *c))?;
        warnings.extend(tidied.warnings);
        let mut bmap = Bmap::new(
            geometry.image_size,
            geometry.block_size,
            scheme.kind,
            tidied.ranges,
        )
        .map_err(|source| ParseError::Invalid {
            line: self.line(root),
            source,
        })?;
        bmap.set_version(version);

        match self.optional_number(root, "MappedBlocksCount")? {
            None => warnings.push(Warning::MappedCountMissing),
            Some((declared, node)) => {
                let actual = bmap.mapped_blocks();
                if declared != actual && u128::from(declared) != tidied.listed_blocks {
                    return Err(ParseError::MappedCountMismatch {
                        declared,
                        actual,
                        clamped: tidied.clamped,
                        line: self.line(node),
                    });
                }
            }
        }
        Ok(Parsed {
            bmap,
            self_check,
            warnings,
        })
    }

    fn version(&self, root: Node<'_, 'input>) -> Result<Version, ParseError> {
        let value = root
            .attribute("version")
            .ok_or_else(|| ParseError::MissingVersion {
                root: root.tag_name().name().to_owned(),
                line: self.line(root),
            })?;
        let bad = || ParseError::BadVersion {
            value: value.to_owned(),
            line: self.line(root),
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

    /// ImageSize and BlockSize, checked against BlocksCount and the offset limit.
    fn geometry(
        &self,
        root: Node<'_, 'input>,
        version: Version,
        warnings: &mut Vec<Warning>,
    ) -> Result<Geometry, ParseError> {
        let (block_size, block_node) = self.number(root, "BlockSize", version)?;
        let (blocks_count, _) = self.number(root, "BlocksCount", version)?;
        if block_size == 0 {
            return Err(ParseError::Invalid {
                line: self.line(block_node),
                source: InvalidBmap::ZeroBlockSize,
            });
        }
        let image_size = match self.optional_number(root, "ImageSize")? {
            Some((size, node)) => {
                super::check_size(u128::from(size), block_size).map_err(|source| {
                    ParseError::Invalid {
                        line: self.line(node),
                        source,
                    }
                })?;
                size
            }
            None if version.major == 1 && version.minor <= 2 => {
                let size = u128::from(blocks_count) * u128::from(block_size);
                super::check_size(size, block_size).map_err(|source| ParseError::Invalid {
                    line: self.line(root),
                    source,
                })?;
                let size = u64::try_from(size).expect("checked to fit in an i64");
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
        let expected = image_size.div_ceil(block_size);
        if blocks_count != expected {
            return Err(ParseError::Inconsistent {
                image_size,
                block_size,
                blocks_count,
                expected,
            });
        }
        Ok(Geometry {
            image_size,
            block_size,
        })
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
            let name = text_of(node);
            let name = name.trim();
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
            || match &self.cut {
                Some(cut) => cut
                    .ranges()
                    .any(|r| r.attribute.is_some_and(|(name, _)| name == "sha1")),
                None => self
                    .child(root, "BlockMap")
                    .is_some_and(|map| range_nodes(map).any(|r| r.has_attribute("sha1"))),
            };
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
        let raw = text_of(node);
        let expected = raw.trim();
        let declared =
            Digest::from_hex(kind, expected).map_err(|source| ParseError::BadDigest {
                element: format!("<{}>", scheme.file_element),
                line: self.line(node),
                source,
            })?;
        let at = self.digest_offset(node, &raw, expected);
        let actual =
            self_checksum(kind, self.bytes, at).expect("the digest's text lies inside the file");
        if !actual.to_hex().eq_ignore_ascii_case(expected) {
            if self.lenient {
                return Ok(SelfCheck::Mismatch {
                    expected: declared,
                    actual,
                });
            }
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
            .map(|text| {
                let at = text.range().start + lead;
                self.cut.map_or(at, |cut| cut.original(at))
            })
            .filter(|&at| self.bytes.get(at..at + digest.len()) == Some(digest.as_bytes()));
        positional.unwrap_or_else(|| {
            self.bytes
                .windows(digest.len())
                .position(|w| w == digest.as_bytes())
                .unwrap_or(0)
        })
    }

    /// The ranges as listed (each well-formed; order, overlap and bounds unchecked).
    /// The hot loop of a bmap with millions of ranges: no allocation but the vector,
    /// and line numbers only for an error.
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
        if let Some(cut) = &self.cut {
            return cut.block_ranges(scheme.range_attribute, scheme.kind, self.line(map));
        }
        // Counted first so the vector is allocated once, at its size.
        let mut ranges = Vec::with_capacity(range_nodes(map).count());
        for node in range_nodes(map) {
            let text = text_of(node);
            let text = text.as_ref();
            let bad = || ParseError::BadRange {
                text: text.trim().to_owned(),
                line: self.line(node),
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
                            line: self.line(node),
                            source,
                        }
                    })?)
                }
                _ => None,
            };
            let range =
                BlockRange::new(first, last, digest).map_err(|source| ParseError::Invalid {
                    line: self.line(node),
                    source,
                })?;
            ranges.push(range);
        }
        Ok(ranges)
    }

    /// Names the lines of two ranges that cannot both be checked.
    /// (With a cut document, the whole document is parsed again for the error.)
    fn conflict(&self, root: Node<'_, 'input>, conflict: Conflict) -> ParseError {
        let Conflict { range, previous } = conflict;
        // The later listing of the range: the last element with its first block and digest.
        let line = self
            .child(root, "BlockMap")
            .and_then(|map| {
                range_nodes(map)
                    .filter(|node| {
                        let text = text_of(*node);
                        let text = text.as_ref();
                        let first = text.split_once('-').map_or(text, |(a, _)| a);
                        parse_u64(first) == Some(range.first())
                            && node.attributes().any(|a| {
                                range.digest().is_some_and(|d| {
                                    d.to_hex().eq_ignore_ascii_case(a.value().trim())
                                })
                            })
                    })
                    .last()
            })
            .map_or_else(|| self.line(root), |node| self.line(node));
        if (range.first(), range.last()) == (previous.first(), previous.last()) {
            ParseError::ConflictingDuplicate {
                range: range.to_string(),
                line,
            }
        } else {
            ParseError::OverlappingChecksums {
                range: range.to_string(),
                previous: previous.to_string(),
                line,
            }
        }
    }

    fn child<'a>(&self, node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
        node.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
    }

    fn optional_number<'a>(
        &self,
        root: Node<'a, 'input>,
        name: &str,
    ) -> Result<Option<(u64, Node<'a, 'input>)>, ParseError> {
        let Some(node) = self.child(root, name) else {
            return Ok(None);
        };
        let value = text_of(node);
        match parse_u64(&value) {
            Some(n) => Ok(Some((n, node))),
            None => Err(ParseError::BadNumber {
                element: name.to_owned(),
                value: value.trim().to_owned(),
                line: self.line(node),
            }),
        }
    }

    fn number<'a>(
        &self,
        root: Node<'a, 'input>,
        name: &'static str,
        version: Version,
    ) -> Result<(u64, Node<'a, 'input>), ParseError> {
        self.optional_number(root, name)?
            .ok_or(ParseError::MissingElement {
                element: name,
                version,
            })
    }

    /// The line a node starts on. Linear in the node's offset: for errors only.
    fn line(&self, node: Node<'_, '_>) -> u32 {
        self.doc.text_pos_at(node.range().start).row
    }
}

/// An element's text as the reference's parser (ElementTree) reads it: all the text
/// before its first child element, with comments and processing instructions left out,
/// so `<ImageSize><!-- size -->42</ImageSize>` holds 42 and `<Range>1<!-- -->-2</Range>`
/// holds `1-2`. Borrowed in the usual case of a single text node.
fn text_of<'a>(node: Node<'a, '_>) -> Cow<'a, str> {
    let mut parts = node
        .children()
        .take_while(|c| !c.is_element())
        .filter(|c| c.is_text())
        .filter_map(|c| c.text());
    let Some(first) = parts.next() else {
        return Cow::Borrowed("");
    };
    match parts.next() {
        None => Cow::Borrowed(first),
        Some(second) => {
            let mut text = String::from(first);
            text.push_str(second);
            text.extend(parts);
            Cow::Owned(text)
        }
    }
}

fn range_nodes<'a, 'input>(map: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    map.children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Range")
}

/// A decimal number as Python's `int()` reads one: surrounding whitespace, an
/// optional `+`, and single `_` between digits allowed.
pub(super) fn parse_u64(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    let bytes = digits.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes[0].is_ascii_digit()
        && bytes[bytes.len() - 1].is_ascii_digit()
        && bytes.iter().all(|&b| b.is_ascii_digit() || b == b'_')
        && !digits.contains("__");
    if !well_formed {
        return None;
    }
    if digits.contains('_') {
        digits.replace('_', "").parse().ok()
    } else {
        digits.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_u64;

    #[test]
    fn numbers_as_python_int_reads_them() {
        assert_eq!(parse_u64(" +3 "), Some(3));
        assert_eq!(parse_u64("1_000"), Some(1000));
        assert_eq!(parse_u64("007"), Some(7));
        for bad in [
            "",
            "+",
            "-1",
            "_1",
            "1_",
            "1__0",
            "1 0",
            "0x10",
            "18446744073709551616",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }
}
