//! The copy pipeline: one reader thread, two hashing threads, and the last stage on
//! the calling thread (`last.rs`: chunks into a [`RangeSink`], events out), joined by
//! bounded channels; buffers come from a fixed pool and go back to it after the sink
//! took them, so memory stays at `POOL * CHUNK` whatever the image.
//!
//! ```text
//!   reader ──chunks of range r──> hasher (r assigned to the least busy) ──> sink
//!     ^                                                                      │
//!     └───────────────────────── free buffers ───────────────────────────────┘
//! ```
//!
//! The reader skips holes with positioned reads on a local file, or reads through them
//! on a stream. All chunks of a range go to one hasher, in order, so the digest is
//! computed as the bytes pass, and the range's last chunk carries its verdict;
//! different ranges hash on different cores while the sink (a [`super::DestWriter`]
//! `pwrite`s) takes each chunk at its offset. The first error from any stage is kept,
//! every stage stops at its next chunk, and the error is returned.
//!
//! The buffers are aligned to the destination's direct-I/O alignment (4096 at least),
//! and the bytes for image offset `o` are placed at index `(o + shift) % alignment`
//! (the shift: where the image starts on the medium, a `--seek`): memory and
//! file offsets then agree, so every whole aligned block of a chunk can be written
//! with `O_DIRECT`, whatever offset its range starts at. A range's first chunk is cut
//! short so that the next ones start aligned; only a range's partial first and last
//! blocks go through the page cache ([`Dest::write_at`]).

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::{Events, Outcome, RangeResult};
use super::last::Writer;
use super::sink::{RangeSink, Verdict};
use super::{Error, Options, Span};
use crate::dest::{AlignedBuf, MIN_ALIGN};
use crate::format::Hasher;
use crate::source::{Image, RandomAccess};

/// Bytes per buffer.
const CHUNK: usize = 1 << 20;
/// Buffers in the pool: the pipeline's whole data memory (16 MiB).
const POOL: usize = 16;
/// Hashing threads.
const HASHERS: usize = 2;
/// How often a thread waiting for a buffer looks at the stop flags.
pub(super) const POLL: Duration = Duration::from_millis(20);

/// What to copy: the plan's spans, and what the reader checks the image against.
pub(super) struct Job {
    /// The spans, in image order.
    pub spans: Vec<Span>,
    /// The image size the bmap gives.
    pub expected: Option<u64>,
    /// Block size, to name blocks in errors.
    pub block_size: u64,
}

pub(super) struct Chunk {
    pub(super) buf: AlignedBuf,
    /// Where the bytes start in `buf`: `offset % alignment`.
    start: usize,
    pub(super) len: usize,
    pub(super) offset: u64,
    pub(super) segment: usize,
    pub(super) first: bool,
    pub(super) last: bool,
    /// Set by the hasher on a range's last chunk.
    pub(super) verdict: Option<Verdict>,
}

/// State all stages share: the plan, the first error, and the stop flags. Owned (in
/// an `Arc`) so that a stage stuck in a blocking read can be left behind on an
/// interrupt or error: it ends by itself when its read returns.
impl Chunk {
    pub(super) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

pub(super) struct Shared {
    pub(super) options: Options,
    pub(super) segments: Vec<Span>,
    pending: Vec<AtomicUsize>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    /// Image bytes read so far.
    pub(super) read: AtomicU64,
}

impl Shared {
    pub(super) fn fail(&self, error: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(error);
        self.failed.store(true, Ordering::SeqCst);
    }

    pub(super) fn stopped(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || self.options.interrupt.is_raised()
    }

