//! `bmaptool verify [--bmap BMAP] [signature options] [--json] TARGET`: checks a
//! flashed device (or a file) against a bmap, without the image. The bmap goes
//! through the same trust step as `copy` (named or discovered, local or remote,
//! signature checked); the library reads the target bypassing the page cache and
//! returns a report, told here as a human summary or one JSON document on stdout
//! (docs/json.md). Exit status: 0 all good, 1 a bad range, 2 an error (main.rs).

use std::path::Path;
use std::sync::mpsc::Sender;

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::copy::{Event, Events, Phase};
use bmap::format::{human_size, human_time};
use bmap::source::remote::{self, Location};
use bmap::trust::Trusted;
use bmap::verify::{self, RangeVerdict, Report, Target, TargetKind};
use serde::Serialize;

use super::json;
use crate::cli::VerifyArgs;
use crate::messages::{self, Level};
use crate::progress::json::{DestFacts, Facts, JsonLines};
use crate::progress::options as json_lines;
use crate::progress::{Progress, Settings};

/// Runs `verify`; `Ok(true)` when every range is good, `Ok(false)` when one is bad.
/// Writes the JSON result when JSON lines were asked for.
pub fn run(args: &VerifyArgs, interrupt: &Interrupt) -> Result<bool> {
    let lines = json_lines::open(&args.progress, "verify")?;
    let mut facts = Facts {
        destinations: vec![DestFacts {
            path: args.target.display().to_string(),
            ..DestFacts::default()
        }],
        ..Facts::default()
    };
    let result = check(args, interrupt, lines.as_ref(), &mut facts);
    json_lines::finish(
        lines.as_ref(),
        &facts,
        &result,
        interrupt.is_raised(),
        |good| {
            (!good).then(|| {
                (
                    "checksum-mismatch",
                    format!(
                        "'{}' does not hold the image its bmap describes",
                        args.target.display()
                    ),
                )
            })
        },
    );
    result
}

fn check(
    args: &VerifyArgs,
    interrupt: &Interrupt,
    lines: Option<&JsonLines>,
    facts: &mut Facts,
) -> Result<bool> {
    super::signature::check_options(&args.signature, false).map_err(super::errcode::usage)?;
    let remote = remote::Options {
        interrupt: interrupt.clone(),
        ..super::network::remote_options()?
    };
    let target = Target::open(&args.target)?.at(args.seek);
    let trusted = trusted_bmap(args, &target, &remote, interrupt)?;
    verify::check(&target, &trusted.bmap)
        .with_context(|| format!("cannot verify '{}'", args.target.display()))?;
    if let Some(reason) = target.in_use() {
        messages::warning(format_args!(
            "'{}' is in use ({reason}): reading it is harmless, but what is on it may \
             change while it is checked",
            args.target.display()
        ));
    }
    announce(&target, &trusted);
    facts.image_size = Some(trusted.bmap.image_size());
    facts.bmap = Some(json::Bmap::trusted(&trusted));
    if let Some(lines) = lines {
        lines.start(facts, Some(trusted.bmap.mapped_bytes()));
    }
    let label = format!("'{}'", args.target.display());
    let (show, terminal) = json_lines::human(&args.progress);
    let progress = Progress::start(Settings {
        total: Some(trusted.bmap.mapped_bytes()),
        show,
        terminal,
        psplash: None,
        dest: label,
        debug: messages::enabled(Level::Debug),
        json: lines.cloned(),
        dests: Vec::new(),
    })
    .context("cannot start the progress display")?;
    let mut events = ReadEvents(progress);
    let options = verify::Options {
        interrupt: interrupt.clone(),
    };
    let result = verify::verify(
        target,
        &trusted.bmap,
        trusted.self_check,
        &mut events,
        &options,
    );
    events.0.finish();
    let report = result.with_context(|| format!("cannot verify '{}'", args.target.display()))?;
    if args.json {
        print_json(args, &trusted, &report)?;
    } else {
        summarize(&args.target, &report);
    }
    Ok(report.all_good())
}

/// The bmap: `--bmap` (a path or URL), or found beside a regular file; a block
/// device has nothing beside it.
fn trusted_bmap(
    args: &VerifyArgs,
    target: &Target,
    remote: &remote::Options,
    interrupt: &Interrupt,
) -> Result<Trusted> {
    if args.bmap.is_none() && target.kind() == TargetKind::BlockDevice {
        bail!(
            "'{}' is a block device, which has no bmap beside it: name the bmap with \
             --bmap BMAP (a path or URL)",
            args.target.display()
        );
    }
    let image = Location::Local(args.target.clone());
    let found = super::signature::find_bmap(
        args.bmap.as_deref(),
        Some(&image),
        remote,
        interrupt,
        "no bmap file found beside the target: name it with --bmap (a file or URL)",
    )?;
    super::signature::trust_bmap(found, &args.signature, remote, interrupt)
}

