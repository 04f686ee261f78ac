//! bzip2 on all cores. pbzip2 writes one bzip2 stream per block, each starting on a byte
//! boundary with `BZh1`-`BZh9` and the first block's magic (`31 41 59 26 53 59`). The
//! input is cut before each such pattern and the pieces decode on several threads, in
//! order, with a bounded number in flight. A cut is trusted only when the piece before
//! it decoded to the end of its last stream exactly at the cut (the pattern can occur
//! inside compressed data). Anything else (a piece that ends inside a stream, a stream
//! too large to hold in memory, a plain one-stream `bzip2` file, a data error) hands the
//! rest of the input, from the start of that piece, to the one-thread decoder, which
//! then decodes and reports exactly as it always did.

use std::collections::VecDeque;
use std::io::{self, BufRead, Cursor, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use bzip2::{Decompress, Status};

/// The first block's magic, which follows `BZh1`-`BZh9` at the start of every stream
/// that holds data.
const BLOCK_MAGIC: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
/// A piece longer than this is no pbzip2 block (those are 100-900 kB before compression):
/// the rest goes to the one-thread decoder.
const MAX_PIECE: usize = 4 << 20;
/// Decoded bytes one piece may produce before the rest goes to the one-thread decoder
/// (a stream of zeros expands a lot). With [`MAX_PIECE`] and the pieces in flight, this
/// bounds the memory: (threads + 2) x 12 MiB at worst, about 1 MiB a piece for pbzip2.
const MAX_OUTPUT: usize = 8 << 20;
/// Most decoding threads.
const MAX_THREADS: usize = 16;
/// Output space added at a time while decoding a piece.
const OUTPUT_STEP: usize = 1 << 20;
/// Compressed bytes moved from the input at a time.
const READ_STEP: usize = 1 << 20;

/// Reads a bzip2 file of one or more streams, several streams at a time.
pub struct Decoder<R: BufRead + Send + 'static> {
    state: State<R>,
}

type Sequential<R> = bzip2::bufread::MultiBzDecoder<io::Chain<Cursor<Vec<u8>>, R>>;

enum State<R: BufRead + Send + 'static> {
    Parallel(Box<Parallel<R>>),
    Sequential(Box<Sequential<R>>),
    /// Only while switching from one to the other.
    Switching,
}

impl<R: BufRead + Send + 'static> Decoder<R> {
    /// Decodes `input` on up to `threads` threads (one thread: the plain decoder).
    pub fn new(input: R, threads: usize) -> Decoder<R> {
        let threads = threads.min(MAX_THREADS);
        let pool = if threads > 1 {
            Pool::new(threads)
        } else {
            None
        };
        let state = match pool {
            Some(pool) => State::Parallel(Box::new(Parallel {
                splitter: Splitter::new(input),
                pending: VecDeque::new(),
                in_flight: threads + 2,
                pool,
                out: Vec::new(),
                pos: 0,
            })),
            _ => State::Sequential(Box::new(sequential(Vec::new(), input))),
        };
        Decoder { state }
    }
}

fn sequential<R: BufRead>(head: Vec<u8>, rest: R) -> Sequential<R> {
    bzip2::bufread::MultiBzDecoder::new(Cursor::new(head).chain(rest))
}

impl<R: BufRead + Send + 'static> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let parallel = match &mut self.state {
                State::Sequential(decoder) => return decoder.read(buf),
                State::Parallel(parallel) => parallel,
                State::Switching => unreachable!("the state is set again before returning"),
            };
            if parallel.pos < parallel.out.len() || buf.is_empty() {
                let n = buf.len().min(parallel.out.len() - parallel.pos);
                buf[..n].copy_from_slice(&parallel.out[parallel.pos..parallel.pos + n]);
                parallel.pos += n;
                return Ok(n);
            }
            match parallel.next()? {
                Next::Output => {}
                Next::End => return Ok(0),
                Next::Sequential(from) => {
                    let State::Parallel(parallel) =
                        std::mem::replace(&mut self.state, State::Switching)
                    else {
                        unreachable!("matched above")
                    };
                    self.state = State::Sequential(Box::new(parallel.into_sequential(from)));
                }
            }
        }
    }
}

