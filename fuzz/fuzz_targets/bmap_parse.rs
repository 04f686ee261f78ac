//! Fuzz target: the bmap parser (parse, inspect, and a verifying copy with what it accepts).
//! The body is `bmap::fuzzing::bmap`, which crates/bmap/tests/fuzz_corpus.rs replays on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bmap::fuzzing::bmap(data);
});
