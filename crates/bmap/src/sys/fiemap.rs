//! FIEMAP (`FS_IOC_FIEMAP`): the file system's own list of a file's extents.
//!
//! `struct fiemap` is variable-length: a 32-byte header followed by `fm_extent_count`
//! 56-byte `struct fiemap_extent`. We keep it in a `u64` buffer (aligned for the
//! header's `u64` fields) and read and write fields through native-endian byte
//! conversions, so the only unsafe step is the ioctl itself.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `FS_IOC_FIEMAP` = `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::Ioctl = 0xC020_660B_u32 as libc::Ioctl;
/// Flush dirty data (and resolve delayed allocation) before mapping.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// This extent is the file's last.
const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// Extents asked for per call.
const EXTENTS_PER_CALL: usize = 512;
const HEADER_WORDS: usize = 4;
const EXTENT_WORDS: usize = 7;

/// One extent: bytes `logical..logical + length` of the file are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file.
    pub logical: u64,
    /// Length in bytes.
    pub length: u64,
    /// `FIEMAP_EXTENT_*` flags (unwritten, delalloc, inline, ...).
    pub flags: u32,
}

/// The extents of `file` overlapping `start..start + length`, in order, asked with
/// `FIEMAP_FLAG_SYNC`. Calls the ioctl as often as needed to reach the last extent.
///
/// Errors are the ioctl's: `EOPNOTSUPP` (file system) or `ENOTTY` (kernel) mean FIEMAP
/// is not available.
pub fn fiemap(file: &File, start: u64, length: u64) -> io::Result<Vec<Extent>> {
    let end = start.saturating_add(length);
    let mut extents = Vec::new();
    let mut pos = start;
    let mut buf = vec![0u64; HEADER_WORDS + EXTENT_WORDS * EXTENTS_PER_CALL];
    while pos < end {
        let batch = call(file, &mut buf, pos, end - pos)?;
        let Some(last) = batch.last().copied() else {
            break;
        };
        extents.extend_from_slice(&batch);
        let next = last.logical.saturating_add(last.length);
        if last.flags & FIEMAP_EXTENT_LAST != 0 || next <= pos {
            break;
        }
        pos = next;
    }
    Ok(extents)
}

fn call(file: &File, buf: &mut [u64], start: u64, length: u64) -> io::Result<Vec<Extent>> {
    buf.fill(0);
    buf[0] = start;
    buf[1] = length;
    // fm_flags and fm_mapped_extents share word 2; fm_extent_count and fm_reserved word 3.
    buf[2] = pack(FIEMAP_FLAG_SYNC, 0);
    buf[3] = pack(EXTENTS_PER_CALL as u32, 0);
    // SAFETY: `buf` is a live, writable, 8-byte aligned buffer of
    // 32 + 56 * EXTENTS_PER_CALL bytes, exactly what `fm_extent_count` tells the kernel
    // it may fill; the fd is valid while `file` lives.
    #[allow(
        unsafe_code,
        reason = "FIEMAP takes a variable-length struct; no safe wrapper"
    )]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let (_, mapped) = unpack(buf[2]);
    let mapped = (mapped as usize).min(EXTENTS_PER_CALL);
    Ok((0..mapped)
        .map(|i| {
            let words = &buf[HEADER_WORDS + i * EXTENT_WORDS..][..EXTENT_WORDS];
            // fe_logical, fe_physical, fe_length, fe_reserved64[2], fe_flags + reserved.
            Extent {
                logical: words[0],
                length: words[2],
                flags: unpack(words[5]).0,
            }
        })
        .collect())
}

/// Two native-endian `u32` fields laid out in memory as one `u64` word.
fn pack(first: u32, second: u32) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&first.to_ne_bytes());
    bytes[4..].copy_from_slice(&second.to_ne_bytes());
    u64::from_ne_bytes(bytes)
}

fn unpack(word: u64) -> (u32, u32) {
    let bytes = word.to_ne_bytes();
    let first = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let second = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (first, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips() {
        assert_eq!(unpack(pack(7, 9)), (7, 9));
    }
}