/// What the parallel side did to produce more output.
enum Next {
    /// `out` holds the next decoded piece.
    Output,
    /// Every piece was decoded.
    End,
    /// The one-thread decoder takes over from this piece (none: from the input not yet
    /// cut).
    Sequential(Option<Vec<u8>>),
}

struct Parallel<R> {
    splitter: Splitter<R>,
    /// Pieces handed to the workers, in input order.
    pending: VecDeque<Pending>,
    in_flight: usize,
    pool: Pool,
    /// The decoded piece being read out, and how far.
    out: Vec<u8>,
    pos: usize,
}

struct Pending {
    piece: Arc<Vec<u8>>,
    done: Receiver<Done>,
}

impl<R: BufRead> Parallel<R> {
    fn next(&mut self) -> io::Result<Next> {
        while self.pending.len() < self.in_flight && !self.splitter.ended() {
            match self.splitter.cut()? {
                Cut::Piece(piece) => self.submit(piece),
                Cut::End => {}
                Cut::TooLong => break,
            }
        }
        let Some(pending) = self.pending.pop_front() else {
            return Ok(if self.splitter.ended() {
                Next::End
            } else {
                Next::Sequential(None)
            });
        };
        match pending.done.recv() {
            Ok(Done::Whole(out)) => {
                self.out = out;
                self.pos = 0;
                Ok(Next::Output)
            }
            // A false cut, a huge piece or an error: the one-thread decoder decodes this
            // piece again, and reports what is wrong as it always did.
            _ => Ok(Next::Sequential(Some(unwrap_piece(pending.piece)))),
        }
    }

    fn submit(&mut self, piece: Vec<u8>) {
        let piece = Arc::new(piece);
        let (reply, done) = mpsc::sync_channel(1);
        self.pool.run(Job {
            piece: Arc::clone(&piece),
            reply,
        });
        self.pending.push_back(Pending { piece, done });
    }

    /// The one-thread decoder over everything from `from` on: that piece, the pieces
    /// after it, the bytes not yet cut and the rest of the input.
    fn into_sequential(self, from: Option<Vec<u8>>) -> Sequential<R> {
        let Parallel {
            splitter, pending, ..
        } = self;
        let mut head = from.unwrap_or_default();
        for later in pending {
            head.extend_from_slice(&later.piece);
        }
        head.extend_from_slice(&splitter.carry);
        sequential(head, splitter.input)
    }
}

fn unwrap_piece(piece: Arc<Vec<u8>>) -> Vec<u8> {
    Arc::try_unwrap(piece).unwrap_or_else(|shared| shared.as_ref().clone())
}

// ---------------------------------------------------------------------------------
// Cutting the input before each stream start

enum Cut {
    /// The bytes up to the next stream start (or the end).
    Piece(Vec<u8>),
    /// No stream start within [`MAX_PIECE`] bytes.
    TooLong,
    /// Nothing left.
    End,
}

struct Splitter<R> {
    input: R,
    /// Bytes read and not yet cut off.
    carry: Vec<u8>,
    /// `carry[..scanned]` holds no block magic that starts a stream.
    scanned: usize,
    eof: bool,
    finder: memchr::memmem::Finder<'static>,
}

impl<R: BufRead> Splitter<R> {
    fn new(input: R) -> Splitter<R> {
        Splitter {
            input,
            carry: Vec::new(),
            scanned: 0,
            eof: false,
            finder: memchr::memmem::Finder::new(&BLOCK_MAGIC),
        }
    }

    fn ended(&self) -> bool {
        self.eof && self.carry.is_empty()
    }

