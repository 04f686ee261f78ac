//! The copy pipeline: one reader thread, two hashing threads, one writer (the calling
//! thread), joined by bounded channels; buffers come from a fixed pool and go back to
//! it after writing, so memory stays at `POOL * CHUNK` whatever the image.
//!
//! ```text
//!   reader ──chunks of range r──> hasher (r assigned to the least busy) ──> writer
//!     ^                                                                      │
//!     └───────────────────────── free buffers ───────────────────────────────┘
//! ```
//!
//! The reader skips holes with positioned reads on a local file, or reads through them
//! on a stream. All chunks of a range go to one hasher, in order, so the digest is
//! computed as the bytes pass; different ranges hash on different cores while the
//! writer `pwrite`s at the range's offset. The first error from any stage is kept,
//! every stage stops at its next chunk, and the error is returned.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Error, Mismatch, Options, Outcome};
use crate::dest::Dest;
use crate::format::{Bmap, Digest, Hasher};
use crate::source::{Image, RandomAccess};

/// Bytes per buffer.
const CHUNK: usize = 1 << 20;
/// Buffers in the pool: the pipeline's whole data memory (16 MiB).
const POOL: usize = 16;
/// Hashing threads.
const HASHERS: usize = 2;
/// Bytes written between two starts of writeback.
const WRITEBACK_EVERY: u64 = 16 << 20;
/// How often a thread waiting for a buffer looks at the stop flags.
const POLL: Duration = Duration::from_millis(20);

/// A run of image bytes to copy: a bmap range, or the whole image without a bmap.
struct Segment {
    first_block: u64,
    last_block: u64,
    start: u64,
    /// `None`: up to the end of a stream of unknown length.
    len: Option<u64>,
    digest: Option<Digest>,
}

struct Chunk {
    buf: Vec<u8>,
    len: usize,
    offset: u64,
    segment: usize,
    first: bool,
    last: bool,
}

/// State all stages share: the plan, the first error, and the stop flags. Owned (in
/// an `Arc`) so that a stage stuck in a blocking read can be left behind on an
/// interrupt or error: it ends by itself when its read returns.
struct Shared {
    options: Options,
    segments: Vec<Segment>,
    pending: Vec<AtomicUsize>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    verified: AtomicU64,
}

impl Shared {
    fn fail(&self, error: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(error);
        self.failed.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || self.options.interrupt.is_raised()
    }

