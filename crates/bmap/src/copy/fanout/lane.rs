//! One destination of a [`super::Fanout`]: a bounded queue of commands (a chunk's
//! bytes are shared, by reference counting, with the other destinations' queues), the
//! writer thread that hands them to the destination's sink, and what it did so far.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::super::{Error, RangeSink, Span, Verdict};
use crate::dest::AlignedBuf;

/// How often a waiting producer looks at the interrupt flag and the lag rule.
const POLL: Duration = Duration::from_millis(50);

/// Bytes of one chunk, copied once out of the pipeline's buffer and shared by every
/// destination's queue; the buffer goes back to the pool when the last one is done.
pub(super) struct Block {
    buf: Option<AlignedBuf>,
    start: usize,
    len: usize,
    pool: Arc<Pool>,
}

impl Block {
    /// The chunk's bytes.
    pub(super) fn data(&self) -> &[u8] {
        let buf = self
            .buf
            .as_ref()
            .expect("a block keeps its buffer until dropped");
        &buf[self.start..self.start + self.len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.put(buf);
        }
    }
}

/// Buffers given back by finished blocks, kept for the next chunks (at most `keep`).
pub(super) struct Pool {
    free: Mutex<Vec<AlignedBuf>>,
    keep: usize,
}

impl Pool {
    pub(super) fn new(keep: usize) -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    fn put(&self, buf: AlignedBuf) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }

    /// A copy of `data`, placed at `offset % align` in an aligned buffer (as the
    /// pipeline places it, so that whole aligned blocks can be written directly).
    pub(super) fn block(self: &Arc<Pool>, data: &[u8], offset: u64, align: usize) -> Block {
        let start = (offset % align as u64) as usize;
        let need = start + data.len();
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.pop()
        };
        let mut buf = match reused {
            Some(buf) if buf.len() >= need && buf.align() >= align => buf,
            _ => AlignedBuf::new(need.max(super::BLOCK), align),
        };
        buf[start..need].copy_from_slice(data);
        Block {
            buf: Some(buf),
            start,
            len: data.len(),
            pool: Arc::clone(self),
        }
    }
}

/// What a destination's writer thread is asked to do, in order.
pub(super) enum Command {
    Begin(Span),
    Chunk(Arc<Block>, u64),
    End(Span, Verdict),
    Flush,
    Finish(u64),
}

/// The queue and what the writer thread did, under one lock.
pub(super) struct State {
    queue: VecDeque<Command>,
    queued_bytes: u64,
    /// Image bytes the destination's sink took.
    pub(super) written: u64,
    /// Ranges the sink ended, and those of them verified.
    pub(super) ranges: u64,
    pub(super) verified: u64,
    flushes_asked: u64,
    flushes_done: u64,
    /// When the sink last finished a command, or work came to an empty queue.
    last_progress: Instant,
    /// Why the destination failed (its sink's error, or the lag rule).
    pub(super) error: Option<Error>,
    /// The writer thread must stop: the destination failed or was dropped.
    stop: bool,
    /// The sink finished: the destination holds the image.
    pub(super) finished: bool,
    /// When the sink finished or failed.
    pub(super) ended: Option<Instant>,
}

/// One destination's queue, shared by the producer (the copy's thread) and its writer.
pub(super) struct Lane {
    state: Mutex<State>,
    changed: Condvar,
    /// Bytes the queue may hold (a chunk is always accepted by an empty queue).
    capacity: u64,
}

/// The lag rule, as a waiting producer applies it to one destination.
pub(super) struct Lag<'a> {
    pub(super) max: Duration,
    /// The most bytes any other destination took so far (it locks only the others).
    pub(super) fastest: &'a dyn Fn() -> u64,
}

impl Lane {
    pub(super) fn new(capacity: u64) -> Lane {
        Lane {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                written: 0,
                ranges: 0,
                verified: 0,
                flushes_asked: 0,
                flushes_done: 0,
                last_progress: Instant::now(),
                error: None,
                stop: false,
                finished: false,
                ended: None,
            }),
            changed: Condvar::new(),
            capacity,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the destination failed with `error` (its first error is kept) and stops
    /// its writer; what it had queued is freed.
    pub(super) fn fail(&self, error: Error) {
        let mut state = self.lock();
        fail_locked(&mut state, error);
        self.changed.notify_all();
    }