/// Says what is about to be checked against what.
fn announce(target: &Target, trusted: &Trusted) {
    let bmap = &trusted.bmap;
    messages::info(format_args!(
        "verifying {} '{}' ({}) against bmap file '{}' (format {}): {} ranges, {} mapped \
         of a {} image",
        match target.kind() {
            TargetKind::BlockDevice => "block device",
            TargetKind::File => "file",
        },
        target.path().display(),
        human_size(target.size()),
        trusted.shown,
        bmap.version(),
        bmap.ranges().len(),
        human_size(bmap.mapped_bytes()),
        human_size(bmap.image_size())
    ));
    if target.seek() > 0 {
        messages::info(format_args!(
            "the image starts at offset {} ({}) of '{}'",
            target.seek(),
            human_size(target.seek()),
            target.path().display()
        ));
    }
    if !target.is_direct() {
        messages::debug(
            "no direct I/O here: every range is read through the page cache after it was \
             dropped from it",
        );
    }
}

/// The progress display's events: a check reads, it does not write, so the
/// synchronizing phase (nothing to sync) is not shown.
struct ReadEvents(Progress);

impl Events for ReadEvents {
    fn event(&mut self, event: Event) {
        if event != Event::Phase(Phase::Syncing) {
            let sender: &mut Sender<Event> = self.0.events();
            sender.event(event);
        }
    }
}

/// The closing lines: time, speed, the good count, and every bad range.
fn summarize(target: &Path, report: &Report) {
    let seconds = report.elapsed.as_secs_f64();
    messages::info(format_args!(
        "read {} in {}, {}/sec",
        human_size(report.bytes_read),
        human_time(seconds),
        human_size((report.bytes_read as f64 / seconds.max(1e-3)) as u64)
    ));
    messages::debug(format_args!(
        "{} read with O_DIRECT, {} through the page cache after dropping it",
        human_size(report.bytes_direct),
        human_size(report.bytes_buffered)
    ));
    if report.gpt_moved {
        messages::info(
            "the device's backup GPT was moved to its end (bmaptool copy does so on a larger \
             device): its first sectors were checked as the image has them",
        );
    }
    let total = report.ranges.len();
    let bad: Vec<_> = report.bad().collect();
    if report.unchecked() > 0 {
        messages::warning(format_args!(
            "{} ranges have no checksum in the bmap: they were not checked",
            report.unchecked()
        ));
    }
    for range in &bad {
        if let RangeVerdict::Bad { expected, actual } = &range.verdict {
            messages::error(format_args!(
                "bad range: blocks {}-{} (bytes {}-{}): read checksum {actual}, the bmap \
                 says {expected}",
                range.first_block,
                range.last_block,
                range.start,
                range.end - 1
            ));
        }
    }
    if bad.is_empty() {
        messages::info(format_args!(
            "{} of {total} ranges good: '{}' holds the image its bmap describes",
            report.good(),
            target.display()
        ));
    } else {
        messages::error(format_args!(
            "{} of {total} ranges good, {} bad: '{}' does not hold the image its bmap \
             describes",
            report.good(),
            bad.len(),
            target.display()
        ));
    }
}

/// `verify --json`: the document docs/json.md describes. Field names are stable.
#[derive(Debug, Serialize)]
struct JsonReport {
    target: String,
    target_kind: &'static str,
    target_size: u64,
    bmap: json::Bmap,
    ranges_total: usize,
    ranges_good: usize,
    ranges_bad: usize,
    ranges_unchecked: usize,
    bytes_read: u64,
    bytes_direct: u64,
    bytes_buffered: u64,
    gpt_moved: bool,
    seconds: f64,
    bad_ranges: Vec<JsonRange>,
    result: json::Status,
}

#[derive(Debug, Serialize)]
struct JsonRange {
    first_block: u64,
    last_block: u64,
    start: u64,
    end: u64,
    expected: String,
    actual: String,
}

fn print_json(args: &VerifyArgs, trusted: &Trusted, report: &Report) -> Result<()> {
    let bad_ranges: Vec<JsonRange> = report
        .bad()
        .filter_map(|r| match &r.verdict {
            RangeVerdict::Bad { expected, actual } => Some(JsonRange {
                first_block: r.first_block,
                last_block: r.last_block,
                start: r.start,
                end: r.end,
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            }),
            _ => None,
        })
        .collect();
    json::print(&JsonReport {
        target: args.target.display().to_string(),
        target_kind: match report.target_kind {
            TargetKind::BlockDevice => "block-device",
            TargetKind::File => "file",
        },
        target_size: report.target_size,
        bmap: json::Bmap::trusted(trusted),
        ranges_total: report.ranges.len(),
        ranges_good: report.good(),
        ranges_bad: bad_ranges.len(),
        ranges_unchecked: report.unchecked(),
        bytes_read: report.bytes_read,
        bytes_direct: report.bytes_direct,
        bytes_buffered: report.bytes_buffered,
        gpt_moved: report.gpt_moved,
        seconds: report.elapsed.as_secs_f64(),
        result: if bad_ranges.is_empty() {
            json::Status::Good
        } else {
            json::Status::Bad
        },
        bad_ranges,
    })
}
