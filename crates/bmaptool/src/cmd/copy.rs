//! `bmaptool copy [options] IMAGE DEST`: checks everything that can be checked before
//! the first byte is written (options, image, bmap and its checksum, sizes, the
//! destination's state), then runs the copy engine and reports what it did.

use std::ffi::OsStr;
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::copy::{self, Options};
use bmap::dest::{self, Dest, Kind, Removable, Setting, SettingChange};
use bmap::format::{self, Bmap, SelfCheck, human_size, human_time};
use bmap::source;
use bmap::source::remote::{self, Location};

use crate::cli::CopyArgs;
use crate::input;
use crate::messages::{self, Level};
use crate::progress::Renderer;

/// Runs `copy`.
pub fn run(args: &CopyArgs, interrupt: &Interrupt) -> Result<()> {
    if args.nobmap && args.bmap.is_some() {
        bail!("--nobmap and --bmap cannot be used together");
    }
    super::signature::check_options(args)?;
    let remote = remote::Options {
        interrupt: interrupt.clone(),
        ..super::network::remote_options()?
    };
    let image_location = if args.image == "-" {
        Location::Local(PathBuf::from("-"))
    } else {
        input::locate(&args.image).context("cannot open the image")?
    };
    let source::Opened {
        mut image,
        min_size,
        later,
        ..
    } = open_image(&args.image, &image_location, &remote)?;
    let bmap_ref = match (&args.bmap, args.nobmap) {
        (_, true) => None,
        // A location is refused only for its URL scheme, which the error names.
        (Some(name), false) => Some(BmapRef::new(
            input::locate(name).context("cannot open the bmap file")?,
        )),
        (None, false) => Some(discover(&args.image, &image_location, &remote)?),
    };
    check_not_overwriting_inputs(args, bmap_ref.as_ref().and_then(BmapRef::local))?;
    super::preflight::check_dest_is_not_an_input(
        args,
        &image_location,
        bmap_ref.as_ref().map(|b| &b.location),
    )?;
    let bmap = match bmap_ref {
        Some(bmap_ref) => Some(load_bmap(bmap_ref, &remote, args, interrupt)?),
        None => None,
    };
    if args.removable_device {
        check_removable(&args.dest)?;
    }
    if let Some((_, bmap)) = &bmap {
        super::preflight::fit_image(&mut image, &args.image.to_string_lossy(), bmap)?;
    }
    if let (Some((_, bmap)), Some(min)) = (&bmap, min_size)
        && min > bmap.image_size()
    {
        bail!(
            "the image '{}' holds at least {min} bytes ({}) but its bmap says {} bytes: the bmap \
             does not belong to this image",
            Path::new(&args.image).display(),
            human_size(min),
            bmap.image_size()
        );
    }

    let image_size = match &bmap {
        Some((_, bmap)) => Some(bmap.image_size()),
        None => image.size(),
    };
    let dest = open_dest(
        interrupt,
        &args.dest,
        &dest::Options {
            image_size,
            mapped_bytes: bmap
                .as_ref()
                .map_or(image.size(), |(_, b)| Some(b.mapped_bytes())),
            min_size,
            tune: true,
        },
    )?;
    report_tuning(&dest);
    let dest_label = match dest.kind() {
        Kind::BlockDevice => format!("block device '{}'", args.dest.display()),
        _ => format!("file '{}'", basename(&args.dest.to_string_lossy())),
    };
    let total = match &bmap {
        Some((shown, bmap)) => {
            describe(bmap);
            messages::info(format_args!(
                "copying image '{}' to {dest_label} using bmap file '{}'",
                basename(&args.image.to_string_lossy()),
                basename(shown)
            ));
            Some(bmap.mapped_bytes())
        }
        None => {
            messages::info(format_args!(
                "no bmap given, copy entire image to '{}'",
                args.dest.display()
            ));
            image.size()
        }
    };

    let renderer = Arc::new(Renderer::new(
        total,
        messages::enabled(Level::Info) && !messages::enabled(Level::Debug),
        std::io::stderr().is_terminal(),
        args.psplash_pipe.clone(),
    ));
    let options = Options {
        verify: !args.no_verify,
        interrupt: interrupt.clone(),
        progress: renderer.clone(),
    };
    let started = Instant::now();
    let result = copy::copy(image, bmap.as_ref().map(|(_, b)| b), dest, &options);
    renderer.finish();
    let outcome = result.map_err(|e| explain_failure(e, &args.dest))?;
    for notice in later.take() {
        messages::warning(notice);
    }
    let seconds = started.elapsed().as_secs_f64();

    messages::info(format_args!(
        "copying time: {}, copying speed {}/sec",
        human_time(seconds),
        human_size((outcome.bytes_written as f64 / seconds.max(1e-3)) as u64)
    ));
    let checked = if bmap.is_none() {
        "no bmap, so nothing to verify".to_owned()
    } else {
        format!(
            "{} of {} ranges verified",
            outcome.ranges_verified,
            outcome.ranges_verified + outcome.ranges_unverified
        )
    };
    messages::info(format_args!(
        "wrote {} of a {} image to {dest_label}; {checked}",
        human_size(outcome.bytes_written),
        human_size(outcome.image_size),
    ));
    if bmap.is_some() && !args.no_verify && outcome.ranges_unverified > 0 {
        messages::warning(format_args!(
            "{} ranges have no checksum in the bmap: their data was copied unverified",
            outcome.ranges_unverified
        ));
    }
    Ok(())
}

