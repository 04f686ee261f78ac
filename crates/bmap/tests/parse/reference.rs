//! Extra checks against the reference's own test data in `../shared/conformance`
//! (bmaptool 3.9's `tests/test-data`). The data lives beside the repository, not in
//! it: when it is missing these tests skip with a note, or fail under
//! `BMAPTOOL_TEST_STRICT=1`.

use std::io::Read;
use std::path::PathBuf;

use bmap::format::{ChecksumKind, ParseError, Parsed, SelfCheck, Version, parse};

use super::fixture;
use super::spans;

const VERSIONS: [&str; 4] = [
    "test.image.bmap.v1.2",
    "test.image.bmap.v1.3",
    "test.image.bmap.v1.4",
    "test.image.bmap.v2.0",
];

/// `../shared/conformance/reference-test-data`, or `None` (skip) when it is missing.
#[track_caller]
fn data_dir() -> Option<PathBuf> {
    test_support::reference_test_data()
}

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parsed(dir: &std::path::Path) -> Vec<Parsed> {
    VERSIONS
        .iter()
        .map(|name| parse(&read(dir, name)).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

#[test]
fn reference_data_every_version_parses_to_the_same_ranges() {
    let Some(dir) = data_dir() else { return };
    let parsed = parsed(&dir);
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
    assert_eq!(parsed[0].bmap.ranges(), parsed[1].bmap.ranges());
    assert_eq!(parsed[2].bmap.ranges(), parsed[3].bmap.ranges());
}

/// The digests the parser reads from the reference's files are the fixture's hashes
/// of `test.image`: the fixture hashes as the reference did.
#[test]
fn reference_data_digests_are_the_fixture_hashes_of_test_image() {
    let Some(dir) = data_dir() else { return };
    let mut image = Vec::new();
    flate2::read::GzDecoder::new(&read(&dir, "test.image.gz")[..])
        .read_to_end(&mut image)
        .expect("test.image.gz decompresses");
    assert_eq!(image.len(), 821_752);
    let image = fixture::Image {
        bytes: image,
        block_size: 4096,
        mapped: Vec::new(),
    };
    for p in parsed(&dir) {
        let name = p.bmap.checksum_kind().expect("checksummed").name();
        for range in p.bmap.ranges() {
            let digest = range.digest().expect("every range has one").to_hex();
            let span = image.span(range.first(), range.last());
            assert_eq!(digest, fixture::hash(name, span), "range {range}");
        }
    }
}

#[test]
fn reference_data_self_checksums_verify_with_the_documented_digests() {
    let Some(dir) = data_dir() else { return };
    let parsed = parsed(&dir);
    assert_eq!(parsed[0].self_check, SelfCheck::Absent);
    use ChecksumKind::{Sha1, Sha256};
    let expected = [Sha1, Sha256, Sha256].map(SelfCheck::Verified);
    for (p, expected) in parsed[1..].iter().zip(expected) {
        assert_eq!(p.self_check, expected);
    }
}

/// Every one-byte change is caught: by the self-checksum, or by the parser when the
/// change breaks the syntax first.
#[test]
fn reference_data_any_one_byte_edit_fails() {
    let Some(dir) = data_dir() else { return };
    for name in &VERSIONS[1..] {
        let original = read(&dir, name);
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
fn reference_data_an_edited_range_fails_its_checksum() {
    let Some(dir) = data_dir() else { return };
    let text = String::from_utf8(read(&dir, "test.image.bmap.v2.0")).expect("utf-8");
    let edited = text.replacen("> 198-199 <", "> 198-200 <", 1);
    assert!(matches!(
        parse(edited.as_bytes()),
        Err(ParseError::SelfChecksumMismatch { .. })
    ));
}

/// Mutations of real reference files never panic (a fixed, reproducible walk).
#[test]
fn reference_data_mutated_never_panics() {
    let Some(dir) = data_dir() else { return };
    let mut rng = fixture::Rng(0x9e37_79b9_7f4a_7c15);
    for name in VERSIONS {
        let original = read(&dir, name);
        for _ in 0..500 {
            let mut text = original.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(text.len() as u64) as usize;
                text[at] = rng.next() as u8;
            }
            let _ = parse(&text);
        }
    }
}
