//! Facts and operations for direct I/O and discards: the alignment a file or device
//! needs for `O_DIRECT` (`statx` `STATX_DIOALIGN`, else `BLKSSZGET`), the page size,
//! `BLKDISCARD` and `BLKZEROOUT` for block devices and hole punching for regular files.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// What `statx` says about direct I/O on `file`: `Some((memory, offset))` alignments
/// in bytes, `Some((0, 0))` when the file system does not support direct I/O on it,
/// `None` when the kernel does not tell (before Linux 6.1, or 6.11 for devices).
pub fn dio_alignment(file: &File) -> Option<(u32, u32)> {
    use rustix::fs::{AtFlags, StatxFlags};
    let stat = rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN).ok()?;
    if stat.stx_mask & StatxFlags::DIOALIGN.bits() == 0 {
        return None;
    }
    Some((stat.stx_dio_mem_align, stat.stx_dio_offset_align))
}

/// The logical block size of a block device (`BLKSSZGET`): the unit of its I/O.
pub fn logical_block_size(file: &File) -> io::Result<u32> {
    Ok(rustix::fs::ioctl_blksszget(file)?)
}

/// The size of a memory page.
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads its integer argument and returns a number.
    #[allow(unsafe_code, reason = "libc has no safe wrapper for sysconf")]
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

/// Tells a block device that `len` bytes at `offset` are no longer needed
/// (`BLKDISCARD`): they may read back as zeros or as anything. Both numbers must be
/// multiples of the device's logical block size.
pub fn discard_device(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKDISCARD reads two `u64`s (start, length) through the pointer, which
    // points to a live, properly aligned `[u64; 2]` owned by this frame; the kernel
    // does not keep the pointer. The fd is valid while `file` lives.
    #[allow(
        unsafe_code,
        reason = "libc and rustix have no safe wrapper for BLKDISCARD"
    )]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKDISCARD, range.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `BLKDISCARD` from `<linux/fs.h>`: `_IO(0x12, 119)`.
const BLKDISCARD: libc::Ioctl = 0x1277;

/// Makes `len` bytes at `offset` of a block device read as zeros (`BLKZEROOUT`): the
/// device's write-zeroes command where it has one, the kernel writing zero pages
/// otherwise. Both numbers must be multiples of the device's logical block size.
pub fn zero_out_device(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKZEROOUT reads two `u64`s (start, length) through the pointer, which
    // points to a live, properly aligned `[u64; 2]` owned by this frame; the kernel
    // does not keep the pointer. The fd is valid while `file` lives.
    #[allow(
        unsafe_code,
        reason = "libc and rustix have no safe wrapper for BLKZEROOUT"
    )]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT, range.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `BLKZEROOUT` from `<linux/fs.h>`: `_IO(0x12, 127)`.
const BLKZEROOUT: libc::Ioctl = 0x127f;

/// Makes `len` bytes at `offset` of a regular file a hole, keeping its size.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::FallocateFlags;
    rustix::fs::fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(())
}
