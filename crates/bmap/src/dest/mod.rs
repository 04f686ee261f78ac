//! Where copied bytes go: a regular file (kept sparse; refused when a loop device reads
//! from it or its file system has no room for the copy), a block device (opened
//! exclusively, checked, tuned while writing), or another existing node such as
//! `/dev/null`. [`same_storage`] tells whether writing a destination would change an
//! input, whatever names reach the two. A [`Dest`] writes at offsets, and is either [`finish`](Dest::finish)ed
//! (truncated to the image size, synced, settings restored) or dropped, which undoes
//! what it can: a file it created is removed, an existing file it truncated is left
//! empty, device settings are restored.

mod blockdev;
mod file;
mod loops;
mod room;
mod same;
mod tuning;

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::access::Access;
use crate::format::human_size;

pub use blockdev::{Removable, removable};
pub use same::same_storage;
pub use tuning::{Setting, SettingChange};

/// Choices for [`Dest::open`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Bytes the image will occupy, when known; checked against a device's size and
    /// used to size a regular file before writing.
    pub image_size: Option<u64>,
    /// Bytes the copy will write (a bmap's mapped bytes, or the whole image), when
    /// known: a regular file's file system must have room for them before the old file
    /// is truncated.
    pub mapped_bytes: Option<u64>,
    /// Bytes the image occupies at least, when only that is known (a compressed
    /// stream's declared content size); checked against a device's size.
    pub min_size: Option<u64>,
    /// Tune a block device while writing (I/O scheduler `none`, `bdi/max_ratio` 1), as
    /// the reference does. Restored by [`Dest::finish`] or on drop.
    pub tune: bool,
}

/// What kind of destination was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A block device.
    BlockDevice,
    /// Another existing node (a character device such as `/dev/null`, a FIFO).
    Other,
}

/// Why a destination cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is under /dev but does not exist: probably a typo for a device.
    #[error(
        "'{0}' does not exist; it is under /dev, so it should be a device node: check the \
         name (bmaptool does not create regular files under /dev)"
    )]
    MissingDevice(PathBuf),
    /// Opening failed.
    #[error("cannot open destination '{path}'")]
    Open {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Opening a device node is not permitted.
    #[error("permission denied opening {kind} '{path}' for writing: {access}")]
    PermissionDenied {
        /// Path.
        path: PathBuf,
        /// "block device" or "device".
        kind: &'static str,
        /// Who may open it.
        access: Access,
    },
    /// A regular file that a loop device reads from.
    #[error(
        "'{path}' is the backing file of loop device /dev/{device}: writing it would corrupt \
         what uses /dev/{device}; detach it first (losetup -d /dev/{device})"
    )]
    BacksLoop {
        /// Path.
        path: PathBuf,
        /// `loopN`.
        device: String,
    },
    /// The file system has no room for the bytes the copy writes.
    #[error(
        "not enough free space for the image on the file system of '{path}': the copy \
         writes {needed} bytes ({}), but only {available} bytes ({}) are free{}; free some \
         space or choose another destination", human_size(*.needed), human_size(*.available),
        if *.freed > 0 { format!(" (counting the {freed} bytes the old file's blocks free)") }
        else { String::new() }
    )]
    NoRoom {
        /// Path.
        path: PathBuf,
        /// Bytes the copy writes.
        needed: u64,
        /// Bytes free for them.
        available: u64,
        /// Of those, bytes the old file occupies (freed when it is truncated).
        freed: u64,
    },
    /// The device is in use.
    #[error("block device '{path}' is in use: {reason}; unmount it or stop what holds it first")]
    Busy {
        /// Path.
        path: PathBuf,
        /// What holds it.
        reason: String,
    },
    /// The device is too small.
    #[error(
        "the image ({}{image} bytes, {}) does not fit on block device '{path}' ({device} \
         bytes, {})", if *.at_least { "at least " } else { "" }, human_size(*.image),
        human_size(*.device)
    )]
    TooSmall {
        /// Path.
        path: PathBuf,
        /// Image size.
        image: u64,
        /// Whether the image has at least `image` bytes (more may follow).
        at_least: bool,
        /// Device size.
        device: u64,
    },
    /// A directory was given.
    #[error("destination '{0}' is a directory")]
    Directory(PathBuf),
    /// Write, truncate or sync failed.
    #[error("cannot {action} '{path}'")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A device setting could not be put back.
    #[error("cannot restore {path} to '{value}'")]
    Restore {
        /// The sysfs file.
        path: PathBuf,
        /// The old value.
        value: String,
        /// Cause.
        source: io::Error,
    },
}

/// An open destination.
#[derive(Debug)]
pub struct Dest {
    path: PathBuf,
    file: File,
    kind: Kind,
    /// Removed if the copy does not finish.
    created: bool,
    finished: bool,
    tuning: tuning::Tuning,
    /// Skip fsync (`/dev/null`).
    skip_sync: bool,
}

impl Dest {
    /// Opens `path` for writing an image: a block device exclusively after checking it
    /// is not mounted, used as swap or held, and is large enough; an existing regular
    /// file is truncated; a missing one is created (except under /dev).
    pub fn open(path: &Path, options: &Options) -> Result<Dest, Error> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => file::create(path, options),
            Err(source) => Err(Error::Open {
                path: path.to_owned(),
                source,
            }),
            Ok(meta) if meta.is_dir() => Err(Error::Directory(path.to_owned())),
            Ok(meta) if meta.is_file() => file::truncate_existing(path, &meta, options),
            Ok(meta) => {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_block_device() {
                    blockdev::open(path, &meta, options)
                } else {
                    file::open_other(path, &meta)
                }
            }
        }
    }

    /// The destination's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What kind of destination this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Device settings changed for the copy (or that could not be changed).
    pub fn setting_changes(&self) -> &[SettingChange] {
        self.tuning.changes()
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Error> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| self.io_error("write to", source))
    }

    /// Starts writing back what was written so far, without waiting (ignored where the
    /// kernel cannot: a FIFO, `/dev/null`).
    pub fn start_writeback(&self) {
        if !self.skip_sync {
            let _ = crate::sys::start_writeback(&self.file);
        }
    }

    /// Makes a regular file exactly `size` bytes (holes stay holes), syncs everything to
    /// the medium, restores device settings. Only after this has the copy succeeded.
    pub fn finish(mut self, size: u64) -> Result<(), Error> {
        if self.kind == Kind::File {
            self.file
                .set_len(size)
                .map_err(|source| self.io_error("set the size of", source))?;
        }
        if !self.skip_sync {
            self.file
                .sync_all()
                .map_err(|source| self.io_error("synchronize", source))?;
        }
        self.finished = true;
        self.tuning.restore()
    }

    fn io_error(&self, action: &'static str, source: io::Error) -> Error {
        Error::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

/// The error for a device node that could not be opened for writing: a refusal by
/// its permissions says who may open it.
fn open_error(path: &Path, meta: &Metadata, kind: &'static str, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::PermissionDenied {
        return Error::PermissionDenied {
            path: path.to_owned(),
            kind,
            access: Access::of(meta, true),
        };
    }
    Error::Open {
        path: path.to_owned(),
        source,
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        } else if self.kind == Kind::File {
            // It was truncated when opened: leave it empty rather than half-written.
            let _ = self.file.set_len(0);
        }
        // Tuning restores itself on drop.
    }
}
