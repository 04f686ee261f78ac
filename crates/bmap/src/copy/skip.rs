//! `--skip-unchanged`: [`SkipUnchanged`] reads the destination's bytes where each chunk
//! would go (bypassing the page cache for the aligned parts), and writes the chunk only
//! when they differ. The unit is the pipeline's chunk (1 MiB at most, cut at range
//! ends), finer than a bmap range. After [`GIVE_UP`] bytes in a row that all differ (a
//! new image rather than an update) it stops comparing and only writes.
//!
//! With the fail-safe order the held parts come last, after the flush: they are
//! compared then. A chunk found unchanged inside a wipe still to come is spared from
//! it (it already holds the new bytes), so a copy that finds everything unchanged
//! writes nothing at all.

use super::sink::{DestWriter, RangeSink, Verdict};
use super::{Error, Span};
use crate::dest::AlignedBuf;

/// Differing bytes in a row after which comparing stops.
pub const GIVE_UP: u64 = 64 << 20;

/// The largest chunk compared in one read (the pipeline's chunk size).
const CHUNK: usize = 1 << 20;

/// What [`SkipUnchanged`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipStats {
    /// Bytes read from the destination and compared.
    pub compared: u64,
    /// Bytes found unchanged, so not written.
    pub skipped: u64,
    /// Bytes written.
    pub written: u64,
    /// Whether comparing stopped after 64 MiB (`GIVE_UP`) differing in a row.
    pub gave_up: bool,
}

/// A [`RangeSink`] in front of a [`DestWriter`] that writes only the chunks whose bytes
/// differ from the destination's; with comparing off, it hands everything on.
#[derive(Debug)]
pub struct SkipUnchanged {
    inner: DestWriter,
    comparing: bool,
    differing_run: u64,
    give_up: u64,
    stats: SkipStats,
    scratch: Option<AlignedBuf>,
}

impl SkipUnchanged {
    /// Writes through `inner`, comparing first when `compare` is set.
    pub fn new(inner: DestWriter, compare: bool) -> SkipUnchanged {
        SkipUnchanged {
            inner,
            comparing: compare,
            differing_run: 0,
            give_up: GIVE_UP,
            stats: SkipStats::default(),
            scratch: None,
        }
    }

    /// The writer underneath.
    pub fn inner(&self) -> &DestWriter {
        &self.inner
    }

    /// What was compared, skipped and written so far.
    pub fn stats(&self) -> SkipStats {
        self.stats
    }

    /// Whether the destination holds `data` at `offset` already.
    fn unchanged(&mut self, data: &[u8], offset: u64) -> Result<bool, Error> {
        let align = self.inner.alignment();
        let dest = self.inner.dest().ok_or(Error::Finished)?;
        let place = dest.place(offset);
        let scratch = match &mut self.scratch {
            Some(buf) if buf.len() >= place + data.len() => buf,
            slot => slot.insert(AlignedBuf::new(CHUNK.max(data.len()) + align, align)),
        };
        // The bytes for offset `o` at an index congruent to `o`: the aligned blocks
        // are read with O_DIRECT, so what is compared is what the medium holds.
        let back = &mut scratch[place..place + data.len()];
        let got = dest.read_at(back, offset)?;
        self.stats.compared += data.len() as u64;
        Ok(got == data.len() && back[..] == data[..])
    }
}

impl RangeSink for SkipUnchanged {
    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn shift(&self) -> u64 {
        self.inner.shift()
    }

