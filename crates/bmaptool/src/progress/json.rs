//! `--progress json` and `--progress-fd N`: a copy's (or a check's) events as JSON
//! Lines (docs/json.md, "Progress lines"): a `start` object, `progress` objects (at
//! most a few a second, the last one always), one `range` object per finished range,
//! then always a `result` object, on success, failure or interruption. Per-destination
//! facts carry `dest`, an index into the `start` and `result` objects' `destinations`;
//! facts shared by every destination (the checking phase) have `dest: null`.
//!
//! The lines go to stderr (then the human messages become `message` objects, so that
//! stderr holds nothing but JSON Lines) or to a descriptor the caller opened. Both the
//! rendering thread (events) and the command (start, result) write through one
//! [`JsonLines`]; nothing is written after the result.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use bmap::copy::{DestEvent, Event, Phase, RangeOutcome, RangeResult};
use serde::Serialize;

use super::lines;

/// Least time between two `progress` objects of one phase.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where the JSON lines go, shared by the rendering thread and the command.
#[derive(Clone)]
pub struct JsonLines(Arc<Mutex<Inner>>);

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonLines")
    }
}

struct Inner {
    out: Box<dyn Write + Send>,
    /// The result was written (or the reader went away): nothing more is.
    closed: bool,
    command: &'static str,
    begun: Instant,
    phase: Option<Phase>,
    /// When the current phase began (the rate is bytes over the writing phase's time).
    writing_since: Option<Instant>,
    total: Option<u64>,
    dests: Vec<Tally>,
}

/// What one destination received.
#[derive(Debug, Default, Clone)]
struct Tally {
    bytes_done: u64,
    ranges_written: u64,
    ranges_verified: u64,
    ranges_mismatched: u64,
    ranges_failed: u64,
    bytes_verified: u64,
    seconds: Option<f64>,
    /// When its last `progress` object was written.
    last_line: Option<Instant>,
    /// Bytes were counted since its last `progress` object.
    pending: bool,
}

impl Tally {
    /// Counts a finished range.
    fn count(&mut self, outcome: &RangeOutcome, len: u64) {
        match &outcome.result {
            RangeResult::Written => self.ranges_written += 1,
            RangeResult::Verified(_) => {
                self.ranges_written += 1;
                self.ranges_verified += 1;
                self.bytes_verified += len;
            }
            RangeResult::Mismatched { .. } => self.ranges_mismatched += 1,
            RangeResult::WriteFailed { .. } => self.ranges_failed += 1,
        }
    }
}

/// Facts about one destination that only the command knows, for the result.
#[derive(Debug, Clone, Default)]
pub struct DestFacts {
    /// DEST as given.
    pub path: String,
    /// Bytes read back (`--verify-written`), `None` when not asked.
    pub bytes_read_back: Option<u64>,
    /// Bytes found unchanged and not written (`--skip-unchanged`), `None` when not asked.
    pub bytes_skipped: Option<u64>,
    /// This destination's own failure (code, message), when the others may have
    /// succeeded; `None`: the run's error, if any, is its error.
    pub error: Option<(&'static str, String)>,
    /// What the destination took, as the copy to several counted it (`None`: as the
    /// events counted it).
    pub took: Option<Took>,
}

/// What one destination of a copy to several took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Took {
    /// Ranges it took to their end.
    pub ranges: u64,
    /// Of those, the ranges verified.
    pub ranges_verified: u64,
    /// Image bytes it took.
    pub bytes: u64,
    /// Seconds from the start of the copy until it finished or failed.
    pub seconds: f64,
}

/// The run's outcome, for the result.
#[derive(Debug, Default)]
pub struct Facts {
    /// The image as given (`None` for `verify`).
    pub image: Option<String>,
    /// The image's size, when known.
    pub image_size: Option<u64>,
    /// The `bmap` object, once the bmap is trusted.
    pub bmap: Option<crate::cmd::json::Bmap>,
    /// The destinations, in the order of their indexes.
    pub destinations: Vec<DestFacts>,
}

impl JsonLines {
    /// Lines to stderr.
    pub fn stderr(command: &'static str) -> JsonLines {
        JsonLines::new(Box::new(std::io::stderr()), command)
    }

    /// Lines to descriptor `fd`, which must be open for writing.
    pub fn fd(fd: i32, command: &'static str) -> Result<JsonLines> {
        Ok(JsonLines::new(
            Box::new(super::options::open_fd(fd)?),
            command,
        ))
    }

