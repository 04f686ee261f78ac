//! `bmaptool copy [options] IMAGE DEST...`: checks everything that can be checked before
//! the first byte is written (options, image, bmap and its checksum, sizes, the
//! destination's state), then runs the copy engine and reports what it did. Several
//! DESTs are written at once by `multi.rs`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Seek;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::copy::{self, Options, ReadBackStats};
use bmap::dest::{self, Dest, Kind, Removable, Setting, SettingChange};
use bmap::format::{Bmap, SelfCheck, human_size, human_time};
use bmap::source;
use bmap::source::remote::{self, Location};
use bmap::trust::{self, Trusted};

use crate::cli::CopyArgs;
use crate::input;
use crate::messages::{self, Level};
use crate::progress::json::{DestFacts, Facts, JsonLines};
use crate::progress::options as json_lines;
use crate::progress::{Progress, Settings};

/// Runs `copy`, then writes the JSON result when JSON lines were asked for.
pub fn run(args: &CopyArgs, interrupt: &Interrupt) -> Result<()> {
    let lines = json_lines::open(&args.progress, "copy")?;
    let mut facts = Facts {
        image: Some(args.image.to_string_lossy().into_owned()),
        destinations: args
            .dest
            .iter()
            .map(|path| DestFacts {
                path: path.display().to_string(),
                ..DestFacts::default()
            })
            .collect(),
        ..Facts::default()
    };
    let result = copy(args, interrupt, lines.as_ref(), &mut facts);
    json_lines::finish(
        lines.as_ref(),
        &facts,
        &result,
        interrupt.is_raised(),
        |()| None,
    );
    result
}

/// Refuses options that cannot go together (a usage error).
fn check_options(args: &CopyArgs) -> Result<()> {
    if args.nobmap && args.bmap.is_some() {
        bail!("--nobmap and --bmap cannot be used together");
    }
    super::signature::check_options(&args.signature, args.nobmap)?;
    super::reflash::check_options(args)
}

/// The copy: the trusted bmap, the plan (image and bmap checked against each
/// other), the destination, then the plan runs while its events are rendered;
/// `facts` gathers what the JSON result says.
fn copy(
    args: &CopyArgs,
    interrupt: &Interrupt,
    lines: Option<&JsonLines>,
    facts: &mut Facts,
) -> Result<()> {
    check_options(args).map_err(super::errcode::usage)?;
    let max_lag = match args.dest.len() {
        1 => None,
        _ => Some(super::multi::max_lag()?),
    };
    let remote = remote::Options {
        interrupt: interrupt.clone(),
        ..super::network::remote_options()?
    };
    let image_location = if args.image == "-" {
        Location::Local(PathBuf::from("-"))
    } else {
        input::locate(&args.image).context("cannot open the image")?
    };
    let limits = source::Limits {
        max_window: args.max_window,
    };
    let opened = open_image(&args.image, &image_location, &remote, limits)?;
    let bmap = trusted_bmap(args, &image_location, &remote, interrupt)?;
    if args.removable_device {
        for path in &args.dest {
            check_removable(path)?;
        }
    }
    let later = opened.later.clone();
    let shown_bmap = bmap.as_ref().map(|trusted| trusted.shown.clone());
    facts.bmap = bmap.as_ref().map(super::json::Bmap::trusted);
    let plan = plan(args, opened, bmap.map(|trusted| trusted.bmap))?;
    facts.image_size = plan.image_size();
    for path in &args.dest {
        check_readable(args, path)?;
    }
    let [dest_path] = args.dest.as_slice() else {
        let max_lag = max_lag.expect("the lag rule's time is read for several DESTs");
        let shown_bmap = shown_bmap.as_deref();
        let json = super::multi::Json { lines, facts };
        return super::multi::run(args, plan, shown_bmap, &later, interrupt, max_lag, json);
    };
    let seek = super::seek::check(args, dest_path, &plan)?;
    let dest = open_dest(interrupt, dest_path, &seek.dest_options(&plan))?;
    report_tuning(&dest);
    let dest_label = label(&dest, dest_path);
    announce(args, &plan, shown_bmap.as_deref(), &dest_label);
    let mut prepared = super::reflash::prepare(args, &plan, dest, interrupt)?;
    if let Some(lines) = lines {
        lines.start(facts, plan.bytes_to_write());
    }
    let (show, terminal) = json_lines::human(&args.progress);
    let mut progress = Progress::start(Settings {
        total: plan.bytes_to_write(),
        show,
        terminal,
        psplash: args.psplash_pipe.clone(),
        dest: dest_label.clone(),
        debug: messages::enabled(Level::Debug),
        json: lines.cloned(),
        dests: Vec::new(),
    })
    .context("cannot start the progress display")?;
    let options = Options {
        verify: !args.no_verify,
        interrupt: interrupt.clone(),
        ..Options::default()
    };
    let has_bmap = plan.bmap().is_some();
    let result = plan.run(&mut prepared.chain, progress.events(), &options);
    progress.finish();
    let read_back = prepared.chain.inner().inner().read_back_stats();
    facts.destinations[0].bytes_read_back = read_back.map(|stats| stats.bytes);
    facts.destinations[0].bytes_skipped = args
        .skip_unchanged
        .then(|| prepared.chain.inner().stats().skipped);
    let outcome = result.map_err(|e| seek.explain(explain_failure(e, dest_path), dest_path))?;
    for notice in later.take() {
        messages::warning(notice);
    }
    summarize(args, &outcome, has_bmap, &dest_label);
    if let Some(stats) = read_back {
        summarize_read_back(&stats, &dest_label);
    }
    super::reflash::summarize(&prepared, &dest_label);
    Ok(())
}

