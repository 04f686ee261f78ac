//! What `copy` does for a block device besides writing the mapped ranges: the
//! fail-safe order (old partition tables wiped just before the first write, the
//! image's own written last; `--no-fail-safe` turns it off), `--discard` and
//! `--zero-holes` on the unmapped ranges (before the data is written), and
//! `--skip-unchanged`. Builds the copy's sink chain and says what each part did.

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::copy::failsafe::{TABLE_AREA, table_regions};
use bmap::copy::{
    self, DestWriter, GptMove, GptMoveSlot, HoldBack, ReadBack, SkipUnchanged, gpt_move_hook,
};
use bmap::dest::{self, Dest, Kind, Zeroed};
use bmap::format::human_size;

use crate::cli::CopyArgs;
use crate::messages;

/// The copy's last stage: held parts in front of the comparing stage in front of
/// the writer (each one passing everything on when its option is off).
pub type Chain = HoldBack<SkipUnchanged>;

/// What the copy's last stage does besides writing, and where it reports it.
pub struct Prepared {
    /// The sink chain.
    pub chain: Chain,
    /// What was done to the unmapped ranges before the copy.
    pub holes: Option<HolesDone>,
    /// What the GPT move did, once the copy finished (`None` when not tried).
    pub gpt: Option<GptMoveSlot>,
}

/// What was done to the unmapped ranges before the copy.
#[derive(Debug, Clone, Copy)]
pub struct HolesDone {
    zero: bool,
    bytes: u64,
    ranges: usize,
    by_device: bool,
}

/// Refuses option combinations that cannot work, before anything is opened.
pub fn check_options(args: &CopyArgs) -> Result<()> {
    if args.nobmap && (args.discard || args.zero_holes) {
        bail!(
            "--{} acts on the image's unmapped ranges, which only a bmap tells: drop --nobmap \
             (give --bmap), or drop --{0}",
            if args.discard {
                "discard"
            } else {
                "zero-holes"
            }
        );
    }
    Ok(())
}

/// Treats the holes as asked, then builds the chain in front of `dest`.
pub fn prepare(
    args: &CopyArgs,
    plan: &copy::Plan,
    dest: Dest,
    interrupt: &Interrupt,
) -> Result<Prepared> {
    let holes = treat_holes(args, plan, &dest, interrupt)?;
    let block = dest.kind() == Kind::BlockDevice;
    let failsafe = block && !args.no_fail_safe && super::seek::whole_device(args);
    let device_size = dest.device_size();
    let mut writer = DestWriter::new(dest);
    if args.verify_written {
        writer = writer
            .read_back(ReadBack::new(args.write_retries))
            .context("cannot start reading back what is written")?;
    }
    if failsafe && let Some(size) = device_size {
        writer = writer.wipe_before_first_write(table_regions(size));
    }
    if args.skip_unchanged && !block {
        messages::info(
            "--skip-unchanged compares with a block device only: DEST is written in full",
        );
    }
    let skip = SkipUnchanged::new(writer, args.skip_unchanged && block);
    let mut chain = if failsafe {
        HoldBack::new(skip, plan.image_size())
    } else {
        HoldBack::pass_through(skip)
    };
    let gpt = match (plan.image_size(), device_size) {
        (Some(image), Some(device))
            if block && !args.no_gpt_move && super::seek::whole_device(args) && device > image =>
        {
            let slot = GptMoveSlot::default();
            chain.before_release(gpt_move_hook(image, mapped_ends(plan, image), slot.clone()));
            Some(slot)
        }
        _ => None,
    };
    Ok(Prepared { chain, holes, gpt })
}

/// Whether the image's bmap maps a span, for the GPT move (which only needs the
/// spans in the image's first and last MiB: the headers are there).
fn mapped_ends(plan: &copy::Plan, image: u64) -> impl Fn(u64, u64) -> bool + Send + 'static {
    let near = |s: &&copy::Span| {
        let end = s.start + s.len.unwrap_or(0);
        s.start < TABLE_AREA || end > image.saturating_sub(TABLE_AREA)
    };
    let spans: Vec<(u64, u64)> = plan
        .spans()
        .iter()
        .filter(near)
        .map(|s| (s.start, s.start + s.len.unwrap_or(0)))
        .collect();
    move |start, end| spans.iter().any(|&(a, b)| a <= start && end <= b)
}

/// Bytes per call when zeroing or discarding, so that an interrupt is seen between.
const HOLE_STEP: u64 = 64 << 20;