    fn new(out: Box<dyn Write + Send>, command: &'static str) -> JsonLines {
        JsonLines(Arc::new(Mutex::new(Inner {
            out,
            closed: false,
            command,
            begun: Instant::now(),
            phase: None,
            writing_since: None,
            total: None,
            dests: vec![Tally::default()],
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `start` object: what is copied where, with which bmap.
    pub fn start(&self, facts: &Facts, total: Option<u64>) {
        let mut inner = self.lock();
        inner.total = total;
        inner.dests = vec![Tally::default(); facts.destinations.len().max(1)];
        let line = lines::Start {
            kind: "start",
            command: inner.command,
            image: facts.image.as_deref(),
            image_size: facts.image_size,
            destinations: facts.destinations.iter().map(|d| d.path.as_str()).collect(),
            bmap: facts.bmap.as_ref(),
            bytes_total: total,
        };
        inner.write(&line);
    }

    /// A human message, as a `message` object (when the lines are on stderr).
    pub fn message(&self, level: &str, text: &str) {
        let line = lines::Message {
            kind: "message",
            level,
            message: text,
        };
        self.lock().write(&line);
    }

    /// Takes one engine event.
    pub fn event(&self, event: &Event) {
        let mut inner = self.lock();
        match event {
            Event::Phase(phase) => inner.phase(*phase),
            // With several destinations, the bytes each took come as `Dest` events.
            Event::Written(bytes) if !inner.several() => inner.written(0, *bytes),
            Event::Dest {
                dest,
                event: DestEvent::Written(bytes),
            } => inner.written(*dest, *bytes),
            Event::Dest {
                dest,
                event: DestEvent::Finished | DestEvent::Failed(_),
            } => {
                let seconds = inner
                    .writing_since
                    .map(|since| since.elapsed().as_secs_f64());
                inner.tally(*dest).seconds = seconds;
            }
            // A verdict on the image read once, with several destinations.
            Event::Range(outcome) if inner.several() => inner.range(None, outcome),
            Event::Range(outcome) => inner.range(Some(0), outcome),
            Event::Finished(outcome) if !inner.several() => {
                inner.tally(0).seconds = Some(outcome.timings.copying().as_secs_f64());
            }
            _ => {}
        }
    }

    /// The `result` object, the last line: `error` is the failure, if any.
    pub fn result(&self, facts: &Facts, error: Option<(&'static str, String)>) {
        let mut inner = self.lock();
        inner.flush();
        let error = error.map(|(code, message)| lines::Error { code, message });
        let ok = error.is_none();
        let destinations = facts
            .destinations
            .iter()
            .enumerate()
            .map(|(index, facts)| inner.dest_result(index, facts, error.as_ref()))
            .collect();
        let line = lines::Outcome {
            kind: "result",
            command: inner.command,
            ok,
            error,
            image: facts.image.as_deref(),
            image_size: facts.image_size,
            bmap: facts.bmap.as_ref(),
            seconds: inner.begun.elapsed().as_secs_f64(),
            destinations,
        };
        inner.write(&line);
        inner.closed = true;
    }
}

impl Inner {
    fn write(&mut self, line: &impl Serialize) {
        if self.closed {
            return;
        }
        let Ok(mut text) = serde_json::to_string(line) else {
            return;
        };
        text.push('\n');
        if self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .is_err()
        {
            // A reader that went away does not stop the copy.
            self.closed = true;
        }
    }

    /// A copy to several destinations (their bytes come as `Dest` events).
    fn several(&self) -> bool {
        self.dests.len() > 1
    }

    fn written(&mut self, dest: usize, bytes: u64) {
        let tally = self.tally(dest);
        tally.bytes_done += bytes;
        tally.pending = true;
        let due = tally
            .last_line
            .is_none_or(|last| last.elapsed() >= PROGRESS_EVERY);
        if due {
            self.progress_line(Some(dest));
        }
    }

    /// The last count of every destination that has one not written yet.
    fn flush(&mut self) {
        for dest in 0..self.dests.len() {
            if self.dests[dest].pending {
                self.progress_line(Some(dest));
            }
        }
    }

    fn tally(&mut self, dest: usize) -> &mut Tally {
        if self.dests.len() <= dest {
            self.dests.resize(dest + 1, Tally::default());
        }
        &mut self.dests[dest]
    }

    fn phase(&mut self, phase: Phase) {
        self.flush();
        self.phase = Some(phase);
        if phase == Phase::Writing {
            self.writing_since = Some(Instant::now());
        }
        match phase {
            // Shared by every destination.
            Phase::Checking => self.progress_line(None),
            Phase::Done => {}
            _ => {
                for dest in 0..self.dests.len() {
                    self.progress_line(Some(dest));
                }
            }
        }
    }

    /// A `progress` object for `dest` (`None`: the shared part).
    fn progress_line(&mut self, dest: Option<usize>) {
        let done = dest.map_or(0, |d| {
            let tally = self.tally(d);
            tally.last_line = Some(Instant::now());
            tally.pending = false;
            tally.bytes_done
        });
        let seconds = self.begun.elapsed().as_secs_f64();
        let rate = self.writing_since.map_or(0.0, |since| {
            done as f64 / since.elapsed().as_secs_f64().max(1e-3)
        });
        let line = lines::Progress {
            kind: "progress",
            phase: self.phase.map(|p| phase_name(self.command, p)),
            dest,
            bytes_done: done,
            bytes_total: self.total,
            rate: rate.round() as u64,
            seconds,
        };
        self.write(&line);
    }

    /// A `range` line; `dest` is `None` for a verdict on the image read once for
    /// every destination (it counts for each).
    fn range(&mut self, dest: Option<usize>, outcome: &RangeOutcome) {
        let len = outcome.end.saturating_sub(outcome.start);
        match dest {
            Some(dest) => self.tally(dest).count(outcome, len),
            None => self.dests.iter_mut().for_each(|t| t.count(outcome, len)),
        }
        let (verdict, digest, expected) = match &outcome.result {
            RangeResult::Written => ("written", None, None),
            RangeResult::Verified(digest) => ("verified", Some(digest.to_hex()), None),
            RangeResult::Mismatched { expected, actual } => {
                ("mismatched", Some(actual.to_hex()), Some(expected.to_hex()))
            }
            RangeResult::WriteFailed { .. } => ("write-failed", None, None),
        };
        let line = lines::Range {
            kind: "range",
            dest,
            index: outcome.index,
            verdict,
            first_block: outcome.first_block,
            last_block: outcome.last_block,
            start: outcome.start,
            end: outcome.end,
            digest,
            expected,
        };
        self.write(&line);
    }

    /// A destination's part of the result: its own error if it has one, else the
    /// run's (unless the run failed only because other destinations did).
    fn dest_result<'a>(
        &self,
        index: usize,
        facts: &'a DestFacts,
        error: Option<&lines::Error>,
    ) -> lines::DestOutcome<'a> {
        let mut tally = self.dests.get(index).cloned().unwrap_or_default();
        if let Some(took) = facts.took {
            tally.ranges_written = took.ranges;
            tally.ranges_verified = took.ranges_verified;
            tally.bytes_done = took.bytes;
            tally.seconds = Some(took.seconds);
        }
        let bytes_written = if self.command == "verify" {
            0
        } else {
            tally
                .bytes_done
                .saturating_sub(facts.bytes_skipped.unwrap_or(0))
        };
        let seconds = tally.seconds.unwrap_or_else(|| {
            self.writing_since
                .map_or(0.0, |since| since.elapsed().as_secs_f64())
        });
        // A run that failed because some destinations did is no failure of the others.
        let shared = error.filter(|e| e.code != "dest-failed");
        let error = facts
            .error
            .clone()
            .map(|(code, message)| lines::Error { code, message })
            .or_else(|| shared.cloned());
        lines::DestOutcome {
            path: &facts.path,
            ok: error.is_none(),
            error,
            ranges_written: tally.ranges_written,
            ranges_verified: tally.ranges_verified,
            ranges_mismatched: tally.ranges_mismatched,
            ranges_failed: tally.ranges_failed,
            bytes_written,
            bytes_verified: tally.bytes_verified,
            bytes_read_back: facts.bytes_read_back,
            bytes_skipped: facts.bytes_skipped,
            seconds,
        }
    }
}

/// The phase's word: the engine's phase, with `verify`'s reading called `verifying`.
fn phase_name(command: &str, phase: Phase) -> &'static str {
    match phase {
        Phase::Checking => "checking",
        Phase::Writing if command == "verify" => "verifying",
        Phase::Writing => "writing",
        Phase::Syncing => "syncing",
        Phase::Done => "done",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_are_the_documented_words() {
        assert_eq!(phase_name("copy", Phase::Writing), "writing");
        assert_eq!(phase_name("verify", Phase::Writing), "verifying");
        assert_eq!(phase_name("copy", Phase::Syncing), "syncing");
    }

    /// A buffer the lines go to, readable while the renderer holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn progress_lines_are_rate_limited_and_the_last_count_is_always_written() {
        let out = Shared::default();
        let lines = JsonLines::new(Box::new(out.clone()), "copy");
        let facts = Facts {
            destinations: vec![DestFacts::default()],
            ..Facts::default()
        };
        lines.start(&facts, Some(10_000));
        lines.event(&Event::Phase(Phase::Writing));
        for _ in 0..10_000 {
            lines.event(&Event::Written(1));
        }
        lines.result(&facts, None);
        lines.message("info", "after the result");
        let text = String::from_utf8(out.0.lock().expect("buffer").clone()).expect("UTF-8");
        let all: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        let progress: Vec<_> = all.iter().filter(|l| l["type"] == "progress").collect();
        // One when writing begins, one for the first bytes, the last count; at most a
        // few more however long the loop took.
        let seconds = all.last().expect("lines")["seconds"]
            .as_f64()
            .expect("seconds");
        let allowed = 3 + (seconds / PROGRESS_EVERY.as_secs_f64()).ceil() as usize;
        assert!(
            progress.len() <= allowed,
            "{} progress lines",
            progress.len()
        );
        assert_eq!(progress.last().expect("progress")["bytes_done"], 10_000);
        assert_eq!(all.last().expect("lines")["type"], "result");
    }
}
