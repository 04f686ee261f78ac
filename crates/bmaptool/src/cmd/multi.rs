//! `bmaptool copy IMAGE DEST1 DEST2 ...`: every destination is checked and opened
//! before any is written (one refusal refuses the run), then one copy runs into a
//! [`Fanout`] of the usual per-destination chains; the end is a table with one row per
//! destination, and the exit status is 1 when any failed.
//!
//! The lag rule's time (how long a destination may take no data while the others wait
//! for it, 30 s by default) can be set with the environment variable
//! `BMAPTOOL_MAX_LAG` (seconds), read only here.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::copy::{self, DestResult, Fanout, Options};
use bmap::dest::{Dest, same_storage};
use bmap::format::{human_size, human_time};
use bmap::source::Later;

use super::reflash::{Chain, HolesDone};

/// What a destination's preparation did, reported after the copy.
type Extra = (Option<HolesDone>, Option<copy::GptMoveSlot>);
use crate::cli::CopyArgs;
use crate::messages::{self, Level};
use crate::progress::json::{Facts, JsonLines, Took};
use crate::progress::options as json_lines;
use crate::progress::{Progress, Settings};

/// Where the JSON lines go and what their result says.
pub struct Json<'a> {
    /// The lines, with `--progress json` or `--progress-fd`.
    pub lines: Option<&'a JsonLines>,
    /// What the result line says, gathered as the copy goes.
    pub facts: &'a mut Facts,
}

/// The environment variable that sets the lag rule's time, in seconds.
const MAX_LAG_VAR: &str = "BMAPTOOL_MAX_LAG";

/// Runs a copy to every DEST of `args` (two or more).
pub fn run(
    args: &CopyArgs,
    plan: copy::Plan,
    shown_bmap: Option<&str>,
    later: &Later,
    interrupt: &Interrupt,
    max_lag: Duration,
    json: Json<'_>,
) -> Result<()> {
    let Json { lines, facts } = json;
    check_distinct(&args.dest)?;
    let dests = open_all(args, &plan, interrupt)?;
    let labels: Vec<String> = dests
        .iter()
        .zip(&args.dest)
        .map(|(dest, path)| super::copy::label(dest, path))
        .collect();
    let label = format!("{} destinations", dests.len());
    super::copy::announce(args, &plan, shown_bmap, &label);
    for (index, path) in args.dest.iter().enumerate() {
        messages::info(format_args!(
            "destination {}: '{}'",
            index + 1,
            path.display()
        ));
    }
    let (chains, extras) = prepare_all(args, &plan, dests, interrupt)?;
    if let Some(lines) = lines {
        lines.start(facts, plan.bytes_to_write());
    }
    let (show, terminal) = json_lines::human(&args.progress);
    let mut progress = Progress::start(Settings {
        total: plan.bytes_to_write(),
        show,
        terminal,
        psplash: args.psplash_pipe.clone(),
        dest: label.clone(),
        debug: messages::enabled(Level::Debug),
        json: lines.cloned(),
        dests: args.dest.iter().map(|p| p.display().to_string()).collect(),
    })
    .context("cannot start the progress display")?;
    let options = Options {
        verify: !args.no_verify,
        interrupt: interrupt.clone(),
        ..Options::default()
    };
    let has_bmap = plan.bmap().is_some();
    let mut fanout = Fanout::new(chains)
        .max_lag(max_lag)
        .interrupt(interrupt.clone());
    let result = plan.run(&mut fanout, progress.events(), &options);
    progress.finish();
    let results = fanout.results();
    record(args, &results, facts);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(copy::Error::Interrupted) => bail!(copy::Error::Interrupted),
        Err(error) => {
            table(&args.dest, &results);
            return Err(explain(error, &args.dest));
        }
    };
    for notice in later.take() {
        messages::warning(notice);
    }
    super::copy::summarize(args, &outcome, has_bmap, &label);
    conclude(&args.dest, &labels, &results, extras)
}

