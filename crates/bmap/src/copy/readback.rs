//! Read-back verification for [`super::DestWriter`] (`bmaptool copy --verify-written`):
//! every chunk written is also kept in a batch; a full batch goes to a read-back
//! thread, which makes its bytes durable and drops them from the page cache, reads
//! them back (`O_DIRECT` where the destination allows it) and compares them byte for
//! byte with the kept copy, while the copy thread writes the next batches. The kept
//! bytes are the very bytes the hashers checked against the bmap's digests (or, without
//! digests, the bytes written), so equal bytes prove the medium holds the image.
//!
//! A part that reads back wrong is written again from the kept copy, made durable and
//! read again, up to [`ReadBack::retries`] times; then the copy fails with
//! [`ReadBackMismatch`], naming the range and the first differing byte.
//!
//! Memory is bounded: batches of [`BATCH`] bytes, at most [`IN_FLIGHT`] handed over
//! plus the one being filled, and one read buffer: 5 x 4 MiB = 20 MiB in all.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::JoinHandle;

use super::{Error, Span, Verdict};
use crate::dest::{AlignedBuf, Dest, Kind};

/// Bytes kept per batch.
pub const BATCH: usize = 4 << 20;
/// Batches handed to the read-back thread and not yet checked, at most.
pub const IN_FLIGHT: usize = 3;

/// A test's callback, run after bytes are written and made durable and before they
/// are read back: the parts as `(offset, len)` and the attempt (0 for the first
/// read-back of a batch, then 1, 2, ... after each rewrite of one part).
#[cfg(feature = "fault-injection")]
pub type FaultHook = Arc<dyn Fn(&[(u64, u64)], u32) + Send + Sync>;

/// Choices for reading back what a [`super::DestWriter`] wrote.
#[derive(Clone)]
pub struct ReadBack {
    retries: u32,
    #[cfg(feature = "fault-injection")]
    fault: Option<FaultHook>,
}

impl ReadBack {
    /// Read back everything written; a part that reads back wrong is written again up
    /// to `retries` times before the copy fails.
    pub fn new(retries: u32) -> ReadBack {
        ReadBack {
            retries,
            #[cfg(feature = "fault-injection")]
            fault: None,
        }
    }

    /// How many times a part that reads back wrong is written again.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Runs `hook` after each write is durable and before it is read back (tests
    /// only: it lets a test damage the destination there).
    #[cfg(feature = "fault-injection")]
    pub fn fault_hook(mut self, hook: FaultHook) -> ReadBack {
        self.fault = Some(hook);
        self
    }

    fn fault(&self, parts: &[(u64, u64)], attempt: u32) {
        #[cfg(feature = "fault-injection")]
        if let Some(hook) = &self.fault {
            hook(parts, attempt);
        }
        let _ = (parts, attempt);
    }
}

impl std::fmt::Debug for ReadBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBack")
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// What the read-back found, once the copy is finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadBackStats {
    /// Ranges written and read back (all matched, or the copy failed).
    pub ranges: u64,
    /// Bytes read back and compared (rewritten parts counted once).
    pub bytes: u64,
    /// Ranges of which a part read back wrong at least once and was written again.
    pub ranges_rewritten: u64,
    /// Writes of a part again, in all.
    pub rewrites: u64,
    /// The destination refused `O_DIRECT`: the bytes were read through the page cache
    /// (after a sync and a request to drop them, which some file systems such as
    /// tmpfs ignore: there the page cache is the medium).
    pub through_page_cache: bool,
}

/// A range whose bytes on the destination still differ from what was written after
/// every retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the destination does not hold what was written: blocks range {} ({}) differs at byte \
     {offset} (read {found:#04x}, written {wrote:#04x}) after {writes} write(s); the medium \
     may be failing", blocks(*.first, *.last), bytes(*.start, *.end)
)]
pub struct ReadBackMismatch {
    /// First block of the range.
    pub first: u64,
    /// Last block of the range (`u64::MAX` for a stream of unknown length).
    pub last: u64,
    /// First byte offset of the range.
    pub start: u64,
    /// Byte offset just past the range (as far as it was written).
    pub end: u64,
    /// The first differing byte.
    pub offset: u64,
    /// What was written there.
    pub wrote: u8,
    /// What was read back there.
    pub found: u8,
    /// How many times the part was written.
    pub writes: u32,
}

fn bytes(start: u64, end: u64) -> String {
    if end == u64::MAX {
        format!("from byte {start}")
    } else {
        format!("bytes {start}-{end}")
    }
}

