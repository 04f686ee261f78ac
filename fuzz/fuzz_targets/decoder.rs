//! Fuzz target: format sniffing and every decoder chain (gz, bz2, xz, lzma, lzop, lz4, zstd, tar, zip).
//! The body is `bmap::fuzzing::decoder`, which crates/bmap/tests/fuzz_corpus.rs replays on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bmap::fuzzing::decoder(data);
});