/// The chains in front of the destinations, and what each preparation did.
fn prepare_all(
    args: &CopyArgs,
    plan: &copy::Plan,
    dests: Vec<Dest>,
    interrupt: &Interrupt,
) -> Result<(Vec<Chain>, Vec<Extra>)> {
    let mut chains = Vec::with_capacity(dests.len());
    let mut extras = Vec::with_capacity(dests.len());
    for dest in dests {
        super::copy::report_tuning(&dest);
        let prepared = super::reflash::prepare(args, plan, dest, interrupt)?;
        chains.push(prepared.chain);
        extras.push((prepared.holes, prepared.gpt));
    }
    Ok((chains, extras))
}

/// What each destination did besides writing, the table, and the verdict: an error
/// naming the destinations that failed.
fn conclude(
    paths: &[PathBuf],
    labels: &[String],
    results: &[DestResult<Chain>],
    extras: Vec<Extra>,
) -> Result<()> {
    let mut failed = Vec::new();
    for (((result, extra), path), label) in results.iter().zip(extras).zip(paths).zip(labels) {
        match &result.sink {
            Some(chain) => summarize_one(chain, extra, label),
            None => failed.push(format!("'{}'", path.display())),
        }
    }
    table(paths, results);
    if !failed.is_empty() {
        return Err(super::errcode::coded(
            "dest-failed",
            format!(
                "{} of {} destinations failed: {} (see the table above; the others hold the \
                 image)",
                failed.len(),
                results.len(),
                failed.join(", ")
            ),
        ));
    }
    Ok(())
}

/// What each destination took, and its own error, for the JSON result.
fn record(args: &CopyArgs, results: &[DestResult<Chain>], facts: &mut Facts) {
    for (result, dest) in results.iter().zip(&mut facts.destinations) {
        dest.took = Some(Took {
            ranges: result.ranges,
            ranges_verified: result.ranges_verified,
            bytes: result.bytes_written,
            seconds: result.elapsed.as_secs_f64(),
        });
        dest.error = result
            .error
            .as_ref()
            .map(|error| super::errcode::describe_cause(error));
        if let Some(chain) = &result.sink {
            let read_back = chain.inner().inner().read_back_stats();
            dest.bytes_read_back = read_back.map(|stats| stats.bytes);
            dest.bytes_skipped = args.skip_unchanged.then(|| chain.inner().stats().skipped);
        }
    }
}

/// The lag rule's time: `BMAPTOOL_MAX_LAG` seconds, or the library's default (also
/// when it is empty). Read before anything is read or written.
pub fn max_lag() -> Result<Duration> {
    let value = std::env::var_os(MAX_LAG_VAR).unwrap_or_default();
    if value.is_empty() {
        return Ok(copy::fanout::MAX_LAG);
    }
    let seconds = value
        .to_str()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0);
    match seconds {
        Some(seconds) => Ok(Duration::from_secs_f64(seconds)),
        None => bail!(
            "{MAX_LAG_VAR}={} is not a number of seconds above 0; set it to how long a \
             destination may take no data before it is dropped (e.g. 30)",
            value.to_string_lossy()
        ),
    }
}

/// Refuses a destination given twice, by what it is (device and inode, or the block
/// device behind a node), or by its path when it does not exist yet.
fn check_distinct(paths: &[PathBuf]) -> Result<()> {
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[..i] {
            let same = match (std::fs::metadata(a), std::fs::metadata(b)) {
                (Ok(ma), Ok(mb)) => same_storage(&ma, &mb) || same_storage(&mb, &ma),
                (Err(_), Err(_)) => normalized(a) == normalized(b),
                _ => false,
            };
            if same {
                bail!(
                    "the destinations '{}' and '{}' are the same {}: give each destination \
                     once",
                    b.display(),
                    a.display(),
                    if std::fs::metadata(a).is_ok_and(|m| m.file_type().is_block_device()) {
                        "device"
                    } else {
                        "file"
                    }
                );
            }
        }
    }
    Ok(())
}