fn blocks(first: u64, last: u64) -> String {
    if last == u64::MAX {
        format!("{first}-(end)")
    } else {
        format!("{first}-{last}")
    }
}

/// A range seen by the writer: blocks and bytes, to name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Named {
    /// The span's index (the bmap range's; far above any for a hook's extra writes).
    index: usize,
    first: u64,
    last: u64,
    start: u64,
    end: u64,
}

impl Named {
    fn holds(&self, offset: u64) -> bool {
        (self.start..self.end).contains(&offset)
    }
}

/// Bytes kept for `len` bytes at destination `offset`, at `pos` of the batch.
#[derive(Debug, Clone, Copy)]
struct Part {
    pos: usize,
    offset: u64,
    len: usize,
}

/// Kept bytes and where they were written.
#[derive(Debug)]
struct Batch {
    buf: AlignedBuf,
    /// Where the image's offset 0 lies on the medium (a seek), modulo the alignment.
    shift: u64,
    used: usize,
    parts: Vec<Part>,
    ranges: Vec<Named>,
}

impl Batch {
    fn new(align: usize, shift: u64) -> Batch {
        Batch {
            buf: AlignedBuf::new(BATCH, align),
            shift: shift % align as u64,
            used: 0,
            parts: Vec::new(),
            ranges: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.used = 0;
        self.parts.clear();
        self.ranges.clear();
    }

    /// Keeps as much of `data` (for destination `offset`) as fits, at a place with the
    /// offset's alignment so that it can be written again directly; returns how much.
    fn push(&mut self, data: &[u8], offset: u64, range: Option<Named>) -> usize {
        let align = self.buf.align();
        let want =
            usize::try_from((offset % align as u64 + self.shift) % align as u64).unwrap_or(0);
        let pos = self.used + (want + align - self.used % align) % align;
        let n = data.len().min(BATCH.saturating_sub(pos));
        if n == 0 {
            return 0;
        }
        self.buf[pos..pos + n].copy_from_slice(&data[..n]);
        self.used = pos + n;
        match self.parts.last_mut() {
            Some(last) if last.pos + last.len == pos && last.offset + last.len as u64 == offset => {
                last.len += n;
            }
            _ => self.parts.push(Part {
                pos,
                offset,
                len: n,
            }),
        }
        if let Some(range) = range
            && self.ranges.last() != Some(&range)
        {
            self.ranges.push(range);
        }
        n
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// What the read-back thread sends back for each batch: the batch (to be filled
/// again) and what it found.
type Done = (Batch, Result<Found, Error>);

/// What one batch's read-back found.
#[derive(Debug, Default)]
struct Found {
    bytes: u64,
    rewrites: u64,
    rewritten: Vec<Named>,
}

/// The copy thread's side: keeps the chunks in batches and hands them over.
#[derive(Debug)]
pub(super) struct Verifier {
    to_thread: Option<SyncSender<Batch>>,
    from_thread: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    current: Batch,
    spare: Vec<Batch>,
    made: usize,
    in_flight: usize,
    align: usize,
    shift: u64,
    open: Vec<Named>,
    rewritten: Vec<Named>,
    stats: ReadBackStats,
    /// The bmap ranges some bytes of which were kept (counted in `stats.ranges`).
    counted: std::collections::HashSet<usize>,
    broken: bool,
}

impl Verifier {
    /// Starts the read-back thread for `dest`.
    pub(super) fn start(dest: Arc<Dest>, options: ReadBack) -> Result<Verifier, Error> {
        if dest.kind() == Kind::Other {
            return Err(Error::NothingToReadBack(dest.path().to_owned()));
        }
        let align = dest.alignment();
        let shift = dest.seek();
        let (to_thread, batches) = sync_channel::<Batch>(IN_FLIGHT);
        let (done, from_thread) = channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("read-back".into())
            .spawn(move || read_back_all(&dest, &options, &batches, &done))
            .map_err(|source| Error::Spawn {
                thread: "read-back",
                source,
            })?;
        Ok(Verifier {
            to_thread: Some(to_thread),
            from_thread,
            thread: Some(thread),
            current: Batch::new(align, shift),
            spare: Vec::new(),
            made: 1,
            in_flight: 0,
            align,
            shift,
            open: Vec::new(),
            rewritten: Vec::new(),
            stats: ReadBackStats::default(),
            counted: std::collections::HashSet::new(),
            broken: false,
        })
    }

    pub(super) fn begin(&mut self, span: &Span) {
        self.open.push(Named {
            index: span.index,
            first: span.first_block,
            last: span.last_block,
            start: span.start,
            end: span.len.map_or(u64::MAX, |len| span.start + len),
        });
    }

    pub(super) fn end(&mut self, span: &Span, verdict: &Verdict) {
        let _ = verdict;
        self.open.retain(|named| named.start != span.start);
    }

    /// Keeps the chunk `data`, just written at `offset`.
    pub(super) fn keep(&mut self, mut data: &[u8], mut offset: u64) -> Result<(), Error> {
        let range = self.open.iter().copied().find(|named| named.holds(offset));
        // A bmap range counts once, however it was split (at held regions, in
        // chunks), and only when some of it was written (not skipped as unchanged);
        // a hook's extra writes (the GPT move) are not bmap ranges.
        if let Some(named) = range
            && named.index < usize::MAX / 2
            && self.counted.insert(named.index)
        {
            self.stats.ranges += 1;
        }
        while !data.is_empty() {
            let n = self.current.push(data, offset, range);
            if n == 0 {
                self.hand_over()?;
                continue;
            }
            data = &data[n..];
            offset += n as u64;
        }
        Ok(())
    }

    /// Hands the current batch over and takes an empty one (waiting for one to come
    /// back when [`IN_FLIGHT`] are out).
    fn hand_over(&mut self) -> Result<(), Error> {
        self.collect(false)?;
        let next = match self.spare.pop() {
            Some(batch) => batch,
            None if self.made <= IN_FLIGHT => {
                self.made += 1;
                Batch::new(self.align, self.shift)
            }
            None => {
                self.collect_one()?;
                self.spare.pop().ok_or(Error::Finished)?
            }
        };
        let full = std::mem::replace(&mut self.current, next);
        let sent = self.to_thread.as_ref().map(|tx| tx.send(full));
        match sent {
            Some(Ok(())) => {
                self.in_flight += 1;
                Ok(())
            }
            // The thread stopped: it sent why before it did.
            _ => {
                self.collect(true)?;
                Err(Error::Finished)
            }
        }
    }

    /// Takes what the thread sent back: everything it finished, or (`wait`) every
    /// batch handed over.
    fn collect(&mut self, wait: bool) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Finished);
        }
        while self.in_flight > 0 {
            if wait {
                self.collect_one()?;
                continue;
            }
            match self.from_thread.try_recv() {
                Ok(done) => self.take(done)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return self.stopped(),
            }
        }
        Ok(())
    }

