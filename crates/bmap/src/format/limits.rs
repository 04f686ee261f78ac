//! The limits on what a bmap may hold, in one place, each measured against real bmaps.
//! The size of the file itself is capped where it is read ([`crate::trust::BMAP`]).
//! docs/limits.md tables them with their errors.

/// The most `<Range>` elements a bmap may list: 1,048,576 (2^20).
///
/// The largest real bmaps (fragmented multi-GB images) list tens of thousands of ranges;
/// this is 25 times more, and still parses in about two seconds in under 600 MB. A bmap
/// listing more is refused before the XML is parsed, so its ranges cost no memory.
pub const MAX_RANGES: usize = 1 << 20;

/// The most nodes (elements, texts, comments, processing instructions) the XML parser
/// builds: 4,194,304 (2^22), four per allowed range (a range is an element, its text and
/// the whitespace after it). Whatever the document's shape (a million nested or empty
/// elements), the parser's memory stays bounded by this, some 60 bytes a node.
pub const MAX_NODES: u32 = 4 * (MAX_RANGES as u32);

/// The most attributes (namespace declarations included) one element may have. The XML
/// parser compares each attribute with the element's others, in time quadratic in their
/// number: one element with 200,000 attributes (a 2.6 MB bmap) took two minutes, deaf
/// to Ctrl-C. A bmap's elements have one or two.
pub const MAX_ATTRIBUTES: usize = 32;

/// The most namespace declarations (`xmlns` attributes) a bmap may hold. The XML
/// parser copies the namespaces in scope into every element: 20,000 nested elements,
/// each declaring one (a 600 KB bmap), ran for more than ten minutes. A bmap declares
/// none or one or two.
pub const MAX_NAMESPACES: usize = 64;
