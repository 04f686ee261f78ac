//! Bmap -> XML in format 2.0, byte for byte as the reference (bmaptool 3.9) `create`
//! writes it: the same header comment, indentation, human-readable sizes, padding of
//! the mapped-blocks count and comment, and the file's own checksum.

use std::fmt::Write as _;

use super::{Bmap, ChecksumKind, human_size, self_checksum};

/// The reference's fixed header: XML declaration, explanatory comment, blank line.
const HEADER: &str = include_str!("header.txt");

/// Serialises `bmap` (see [`Bmap::to_xml`]).
pub(super) fn to_xml(bmap: &Bmap) -> Vec<u8> {
    let kind = bmap.checksum_kind().unwrap_or(ChecksumKind::Sha256);
    let blocks = bmap.blocks_count();
    let mapped = bmap.mapped_blocks();
    let image_human = human_size(bmap.image_size());

    let mut xml = String::with_capacity(HEADER.len() + 2048 + bmap.ranges().len() * 100);
    xml.push_str(HEADER);
    xml.push_str("<bmap version=\"2.0\">\n");
    element(
        &mut xml,
        &format!("Image size in bytes: {image_human}"),
        "ImageSize",
        &bmap.image_size().to_string(),
    );
    element(
        &mut xml,
        "Size of a block in bytes",
        "BlockSize",
        &bmap.block_size().to_string(),
    );
    element(
        &mut xml,
        "Count of blocks in the image file",
        "BlocksCount",
        &blocks.to_string(),
    );

    // The reference first writes placeholders (spaces) and later overwrites them from
    // their start with the real text; what the text does not cover stays, and a longer
    // text runs into what follows. `overwrite` reproduces that.
    let placeholder = format!(
        "{} or {}   -->",
        " ".repeat(image_human.len()),
        " ".repeat(6)
    );
    let percent = mapped as f64 * 100.0 / blocks.max(1) as f64;
    let mapped_text = format!(
        "{} or {percent:.1}%",
        human_size(mapped.saturating_mul(bmap.block_size()))
    );
    let _ = writeln!(
        xml,
        "    <!-- Count of mapped blocks: {}",
        overwrite(&placeholder, &mapped_text)
    );
    let count_field = format!(
        "{} </MappedBlocksCount>",
        " ".repeat(blocks.to_string().len())
    );
    let _ = writeln!(
        xml,
        "    <MappedBlocksCount> {}\n",
        overwrite(&count_field, &mapped.to_string())
    );

    element(
        &mut xml,
        "Type of checksum used in this file",
        "ChecksumType",
        kind.name(),
    );
    xml.push_str(
        "    <!-- The checksum of this bmap file. When it is calculated, the value of\n         \
         the checksum has to be zero (all ASCII \"0\" symbols).  -->\n    <BmapFileChecksum> ",
    );
    let checksum_at = xml.len();
    xml.push_str(&"0".repeat(kind.hex_len()));
    xml.push_str(" </BmapFileChecksum>\n\n");

    xml.push_str(
        "    <!-- The block map which consists of elements which may either be a\n         \
         range of blocks or a single block. The 'chksum' attribute\n         \
         (if present) is the checksum of this block range. -->\n    <BlockMap>\n",
    );
    for range in bmap.ranges() {
        match range.digest() {
            Some(digest) => {
                let _ = writeln!(xml, "        <Range chksum=\"{digest}\"> {range} </Range>");
            }
            None => {
                let _ = writeln!(xml, "        <Range> {range} </Range>");
            }
        }
    }
    xml.push_str("    </BlockMap>\n</bmap>\n");

    let mut bytes = xml.into_bytes();
    let digest = self_checksum(kind, &bytes, checksum_at)
        .expect("the checksum placeholder lies inside the document");
    bytes[checksum_at..checksum_at + kind.hex_len()].copy_from_slice(digest.to_hex().as_bytes());
    bytes
}

/// A commented element: comment line, `    <NAME> value </NAME>`, blank line.
fn element(xml: &mut String, comment: &str, name: &str, value: &str) {
    let _ = write!(
        xml,
        "    <!-- {comment} -->\n    <{name}> {value} </{name}>\n\n"
    );
}

/// `text` written over the start of `field`; a longer text replaces as many characters.
fn overwrite(field: &str, text: &str) -> String {
    let rest = field.get(text.len()..).unwrap_or("");
    format!("{text}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_the_reference_one() {
        assert_eq!(HEADER.len(), 1218);
        assert_eq!(
            ChecksumKind::Sha256.digest(HEADER.as_bytes()).to_hex(),
            "e1e46d5d3ccd1bce50fac5849003cb4e0049892356d20bb9d98889a792be058d"
        );
    }

    #[test]
    fn overwrite_keeps_or_eats_placeholder() {
        assert_eq!(overwrite("     x", "ab"), "ab   x");
        assert_eq!(overwrite("  x", "abcd"), "abcd");
    }
}
