//! The last stage of a copy: a [`RangeSink`] takes each range's bytes after they were
//! hashed. [`DestWriter`], writing to one [`Dest`], is one implementation and
//! [`Discard`] (a verify-only pass) another; a read-back check or several
//! destinations are others to come, and the reader and the hashers do not change for
//! them.

use std::sync::Arc;

use super::events::Events;
use super::readback::{ReadBack, ReadBackStats, Verifier};
use super::{Error, Span};
use crate::dest::{Dest, MIN_ALIGN};
use crate::format::Digest;

/// How a range ended, as the hashers found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not checked (no digest, verification off, or no bmap).
    Unverified,
    /// The bytes hash to the bmap's digest.
    Verified(Digest),
    /// The bytes do not hash to the bmap's digest; the range's last chunk is not
    /// passed to [`RangeSink::chunk`], and the copy stops after [`RangeSink::end`]
    /// (with [`super::Options::stop_at_mismatch`] off, the chunk is passed and the
    /// copy goes on).
    Mismatched {
        /// The bmap's digest.
        expected: Digest,
        /// The digest of the bytes read.
        actual: Digest,
    },
}

/// Takes the copy's ranges. Called from one thread, the one that runs the copy.
///
/// The chunks of one range come in order, between its `begin` and `end`; up to two
/// ranges (one per hasher) may be open at once, so chunks of different ranges can
/// interleave. A chunk's bytes sit in memory at `(offset + shift()) % alignment()` of
/// an aligned buffer, so that whole aligned blocks can be written with `O_DIRECT`.
pub trait RangeSink {
    /// The alignment the buffers must have for this sink (at least [`MIN_ALIGN`]).
    fn alignment(&self) -> usize {
        MIN_ALIGN
    }

    /// Where the image's offset 0 lies on the medium, modulo [`alignment`]: the
    /// buffers hold the bytes for image offset `o` at `(o + shift) % alignment`, so
    /// that the medium's offsets and memory agree for a destination written at a seek
    /// too (0 without one).
    ///
    /// [`alignment`]: RangeSink::alignment
    fn shift(&self) -> u64 {
        0
    }

    /// A range starts; its chunks follow.
    fn begin(&mut self, span: &Span) -> Result<(), Error> {
        let _ = span;
        Ok(())
    }

    /// Bytes of the image at `offset`, in the range last begun at or before it.
    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), Error>;

    /// A range ended with `verdict`.
    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), Error> {
        let _ = (span, verdict);
        Ok(())
    }

    /// The destination the sink writes to, if it writes to one: a stage in front of
    /// it may read what is there (the GPT move reads the device's last sectors).
    fn dest(&self) -> Option<&Dest> {
        None
    }

    /// Makes everything taken so far durable (and, for a sink that checks what it
    /// wrote, checked) before going on: a sink that holds parts back writes them
    /// after this. Not called by the pipeline itself.
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Every range was taken; the image is `image_size` bytes. A destination is sized,
    /// synced and its settings restored here.
    fn finish(&mut self, image_size: u64) -> Result<(), Error>;

    /// Reports what the sink's own threads did since the last call (a
    /// [`super::Fanout`] reports each destination's progress). Called by the copy
    /// between chunks, while it waits for them, and after [`RangeSink::finish`].
    fn report(&mut self, events: &mut dyn Events) {
        let _ = events;
    }
}

