//! Regular-file (and other non-device) destinations.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::handle::Handle;
use super::{Dest, Error, Options, loops, room};

/// A regular file destination: written sparse, sized to the image, removed (when
/// this copy created it) or left empty (when it was truncated) unless finished. A new
/// file is written unnamed (`O_TMPFILE`) where the file system allows, and named only
/// when finished, so that even a killed process leaves none behind. With
/// a seek, an existing file is kept: unfinished, it gets its old length back (its
/// bytes up to the seek and after the image as they were; the image's part partly
/// written).
#[derive(Debug)]
pub struct RegularFile {
    pub(super) io: Handle,
    /// Removed if the copy does not finish.
    created: bool,
    /// The length of an existing file written at a seek (not truncated).
    kept_len: Option<u64>,
    /// A new file written unnamed (`O_TMPFILE`): the path it gets when finished.
    unnamed: Option<PathBuf>,
    pub(super) finished: bool,
    /// For an image of unknown size: the most bytes the file may reach, the room its
    /// file system had when the copy began ([`room::budget`]).
    budget: Option<u64>,
}

impl Drop for RegularFile {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.unnamed.is_some() {
            // Never named: the kernel frees it when the descriptors close.
        } else if self.created {
            let _ = std::fs::remove_file(self.io.path());
        } else if let Some(len) = self.kept_len {
            // Only what was added past its old end goes.
            let _ = self.io.file().set_len(len);
        } else {
            // It was truncated when opened: leave it empty rather than half-written.
            let _ = self.io.file().set_len(0);
        }
    }
}

impl RegularFile {
    /// Refuses a write that would make the file longer than its budget.
    pub(super) fn check_budget(&self, end: u64) -> Result<(), Error> {
        match self.budget {
            Some(available) if end > available => Err(Error::EndlessStream {
                path: self.io.path().to_owned(),
                available,
            }),
            _ => Ok(()),
        }
    }

    /// Sizes the file for an image of `size` bytes at the seek: exactly that, except
    /// for an existing file kept at a seek: only longer (its bytes after the image are
    /// kept).
    pub(super) fn resize(&self, size: u64) -> io::Result<()> {
        let file = self.io.file();
        let end = size.saturating_add(self.io.seek);
        if self.kept_len.is_none() || file.metadata()?.len() < end {
            file.set_len(end)?;
        }
        Ok(())
    }

    /// Gives a new file written unnamed its path, then makes the name durable (the
    /// directory synced); nothing for a file that has its name already. Called once
    /// everything is written and synced: the name never shows a partial image.
    pub(super) fn name(&mut self) -> io::Result<()> {
        let Some(path) = self.unnamed.take() else {
            return Ok(());
        };
        if let Err(e) = crate::sys::link_unnamed(self.io.file(), &path) {
            self.unnamed = Some(path);
            return Err(e);
        }
        File::open(parent_dir(&path)).and_then(|dir| dir.sync_all())
    }
}

/// The directory a path is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A new file: unnamed in `target`'s directory where the file system has `O_TMPFILE`
/// (named when finished, so that not even SIGKILL leaves a partial file), else
/// created at `target` (removed on failure). Returns the file and whether it is
/// unnamed.
fn new_file(target: &Path) -> io::Result<(File, bool)> {
    match crate::sys::open_unnamed(parent_dir(target)) {
        Ok(file) => return Ok((file, true)),
        Err(e) if crate::sys::unnamed_refused(&e) => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(target)
        .map(|file| (file, false))
}

/// A character device, FIFO or socket: written as it is, never with `O_DIRECT`.
#[derive(Debug)]
pub struct OtherNode {
    pub(super) io: Handle,
    /// No fsync: `/dev/null`, a FIFO, a socket.
    pub(super) skip_sync: bool,
}

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
    let budget = unbounded(options)
        .then(|| room::budget(&target, None))
        .flatten();
    let (file, unnamed) = new_file(&target).map_err(|source| Error::Open {
        path: target.clone(),
        source,
    })?;
    // From here on, a failure removes the new file (on drop).
    let mut dest = RegularFile {
        unnamed: unnamed.then(|| target.clone()),
        io: Handle::buffered(&target, file),
        created: true,
        kept_len: None,
        finished: false,
        budget,
    };
    dest.io.seek = options.seek.unwrap_or(0);
    presize(&dest, options)?;
    with_direct(&mut dest, true)?;
    Ok(Dest::File(dest))
}

/// An existing regular file: truncated first, so no old data shows through the holes
/// (with a seek, kept as it is: only made longer when it ends before the image).
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
    let keep = options.seek.is_some();
    if let Some(needed) = options.mapped_bytes {
        // Kept, the old file frees none of its blocks.
        room::check(path, Some(meta).filter(|_| !keep), needed)?;
    }
    let budget = unbounded(options)
        .then(|| room::budget(path, Some(meta)))
        .flatten();
    let (file, readable) = open_rw(path, |o| o.truncate(!keep)).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut dest = RegularFile {
        io: Handle::buffered(path, file),
        created: false,
        kept_len: keep.then_some(meta.len()),
        unnamed: None,
        finished: false,
        budget,
    };
    dest.io.seek = options.seek.unwrap_or(0);
    presize(&dest, options)?;
    with_direct(&mut dest, readable)?;
    Ok(Dest::File(dest))
}

/// Whether nothing bounds what the copy writes (an image of unknown size without a
/// bmap, written from the file's start): such a copy is held to a [`room::budget`].
fn unbounded(options: &Options) -> bool {
    options.image_size.is_none() && options.mapped_bytes.is_none() && options.seek.is_none()
}

/// Character devices, FIFOs and sockets: written as they are.
pub(super) fn open_other(path: &Path, meta: &Metadata) -> Result<Dest, Error> {
    let stream = meta.file_type().is_fifo() || meta.file_type().is_socket();
    // A FIFO opened for reading too would not wait for its reader: write-only.
    let opened = if stream {
        OpenOptions::new().write(true).open(path)
    } else {
        open_rw(path, |o| o).map(|(file, _)| file)
    };
    let file = opened.map_err(|source| super::open_error(path, meta, "device", source))?;
    Ok(Dest::Other(OtherNode {
        io: Handle::buffered(path, file),
        skip_sync: is_dev_null(meta) || stream,
    }))
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

/// Opens `path` read-write, or write-only where reading is not permitted; says
/// whether it is readable. `extra` adds options (truncation).
pub(super) fn open_rw(
    path: &Path,
    extra: impl Fn(&mut OpenOptions) -> &mut OpenOptions,
) -> io::Result<(File, bool)> {
    match extra(OpenOptions::new().read(true).write(true)).open(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            extra(OpenOptions::new().write(true))
                .open(path)
                .map(|f| (f, false))
        }
        other => other.map(|f| (f, true)),
    }
}

/// Adds the `O_DIRECT` descriptor where the file system accepts it.
fn with_direct(dest: &mut RegularFile, readable: bool) -> Result<(), Error> {
    dest.io
        .enable_direct(readable, None)
        .map_err(|source| Error::Open {
            path: dest.io.path().to_owned(),
            source,
        })
}

/// Sizes the file to the image before writing (XFS speculative preallocation otherwise
/// makes mapped-looking blocks, intel/bmap-tools#6).
fn presize(dest: &RegularFile, options: &Options) -> Result<(), Error> {
    if let Some(size) = options.image_size {
        dest.resize(size).map_err(|source| Error::Io {
            action: "set the size of",
            path: dest.io.path().to_owned(),
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
