//! Where copied bytes go: a regular file (kept sparse; refused when a loop device reads
//! from it or its file system has no room for the copy), a block device (opened
//! exclusively, checked, tuned while writing), or another existing node such as
//! `/dev/null`. [`same_storage`] tells whether writing a destination would change an
//! input, whatever names reach the two. A [`Dest`] writes and reads at offsets
//! (bypassing the page cache with `O_DIRECT` where the kernel allows it, see
//! `handle.rs`), discards, syncs, and is either [`finish`](Dest::finish)ed (truncated to
//! the image size, synced, settings restored) or dropped, which undoes what it can: a
//! file it created is removed, an existing file it truncated is left empty (one written
//! at a seek, not truncated, gets its old length back), device settings are restored.
//! Opened at a seek ([`Options::seek`]), a `Dest` is a window that starts there: the
//! offsets it is given are the image's.

mod aligned;
mod blockdev;
mod file;
mod handle;
mod loops;
mod room;
mod same;
mod tuning;

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use crate::access::Access;
use crate::format::human_size;

pub use aligned::AlignedBuf;
pub(crate) use blockdev::in_use_by;
pub use blockdev::{BlockDevice, Removable, removable};
pub use file::{OtherNode, RegularFile};
pub use handle::MIN_ALIGN;
pub(crate) use handle::{Step, direct_alignment, step};
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
    /// Where the image starts in the destination, in bytes (`copy --seek`): every
    /// offset given to the [`Dest`] is shifted by it, and a device must hold it plus
    /// the image. Given (even as 0), an existing regular file is neither truncated nor
    /// shortened: its bytes before the seek and after the image are kept.
    pub seek: Option<u64>,
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
    /// An image of unknown size (a stream without a bmap) grew past the room its
    /// regular-file destination's file system had when the copy began.
    #[error(
        "the image's size is unknown (no bmap, and its stream does not declare one) and it \
         has grown past the {available} bytes ({}) free on the file system of '{path}' \
         (the blocks reserved for root not counted): stopped before the disk is full; free \
         some space, choose another destination, or check that the image is the right one",
        human_size(*.available)
    )]
    EndlessStream {
        /// Path.
        path: PathBuf,
        /// The most bytes the file may hold: the free room when the copy began.
        available: u64,
    },
    /// An image of unknown size reached the end of its block device.
    #[error(
        "the image is larger than block device '{path}' ({size} bytes, {}): it does not fit",
        human_size(*.size)
    )]
    PastDeviceEnd {
        /// Path.
        path: PathBuf,
        /// The device's size.
        size: u64,
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
        "the image ({}{image} bytes, {}){} does not fit on block device '{path}' ({device} \
         bytes, {})", if *.at_least { "at least " } else { "" }, human_size(*.image),
        if *.seek > 0 { format!(" written at offset {seek} ({})", human_size(*.seek)) }
        else { String::new() },
        human_size(*.device)
    )]
    TooSmall {
        /// Where the image was to start (`--seek`), 0 for the device's start.
        seek: u64,
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
    /// The kernel marks the block device read-only.
    #[error(
        "block device '{0}' is read-only (write-protected, or set read-only with \
         'losetup -r' or 'blockdev --setro'): make it writable ('blockdev --setrw') or \
         choose another destination"
    )]
    ReadOnly(PathBuf),
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
    /// Writing or reading a span of the destination failed.
    #[error("cannot {action} '{path}' at byte {offset} ({len} bytes)")]
    IoAt {
        /// What was attempted.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// Where on the medium the span starts.
        offset: u64,
        /// The span's length.
        len: u64,
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

/// An open destination, by what it is. Each kind undoes what it can when dropped
/// before [`finish`](Dest::finish): a file it created is removed, an existing file it
/// truncated is left empty, device settings are restored.
#[derive(Debug)]
pub enum Dest {
    /// A regular file, kept sparse.
    File(RegularFile),
    /// A block device, opened exclusively.
    BlockDevice(BlockDevice),
    /// Another node (a character device such as `/dev/null`, a FIFO, a socket),
    /// written as it is.
    Other(OtherNode),
}

impl Dest {
    /// Opens `path` for writing an image: a block device exclusively after checking it
    /// is not mounted, used as swap or held, and is large enough; an existing regular
    /// file is truncated (kept with [`Options::seek`]); a missing one is created
    /// (except under /dev), unnamed until [`finish`](Dest::finish) where the file
    /// system has `O_TMPFILE`. Files and
    /// devices are opened read-write (write-only where reading is not permitted), and
    /// a second time with `O_DIRECT` where the kernel accepts it.
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
                    let mut other = file::open_other(path, &meta)?;
                    if let Dest::Other(node) = &mut other {
                        node.io.seek = options.seek.unwrap_or(0);
                    }
                    Ok(other)
                }
            }
        }
    }

    fn io(&self) -> &handle::Handle {
        match self {
            Dest::File(file) => &file.io,
            Dest::BlockDevice(device) => &device.io,
            Dest::Other(other) => &other.io,
        }
    }

    /// The destination's path.
    pub fn path(&self) -> &Path {
        self.io().path()
    }

    /// What kind of destination this is.
    pub fn kind(&self) -> Kind {
        match self {
            Dest::File(_) => Kind::File,
            Dest::BlockDevice(_) => Kind::BlockDevice,
            Dest::Other(_) => Kind::Other,
        }
    }

    /// Device settings changed for the copy (or that could not be changed).
    pub fn setting_changes(&self) -> &[SettingChange] {
        match self {
            Dest::BlockDevice(device) => device.tuning.changes(),
            _ => &[],
        }
    }

    /// Where the image starts in the destination (`Options::seek`): the offsets given
    /// to this `Dest` are the image's, shifted by this on the medium.
    pub fn seek(&self) -> u64 {
        self.io().seek
    }

    /// Where the bytes for image offset `offset` go in a buffer aligned to
    /// [`alignment`](Dest::alignment) so that whole blocks can bypass the page cache:
    /// the medium's offset modulo the alignment (`offset % alignment` without a seek).
    pub fn place(&self, offset: u64) -> usize {
        // Below the alignment, which is a usize.
        (self.shifted(offset) % self.alignment() as u64) as usize
    }

    fn shifted(&self, offset: u64) -> u64 {
        offset.saturating_add(self.io().seek)
    }

    /// Whether aligned writes and reads bypass the page cache (`O_DIRECT`): false when
    /// the kernel refused it, at open or on the first direct write.
    pub fn is_direct(&self) -> bool {
        self.io().is_direct()
    }

    /// The alignment (of memory, file offset and length) that lets a transfer bypass
    /// the page cache: at least 4096, the logical block size of a device where larger.
    /// Buffers from [`AlignedBuf::new`] with this alignment, holding data for offset
    /// `o` at index `o % alignment`, are written directly except for partial blocks.
    pub fn alignment(&self) -> usize {
        self.io().align()
    }

    /// Writes all of `buf` at `offset`. Whole aligned blocks bypass the page cache
    /// where the destination allows it; partial blocks go through it, so bytes next
    /// to `buf` are kept.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Error> {
        let at = self.shifted(offset);
        let end = offset.saturating_add(buf.len() as u64);
        match self {
            Dest::File(file) => file.check_budget(end)?,
            Dest::BlockDevice(device) if self.shifted(end) > device.size => {
                return Err(Error::PastDeviceEnd {
                    path: self.path().to_owned(),
                    size: device.size,
                });
            }
            _ => {}
        }
        self.io()
            .write_at(buf, at)
            .map_err(|source| self.io_error_at("write to", at, buf.len(), source))
    }

    /// Reads into `buf` from `offset` until it is full or the destination ends;
    /// returns the bytes read. Aligned parts (see [`alignment`](Dest::alignment))
    /// bypass the page cache where the destination allows it, so they show what
    /// reached the medium.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, Error> {
        let at = self.shifted(offset);
        let len = buf.len();
        self.io()
            .read_at(buf, at)
            .map_err(|source| self.io_error_at("read from", at, len, source))
    }

    /// Says that the `len` bytes at `offset` are not needed: a hole punched in a
    /// regular file (reads back as zeros), a discard on a block device (reads back
    /// as zeros or anything; only the whole logical blocks inside the span are
    /// discarded). Unsupported for other nodes.
    pub fn discard(&self, offset: u64, len: u64) -> Result<(), Error> {
        let offset = self.shifted(offset);
        let result = match self {
            Dest::File(file) => crate::sys::punch_hole(file.io.file(), offset, len),
            Dest::BlockDevice(device) => device.discard(offset, len),
            Dest::Other(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        };
        result.map_err(|source| self.io_error("discard blocks of", source))
    }

    /// Makes the `len` bytes at `offset` read as zeros: on a block device with
    /// `BLKZEROOUT` where the kernel takes it (returns [`Zeroed::Device`]), else, and on
    /// any other destination, by writing zeros ([`Zeroed::Written`]).
    pub fn zero_out(&self, offset: u64, len: u64) -> Result<Zeroed, Error> {
        let offset = self.shifted(offset);
        let result = match self {
            Dest::BlockDevice(device) => device.zero_out(offset, len).map(|ioctl| {
                if ioctl {
                    Zeroed::Device
                } else {
                    Zeroed::Written
                }
            }),
            _ => write_zeros(self.io(), offset, len).map(|()| Zeroed::Written),
        };
        result.map_err(|source| self.io_error("zero blocks of", source))
    }

    /// A block device's size in bytes (`None` for other destinations).
    pub fn device_size(&self) -> Option<u64> {
        match self {
            Dest::BlockDevice(device) => Some(device.size),
            _ => None,
        }
    }

    /// A block device's logical block size (`None` for other destinations).
    pub fn logical_block_size(&self) -> Option<u64> {
        match self {
            Dest::BlockDevice(device) => Some(device.logical_block),
            _ => None,
        }
    }

    /// Bytes written through the page cache so far (all of them without `O_DIRECT`;
    /// only partial blocks with it): what [`start_writeback`](Dest::start_writeback)
    /// has to push.
    pub fn buffered_bytes(&self) -> u64 {
        self.io().buffered_bytes()
    }

    /// Starts writing back what went through the page cache, without waiting
    /// (ignored where the kernel cannot: a FIFO, `/dev/null`).
    pub fn start_writeback(&self) {
        if self.syncs() {
            self.io().start_writeback();
        }
    }

    /// Makes the `len` bytes at `offset` durable (what went through the page cache is
    /// written back and waited for) and drops them from the page cache, so that
    /// [`read_at`](Dest::read_at) of the span shows what the medium holds, even where
    /// it is not direct (except on tmpfs, whose page cache is the medium). Nothing for
    /// `/dev/null`, a FIFO or a socket.
    pub fn settle(&self, offset: u64, len: u64) -> Result<(), Error> {
        if self.kind() == Kind::Other {
            return Ok(());
        }
        self.io()
            .settle(self.shifted(offset), len)
            .map_err(|source| self.io_error("synchronize", source))
    }

    /// Syncs everything written so far to the medium (nothing for `/dev/null`, a FIFO
    /// or a socket).
    pub fn sync(&self) -> Result<(), Error> {
        if !self.syncs() {
            return Ok(());
        }
        self.io()
            .sync()
            .map_err(|source| self.io_error("synchronize", source))
    }

    fn syncs(&self) -> bool {
        !matches!(
            self,
            Dest::Other(OtherNode {
                skip_sync: true,
                ..
            })
        )
    }

    /// Makes a regular file exactly `size` bytes (holes stay holes), syncs everything to
    /// the medium, gives a new file written unnamed its name, restores device
    /// settings. Only after this has the copy succeeded.
    /// With a seek, a regular file is only made longer, up to the seek plus `size`:
    /// what it holds after the image is kept.
    pub fn finish(self, size: u64) -> Result<(), Error> {
        if let Dest::File(file) = &self {
            file.resize(size)
                .map_err(|source| self.io_error("set the size of", source))?;
        }
        self.sync()?;
        match self {
            Dest::File(mut file) => {
                let path = file.io.path().to_owned();
                // On failure the unnamed file is dropped, and with it the copy.
                file.name().map_err(|source| Error::Io {
                    action: "name the finished copy",
                    path,
                    source,
                })?;
                file.finished = true;
                Ok(())
            }
            Dest::BlockDevice(mut device) => device.tuning.restore(),
            Dest::Other(_) => Ok(()),
        }
    }

    fn io_error_at(
        &self,
        action: &'static str,
        offset: u64,
        len: usize,
        source: io::Error,
    ) -> Error {
        Error::IoAt {
            action,
            path: self.path().to_owned(),
            offset,
            len: len as u64,
            source,
        }
    }

    fn io_error(&self, action: &'static str, source: io::Error) -> Error {
        Error::Io {
            action,
            path: self.path().to_owned(),
            source,
        }
    }
}

