//! The progress options (`--progress MODE`, `--progress-fd N`) turned into what
//! shows progress: whether the human display shows and as what, the JSON lines and
//! where they go (a descriptor the caller opened, checked before anything is done),
//! and the result line a command ends with.

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;

use anyhow::{Context, Result, bail};

use super::json::{Facts, JsonLines};
use crate::cli::{ProgressArgs, ProgressMode};

/// The JSON lines `args` ask for (`None`: none), and the checks of those options.
/// With the lines on stderr, the human messages become `message` objects.
pub fn open(args: &ProgressArgs, command: &'static str) -> Result<Option<JsonLines>> {
    let on_stderr = args.progress == ProgressMode::Json;
    let lines = match (on_stderr, args.progress_fd) {
        (true, Some(_)) => {
            return Err(crate::cmd::errcode::coded(
                "usage",
                "--progress json writes the JSON lines to stderr and --progress-fd to a \
                 descriptor: give one of them",
            ));
        }
        (true, None) => JsonLines::stderr(command),
        (false, Some(fd)) => JsonLines::fd(fd, command)?,
        (false, None) => return Ok(None),
    };
    if on_stderr {
        let messages = lines.clone();
        crate::messages::redirect(move |level, text| messages.message(level, text));
    }
    Ok(Some(lines))
}

/// Whether the human progress shows (`--progress none` and `json` hide it, `-q` too)
/// and whether it is a bar (`auto`: when stderr is a terminal).
pub fn human(args: &ProgressArgs) -> (bool, bool) {
    let show = crate::messages::enabled(crate::messages::Level::Info);
    match args.progress {
        ProgressMode::Auto => (show, std::io::stderr().is_terminal()),
        ProgressMode::Bar => (show, true),
        ProgressMode::Plain => (show, false),
        ProgressMode::Json | ProgressMode::None => (false, false),
    }
}

/// Writes the result of a run that ended with `result`: `failure` turns a success
/// into a failure of its own (`verify`'s bad ranges).
pub fn finish<T>(
    lines: Option<&JsonLines>,
    facts: &Facts,
    result: &Result<T>,
    interrupted: bool,
    failure: impl FnOnce(&T) -> Option<(&'static str, String)>,
) {
    let Some(lines) = lines else {
        return;
    };
    let error = match result {
        Ok(value) => failure(value),
        Err(error) => Some(crate::cmd::errcode::describe(error, interrupted)),
    };
    lines.result(facts, error);
}

/// Opens descriptor `fd` anew for writing (through /proc, without `unsafe`), once
/// /proc/self/fdinfo says it is open for writing.
pub(super) fn open_fd(fd: i32) -> Result<File> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).map_err(|_| {
        anyhow::anyhow!(
            "--progress-fd {fd}: descriptor {fd} is not open; open it for writing before \
             starting bmaptool (for example with {fd}>progress.jsonl in the shell)"
        )
    })?;
    let flags = info
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| i32::from_str_radix(flags.trim(), 8).ok())
        .unwrap_or(0);
    let mode = flags & libc::O_ACCMODE;
    if mode != libc::O_WRONLY && mode != libc::O_RDWR {
        bail!(
            "--progress-fd {fd}: descriptor {fd} is open for reading only; give a descriptor \
             open for writing"
        );
    }
    OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{fd}"))
        .with_context(|| {
            format!(
                "--progress-fd {fd}: cannot write to descriptor {fd} (a pipe or a file is needed)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_descriptor_is_refused() {
        let error = open_fd(1000).expect_err("descriptor 1000 is not open");
        assert!(error.to_string().contains("is not open"), "{error}");
    }
}
