//! SIGINT and SIGTERM: instead of dying at once, the process raises the library's
//! [`Interrupt`] flag so that the engine stops at its next chunk, cleans up (removes
//! half-written output, restores settings) and `main` exits with 128 + the signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
