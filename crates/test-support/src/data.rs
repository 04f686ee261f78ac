//! Test data every binary makes the same way: pseudo-random bytes from a seed, merged
//! block ranges, files read, filled and corrupted with a clear message on failure.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// `len` pseudo-random bytes (splitmix64), never all zero for long runs.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// splitmix64: a small seeded generator for test bytes and fault points, the same on
/// every machine.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `[low, high)` (`low` when the span is empty).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below((high - low).max(1))
    }
}

/// Sorts inclusive ranges and merges overlapping or adjacent ones.
pub fn merge(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges.into_iter().collect();
    sorted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (first, last) in sorted {
        match merged.last_mut() {
            Some(prev) if first <= prev.1 + 1 => prev.1 = prev.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// Reads a whole file.
#[track_caller]
pub fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Writes `len` bytes of `byte` to a new file (or over an existing one), synced.
pub fn write_filled(path: &Path, len: u64, byte: u8) {
    write_chunks(path, len, &vec![byte; MIB as usize]);
}

/// Writes `len` bytes repeating `chunk` (at most [`MIB`] long) to `path`, synced.
pub fn write_chunks(path: &Path, len: u64, chunk: &[u8]) {
    let file =
        File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(chunk.len() as u64);
        file.write_all_at(&chunk[..n as usize], offset)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        offset += n;
    }
    file.sync_all().expect("sync the written file");
}

/// Flips all bits of the byte at `offset`.
pub fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open to corrupt");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    byte[0] ^= 0xFF;
    file.write_all_at(&byte, offset).expect("write byte");
}
