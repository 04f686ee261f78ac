//! SIGINT and SIGTERM: instead of dying at once, the process raises the library's
//! [`Interrupt`] flag so that the engine stops at its next chunk (or its next wait
//! between network attempts), cleans up (removes half-written output, restores
//! settings) and `main` exits with 128 + the signal. Nothing but the main thread ends
//! the process: a call that may block for good runs through [`blocking`], which
//! gives up waiting for it when the flag is raised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmap::Interrupt;
use signal_hook::consts::{SIGINT, SIGTERM};

/// How often [`blocking`] looks at the flag while the call has not returned.
const WATCH: Duration = Duration::from_millis(20);

/// The installed handlers' flags.
#[derive(Debug, Clone)]
pub struct Signals {
    interrupt: Interrupt,
    terminated: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers: SIGINT and SIGTERM raise [`Signals::interrupt`].
    pub fn install() -> Signals {
        let any = Arc::new(AtomicBool::new(false));
        let terminated = Arc::new(AtomicBool::new(false));
        let registered = [
            signal_hook::flag::register(SIGINT, Arc::clone(&any)),
            signal_hook::flag::register(SIGTERM, Arc::clone(&any)),
            signal_hook::flag::register(SIGTERM, Arc::clone(&terminated)),
        ];
        if registered.iter().any(Result::is_err) {
            crate::messages::debug("cannot install the SIGINT/SIGTERM handlers");
        }
        Signals {
            interrupt: Interrupt::from_flag(any),
            terminated,
        }
    }

    /// The flag to hand to the engines.
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// The exit status after an interruption: 130 for SIGINT, 143 for SIGTERM.
    pub fn exit_status(&self) -> u8 {
        if self.terminated.load(Ordering::SeqCst) {
            128 + 15
        } else {
            128 + 2
        }
    }
}

/// A [`blocking`] call that was abandoned because the interrupt flag was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Runs `call`, which may block indefinitely (opening a FIFO waits for its other end,
/// a server may stall) and leaves nothing to undo if it is abandoned, on a thread of
/// its own; returns its result, or [`Interrupted`] as soon as `interrupt` is raised
/// while it still runs. The abandoned call ends with the process, when `main`
/// returns its exit status.
pub fn blocking<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
    interrupt: &Interrupt,
    call: F,
) -> Result<T, Interrupted> {
    // The call stays reachable here, so that it can run on this thread if no other
    // thread can be started.
    let slot = Arc::new(Mutex::new(Some(call)));
    let theirs = Arc::clone(&slot);
    let (done, result) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("blocking".into())
        .spawn(move || {
            let call = theirs.lock().expect("never poisoned").take();
            if let Some(call) = call {
                let _ = done.send(call());
            }
        });
    let handle = match spawned {
        Ok(handle) => handle,
        Err(_) => {
            let call = slot.lock().expect("never poisoned").take();
            return Ok(call.expect("the thread never started")());
        }
    };
    loop {
        if interrupt.is_raised() {
            return Err(Interrupted);
        }
        match result.recv_timeout(WATCH) {
            Ok(value) => return Ok(value),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the call's thread ended without an answer"),
            },
        }
    }
}
