//! The `bmaptool` command line: its clap definition (shared with the man page and
//! completion generator in `xtask`), messages and subcommands. The engines live in the
//! `bmap` library; this crate only turns arguments into options and results into text.

pub mod advice;
pub mod cli;
pub mod cmd;
pub mod input;
pub mod messages;
pub mod progress;
pub mod signals;
pub mod size;
