//! `bmaptool`: parse arguments, run the subcommand, print the error chain once, exit
//! with 0 (success), 1 (error), 2 (usage error) or 128 + signal (interrupted).
//! `verify` exits as `cmp` does: 0 (every range good), 1 (a range is bad), 2 (an
//! error or a usage error: the check could not be made).

use std::process::ExitCode;

use bmaptool::cli::{Cli, Command};
use bmaptool::messages::{self, Level};
use bmaptool::signals::Signals;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    // `verify` keeps 1 for "a range is bad".
    let failed = match cli.command {
        Command::Verify(_) => 2,
        _ => 1,
    };
    if cli.quiet && cli.debug {
        messages::init(Level::Info);
        messages::error("--quiet and --debug cannot be used together");
        return ExitCode::from(failed);
    }
    messages::init(match (cli.quiet, cli.debug) {
        (true, _) => Level::Quiet,
        (_, true) => Level::Debug,
        _ => Level::Info,
    });
    let signals = Signals::install();
    let result = match &cli.command {
        Command::Create(args) => bmaptool::cmd::create::run(args, signals.interrupt()),
        Command::Copy(args) => bmaptool::cmd::copy::run(args, signals.interrupt()),
        Command::Verify(args) => match bmaptool::cmd::verify::run(args, signals.interrupt()) {
            Ok(false) => return ExitCode::from(1),
            other => other.map(|_| ()),
        },
        Command::Info(args) => bmaptool::cmd::info::run(args, signals.interrupt()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if signals.interrupt().is_raised() => {
            messages::error("interrupted, exiting");
            ExitCode::from(signals.exit_status())
        }
        Err(err) => {
            let hint = bmaptool::advice::hint(&err).unwrap_or_default();
            messages::error(format_args!("{}{hint}", one_line(&err)));
            ExitCode::from(failed)
        }
    }
}

/// The error and its causes on one line, joined by ": ". Every message says only
/// what its own layer knows (a library error never repeats its source's text; the
/// chain adds it), so each cause appears once.
fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
