//! The parser against bmaps of every format version written at test time by an
//! independent fixture, hand-made hostile edits, random emit -> parse round trips; the
//! rules for bmaps from the wild (`parse/wild.rs`); and, when `../shared/conformance`
//! is beside the repository, the reference's own test data (`parse/reference.rs`).

mod fixture;
#[path = "parse/reference.rs"]
mod reference;
#[path = "parse/wild.rs"]
mod wild;

use bmap::format::{BlockRange, Bmap, ChecksumKind, Digest, ParseError, SelfCheck, Warning, parse};
use fixture::{BmapText, Image};
use proptest::prelude::*;

/// An error and its causes joined by ": ", as the command line prints them.
trait ChainText {
    fn chain_text(&self) -> String;
}

impl<E: std::error::Error> ChainText for E {
    fn chain_text(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

fn spans(bmap: &Bmap) -> Vec<(u64, u64)> {
    bmap.ranges()
        .iter()
        .map(|r| (r.first(), r.last()))
        .collect()
}

fn hexes(bmap: &Bmap) -> Vec<Option<String>> {
    bmap.ranges()
        .iter()
        .map(|r| r.digest().map(Digest::to_hex))
        .collect()
}

/// Images with partial and whole last blocks, small and large blocks.
fn images() -> Vec<Image> {
    vec![
        Image::new(1, 4096, 201, 2552),
        Image::new(2, 512, 300, 0),
        Image::new(3, 65536, 3, 1),
        Image::new(4, 4096, 1, 1),
    ]
}

/// Parses what the fixture wrote and checks it against the image: geometry, ranges,
/// every digest, the version, the self check and the warnings.
fn check_against_image(label: &str, text: &BmapText<'_>, image: &Image) {
    let bytes = text.to_bytes();
    let p = parse(&bytes).unwrap_or_else(|e| {
        panic!("{label}: {e}\n{}", String::from_utf8_lossy(&bytes));
    });
    let bmap = &p.bmap;
    let real_size = image.bytes.len() as u64;
    if label.contains("without ImageSize") {
        assert_eq!(
            bmap.image_size(),
            image.blocks() * image.block_size,
            "{label}"
        );
        assert_eq!(p.warnings, [Warning::ImageSizeAssumed(bmap.image_size())]);
    } else {
        assert_eq!(bmap.image_size(), real_size, "{label}");
        assert!(p.warnings.is_empty(), "{label}: {:?}", p.warnings);
    }
    assert_eq!(bmap.block_size(), image.block_size, "{label}");
    assert_eq!(bmap.blocks_count(), image.blocks(), "{label}");
    assert_eq!(spans(bmap), image.mapped, "{label}");
    let expected: Vec<Option<String>> = (0..image.mapped.len())
        .map(|i| text.range_digest(i))
        .collect();
    assert_eq!(hexes(bmap), expected, "{label}");
    let version = label
        .split(' ')
        .next()
        .expect("label starts with the version");
    assert_eq!(bmap.version().to_string(), version, "{label}");
    let self_check = match version {
        "1.0" | "1.1" | "1.2" => SelfCheck::Absent,
        "1.3" => SelfCheck::Verified(ChecksumKind::Sha1),
        _ => SelfCheck::Verified(bmap.checksum_kind().expect("2.0 names its kind")),
    };
    assert_eq!(p.self_check, self_check, "{label}");
}

#[test]
fn every_version_the_fixture_writes_parses_to_its_image() {
    for image in images() {
        for (label, text) in fixture::every_version(&image) {
            check_against_image(&label, &text, &image);
        }
    }
}

/// The emitter's output for an image and the fixture's 2.0 bmap of it read the same:
/// a rule both the emitter and the parser got wrong the same way would show here.
#[test]
fn the_emitter_and_the_fixture_agree() {
    for image in images() {
        let fixture = parse(&BmapText::new("2.0", &image).to_bytes()).expect("fixture 2.0");
        let ranges = image
            .mapped
            .iter()
            .map(|&(a, b)| {
                let hex = fixture::hash("sha256", image.span(a, b));
                let digest = Digest::from_hex(ChecksumKind::Sha256, &hex).expect("hex");
                BlockRange::new(a, b, Some(digest)).expect("ordered")
            })
            .collect();
        let built = Bmap::new(
            image.bytes.len() as u64,
            image.block_size,
            Some(ChecksumKind::Sha256),
            ranges,
        )
        .expect("valid");
        let emitted = parse(&built.to_xml()).expect("the emitter's output parses");
        assert!(emitted.warnings.is_empty());
        assert_eq!(emitted.bmap.ranges(), fixture.bmap.ranges());
        assert_eq!(emitted.bmap.image_size(), fixture.bmap.image_size());
        assert_eq!(emitted.bmap.mapped_blocks(), fixture.bmap.mapped_blocks());
    }
}

/// Every one-byte change to a checksummed bmap is caught: by the self-checksum, or by
/// the parser when the change breaks the syntax first.
#[test]
fn any_one_byte_edit_of_a_checksummed_bmap_fails() {
    let image = Image::new(5, 4096, 40, 100);
    for version in ["1.3", "1.4", "2.0"] {
        let original = BmapText::new(version, &image).to_bytes();
        for at in 0..original.len() {
            let mut edited = original.clone();
            edited[at] = if edited[at] == b'7' { b'8' } else { b'7' };
            assert!(
                parse(&edited).is_err(),
                "{version}: edit at byte {at} went unnoticed"
            );
        }
    }
}

/// The self-checksum protects against accidents; it is not a signature: an edited
/// bmap whose checksum was recomputed parses, and gives the edited ranges.
#[test]
fn the_self_checksum_catches_edits_unless_it_is_recomputed() {
    let image = Image::new(6, 4096, 30, 0);
    let original = BmapText::new("2.0", &image);
    let moved = image.mapped[1..].to_vec();
    let recomputed = original.clone().ranges(&moved).to_bytes();
    let p = parse(&recomputed).expect("a consistent edit parses");
    assert_eq!(spans(&p.bmap), moved);
    let text = String::from_utf8(original.to_bytes()).expect("utf-8");
    let edited = text.replacen("<BlockSize> 4096 <", "<BlockSize> 4096  <", 1);
    assert!(matches!(
        parse(edited.as_bytes()),
        Err(ParseError::SelfChecksumMismatch { .. })
    ));
}

/// `inspect` (for `bmaptool info`) reads what `parse` refuses for its self-checksum
/// alone, saying both checksums; anything else `parse` refuses, `inspect` refuses too.
#[test]
fn inspect_reports_a_self_checksum_mismatch_that_parse_refuses() {
    let image = Image::new(6, 4096, 30, 0);
    let text = String::from_utf8(BmapText::new("2.0", &image).to_bytes()).expect("utf-8");
    let good = bmap::format::inspect(text.as_bytes()).expect("a good bmap");
    assert_eq!(good.self_check, SelfCheck::Verified(ChecksumKind::Sha256));
    let edited = text.replacen("<BlockSize> 4096 <", "<BlockSize> 4096  <", 1);
    let Err(ParseError::SelfChecksumMismatch { expected, actual }) = parse(edited.as_bytes())
    else {
        panic!("parse refuses the edited bmap")
    };
    let p = bmap::format::inspect(edited.as_bytes()).expect("inspect reads it");
    let SelfCheck::Mismatch {
        expected: said,
        actual: computed,
    } = p.self_check
    else {
        panic!("a mismatch: {:?}", p.self_check)
    };
    assert_eq!((said.to_hex(), computed), (expected, actual));
    let zeroed = edited.replacen(&said.to_hex(), &"0".repeat(64), 1);
    assert_eq!(
        computed.to_hex(),
        fixture::hash("sha256", zeroed.as_bytes())
    );
    assert_eq!(spans(&p.bmap), image.mapped);
    let broken = text.replacen("<BlockSize> 4096 <", "<BlockSize> x <", 1);
    assert!(parse(broken.as_bytes()).is_err());
    assert!(bmap::format::inspect(broken.as_bytes()).is_err());
}

/// A 2.0 bmap with a correct self-checksum around the given header and BlockMap body.
fn v2(body: &str, header: &str) -> Vec<u8> {
    let zeros = "0".repeat(64);
    let text = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n{header}<ChecksumType>sha256</ChecksumType>\n\
         <BmapFileChecksum>{zeros}</BmapFileChecksum>\n<BlockMap>\n{body}</BlockMap>\n</bmap>\n"
    );
    fix_checksum(&text).into_bytes()
}

/// Recomputes the SHA-256 self-checksum of a hand-edited 2.0 bmap.
fn fix_checksum(text: &str) -> String {
    let start = text.find("<BmapFileChecksum>").expect("has checksum") + "<BmapFileChecksum>".len();
    let zeroed = format!(
        "{}{}{}",
        &text[..start],
        "0".repeat(64),
        &text[start + 64..]
    );
    let digest = fixture::hash("sha256", zeroed.as_bytes());
    format!("{}{}{}", &text[..start], digest, &text[start + 64..])
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
    assert_eq!(p.warnings, [Warning::MappedCountMissing]);
    let header = format!("{SIZES}<MappedBlocksCount>+1_0</MappedBlocksCount>\n");
    let p = parse(&v2("<Range>0_0-9</Range>\n", &header)).expect("numbers as Python's int()");
    assert_eq!(spans(&p.bmap), [(0, 9)]);
    let p = parse(&v2("", SIZES)).expect("an empty BlockMap is legal");
    assert!(p.bmap.ranges().is_empty());
    let upper = String::from_utf8(v2("", SIZES))
        .expect("utf-8")
        .replace("sha256", "SHA256");
    parse(fix_checksum(&upper).as_bytes()).expect("ChecksumType is case-insensitive, as hashlib");
    let minor = String::from_utf8(v2("", SIZES)).expect("utf-8");
    let minor = minor.replace("version=\"2.0\"", "version=\"2.5\"");
    let p = parse(fix_checksum(&minor).as_bytes()).expect("2.x reads as 2.0");
    assert_eq!(p.bmap.version().minor, 5);
    let empty = "<ImageSize>0</ImageSize><BlockSize>4096</BlockSize><BlocksCount>0</BlocksCount>\n";
    let p = parse(&v2("", empty)).expect("an empty image");
    assert_eq!(p.bmap.blocks_count(), 0);
}

#[test]
fn strict_where_it_matters() {
    let cases: &[(&str, &str, &str)] = &[
        ("<Range>5-3</Range>\n", SIZES, "ends before it starts"),
        ("<Range>x-3</Range>\n", SIZES, "bad block range"),
        ("<Range></Range>\n", SIZES, "bad block range"),
        ("<Range>-1</Range>\n", SIZES, "bad block range"),
        ("<Range>1-2-3</Range>\n", SIZES, "bad block range"),
        ("<Range>1__0</Range>\n", SIZES, "bad block range"),
        (
            "<Range>0-18446744073709551616</Range>\n",
            SIZES,
            "bad block range",
        ),
        (
            "<Range chksum=\"abcd\">1</Range>\n",
            SIZES,
            "64 hex characters",
        ),
        (
            "",
            "<ImageSize>40960</ImageSize><BlockSize>4096</BlockSize><BlocksCount>11</BlocksCount>\n",
            "an image of 40960 bytes has 10 blocks of 4096 bytes, but BlocksCount says 11",
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
            "ImageSize + BlockSize must be at most 9223372036854775807",
        ),
    ];
    for (body, header, expected) in cases {
        let err = parse(&v2(body, header)).expect_err(body).chain_text();
        assert!(
            err.contains(expected),
            "{body:?} {header:?}: '{err}' lacks '{expected}'"
        );
    }
    let err = parse(&v2("<Range>\n5-3</Range>\n", SIZES))
        .expect_err("reversed")
        .chain_text();
    assert!(err.starts_with("line 7: "), "errors name the line: {err}");
}

/// "image size N is too large" was printed for sizes below the limit it stated; the
/// message now states the real rule (ImageSize + BlockSize <= 2^63 - 1) with the numbers.
#[test]
fn too_large_names_the_real_limit_and_the_numbers() {
    let max = i64::MAX as u64;
    let header = |size: u64| {
        format!(
            "<ImageSize>{size}</ImageSize><BlockSize>4096</BlockSize><BlocksCount>{}</BlocksCount>\n",
            size.div_ceil(4096)
        )
    };
    parse(&v2("", &header(max - 4096))).expect("exactly at the limit");
    let err = parse(&v2("", &header(max - 4095)))
        .expect_err("one byte over")
        .chain_text();
    assert!(
        err.contains(&format!("image size {} bytes is too large", max - 4095))
            && err.contains("ImageSize + BlockSize must be at most 9223372036854775807")
            && err.contains(&format!("here it is {}", max + 1)),
        "{err}"
    );
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
        let err = parse(text.as_bytes()).expect_err(version).chain_text();
        assert!(err.contains(expected), "{version}: {err}");
    }
    let err = parse(b"<bmap><BlockMap/></bmap>")
        .expect_err("no version")
        .chain_text();
    assert!(err.contains("no 'version' attribute"), "{err}");
    assert!(parse(b"not xml").is_err());
    assert!(
        parse(b"\xff\xfe")
            .expect_err("binary")
            .chain_text()
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
    assert_eq!(p.warnings, [Warning::ImageSizeAssumed(4 * 4096)]);
    // A 1.2 sha1 attribute of the wrong length is an error, not silently ignored.
    let bad = text.replace("<Range>", "<Range sha1=\"12\">");
    assert!(
        parse(bad.as_bytes())
            .expect_err("bad sha1")
            .chain_text()
            .contains("40 hex")
    );
    // 1.3 needs BmapFileSHA1.
    let v13 = text
        .replace("1.0", "1.3")
        .replace("<BlockSize>", "<ImageSize>16384</ImageSize><BlockSize>");
    assert!(
        parse(v13.as_bytes())
            .expect_err("1.3")
            .chain_text()
            .contains("BmapFileSHA1")
    );
    // BlocksCount * BlockSize beyond 64 bits, with no ImageSize to say otherwise.
    let huge = text.replace("<BlocksCount>4<", "<BlocksCount>18446744073709551615<");
    let err = parse(huge.as_bytes()).expect_err("huge").chain_text();
    assert!(
        err.contains("image size 75557863725914323415040 bytes is too large"),
        "{err}"
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
    fn fixture_bmaps_of_random_images_parse_to_their_image(
        seed in any::<u64>(),
        block_size in prop::sample::select(vec![512u64, 4096]),
        blocks in 1u64..200,
        tail in 0u64..512,
        version in prop::sample::select(vec!["1.0", "1.1", "1.2", "1.3", "1.4", "2.0"]),
    ) {
        let image = Image::new(seed, block_size, blocks, tail);
        check_against_image(version, &BmapText::new(version, &image), &image);
    }

    #[test]
    fn parser_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parser_never_panics_on_mutated_bmaps(
        version in prop::sample::select(vec!["1.2", "1.3", "2.0"]),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let image = Image::new(7, 4096, 60, 300);
        let mut text = BmapText::new(version, &image).to_bytes();
        for (at, byte) in edits {
            let at = at % text.len();
            text[at] = byte;
        }
        let _ = parse(&text);
    }
}