    fn cut(&mut self) -> io::Result<Cut> {
        loop {
            if let Some(at) = self.find_start() {
                let rest = self.carry.split_off(at);
                self.scanned = 0;
                return Ok(Cut::Piece(std::mem::replace(&mut self.carry, rest)));
            }
            if self.eof {
                return Ok(if self.carry.is_empty() {
                    Cut::End
                } else {
                    Cut::Piece(std::mem::take(&mut self.carry))
                });
            }
            if self.carry.len() >= MAX_PIECE {
                return Ok(Cut::TooLong);
            }
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                self.eof = true;
                continue;
            }
            let n = available.len().min(READ_STEP);
            self.carry.extend_from_slice(&available[..n]);
            self.input.consume(n);
        }
    }

    /// The offset (after the first byte) of the next `BZh[1-9]` + block magic.
    fn find_start(&mut self) -> Option<usize> {
        // A stream start at offset s has its block magic at s + 4; s must be at least 1.
        let from = self.scanned.max(5);
        if self.carry.len() < from + BLOCK_MAGIC.len() {
            return None;
        }
        let found = self
            .finder
            .find_iter(&self.carry[from..])
            .map(|at| from + at - 4)
            .find(|&start| {
                let head = &self.carry[start..start + 4];
                head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3])
            });
        if found.is_none() {
            // A magic may straddle the end: look at its first bytes again next time.
            self.scanned = self.carry.len() + 1 - BLOCK_MAGIC.len();
        }
        found
    }
}

// ---------------------------------------------------------------------------------
// Workers

struct Job {
    piece: Arc<Vec<u8>>,
    reply: SyncSender<Done>,
}

/// How a piece decoded.
enum Done {
    /// Whole streams, the last one ending exactly at the piece's end.
    Whole(Vec<u8>),
    /// Not whole streams, too large, a data error, or stopped: decode it again in order.
    Again,
}

/// Worker threads taking jobs from one queue; dropping the pool stops them.
struct Pool {
    jobs: mpsc::Sender<Job>,
    stop: Arc<AtomicBool>,
}

impl Pool {
    fn new(threads: usize) -> Option<Pool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..threads {
            let (queue, stop) = (Arc::clone(&queue), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("bmap-bzip2".into())
                .spawn(move || work(&queue, &stop))
                .ok()?;
        }
        Some(Pool { jobs, stop })
    }