    fn collect_one(&mut self) -> Result<(), Error> {
        match self.from_thread.recv() {
            Ok(done) => self.take(done),
            Err(_) => self.stopped(),
        }
    }

    fn stopped(&mut self) -> Result<(), Error> {
        self.broken = true;
        Err(Error::Finished)
    }

    fn take(&mut self, (mut batch, found): Done) -> Result<(), Error> {
        self.in_flight -= 1;
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                self.broken = true;
                return Err(error);
            }
        };
        self.stats.bytes += found.bytes;
        self.stats.rewrites += found.rewrites;
        for named in found.rewritten {
            if !self.rewritten.contains(&named) {
                self.rewritten.push(named);
            }
        }
        self.stats.ranges_rewritten = self.rewritten.len() as u64;
        batch.clear();
        self.spare.push(batch);
        Ok(())
    }

    /// Hands over what is kept and waits until everything handed over was read back
    /// and matched.
    pub(super) fn wait(&mut self) -> Result<(), Error> {
        if !self.current.is_empty() {
            self.hand_over()?;
        }
        self.collect(true)
    }

    /// [`wait`](Verifier::wait)s, then stops the thread; `through_page_cache` says
    /// whether the destination read through the page cache.
    pub(super) fn finish(&mut self, through_page_cache: bool) -> Result<ReadBackStats, Error> {
        self.wait()?;
        self.stop();
        self.stats.through_page_cache = through_page_cache;
        Ok(self.stats)
    }

    /// What was found so far.
    pub(super) fn stats(&self) -> ReadBackStats {
        self.stats
    }

    fn stop(&mut self) {
        self.to_thread = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        // The thread holds the destination: let it go before the writer does, so
        // that an unfinished destination is undone when the writer is dropped.
        self.stop();
    }
}

/// The read-back thread: checks each batch, sends it back with what it found, and
/// stops at the first failure.
fn read_back_all(dest: &Dest, options: &ReadBack, batches: &Receiver<Batch>, done: &Sender<Done>) {
    let mut scratch = AlignedBuf::new(BATCH, dest.alignment());
    for batch in batches {
        let found = check(dest, options, &batch, &mut scratch);
        let failed = found.is_err();
        if done.send((batch, found)).is_err() || failed {
            return;
        }
    }
}

