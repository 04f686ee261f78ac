//! Regular-file (and other non-device) destinations.

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{Dest, Error, Kind, Options, loops, room};

/// A new file; refused under /dev (except /dev/shm), where a missing path is almost
/// surely a typo for a device node. A dangling symlink gets the file it points to, as
/// `open(2)` with `O_CREAT` would; that file, not the link, is removed on failure.
pub(super) fn create(path: &Path, options: &Options) -> Result<Dest, Error> {
    let target = dangling_target(path);
    for named in [path, &target] {
        if under_dev(named) {
            return Err(Error::MissingDevice(named.to_owned()));
        }
    }
    if let Some(needed) = options.mapped_bytes {
        room::check(&target, None, needed)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|source| Error::Open {
            path: target.clone(),
            source,
        })?;
    let mut dest = new(&target, file, Kind::File, true);
    presize(&mut dest, options)?;
    Ok(dest)
}

/// An existing regular file: truncated first, so no old data shows through the holes.
/// Refused, untouched, when a loop device reads from it or its file system cannot hold
/// the copy.
pub(super) fn truncate_existing(
    path: &Path,
    meta: &Metadata,
    options: &Options,
) -> Result<Dest, Error> {
    if let Some(backed) = loops::backed_by_file(meta) {
        return Err(Error::BacksLoop {
            path: path.to_owned(),
            device: backed.device,
        });
    }
    if let Some(needed) = options.mapped_bytes {
        room::check(path, Some(meta), needed)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
    let mut dest = new(path, file, Kind::File, false);
    presize(&mut dest, options)?;
    Ok(dest)
}

/// Character devices, FIFOs and sockets: written as they are.
pub(super) fn open_other(path: &Path, meta: &Metadata) -> Result<Dest, Error> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| super::open_error(path, meta, "device", source))?;
    let mut dest = new(path, file, Kind::Other, false);
    dest.skip_sync =
        is_dev_null(meta) || meta.file_type().is_fifo() || meta.file_type().is_socket();
    Ok(dest)
}

/// Where a dangling symlink (through further links) points, or `path` itself when it
/// is not a symlink.
fn dangling_target(path: &Path) -> PathBuf {
    let mut current = path.to_owned();
    // The kernel's limit on nested links; a longer chain fails when opened.
    for _ in 0..40 {
        let Ok(link) = std::fs::read_link(&current) else {
            break;
        };
        current = match current.parent() {
            Some(dir) if link.is_relative() => dir.join(link),
            _ => link,
        };
    }
    current
}

fn new(path: &Path, file: File, kind: Kind, created: bool) -> Dest {
    Dest {
        path: path.to_owned(),
        file,
        kind,
        created,
        finished: false,
        tuning: super::tuning::Tuning::none(),
        skip_sync: false,
    }
}

/// Sizes the file to the image before writing (XFS speculative preallocation otherwise
/// makes mapped-looking blocks, intel/bmap-tools#6).
fn presize(dest: &mut Dest, options: &Options) -> Result<(), Error> {
    if let Some(size) = options.image_size {
        dest.file.set_len(size).map_err(|source| Error::Io {
            action: "set the size of",
            path: dest.path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn is_dev_null(meta: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.file_type().is_char_device() && meta.rdev() == rustix::fs::makedev(1, 3)
}

fn under_dev(path: &Path) -> bool {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut normal = std::path::PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    // /dev/shm is an ordinary tmpfs for files.
    normal.starts_with("/dev") && !normal.starts_with("/dev/shm")
}