/// How a destination is named in messages.
pub(super) fn label(dest: &Dest, path: &Path) -> String {
    match dest.kind() {
        Kind::BlockDevice => format!("block device '{}'", path.display()),
        _ => format!("file '{}'", basename(&path.to_string_lossy())),
    }
}

/// Refuses `--verify-written` for a destination that cannot be read back, before it
/// is opened (opening a FIFO would wait for a reader).
fn check_readable(args: &CopyArgs, dest: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(dest) else {
        return Ok(());
    };
    let kind = meta.file_type();
    if args.verify_written && !(kind.is_file() || kind.is_block_device()) {
        bail!(
            "--verify-written cannot check '{}': it is neither a regular file nor a block \
             device, so nothing written to it can be read back; drop --verify-written",
            dest.display()
        );
    }
    Ok(())
}

/// The line that says what was read back.
pub(super) fn summarize_read_back(stats: &ReadBackStats, dest_label: &str) {
    let rewritten = match stats.ranges_rewritten {
        0 => String::new(),
        n => format!(
            ", {n} rewritten ({} rewrite(s) of parts that read back wrong)",
            stats.rewrites
        ),
    };
    let cache = if stats.through_page_cache {
        format!(" (read through the page cache: {dest_label} refused O_DIRECT)")
    } else {
        String::new()
    };
    messages::info(format_args!(
        "read back {} ranges ({}): all matched{rewritten}{cache}",
        stats.ranges,
        human_size(stats.bytes)
    ));
}

/// The bmap to copy with, found, fetched, signature-checked and parsed by the
/// library's trust step; `None` with `--nobmap`. DEST is checked against the inputs
/// once the bmap's location is known, before anything is read from it.
fn trusted_bmap(
    args: &CopyArgs,
    image_location: &Location,
    remote: &remote::Options,
    interrupt: &Interrupt,
) -> Result<Option<Trusted>> {
    if args.nobmap {
        super::preflight::check_dest_is_not_an_input(args, image_location, None)?;
        return Ok(None);
    }
    let image = (args.image != "-").then_some(image_location);
    let found = super::signature::find_bmap(
        args.bmap.as_deref(),
        image,
        remote,
        interrupt,
        super::signature::NOT_FOUND,
    )?;
    let local = match &found.location {
        Location::Local(path) => Some(path.as_path()),
        Location::Url(_) => None,
    };
    check_not_overwriting_inputs(args, local)?;
    super::preflight::check_dest_is_not_an_input(args, image_location, Some(&found.location))?;
    let trusted = super::signature::trust_bmap(found, &args.signature, remote, interrupt)?;
    let shown = &trusted.shown;
    let version = trusted.bmap.version();
    if trusted.self_check == SelfCheck::Absent {
        messages::debug(format_args!(
            "bmap file '{shown}' (format {version}) carries no checksum of itself"
        ));
    }
    if trusted.bmap.checksum_kind().is_none() && !args.no_verify {
        messages::warning(format_args!(
            "bmap file '{shown}' (format {version}) has no checksums: the copy will not be \
             verified"
        ));
    }
    Ok(Some(trusted))
}

