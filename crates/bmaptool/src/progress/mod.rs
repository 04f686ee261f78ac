//! Rendering a copy's events, on a thread of its own (the writer only sends them down a
//! channel): a bar on stderr when it is a terminal (bytes written, average rate, ETA,
//! then a "synchronizing" spinner during the final sync), otherwise a plain line every
//! few seconds with the rate and ETA, and a line when the final sync lasts (so short
//! copies stay quiet and logs stay short; `-d` always has the line); nothing with
//! `-q`; and `PROGRESS N` lines to a psplash pipe, as the reference writes them.
//! `--progress json` / `--progress-fd N` add JSON lines ([`json`]) from the same events.

pub mod json;
mod lines;
pub mod options;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bmap::copy::{DestEvent, Event, Phase};
use bmap::format::{human_size, human_time};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::messages;

/// Time between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// How often the renderer wakes without events.
const TICK: Duration = Duration::from_millis(200);
/// How long the final sync may take before a plain line says it is going on.
const SYNC_QUIET: Duration = Duration::from_secs(1);

/// How progress is shown.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes the copy writes, when known.
    pub total: Option<u64>,
    /// False with `-q`.
    pub show: bool,
    /// Whether stderr is a terminal (a bar) or not (plain lines).
    pub terminal: bool,
    /// `--psplash-pipe`.
    pub psplash: Option<PathBuf>,
    /// How the destination is named in the synchronizing line.
    pub dest: String,
    /// `-d`: the synchronizing line comes at once, as a debug line.
    pub debug: bool,
    /// The JSON lines, with `--progress json` or `--progress-fd`.
    pub json: Option<json::JsonLines>,
    /// The destinations of a copy to several (empty for one): the bar and the lines
    /// then follow the slowest destination still going, and say which it is.
    pub dests: Vec<String>,
}

/// The rendering thread and the channel that feeds it.
#[derive(Debug)]
pub struct Progress {
    events: Sender<Event>,
    thread: JoinHandle<()>,
}

impl Progress {
    /// Starts rendering; `events` then takes the copy's events.
    pub fn start(settings: Settings) -> std::io::Result<Progress> {
        let (events, rx) = mpsc::channel();
        let psplash = settings.psplash.clone().filter(check_pipe);
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || Renderer::new(settings, psplash).run(rx))?;
        Ok(Progress { events, thread })
    }

    /// The sink to hand to the copy.
    pub fn events(&mut self) -> &mut Sender<Event> {
        &mut self.events
    }

    /// Waits for the renderer to take the last events; the bar is cleared.
    pub fn finish(self) {
        drop(self.events);
        let _ = self.thread.join();
    }
}

struct Renderer {
    settings: Settings,
    psplash: Option<PathBuf>,
    bar: Option<ProgressBar>,
    written: u64,
    /// When writing started.
    started: Option<Instant>,
    last_line: Option<Instant>,
    last_percent: Option<u64>,
    /// When the plain synchronizing line is due, while the sync runs.
    sync_due: Option<Instant>,
    /// Bytes each destination wrote, and whether it failed (a copy to several).
    dest_written: Vec<u64>,
    dest_failed: Vec<bool>,
}

impl Renderer {
    fn new(settings: Settings, psplash: Option<PathBuf>) -> Renderer {
        let count = settings.dests.len();
        Renderer {
            settings,
            psplash,
            bar: None,
            written: 0,
            started: None,
            last_line: None,
            last_percent: None,
            sync_due: None,
            dest_written: vec![0; count],
            dest_failed: vec![false; count],
        }
    }