/// A path that does not exist yet, with its directory resolved.
fn normalized(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().unwrap_or_else(|_| parent.to_owned());
    parent.join(path.file_name().unwrap_or_default())
}

/// Opens (and so checks) every destination before anything is written to any: block
/// devices and other nodes first, then files to create, then existing files (which
/// are emptied when opened). One refusal refuses the run; the destinations opened so
/// far are closed untouched (a file created for the copy is removed).
fn open_all(args: &CopyArgs, plan: &copy::Plan, interrupt: &Interrupt) -> Result<Vec<Dest>> {
    let rank = |path: &PathBuf| match std::fs::metadata(path) {
        Ok(m) if m.is_file() => 2,
        Err(_) => 1,
        Ok(_) => 0,
    };
    let mut order: Vec<usize> = (0..args.dest.len()).collect();
    order.sort_by_key(|&i| rank(&args.dest[i]));
    let mut opened: Vec<Option<Dest>> = args.dest.iter().map(|_| None).collect();
    for index in order {
        let path = &args.dest[index];
        let refused = || {
            format!(
                "destination {} of {} ('{}') refused, so nothing was written to any \
                 destination",
                index + 1,
                args.dest.len(),
                path.display()
            )
        };
        let options = super::seek::check(args, path, plan)
            .with_context(refused)?
            .dest_options(plan);
        let dest = super::copy::open_dest(interrupt, path, &options).with_context(refused)?;
        opened[index] = Some(dest);
    }
    Ok(opened.into_iter().flatten().collect())
}

/// A copy error, with a note on what the destinations now hold.
fn explain(error: copy::Error, dests: &[PathBuf]) -> anyhow::Error {
    let devices = dests
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        .map(|p| format!("'{}'", p.display()))
        .collect::<Vec<_>>();
    let error = anyhow::Error::new(error);
    if devices.is_empty() {
        return error;
    }
    error.context(format!(
        "{} may now hold a partial image: do not use them",
        devices.join(", ")
    ))
}

/// What a finished destination's chain did besides writing (as for one destination).
fn summarize_one(chain: &Chain, extra: Extra, label: &str) {
    if let Some(stats) = chain.inner().inner().read_back_stats() {
        super::copy::summarize_read_back(&stats, label);
    }
    super::reflash::summarize_parts(chain, extra.0, extra.1.as_ref(), label);
}

/// The table at the end: one row per destination.
fn table(paths: &[PathBuf], results: &[DestResult<Chain>]) {
    let mut rows = vec![
        [
            "#",
            "destination",
            "result",
            "written",
            "ranges",
            "verified",
            "read back",
            "skipped",
            "time",
            "error",
        ]
        .map(str::to_owned),
    ];
    for (index, (path, result)) in paths.iter().zip(results).enumerate() {
        rows.push(row(index, path, result));
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        messages::info(line.trim_end());
    }
}

fn row(index: usize, path: &Path, result: &DestResult<Chain>) -> [String; 10] {
    let chain = result.sink.as_ref();
    let read_back = chain
        .and_then(|c| c.inner().inner().read_back_stats())
        .map_or("-".to_owned(), |s| format!("{} ranges", s.ranges));
    let skipped = chain
        .map(|c| c.inner().stats())
        .filter(|s| s.compared > 0)
        .map_or("-".to_owned(), |s| human_size(s.skipped));
    let (status, error) = match &result.error {
        Some(error) => ("FAILED", one_line(error)),
        None => ("ok", String::new()),
    };
    [
        (index + 1).to_string(),
        path.display().to_string(),
        status.to_owned(),
        human_size(result.bytes_written),
        result.ranges.to_string(),
        result.ranges_verified.to_string(),
        read_back,
        skipped,
        human_time(result.elapsed.as_secs_f64()),
        error,
    ]
}

/// An error and its causes on one line.
fn one_line(error: &copy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
