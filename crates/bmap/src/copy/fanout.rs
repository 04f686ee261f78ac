//! One copy to several destinations: [`Fanout`] is a [`RangeSink`] that hands every
//! range to N sinks (one per destination, usually the same chain that a copy to one
//! destination uses), each on a writer thread of its own behind a bounded queue. The
//! image is read, decoded and verified once.
//!
//! ```text
//!   pipeline ──chunk──> Fanout ──copy once, shared by reference──┬─> queue 0 ─> writer 0 ─> sink 0
//!                                                                ├─> queue 1 ─> writer 1 ─> sink 1
//!                                                                └─> ...
//! ```
//!
//! **Memory.** Each chunk is copied once out of the pipeline's buffer (which is
//! recycled when [`RangeSink::chunk`] returns) and shared by every queue; a queue
//! holds at most [`QUEUE_BYTES`] (64 MiB) of chunks. A chunk lives until the slowest
//! destination took it, so the fan-out holds at most one queue's worth plus the chunk
//! each writer is busy with (1 MiB each) whatever happens: a destination that fails
//! or is dropped frees its queue at once.
//!
//! **Failures.** A destination whose sink fails (a write error, a read-back mismatch,
//! a device removed) is marked failed with its error, its sink is dropped (which
//! removes a file it created) and the others go on. The copy fails only when every
//! destination failed ([`Error::NoDestinationLeft`]).
//!
//! **The lag rule.** The copy goes at the pace of the slowest destination that still
//! takes data: when a destination's queue is full, the copy waits for it. A destination
//! that takes no data at all for [`Fanout::max_lag`] (default [`MAX_LAG`], 30 s)
//! while the copy waits for it is dropped: marked failed with [`Error::Lagging`], which
//! says how long it took nothing and how many bytes it was behind the fastest one; the
//! others go on. (A write stuck in the kernel cannot be taken back: the dropped
//! destination's thread ends when that write returns.) The final synchronisation
//! ([`RangeSink::finish`]) of every destination is waited for, however long it takes.
//!
//! **Events.** The shared part of the copy reports its events as usual (bytes read,
//! each range verified, `Written` counting the bytes handed to the fan-out); each
//! destination's own progress comes as [`Event::Dest`] with its index in the order the
//! sinks were given: bytes it wrote, and once it finished or failed.
//!
//! A destination that fails does not stop the others:
//!
//! ```
//! use std::fs::File;
//! use std::time::Duration;
//! use bmap::{copy, create, dest::Dest, source::Image};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("disk.img");
//! let image = File::create(&path)?;
//! image.set_len(1 << 20)?;
//! std::os::unix::fs::FileExt::write_all_at(&image, &[7; 4096], 64 << 10)?;
//! let bmap = create::create(&File::open(&path)?, &create::Options::default())?.bmap;
//! let plan = copy::Plan::new(Image::open(&path)?, Some(bmap), None)?;
//!
//! let good = Dest::open(&dir.path().join("good.img"), &plan.dest_options(false))?;
//! // The full device takes no byte: writing to it fails.
//! let full = Dest::open(std::path::Path::new("/dev/full"), &plan.dest_options(false))?;
//! let sinks = vec![copy::DestWriter::new(good), copy::DestWriter::new(full)];
//! let mut fanout = copy::Fanout::new(sinks).max_lag(Duration::from_secs(10));
//! let (tx, rx) = std::sync::mpsc::channel();
//! plan.run(&mut fanout, &mut tx.clone(), &copy::Options::default())?;
//! let results = fanout.results();
//! assert!(results[0].error.is_none() && results[0].sink.is_some());
//! assert!(results[1].error.is_some() && results[1].sink.is_none());
//! drop(tx);
//! let failed: Vec<_> = rx
//!     .iter()
//!     .filter_map(|e| match e {
//!         copy::Event::Dest { dest, event: copy::DestEvent::Failed(why) } => Some((dest, why)),
//!         _ => None,
//!     })
//!     .collect();
//! assert_eq!(failed.len(), 1);
//! assert_eq!(failed[0].0, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod lane;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::events::{DestEvent, Event, Events};
use super::sink::{RangeSink, Verdict};
use super::{Error, Span};
use crate::Interrupt;
use crate::dest::MIN_ALIGN;
use lane::{Command, Lag, Lane, Pool};