/// Adds what the user should know about the destination's state to a copy error.
fn explain_failure(error: copy::Error, dest: &Path) -> anyhow::Error {
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
) -> Result<source::Opened> {
    let opened = match location {
        _ if image == "-" => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot open standard input")?;
            let file = File::from(fd);
            source::tune_pipe(&file);
            // A regular file redirected to stdin has a known size, as in the reference.
            let size = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            // Recognising the format reads the first bytes, which may not come for a while.
            // Its errors say "cannot read image ..." themselves.
            crate::signals::blocking(&remote.interrupt, move || {
                source::open_stream(Box::new(file), None, size)
            })??
        }
        // Opening a FIFO waits for a writer: let a signal end that wait.
        Location::Local(path) => {
            // Its errors name the image and say what failed.
            let path = path.clone();
            crate::signals::blocking(&remote.interrupt, move || source::open(&path))??
        }
        Location::Url(url) => {
            let (url, options) = (url.clone(), remote.clone());
            let opened = crate::signals::blocking(&remote.interrupt, move || {
                source::open_url(&url, &options)
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
            basename(&shown(location)),
            opened.format
        ));
    }
    Ok(opened)
}

/// How a location may be printed: a path, or a URL without credentials.
fn shown(location: &Location) -> String {
    match location {
        Location::Local(path) => path.display().to_string(),
        Location::Url(url) => remote::redact(url),
    }
}

/// A bmap to read, and how to name it.
struct BmapRef {
    location: Location,
    shown: String,
    /// Its bytes, when discovery already fetched them.
    bytes: Option<Vec<u8>>,
}

impl BmapRef {
    fn new(location: Location) -> BmapRef {
        BmapRef {
            shown: shown(&location),
            location,
            bytes: None,
        }
    }

    fn local(&self) -> Option<&Path> {
        match &self.location {
            Location::Local(path) => Some(path),
            Location::Url(_) => None,
        }
    }
}

/// Reads and parses the bmap (its own checksum verified).
fn load_bmap(
    bmap: BmapRef,
    remote: &remote::Options,
    args: &CopyArgs,
    interrupt: &Interrupt,
) -> Result<BmapFile> {
    let no_verify = args.no_verify;
    let shown = bmap.shown.clone();
    let bytes = match (bmap.bytes, &bmap.location) {
        (Some(bytes), _) => bytes,
        (None, Location::Local(path)) => input::read(path, &input::BMAP, interrupt)
            .with_context(|| format!("cannot open bmap file '{shown}'"))?,
        (None, Location::Url(url)) => {
            let (url, options) = (url.clone(), remote.clone());
            crate::signals::blocking(interrupt, move || {
                remote::fetch(&url, &options, input::BMAP.bytes)
            })?
            // The server's error names the URL.
            .context("cannot open the bmap file")?
        }
    };
    let bytes = super::signature::verify(args, &bmap.location, &shown, bytes, remote, interrupt)?;
    let parsed =
        format::parse(&bytes).with_context(|| format!("cannot use bmap file '{shown}'"))?;
    for warning in &parsed.warnings {
        messages::warning(format_args!("bmap file '{shown}': {warning}"));
    }
    if parsed.self_check == SelfCheck::Absent {
        messages::debug(format_args!(
            "bmap file '{shown}' (format {}) carries no checksum of itself",
            parsed.bmap.version()
        ));
    }
    if parsed.bmap.checksum_kind().is_none() && !no_verify {
        messages::warning(format_args!(
            "bmap file '{shown}' (format {}) has no checksums: the copy will not be verified",
            parsed.bmap.version()
        ));
    }
    Ok((shown, parsed.bmap))
}

/// A parsed bmap and the name to show for it.
type BmapFile = (String, Bmap);

/// Finds the bmap beside the image in the reference's order; for a URL the candidates
/// are fetched, and one that is not found (404, or 403 as some stores answer) moves on.
fn discover(image: &OsStr, location: &Location, remote: &remote::Options) -> Result<BmapRef> {
    match location {
        _ if image == "-" => {}
        Location::Local(path) => {
            // The path, not the argument: a file:// URL names a local path.
            for candidate in bmap::discover::bmap_candidate_paths(path) {
                if candidate.is_file() {
                    messages::info(format_args!(
                        "discovered bmap file '{}'",
                        candidate.display()
                    ));
                    return Ok(BmapRef::new(Location::Local(candidate)));
                }
            }
        }
        Location::Url(url) => {
            for candidate in remote::bmap_candidates(url) {
                let (url, options) = (candidate.clone(), remote.clone());
                let fetched = crate::signals::blocking(&remote.interrupt, move || {
                    remote::fetch(&url, &options, input::BMAP.bytes)
                })?;
                match fetched {
                    Ok(bytes) => {
                        let mut found = BmapRef::new(Location::Url(candidate));
                        messages::info(format_args!("discovered bmap file '{}'", found.shown));
                        found.bytes = Some(bytes);
                        return Ok(found);
                    }
                    Err(e)
                        if e.is_not_found()
                            || matches!(e, remote::Error::Status { status: 403, .. }) =>
                    {
                        messages::debug(format_args!(
                            "no bmap at '{}'",
                            remote::redact(&candidate)
                        ));
                    }
                    Err(e) => return Err(e).context("cannot look for the bmap beside the image"),
                }
            }
        }
    }
    bail!(
        "bmap file not found, please, use --bmap to name it, or --nobmap to flash the whole \
         image without bmap"
    )
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
fn open_dest(interrupt: &Interrupt, path: &Path, options: &dest::Options) -> Result<Dest> {
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

fn report_tuning(dest: &Dest) {
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