/// How [`Dest::zero_out`] zeroed a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zeroed {
    /// The device did it (`BLKZEROOUT`), apart from partial logical blocks at the ends.
    Device,
    /// Zeros were written.
    Written,
}

/// Writes `len` zero bytes at `offset`, a MiB at a time from an aligned buffer (so
/// that whole aligned blocks bypass the page cache).
fn write_zeros(io: &handle::Handle, offset: u64, len: u64) -> io::Result<()> {
    const STEP: u64 = 1 << 20;
    if len == 0 {
        return Ok(());
    }
    let align = io.align();
    let zeros = AlignedBuf::new(STEP as usize + align, align);
    let mut at = offset;
    let end = offset + len;
    while at < end {
        // Data for offset `o` at index `o % align`: whole aligned blocks go direct.
        let place = (at % align as u64) as usize;
        let n = (end - at).min(STEP) as usize;
        io.write_at(&zeros[place..place + n], at)?;
        at += n as u64;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_reads_back_what_was_written_and_is_removed_unless_finished() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("dest.img");
        let options = Options {
            image_size: Some(3 * 4096 + 100),
            ..Default::default()
        };
        let dest = Dest::open(&path, &options).expect("open");
        assert_eq!(dest.kind(), Kind::File);
        let align = dest.alignment();
        let mut data = AlignedBuf::new(2 * align, align);
        data.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        // Aligned, then straddling blocks from unaligned memory.
        dest.write_at(&data, 0).expect("write");
        dest.write_at(&data[1..301], 2 * align as u64 - 50)
            .expect("write");
        let mut back = AlignedBuf::new(2 * align + 250, align);
        assert_eq!(dest.read_at(&mut back, 0).expect("read"), back.len());
        assert!(back[..2 * align - 50] == data[..2 * align - 50]);
        assert!(back[2 * align - 50..] == data[1..301]);
        drop(dest);
        assert!(!path.exists(), "the unfinished new file was kept");
    }

    #[test]
    fn dev_null_takes_writes_refuses_discards_and_finishes() {
        let dest = Dest::open(Path::new("/dev/null"), &Options::default()).expect("open");
        assert!(matches!(dest, Dest::Other(_)));
        assert!(!dest.is_direct());
        dest.write_at(b"bytes", 7).expect("write");
        assert!(dest.discard(0, 4096).is_err());
        dest.finish(0).expect("finish");
    }
}