    fn take_error(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Runs the pipeline; returns what was copied. Does not finish `dest`.
pub(super) fn run(
    image: Image,
    bmap: Option<&Bmap>,
    dest: &Dest,
    options: &Options,
) -> Result<Outcome, Error> {
    let shared = Arc::new(Shared {
        options: options.clone(),
        segments: plan(bmap, image.size()),
        pending: (0..HASHERS).map(|_| AtomicUsize::new(0)).collect(),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        verified: AtomicU64::new(0),
    });
    let (pool_tx, pool_rx) = mpsc::sync_channel::<Vec<u8>>(POOL);
    for _ in 0..POOL {
        pool_tx
            .send(vec![0u8; CHUNK])
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
        expected: bmap.map(Bmap::image_size).or(image.size()),
        block_size: bmap.map_or(4096, Bmap::block_size),
    };
    let reader = spawn("bmap-read", move || reader.run(image))?;
    let bytes_written = write(write_rx, pool_tx, dest, &shared);

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
    let verified = shared.verified.load(Ordering::SeqCst);
    Ok(Outcome {
        image_size: image_size.unwrap_or(bytes_written),
        bytes_written,
        ranges_verified: verified,
        ranges_unverified: shared.segments.len() as u64 - verified,
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

/// The segments to copy, in image order.
fn plan(bmap: Option<&Bmap>, image_size: Option<u64>) -> Vec<Segment> {
    match bmap {
        Some(bmap) => bmap
            .ranges()
            .iter()
            .map(|range| {
                let (start, len) = bmap.byte_span(range);
                Segment {
                    first_block: range.first(),
                    last_block: range.last(),
                    start,
                    len: Some(len),
                    digest: range.digest().copied(),
                }
            })
            .collect(),
        None => {
            if image_size == Some(0) {
                return Vec::new();
            }
            let block_size = 4096;
            vec![Segment {
                first_block: 0,
                last_block: image_size
                    .map_or(u64::MAX, |s| s.div_ceil(block_size).saturating_sub(1)),
                start: 0,
                len: image_size,
                digest: None,
            }]
        }
    }
}

struct Reader {
    shared: Arc<Shared>,
    pool: Receiver<Vec<u8>>,
    hashers: Vec<SyncSender<Chunk>>,
    /// The image size the bmap gives.
    expected: Option<u64>,
    /// Block size, to name blocks in errors.
    block_size: u64,
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
                let want = usize::try_from(len - done).map_or(CHUNK, |n| n.min(CHUNK));
                let offset = segment.start + done;
                let got = read_full_at(file, &mut buf[..want], offset)
                    .map_err(|source| Error::Read { offset, source })?;
                if got < want {
                    return Err(self.truncated(offset + got as u64, Some(segment)));
                }
                done += want as u64;
                let chunk = Chunk {
                    buf,
                    len: want,
                    offset,
                    segment: index,
                    first: done == want as u64,
                    last: done == len,
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
                let want = remaining.map_or(CHUNK, |r| {
                    usize::try_from(r).map_or(CHUNK, |r| r.min(CHUNK))
                });
                let got = read_full(reader, &mut buf[..want]).map_err(|source| Error::Read {
                    offset: pos,
                    source,
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
                    len: got,
                    offset: pos,
                    segment: index,
                    first: done == got as u64,
                    last: remaining == Some(got as u64),
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
            if got < want {
                break;
            }
        }
        Ok(done)
    }

    fn truncated(&self, offset: u64, segment: Option<&Segment>) -> Error {
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

    fn take_buffer(&self) -> Option<Vec<u8>> {
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
        self.hashers[hasher].send(chunk).is_ok() && !self.shared.stopped()
    }
}

/// A hashing stage: digests its ranges' chunks in order and passes them on.
fn hash(rx: Receiver<Chunk>, write_tx: SyncSender<Chunk>, index: usize, shared: &Shared) {
    let pending = &shared.pending[index];
    let segments = &shared.segments;
    let mut state: Option<Hasher> = None;
    for chunk in rx {
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
            hasher.update(&chunk.buf[..chunk.len]);
        }
        if chunk.last
            && let (Some(hasher), Some(expected)) = (state.take(), expected)
        {
            let actual = hasher.finish();
            if actual != expected {
                shared.fail(Error::ChecksumMismatch(Box::new(Mismatch {
                    first: segment.first_block,
                    last: segment.last_block,
                    start: segment.start,
                    end: segment.start + segment.len.unwrap_or(0),
                    expected,
                    actual,
                })));
                return;
            }
            shared.verified.fetch_add(1, Ordering::Relaxed);
        }
        if write_tx.send(chunk).is_err() {
            return;
        }
    }
}

/// The writing stage: `pwrite`s each chunk, reports progress, recycles the buffer.
fn write(rx: Receiver<Chunk>, pool: SyncSender<Vec<u8>>, dest: &Dest, shared: &Shared) -> u64 {
    let mut written = 0u64;
    let mut since_writeback = 0u64;
    loop {
        // Wait with a timeout, so that an interrupt is seen even while the reader is
        // blocked on an idle input.
        let chunk = match rx.recv_timeout(POLL) {
            Ok(chunk) => chunk,
            Err(RecvTimeoutError::Timeout) if shared.stopped() => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if shared.stopped() {
            break;
        }
        if let Err(error) = dest.write_at(&chunk.buf[..chunk.len], chunk.offset) {
            shared.fail(error.into());
            break;
        }
        written += chunk.len as u64;
        since_writeback += chunk.len as u64;
        if since_writeback >= WRITEBACK_EVERY {
            // Keep the disk busy while we go on, instead of leaving everything to the
            // final fsync (the dirty limit of a large machine holds gigabytes).
            dest.start_writeback();
            since_writeback = 0;
        }
        shared.options.progress.written(chunk.len as u64);
        // Never blocks: the pool has room for every buffer there is.
        let _ = pool.send(chunk.buf);
    }
    written
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
