//! The last stage of the pipeline, on the calling thread: hands each chunk to the
//! [`RangeSink`] between its range's `begin` and `end`, turns what happens into
//! [`Event`]s (bytes read and written, each range's outcome), and recycles the buffers.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};

use super::events::{Event, Events, RangeOutcome, RangeResult};
use super::pipeline::{Chunk, POLL, Shared};
use super::sink::{RangeSink, Verdict};
use super::{Error, Mismatch};
use crate::dest::AlignedBuf;

/// The last stage, on the calling thread: hands each chunk to the sink, reports
/// events, recycles the buffer.
pub(super) struct Writer<'a> {
    pub(super) sink: &'a mut dyn RangeSink,
    pub(super) events: &'a mut dyn Events,
    pub(super) shared: &'a Shared,
    /// Bytes written.
    pub(super) written: u64,
    /// Bytes read reported so far.
    pub(super) read: u64,
    /// Ranges begun and not ended, with the bytes passed so far.
    pub(super) open: Vec<(usize, u64)>,
    /// Ranges ended, in order.
    pub(super) ranges: Vec<RangeOutcome>,
}

impl Writer<'_> {
    pub(super) fn run(&mut self, rx: Receiver<Chunk>, pool: &SyncSender<AlignedBuf>) {
        loop {
            // Wait with a timeout, so that an interrupt is seen even while the reader
            // is blocked on an idle input.
            let chunk = match rx.recv_timeout(POLL) {
                Ok(chunk) => chunk,
                Err(RecvTimeoutError::Timeout) if self.shared.stopped() => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.sink.report(self.events);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if self.shared.stopped() {
                break;
            }
            if let Err(error) = self.take(&chunk) {
                self.shared.fail(error);
                break;
            }
            // Never blocks: the pool has room for every buffer there is.
            let _ = pool.send(chunk.buf);
        }
    }

    fn take(&mut self, chunk: &Chunk) -> Result<(), Error> {
        let span = &self.shared.segments[chunk.segment];
        if chunk.first {
            self.sink.begin(span)?;
            self.open.push((chunk.segment, 0));
        }
        self.report_read();
        if let Some(Verdict::Mismatched { expected, actual }) = &chunk.verdict
            && self.shared.options.stop_at_mismatch
        {
            let outcome = RangeOutcome::new(
                span,
                span.start + span.len.unwrap_or(0),
                RangeResult::Mismatched {
                    expected: *expected,
                    actual: *actual,
                },
            );
            self.events.event(Event::Range(outcome.clone()));
            self.ranges.push(outcome);
            self.sink
                .end(span, chunk.verdict.as_ref().expect("just matched"))?;
            return Err(Error::ChecksumMismatch(Box::new(Mismatch {
                first: span.first_block,
                last: span.last_block,
                start: span.start,
                end: span.start + span.len.unwrap_or(0),
                expected: *expected,
                actual: *actual,
            })));
        }
        if let Err(error) = self.sink.chunk(chunk.data(), chunk.offset) {
            let outcome = RangeOutcome::new(
                span,
                span.start + span.len.unwrap_or(0),
                RangeResult::WriteFailed {
                    offset: chunk.offset,
                },
            );
            self.events.event(Event::Range(outcome.clone()));
            self.ranges.push(outcome);
            return Err(error);
        }
        self.written += chunk.len as u64;
        if let Some(open) = self.open.iter_mut().find(|(i, _)| *i == chunk.segment) {
            open.1 += chunk.len as u64;
        }
        self.events.event(Event::Written(chunk.len as u64));
        self.sink.report(self.events);
        if let Some(verdict) = &chunk.verdict {
            self.end(chunk.segment, verdict)?;
        }
        Ok(())
    }

    /// Ends the open range `segment` with `verdict`.
    fn end(&mut self, segment: usize, verdict: &Verdict) -> Result<(), Error> {
        let Some(at) = self.open.iter().position(|(i, _)| *i == segment) else {
            return Ok(());
        };
        let (_, passed) = self.open.swap_remove(at);
        let span = &self.shared.segments[segment];
        self.sink.end(span, verdict)?;
        let result = match verdict {
            Verdict::Verified(digest) => RangeResult::Verified(*digest),
            Verdict::Mismatched { expected, actual } => RangeResult::Mismatched {
                expected: *expected,
                actual: *actual,
            },
            Verdict::Unverified => RangeResult::Written,
        };
        let outcome = RangeOutcome::new(span, span.start + passed, result);
        self.events.event(Event::Range(outcome.clone()));
        self.ranges.push(outcome);
        Ok(())
    }

    /// Ends the ranges still open when the input ended (a stream of unknown length).
    pub(super) fn close_open(&mut self) -> Result<(), Error> {
        while let Some(&(segment, _)) = self.open.first() {
            self.end(segment, &Verdict::Unverified)?;
        }
        Ok(())
    }

    /// Reports the bytes read since the last report.
    pub(super) fn report_read(&mut self) {
        let read = self.shared.read.load(Ordering::Relaxed);
        if read > self.read {
            self.events.event(Event::Read(read - self.read));
            self.read = read;
        }
    }
}
