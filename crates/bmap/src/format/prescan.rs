//! A linear pass over a bmap's text before the XML parser sees it, for what the parser
//! handles badly: elements with floods of attributes and nested namespace declarations
//! (its time grows with the square of their number), and whether a document type
//! declaration may be let through (one that declares nothing).

use super::diagnostics::ParseError;
use super::limits::{MAX_ATTRIBUTES, MAX_NAMESPACES, MAX_RANGES};

/// Whether the document type declaration, if there is one, declares nothing itself
/// (`<!DOCTYPE bmap>` or `<!DOCTYPE bmap SYSTEM "bmap.dtd">`, whose DTD is never read):
/// harmless, and the reference accepts it. An internal subset (`[...]`, where entities
/// are declared) stays refused.
pub(super) fn doctype_without_declarations(text: &str) -> bool {
    // One declaration at most, so that one in a comment cannot stand for the real one.
    let Some(at) = text.find("<!DOCTYPE") else {
        return false;
    };
    if text[at + 1..].contains("<!DOCTYPE") {
        return false;
    }
    let mut quote = None;
    for c in text[at..].chars() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => return false,
            (None, '>') => return true,
            (None, _) => {}
        }
    }
    false
}

/// Refuses a start tag with more than [`MAX_ATTRIBUTES`] attributes, a text with
/// more than [`MAX_NAMESPACES`] namespace declarations, and one with more than
/// [`MAX_RANGES`] `Range` elements, in one pass over the text before it is parsed. Comments, CDATA sections, processing instructions and
/// declarations are skipped; `=` signs outside quotes are counted in the other tags.
pub(super) fn check_attribute_counts(text: &str) -> Result<(), ParseError> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut namespaces = 0;
    let mut ranges = 0;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'<') {
        let start = at + offset;
        let rest = &text[start..];
        let skip_to = |end: &str| {
            rest.find(end)
                .map_or(bytes.len(), |i| start + i + end.len())
        };
        if rest.starts_with("<!--") {
            at = skip_to("-->");
        } else if rest.starts_with("<![CDATA[") {
            at = skip_to("]]>");
        } else if rest.starts_with("<?") {
            at = skip_to("?>");
        } else {
            if is_range_tag(rest) {
                ranges += 1;
                if ranges > MAX_RANGES {
                    return Err(ParseError::TooManyRanges { max: MAX_RANGES });
                }
            }
            let mut quote = None;
            let mut count = 0;
            at = bytes.len();
            for (i, &b) in bytes[start + 1..].iter().enumerate() {
                match (quote, b) {
                    (Some(q), _) if b == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(b),
                    (None, b'=') => count += 1,
                    (None, b'x')
                        if bytes[start + i].is_ascii_whitespace()
                            && bytes[start + 1 + i..].starts_with(b"xmlns") =>
                    {
                        namespaces += 1;
                    }
                    (None, b'>' | b'<') => {
                        at = start + 1 + i;
                        break;
                    }
                    (None, _) => {}
                }
            }
            if count > MAX_ATTRIBUTES || namespaces > MAX_NAMESPACES {
                let line = 1 + bytes[..start].iter().filter(|&&b| b == b'\n').count();
                let line = u32::try_from(line).unwrap_or(u32::MAX);
                return Err(if count > MAX_ATTRIBUTES {
                    ParseError::TooManyAttributes {
                        line,
                        max: MAX_ATTRIBUTES,
                    }
                } else {
                    ParseError::TooManyNamespaces {
                        line,
                        max: MAX_NAMESPACES,
                    }
                });
            }
        }
    }
    Ok(())
}

/// Whether a tag (the text from its `<`) opens an element whose local name is `Range`,
/// as the parser finds ranges (`<Range>`, `<Range chksum=...>`, `<b:Range>`).
fn is_range_tag(tag: &str) -> bool {
    let name_end = tag[1..]
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .map_or(tag.len(), |i| i + 1);
    let name = &tag[1..name_end];
    name == "Range" || name.ends_with(":Range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_tags_are_told_by_their_local_name() {
        for tag in [
            "<Range>",
            "<Range chksum=\"a\">",
            "<Range/>",
            "<b:Range\n>",
            "<Range",
        ] {
            assert!(is_range_tag(tag), "{tag:?}");
        }
        for tag in ["</Range>", "<Ranges>", "<RangeX>", "<BlockMap>", "<"] {
            assert!(!is_range_tag(tag), "{tag:?}");
        }
    }

    #[test]
    fn ranges_in_comments_and_cdata_are_not_counted() {
        let hidden = "<!-- <Range>1</Range> --><![CDATA[<Range>]]>".repeat(MAX_RANGES + 1);
        let text = format!("<bmap>{hidden}<Range>1</Range></bmap>");
        assert!(check_attribute_counts(&text).is_ok());
    }
}