    fn begin(&mut self, span: &Span) -> Result<(), Error> {
        self.inner.begin(span)
    }

    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
        let len = data.len() as u64;
        if self.comparing {
            if self.unchanged(data, offset)? {
                self.stats.skipped += len;
                self.differing_run = 0;
                self.inner.spare_from_wipe(offset, len);
                return Ok(());
            }
            self.differing_run += len;
            if self.differing_run >= self.give_up {
                self.comparing = false;
                self.stats.gave_up = true;
            }
        }
        self.stats.written += len;
        self.inner.chunk(data, offset)
    }

    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), Error> {
        self.inner.end(span, verdict)
    }

    fn dest(&self) -> Option<&crate::dest::Dest> {
        RangeSink::dest(&self.inner)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush()
    }

    fn finish(&mut self, image_size: u64) -> Result<(), Error> {
        self.inner.finish(image_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::{Dest, Options};

    fn writer(path: &std::path::Path, size: u64) -> DestWriter {
        let options = Options {
            image_size: Some(size),
            ..Options::default()
        };
        DestWriter::new(Dest::open(path, &options).expect("open"))
    }

    #[test]
    fn equal_chunks_are_skipped_and_differing_ones_written() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("dest.img");
        let size = 3 << 20;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut first = writer(&path, size);
        first.chunk(&data, 0).expect("write");
        first.finish(size).expect("finish");
        // Opening truncates a file: write it back first, then compare.
        let mut skip = SkipUnchanged::new(writer(&path, size), true);
        skip.inner.chunk(&data, 0).expect("write");
        skip.chunk(&data[..1 << 20], 0).expect("same");
        let mut changed = data[1 << 20..2 << 20].to_vec();
        changed[5] ^= 1;
        skip.chunk(&changed, 1 << 20).expect("changed");
        skip.finish(size).expect("finish");
        let stats = skip.stats();
        assert_eq!(
            (stats.compared, stats.skipped, stats.written),
            (2 << 20, 1 << 20, 1 << 20)
        );
        let back = std::fs::read(&path).expect("read");
        assert_eq!(back[(1 << 20) + 5], changed[5]);
    }

    #[test]
    fn comparing_stops_after_enough_differing_bytes_in_a_row_and_an_equal_chunk_resets_the_count() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("dest.img");
        let mut skip = SkipUnchanged::new(writer(&path, 1 << 20), true);
        skip.give_up = 3 * 4096;
        let ones = [1u8; 4096];
        let zeros = [0u8; 4096];
        // Two differing chunks, one equal (the new file reads as zeros): the run restarts.
        for (n, chunk) in [&ones, &ones, &zeros, &ones, &ones].iter().enumerate() {
            skip.chunk(&chunk[..], n as u64 * 4096).expect("chunk");
        }
        assert!(!skip.stats().gave_up);
        skip.chunk(&ones, 5 * 4096).expect("third in a row");
        assert!(skip.stats().gave_up);
        skip.chunk(&zeros, 6 * 4096)
            .expect("written without a look");
        let stats = skip.stats();
        assert_eq!((stats.compared, stats.skipped), (6 * 4096, 4096));
        assert_eq!(stats.written, 6 * 4096);
        skip.finish(1 << 20).expect("finish");
    }

    #[test]
    fn a_chunk_found_unchanged_is_spared_from_the_wipe_a_later_write_runs() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("dest.img");
        let size = 1 << 20;
        let writer = writer(&path, size).wipe_before_first_write(vec![(0, 8192)]);
        let old = vec![9u8; 8192];
        let dest = writer.dest().expect("open");
        dest.write_at(&old, 0).expect("old bytes");
        let mut skip = SkipUnchanged::new(writer, true);
        skip.chunk(&old[..4096], 0).expect("same");
        assert!(skip.inner().wipe().is_pending(), "nothing written yet");
        skip.chunk(&[1u8; 4096], 65536).expect("differs");
        assert!(skip.inner().wipe().is_done());
        assert_eq!(skip.inner().wipe().zeroed().0, 4096);
        skip.finish(size).expect("finish");
        let back = std::fs::read(&path).expect("read");
        assert!(
            back[..4096].iter().all(|&b| b == 9),
            "the spared chunk was wiped"
        );
        assert!(
            back[4096..8192].iter().all(|&b| b == 0),
            "the rest was not wiped"
        );
        assert!(back[65536..69632].iter().all(|&b| b == 1));
    }
}
