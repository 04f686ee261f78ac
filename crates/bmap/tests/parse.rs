//! The parser against the reference's own test data, hostile edits, and random
//! emit -> parse round trips.

use std::path::PathBuf;

use bmap::format::{BlockRange, Bmap, ChecksumKind, ParseError, SelfCheck, Version, parse};
use proptest::prelude::*;

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/reference-test-data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

const VERSIONS: [&str; 4] = [
    "test.image.bmap.v1.2",
    "test.image.bmap.v1.3",
    "test.image.bmap.v1.4",
    "test.image.bmap.v2.0",
];

fn spans(bmap: &Bmap) -> Vec<(u64, u64)> {
    bmap.ranges()
        .iter()
        .map(|r| (r.first(), r.last()))
        .collect()
}

#[test]
fn every_reference_version_parses_to_the_same_ranges() {
    let parsed: Vec<_> = VERSIONS
        .iter()
        .map(|name| parse(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect();
    for p in &parsed {
        assert_eq!(p.bmap.image_size(), 821_752);
        assert_eq!(p.bmap.block_size(), 4096);
        assert_eq!(p.bmap.blocks_count(), 201);
        assert_eq!(p.bmap.mapped_blocks(), 117);
        assert_eq!(p.bmap.ranges().len(), 48);
        assert_eq!(
            p.bmap.ranges().last().map(|r| (r.first(), r.last())),
            Some((198, 199))
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(spans(&p.bmap), spans(&parsed[0].bmap));
    }
    let versions: Vec<Version> = parsed.iter().map(|p| p.bmap.version()).collect();
    assert_eq!(
        versions,
        [(1, 2), (1, 3), (1, 4), (2, 0)].map(|(major, minor)| Version { major, minor })
    );
    // 1.2 carries sha1 attributes (verified by us, ignored by the reference); 1.3 sha1;
    // 1.4 and 2.0 sha256.
    let kinds: Vec<_> = parsed.iter().map(|p| p.bmap.checksum_kind()).collect();
    use ChecksumKind::{Sha1, Sha256};
    assert_eq!(kinds, [Some(Sha1), Some(Sha1), Some(Sha256), Some(Sha256)]);
    assert!(
        parsed
            .iter()
            .all(|p| p.bmap.ranges().iter().all(|r| r.digest().is_some()))
    );
    // 1.2 and 1.3 hold the same SHA-1 digests; 1.4 and 2.0 the same SHA-256 ones.
    assert_eq!(parsed[0].bmap.ranges(), parsed[1].bmap.ranges());
    assert_eq!(parsed[2].bmap.ranges(), parsed[3].bmap.ranges());
}

#[test]
fn self_checksums_verify_with_the_documented_digests() {
    assert_eq!(
        parse(&data(VERSIONS[0])).expect("1.2").self_check,
        SelfCheck::Absent
    );
    for name in &VERSIONS[1..] {
        let p = parse(&data(name)).expect("parses");
        let kind = if name.ends_with("1.3") {
            ChecksumKind::Sha1
        } else {
            ChecksumKind::Sha256
        };
        assert_eq!(p.self_check, SelfCheck::Verified(kind), "{name}");
    }
}

/// Every one-byte change to a checksummed bmap is caught: by the self-checksum, or by
/// the parser when the change breaks the syntax first.
#[test]
fn any_one_byte_edit_fails() {
    for name in &VERSIONS[1..] {
        let original = data(name);
        // Every position would be 7000 parses per file; a stride still covers every
        // region (header comment, values, digests, ranges, closing tags).
        for at in (0..original.len()).step_by(7) {
            let mut edited = original.clone();
            edited[at] = if edited[at] == b'7' { b'8' } else { b'7' };
            assert!(
                parse(&edited).is_err(),
                "{name}: edit at byte {at} went unnoticed"
            );
        }
    }
}

#[test]
fn an_edited_range_with_a_fixed_up_checksum_still_parses_but_differs() {
    // The self-checksum protects against accidents; it is not a signature. Shows the
    // parser reads the ranges it was given.
    let text = String::from_utf8(data("test.image.bmap.v2.0")).expect("utf-8");
    let edited = text.replacen("> 198-199 <", "> 198-200 <", 1);
    assert!(matches!(
        parse(edited.as_bytes()),
        Err(ParseError::SelfChecksumMismatch { .. })
    ));
}

fn v2(body: &str, header: &str) -> Vec<u8> {
    // A 2.0 bmap with a correct self-checksum around the given BlockMap body.
    let zeros = "0".repeat(64);
    let text = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n{header}<ChecksumType>sha256</ChecksumType>\n\
         <BmapFileChecksum>{zeros}</BmapFileChecksum>\n<BlockMap>\n{body}</BlockMap>\n</bmap>\n"
    );
    let digest = ChecksumKind::Sha256.digest(text.as_bytes()).to_hex();
    text.replace(&zeros, &digest).into_bytes()
}

const SIZES: &str =
    "<ImageSize>40960</ImageSize><BlockSize>4096</BlockSize><BlocksCount>10</BlocksCount>\n";

#[test]
fn lenient_where_the_reference_is() {
    let p = parse(&v2(
        "<Range> 3 - 5 </Range>\n<Range>7</Range><Other/>\n",
        SIZES,
    ))
    .expect("spaces around the dash, single blocks, unknown elements");
    assert_eq!(spans(&p.bmap), [(3, 5), (7, 7)]);
    assert_eq!(
        p.warnings.len(),
        1,
        "missing MappedBlocksCount is worth a warning"
    );
    let header = format!("{SIZES}<MappedBlocksCount>99</MappedBlocksCount>\n");
    let p = parse(&v2("<Range>1</Range>\n", &header)).expect("a wrong count is harmless");
    assert!(p.warnings[0].to_string().contains("99"));
    let p = parse(&v2("", SIZES)).expect("an empty BlockMap is legal");
    assert!(p.bmap.ranges().is_empty());
    let upper = String::from_utf8(v2("", SIZES))
        .expect("utf-8")
        .replace("sha256", "SHA256");
    parse(fix_checksum(&upper).as_bytes()).expect("ChecksumType is case-insensitive, as hashlib");
    let minor = String::from_utf8(v2("", SIZES)).expect("utf-8");
    let minor = minor.replace("version=\"2.0\"", "version=\"2.5\"");
    // The version is part of the checksummed text: fix the checksum up again.
    let re = fix_checksum(&minor);
    assert_eq!(
        parse(re.as_bytes())
            .expect("2.x reads as 2.0")
            .bmap
            .version()
            .minor,
        5
    );
}

fn fix_checksum(text: &str) -> String {
    let start = text.find("<BmapFileChecksum>").expect("has checksum") + "<BmapFileChecksum>".len();
    let zeroed = format!(
        "{}{}{}",
        &text[..start],
        "0".repeat(64),
        &text[start + 64..]
    );
    let digest = ChecksumKind::Sha256.digest(zeroed.as_bytes()).to_hex();
    format!("{}{}{}", &text[..start], digest, &text[start + 64..])
}

#[test]
fn strict_where_it_matters() {
    let cases: &[(&str, &str, &str)] = &[
        ("<Range>5-3</Range>\n", SIZES, "ends before it starts"),
        ("<Range>8-10</Range>\n", SIZES, "beyond the image"),
        (
            "<Range>1-4</Range>\n<Range>4-6</Range>\n",
            SIZES,
            "overlaps",
        ),
        (
            "<Range>6</Range>\n<Range>2</Range>\n",
            SIZES,
            "overlaps or comes before",
        ),
        ("<Range>x-3</Range>\n", SIZES, "bad block range"),
        ("<Range></Range>\n", SIZES, "bad block range"),
        ("<Range>-1</Range>\n", SIZES, "bad block range"),
        (
            "<Range chksum=\"abcd\">1</Range>\n",
            SIZES,
            "64 hex characters",
        ),
        (
            "",
            "<ImageSize>40960</ImageSize><BlockSize>4096</BlockSize><BlocksCount>11</BlocksCount>\n",
            "inconsistent bmap",
        ),
        (
            "",
            "<ImageSize>40960</ImageSize><BlockSize>0</BlockSize><BlocksCount>10</BlocksCount>\n",
            "block size is zero",
        ),
        (
            "",
            "<ImageSize>ten</ImageSize><BlockSize>4096</BlockSize><BlocksCount>10</BlocksCount>\n",
            "not a whole number",
        ),
        (
            "",
            "<BlockSize>4096</BlockSize><BlocksCount>10</BlocksCount>\n",
            "no <ImageSize>",
        ),
        (
            "",
            "<ImageSize>18446744073709551615</ImageSize><BlockSize>4096</BlockSize><BlocksCount>4503599627370496</BlocksCount>\n",
            "too large",
        ),
        (
            "<Range>0-18446744073709551615</Range>\n",
            SIZES,
            "beyond the image",
        ),
    ];
    for (body, header, expected) in cases {
        let err = parse(&v2(body, header)).expect_err(body).to_string();
        assert!(
            err.contains(expected),
            "{body:?} {header:?}: '{err}' lacks '{expected}'"
        );
    }
    let err = parse(&v2("<Range>\n5-3</Range>\n", SIZES))
        .expect_err("reversed")
        .to_string();
    assert!(err.starts_with("line "), "errors name the line: {err}");
}

#[test]
fn versions_we_do_not_read_are_refused_cleanly() {
    for (version, expected) in [
        ("3.0", "version 3.0 is not supported"),
        ("0.9", "version 0.9 is not supported"),
        ("two", "bad format version"),
        ("2.x", "bad format version"),
    ] {
        let text = String::from_utf8(v2("", SIZES)).expect("utf-8");
        let text =
            fix_checksum(&text.replace("version=\"2.0\"", &format!("version=\"{version}\"")));
        let err = parse(text.as_bytes()).expect_err(version).to_string();
        assert!(err.contains(expected), "{version}: {err}");
    }
    let err = parse(b"<bmap><BlockMap/></bmap>")
        .expect_err("no version")
        .to_string();
    assert!(err.contains("no 'version' attribute"), "{err}");
    assert!(parse(b"not xml").is_err());
    assert!(
        parse(b"\xff\xfe")
            .expect_err("binary")
            .to_string()
            .contains("UTF-8")
    );
    let dtd = b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><bmap version=\"2.0\"/>";
    assert!(parse(dtd).is_err(), "DTDs (entity expansion) are refused");
}

#[test]
fn old_formats_without_checksums_or_image_size() {
    let text = "<bmap version=\"1.0\"><BlockSize>4096</BlockSize><BlocksCount>4</BlocksCount>\
                <MappedBlocksCount>2</MappedBlocksCount><BlockMap><Range>1-2</Range></BlockMap></bmap>";
    let p = parse(text.as_bytes()).expect("1.0 without ImageSize");
    assert_eq!(p.bmap.image_size(), 4 * 4096);
    assert_eq!(p.bmap.checksum_kind(), None);
    assert_eq!(p.self_check, SelfCheck::Absent);
    assert_eq!(p.warnings.len(), 1);
    // A 1.2 sha1 attribute of the wrong length is an error, not silently ignored.
    let bad = text.replace("<Range>", "<Range sha1=\"12\">");
    assert!(
        parse(bad.as_bytes())
            .expect_err("bad sha1")
            .to_string()
            .contains("40 hex")
    );
    // 1.3 needs BmapFileSHA1.
    let v13 = text
        .replace("1.0", "1.3")
        .replace("<BlockSize>", "<ImageSize>16384</ImageSize><BlockSize>");
    assert!(
        parse(v13.as_bytes())
            .expect_err("1.3")
            .to_string()
            .contains("BmapFileSHA1")
    );
}

#[test]
fn other_block_sizes_and_checksum_types() {
    let header =
        "<ImageSize>1000</ImageSize><BlockSize>512</BlockSize><BlocksCount>2</BlocksCount>\n";
    let text = String::from_utf8(v2("<Range>0-1</Range>\n", header)).expect("utf-8");
    let p = parse(text.as_bytes()).expect("512-byte blocks");
    assert_eq!(p.bmap.byte_span(&p.bmap.ranges()[0]), (0, 1000));
    let sha512 = ChecksumKind::Sha512.digest(b"x").to_hex();
    let text = text
        .replace("sha256", "sha512")
        .replace("<Range>", &format!("<Range chksum=\"{sha512}\">"));
    let start = text.find("<BmapFileChecksum>").expect("element") + 18;
    let zeroed = format!(
        "{}{}{}",
        &text[..start],
        "0".repeat(128),
        &text[start + 64..]
    );
    let digest = ChecksumKind::Sha512.digest(zeroed.as_bytes()).to_hex();
    let text = format!("{}{}{}", &text[..start], digest, &text[start + 64..]);
    let p = parse(text.as_bytes()).expect("sha512 bmap");
    assert_eq!(p.bmap.checksum_kind(), Some(ChecksumKind::Sha512));
    assert_eq!(
        p.bmap.ranges()[0].digest().map(|d| d.to_hex()),
        Some(sha512)
    );
}

fn arb_bmap() -> impl Strategy<Value = Bmap> {
    (
        prop::sample::select(vec![512u64, 1024, 4096, 65536]),
        1u64..2_000_000,
        prop::collection::vec((0u64..50, 0u64..50, any::<bool>()), 0..60),
        any::<bool>(),
    )
        .prop_map(|(block_size, blocks, gaps, checksums)| {
            let image_size = blocks * block_size - (blocks * 7919 % block_size);
            let blocks = image_size.div_ceil(block_size);
            let mut ranges = Vec::new();
            let mut next = 0u64;
            for (gap, len, partial_digest) in gaps {
                let first = next + gap;
                let last = (first + len).min(blocks - 1);
                if first >= blocks {
                    break;
                }
                let digest = (checksums && (partial_digest || ranges.len() % 2 == 0))
                    .then(|| ChecksumKind::Sha256.digest(&first.to_le_bytes()));
                ranges.push(BlockRange::new(first, last, digest).expect("ordered"));
                next = last + 2;
            }
            let kind = checksums.then_some(ChecksumKind::Sha256);
            Bmap::new(image_size, block_size, kind, ranges).expect("valid by construction")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn emit_then_parse_gives_the_same_bmap(bmap in arb_bmap()) {
        let xml = bmap.to_xml();
        let parsed = parse(&xml).expect("our own output parses");
        prop_assert_eq!(parsed.bmap.ranges(), bmap.ranges());
        prop_assert_eq!(parsed.bmap.image_size(), bmap.image_size());
        prop_assert_eq!(parsed.bmap.block_size(), bmap.block_size());
        prop_assert!(parsed.warnings.is_empty());
        prop_assert_eq!(parsed.self_check, SelfCheck::Verified(ChecksumKind::Sha256));
    }

    #[test]
    fn parser_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parser_never_panics_on_mutated_bmaps(at in 0usize..7170, byte in any::<u8>()) {
        let mut text = data("test.image.bmap.v2.0");
        let at = at % text.len();
        text[at] = byte;
        let _ = parse(&text);
    }
}
