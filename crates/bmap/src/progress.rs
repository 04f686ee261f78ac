//! Progress of a copy, as events the caller renders (a terminal bar, log lines, a
//! psplash pipe). The engine calls these from its writer thread; keep them cheap.

/// Receives progress events.
pub trait Progress: Send + Sync {
    /// `bytes` more image bytes reached the destination.
    fn written(&self, bytes: u64) {
        let _ = bytes;
    }

    /// All data is written; the destination is being synchronized (can take long for
    /// slow media).
    fn syncing(&self) {}
}

/// Ignores all events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