    fn run(mut self, rx: Receiver<Event>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(event) => self.take(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.plain_line();
            self.sync_line();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn take(&mut self, event: Event) {
        if let Some(json) = &self.settings.json {
            json.event(&event);
        }
        match event {
            Event::Phase(Phase::Writing) => self.writing(),
            Event::Phase(Phase::Syncing) => self.syncing(),
            Event::Phase(Phase::Done) => {
                self.sync_due = None;
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            Event::Dest { dest, event } => self.dest(dest, event),
            Event::Written(_) if !self.settings.dests.is_empty() => {}
            Event::Written(bytes) => {
                self.written += bytes;
                if let Some(bar) = &self.bar {
                    bar.inc(bytes);
                }
                self.psplash();
            }
            _ => {}
        }
    }

    /// One destination's event: the bar follows the slowest destination still going.
    fn dest(&mut self, index: usize, event: DestEvent) {
        if index >= self.dest_written.len() {
            return;
        }
        match event {
            DestEvent::Written(bytes) => self.dest_written[index] += bytes,
            DestEvent::Finished => return,
            DestEvent::Failed(error) => {
                self.dest_failed[index] = true;
                let line = || {
                    messages::warning(format_args!(
                        "destination {} '{}' failed: {error}; the others go on",
                        index + 1,
                        self.settings.dests[index]
                    ))
                };
                match &self.bar {
                    Some(bar) => bar.suspend(line),
                    None => line(),
                }
            }
        }
        let slowest = self.slowest().map_or(0, |(_, bytes)| bytes);
        if let Some(bar) = &self.bar {
            bar.set_position(slowest);
        }
        self.written = slowest;
        self.psplash();
    }

    /// The destination still going that wrote the least, and its bytes.
    fn slowest(&self) -> Option<(usize, u64)> {
        self.dest_written
            .iter()
            .zip(&self.dest_failed)
            .enumerate()
            .filter(|(_, (_, failed))| !**failed)
            .map(|(index, (bytes, _))| (index, *bytes))
            .min_by_key(|&(_, bytes)| bytes)
    }

    /// Which destination lags, for a plain line of a copy to several.
    fn lagging(&self) -> String {
        let fastest = self.dest_written.iter().copied().max().unwrap_or(0);
        match self.slowest() {
            Some((index, bytes)) if bytes < fastest => format!(
                "; slowest: destination {} '{}', {} behind",
                index + 1,
                self.settings.dests[index],
                human_size(fastest - bytes)
            ),
            _ => String::new(),
        }
    }

    fn writing(&mut self) {
        let now = Instant::now();
        self.started = Some(now);
        self.last_line = Some(now);
        if !(self.settings.show && self.settings.terminal) {
            return;
        }
        let total = self.settings.total;
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = if total.is_some() {
            "bmaptool: {percent:>3}% [{wide_bar}] {bytes}/{total_bytes} {average} ETA {eta}"
        } else {
            "bmaptool: {spinner} {bytes} written, {average}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.with_key("average", average).progress_chars("=> "));
        }
        self.bar = Some(bar);
    }

    /// All data is written: the bar becomes a spinner, so that a slow card does not
    /// look hung; a plain line says the same.
    fn syncing(&mut self) {
        if let Some(bar) = &self.bar {
            let template = "bmaptool: {spinner} synchronizing {msg}: {bytes} written, \
                            {average}, {elapsed}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.with_key("average", average));
            }
            bar.set_message(self.settings.dest.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
        } else if self.settings.debug {
            messages::debug(format_args!(
                "synchronizing {} ({} written)",
                self.settings.dest,
                human_size(self.written)
            ));
        } else if self.settings.show {
            self.sync_due = Some(Instant::now() + SYNC_QUIET);
        }
        // No more progress lines: the sync has its own.
        self.started = None;
    }

    /// The plain line of a sync that lasts: a slow card must not look hung.
    fn sync_line(&mut self) {
        if self.sync_due.is_some_and(|due| Instant::now() >= due) {
            self.sync_due = None;
            messages::info(format_args!(
                "synchronizing {} ({} written), which can take a while on slow media",
                self.settings.dest,
                human_size(self.written)
            ));
        }
    }

    /// A plain line when one is due: percent, bytes, average rate, ETA.
    fn plain_line(&mut self) {
        if !self.settings.show || self.settings.terminal {
            return;
        }
        let (Some(started), Some(last)) = (self.started, self.last_line) else {
            return;
        };
        if last.elapsed() < LINE_EVERY {
            return;
        }
        self.last_line = Some(Instant::now());
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.written as f64 / seconds;
        let shown_rate = human_size(rate as u64);
        match self.settings.total {
            Some(total) => {
                let percent = percent(self.written, total);
                let left = total.saturating_sub(self.written) as f64;
                let eta = if rate > 0.0 {
                    human_time(left / rate)
                } else {
                    "unknown".to_owned()
                };
                messages::info(format_args!(
                    "{percent}% copied ({} of {}, {shown_rate}/sec, ETA {eta}){}",
                    human_size(self.written),
                    human_size(total),
                    self.lagging()
                ));
            }
            None => messages::info(format_args!(
                "{} copied ({shown_rate}/sec){}",
                human_size(self.written),
                self.lagging()
            )),
        }
    }

    fn psplash(&mut self) {
        let (Some(path), Some(total)) = (&self.psplash, self.settings.total) else {
            return;
        };
        let percent = percent(self.written, total);
        if self.last_percent.replace(percent) == Some(percent) {
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

fn percent(written: u64, total: u64) -> u64 {
    written
        .saturating_mul(100)
        .checked_div(total)
        .unwrap_or(100)
}

/// The bar's rate: bytes written over the time since writing started, the same
/// average the summary's speed is (indicatif's own rate is a recent estimate, which
/// disagrees with the summary at the end).
fn average(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let seconds = state.elapsed().as_secs_f64().max(1e-3);
    let _ = write!(
        out,
        "{}/s",
        human_size((state.pos() as f64 / seconds) as u64)
    );
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
