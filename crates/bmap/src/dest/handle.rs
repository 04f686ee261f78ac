//! The file descriptors of a destination and how bytes reach them. A destination is
//! opened once as usual (buffered; for a device this descriptor holds the `O_EXCL`
//! claim, and ioctls go through it) and, where the kernel accepts it, a second time
//! with `O_DIRECT`. A write or read is cut into steps: a part whose file offset,
//! length and memory are aligned goes through the direct descriptor; anything else (a
//! range that starts or ends inside a logical block, an image's partial last block)
//! goes through the buffered one, where the kernel reads, modifies and writes the
//! block, so bytes next to the range are never touched.
//!
//! `O_DIRECT` is refused with `EINVAL`, at open (ramfs, tmpfs before Linux 6.6, some
//! FUSE file systems) or on the first direct write: then everything is buffered, as
//! `dd` does. A second open that the file's mode refuses (a new file the umask made
//! read-only) also leaves it buffered; any other failure is an error.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// The least alignment used for direct I/O (and for the copy's buffers).
pub const MIN_ALIGN: usize = 4096;
/// Alignments above this are not used for direct I/O (the copy's chunks are 1 MiB).
const MAX_ALIGN: u64 = 1 << 20;

/// Direct I/O not yet tried: an `EINVAL` now means the file system refuses it.
const UNTRIED: u8 = 0;
/// A direct write or read succeeded.
const WORKS: u8 = 1;
/// No direct I/O: not accepted at open, or refused on the first try.
const OFF: u8 = 2;

/// One piece of a transfer: how many bytes, through which descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Through the page cache.
    Buffered(usize),
    /// With `O_DIRECT`.
    Direct(usize),
}

/// The next step for `len` bytes at file `offset` from memory at `addr`, when direct
/// I/O needs `align` (a power of two) for all three.
pub(crate) fn step(align: u64, direct: bool, addr: usize, len: usize, offset: u64) -> Step {
    if !direct {
        return Step::Buffered(len);
    }
    let misaligned = offset % align;
    if misaligned != 0 {
        let to_boundary = usize::try_from(align - misaligned).unwrap_or(usize::MAX);
        return Step::Buffered(len.min(to_boundary));
    }
    let align = usize::try_from(align).unwrap_or(usize::MAX);
    let whole = len - len % align;
    if !addr.is_multiple_of(align) || whole == 0 {
        return Step::Buffered(len);
    }
    Step::Direct(whole)
}

/// An open destination's descriptors.
#[derive(Debug)]
pub(super) struct Handle {
    path: PathBuf,
    /// Buffered; the one that holds a device's `O_EXCL` claim.
    file: File,
    /// The same file opened with `O_DIRECT`, when the kernel accepted it.
    direct: Option<File>,
    /// Alignment of memory, offsets and lengths for `direct`.
    align: u64,
    state: AtomicU8,
    /// Bytes written through the page cache so far.
    buffered: AtomicU64,
    /// Added by [`super::Dest`] to every offset it is given (`Options::seek`).
    pub(super) seek: u64,
}

impl Handle {
    /// A destination written through the page cache only.
    pub(super) fn buffered(path: &Path, file: File) -> Handle {
        Handle {
            path: path.to_owned(),
            file,
            direct: None,
            align: MIN_ALIGN as u64,
            state: AtomicU8::new(OFF),
            buffered: AtomicU64::new(0),
            seek: 0,
        }
    }

