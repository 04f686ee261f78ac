//! SIGINT and SIGTERM: instead of dying at once, the process raises the library's
//! [`Interrupt`] flag so that the engine stops at its next chunk, cleans up (removes
//! half-written output, restores settings) and `main` exits with 128 + the signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bmap::Interrupt;
use signal_hook::consts::{SIGINT, SIGTERM};

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
        let signals = Signals {
            interrupt: Interrupt::from_flag(any),
            terminated,
        };
        let watcher = signals.clone();
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || watcher.watch());
        signals
    }

    /// Exits at once when a signal comes while the main thread waits in a blocking
    /// call that holds nothing to clean up (see [`blocking`]); the handlers only set
    /// a flag, so such a call would otherwise never notice.
    fn watch(&self) {
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if self.interrupt.is_raised() && BLOCKING.load(Ordering::SeqCst) {
                crate::messages::error("interrupted, exiting");
                std::process::exit(i32::from(self.exit_status()));
            }
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

static BLOCKING: AtomicBool = AtomicBool::new(false);

/// Runs `call`, which may block indefinitely (opening a FIFO waits for its other end)
/// and leaves nothing to undo if the process exits during it: a signal then ends the
/// process at once instead of waiting for the call to return.
pub fn blocking<T>(call: impl FnOnce() -> T) -> T {
    BLOCKING.store(true, Ordering::SeqCst);
    let result = call();
    BLOCKING.store(false, Ordering::SeqCst);
    result
}