    fn take_error(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Runs the pipeline into `sink`; returns what was copied (without timings). Does not
/// finish `sink`.
pub(super) fn run(
    image: Image,
    job: Job,
    sink: &mut dyn RangeSink,
    events: &mut dyn Events,
    options: &Options,
) -> Result<Outcome, Error> {
    let shared = Arc::new(Shared {
        options: options.clone(),
        segments: job.spans,
        pending: (0..HASHERS).map(|_| AtomicUsize::new(0)).collect(),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        read: AtomicU64::new(0),
    });
    let align = sink.alignment().max(MIN_ALIGN);
    let (pool_tx, pool_rx) = mpsc::sync_channel::<AlignedBuf>(POOL);
    for _ in 0..POOL {
        pool_tx
            .send(AlignedBuf::new(CHUNK, align))
            .expect("the pool has room for its buffers");
    }
    let (write_tx, write_rx) = mpsc::sync_channel::<Chunk>(POOL);
    let mut hasher_txs = Vec::with_capacity(HASHERS);
    let mut threads = Vec::with_capacity(HASHERS);
    for index in 0..HASHERS {
        let (tx, rx) = mpsc::sync_channel::<Chunk>(POOL / HASHERS);
        hasher_txs.push(tx);
        let (write_tx, shared) = (write_tx.clone(), Arc::clone(&shared));
        threads.push(spawn("bmap-hash", move || {
            hash(rx, write_tx, index, &shared)
        })?);
    }
    drop(write_tx);
    let reader = Reader {
        shared: Arc::clone(&shared),
        pool: pool_rx,
        hashers: hasher_txs,
        // Without a bmap a stream of known size (a tar or zip member) is still read to
        // its end, so that the archive's and the decoder's trailers are checked.
        expected: job.expected.or(image.size()),
        block_size: job.block_size,
        align: align as u64,
        shift: sink.shift() % align as u64,
    };
    let reader = spawn("bmap-read", move || reader.run(image))?;
    let mut writer = Writer {
        sink,
        events,
        shared: &shared,
        written: 0,
        read: 0,
        open: Vec::new(),
        ranges: Vec::new(),
    };
    writer.run(write_rx, &pool_tx);

    // On an error or interrupt, do not wait: the reader may be blocked in a read (an
    // idle pipe, a stalled network) and will end when that read returns.
    if let Some(error) = shared.take_error() {
        return Err(error);
    }
    if options.interrupt.is_raised() {
        return Err(Error::Interrupted);
    }
    let image_size = reader
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    for thread in threads {
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
    if let Some(error) = shared.take_error() {
        return Err(error);
    }
    writer.close_open()?;
    writer.report_read();
    let bytes_written = writer.written;
    let verified = writer
        .ranges
        .iter()
        .filter(|r| matches!(r.result, RangeResult::Verified(_)))
        .count() as u64;
    Ok(Outcome {
        image_size: image_size.unwrap_or(bytes_written),
        bytes_read: writer.read,
        bytes_written,
        ranges_verified: verified,
        ranges_unverified: shared.segments.len() as u64 - verified,
        ranges: writer.ranges,
        timings: Default::default(),
    })
}

fn spawn<T: Send + 'static>(
    name: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, Error> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .map_err(|source| Error::Spawn {
            thread: name,
            source,
        })
}

struct Reader {
    shared: Arc<Shared>,
    pool: Receiver<AlignedBuf>,
    hashers: Vec<SyncSender<Chunk>>,
    /// The image size the bmap gives.
    expected: Option<u64>,
    /// Block size, to name blocks in errors.
    block_size: u64,
    /// The buffers' alignment: data for offset `o` starts at `(o + shift) % align`.
    align: u64,
    /// Where the image's offset 0 lies on the medium, modulo `align` (a seek).
    shift: u64,
}

impl Reader {
    /// Reads every segment and hands the chunks on. Returns the image size when it
    /// learned it (a stream read to its end); errors go to `shared`.
    fn run(self, image: Image) -> Option<u64> {
        let result = match image {
            Image::File { mut file, size } => self.read_random(&mut file).map(|()| Some(size)),
            Image::Ranged { mut source, size } => {
                self.read_random(source.as_mut()).map(|()| Some(size))
            }
            Image::Stream { mut reader, .. } => self.read_stream(&mut *reader),
        };
        match result {
            Ok(size) => size,
            Err(error) => {
                self.shared.fail(error);
                None
            }
        }
    }

    fn read_random(&self, file: &mut dyn RandomAccess) -> Result<(), Error> {
        let spans: Vec<(u64, u64)> = self
            .shared
            .segments
            .iter()
            .map(|s| (s.start, s.len.unwrap_or(0)))
            .collect();
        file.plan(&spans);
        for (index, segment) in self.shared.segments.iter().enumerate() {
            let hasher = self.pick_hasher();
            let len = segment.len.unwrap_or(0);
            let mut done = 0;
            while done < len {
                let Some(mut buf) = self.take_buffer() else {
                    return Ok(());
                };
                let offset = segment.start + done;
                let start = self.place(offset);
                let room = CHUNK - start;
                let want = usize::try_from(len - done).map_or(room, |n| n.min(room));
                let got = read_full_at(file, &mut buf[start..start + want], offset)
                    .map_err(|source| Error::Read { offset, source })?;
                if got < want {
                    return Err(self.truncated(offset + got as u64, Some(segment)));
                }
                done += want as u64;
                let chunk = Chunk {
                    buf,
                    start,
                    len: want,
                    offset,
                    segment: index,
                    first: done == want as u64,
                    last: done == len,
                    verdict: None,
                };
                if !self.send(hasher, chunk) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn read_stream(&self, reader: &mut dyn Read) -> Result<Option<u64>, Error> {
        let mut pos = 0u64;
        let mut scratch = vec![0u8; CHUNK];
        for (index, segment) in self.shared.segments.iter().enumerate() {
            let hasher = self.pick_hasher();
            let skipped = self.skip(reader, segment.start - pos, &mut scratch, pos)?;
            pos += skipped;
            if pos < segment.start {
                return Err(self.truncated(pos, Some(segment)));
            }
            let mut done = 0u64;
            loop {
                let remaining = segment.len.map(|len| len - done);
                if remaining == Some(0) {
                    break;
                }
                let Some(mut buf) = self.take_buffer() else {
                    return Ok(None);
                };
                let start = self.place(pos);
                let room = CHUNK - start;
                let want =
                    remaining.map_or(room, |r| usize::try_from(r).map_or(room, |r| r.min(room)));
                let got = read_full(reader, &mut buf[start..start + want]).map_err(|source| {
                    Error::Read {
                        offset: pos,
                        source,
                    }
                })?;
                if got == 0 && segment.len.is_none() {
                    break;
                }
                if got < want && segment.len.is_some() {
                    return Err(self.truncated(pos + got as u64, Some(segment)));
                }
                done += got as u64;
                let chunk = Chunk {
                    buf,
                    start,
                    len: got,
                    offset: pos,
                    segment: index,
                    first: done == got as u64,
                    last: remaining == Some(got as u64),
                    verdict: None,
                };
                pos += got as u64;
                if !self.send(hasher, chunk) {
                    return Ok(None);
                }
                if got < want {
                    break;
                }
            }
        }
        // Read to the end: the trailing hole must be there (a cut download is an error
        // even when the cut falls in a hole), and nothing may follow it.
        if let Some(expected) = self.expected {
            pos += self.skip(reader, expected - pos, &mut scratch, pos)?;
            if pos < expected {
                return Err(self.truncated(pos, None));
            }
            if read_full(reader, &mut scratch[..1]).map_err(|source| Error::Read {
                offset: pos,
                source,
            })? > 0
            {
                return Err(Error::TooLong { expected });
            }
        }
        Ok(Some(pos))
    }

    /// Reads past up to `count` bytes of a hole (checking they are zero unless
    /// verification is off); returns how many there were.
    fn skip(
        &self,
        reader: &mut dyn Read,
        count: u64,
        scratch: &mut [u8],
        pos: u64,
    ) -> Result<u64, Error> {
        let check = self.shared.options.verify;
        let mut done = 0;
        while done < count {
            if self.shared.stopped() {
                return Ok(done);
            }
            let want =
                usize::try_from(count - done).map_or(scratch.len(), |n| n.min(scratch.len()));
            let got = read_full(reader, &mut scratch[..want]).map_err(|source| Error::Read {
                offset: pos + done,
                source,
            })?;
            if check && let Some(at) = first_non_zero(&scratch[..got]) {
                let offset = pos + done + at as u64;
                return Err(Error::HoleNotZero {
                    block: offset / self.block_size,
                    offset,
                });
            }
            done += got as u64;
            self.shared.read.fetch_add(got as u64, Ordering::Relaxed);
            if got < want {
                break;
            }
        }
        Ok(done)
    }

    fn truncated(&self, offset: u64, segment: Option<&Span>) -> Error {
        Error::Truncated {
            offset,
            expected: self.expected_size(),
            range: segment.map(|s| (s.first_block, s.last_block)),
        }
    }

    fn expected_size(&self) -> u64 {
        self.expected.unwrap_or_else(|| {
            self.shared
                .segments
                .last()
                .and_then(|s| s.len.map(|len| s.start + len))
                .unwrap_or(0)
        })
    }

    /// The hasher with the least queued work, for the next segment.
    fn pick_hasher(&self) -> usize {
        (0..self.shared.pending.len())
            .min_by_key(|&i| self.shared.pending[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Where the bytes for image offset `offset` start in a buffer. A chunk that
    /// starts there holds at most `CHUNK - place` bytes, so that it ends, and the next
    /// chunk of its range starts, on an aligned offset.
    fn place(&self, offset: u64) -> usize {
        // Below `align`, which is at most CHUNK.
        ((offset % self.align + self.shift) % self.align) as usize
    }

    fn take_buffer(&self) -> Option<AlignedBuf> {
        loop {
            if self.shared.stopped() {
                return None;
            }
            match self.pool.recv_timeout(POLL) {
                Ok(buf) => return Some(buf),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Hands a chunk to a hasher; `false` when the pipeline is shutting down.
    fn send(&self, hasher: usize, chunk: Chunk) -> bool {
        self.shared.pending[hasher].fetch_add(1, Ordering::Relaxed);
        self.shared
            .read
            .fetch_add(chunk.len as u64, Ordering::Relaxed);
        self.hashers[hasher].send(chunk).is_ok() && !self.shared.stopped()
    }
}

/// A hashing stage: digests its ranges' chunks in order and passes them on, the last
/// chunk of each range with its verdict.
fn hash(rx: Receiver<Chunk>, write_tx: SyncSender<Chunk>, index: usize, shared: &Shared) {
    let pending = &shared.pending[index];
    let segments = &shared.segments;
    let mut state: Option<Hasher> = None;
    for mut chunk in rx {
        pending.fetch_sub(1, Ordering::Relaxed);
        if shared.stopped() {
            return;
        }
        let segment = &segments[chunk.segment];
        let expected = segment.digest.filter(|_| shared.options.verify);
        if chunk.first {
            state = expected.map(|d| d.kind().hasher());
        }
        if let Some(hasher) = state.as_mut() {
            hasher.update(chunk.data());
        }
        if chunk.last {
            chunk.verdict = Some(match (state.take(), expected) {
                (Some(hasher), Some(expected)) => {
                    let actual = hasher.finish();
                    if actual == expected {
                        Verdict::Verified(actual)
                    } else {
                        Verdict::Mismatched { expected, actual }
                    }
                }
                _ => Verdict::Unverified,
            });
        }
        if write_tx.send(chunk).is_err() {
            return;
        }
    }
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_full_at(file: &mut dyn RandomAccess, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads until `buf` is full or the end of the stream; returns the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Zeros to compare with: `==` on byte slices is a `memcmp`, vectorised by libc.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Index of the first non-zero byte, if any.
fn first_non_zero(buf: &[u8]) -> Option<usize> {
    for (i, block) in buf.chunks(ZEROS.len()).enumerate() {
        if block != &ZEROS[..block.len()] {
            return block
                .iter()
                .position(|&b| b != 0)
                .map(|p| i * ZEROS.len() + p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::first_non_zero;

    #[test]
    fn finds_the_first_non_zero_byte() {
        let mut buf = vec![0u8; 1000];
        assert_eq!(first_non_zero(&buf), None);
        buf[999] = 1;
        assert_eq!(first_non_zero(&buf), Some(999));
        buf[130] = 7;
        assert_eq!(first_non_zero(&buf), Some(130));
        assert_eq!(first_non_zero(&[]), None);
    }
}
