//! A verify [`Target`]: a block device or regular file opened read-only, read at
//! offsets so that what is on the medium is seen, not the page cache. Whole aligned
//! blocks are read with `O_DIRECT` into the copy's aligned buffers (the pipeline puts
//! the bytes for offset `o` at `(o + seek) % alignment`, so memory and file offsets
//! agree, for an image at a seek too); the
//! rest (a range that starts or ends inside a logical block, the image's partial last
//! block) is read through the page cache after the pages it spans were dropped
//! (`posix_fadvise(DONTNEED)`). Where `O_DIRECT` is refused (`EINVAL` at open or on the
//! first read: ramfs, tmpfs before Linux 6.6), every read is buffered that way.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::num::NonZeroU64;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Error;
use crate::dest::{MIN_ALIGN, Step, step};
use crate::source::RandomAccess;

/// The granule of dropping cached pages before a buffered read: the largest page
/// cache folio of x86-64 and 4 KiB-page arm64 (PMD size).
const DROP_SPAN: u64 = 2 << 20;

/// Drops the clean cached pages of `len` bytes (`None`: to the end) at `offset` of
/// `file` (`posix_fadvise(DONTNEED)`). Best effort: a file system that ignores the
/// advice still reads correctly, and direct reads do not need it.
fn drop_cached(file: &File, offset: u64, len: Option<NonZeroU64>) {
    let _ = rustix::fs::fadvise(file, offset, len, rustix::fs::Advice::DontNeed);
}

/// What a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A block device (an SD card, a USB stick, a loop device).
    BlockDevice,
    /// A regular file (an image written by `copy`).
    File,
}

/// Bytes read each way, shared with the reader the pipeline owns.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) direct: AtomicU64,
    pub(super) buffered: AtomicU64,
}

/// A block device or regular file to check against a bmap, opened read-only.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    kind: TargetKind,
    size: u64,
    /// Why a block device is in use (mounted...), if it is.
    in_use: Option<String>,
    reader: DirectReader,
}

impl Target {
    /// Opens `path` read-only: a block device or a regular file (anything else is
    /// refused), with an `O_DIRECT` descriptor where the kernel gives one.
    pub fn open(path: &Path) -> Result<Target, Error> {
        let open_error = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        let kind = meta.file_type();
        let (kind, size, device_block) = if kind.is_block_device() {
            let size = file.seek(SeekFrom::End(0)).map_err(open_error)?;
            let block = crate::sys::logical_block_size(&file).ok();
            (TargetKind::BlockDevice, size, block)
        } else if kind.is_file() {
            (TargetKind::File, meta.len(), None)
        } else {
            return Err(Error::NotATarget(path.to_owned()));
        };
        let in_use = (kind == TargetKind::BlockDevice)
            .then(|| crate::dest::in_use_by(&meta))
            .flatten();
        let reader = DirectReader::open(file, device_block).map_err(open_error)?;
        Ok(Target {
            path: path.to_owned(),
            kind,
            size,
            in_use,
            reader,
        })
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A block device or a regular file.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Why a block device is in use (mounted, used as swap, held by another device),
    /// if it is: reading it is harmless, but what is read may change meanwhile.
    pub fn in_use(&self) -> Option<&str> {
        self.in_use.as_deref()
    }

    /// Whether aligned reads bypass the page cache with `O_DIRECT` (else every read
    /// is buffered after the cache was dropped for its span).
    pub fn is_direct(&self) -> bool {
        self.reader.direct.is_some()
    }

    /// The alignment of memory, offsets and lengths for direct reads (at least 4096).
    pub fn alignment(&self) -> usize {
        usize::try_from(self.reader.align).unwrap_or(MIN_ALIGN)
    }

    /// The same target, checked for an image that starts `seek` bytes into it (a
    /// partition image written with `copy --seek`): every read is shifted by it.
    pub fn at(mut self, seek: u64) -> Target {
        self.reader.seek = seek;
        self
    }

    /// Where the image starts in the target (see [`Target::at`]); 0 by default.
    pub fn seek(&self) -> u64 {
        self.reader.seek
    }

    pub(super) fn into_reader(self) -> DirectReader {
        self.reader
    }
}

/// Positioned reads that bypass the page cache, for the copy engine's reader.
#[derive(Debug)]
pub(super) struct DirectReader {
    /// Buffered, read-only.
    file: File,
    /// The same file opened with `O_DIRECT`, while the kernel accepts it.
    direct: Option<File>,
    /// Whether a direct read succeeded (an `EINVAL` after that is an error).
    worked: bool,
    align: u64,
    /// Added to every offset read (an image at a seek).
    seek: u64,
    pub(super) counters: Arc<Counters>,
}

impl DirectReader {
    fn open(file: File, device_block: Option<u32>) -> io::Result<DirectReader> {
        let usable = crate::dest::direct_alignment(&file, device_block);
        let direct = match usable {
            Some(_) => reopen_direct(&file)?,
            None => None,
        };
        // Whatever the target's page cache holds may be stale (written behind the
        // cache's back, or by a copy through another device node): drop it all once,
        // so that no buffered read below can be served from it.
        drop_cached(&file, 0, None);
        Ok(DirectReader {
            file,
            direct,
            worked: false,
            align: usable.unwrap_or(MIN_ALIGN as u64),
            seek: 0,
            counters: Arc::default(),
        })
    }

    /// Reads through the page cache after dropping the cached pages around `buf.len()`
    /// bytes at `offset`.
    fn read_buffered(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // The kernel drops only the folios wholly inside the span (a block device's
        // page cache holds large folios), so drop the whole 2 MiB-aligned area around
        // it: what else is dropped is clean and only costs a later read.
        let start = offset / DROP_SPAN * DROP_SPAN;
        let end = (offset + buf.len() as u64).div_ceil(DROP_SPAN) * DROP_SPAN;
        drop_cached(&self.file, start, NonZeroU64::new(end - start));
        let got = self.file.read_at(buf, offset)?;
        self.counters
            .buffered
            .fetch_add(got as u64, Ordering::Relaxed);
        Ok(got)
    }
}

impl RandomAccess for DirectReader {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let offset = offset
            .checked_add(self.seek)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let addr = buf.as_ptr() as usize;
        match step(self.align, self.direct.is_some(), addr, buf.len(), offset) {
            Step::Buffered(n) => self.read_buffered(&mut buf[..n], offset),
            Step::Direct(n) => {
                let Some(direct) = &self.direct else {
                    return self.read_buffered(&mut buf[..n], offset);
                };
                match direct.read_at(&mut buf[..n], offset) {
                    Ok(got) => {
                        self.worked = true;
                        self.counters
                            .direct
                            .fetch_add(got as u64, Ordering::Relaxed);
                        Ok(got)
                    }
                    // Refused on the first try: the file system has no direct reads.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.worked => {
                        self.direct = None;
                        self.read_buffered(&mut buf[..n], offset)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Opens the file behind `file` once more, read-only with `O_DIRECT` (through
/// `/proc/self/fd`, so that it is the same file); `None` when the kernel refuses.
fn reopen_direct(file: &File) -> io::Result<Option<File>> {
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(by_fd)
    {
        Ok(direct) => Ok(Some(direct)),
        // No /proc, or no direct I/O here: read buffered, dropping the cache first.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