/// Bytes written through the page cache between two starts of writeback (direct
/// writes need none).
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Writes the ranges to one [`Dest`] at their offsets, and finishes it (final size,
/// fsync, settings restored). Dropped unfinished, the destination undoes what it can
/// (a file it created is removed). With [`read_back`](DestWriter::read_back), what it
/// writes is also read back and compared (see `readback.rs`).
#[derive(Debug)]
pub struct DestWriter {
    dest: Option<Arc<Dest>>,
    buffered_at_writeback: u64,
    read_back: Option<Verifier>,
    read_back_stats: Option<ReadBackStats>,
    wipe: super::failsafe::Wipe,
}

impl DestWriter {
    /// A writer to `dest`.
    pub fn new(dest: Dest) -> DestWriter {
        DestWriter {
            buffered_at_writeback: dest.buffered_bytes(),
            dest: Some(Arc::new(dest)),
            read_back: None,
            read_back_stats: None,
            wipe: super::failsafe::Wipe::default(),
        }
    }

    /// Also reads back everything written, bypassing the page cache, and compares it
    /// with what was written, in a thread of its own while the copy goes on; a part
    /// that differs is written again up to `options.retries()` times, then the copy
    /// fails. [`RangeSink::flush`] and [`RangeSink::finish`] wait for it. Refused for
    /// a destination that cannot be read back (`/dev/null`, a FIFO).
    pub fn read_back(mut self, options: ReadBack) -> Result<DestWriter, Error> {
        let dest = Arc::clone(self.dest.as_ref().ok_or(Error::Finished)?);
        self.read_back = Some(Verifier::start(dest, options)?);
        Ok(self)
    }

    /// What the read-back found: final once the writer is finished; `None` without
    /// read-back.
    pub fn read_back_stats(&self) -> Option<ReadBackStats> {
        self.read_back_stats
            .or_else(|| self.read_back.as_ref().map(Verifier::stats))
    }

    /// Zeroes `regions` (`(offset, len)`, the old partition tables' places) and syncs,
    /// just before the first write reaches the destination: a copy that writes nothing
    /// wipes nothing. See [`super::failsafe`].
    pub fn wipe_before_first_write(mut self, regions: Vec<(u64, u64)>) -> DestWriter {
        self.wipe = super::failsafe::Wipe::pending(regions);
        self
    }

    /// The wipe still to come, if any (see [`Self::wipe_before_first_write`]).
    pub fn wipe(&self) -> &super::failsafe::Wipe {
        &self.wipe
    }

    /// Leaves the `len` bytes at `offset` out of a wipe still to come: they already
    /// hold what the copy would write there (found unchanged).
    pub fn spare_from_wipe(&mut self, offset: u64, len: u64) {
        self.wipe.spare(offset, len);
    }

    /// The destination, until it is finished.
    pub fn dest(&self) -> Option<&Dest> {
        self.dest.as_deref()
    }

    fn live(&self) -> Result<&Dest, Error> {
        self.dest.as_deref().ok_or(Error::Finished)
    }
}

impl RangeSink for DestWriter {
    fn alignment(&self) -> usize {
        self.dest
            .as_deref()
            .map_or(MIN_ALIGN, Dest::alignment)
            .max(MIN_ALIGN)
    }

    fn shift(&self) -> u64 {
        self.dest.as_deref().map_or(0, Dest::seek)
    }

    fn dest(&self) -> Option<&Dest> {
        self.dest.as_deref()
    }

    fn begin(&mut self, span: &Span) -> Result<(), Error> {
        if let Some(read_back) = &mut self.read_back {
            read_back.begin(span);
        }
        Ok(())
    }

    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
        let dest = self.dest.as_ref().ok_or(Error::Finished)?;
        self.wipe.run(dest)?;
        dest.write_at(data, offset)?;
        if let Some(read_back) = &mut self.read_back {
            read_back.keep(data, offset)?;
        }
        let dest = self.live()?;
        let buffered = dest.buffered_bytes();
        if buffered - self.buffered_at_writeback >= WRITEBACK_EVERY {
            // Keep the disk busy while we go on, instead of leaving everything to the
            // final fsync (the dirty limit of a large machine holds gigabytes). Only
            // what went through the page cache needs it: direct writes are on the
            // device when they return.
            dest.start_writeback();
            self.buffered_at_writeback = buffered;
        }
        Ok(())
    }

    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), Error> {
        if let Some(read_back) = &mut self.read_back {
            read_back.end(span, verdict);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if let Some(read_back) = &mut self.read_back {
            read_back.wait()?;
        }
        self.live()?.sync()?;
        Ok(())
    }

    fn finish(&mut self, image_size: u64) -> Result<(), Error> {
        let through_cache = !self.live()?.is_direct();
        if let Some(read_back) = &mut self.read_back {
            // On failure the reader stays, broken: a later finish fails too.
            self.read_back_stats = Some(read_back.finish(through_cache)?);
            self.read_back = None;
        }
        let dest = self.dest.take().ok_or(Error::Finished)?;
        // The read-back thread, which held the other reference, has ended.
        let dest = Arc::into_inner(dest).ok_or(Error::Finished)?;
        dest.finish(image_size)?;
        Ok(())
    }
}

/// Takes the ranges and writes nothing: a verify-only pass (does this image match
/// its bmap?), or the base of a sink that only looks at the bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl RangeSink for Discard {
    fn chunk(&mut self, _data: &[u8], _offset: u64) -> Result<(), Error> {
        Ok(())
    }

    fn finish(&mut self, _image_size: u64) -> Result<(), Error> {
        Ok(())
    }
}