    /// Adds an `O_DIRECT` descriptor where the kernel accepts one; `device_block` is
    /// a block device's logical block size. Left buffered when the file system says
    /// it has no direct I/O, or refuses `O_DIRECT` at open (`EINVAL`).
    pub(super) fn enable_direct(
        &mut self,
        readable: bool,
        device_block: Option<u32>,
    ) -> io::Result<()> {
        let Some(align) = direct_alignment(&self.file, device_block) else {
            return Ok(());
        };
        self.direct = reopen_direct(&self.path, &self.file, readable)?;
        if self.direct.is_some() {
            self.align = align;
            self.state.store(UNTRIED, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The buffered descriptor (sizes, ioctls, the `O_EXCL` claim).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// The alignment that lets a transfer go direct: memory, offset and length.
    pub(super) fn align(&self) -> usize {
        usize::try_from(self.align).unwrap_or(MIN_ALIGN)
    }

    /// Whether aligned transfers bypass the page cache.
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some() && self.state.load(Ordering::Relaxed) != OFF
    }

    /// Bytes written through the page cache so far.
    pub(super) fn buffered_bytes(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    fn next(&self, addr: usize, len: usize, offset: u64) -> Step {
        step(self.align, self.is_direct(), addr, len, offset)
    }

    /// Writes all of `buf` at `offset`.
    pub(super) fn write_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let done = match self.next(buf.as_ptr() as usize, buf.len(), offset) {
                Step::Buffered(n) => {
                    self.file.write_all_at(&buf[..n], offset)?;
                    self.buffered.fetch_add(n as u64, Ordering::Relaxed);
                    n
                }
                Step::Direct(n) => match self.direct_io(|f| f.write_at(&buf[..n], offset))? {
                    Some(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Some(n) => n,
                    None => 0,
                },
            };
            buf = &buf[done..];
            offset += done as u64;
        }
        Ok(())
    }

    /// Reads into `buf` from `offset` until it is full or the end of the file; returns
    /// the bytes read. Aligned parts bypass the page cache.
    pub(super) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            let at = offset + done as u64;
            let got = match self.next(rest.as_ptr() as usize, rest.len(), at) {
                Step::Buffered(n) => match self
                    .drop_around(at, n)
                    .and_then(|()| self.file.read_at(&mut rest[..n], at))
                {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => other?,
                },
                Step::Direct(n) => match self.direct_io(|f| f.read_at(&mut rest[..n], at))? {
                    Some(n) => n,
                    None => continue,
                },
            };
            if got == 0 {
                break;
            }
            done += got;
        }
        Ok(done)
    }

    /// One direct transfer: `Some(bytes)`, or `None` when it should be tried again
    /// (interrupted, or refused on the first try, which turns direct I/O off).
    fn direct_io(&self, io: impl FnOnce(&File) -> io::Result<usize>) -> io::Result<Option<usize>> {
        let Some(direct) = &self.direct else {
            return Ok(None);
        };
        match io(direct) {
            Ok(n) => {
                self.state.store(WORKS, Ordering::Relaxed);
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    && self
                        .state
                        .compare_exchange(UNTRIED, OFF, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok() =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Starts writing back what went through the page cache, without waiting.
    pub(super) fn start_writeback(&self) {
        let _ = crate::sys::start_writeback(&self.file);
    }

    /// Writes the page cache's dirty pages of the `len` bytes at `offset` to the
    /// medium, waits for them, and drops those pages from the cache, so that a read of
    /// the span shows what the medium holds (tmpfs keeps them: there they are the
    /// medium).
    pub(super) fn settle(&self, offset: u64, len: u64) -> io::Result<()> {
        let Some(len) = std::num::NonZeroU64::new(len) else {
            return Ok(());
        };
        crate::sys::sync_range(&self.file, offset, len.get())?;
        rustix::fs::fadvise(&self.file, offset, Some(len), rustix::fs::Advice::DontNeed)?;
        Ok(())
    }

    /// Makes a buffered read of `len` bytes at `offset` show what the medium holds: the
    /// area around it is written back and dropped from the page cache (rounded out to
    /// 2 MiB, since the cache keeps a large folio that straddles the span). Best effort
    /// on nodes that have no page cache to drop.
    fn drop_around(&self, offset: u64, len: usize) -> io::Result<()> {
        const AREA: u64 = 2 << 20;
        let start = offset - offset % AREA;
        let end = (offset + len as u64).div_ceil(AREA) * AREA;
        match self.settle(start, end - start) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESPIPE | libc::EINVAL)) => Ok(()),
            other => other,
        }
    }

    /// Syncs both descriptors to the medium (the device's write cache flushed too).
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()?;
        if let Some(direct) = &self.direct {
            direct.sync_all()?;
        }
        Ok(())
    }
}

/// The alignment (of memory, offsets and lengths) for `O_DIRECT` transfers on `file`:
/// the largest of 4096, the page size, what the kernel reports (`STATX_DIOALIGN`) and a
/// device's logical block size; `None` when the kernel says the file has no direct
/// I/O, or the alignment is not one a buffer can have.
pub(crate) fn direct_alignment(file: &File, device_block: Option<u32>) -> Option<u64> {
    let dio = crate::sys::dio_alignment(file);
    if let Some((_, 0)) = dio {
        return None;
    }
    let (memory, offset) = dio.unwrap_or((0, 0));
    let align = [
        MIN_ALIGN as u64,
        crate::sys::page_size() as u64,
        u64::from(memory),
        u64::from(offset),
        u64::from(device_block.unwrap_or(0)),
    ]
    .into_iter()
    .max()
    .unwrap_or(MIN_ALIGN as u64);
    (align.is_power_of_two() && align <= MAX_ALIGN).then_some(align)
}

