//! Device settings changed while a block device is written (I/O scheduler `none`,
//! `bdi/max_ratio` 1, as the reference does), each read back after writing, and put
//! back in the reverse order, also read back, when the copy ends or on drop.
//!
//! The kernel may refuse a switch for a moment (`EBUSY` while the queue is being
//! updated, `ENOENT` while it is not registered) or, in principle, keep the old value:
//! a write is retried a few times and trusted only once its value reads back.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;

/// Writes of one value before giving up.
const ATTEMPTS: u32 = 5;
/// The wait before the second attempt; doubled for each later one (0.3 s in all).
const FIRST_WAIT: Duration = Duration::from_millis(20);

/// A device setting bmaptool changes while writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `queue/scheduler`, set to `none` (sequential writes need no reordering).
    Scheduler,
    /// `bdi/max_ratio`, set to 1 so that the page cache does not fill with this
    /// device's dirty pages and stall the system.
    MaxRatio,
}

impl Setting {
    fn file(self) -> &'static str {
        match self {
            Setting::Scheduler => "queue/scheduler",
            Setting::MaxRatio => "bdi/max_ratio",
        }
    }

    fn wanted(self) -> &'static str {
        match self {
            Setting::Scheduler => "none",
            Setting::MaxRatio => "1",
        }
    }

    /// The current value in the text of the sysfs file.
    fn parse(self, text: &str) -> String {
        match self {
            // "mq-deadline kyber [none]": the bracketed entry is the current one.
            Setting::Scheduler => text
                .split_whitespace()
                .find_map(|s| s.strip_prefix('[').and_then(|s| s.strip_suffix(']')))
                .unwrap_or_else(|| text.trim())
                .to_owned(),
            Setting::MaxRatio => text.trim().to_owned(),
        }
    }

    fn read(self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path).map(|text| self.parse(&text))
    }
}

/// What happened to one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingChange {
    /// Changed from `old` (and read back); restored when the copy ends.
    Changed {
        /// Which setting.
        setting: Setting,
        /// The sysfs file.
        path: PathBuf,
        /// The value to restore.
        old: String,
    },
    /// Already as wanted.
    Unchanged(Setting),
    /// Could not be read or changed, or the kernel kept the old value (not fatal: the
    /// copy is only slower, or the system less responsive).
    Failed {
        /// Which setting.
        setting: Setting,
        /// Why.
        reason: String,
    },
}

/// The settings changed for a copy; restored by [`Tuning::restore`] or on drop.
#[derive(Debug)]
pub(super) struct Tuning {
    changes: Vec<SettingChange>,
    restored: bool,
}

impl Tuning {
    pub(super) fn none() -> Tuning {
        Tuning {
            changes: Vec::new(),
            restored: true,
        }
    }

    /// Applies both settings to the disk under `sys` (the parent disk for a partition).
    pub(super) fn apply(sys: &Path) -> Tuning {
        let disk = if sys.join("queue").exists() {
            sys.to_owned()
        } else {
            sys.parent()
                .map_or_else(|| sys.to_owned(), Path::to_path_buf)
        };
        let changes = [Setting::Scheduler, Setting::MaxRatio]
            .into_iter()
            .map(|setting| change(&disk, setting))
            .collect();
        Tuning {
            changes,
            restored: false,
        }
    }

    pub(super) fn changes(&self) -> &[SettingChange] {
        &self.changes
    }

    /// Puts every changed setting back, the last changed first; reports the first
    /// failure.
    pub(super) fn restore(&mut self) -> Result<(), Error> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        let mut first_error = None;
        for change in self.changes.iter().rev() {
            if let SettingChange::Changed { setting, path, old } = change
                && let Err(source) = set(*setting, path, old)
            {
                first_error.get_or_insert(Error::Restore {
                    path: path.clone(),
                    value: old.clone(),
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Tuning {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

fn change(disk: &Path, setting: Setting) -> SettingChange {
    let path = disk.join(setting.file());
    let failed = |e: io::Error| SettingChange::Failed {
        setting,
        reason: format!("{}: {e}", path.display()),
    };
    let current = match setting.read(&path) {
        Ok(current) => current,
        Err(e) => return failed(e),
    };
    if current == setting.wanted() {
        return SettingChange::Unchanged(setting);
    }
    match set(setting, &path, setting.wanted()) {
        Ok(()) => SettingChange::Changed {
            setting,
            path,
            old: current,
        },
        Err(e) => failed(e),
    }
}

/// Writes `value` to `path` and reads it back; retries while the kernel refuses for
/// a moment or shows another value.
fn set(setting: Setting, path: &Path, value: &str) -> io::Result<()> {
    let mut wait = FIRST_WAIT;
    let mut attempt = 1;
    loop {
        let outcome = std::fs::write(path, value).and_then(|()| {
            let now = setting.read(path)?;
            if now == value {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "wrote '{value}', but the kernel kept '{now}'"
                )))
            }
        });
        match outcome {
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether a failed write may succeed when tried again: the kernel was busy, or it
/// kept the old value (an error without an OS code, from [`set`]). The file was
/// readable just before, so `ENOENT` here is the queue's state, not a missing file.
fn transient(e: &io::Error) -> bool {
    match e.raw_os_error() {
        Some(code) => [libc::EBUSY, libc::EAGAIN, libc::EINTR, libc::ENOENT].contains(&code),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_scheduler_is_the_bracketed_entry() {
        let text = "none [mq-deadline] kyber bfq\n";
        assert_eq!(Setting::Scheduler.parse(text), "mq-deadline");
        assert_eq!(Setting::Scheduler.parse("[none] mq-deadline\n"), "none");
        assert_eq!(Setting::MaxRatio.parse("100\n"), "100");
    }

    #[test]
    fn a_write_that_does_not_read_back_fails_after_the_retries() {
        // /dev/null takes every write and reads back empty: as a sysfs file that
        // accepts the new scheduler but keeps the old one would.
        let started = std::time::Instant::now();
        let error = set(Setting::Scheduler, Path::new("/dev/null"), "none")
            .expect_err("nothing reads back");
        assert!(
            error
                .to_string()
                .contains("wrote 'none', but the kernel kept ''"),
            "{error}"
        );
        assert!(
            started.elapsed() >= FIRST_WAIT * 15,
            "no retries: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn only_busy_states_are_retried() {
        assert!(transient(&io::Error::from_raw_os_error(libc::EBUSY)));
        assert!(transient(&io::Error::other("kept")));
        assert!(!transient(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!transient(&io::Error::from_raw_os_error(libc::EINVAL)));
    }
}
