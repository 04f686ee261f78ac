//! Which blocks of a local file are mapped: FIEMAP first (with `FIEMAP_FLAG_SYNC`, as
//! the reference), `SEEK_DATA`/`SEEK_HOLE` where FIEMAP is not supported (tmpfs, some
//! network and FUSE file systems).
//!
//! Extents become block ranges the way the reference does it, except that an extent
//! edge inside a block always rounds outwards (start down, end up): a block that holds
//! any data is mapped. Extents the file system marks unwritten (`fallocate`) or
//! delayed count as mapped, as in the reference's FIEMAP backend.

use std::fs::File;
use std::io;

use crate::sys;

/// How the mapped extents were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The `FS_IOC_FIEMAP` ioctl.
    Fiemap,
    /// `lseek` with `SEEK_DATA` and `SEEK_HOLE`.
    SeekData,
}

/// Mapped blocks of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// File size in bytes.
    pub size: u64,
    /// Block size in bytes (the file system's, from `FIGETBSZ`).
    pub block_size: u64,
    /// How the extents were found.
    pub method: Method,
    /// Mapped blocks as inclusive `(first, last)` pairs: ascending, disjoint, maximal.
    pub ranges: Vec<(u64, u64)>,
}

/// Why the layout could not be found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `fstat` or `FIGETBSZ`-and-`fstat` failed.
    #[error("cannot inspect the file")]
    Stat(#[source] io::Error),
    /// FIEMAP failed for another reason than "not supported".
    #[error("the FIEMAP ioctl failed")]
    Fiemap(#[source] io::Error),
    /// `lseek(SEEK_DATA/SEEK_HOLE)` failed.
    #[error("cannot find data and holes with lseek")]
    Seek(#[source] io::Error),
    /// ZFS reports holes reliably only with `zfs_dmu_offset_next_sync=1`.
    #[error(
        "the image is on ZFS, whose hole reporting is unreliable unless \
         zfs_dmu_offset_next_sync is 1 (echo 1 > /sys/module/zfs/parameters/zfs_dmu_offset_next_sync)"
    )]
    UnsafeZfs,
}

/// Finds the mapped blocks of `file`, FIEMAP first.
pub fn mapped_ranges(file: &File) -> Result<Layout, Error> {
    mapped_ranges_with(file, None)
}

/// Like [`mapped_ranges`], with the method forced (`Some`) or chosen (`None`).
/// Forcing [`Method::Fiemap`] on a file system without it is an error.
pub fn mapped_ranges_with(file: &File, method: Option<Method>) -> Result<Layout, Error> {
    let size = file.metadata().map_err(Error::Stat)?.len();
    let block_size = match sys::block_size(file) {
        Ok(size) => size,
        Err(_) => {
            use std::os::unix::fs::MetadataExt;
            file.metadata().map_err(Error::Stat)?.blksize().max(1)
        }
    };
    check_zfs(file)?;
    let (method, extents) = match method {
        Some(Method::SeekData) => (Method::SeekData, seek_extents(file, size)?),
        Some(Method::Fiemap) => (
            Method::Fiemap,
            fiemap_extents(file, size).map_err(Error::Fiemap)?,
        ),
        None => match fiemap_extents(file, size) {
            Ok(extents) => (Method::Fiemap, extents),
            Err(e) if fiemap_unsupported(&e) => (Method::SeekData, seek_extents(file, size)?),
            Err(e) => return Err(Error::Fiemap(e)),
        },
    };
    Ok(Layout {
        size,
        block_size,
        method,
        ranges: to_blocks(&extents, size, block_size),
    })
}

fn fiemap_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL | libc::ENOSYS)
    )
}

fn check_zfs(file: &File) -> Result<(), Error> {
    if sys::filesystem_type(file).ok() != Some(sys::ZFS_SUPER_MAGIC) {
        return Ok(());
    }
    let param = std::fs::read_to_string("/sys/module/zfs/parameters/zfs_dmu_offset_next_sync");
    match param {
        Ok(value) if value.trim() == "1" => Ok(()),
        _ => Err(Error::UnsafeZfs),
    }
}

/// Byte extents `(start, end)` from FIEMAP, clipped to the file.
fn fiemap_extents(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    if size == 0 {
        // Still ask once, so an unsupported file system shows as such.
        sys::fiemap(file, 0, 1)?;
        return Ok(Vec::new());
    }
    Ok(sys::fiemap(file, 0, size)?
        .into_iter()
        .filter_map(|e| {
            let end = e.logical.saturating_add(e.length).min(size);
            (e.logical < end).then_some((e.logical, end))
        })
        .collect())
}

/// Byte extents `(start, end)` from `SEEK_DATA`/`SEEK_HOLE`.
fn seek_extents(file: &File, size: u64) -> Result<Vec<(u64, u64)>, Error> {
    let mut extents = Vec::new();
    let mut pos = 0;
    while pos < size {
        let Some(data) = sys::seek_data(file, pos).map_err(Error::Seek)? else {
            break;
        };
        if data >= size {
            break;
        }
        let hole = sys::seek_hole(file, data)
            .map_err(Error::Seek)?
            .unwrap_or(size)
            .min(size);
        if hole <= data {
            // A file system that reports a hole where it just reported data: treat the
            // rest as data rather than loop or lose it.
            extents.push((data, size));
            break;
        }
        extents.push((data, hole));
        pos = hole;
    }
    Ok(extents)
}

/// Byte extents -> inclusive block ranges, rounding outwards and merging neighbours.
fn to_blocks(extents: &[(u64, u64)], size: u64, block_size: u64) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &(start, end) in extents {
        let end = end.min(size);
        if start >= end {
            continue;
        }
        let first = start / block_size;
        let last = end.div_ceil(block_size) - 1;
        match ranges.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => ranges.push((first, last)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_round_outwards_and_merge() {
        let bs = 4096;
        assert_eq!(to_blocks(&[], 100, bs), vec![]);
        assert_eq!(
            to_blocks(&[(0, 4096), (4096, 8192)], 10 * bs, bs),
            vec![(0, 1)]
        );
        assert_eq!(to_blocks(&[(100, 200)], 10 * bs, bs), vec![(0, 0)]);
        assert_eq!(to_blocks(&[(4000, 4100)], 10 * bs, bs), vec![(0, 1)]);
        assert_eq!(
            to_blocks(&[(0, 10), (8192, 9000)], 10 * bs, bs),
            vec![(0, 0), (2, 2)]
        );
        // Partial last block, extent reaching past the end of the file.
        assert_eq!(to_blocks(&[(8192, 16384)], 8193, bs), vec![(2, 2)]);
    }
}
