//! Room for a regular-file destination: the file system must hold the bytes the copy
//! will write (counting what truncating the old file frees) before anything is
//! truncated or written, so that a full disk is found before the old file is lost.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Error;

/// The most bytes a file written from an image of unknown size (a stream without a
/// bmap) may hold: the room free on its file system now, for unprivileged users (the
/// blocks ext2/3/4 reserve for root stay free even when root copies, so that an
/// endless stream never fills the disk for everyone), plus the blocks of the old file
/// that truncation frees. `None` when the file system cannot say.
pub(super) fn budget(path: &Path, old: Option<&std::fs::Metadata>) -> Option<u64> {
    let stat = rustix::fs::statvfs(probe(path, old)).ok()?;
    if stat.f_blocks == 0 {
        return None;
    }
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let freed = old.map_or(0, |m| m.blocks().saturating_mul(512));
    Some(free.saturating_add(freed))
}

/// What statvfs is asked about: the existing file, or the directory a new one goes in.
fn probe(path: &Path, old: Option<&std::fs::Metadata>) -> std::path::PathBuf {
    match old {
        Some(_) => path.to_owned(),
        None => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => Path::new(".").to_owned(),
        },
    }
}

/// Refuses when the file system holding `path` (an existing file, or the directory a
/// new one goes in) has less room than `needed` bytes; `old` is the metadata of the
/// existing file, whose blocks truncation frees. A file system that cannot say how
/// much is free is not refused.
pub(super) fn check(
    path: &Path,
    old: Option<&std::fs::Metadata>,
    needed: u64,
) -> Result<(), Error> {
    let Ok(stat) = rustix::fs::statvfs(probe(path, old)) else {
        return Ok(());
    };
    // Root may use the blocks ext2/3/4 reserve for it.
    let blocks = if crate::sys::is_root() {
        stat.f_bfree
    } else {
        stat.f_bavail
    };
    let free = blocks.saturating_mul(stat.f_frsize);
    let freed = old.map_or(0, |m| m.blocks().saturating_mul(512));
    let available = free.saturating_add(freed);
    if stat.f_blocks == 0 || needed <= available {
        return Ok(());
    }
    Err(Error::NoRoom {
        path: path.to_owned(),
        needed,
        available,
        freed,
    })
}
