//! A device whose backup GPT `copy` moved to its end: its primary GPT header (and a
//! protective MBR's size) differ from the image's on purpose. When
//! [`gpt::undo_relocation`] recognises the device's table as a whole moved copy of the
//! image's (the moved backup valid at the device's end, and the image's own backup
//! still where the image put it), the check reads the device through [`Overlay`],
//! which lays the image's original sectors 0 and 1 over what is read: the range
//! holding them is then hashed as the image has it, in the one pass, and any other
//! change to those sectors still fails.

use std::cell::RefCell;
use std::io;
use std::path::Path;

use super::target::DirectReader;
use super::{Error, Target};
use crate::gpt::{self, ReadFn, Write};
use crate::source::RandomAccess;

/// The image's original sectors 0 and 1, when the block device at `path` (of
/// `device_size` bytes) holds an image of `image_size` bytes whose backup GPT was moved
/// to the device's end; `None` otherwise (also when reading them fails: the check
/// itself then reads and reports those sectors).
pub(super) fn original_sectors(
    path: &Path,
    image_size: u64,
    device_size: u64,
) -> Result<Option<Vec<Write>>, Error> {
    let reader = RefCell::new(Target::open(path)?.into_reader());
    let read = |buf: &mut [u8], offset: u64| {
        let got = read_full(&mut reader.borrow_mut(), buf, offset)?;
        if got < buf.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(())
    };
    Ok(gpt::undo_relocation(&ReadFn(read), image_size, device_size).unwrap_or(None))
}

/// Reads the target with the image's original sectors laid over what it holds there.
pub(super) struct Overlay {
    /// The target's reader.
    pub(super) inner: DirectReader,
    /// The image's sectors 0 and 1.
    pub(super) writes: Vec<Write>,
}

impl RandomAccess for Overlay {
    fn plan(&mut self, spans: &[(u64, u64)]) {
        self.inner.plan(spans);
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let got = self.inner.read_at(buf, offset)?;
        for write in &self.writes {
            write.overlay(&mut buf[..got], offset);
        }
        Ok(got)
    }
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