/// Opens the file behind `file` once more with `O_DIRECT` (through `/proc/self/fd`,
/// so that a renamed path cannot lead elsewhere); `None` when the kernel refuses
/// `O_DIRECT` for it.
fn reopen_direct(path: &Path, file: &File, readable: bool) -> io::Result<Option<File>> {
    let open = |at: &Path| {
        OpenOptions::new()
            .read(readable)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(at)
    };
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let reopened = match open(&by_fd) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match open(path) {
            // Without /proc: the path, as long as it still names the same file (a new
            // file written unnamed has none yet: no direct I/O then).
            Ok(other) if !same_file(file, &other)? => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other,
        },
        other => other,
    };
    match reopened {
        Ok(direct) => Ok(Some(direct)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        // A file created with a mode that does not let its owner write (umask 0222):
        // the first open was allowed by O_CREAT, a second one is not.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(None),
        Err(e) => Err(e),
    }
}

fn same_file(a: &File, b: &File) -> io::Result<bool> {
    let (a, b) = (a.metadata()?, b.metadata()?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino() && a.rdev() == b.rdev())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the temporary directory with a direct descriptor, when its file
    /// system gives one and checks alignment (not tmpfs, which takes any); `None`
    /// elsewhere.
    fn strict_direct_file(dir: &Path) -> Option<Handle> {
        let path = dir.join("file");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create");
        const TMPFS_MAGIC: u64 = 0x0102_1994;
        if crate::sys::filesystem_type(&file).ok() == Some(TMPFS_MAGIC) {
            return None;
        }
        let mut handle = Handle::buffered(&path, file);
        handle.enable_direct(true, None).expect("reopen");
        handle.is_direct().then_some(handle)
    }

    #[test]
    fn einval_on_the_first_direct_write_turns_direct_io_off_and_the_bytes_still_land() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let Some(mut handle) = strict_direct_file(dir.path()) else {
            return;
        };
        // Pretend any alignment will do: the kernel refuses an odd offset and address.
        handle.align = 1;
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        handle.write_at(&bytes[1..], 3).expect("falls back");
        assert!(!handle.is_direct(), "direct I/O still on after EINVAL");
        let mut back = vec![0u8; 999];
        assert_eq!(handle.read_at(&mut back, 3).expect("read"), 999);
        assert!(back[..] == bytes[1..]);
    }

    #[test]
    fn einval_after_a_direct_write_worked_is_an_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let Some(mut handle) = strict_direct_file(dir.path()) else {
            return;
        };
        let mut block = crate::dest::AlignedBuf::new(handle.align(), handle.align());
        block.fill(1);
        handle.write_at(&block, 0).expect("an aligned direct write");
        handle.align = 1;
        let error = handle.write_at(&block[1..100], 3).expect_err("EINVAL");
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        assert!(handle.is_direct());
    }

    #[test]
    fn aligned_pieces_go_direct_and_the_rest_buffered() {
        let a = 4096;
        // Buffered only: everything at once.
        assert_eq!(step(a, false, 0, 10_000, 512), Step::Buffered(10_000));
        // A start inside a block: up to the next boundary.
        assert_eq!(step(a, true, 512, 10_000, 512), Step::Buffered(3584));
        assert_eq!(step(a, true, 512, 100, 512), Step::Buffered(100));
        // Aligned: whole blocks direct, the tail later.
        assert_eq!(step(a, true, 8192, 10_000, 4096), Step::Direct(8192));
        assert_eq!(step(a, true, 8192, 1808, 12288), Step::Buffered(1808));
        // Memory not aligned: buffered.
        assert_eq!(step(a, true, 8192 + 512, 8192, 4096), Step::Buffered(8192));
        // Less than a block: buffered.
        assert_eq!(step(a, true, 0, 4095, 0), Step::Buffered(4095));
        assert_eq!(step(a, true, 0, 4096, 0), Step::Direct(4096));
    }
}