/// Makes the batch durable, reads it back, and writes again what differs.
fn check(
    dest: &Dest,
    options: &ReadBack,
    batch: &Batch,
    scratch: &mut AlignedBuf,
) -> Result<Found, Error> {
    let spans: Vec<(u64, u64)> = batch
        .parts
        .iter()
        .map(|p| (p.offset, p.len as u64))
        .collect();
    for &(offset, len) in &spans {
        dest.settle(offset, len)?;
    }
    options.fault(&spans, 0);
    let mut found = Found::default();
    for part in &batch.parts {
        let kept = &batch.buf[part.pos..part.pos + part.len];
        let mut writes = 1;
        loop {
            let back = &mut scratch[part.pos..part.pos + part.len];
            let got = dest.read_at(back, part.offset)?;
            let Some(at) = first_difference(kept, &back[..got]) else {
                break;
            };
            let offset = part.offset + at as u64;
            let range = batch.ranges.iter().find(|r| r.holds(offset)).copied();
            if writes > options.retries {
                return Err(mismatch(
                    range,
                    offset,
                    kept[at],
                    back[..got].get(at),
                    writes,
                ));
            }
            dest.write_at(kept, part.offset)?;
            dest.settle(part.offset, part.len as u64)?;
            options.fault(&[(part.offset, part.len as u64)], writes);
            writes += 1;
            found.rewrites += 1;
            if let Some(range) = range
                && !found.rewritten.contains(&range)
            {
                found.rewritten.push(range);
            }
        }
        found.bytes += part.len as u64;
    }
    Ok(found)
}

/// The index of the first byte where `back` differs from `kept` (a short `back`
/// differs where it ends).
fn first_difference(kept: &[u8], back: &[u8]) -> Option<usize> {
    if kept == back {
        return None;
    }
    Some(
        kept.iter()
            .zip(back)
            .position(|(a, b)| a != b)
            .unwrap_or(back.len().min(kept.len())),
    )
}

fn mismatch(
    range: Option<Named>,
    offset: u64,
    wrote: u8,
    found: Option<&u8>,
    writes: u32,
) -> Error {
    let range = range.unwrap_or(Named {
        index: usize::MAX,
        first: 0,
        last: u64::MAX,
        start: 0,
        end: u64::MAX,
    });
    Error::ReadBack(Box::new(ReadBackMismatch {
        first: range.first,
        last: range.last,
        start: range.start,
        end: range.end,
        offset,
        wrote,
        found: found.copied().unwrap_or(0),
        writes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_chunks_at_their_offsets_alignment_and_merges_contiguous_ones() {
        let mut batch = Batch::new(4096, 0);
        let a = vec![1u8; 5000];
        assert_eq!(batch.push(&a, 100, None), 5000);
        assert_eq!(batch.parts[0].pos % 4096, 100);
        assert_eq!(batch.push(&a, 5100, None), 5000);
        assert_eq!(batch.parts.len(), 1, "contiguous chunks are one part");
        assert_eq!(batch.parts[0].len, 10_000);
        assert_eq!(batch.push(&a, 1 << 20, None), 5000);
        assert_eq!(batch.parts.len(), 2);
        assert_eq!(batch.parts[1].pos % 4096, 0);
        let big = vec![2u8; BATCH];
        let n = batch.push(&big, 2 << 20, None);
        assert!(n > 0 && n < BATCH, "only what fits is kept");
        assert_eq!(batch.push(&big[n..], (2 << 20) + n as u64, None), 0);
    }

    #[test]
    fn the_first_difference_is_found_and_a_short_read_differs_where_it_ends() {
        assert_eq!(first_difference(b"abcd", b"abcd"), None);
        assert_eq!(first_difference(b"abcd", b"abXd"), Some(2));
        assert_eq!(first_difference(b"abcd", b"ab"), Some(2));
    }

    #[test]
    fn a_mismatch_names_the_range_and_the_byte() {
        let range = Named {
            index: 1,
            first: 3,
            last: 5,
            start: 12288,
            end: 24576,
        };
        let text = mismatch(Some(range), 13000, 0xab, Some(&0x54), 3).to_string();
        assert!(text.contains("blocks range 3-5"), "{text}");
        assert!(text.contains("byte 13000"), "{text}");
        assert!(text.contains("after 3 write(s)"), "{text}");
    }
}
