//! Trying again after a failure, for every remote protocol: the count of attempts,
//! the backoff between them (0.5 s, 1 s, 2 s, ... capped at 8 s), and the interrupt
//! flag, watched while waiting so that a stop asked for during a backoff is obeyed at
//! once rather than after the wait (or after all the attempts).

use std::time::{Duration, Instant};

use url::Url;

use super::{Error, redact};
use crate::Interrupt;

/// How often the interrupt flag is looked at during a backoff.
const WATCH: Duration = Duration::from_millis(20);

/// The last failure, the cause of an [`Error::GaveUp`].
pub(super) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why no further attempt is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Every allowed attempt failed.
    Exhausted,
    /// The interrupt flag was raised (before or during the backoff).
    Interrupted,
}

impl Stop {
    /// The error that ends a read of `url` at byte `at` after `attempts`, `last` being
    /// the last failure.
    pub(super) fn error(self, url: &Url, attempts: u32, at: u64, last: Cause) -> Error {
        match self {
            Stop::Exhausted => Error::GaveUp {
                url: redact(url),
                attempts,
                at,
                source: last,
            },
            Stop::Interrupted => Error::Interrupted(redact(url)),
        }
    }
}

/// The retries of one operation (one read, one open).
#[derive(Debug)]
pub(super) struct Retry {
    /// Failures allowed before giving up.
    limit: u32,
    /// Failures so far.
    failures: u32,
    interrupt: Interrupt,
}

impl Retry {
    /// Allows `limit` retries, stopping early when `interrupt` is raised.
    pub(super) fn new(limit: u32, interrupt: &Interrupt) -> Retry {
        Retry {
            limit,
            failures: 0,
            interrupt: interrupt.clone(),
        }
    }

    /// Counts a failure, then either waits the backoff (`Ok`: try again) or says why
    /// not to try again.
    pub(super) fn after_failure(&mut self) -> Result<(), Stop> {
        self.failures += 1;
        if self.failures > self.limit {
            return Err(Stop::Exhausted);
        }
        self.wait(backoff(self.failures))
    }

    /// Attempts made so far (the failures counted).
    pub(super) fn attempts(&self) -> u32 {
        self.failures
    }

    /// Sleeps `delay` in short slices, returning as soon as the flag is raised.
    fn wait(&self, delay: Duration) -> Result<(), Stop> {
        let deadline = Instant::now() + delay;
        loop {
            if self.interrupt.is_raised() {
                return Err(Stop::Interrupted);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(WATCH));
        }
    }
}

/// Backoff before retry number `attempt` (1-based): 0.5 s, 1 s, 2 s, ... capped at 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.saturating_sub(1).min(4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_eight_seconds() {
        let waits: Vec<u64> = (1..=7).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn gives_up_after_the_limit() {
        let mut retry = Retry::new(0, &Interrupt::new());
        assert_eq!(retry.after_failure(), Err(Stop::Exhausted));
        assert_eq!(retry.attempts(), 1);
    }

    #[test]
    fn a_raised_flag_ends_the_backoff_at_once() {
        let interrupt = Interrupt::new();
        let mut retry = Retry::new(100, &interrupt);
        let raiser = interrupt.clone();
        // Raised from another thread while the first backoff (0.5 s) is being waited.
        let waiter = std::thread::spawn(move || retry.after_failure());
        raiser.raise();
        let verdict = waiter.join().expect("no panic");
        assert_eq!(verdict, Err(Stop::Interrupted));
        // With the flag up no wait starts at all.
        let mut again = Retry::new(100, &interrupt);
        assert_eq!(again.after_failure(), Err(Stop::Interrupted));
    }
}
