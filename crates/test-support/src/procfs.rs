//! The process under test seen through `/proc`: its threads' kernel wait channels, run
//! states, open files and bytes read. Tests wait for the state they need (blocked
//! reading an empty pipe, waiting for the other end of a FIFO, stopped) instead of for
//! time, so that a busy machine makes them slower, never wrong.
//!
//! Deadlines only bound a hang ([`HANG`]): they never decide a result. "Promptly"
//! means "without further input", not within some number of milliseconds.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a state may take to appear, or a process to exit once nothing holds it
/// back, on a busy machine. It bounds a hang; a passing run never comes near it.
pub const HANG: Duration = Duration::from_secs(120);

/// Polls `cond` every 10 ms until it holds (`true`) or [`HANG`] passes (`false`).
pub fn within_hang(cond: impl FnMut() -> bool) -> bool {
    crate::eventually(HANG, cond)
}

/// `/proc/PID/task/*`: one directory per thread (empty once the process is reaped).
fn tasks(pid: u32) -> Vec<PathBuf> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The kernel function each thread of `pid` sleeps in (empty or `0` while it runs).
pub fn wchans(pid: u32) -> Vec<String> {
    tasks(pid)
        .iter()
        .map(|task| fs::read_to_string(task.join("wchan")).unwrap_or_default())
        .collect()
}

/// The kernel function the main thread of `pid` sleeps in.
pub fn wchan(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// Whether a thread of `pid` sleeps in a read of an empty pipe (`pipe_read`, or
/// `anon_pipe_read` on newer kernels, `pipe_wait` on older ones): everything written
/// to the pipe so far has been taken, and the process waits for more.
pub fn waits_reading_a_pipe(pid: u32) -> bool {
    wchans(pid)
        .iter()
        .any(|w| w.contains("pipe_read") || w.contains("pipe_wait"))
}

/// Whether a thread of `pid` waits in the kernel for the other end of a FIFO to open
/// (`wait_for_partner`, inlined into `fifo_open` on some kernels). Any thread: the
/// binary opens what may block for good on a thread of its own, so that its main
/// thread stays free to notice a signal.
pub fn waits_for_fifo_partner(pid: u32) -> bool {
    wchans(pid)
        .iter()
        .any(|w| matches!(w.as_str(), "wait_for_partner" | "fifo_open"))
}

/// The run state letter in a `stat` file (`R`, `S`, `T`, `t`, `Z`...).
fn state_in(stat: &Path) -> Option<char> {
    let stat = fs::read_to_string(stat).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The run state letter of the main thread of `pid`; `None` once it is reaped.
pub fn run_state(pid: u32) -> Option<char> {
    state_in(Path::new(&format!("/proc/{pid}/stat")))
}

/// Whether `pid` has exited (a zombie until reaped, or gone).
pub fn exited(pid: u32) -> bool {
    matches!(run_state(pid), None | Some('Z'))
}

/// Whether every thread of `pid` is stopped (`T`) or gone: after SIGSTOP, none of
/// them can take another step until SIGCONT.
pub fn all_threads_stopped(pid: u32) -> bool {
    tasks(pid)
        .iter()
        .all(|task| matches!(state_in(&task.join("stat")), None | Some('T' | 't' | 'Z')))
}

/// Bytes `pid` has read with `read`-like calls so far, all threads (`rchar` of
/// `/proc/PID/io`); `None` when it cannot be read.
pub fn read_chars(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Bytes `pid` has written with `write`-like calls so far, all threads (`wchar` of
/// `/proc/PID/io`); `None` when it cannot be read.
pub fn written_chars(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Whether `pid` has a file in directory `dir` open, named or not: a new destination
/// is written unnamed (`O_TMPFILE`, shown as `DIR/#INODE (deleted)`) until finished.
pub fn has_open_in(pid: u32, dir: &Path) -> bool {
    open_in(pid, dir).is_some()
}

/// `/proc/PID/fd/N` of a file in directory `dir` that `pid` has open, named or not;
/// opening it opens that file, even unnamed (as root, or as its owner).
pub fn open_in(pid: u32, dir: &Path) -> Option<PathBuf> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.filter_map(Result::ok)
        .find(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.parent() == Some(dir)))
        .map(|fd| fd.path())
}

/// Whether `pid` has `path` open.
pub fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == path))
}
