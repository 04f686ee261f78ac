//! Bmaps from the wild: what tools other than bmaptool write, and what the reference
//! accepts or finds only after writing. Each test pins one row of the table in the
//! parser's documentation (`format/parse.rs`).

use bmap::format::{ChecksumKind, ParseError, Warning, parse};

use super::fixture::{self, BmapText, Image};
use super::{hexes, spans};

/// 11 blocks of 4 KiB, the last one 100 bytes long.
fn image() -> Image {
    Image::new(11, 4096, 11, 100)
}

/// The line (1-based) of the first line of `bytes` containing `needle`.
fn line_of(bytes: &[u8], needle: &str) -> usize {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

#[test]
fn a_range_running_past_the_end_is_cut_and_checked_against_the_bytes_the_image_has() {
    let image = image();
    for version in ["1.2", "1.3", "2.0"] {
        let text = BmapText::new(version, &image).ranges(&[(0, 3), (6, 14)]);
        let p = parse(&text.to_bytes()).unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(spans(&p.bmap), [(0, 3), (6, 10)], "{version}");
        let kind = if version == "2.0" { "sha256" } else { "sha1" };
        assert_eq!(
            hexes(&p.bmap)[1],
            Some(fixture::hash(kind, image.span(6, 10))),
            "{version}: the digest covers the bytes the image has"
        );
        assert_eq!(
            p.warnings,
            [Warning::PastEnd {
                example: "6-14".into(),
                clamped: 1,
                dropped: 0,
                blocks: 11
            }],
            "{version}: warned once"
        );
        assert_eq!(p.bmap.mapped_blocks(), 9);
        assert_eq!(p.bmap.mapped_bytes(), 8 * 4096 + 100);
    }
}

#[test]
fn ranges_wholly_beyond_the_image_are_skipped_in_the_same_warning() {
    let image = image();
    let text = BmapText::new("2.0", &image).ranges(&[(0, 3), (6, 12), (20, 25), (30, 30)]);
    let p = parse(&text.to_bytes()).expect("accepted");
    assert_eq!(spans(&p.bmap), [(0, 3), (6, 10)]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert_eq!(
        p.warnings[0].to_string(),
        "ranges run past the end of the image, which has 11 blocks (the first is 6-12): 1 \
         cut at the image's end, where its checksum must end too; 2 lying wholly beyond it \
         skipped"
    );
}

/// The reference fails at the end with "does not belong to this image", after
/// overwriting the device; here it is refused before anything is written.
#[test]
fn a_mapped_count_that_counts_blocks_past_the_end_is_refused_naming_both_numbers() {
    let image = image();
    let text = BmapText::new("2.0", &image)
        .ranges(&[(0, 3), (6, 14)])
        .mapped_count(Some(13));
    let bytes = text.to_bytes();
    let err = parse(&bytes).expect_err("13 is not 9");
    assert!(
        matches!(
            err,
            ParseError::MappedCountMismatch {
                declared: 13,
                actual: 9,
                clamped: true,
                ..
            }
        ),
        "{err:?}"
    );
    let line = line_of(&bytes, "<MappedBlocksCount>");
    assert_eq!(
        err.to_string(),
        format!(
            "line {line}: MappedBlocksCount says 13 blocks are mapped, but the ranges hold 9 \
             once cut at the image's end: the bmap is inconsistent (damaged, edited, or made \
             for another image)"
        )
    );
}

#[test]
fn a_wrong_mapped_count_is_refused() {
    let image = Image::new(12, 4096, 100, 0);
    let mapped: u64 = image.mapped.iter().map(|(a, b)| b - a + 1).sum();
    for declared in [0, mapped - 1, mapped + 1, u64::MAX] {
        let text = BmapText::new("1.3", &image).mapped_count(Some(declared));
        let err = parse(&text.to_bytes())
            .expect_err("wrong count")
            .to_string();
        assert!(
            err.contains(&format!(
                "MappedBlocksCount says {declared} blocks are mapped, but the ranges hold {mapped}:"
            )),
            "{err}"
        );
    }
    let text = BmapText::new("1.3", &image).mapped_count(None);
    let p = parse(&text.to_bytes()).expect("no count: the ranges are counted");
    assert_eq!(p.warnings, [Warning::MappedCountMissing]);
    assert_eq!(p.bmap.mapped_blocks(), mapped);
}

#[test]
fn unordered_ranges_are_sorted_and_keep_their_digests() {
    let image = Image::new(13, 4096, 80, 0);
    assert!(image.mapped.len() >= 3);
    let mut listed = image.mapped.clone();
    listed.reverse();
    let p = parse(&BmapText::new("2.0", &image).ranges(&listed).to_bytes()).expect("sorted");
    assert_eq!(spans(&p.bmap), image.mapped);
    let in_order: Vec<_> = image
        .mapped
        .iter()
        .map(|&(a, b)| Some(fixture::hash("sha256", image.span(a, b))))
        .collect();
    assert_eq!(hexes(&p.bmap), in_order);
    assert!(
        matches!(&p.warnings[..], [Warning::Unordered { .. }]),
        "{:?}",
        p.warnings
    );
}

/// The reference writes a duplicate twice and counts it twice; a tool counting
/// distinct blocks would write the other number. Either is accepted, nothing else.
#[test]
fn a_duplicate_range_is_copied_once_and_either_count_is_accepted() {
    let image = image();
    let listed = [(0, 3), (0, 3), (6, 10)];
    for (count, ok) in [(13, true), (9, true), (10, false), (4, false)] {
        let text = BmapText::new("2.0", &image)
            .ranges(&listed)
            .mapped_count(Some(count));
        match parse(&text.to_bytes()) {
            Ok(p) => {
                assert!(ok, "count {count} accepted");
                assert_eq!(spans(&p.bmap), [(0, 3), (6, 10)]);
                let warning = p.warnings[0].to_string();
                assert_eq!(
                    warning,
                    "1 range overlap others (range 0-3 overlaps 0-3); each block is copied once"
                );
            }
            Err(e) => assert!(!ok, "count {count} refused: {e}"),
        }
    }
}

#[test]
fn overlapping_ranges_with_their_own_checksums_are_refused_naming_both_and_the_line() {
    let image = image();
    let text = BmapText::new("2.0", &image).ranges(&[(0, 3), (2, 5)]);
    let bytes = text.to_bytes();
    let err = parse(&bytes).expect_err("cannot check both");
    let line = line_of(&bytes, "> 2-5 <");
    assert!(
        err.to_string().starts_with(&format!(
            "line {line}: ranges 0-3 and 2-5 share blocks and each has its own checksum"
        )),
        "{err}"
    );
    let text = BmapText::new("2.0", &image)
        .ranges(&[(0, 3), (6, 7), (0, 3)])
        .digest_of(2, &fixture::hash("sha256", b"other"));
    let bytes = text.to_bytes();
    let err = parse(&bytes).expect_err("two digests for one range");
    assert!(
        matches!(&err, ParseError::ConflictingDuplicate { range, line: l } if range == "0-3" && *l as usize == line_of(&bytes, "> 6-7 <") + 1),
        "{err:?}"
    );
}

#[test]
fn overlapping_ranges_without_checksums_are_merged() {
    let image = image();
    let text =
        BmapText::new("1.2", &image)
            .range_hash(None)
            .ranges(&[(0, 3), (2, 5), (5, 5), (8, 9)]);
    let p = parse(&text.to_bytes()).expect("merged");
    assert_eq!(spans(&p.bmap), [(0, 5), (8, 9)]);
    assert!(matches!(
        &p.warnings[..],
        [Warning::Overlapping { count: 2, .. }]
    ));
}

/// hashlib names the reference accepts, in the spellings it accepts; MD5 with a warning.
#[test]
fn checksum_types_hashlib_knows_are_read() {
    let image = image();
    for (hash, written, kind) in [
        ("sha3_256", "sha3_256", ChecksumKind::Sha3_256),
        ("sha3_256", "SHA3-256", ChecksumKind::Sha3_256),
        ("blake2b", "blake2b", ChecksumKind::Blake2b),
        ("sha512", "SHA512", ChecksumKind::Sha512),
        ("md5", "md5", ChecksumKind::Md5),
    ] {
        let text = BmapText::new("2.0", &image)
            .range_hash(Some(hash))
            .checksum_type(written);
        let p = parse(&text.to_bytes()).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(p.bmap.checksum_kind(), Some(kind));
        let expected: Vec<_> = image
            .mapped
            .iter()
            .map(|&(a, b)| Some(fixture::hash(hash, image.span(a, b))))
            .collect();
        assert_eq!(hexes(&p.bmap), expected, "{written}");
        let weak = kind == ChecksumKind::Md5;
        assert_eq!(
            p.warnings == [Warning::WeakChecksum(kind)],
            weak,
            "{written}"
        );
        assert_eq!(p.warnings.is_empty(), !weak, "{written}");
    }
    let text = String::from_utf8(BmapText::new("2.0", &image).to_bytes()).expect("utf-8");
    let text = text.replace("<ChecksumType> sha256 <", "<ChecksumType> shake_128 <");
    let err = parse(text.as_bytes())
        .expect_err("no fixed length")
        .to_string();
    assert!(
        err.contains("unsupported checksum type 'shake_128'"),
        "{err}"
    );
}

#[test]
fn digests_in_upper_case_are_accepted() {
    let image = image();
    let (a, b) = image.mapped[0];
    let hex = fixture::hash("sha256", image.span(a, b));
    let text = BmapText::new("2.0", &image).digest_of(0, &hex.to_uppercase());
    let p = parse(&text.to_bytes()).expect("upper case");
    assert_eq!(hexes(&p.bmap)[0], Some(hex));
}
