//! Moving an image's backup GPT to the end of a larger block device, as part of a
//! copy: a [`ReleaseHook`] for [`HoldBack`](super::HoldBack) that runs once every
//! other byte is written and flushed. It reads the image's GPT from the held first MiB
//! (or from the device, for what is not held), plans the move with
//! [`gpt::plan_relocation`], patches the primary header and the protective MBR in the
//! held bytes (or writes them, when they are not held), and returns the backup's
//! sectors at the device's end as extra writes, which go before the held parts: at
//! every step the device holds a GPT that is either absent (wiped by the fail-safe
//! order) or valid.

use std::io;
use std::sync::{Arc, Mutex};

use super::failsafe::{ExtraWrite, Held, ReleaseHook};
use crate::dest::Dest;
use crate::gpt::{self, NotMoved, ReadFn, Relocation};

/// What the GPT move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptMove {
    /// The backup GPT now ends the device.
    Moved(Relocation),
    /// Nothing was moved, and why.
    NotMoved(NotMoved),
    /// The image has a GPT, but the bmap does not map both its headers: the table on
    /// the device may be a stale one the image's holes left, so it is not moved.
    HeadersNotMapped,
    /// Reading the device to plan the move failed: nothing was moved, and the copy
    /// went on (the move is an extra; the image's own bytes were all written).
    ReadFailed(String),
}

/// Where the hook leaves what it did, for the caller to report after the copy.
pub type GptMoveSlot = Arc<Mutex<Option<GptMove>>>;

/// A hook that moves the backup GPT of an image of `image_size` bytes to the end of
/// the block device the copy writes to, and records what it did in `slot`. On a
/// destination that is not a block device it does nothing; on one not larger than
/// the image it records [`NotMoved`] and changes nothing. `mapped(start, end)` says
/// whether the image's bmap maps those bytes: a GPT is moved only when both its
/// headers are the image's bytes, never a stale table the image's holes left on the
/// device.
pub fn gpt_move_hook(
    image_size: u64,
    mapped: impl Fn(u64, u64) -> bool + Send + 'static,
    slot: GptMoveSlot,
) -> ReleaseHook {
    Box::new(move |held: &mut Held, dest: Option<&Dest>| {
        let (Some(dest), Some(device_size), Some(sector)) = (
            dest,
            dest.and_then(Dest::device_size),
            dest.and_then(Dest::logical_block_size),
        ) else {
            return Ok(Vec::new());
        };
        let planned = {
            let reader = ReadFn(|buf: &mut [u8], offset: u64| read(dest, held, buf, offset));
            gpt::plan_relocation(&reader, image_size, device_size, sector)
        };
        let (extra, done) = match planned {
            Ok(Ok(relocation)) if !headers_mapped(&mapped, image_size, relocation.sector) => {
                (Vec::new(), GptMove::HeadersNotMapped)
            }
            Ok(Ok(relocation)) => (apply(held, &relocation), GptMove::Moved(relocation)),
            Ok(Err(reason)) => (Vec::new(), GptMove::NotMoved(reason)),
            Err(error) => (Vec::new(), GptMove::ReadFailed(chain(&error))),
        };
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
        Ok(extra)
    })
}

/// An error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text += &format!(": {next}");
        cause = next.source();
    }
    text
}

/// Whether the image maps both GPT headers (LBA 1 and its last sector).
fn headers_mapped(mapped: &impl Fn(u64, u64) -> bool, image_size: u64, sector: u64) -> bool {
    mapped(sector, 2 * sector) && mapped(image_size - sector, image_size)
}

/// Patches the writes that fall wholly in the held first MiB into it; returns the
/// others (the backup at the device's end first, in the planned order).
fn apply(held: &mut Held, relocation: &Relocation) -> Vec<ExtraWrite> {
    let mut extra = Vec::new();
    for write in &relocation.writes {
        let end = write.offset + write.bytes.len() as u64;
        let head = &mut held.head;
        if write.offset >= head.start && end <= head.end() && covered(held, write.offset, end) {
            let at = held.head.start;
            write.overlay(&mut held.head.buf, at);
        } else {
            extra.push(ExtraWrite {
                offset: write.offset,
                bytes: write.bytes.clone(),
            });
        }
    }
    extra
}

/// Whether the held parts cover `[start, end)` (else those bytes are not released).
fn covered(held: &Held, start: u64, end: u64) -> bool {
    held.parts.iter().any(|part| {
        let len = part.span.len.unwrap_or(0);
        part.span.start <= start && part.span.start + len >= end
    })
}

/// Reads the disk as the copy leaves it: the device's bytes, with the held parts (not
/// written yet) laid over them.
fn read(dest: &Dest, held: &Held, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let got = dest
        .read_at(buf, offset)
        .map_err(|e| io::Error::other(e.to_string()))?;
    if got < buf.len() {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    let end = offset + buf.len() as u64;
    for part in &held.parts {
        let region = if held.tail.end() > held.tail.start && part.span.start >= held.tail.start {
            &held.tail
        } else {
            &held.head
        };
        let part_end = part.span.start + part.span.len.unwrap_or(0);
        let (from, to) = (
            part.span.start.max(offset),
            part_end.min(end).min(region.filled),
        );
        if from < to {
            let src = (from - region.start) as usize..(to - region.start) as usize;
            let dst = (from - offset) as usize..(to - offset) as usize;
            buf[dst].copy_from_slice(&region.buf[src]);
        }
    }
    Ok(())
}