/// Bytes of chunks one destination's queue may hold.
pub const QUEUE_BYTES: u64 = 64 << 20;
/// How long a destination may take no data while the copy waits for it, by default.
pub const MAX_LAG: Duration = Duration::from_secs(30);
/// The size of a shared chunk buffer.
const BLOCK: usize = 1 << 20;

/// What one destination of a [`Fanout`] did.
#[derive(Debug)]
pub struct DestResult<S> {
    /// The destination's sink, once it finished (to ask it what it did: read-back,
    /// skipped bytes, ...); `None` when it failed (it was dropped).
    pub sink: Option<S>,
    /// Image bytes the sink took.
    pub bytes_written: u64,
    /// Ranges the sink took to their end.
    pub ranges: u64,
    /// Of those, the ranges whose digest the copy verified.
    pub ranges_verified: u64,
    /// From the start of the copy until the destination finished or failed.
    pub elapsed: Duration,
    /// Why it failed, if it did.
    pub error: Option<Error>,
}

struct Dest<S> {
    lane: Arc<Lane>,
    thread: Option<JoinHandle<Option<S>>>,
    /// Bytes written reported in events so far, and whether its end was reported.
    reported: u64,
    ended_reported: bool,
}

/// A [`RangeSink`] that writes every range to several sinks in parallel (see the
/// module's documentation for memory, failures and the lag rule).
pub struct Fanout<S: RangeSink + Send + 'static> {
    dests: Vec<Dest<S>>,
    align: usize,
    max_lag: Duration,
    interrupt: Option<Interrupt>,
    pool: Arc<Pool>,
    started: Instant,
}

impl<S: RangeSink + Send + 'static> std::fmt::Debug for Fanout<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("dests", &self.dests.len())
            .field("max_lag", &self.max_lag)
            .finish_non_exhaustive()
    }
}

impl<S: RangeSink + Send + 'static> Fanout<S> {
    /// Starts one writer thread per sink; the index of a sink in `sinks` names its
    /// destination in events and results. A thread that cannot be started fails its
    /// destination with [`Error::Spawn`].
    pub fn new(sinks: Vec<S>) -> Fanout<S> {
        Fanout::with_queue(sinks, QUEUE_BYTES)
    }

    /// As [`Fanout::new`], with queues of `queue_bytes` each (at least one chunk is
    /// always queued).
    pub fn with_queue(sinks: Vec<S>, queue_bytes: u64) -> Fanout<S> {
        let align = sinks
            .iter()
            .map(RangeSink::alignment)
            .fold(MIN_ALIGN, usize::max);
        let dests = sinks
            .into_iter()
            .map(|sink| {
                let lane = Arc::new(Lane::new(queue_bytes));
                let theirs = Arc::clone(&lane);
                let thread = std::thread::Builder::new()
                    .name("bmap-dest".into())
                    .spawn(move || lane::write(sink, &theirs));
                let thread = match thread {
                    Ok(thread) => Some(thread),
                    Err(source) => {
                        lane.fail(Error::Spawn {
                            thread: "bmap-dest",
                            source,
                        });
                        None
                    }
                };
                Dest {
                    lane,
                    thread,
                    reported: 0,
                    ended_reported: false,
                }
            })
            .collect();
        let keep = (queue_bytes as usize / BLOCK + 2).max(4);
        Fanout {
            dests,
            align,
            max_lag: MAX_LAG,
            interrupt: None,
            pool: Arc::new(Pool::new(keep)),
            started: Instant::now(),
        }
    }

    /// Sets how long a destination may take no data while the copy waits for it
    /// before it is dropped (the lag rule).
    pub fn max_lag(mut self, max_lag: Duration) -> Fanout<S> {
        self.max_lag = max_lag;
        self
    }

    /// Watches `interrupt` while waiting for a destination (pass the copy's
    /// [`super::Options::interrupt`]).
    pub fn interrupt(mut self, interrupt: Interrupt) -> Fanout<S> {
        self.interrupt = Some(interrupt);
        self
    }

    /// The number of destinations.
    pub fn len(&self) -> usize {
        self.dests.len()
    }

    /// Whether there are no destinations.
    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }

    /// What each destination did, in the order the sinks were given. Call it after
    /// [`super::Plan::run`]: destinations still running are stopped and failed with
    /// [`Error::Unfinished`] (after a copy that failed).
    pub fn results(mut self) -> Vec<DestResult<S>> {
        let mut results = Vec::with_capacity(self.dests.len());
        for dest in std::mem::take(&mut self.dests) {
            dest.lane.fail(Error::Unfinished);
            // A destination dropped by the lag rule may be stuck in a write: leave it.
            let lagging = matches!(dest.lane.lock().error, Some(Error::Lagging { .. }));
            let sink = match dest.thread {
                Some(thread) if !lagging => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                _ => None,
            };
            let mut state = dest.lane.lock();
            results.push(DestResult {
                sink,
                bytes_written: state.written,
                ranges: state.ranges,
                ranges_verified: state.verified,
                elapsed: state
                    .ended
                    .map_or(self.started.elapsed(), |at| at - self.started),
                error: state.error.take(),
            });
        }
        results
    }

    /// Queues `command` for every live destination; fails when none is left.
    fn send(&self, make: impl Fn() -> Command, bytes: u64) -> Result<(), Error> {
        for (index, dest) in self.dests.iter().enumerate() {
            // Called with this destination's lane locked: only the others are locked.
            let fastest = || {
                self.dests
                    .iter()
                    .enumerate()
                    .filter(|&(other, _)| other != index)
                    .map(|(_, d)| d.lane.lock().written)
                    .max()
                    .unwrap_or(0)
            };
            let lag = Lag {
                max: self.max_lag,
                fastest: &fastest,
            };
            dest.lane
                .push(make(), bytes, &lag, self.interrupt.as_ref())?;
        }
        self.check_live()
    }

    fn check_live(&self) -> Result<(), Error> {
        let live = self.dests.iter().any(|d| {
            let state = d.lane.lock();
            state.error.is_none()
        });
        if live {
            Ok(())
        } else {
            Err(Error::NoDestinationLeft {
                count: self.dests.len(),
            })
        }
    }
}