/// The image and the bmap checked against each other, once (see [`copy::Plan::new`]).
fn plan(args: &CopyArgs, opened: source::Opened, bmap: Option<Bmap>) -> Result<copy::Plan> {
    let shown = Path::new(&args.image).display().to_string();
    let plan = copy::Plan::new(opened.image, bmap, opened.min_size)
        .with_context(|| format!("cannot copy the image '{shown}'"))?;
    if let (Some(device), Some(wanted)) = (plan.device_size(), plan.image_size()) {
        messages::info(format_args!(
            "reading the first {wanted} bytes ({}) of block device '{shown}' ({}), the \
             image's size in its bmap",
            human_size(wanted),
            human_size(device)
        ));
    }
    Ok(plan)
}

/// Says what is about to be copied where.
pub(super) fn announce(
    args: &CopyArgs,
    plan: &copy::Plan,
    shown_bmap: Option<&str>,
    dest_label: &str,
) {
    match (plan.bmap(), shown_bmap) {
        (Some(bmap), Some(shown)) => {
            describe(bmap);
            messages::info(format_args!(
                "copying image '{}' to {dest_label} using bmap file '{}'",
                basename(&args.image.to_string_lossy()),
                basename(shown)
            ));
        }
        _ => messages::info(format_args!(
            "no bmap given, copy entire image to {}",
            match args.dest.as_slice() {
                [one] => format!("'{}'", one.display()),
                _ => dest_label.to_owned(),
            }
        )),
    }
}

/// The closing lines: time and speed (the same average the bar showed), what was
/// written and verified.
pub(super) fn summarize(
    args: &CopyArgs,
    outcome: &copy::Outcome,
    has_bmap: bool,
    dest_label: &str,
) {
    let seconds = outcome.timings.copying().as_secs_f64();
    messages::info(format_args!(
        "copying time: {}, copying speed {}/sec",
        human_time(seconds),
        human_size((outcome.bytes_written as f64 / seconds.max(1e-3)) as u64)
    ));
    messages::debug(format_args!(
        "checking {}, writing {}, synchronizing {}",
        human_time(outcome.timings.checking.as_secs_f64()),
        human_time(outcome.timings.writing.as_secs_f64()),
        human_time(outcome.timings.syncing.as_secs_f64()),
    ));
    let checked = if has_bmap {
        format!(
            "{} of {} ranges verified",
            outcome.ranges_verified,
            outcome.ranges_verified + outcome.ranges_unverified
        )
    } else {
        "no bmap, so nothing to verify".to_owned()
    };
    messages::info(format_args!(
        "wrote {} of a {} image to {dest_label}; {checked}",
        human_size(outcome.bytes_written),
        human_size(outcome.image_size),
    ));
    if has_bmap && !args.no_verify && outcome.ranges_unverified > 0 {
        messages::warning(format_args!(
            "{} ranges have no checksum in the bmap: their data was copied unverified",
            outcome.ranges_unverified
        ));
    }
}

/// Adds what the user should know about the destination's state to a copy error.
pub(super) fn explain_failure(error: copy::Error, dest: &Path) -> anyhow::Error {
    let note = match &error {
        copy::Error::Interrupted => return anyhow::Error::new(error),
        _ if std::fs::metadata(dest).is_ok_and(|m| m.file_type().is_block_device()) => {
            format!(
                "'{}' now holds a partial image: do not use it",
                dest.display()
            )
        }
        _ => String::new(),
    };
    let error = anyhow::Error::new(error);
    if note.is_empty() {
        error
    } else {
        error.context(note)
    }
}

fn open_image(
    image: &OsStr,
    location: &Location,
    remote: &remote::Options,
    limits: source::Limits,
) -> Result<source::Opened> {
    let opened = match location {
        _ if image == "-" => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot open standard input")?;
            let mut file = File::from(fd);
            source::tune_pipe(&file);
            let regular = file.metadata().ok().filter(|m| m.is_file());
            match regular {
                // A regular file redirected to stdin from its start is read as the file
                // it is: at offsets, holes skipped (a stream reads every hole's zeroes).
                // One that says it is empty may not be (/proc): it is read through.
                Some(m) if m.len() > 0 && file.stream_position().is_ok_and(|at| at == 0) => {
                    source::open_file_with(file, Path::new("-"), &limits)?
                }
                // Otherwise its size is known, as in the reference. Recognising the
                // format reads the first bytes, which may not come for a while. Its
                // errors say "cannot read image ..." themselves.
                _ => {
                    let size = regular.map(|m| m.len());
                    crate::signals::blocking(&remote.interrupt, move || {
                        source::open_stream_with(Box::new(file), None, size, &limits)
                    })??
                }
            }
        }
        // Opening a FIFO waits for a writer: let a signal end that wait.
        Location::Local(path) => {
            // Its errors name the image and say what failed.
            let path = path.clone();
            crate::signals::blocking(&remote.interrupt, move || source::open_with(&path, &limits))??
        }
        Location::Url(url) => {
            let (url, options) = (url.clone(), remote.clone());
            let opened = crate::signals::blocking(&remote.interrupt, move || {
                source::open_url_with(&url, &options, &limits)
            })?;
            opened.map_err(|e| match e {
                // A server's or a network's error names the URL, not what it is.
                source::Error::Remote(_) => anyhow::Error::new(e).context("cannot open the image"),
                e => anyhow::Error::new(e),
            })?
        }
    };
    for notice in &opened.notices {
        messages::warning(notice);
    }
    if !opened.format.is_raw() {
        messages::info(format_args!(
            "reading '{}' as {}",
            basename(&trust::shown(location)),
            opened.format
        ));
    }
    Ok(opened)
}

