//! Fuzz target: signature handling: a keyring, a detached signature, a clearsigned bmap.
//! The body is `bmap::fuzzing::signature`, which crates/bmap/tests/fuzz_corpus.rs replays on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bmap::fuzzing::signature(data);
});
