//! The only place that talks to the kernel below `std`: ioctls and file-system facts.
//! Every `unsafe` block of the crate lives here, each with a `SAFETY:` note.

mod direct;
mod fiemap;
mod unnamed;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

pub use direct::{
    dio_alignment, discard_device, logical_block_size, page_size, punch_hole, zero_out_device,
};
pub use fiemap::fiemap;
pub use unnamed::{link_unnamed, open_unnamed, refused as unnamed_refused};

/// The file system's block size for `file` (`FIGETBSZ`), the unit of its extents.
pub fn block_size(file: &File) -> io::Result<u64> {
    let mut size: libc::c_int = 0;
    // SAFETY: FIGETBSZ writes one `int` through the pointer, which points to a live,
    // properly aligned `c_int` owned by this frame; the fd is valid while `file` lives.
    #[allow(
        unsafe_code,
        reason = "ioctl has no safe wrapper in rustix for FIGETBSZ"
    )]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FIGETBSZ, &mut size as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    u64::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| io::Error::other("FIGETBSZ returned a non-positive block size"))
}

/// `FIGETBSZ` from `<linux/fs.h>`: `_IO(0x00, 2)`.
const FIGETBSZ: libc::Ioctl = 2;

/// Magic number of ZFS in `statfs.f_type`.
pub const ZFS_SUPER_MAGIC: u64 = 0x2fc1_2fc1;

/// `statfs.f_type` of the file system holding `file`.
pub fn filesystem_type(file: &File) -> io::Result<u64> {
    let stat = rustix::fs::fstatfs(file)?;
    // f_type is signed on some targets; the magic numbers are 32-bit patterns.
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type's type differs between targets"
    )]
    Ok(stat.f_type as u64 & 0xffff_ffff)
}

/// Position of the next data at or after `offset` (`SEEK_DATA`); `None` past the last data.
pub fn seek_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, rustix::fs::SeekFrom::Data(offset))
}

/// Position of the next hole at or after `offset` (`SEEK_HOLE`); `None` past the end.
pub fn seek_hole(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, rustix::fs::SeekFrom::Hole(offset))
}

fn seek(file: &File, whence: rustix::fs::SeekFrom) -> io::Result<Option<u64>> {
    match rustix::fs::seek(file, whence) {
        Ok(pos) => Ok(Some(pos)),
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Starts writing back `file`'s dirty pages (all of them) without waiting for the
/// writes to finish, so that a final fsync has little left to do. May wait when the
/// device's queue is full, which paces the caller to the device's speed.
pub fn start_writeback(file: &File) -> io::Result<()> {
    // SAFETY: sync_file_range only reads its integer arguments; the fd is valid while
    // `file` lives. Offset 0 with length 0 means "to the end of the file".
    #[allow(unsafe_code, reason = "libc has no safe wrapper for sync_file_range")]
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `file`'s dirty pages in the `len` bytes at `offset` to the device and waits
/// until they are there (`sync_file_range` with `WAIT_BEFORE | WRITE | WAIT_AFTER`):
/// the data only, without the file's metadata or the device's write cache.
pub fn sync_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: sync_file_range only reads its integer arguments; the fd is valid while
    // `file` lives.
    #[allow(unsafe_code, reason = "libc has no safe wrapper for sync_file_range")]
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Grows a pipe's buffer to `size` bytes (best effort: the kernel caps it at
/// /proc/sys/fs/pipe-max-size for unprivileged users), so that a producer such as
/// `xzcat` or `curl` can run ahead of the reader in larger steps.
pub fn grow_pipe(file: &File, size: usize) {
    let _ = rustix::pipe::fcntl_setpipe_size(file, size);
}

/// The name of group `gid` from the system's group database (NSS), `None` when it has
/// no entry.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: `libc::group` is a plain C struct of integers and pointers, for which
        // all-zero bytes are a valid value; getgrgid_r overwrites it before we read it.
        #[allow(unsafe_code, reason = "mem::zeroed of a C struct for getgrgid_r")]
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local (`group`, `result`) or to `buf`, whose
        // length is passed with it; getgrgid_r writes strings only inside `buf`.
        #[allow(unsafe_code, reason = "libc has no safe wrapper for getgrgid_r")]
        let rc =
            unsafe { libc::getgrgid_r(gid, &mut group, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || group.gr_name.is_null() {
            return None;
        }
        // SAFETY: on success `gr_name` points to a NUL-terminated string inside `buf`,
        // which lives (unchanged) until the end of this block.
        #[allow(unsafe_code, reason = "reading the C string getgrgid_r returned")]
        let name = unsafe { std::ffi::CStr::from_ptr(group.gr_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

/// Whether the process runs with the effective user id 0 (root), which may use the
/// blocks a file system reserves for root.
pub fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    #[allow(unsafe_code, reason = "libc has no safe wrapper for geteuid")]
    let uid = unsafe { libc::geteuid() };
    uid == 0
}
