//! The library's limits on hostile input (docs/limits.md): the range and node caps of
//! the bmap parser, the bmap file cap of the reader, and the decoding-window limit of
//! the decoder chains, each with its typed error.

use std::io::Cursor;

use bmap::format::limits::{MAX_NODES, MAX_RANGES};
use bmap::format::{ChecksumKind, ParseError, parse};
use bmap::source::{DEFAULT_MAX_WINDOW, Limits, WindowTooLarge, decode_with};
use bmap::trust::{BMAP, ReadError, read_capped};

/// A format 2.0 bmap of `ranges` one-block ranges, with its own checksum.
fn bmap_with_ranges(ranges: u64) -> Vec<u8> {
    let blocks = 2 * ranges;
    let mut text = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n<ImageSize>{}</ImageSize>\n\
         <BlockSize>4096</BlockSize>\n<BlocksCount>{blocks}</BlocksCount>\n\
         <MappedBlocksCount>{ranges}</MappedBlocksCount>\n<ChecksumType>sha256</ChecksumType>\n\
         <BmapFileChecksum>{}</BmapFileChecksum>\n<BlockMap>\n",
        blocks * 4096,
        "0".repeat(64)
    );
    for block in (0..blocks).step_by(2) {
        text += &format!("<Range>{block}</Range>\n");
    }
    text += "</BlockMap>\n</bmap>\n";
    let digest = ChecksumKind::Sha256.digest(text.as_bytes()).to_hex();
    text.replacen(&"0".repeat(64), &digest, 1).into_bytes()
}

#[test]
fn the_range_cap_takes_exactly_its_count_and_refuses_one_more() {
    let max = MAX_RANGES as u64;
    let parsed = parse(&bmap_with_ranges(max)).expect("at the cap");
    assert_eq!(parsed.bmap.ranges().len(), MAX_RANGES);
    let err = parse(&bmap_with_ranges(max + 1)).expect_err("over the cap");
    assert!(
        matches!(err, ParseError::TooManyRanges { max: 1_048_576 }),
        "{err:?}"
    );
}

#[test]
fn an_element_soup_past_the_node_cap_is_refused_by_the_parser() {
    let soup = format!(
        "<?xml version=\"1.0\"?>\n<bmap version=\"2.0\">{}</bmap>\n",
        "<a/>".repeat(MAX_NODES as usize + 1)
    );
    let err = parse(soup.as_bytes()).expect_err("over the node cap");
    assert!(matches!(err, ParseError::TooManyNodes { .. }), "{err:?}");
}

#[test]
fn entity_declarations_are_refused() {
    let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE bmap [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;\">]>\n\
                  <bmap version=\"2.0\"><ImageSize>&b;</ImageSize></bmap>\n";
    assert!(matches!(parse(laughs.as_bytes()), Err(ParseError::Xml(_))));
}

#[test]
fn a_regular_bmap_file_over_the_cap_is_refused_from_its_size() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("huge.bmap");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(BMAP.bytes + 1))
        .expect("sparse file");
    let err = read_capped(&path, &BMAP, &bmap::Interrupt::new()).expect_err("over the cap");
    assert!(matches!(err, ReadError::TooLarge(_)), "{err:?}");
}

/// A zstd frame header (magic, descriptor without a content size, window descriptor)
/// and an empty raw last block.
fn zstd_header(window_descriptor: u8) -> Vec<u8> {
    vec![
        0x28,
        0xb5,
        0x2f,
        0xfd,
        0x00,
        window_descriptor,
        0x01,
        0x00,
        0x00,
    ]
}

#[test]
fn a_zstd_window_over_the_limit_is_refused_naming_both_and_a_raised_limit_lets_it_in() {
    // 0x88: 2^(10 + 17) = 128 MiB, the default limit itself; 0x89: 144 MiB.
    let at = decode_with(
        Box::new(Cursor::new(zstd_header(0x88))),
        None,
        1,
        &Limits::default(),
    );
    assert!(at.is_ok(), "{at:?}");
    let over = decode_with(
        Box::new(Cursor::new(zstd_header(0x89))),
        None,
        1,
        &Limits::default(),
    )
    .expect_err("over the limit");
    let inner = over
        .get_ref()
        .and_then(|e| e.downcast_ref::<WindowTooLarge>())
        .expect("a WindowTooLarge");
    assert_eq!((inner.window, inner.limit), (144 << 20, DEFAULT_MAX_WINDOW));
    assert!(over.to_string().contains("144.0 MiB window"), "{over}");
    let raised = Limits {
        max_window: 144 << 20,
    };
    assert!(decode_with(Box::new(Cursor::new(zstd_header(0x89))), None, 1, &raised).is_ok());
}
