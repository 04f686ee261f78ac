//! Fuzz target: source-location parsing and bmap discovery (no network I/O).
//! The body is `bmap::fuzzing::location`, which crates/bmap/tests/fuzz_corpus.rs replays on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bmap::fuzzing::location(data);
});