    /// Queues `command` (of `bytes` image bytes), waiting while the queue is full. A
    /// destination that takes nothing for `lag.max` while the queue is full is failed
    /// with [`Error::Lagging`]; one that failed takes nothing more. Only an interrupt
    /// is an error here.
    pub(super) fn push(
        &self,
        command: Command,
        bytes: u64,
        lag: &Lag<'_>,
        interrupt: Option<&crate::Interrupt>,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        loop {
            if state.stop {
                return Ok(());
            }
            if state.queued_bytes == 0 || state.queued_bytes + bytes <= self.capacity {
                if matches!(command, Command::Flush) {
                    state.flushes_asked += 1;
                }
                if state.queue.is_empty() {
                    // The clock of the lag rule runs only while the destination has
                    // work waiting: time spent idle, waiting for the image, is not lag.
                    state.last_progress = Instant::now();
                }
                state.queue.push_back(command);
                state.queued_bytes += bytes;
                self.changed.notify_all();
                return Ok(());
            }
            if interrupt.is_some_and(crate::Interrupt::is_raised) {
                return Err(Error::Interrupted);
            }
            let idle = state.last_progress.elapsed();
            if idle >= lag.max {
                let behind = (lag.fastest)().saturating_sub(state.written);
                fail_locked(&mut state, Error::Lagging { idle, behind });
                self.changed.notify_all();
                return Ok(());
            }
            state = self.wait(state);
        }
    }

    /// Waits until every flush asked for is done, or the destination failed.
    pub(super) fn wait_flushed(&self, interrupt: Option<&crate::Interrupt>) -> Result<(), Error> {
        let mut state = self.lock();
        while !state.stop && state.flushes_done < state.flushes_asked {
            if interrupt.is_some_and(crate::Interrupt::is_raised) {
                return Err(Error::Interrupted);
            }
            state = self.wait(state);
        }
        Ok(())
    }

    /// Waits until the destination finished or failed.
    pub(super) fn wait_ended(&self, interrupt: Option<&crate::Interrupt>) -> Result<(), Error> {
        let mut state = self.lock();
        while !state.stop && !state.finished {
            if interrupt.is_some_and(crate::Interrupt::is_raised) {
                return Err(Error::Interrupted);
            }
            state = self.wait(state);
        }
        Ok(())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(state, POLL)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// The next command for the writer; `None` once it must stop.
    fn next(&self) -> Option<Command> {
        let mut state = self.lock();
        loop {
            if state.stop {
                return None;
            }
            if let Some(command) = state.queue.pop_front() {
                if let Command::Chunk(block, _) = &command {
                    state.queued_bytes -= block.len as u64;
                }
                self.changed.notify_all();
                return Some(command);
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn fail_locked(state: &mut State, error: Error) {
    if state.error.is_none() && !state.finished {
        state.error = Some(error);
        state.ended = Some(Instant::now());
    }
    state.stop = true;
    state.queue.clear();
    state.queued_bytes = 0;
}

/// The writer thread of one destination: takes its commands in order until the sink
/// finished or failed. Returns the sink once finished; a sink that failed (or whose
/// destination was dropped) is dropped here, which undoes what it can (a file it
/// created is removed).
pub(super) fn write<S: RangeSink>(mut sink: S, lane: &Lane) -> Option<S> {
    while let Some(command) = lane.next() {
        let (result, bytes) = match &command {
            Command::Begin(span) => (sink.begin(span), 0),
            Command::Chunk(block, offset) => (sink.chunk(block.data(), *offset), block.len),
            Command::End(span, verdict) => (sink.end(span, verdict), 0),
            Command::Flush => (sink.flush(), 0),
            Command::Finish(size) => (sink.finish(*size), 0),
        };
        // The chunk's buffer goes back to the pool before the lock is taken.
        let kind = Kind::of(command);
        let mut state = lane.lock();
        state.last_progress = Instant::now();
        if let Err(error) = result {
            fail_locked(&mut state, error);
            lane.changed.notify_all();
            return None;
        }
        state.written += bytes as u64;
        match kind {
            Kind::End(verified) => {
                state.ranges += 1;
                state.verified += u64::from(verified);
            }
            Kind::Flush => state.flushes_done += 1,
            Kind::Finish => {
                state.finished = true;
                state.ended = Some(Instant::now());
            }
            Kind::Other => {}
        }
        lane.changed.notify_all();
        if state.finished {
            return Some(sink);
        }
    }
    None
}

/// What a finished command changes besides the bytes.
enum Kind {
    Other,
    End(bool),
    Flush,
    Finish,
}

impl Kind {
    fn of(command: Command) -> Kind {
        match command {
            Command::End(_, Verdict::Verified(_)) => Kind::End(true),
            Command::End(..) => Kind::End(false),
            Command::Flush => Kind::Flush,
            Command::Finish(_) => Kind::Finish,
            Command::Begin(_) | Command::Chunk(..) => Kind::Other,
        }
    }
}
