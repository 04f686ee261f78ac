//! Replays every committed fuzz input (`fuzz/corpus/TARGET/` and the crash regressions
//! in `fuzz/regressions/TARGET/`) through the same bodies the cargo-fuzz targets run
//! (`bmap::fuzzing`), on stable: each must end accepted or refused with a typed error,
//! never panic. A missing or empty corpus fails the test: it is the CI's only view of
//! what the fuzzer found.

use std::path::{Path, PathBuf};

use bmap::fuzzing::{self, Ended};

/// The repository's `fuzz/` directory.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/KIND/TARGET`, sorted; `required` fails the test when there are none.
fn inputs(kind: &str, target: &str, required: bool) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read the fuzz inputs in {}: {e}", dir.display()),
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !required || !files.is_empty(),
        "{} holds no fuzz inputs: the corpus is missing",
        dir.display()
    );
    files
}

/// Runs `body` on every corpus and regression input of `target`; returns how many
/// inputs were accepted. A panic names the input that caused it.
fn replay(target: &str, body: fn(&[u8]) -> Ended) -> usize {
    let mut accepted = 0;
    let corpus = inputs("corpus", target, true);
    let regressions = inputs("regressions", target, false);
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("a readable fuzz input");
        let ended = std::panic::catch_unwind(|| body(&data))
            .unwrap_or_else(|_| panic!("fuzz input {} panicked", path.display()));
        accepted += usize::from(ended == Ended::Accepted);
    }
    accepted
}

#[test]
fn bmap_parse_corpus_replays_without_panic() {
    // The seeds are real bmaps: some of the corpus must still parse.
    assert!(replay("bmap_parse", fuzzing::bmap) > 0);
}

#[test]
fn signature_corpus_replays_without_panic() {
    // The seeds are good signatures by keys in their keyrings.
    assert!(replay("signature", fuzzing::signature) > 0);
}

#[test]
fn decoder_corpus_replays_without_panic() {
    // The seeds are real compressed images.
    assert!(replay("decoder", fuzzing::decoder) > 0);
}

#[test]
fn location_corpus_replays_without_panic() {
    assert!(replay("location", fuzzing::location) > 0);
}

#[test]
fn a_missing_corpus_is_an_error_not_a_skip() {
    let missing = std::panic::catch_unwind(|| inputs("corpus", "no-such-target", true));
    assert!(missing.is_err());
}

/// The one input the decoder target found: an `.lzma` header asking for a 2 GiB
/// dictionary, which liblzma used to allocate. The window limit refuses it from the
/// header, naming the dictionary, before anything is allocated.
#[test]
fn the_fuzz_found_lzma_header_asking_for_2_gib_is_refused_by_the_window_limit() {
    let data =
        std::fs::read(fuzz_dir().join("regressions/decoder/lzma-header-asks-2gib-dictionary"))
            .expect("the regression input");
    let (&pick, stream) = data.split_first().expect("a name byte and a stream");
    let name = fuzzing::DECODER_NAMES[usize::from(pick) % fuzzing::DECODER_NAMES.len()];
    assert_eq!(name, Some("disk.img.lzma"));
    let input = Box::new(std::io::Cursor::new(stream.to_vec()));
    let error = match bmap::source::decode(input, name, 1) {
        Ok(_) => panic!("a 2 GiB lzma dictionary was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("dictionary"), "{error}");
    assert!(error.contains("more than the limit"), "{error}");
    assert!(error.contains("2.0 GiB"), "{error}");
}