    fn run(&self, job: Job) {
        // The workers only end when the pool is dropped; if they are gone, the job's
        // reply channel closes and the piece is decoded again in order.
        let _ = self.jobs.send(job);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn work(queue: &Mutex<Receiver<Job>>, stop: &AtomicBool) {
    loop {
        let job = {
            let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.recv()
        };
        let Ok(job) = job else {
            return;
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let _ = job.reply.send(decode_piece(&job.piece, stop));
    }
}

/// Decodes the streams of `piece`; whole only if the last one ends at its end.
fn decode_piece(piece: &[u8], stop: &AtomicBool) -> Done {
    let mut out = Vec::new();
    let mut input = piece;
    let mut decoder = Decompress::new(false);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= MAX_OUTPUT || stop.load(Ordering::Relaxed) {
                return Done::Again;
            }
            out.reserve(OUTPUT_STEP);
        }
        let (before_in, before_out) = (decoder.total_in(), decoder.total_out());
        let Ok(status) = decoder.decompress_vec(input, &mut out) else {
            return Done::Again;
        };
        let consumed = (decoder.total_in() - before_in) as usize;
        input = &input[consumed..];
        if status == Status::StreamEnd {
            if input.is_empty() {
                return Done::Whole(out);
            }
            decoder = Decompress::new(false);
        } else if consumed == 0 && decoder.total_out() == before_out && out.len() < out.capacity() {
            // Input used up (or refused) inside a stream.
            return Done::Again;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(1));
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("compress")
    }

    fn data(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 9) as u8)
            .collect()
    }

    fn decode_all(input: &[u8], threads: usize, read_size: usize) -> io::Result<Vec<u8>> {
        let input = io::BufReader::with_capacity(4096, Cursor::new(input.to_vec()));
        let mut decoder = Decoder::new(input, threads);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn many_streams_decode_in_order_on_several_threads() {
        let parts: Vec<Vec<u8>> = (1..=12)
            .map(|i| data(i, 50_000 + usize::from(i) * 999))
            .collect();
        let joined: Vec<u8> = parts.iter().flat_map(|p| compress(p)).collect();
        let expected = parts.concat();
        for threads in [1, 2, 3] {
            assert_eq!(
                decode_all(&joined, threads, 7777).expect("decodes"),
                expected
            );
        }
    }

    /// A decoder whose first pieces are cut at `cuts` (as a stream start pattern inside
    /// compressed data would cut them), the rest left to the splitter.
    fn with_cuts(input: &'static [u8], cuts: &[usize]) -> Decoder<&'static [u8]> {
        let mut parallel = Parallel {
            splitter: Splitter::new(&input[*cuts.last().expect("a cut")..]),
            pending: VecDeque::new(),
            in_flight: 4,
            pool: Pool::new(2).expect("threads"),
            out: Vec::new(),
            pos: 0,
        };
        let mut from = 0;
        for &cut in cuts {
            parallel.submit(input[from..cut].to_vec());
            from = cut;
        }
        Decoder {
            state: State::Parallel(Box::new(parallel)),
        }
    }

    fn read_all(mut decoder: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_cut_inside_a_stream_is_merged_with_what_follows() {
        let parts = [data(1, 30_000), data(2, 30_000), data(3, 30_000)];
        let streams: Vec<Vec<u8>> = parts.iter().map(|p| compress(p)).collect();
        let joined: &'static [u8] = streams.concat().leak();
        let (a, b) = (streams[0].len(), streams[1].len());
        let expected = parts.concat();
        // Inside the first stream; inside the second; at a real start then inside.
        for cuts in [
            vec![a / 2],
            vec![a, a + b / 3],
            vec![a / 3, a, a + 7, a + b],
        ] {
            let got = read_all(with_cuts(joined, &cuts)).expect("decodes");
            assert!(got == expected, "cuts {cuts:?}: wrong output");
        }
    }

    #[test]
    fn a_cut_stream_is_an_error_as_in_one_thread() {
        let joined = [compress(&data(1, 40_000)), compress(&data(2, 40_000))].concat();
        let cut = &joined[..joined.len() - 3];
        let parallel = decode_all(cut, 2, 4096).expect_err("cut");
        let one = decode_all(cut, 1, 4096).expect_err("cut");
        assert_eq!(parallel.kind(), one.kind());
        assert_eq!(parallel.to_string(), one.to_string());
    }

    #[test]
    fn a_corrupt_stream_is_an_error_as_in_one_thread() {
        let mut joined = [compress(&data(1, 40_000)), compress(&data(2, 40_000))].concat();
        let middle = joined.len() / 4;
        joined[middle] ^= 0x55;
        let parallel = decode_all(&joined, 2, 4096).expect_err("corrupt");
        let one = decode_all(&joined, 1, 4096).expect_err("corrupt");
        assert_eq!(parallel.to_string(), one.to_string());
    }

    #[test]
    fn a_stream_that_expands_past_the_cap_is_decoded_in_order() {
        let zeros = vec![0u8; MAX_OUTPUT + 12345];
        let joined = [
            compress(&data(4, 1000)),
            compress(&zeros),
            compress(&data(6, 1000)),
        ]
        .concat();
        let expected = [data(4, 1000), zeros, data(6, 1000)].concat();
        assert_eq!(decode_all(&joined, 2, 1 << 20).expect("decodes"), expected);
    }

    #[test]
    fn an_empty_stream_between_two_is_decoded() {
        let joined = [
            compress(&data(1, 5000)),
            compress(b""),
            compress(&data(2, 5000)),
        ]
        .concat();
        let expected = [data(1, 5000), data(2, 5000)].concat();
        assert_eq!(decode_all(&joined, 2, 4096).expect("decodes"), expected);
    }
}
