//! Waiting for states, never for time: polls with a generous deadline that only bounds
//! a hang, signals to children a test started, and a guard that kills and reaps one.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms for up to `limit`; whether it became true.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `limit` for a child; `None` if it is still running.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    eventually(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

/// Sends `signal` (a `kill -s` name such as `TERM`) to a child the test started;
/// whether `kill` found it.
pub fn send_signal(child: &Child, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends `signal` to a child the test started; fails the test when `kill` fails.
#[track_caller]
pub fn signal(child: &Child, signal: &str) {
    assert!(
        send_signal(child, signal),
        "kill -s {signal} {} failed",
        child.id()
    );
}

/// A child process killed and reaped when the guard is dropped: a failing test leaves
/// no process behind (SIGKILL ends a stopped one too).
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
