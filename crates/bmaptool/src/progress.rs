//! Rendering copy progress: a bar on stderr when it is a terminal (bytes written, rate,
//! ETA), otherwise a plain line every few seconds (so short copies stay quiet and logs
//! stay short), nothing with `-q`; and `PROGRESS N` lines to a psplash pipe, as the
//! reference writes them.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bmap::format::human_size;
use bmap::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::messages;

/// Time between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug)]
pub struct Renderer {
    total: Option<u64>,
    written: AtomicU64,
    started: Instant,
    /// When the last plain line was printed, in milliseconds since `started`.
    last_line: AtomicU64,
    last_psplash: AtomicU64,
    bar: Option<ProgressBar>,
    lines: bool,
    psplash: Option<PathBuf>,
}

impl Renderer {
    /// A renderer for `total` bytes (when known). `show` is false with `-q`.
    pub fn new(
        total: Option<u64>,
        show: bool,
        terminal: bool,
        psplash: Option<PathBuf>,
    ) -> Renderer {
        let bar = (show && terminal).then(|| {
            let bar = match total {
                Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "bmaptool: {percent:>3}% [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
            } else {
                "bmaptool: {spinner} {bytes} written, {binary_bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Renderer {
            total,
            written: AtomicU64::new(0),
            started: Instant::now(),
            last_line: AtomicU64::new(0),
            last_psplash: AtomicU64::new(u64::MAX),
            lines: show && !terminal,
            bar,
            psplash: psplash.filter(check_pipe),
        }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn percent(&self, written: u64) -> Option<u64> {
        self.total.map(|total| {
            written
                .saturating_mul(100)
                .checked_div(total)
                .unwrap_or(100)
        })
    }

    fn plain_line(&self, written: u64) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_line.load(Ordering::Relaxed);
        let step = u64::try_from(LINE_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now < last.saturating_add(step)
            || self
                .last_line
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let rate = human_size((written as f64 / (now.max(1) as f64 / 1000.0)) as u64);
        match self.percent(written) {
            Some(percent) => messages::info(format_args!(
                "{percent}% copied ({} of {}, {rate}/sec)",
                human_size(written),
                human_size(self.total.unwrap_or(0))
            )),
            None => messages::info(format_args!("{} copied ({rate}/sec)", human_size(written))),
        }
    }

    fn psplash(&self, written: u64) {
        let (Some(path), Some(percent)) = (&self.psplash, self.percent(written)) else {
            return;
        };
        if self.last_psplash.swap(percent, Ordering::Relaxed) == percent {
            return;
        }
        // As the reference: open non-blocking, write, close; a missing reader is no error.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "PROGRESS {percent}");
        }
    }
}

/// `--psplash-pipe` must name a FIFO; otherwise the reference's warning, and no psplash.
fn check_pipe(path: &PathBuf) -> bool {
    let is_fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if !is_fifo {
        messages::warning(format_args!(
            "'{}' is not a pipe, so psplash progress will not be updated",
            path.display()
        ));
    }
    is_fifo
}

impl Progress for Renderer {
    fn written(&self, bytes: u64) {
        let written = self.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        } else if self.lines {
            self.plain_line(written);
        }
        self.psplash(written);
    }

    fn syncing(&self) {
        self.finish();
    }
}
