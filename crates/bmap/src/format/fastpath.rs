//! The ranges of a bmap as `create` writes them, read without the XML parser's tree:
//! the tree costs some 280 bytes a range (a million ranges: 280 MB on top of the file
//! and the ranges), and its ranges are most of a large bmap.
//!
//! Only a strict subset is read here: inside the first `<BlockMap>`, whitespace and
//! `<Range>` elements with at most one plain attribute (`chksum="hex"`, `sha1='hex'`)
//! and a text of digits, spaces, `+`, `-` and `_`. The rest of the document, with the
//! `BlockMap`'s content cut out, goes to the XML parser as usual. A `BlockMap` holding
//! anything else (comments, entities, CDATA, other elements, namespaces) is not cut, and
//! the whole document is parsed as before; so is one whose parse fails, so that every
//! error is the full parser's. In the subset the two readings agree: such content is
//! well-formed by itself, and the tree would hold exactly these elements, texts and
//! attribute values.

/// A `BlockMap`'s content cut out of a document.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cut<'a> {
    /// Where the content starts in the whole text (just after `<BlockMap>`).
    pub(super) start: usize,
    /// The content: ranges and whitespace.
    pub(super) content: &'a str,
    /// The nodes the XML parser would have made of the content (elements, their texts,
    /// the whitespace between them), counted against its node limit.
    pub(super) nodes: u32,
}

/// One `<Range>` of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawRange<'a> {
    /// The element's text.
    pub(super) text: &'a str,
    /// Its attribute, name and value, if it has one.
    pub(super) attribute: Option<(&'a str, &'a str)>,
}

use super::diagnostics::ParseError;
use super::parse::parse_u64;
use super::{BlockRange, ChecksumKind, Digest};

const OPEN: &str = "<BlockMap>";

impl<'a> Cut<'a> {
    /// The content of the first `<BlockMap>` start tag outside comments, CDATA and
    /// processing instructions, when it is all in the subset; `None` otherwise.
    pub(super) fn find(text: &'a str) -> Option<Cut<'a>> {
        let start = first_tag(text, OPEN)? + OPEN.len();
        let mut ranges = Ranges {
            rest: &text[start..],
            nodes: 0,
        };
        for range in &mut ranges {
            range?;
        }
        let len = text.len() - start - ranges.rest.len();
        Some(Cut {
            start,
            content: &text[start..start + len],
            nodes: ranges.nodes,
        })
    }

    /// Where the `BlockMap` element starts in the text without the content.
    pub(super) fn element_start(&self) -> usize {
        self.start - OPEN.len()
    }

    /// The ranges (each in the subset: checked by [`Cut::find`]).
    pub(super) fn ranges(&self) -> impl Iterator<Item = RawRange<'a>> {
        Ranges {
            rest: self.content,
            nodes: 0,
        }
        .map_while(|r| r)
    }