impl<S: RangeSink + Send + 'static> RangeSink for Fanout<S> {
    fn alignment(&self) -> usize {
        self.align
    }

    fn begin(&mut self, span: &Span) -> Result<(), Error> {
        self.send(|| Command::Begin(span.clone()), 0)
    }

    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
        let block = Arc::new(self.pool.block(data, offset, self.align));
        self.send(
            || Command::Chunk(Arc::clone(&block), offset),
            data.len() as u64,
        )
    }

    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), Error> {
        self.send(|| Command::End(span.clone(), verdict.clone()), 0)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.send(|| Command::Flush, 0)?;
        for dest in &self.dests {
            dest.lane.wait_flushed(self.interrupt.as_ref())?;
        }
        self.check_live()
    }

    fn finish(&mut self, image_size: u64) -> Result<(), Error> {
        self.send(|| Command::Finish(image_size), 0)?;
        for dest in &self.dests {
            dest.lane.wait_ended(self.interrupt.as_ref())?;
        }
        self.check_live()
    }

    fn report(&mut self, events: &mut dyn Events) {
        for (index, dest) in self.dests.iter_mut().enumerate() {
            let state = dest.lane.lock();
            let (written, finished) = (state.written, state.finished);
            let failed = state.error.as_ref().map(chain);
            drop(state);
            if written > dest.reported {
                let bytes = written - dest.reported;
                dest.reported = written;
                events.event(Event::Dest {
                    dest: index,
                    event: DestEvent::Written(bytes),
                });
            }
            if dest.ended_reported {
                continue;
            }
            let event = match (failed, finished) {
                (Some(error), _) => DestEvent::Failed(error),
                (None, true) => DestEvent::Finished,
                (None, false) => continue,
            };
            dest.ended_reported = true;
            events.event(Event::Dest { dest: index, event });
        }
    }
}

/// An error and its causes on one line, joined by ": ".
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl<S: RangeSink + Send + 'static> Drop for Fanout<S> {
    /// Stops every destination still running and waits for its writer (which drops
    /// its sink: a file it created is removed), except one dropped by the lag rule.
    fn drop(&mut self) {
        for dest in &mut self.dests {
            dest.lane.fail(Error::Unfinished);
            let lagging = matches!(dest.lane.lock().error, Some(Error::Lagging { .. }));
            if let Some(thread) = dest.thread.take()
                && !lagging
            {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests;
