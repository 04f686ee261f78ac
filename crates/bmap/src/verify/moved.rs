//! A device whose backup GPT `copy` moved to its end: its primary GPT header (and a
//! protective MBR's size) differ from the image's on purpose, so the range holding
//! them fails its digest. When [`gpt::undo_relocation`] recognises the device's table
//! as a moved copy of the image's (the image's own backup is still where the image
//! put it), the range is checked again with the image's original sectors laid over
//! what was read; it is good when that matches the bmap's digest.

use std::cell::RefCell;
use std::io;
use std::path::Path;

use super::target::DirectReader;
use super::{Error, RangeCheck, RangeVerdict, Target};
use crate::dest::{AlignedBuf, MIN_ALIGN};
use crate::gpt::{self, ReadFn};
use crate::source::RandomAccess;

/// Bytes read at a time when a range is read again.
const STEP: usize = 1 << 20;

/// Rechecks the bad ranges that hold the image's first sectors against the image's
/// original GPT, when the device's GPT is a moved copy of it. Returns whether any
/// range turned good that way.
pub(super) fn recheck(
    path: &Path,
    image_size: u64,
    ranges: &mut [RangeCheck],
) -> Result<bool, Error> {
    // Sectors 0 and 1, for 512- or 4096-byte sectors.
    let touches_header = |r: &RangeCheck| r.start < 2 * 4096;
    if !ranges
        .iter()
        .any(|r| touches_header(r) && matches!(r.verdict, RangeVerdict::Bad { .. }))
    {
        return Ok(false);
    }
    let reader = RefCell::new(Target::open(path)?.into_reader());
    let read = |buf: &mut [u8], offset: u64| {
        let got = read_full(&mut reader.borrow_mut(), buf, offset)?;
        if got < buf.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(())
    };
    let Ok(Some(original)) = gpt::undo_relocation(&ReadFn(read), image_size) else {
        return Ok(false);
    };
    let mut restored = false;
    for range in ranges.iter_mut().filter(|r| touches_header(r)) {
        let RangeVerdict::Bad { expected, .. } = range.verdict else {
            continue;
        };
        let mut hasher = expected.kind().hasher();
        let mut buf = AlignedBuf::new(STEP, MIN_ALIGN);
        let mut at = range.start;
        while at < range.end {
            let want = usize::try_from(range.end - at).map_or(STEP, |n| n.min(STEP));
            let got = read_full(&mut reader.borrow_mut(), &mut buf[..want], at)
                .map_err(|source| crate::copy::Error::Read { offset: at, source })?;
            if got < want {
                return Ok(restored);
            }
            for write in &original {
                write.overlay(&mut buf[..want], at);
            }
            hasher.update(&buf[..want]);
            at += want as u64;
        }
        if hasher.finish() == expected {
            range.verdict = RangeVerdict::Good(expected);
            restored = true;
        }
    }
    Ok(restored)
}

/// Reads until `buf` is full or the target ends; returns the bytes read.
fn read_full(reader: &mut DirectReader, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