    /// The ranges as `BlockRange`s, read as the parser reads the tree's. An
    /// error (named at the `BlockMap`'s line) only makes the caller parse the whole
    /// document, whose error is the one shown.
    pub(super) fn block_ranges(
        &self,
        attribute: &str,
        kind: Option<ChecksumKind>,
        line: u32,
    ) -> Result<Vec<BlockRange>, ParseError> {
        let mut ranges = Vec::with_capacity(self.ranges().count());
        for raw in self.ranges() {
            let bad = || ParseError::BadRange {
                text: raw.text.trim().to_owned(),
                line,
            };
            let (first, last) = match raw.text.split_once('-') {
                Some((a, b)) => (parse_u64(a).ok_or_else(bad)?, parse_u64(b).ok_or_else(bad)?),
                None => {
                    let n = parse_u64(raw.text).ok_or_else(bad)?;
                    (n, n)
                }
            };
            let value = raw
                .attribute
                .filter(|(name, _)| *name == attribute)
                .map(|(_, value)| value);
            let digest = match (value, kind) {
                (Some(hex), Some(kind)) => {
                    Some(Digest::from_hex(kind, hex.trim()).map_err(|source| {
                        ParseError::BadDigest {
                            element: format!("'{}' attribute", attribute),
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

    /// A position in the text without the content, as a position in the whole text.
    pub(super) fn original(&self, at: usize) -> usize {
        if at >= self.start {
            at + self.content.len()
        } else {
            at
        }
    }

    /// The whole text without the content.
    pub(super) fn skeleton(&self, text: &str) -> String {
        let end = self.start + self.content.len();
        [&text[..self.start], &text[end..]].concat()
    }
}

/// Where `tag` first starts outside comments, CDATA sections and processing
/// instructions.
fn first_tag(text: &str, tag: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(offset) = text[at..].find('<') {
        let start = at + offset;
        let rest = &text[start..];
        let skip = |end: &str| rest.find(end).map(|i| start + i + end.len());
        at = if rest.starts_with("<!--") {
            skip("-->")?
        } else if rest.starts_with("<![CDATA[") {
            skip("]]>")?
        } else if rest.starts_with("<?") {
            skip("?>")?
        } else if rest.starts_with(tag) {
            return Some(start);
        } else {
            start + 1
        };
    }
    None
}

/// The subset's ranges, up to `</BlockMap`: `Some(None)` for anything outside it.
struct Ranges<'a> {
    rest: &'a str,
    /// Nodes read so far: each element, each non-empty text, each whitespace run.
    nodes: u32,
}

impl<'a> Iterator for Ranges<'a> {
    type Item = Option<RawRange<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest.trim_start_matches([' ', '\t', '\n']);
        if rest.len() < self.rest.len() {
            self.nodes = self.nodes.saturating_add(1);
        }
        self.rest = rest;
        if rest.starts_with("</BlockMap") {
            return None;
        }
        let parsed = range(rest);
        match parsed {
            Some((range, after)) => {
                let texts = u32::from(!range.text.is_empty());
                self.nodes = self.nodes.saturating_add(1 + texts);
                self.rest = after;
                Some(Some(range))
            }
            None => {
                // Stops here: the caller gives up on the cut.
                self.rest = "</BlockMap";
                Some(None)
            }
        }
    }
}

/// One `<Range ...>text</Range>` at the start of `text`, and the text after it.
fn range(text: &str) -> Option<(RawRange<'_>, &str)> {
    let rest = text.strip_prefix("<Range")?;
    let (attribute, rest) = match rest.strip_prefix('>') {
        Some(rest) => (None, rest),
        None => {
            let trimmed = rest.trim_start_matches([' ', '\t', '\n']);
            if trimmed.len() == rest.len() {
                return None;
            }
            match trimmed.strip_prefix('>') {
                Some(rest) => (None, rest),
                None => {
                    let (name, value, rest) = attribute(trimmed)?;
                    let rest = rest
                        .trim_start_matches([' ', '\t', '\n'])
                        .strip_prefix('>')?;
                    (Some((name, value)), rest)
                }
            }
        }
    };
    let len = rest
        .find(|c: char| !matches!(c, '0'..='9' | ' ' | '\t' | '\n' | '+' | '-' | '_'))
        .unwrap_or(rest.len());
    let (body, rest) = rest.split_at(len);
    let rest = rest
        .strip_prefix("</Range")?
        .trim_start_matches([' ', '\t', '\n'])
        .strip_prefix('>')?;
    Some((
        RawRange {
            text: body,
            attribute,
        },
        rest,
    ))
}

/// `name="value"` (or with single quotes): a plain name (an XML name: a letter or `_`
/// first, then letters, digits and `_`) not starting with `xml`, a value of letters and
/// digits.
fn attribute(text: &str) -> Option<(&str, &str, &str)> {
    let name_len = text
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(name_len);
    let starts_a_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_a_name || name.to_ascii_lowercase().starts_with("xml") {
        return None;
    }
    let rest = rest.strip_prefix('=')?;
    let quote = rest.chars().next().filter(|&q| q == '"' || q == '\'')?;
    let rest = &rest[1..];
    let value_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (value, rest) = rest.split_at(value_len);
    Some((name, value, rest.strip_prefix(quote)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer's check that the cut and the tree agree: an attribute name
    /// starting with a digit is not XML, and the cut read it as a checksum attribute.
    #[test]
    fn an_attribute_name_starting_with_a_digit_is_left_to_the_tree() {
        assert!(attribute("1sha1=\"ab\">").is_none());
        assert!(attribute("_x=\"ab\">").is_some());
        let text = "<bmap version=\"1.2\"><ImageSize>4096</ImageSize><BlockSize>4096\
                    </BlockSize><BlocksCount>1</BlocksCount><MappedBlocksCount>1\
                    </MappedBlocksCount><BlockMap><Range 1sha1=\"ab\">0</Range>\
                    </BlockMap></bmap>";
        assert!(same_reading(text.as_bytes()).is_ok());
        assert!(crate::format::parse(text.as_bytes()).is_err());
    }

    #[test]
    fn the_subset_is_cut_and_anything_else_is_not() {
        let text = "<bmap><!-- <BlockMap> --><BlockMap>\n  <Range chksum=\"ab\"> 1-2 </Range>\n  \
                    <Range>5</Range>\n</BlockMap></bmap>";
        let cut = Cut::find(text).expect("in the subset");
        assert_eq!(&text[cut.element_start()..cut.start], "<BlockMap>");
        let ranges: Vec<_> = cut.ranges().collect();
        assert_eq!(
            ranges,
            [
                RawRange {
                    text: " 1-2 ",
                    attribute: Some(("chksum", "ab"))
                },
                RawRange {
                    text: "5",
                    attribute: None
                }
            ]
        );
        assert_eq!(
            cut.skeleton(text),
            "<bmap><!-- <BlockMap> --><BlockMap></BlockMap></bmap>"
        );
        for odd in [
            "<Range>1<!-- x --></Range>",
            "<Range>&#x31;</Range>",
            "<Range a=\"1\" b=\"2\">1</Range>",
            "<Range xmlns=\"x\">1</Range>",
            "<b:Range>1</b:Range>",
            "<Range><![CDATA[1]]></Range>",
            "<Other/>",
            "x",
            "<Range>1\r</Range>",
            "<Range chksum=\"a&amp;\">1</Range>",
        ] {
            let text = format!("<bmap><BlockMap>{odd}</BlockMap></bmap>");
            assert!(Cut::find(&text).is_none(), "{odd}");
        }
    }

    /// The bmap text with `edit` applied and its SHA-256 self-checksum recomputed.
    fn resum(text: &str, edit: impl Fn(&str) -> String) -> Vec<u8> {
        let zeros = "0".repeat(64);
        let start = text.find("<BmapFileChecksum>").expect("checksum") + 19;
        let old = &text[start..start + 64];
        let edited = edit(&text.replacen(old, &zeros, 1));
        let digest = crate::format::ChecksumKind::Sha256
            .digest(edited.as_bytes())
            .to_hex();
        edited.replacen(&zeros, &digest, 1).into_bytes()
    }

    /// The cut and the whole tree give the same bmap, warnings and errors.
    #[test]
    fn the_cut_reads_as_the_whole_tree_does() {
        use crate::format::parse::parse_whole;
        use crate::format::{BlockRange, Bmap, ChecksumKind};
        let digest = |b: u8| ChecksumKind::Sha256.digest(&[b]);
        let ranges = vec![
            BlockRange::new(0, 1, Some(digest(1))).expect("range"),
            BlockRange::new(4, 4, None).expect("range"),
            BlockRange::new(6, 9, Some(digest(2))).expect("range"),
        ];
        let bmap =
            Bmap::new(10 * 4096 - 5, 4096, Some(ChecksumKind::Sha256), ranges).expect("bmap");
        let text = String::from_utf8(bmap.to_xml()).expect("UTF-8");
        let d1 = digest(1).to_hex();
        let cases: Vec<Vec<u8>> = vec![
            text.clone().into_bytes(),
            // Unordered, duplicated, overlapping, past the end: warnings.
            resum(&text, |t| t.replacen("> 4 <", "> 4-12 <", 1)),
            resum(&text, |t| {
                t.replacen(
                    "<Range> 4 </Range>",
                    "<Range> 4 </Range><Range>3-5</Range>",
                    1,
                )
            }),
            resum(&text, |t| t.replacen("> 6-9 <", "> 0-1 <", 1)),
            // Errors: a bad range, a bad digest, a conflict, a wrong count.
            resum(&text, |t| t.replacen("> 4 <", "> 4--5 <", 1)),
            resum(&text, |t| t.replacen(&d1, "abc", 1)),
            resum(&text, |t| t.replacen("> 6-9 <", "> 1-2 <", 1)),
            resum(&text, |t| t.replacen("> 4 <", "> 5-3 <", 1)),
            resum(&text, |t| {
                t.replacen("<MappedBlocksCount> 7", "<MappedBlocksCount> 8", 1)
            }),
            // Another attribute name, single quotes, the checksum after the BlockMap.
            resum(&text, |t| {
                t.replacen("<Range> 4 </Range>", "<Range x='1'> 4 </Range>", 1)
            }),
            resum(&text, |t| {
                let start = t.find("    <BmapFileChecksum>").expect("element");
                let end = t.find("</BmapFileChecksum>\n").expect("end") + 20;
                let element = &t[start..end];
                t.replacen(element, "", 1)
                    .replacen("</bmap>", &format!("{element}</bmap>"), 1)
            }),
            // A self-checksum that does not match.
            text.replacen("> 4 <", "> 5 <", 1).into_bytes(),
            // Version 1.2 with sha1 range attributes.
            b"<bmap version=\"1.2\"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize>\
              <BlocksCount>2</BlocksCount><MappedBlocksCount>1</MappedBlocksCount><BlockMap>\
              <Range sha1=\"da39a3ee5e6b4b0d3255bfef95601890afd80709\">0</Range></BlockMap></bmap>"
                .to_vec(),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            for lenient in [false, true] {
                let text = std::str::from_utf8(bytes).expect("UTF-8");
                let fast = super::super::parse::parse_with_for_tests(bytes, lenient);
                let whole = parse_whole(bytes, lenient);
                match (fast, whole) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.bmap, b.bmap, "case {i}");
                        assert_eq!(a.self_check, b.self_check, "case {i}");
                        assert_eq!(a.warnings, b.warnings, "case {i}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "case {i}"),
                    (a, b) => panic!("case {i} {text}: cut {a:?}, whole {b:?}"),
                }
            }
        }
        let cut = Cut::find(&text).expect("what create writes is cut");
        // The nodes counted for the content are the ones the tree would hold.
        let count = |t: &str| {
            roxmltree::Document::parse(t)
                .expect("XML")
                .descendants()
                .count()
        };
        assert_eq!(
            count(&text),
            count(&cut.skeleton(&text)) + cut.nodes as usize
        );
        let tight = "<bmap><BlockMap><Range>1</Range><Range></Range>\n</BlockMap></bmap>";
        let cut = Cut::find(tight).expect("cut");
        assert_eq!(
            count(tight),
            count(&cut.skeleton(tight)) + cut.nodes as usize
        );
    }

    /// Compares the cut with the whole tree on `bytes`, both strict and lenient.
    fn same_reading(bytes: &[u8]) -> Result<(), String> {
        use crate::format::parse::{parse_whole, parse_with_for_tests};
        for lenient in [false, true] {
            match (
                parse_with_for_tests(bytes, lenient),
                parse_whole(bytes, lenient),
            ) {
                (Ok(a), Ok(b))
                    if a.bmap == b.bmap
                        && a.self_check == b.self_check
                        && a.warnings == b.warnings => {}
                (Err(a), Err(b)) if a.to_string() == b.to_string() => {}
                (a, b) => return Err(format!("cut {a:?}\nwhole {b:?}")),
            }
        }
        Ok(())
    }

    proptest::proptest! {
        /// Range bodies and attributes from an alphabet that reaches both sides of the
        /// subset's edges (digits, separators, entities, comments, quotes, CR).
        #[test]
        fn the_cut_and_the_tree_agree_on_random_blockmaps(
            ranges in proptest::collection::vec(
                (
                    "[0-9 +_\\-]{0,6}|[0-9]{1,2}(<!--x-->|&#x31;|\r)[0-9]",
                    proptest::option::of(("chksum|sha1|x|xmlns", "[0-9a-f]{0,3}|[0-9a-f&<]{1,2}")),
                    "[ \n]{0,2}",
                ),
                0..6,
            ),
            version in "1\\.2|2\\.0",
        ) {
            let mut map = String::new();
            for (body, attribute, space) in &ranges {
                map += space;
                match attribute {
                    Some((name, value)) => map += &format!("<Range {name}=\"{value}\">{body}</Range>"),
                    None => map += &format!("<Range>{body}</Range>"),
                }
            }
            let text = format!(
                "<bmap version=\"{version}\"><ImageSize>40000</ImageSize><BlockSize>4096\
                 </BlockSize><BlocksCount>10</BlocksCount><ChecksumType>sha256</ChecksumType>\
                 <BmapFileChecksum>{}</BmapFileChecksum><BlockMap>{map}</BlockMap></bmap>",
                "0".repeat(64)
            );
            let digest = crate::format::ChecksumKind::Sha256.digest(text.as_bytes()).to_hex();
            let text = text.replacen(&"0".repeat(64), &digest, 1);
            proptest::prop_assert!(same_reading(text.as_bytes()).is_ok(), "{}\n{:?}", text, same_reading(text.as_bytes()));
        }
    }
}
