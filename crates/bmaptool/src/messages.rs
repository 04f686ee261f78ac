//! Messages on stderr in the reference's style: `bmaptool: info: ...`,
//! `bmaptool: WARNING: ...`, `bmaptool: ERROR: ...`. `-q` keeps warnings and errors,
//! `-d` adds debug lines. The level is coloured only when stderr is a terminal and
//! `NO_COLOR` is unset. Control characters in messages are escaped so that a file name
//! cannot move the cursor or clear the screen.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Warnings and errors only (`-q`).
    Quiet,
    /// Informational messages too (default).
    Info,
    /// Debug messages too (`-d`).
    Debug,
}

#[derive(Debug)]
struct Settings {
    level: Level,
    color: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Where messages go instead of stderr (`--progress json`): given the level's word
/// (`info`, `debug`, `warning`, `error`) and the text.
type Redirect = Box<dyn Fn(&str, &str) + Send + Sync>;

static REDIRECT: OnceLock<Redirect> = OnceLock::new();

/// Sends every later message to `to` instead of stderr (once per run).
pub fn redirect(to: impl Fn(&str, &str) + Send + Sync + 'static) {
    let _ = REDIRECT.set(Box::new(to));
}

/// Sets the level once, at start-up; colour follows the terminal and `NO_COLOR`.
pub fn init(level: Level) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color = !no_color && std::io::stderr().is_terminal();
    let _ = SETTINGS.set(Settings { level, color });
}

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings {
        level: Level::Info,
        color: false,
    })
}

/// Whether messages of `level` are shown.
pub fn enabled(level: Level) -> bool {
    level <= settings().level
}

fn emit(tag: &str, color: &str, message: &dyn Display) {
    let text = sanitize(&message.to_string());
    if let Some(redirect) = REDIRECT.get() {
        redirect(&tag.to_lowercase(), &text);
        return;
    }
    let tag = if settings().color && !color.is_empty() {
        format!("{color}{tag}\x1b[0m")
    } else {
        tag.to_owned()
    };
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "bmaptool: {tag}: {text}");
}

/// An informational line (hidden by `-q`).
pub fn info(message: impl Display) {
    if enabled(Level::Info) {
        emit("info", "", &message);
    }
}

/// A debug line (shown with `-d`).
pub fn debug(message: impl Display) {
    if enabled(Level::Debug) {
        emit("debug", "", &message);
    }
}

/// A warning (always shown).
pub fn warning(message: impl Display) {
    emit("WARNING", "\x1b[93m", &message);
}

/// An error (always shown).
pub fn error(message: impl Display) {
    emit("ERROR", "\x1b[91m", &message);
}

/// Escapes control characters (other than tab) so that names print on one line.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\nb\x1b[2Jc\td"), "a\\nb\\u{1b}[2Jc\td");
    }
}