/// Discards or zeroes the plan's unmapped ranges on a block device.
fn treat_holes(
    args: &CopyArgs,
    plan: &copy::Plan,
    dest: &Dest,
    interrupt: &Interrupt,
) -> Result<Option<HolesDone>> {
    if !(args.discard || args.zero_holes) {
        return Ok(None);
    }
    let zero = args.zero_holes;
    let flag = if zero { "--zero-holes" } else { "--discard" };
    match dest.kind() {
        Kind::BlockDevice => {}
        // At a seek, the file keeps its old bytes in the image's holes.
        Kind::File if args.seek.is_some() => {}
        Kind::File => {
            messages::info(format_args!(
                "{flag}: '{}' is a regular file, emptied before writing: its unmapped ranges \
                 already read as zeros, nothing to do",
                dest.path().display()
            ));
            return Ok(None);
        }
        Kind::Other => bail!(
            "{flag} needs a block device (or a regular file) as DEST, not '{}'",
            dest.path().display()
        ),
    }
    let holes = plan.holes().unwrap_or_default();
    let mut done = HolesDone {
        zero,
        bytes: 0,
        ranges: holes.len(),
        by_device: true,
    };
    for &(offset, len) in &holes {
        let mut at = offset;
        while at < offset + len {
            if interrupt.is_raised() {
                bail!(copy::Error::Interrupted);
            }
            let n = (offset + len - at).min(HOLE_STEP);
            if !treat_hole(dest, &mut done, at, n)? {
                return Ok(None);
            }
            done.bytes += n;
            at += n;
        }
    }
    if zero {
        // Zeros written through the page cache, or by the device, before any data:
        // durable before the copy goes on.
        dest.sync()
            .context("cannot synchronize after zeroing the holes")?;
    }
    Ok(Some(done))
}

/// Zeroes or discards `n` bytes at `at`; false when the device cannot discard (said).
fn treat_hole(dest: &Dest, done: &mut HolesDone, at: u64, n: u64) -> Result<bool> {
    if done.zero {
        let how = dest.zero_out(at, n).with_context(|| {
            format!(
                "cannot zero the unmapped bytes {at}-{} (--zero-holes)",
                at + n
            )
        })?;
        done.by_device &= how == Zeroed::Device;
        return Ok(true);
    }
    match dest.discard(at, n) {
        Ok(()) => Ok(true),
        Err(e) if unsupported(&e) => {
            messages::warning(format_args!(
                "--discard: '{}' does not support discarding: nothing discarded",
                dest.path().display()
            ));
            Ok(false)
        }
        Err(e) => Err(e).context(format!("cannot discard the bytes {at}-{}", at + n)),
    }
}

/// Whether a discard failed because the device cannot discard.
fn unsupported(error: &dest::Error) -> bool {
    let dest::Error::Io { source, .. } = error else {
        return false;
    };
    matches!(
        source.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL)
    )
}

/// One line for each thing done besides the copy itself.
pub fn summarize(prepared: &Prepared, dest_label: &str) {
    summarize_parts(
        &prepared.chain,
        prepared.holes,
        prepared.gpt.as_ref(),
        dest_label,
    );
}

/// [`summarize`] for a chain whose parts were taken apart (a copy to several DESTs).
pub fn summarize_parts(
    chain: &Chain,
    holes: Option<HolesDone>,
    gpt: Option<&GptMoveSlot>,
    dest_label: &str,
) {
    if let Some(h) = holes {
        let (verb, how) = match (h.zero, h.by_device) {
            (true, true) => ("zeroed", " (BLKZEROOUT)"),
            (true, false) => ("zeroed", " (by writing zeros)"),
            (false, _) => ("discarded", ""),
        };
        messages::info(format_args!(
            "{verb} {} in the image's {} unmapped ranges on {dest_label}{how}",
            human_size(h.bytes),
            h.ranges
        ));
    }
    let writer = chain.inner().inner();
    if chain.holds() {
        let wipe = writer.wipe();
        let (zeroed, by_device) = wipe.zeroed();
        let wiped = if wipe.is_done() {
            format!(
                "wiped the old partition tables ({} at the device's start and end{}) before \
                 writing, ",
                human_size(zeroed),
                if by_device { ", BLKZEROOUT" } else { "" }
            )
        } else {
            "nothing else was written, so nothing was wiped; ".to_owned()
        };
        messages::info(format_args!(
            "fail-safe order: {wiped}wrote the image's partition-table areas ({}) last",
            human_size(chain.held_bytes())
        ));
    }
    if let Some(slot) = gpt {
        summarize_gpt(slot, dest_label);
    }
    let skip = chain.inner().stats();
    if skip.compared > 0 {
        messages::info(format_args!(
            "skip-unchanged: {} of the {} compared were unchanged and not written; wrote {}{}",
            human_size(skip.skipped),
            human_size(skip.compared),
            human_size(skip.written),
            if skip.gave_up {
                " (stopped comparing after 64 MiB in a row differed)"
            } else {
                ""
            }
        ));
    }
}

/// What the GPT move did: moved (and how the MBR changed), or why not.
fn summarize_gpt(slot: &GptMoveSlot, dest_label: &str) {
    let done = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match done {
        Some(GptMove::Moved(relocation)) => messages::info(format_args!(
            "moved the image's backup GPT from LBA {} to the end of {dest_label} (LBA {}): the \
             partitions can grow into the rest of the device (--no-gpt-move keeps the \
             image's bytes as they are)",
            relocation.old_backup_lba, relocation.new_backup_lba
        )),
        // An image without a GPT needs no word.
        Some(GptMove::NotMoved(bmap::gpt::NotMoved::NoGpt)) | None => {}
        Some(GptMove::HeadersNotMapped) => messages::warning(format_args!(
            "backup GPT not moved: the bmap does not map both of the image's GPT headers, so \
             the table found may be a stale one left in the image's holes"
        )),
        Some(GptMove::ReadFailed(error)) => messages::warning(format_args!(
            "backup GPT not moved: {error}; the image was written as it is"
        )),
        Some(GptMove::NotMoved(reason)) => {
            messages::warning(format_args!("backup GPT not moved: {reason}"))
        }
    }
}
