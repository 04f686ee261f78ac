//! What a copy tells its caller while it runs: typed [`Event`]s pushed to an [`Events`]
//! sink the caller owns (as ripgrep's searcher reports to a `Sink`), and the final
//! [`Outcome`] with per-range results and the time of each phase. The engine formats
//! no text; the caller renders the events (a bar, log lines, a psplash pipe) or keeps
//! them.

use std::time::Duration;

use super::Span;
use crate::format::Digest;

/// The phases of a copy, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Checking the image and its bmap against each other (sizes, declared sizes).
    /// Those checks ran in [`super::Plan::new`] (their time is in
    /// [`Timings::checking`]); the phase is announced first so that every copy's
    /// events start the same way.
    Checking,
    /// Reading, verifying and writing the mapped ranges.
    Writing,
    /// All data is handed to the destination; it is being synchronized (long on slow
    /// media).
    Syncing,
    /// The copy succeeded.
    Done,
}

/// What happened to one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeResult {
    /// Written without a check (no digest in the bmap, verification off, or no bmap).
    Written,
    /// Written, and its bytes hash to the bmap's digest.
    Verified(Digest),
    /// Its bytes do not hash to the bmap's digest; the copy stops (unless
    /// [`super::Options::stop_at_mismatch`] is off).
    Mismatched {
        /// The digest in the bmap.
        expected: Digest,
        /// The digest of the bytes read.
        actual: Digest,
    },
    /// Writing it failed at `offset`; the copy stops.
    WriteFailed {
        /// The image offset of the chunk that failed.
        offset: u64,
    },
}

/// One range and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeOutcome {
    /// Index of the range in the bmap (0 for a copy without a bmap).
    pub index: usize,
    /// First block.
    pub first_block: u64,
    /// Last block.
    pub last_block: u64,
    /// First byte offset.
    pub start: u64,
    /// Byte offset just past the range (as far as it was read for a stream of
    /// unknown length).
    pub end: u64,
    /// What happened.
    pub result: RangeResult,
}

impl RangeOutcome {
    pub(super) fn new(span: &Span, end: u64, result: RangeResult) -> RangeOutcome {
        RangeOutcome {
            index: span.index,
            first_block: span.first_block,
            last_block: span.last_block,
            start: span.start,
            end,
            result,
        }
    }
}

/// Time spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Checking the image and the bmap ([`super::Plan::new`]).
    pub checking: Duration,
    /// Reading, verifying and writing.
    pub writing: Duration,
    /// The final synchronization of the destination.
    pub syncing: Duration,
}

impl Timings {
    /// Writing and syncing: the time the data took to reach the destination.
    pub fn copying(&self) -> Duration {
        self.writing + self.syncing
    }
}

/// Facts about a finished copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Size of the image in bytes (learned while reading when it was not known).
    pub image_size: u64,
    /// Image bytes read from the source (holes read through on a stream included).
    pub bytes_read: u64,
    /// Image bytes written to the destination.
    pub bytes_written: u64,
    /// Ranges whose digest was checked and matched.
    pub ranges_verified: u64,
    /// Ranges copied without a check (no digest in the bmap, or `verify` off).
    pub ranges_unverified: u64,
    /// Every range, in the order they were finished.
    pub ranges: Vec<RangeOutcome>,
    /// Time of each phase.
    pub timings: Timings,
}

/// Something that happened during a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new phase began.
    Phase(Phase),
    /// `bytes` more image bytes were read from the source.
    Read(u64),
    /// `bytes` more image bytes reached the destination.
    Written(u64),
    /// A range is finished (or failed).
    Range(RangeOutcome),
    /// The copy succeeded: the last event.
    Finished(Box<Outcome>),
    /// Something happened to one destination of a copy to several (a
    /// [`super::Fanout`]); a copy to one destination never reports it.
    Dest {
        /// The destination's index, in the order its sink was given to the fan-out.
        dest: usize,
        /// What happened to it.
        event: DestEvent,
    },
}

/// What happened to one destination of a copy to several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestEvent {
    /// `bytes` more image bytes reached this destination.
    Written(u64),
    /// The destination is finished (synced): it holds the image.
    Finished,
    /// The destination failed (or was dropped by the lag rule) with this error
    /// message; the others go on.
    Failed(String),
}

/// Receives a copy's events, all on the thread that runs the copy; keep it cheap (hand
/// the events to another thread to render them).
pub trait Events {
    /// Takes one event.
    fn event(&mut self, event: Event);
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn event(&mut self, _event: Event) {}
}

impl Events for Vec<Event> {
    fn event(&mut self, event: Event) {
        self.push(event);
    }
}

impl Events for std::sync::mpsc::Sender<Event> {
    fn event(&mut self, event: Event) {
        // A renderer that has gone away does not stop the copy.
        let _ = self.send(event);
    }
}
