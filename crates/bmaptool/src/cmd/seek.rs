//! `copy --seek OFFSET`: the image written OFFSET bytes into DEST (a partition image
//! into a whole disk or disk image). What it allows and refuses, before anything is
//! written, and what DEST is opened with. The engine sees DEST as a window that starts
//! at OFFSET (`dest::Options::seek`); everything else (holes, skip-unchanged,
//! read-back) works on the image's offsets inside it.
//!
//! Decisions: `--seek 0` is a seek too (DEST kept, not truncated: "write into DEST",
//! not "DEST is the image"). OFFSET is a multiple of 512 and of the bmap's block size
//! (of 512 alone with `--nobmap`); DEST is a block device or a regular file (a FIFO or character
//! device cannot be written at an offset); the fail-safe order (which wipes and holds
//! back the *device's* partition-table areas) and the GPT move (which puts the
//! *device's* backup GPT at its end) are about a whole device, so with a seek they are
//! off, said once when they would have been on.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{Result, bail};
use bmap::copy;
use bmap::dest;
use bmap::format::human_size;

use crate::cli::CopyArgs;
use crate::messages;

/// The unit every seek is a multiple of: the smallest logical block there is.
const SECTOR: u64 = 512;

/// A copy's seek, checked.
#[derive(Debug, Clone, Copy)]
pub struct Seek {
    /// Where the image starts in DEST (`None` without `--seek`).
    pub offset: Option<u64>,
    /// DEST is an existing regular file, kept (not truncated) by the seek.
    kept_file: bool,
}

/// Refuses a seek that cannot work with this plan and DEST, and says what a seek turns
/// off; nothing for a copy without `--seek`. Run before DEST is opened.
pub fn check(args: &CopyArgs, dest: &Path, plan: &copy::Plan) -> Result<Seek> {
    let meta = std::fs::metadata(dest).ok();
    let kind = meta.as_ref().map(std::fs::Metadata::file_type);
    let checked = Seek {
        offset: args.seek,
        kept_file: args.seek.is_some() && kind.is_some_and(|k| k.is_file()),
    };
    let Some(seek) = args.seek else {
        return Ok(checked);
    };
    let block = plan.bmap().map_or(SECTOR, |b| b.block_size());
    let unit = lcm(block, SECTOR);
    if !seek.is_multiple_of(unit) {
        bail!(
            "--seek {seek} is not a multiple of {}: the image must start on a block \
             boundary of DEST; the nearest offsets are {} and {}",
            unit_name(plan, unit),
            seek / unit * unit,
            (seek / unit).saturating_add(1).saturating_mul(unit)
        );
    }
    let image = plan.image_size().unwrap_or(0);
    if seek
        .checked_add(image)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        bail!(
            "--seek {seek} ({}) puts the image's end beyond the largest offset a file or \
             device can have ({} bytes)",
            human_size(seek),
            i64::MAX
        );
    }
    let device = kind.is_some_and(|k| k.is_block_device());
    if let Some(kind) = kind
        && !(kind.is_file() || device)
    {
        bail!(
            "--seek needs a block device or a regular file as DEST: '{}' is neither, and \
             cannot be written at an offset",
            dest.display()
        );
    }
    announce(args, dest, plan, seek, device);
    Ok(checked)
}

/// Says where the image goes, and what the seek turns off.
fn announce(args: &CopyArgs, dest: &Path, plan: &copy::Plan, seek: u64, device: bool) {
    if device && !args.no_fail_safe {
        messages::info(
            "--seek: the fail-safe order is off (it would wipe the partition tables at the \
             device's start and end, outside the image's place); the image is written in \
             the plain order",
        );
    }
    if device && !args.no_gpt_move {
        messages::debug("--seek: the backup GPT is not moved (that is for a whole-device image)");
    }
    let end = plan.image_size().map_or_else(
        || "up to where the image ends".to_owned(),
        |s| format!("up to byte {}", seek.saturating_add(s)),
    );
    messages::info(format_args!(
        "writing the image at offset {seek} ({}) of '{}', {end}; DEST's other bytes are \
         kept, and so are its old bytes in the image's holes{}",
        human_size(seek),
        dest.display(),
        if args.zero_holes || args.discard {
            ""
        } else {
            " (--zero-holes makes them zeros)"
        }
    ));
}

impl Seek {
    /// What DEST is opened with: the plan's sizes, at the seek.
    pub fn dest_options(&self, plan: &copy::Plan) -> dest::Options {
        dest::Options {
            seek: self.offset,
            ..plan.dest_options(true)
        }
    }

    /// Adds what an existing regular file written at a seek holds after a failed copy.
    pub fn explain(&self, error: anyhow::Error, dest: &Path) -> anyhow::Error {
        if !self.kept_file {
            return error;
        }
        error.context(format!(
            "'{}' keeps its bytes before offset {} and after the image, and its old length, \
             but the image's place now holds a partial image",
            dest.display(),
            self.offset.unwrap_or(0)
        ))
    }
}

/// Whether the device-wide parts of `copy` (the fail-safe order, the GPT move) apply:
/// not when the image goes at a seek.
pub fn whole_device(args: &CopyArgs) -> bool {
    args.seek.is_none()
}

fn unit_name(plan: &copy::Plan, unit: u64) -> String {
    match plan.bmap() {
        Some(bmap) if bmap.block_size() == unit => {
            format!("the bmap's block size ({unit} bytes)")
        }
        Some(bmap) => format!(
            "{unit} bytes (the bmap's block size, {}, and a 512-byte sector)",
            bmap.block_size()
        ),
        None => format!("{unit} bytes (a sector)"),
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a.max(1), b.max(1));
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a.max(1) / x * b.max(1)
}