/// Refuses a bmap given as the image itself, as the reference does (by path, before
/// the bmap is parsed); DEST is compared with the inputs by [`super::preflight`].
fn check_not_overwriting_inputs(args: &CopyArgs, bmap: Option<&Path>) -> Result<()> {
    if let Some(bmap) = bmap
        && bmap == Path::new(&args.image)
    {
        bail!(
            "Make sure you are writing your image and not the bmap file (you specified the \
             same path for them)"
        );
    }
    Ok(())
}

/// Opens DEST. Opening a FIFO (or a character device such as a serial line) may wait
/// for the other end indefinitely, and creates nothing: let a signal end that wait.
pub(super) fn open_dest(
    interrupt: &Interrupt,
    path: &Path,
    options: &dest::Options,
) -> Result<Dest> {
    let waits = std::fs::metadata(path).is_ok_and(|m| {
        let kind = m.file_type();
        !(kind.is_file() || kind.is_dir() || kind.is_block_device())
    });
    Ok(if waits {
        let (path, options) = (path.to_owned(), options.clone());
        crate::signals::blocking(interrupt, move || Dest::open(&path, &options))??
    } else {
        Dest::open(path, options)?
    })
}

fn check_removable(dest: &Path) -> Result<()> {
    let meta = std::fs::metadata(dest).map_err(|_| {
        anyhow::anyhow!(
            "destination '{}' does not exist, but --removable-device expects a removable \
             block device",
            dest.display()
        )
    })?;
    if !meta.file_type().is_block_device() {
        bail!(
            "destination '{}' is not a block device, but --removable-device expects a \
             removable block device",
            dest.display()
        );
    }
    let verdict = dest::removable(dest)
        .with_context(|| format!("unable to detect removability of '{}'", dest.display()))?;
    let rule = match verdict {
        Removable::Flag => "the kernel marks it removable",
        Removable::Usb => "it is on a USB bus",
        Removable::Mmc => "it is an MMC/SD card",
        Removable::No(name) => bail!(
            "destination '{}' ({name}) is not a removable device: the kernel does not mark it \
             removable and it is on neither a USB nor an MMC/SD bus; drop \
             --removable-device to write to it anyway",
            dest.display()
        ),
    };
    messages::info(format_args!(
        "'{}' counts as removable: {rule}",
        dest.display()
    ));
    Ok(())
}

fn describe(bmap: &Bmap) {
    messages::info(format_args!("block map format version {}", bmap.version()));
    let mapped = bmap.mapped_blocks();
    let blocks = bmap.blocks_count();
    messages::info(format_args!(
        "{blocks} blocks of size {} ({}), mapped {mapped} blocks ({} or {:.1}%)",
        bmap.block_size(),
        human_size(bmap.image_size()),
        human_size(mapped.saturating_mul(bmap.block_size())),
        mapped as f64 * 100.0 / blocks.max(1) as f64
    ));
}

pub(super) fn report_tuning(dest: &Dest) {
    for change in dest.setting_changes() {
        match change {
            SettingChange::Changed { path, old, .. } => {
                messages::debug(format_args!(
                    "set {} (was '{old}') for the copy",
                    path.display()
                ));
            }
            SettingChange::Unchanged(_) => {}
            SettingChange::Failed {
                setting: Setting::MaxRatio,
                reason,
            } => {
                messages::warning(format_args!(
                    "failed to disable excessive buffering, expect worse system responsiveness ({reason})"
                ));
            }
            SettingChange::Failed {
                setting: Setting::Scheduler,
                reason,
            } => {
                messages::info(format_args!(
                    "failed to enable I/O optimization, expect suboptimal speed ({reason})"
                ));
            }
        }
    }
}

/// The last path component of a path or URL, without query or fragment.
fn basename(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    path.rsplit('/').next().unwrap_or(path).to_owned()
}
