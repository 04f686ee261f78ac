//! Block-device destinations: refuse a device that is mounted, used as swap, held by
//! another device (device mapper, RAID) or read by a loop device (the device or one of
//! its partitions as a loop's backing file), open it exclusively (`O_EXCL`), check its
//! size, and tune it while writing ([`super::tuning`]).

use std::fs::Metadata;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::handle::Handle;
use super::tuning::Tuning;
use super::{Dest, Error, Options, loops};

/// A block device destination, opened exclusively (`O_EXCL`); tuned while written,
/// its settings restored when finished or dropped.
#[derive(Debug)]
pub struct BlockDevice {
    pub(super) io: Handle,
    pub(super) tuning: Tuning,
    /// The logical block size (`BLKSSZGET`), the unit of a discard.
    pub(super) logical_block: u64,
    /// The device's size in bytes.
    pub(super) size: u64,
}

impl BlockDevice {
    /// Discards the whole logical blocks inside `len` bytes at `offset`.
    pub(super) fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let block = self.logical_block;
        let start = offset.div_ceil(block) * block;
        let end = offset.saturating_add(len) / block * block;
        if end <= start {
            return Ok(());
        }
        // Through the descriptor that holds the O_EXCL claim: the kernel refuses a
        // discard on a device another descriptor holds exclusively.
        crate::sys::discard_device(self.io.file(), start, end - start)
    }

    /// Makes `len` bytes at `offset` read as zeros: `BLKZEROOUT` for the whole logical
    /// blocks inside (through the descriptor that holds the claim, as a discard), zero
    /// writes for the partial blocks at the ends and for everything when the kernel
    /// refuses the ioctl. Returns whether the ioctl did the whole blocks.
    pub(super) fn zero_out(&self, offset: u64, len: u64) -> io::Result<bool> {
        let block = self.logical_block;
        let end = offset.saturating_add(len);
        let (start, stop) = (offset.div_ceil(block) * block, end / block * block);
        if stop <= start {
            super::write_zeros(&self.io, offset, len)?;
            return Ok(false);
        }
        match crate::sys::zero_out_device(self.io.file(), start, stop - start) {
            Ok(()) => {
                super::write_zeros(&self.io, offset, start - offset)?;
                super::write_zeros(&self.io, stop, end - stop)?;
                Ok(true)
            }
            Err(e) if unsupported(&e) => {
                super::write_zeros(&self.io, offset, len)?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether an ioctl's error says the device or kernel does not do it.
fn unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL)
    )
}

/// Opens a block device for writing an image.
pub(super) fn open(path: &Path, meta: &Metadata, options: &Options) -> Result<Dest, Error> {
    let sys = sysfs_dir(meta.rdev());
    let family = family(&sys, meta.rdev());
    if let Some(reason) = in_use(&family) {
        return Err(Error::Busy {
            path: path.to_owned(),
            reason,
        });
    }
    if read_only(&sys) {
        return Err(Error::ReadOnly(path.to_owned()));
    }
    let (mut file, readable) = super::file::open_rw(path, |o| o.custom_flags(libc::O_EXCL))
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EBUSY) => Error::Busy {
                path: path.to_owned(),
                reason: "another program has it open exclusively (a mount in another \
                         namespace, a RAID or LVM member, or a flashing tool)"
                    .into(),
            },
            _ => super::open_error(path, meta, "block device", source),
        })?;
    let device = file.seek(SeekFrom::End(0)).map_err(|source| Error::Io {
        action: "find the size of",
        path: path.to_owned(),
        source,
    })?;
    let (image, at_least) = match options.image_size {
        Some(size) => (Some(size), false),
        None => (options.min_size, true),
    };
    if let Some(image) = image
        && image
            .checked_add(options.seek.unwrap_or(0))
            .is_none_or(|end| end > device)
    {
        return Err(Error::TooSmall {
            seek: options.seek.unwrap_or(0),
            path: path.to_owned(),
            image,
            at_least,
            device,
        });
    }
    let logical_block = crate::sys::logical_block_size(&file).ok();
    let mut io = Handle::buffered(path, file);
    io.seek = options.seek.unwrap_or(0);
    io.enable_direct(readable, logical_block)
        .map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
    let tuning = if options.tune {
        Tuning::apply(&sys)
    } else {
        Tuning::none()
    };
    Ok(Dest::BlockDevice(BlockDevice {
        io,
        tuning,
        logical_block: logical_block.map_or(512, u64::from).max(1),
        size: device,
    }))
}

/// Why the block device `meta` describes is in use (mounted, swap, held, read by a
/// loop device), if it is: what `verify` warns about before reading it.
pub(crate) fn in_use_by(meta: &Metadata) -> Option<String> {
    in_use(&family(&sysfs_dir(meta.rdev()), meta.rdev()))
}

/// `/sys/dev/block/MAJ:MIN`, resolved.
/// Whether the kernel marks the device read-only (`ro` in its sysfs directory: a
/// `losetup -r` loop, a write-protected card, `blockdev --setro`). Opening it for
/// writing succeeds; only the first write fails, so it is refused before.
fn read_only(sys: &Path) -> bool {
    std::fs::read_to_string(sys.join("ro")).is_ok_and(|text| text.trim() == "1")
}

fn sysfs_dir(rdev: u64) -> PathBuf {
    let link = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        rustix::fs::major(rdev),
        rustix::fs::minor(rdev)
    ));
    std::fs::canonicalize(&link).unwrap_or(link)
}

/// The device and, for a whole disk, its partitions: `(name, rdev, sysfs dir)`.
fn family(sys: &Path, rdev: u64) -> Vec<(String, u64, PathBuf)> {
    let name = |dir: &Path| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut members = vec![(name(sys), rdev, sys.to_owned())];
    if sys.join("partition").exists() {
        return members;
    }
    if let Ok(entries) = std::fs::read_dir(sys) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.join("partition").exists()
                && let Some(dev) = read_dev(&dir.join("dev"))
            {
                members.push((name(&dir), dev, dir));
            }
        }
    }
    members
}

/// Reads a sysfs `dev` file ("MAJ:MIN").
fn read_dev(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some(rustix::fs::makedev(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

/// Why the device (or one of its partitions) must not be written, if it must not.
fn in_use(family: &[(String, u64, PathBuf)]) -> Option<String> {
    let member = |dev: u64| {
        family
            .iter()
            .find(|(_, d, _)| *d == dev)
            .map(|(n, _, _)| n.clone())
    };
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(devno), Some(mount_point)) = (fields.get(2), fields.get(4)) else {
                continue;
            };
            let dev = devno
                .split_once(':')
                .and_then(|(a, b)| Some(rustix::fs::makedev(a.parse().ok()?, b.parse().ok()?)));
            if let Some(name) = dev.and_then(member) {
                return Some(format!(
                    "{name} is mounted on {}",
                    unescape_mount(mount_point)
                ));
            }
        }
    }
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        for line in swaps.lines().skip(1) {
            let Some(file) = line.split_whitespace().next() else {
                continue;
            };
            let file = unescape_mount(file);
            if let Ok(meta) = std::fs::metadata(&file)
                && let Some(name) = member(meta.rdev())
            {
                return Some(format!("{name} is used as swap ({file})"));
            }
        }
    }
    if let Some(reason) = loops::reading_device(family) {
        return Some(reason);
    }
    for (name, _, dir) in family {
        let holders: Vec<String> = std::fs::read_dir(dir.join("holders"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !holders.is_empty() {
            return Some(format!("{name} is held by {}", holders.join(", ")));
        }
    }
    None
}

/// Undoes the octal escapes of /proc/self/mountinfo and /proc/swaps (`\040` for space).
fn unescape_mount(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
            && let Ok(value) = u8::from_str_radix(&text[i + 1..i + 4], 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a device counts as removable, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removable {
    /// The kernel's `removable` flag is set.
    Flag,
    /// The device sits on a USB bus (card readers and sticks often lack the flag).
    Usb,
    /// The device is an MMC/SD card.
    Mmc,
    /// None of the above: the device looks fixed (with the resolved name).
    No(String),
}

/// Decides whether the block device at `path` (symlinks resolved; a partition is judged
/// by its disk) is removable: the kernel flag, or a USB or MMC/SD bus.
pub fn removable(path: &Path) -> io::Result<Removable> {
    let meta = std::fs::metadata(path)?;
    let mut sys = sysfs_dir(meta.rdev());
    if sys.join("partition").exists()
        && let Some(parent) = sys.parent()
    {
        sys = parent.to_owned();
    }
    let name = sys
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let flag = std::fs::read_to_string(sys.join("removable")).unwrap_or_default();
    if flag.trim() == "1" {
        return Ok(Removable::Flag);
    }
    let devpath = sys.to_string_lossy();
    if devpath.contains("/usb") {
        return Ok(Removable::Usb);
    }
    if devpath.contains("/mmc_host/") || name.starts_with("mmcblk") {
        return Ok(Removable::Mmc);
    }
    Ok(Removable::No(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_escapes() {
        assert_eq!(unescape_mount("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/end\\04"), "/end\\04");
    }
}
