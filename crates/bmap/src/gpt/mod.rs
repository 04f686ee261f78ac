//! GPT on a larger device: moving the backup GPT of an image to the end of the device it
//! was written to, as `sgdisk -e` does, and undoing that for `verify`. Pure logic over
//! bytes: it reads through [`ReadAt`] and returns the sectors to write, never writing.
//!
//! An image made for an 8 GiB card and written to a 32 GiB one has its backup GPT
//! (the header in the image's last sector, the entry array before it) in the middle of
//! the card. Firmware and kernels expect it in the device's last sector, and tools such
//! as `sgdisk -v` or `fdisk` complain. [`plan_relocation`] checks the image's GPT
//! thoroughly (both headers, both arrays, every partition, the protective MBR) and plans
//! the UEFI standard layout on the device:
//!
//! - the backup header in the device's last sector (MyLBA = last, AlternateLBA = 1);
//! - the backup entry array right before it (PartitionEntryLBA = last - array sectors);
//! - LastUsableLBA = the backup array's LBA - 1, in both headers;
//! - the primary header's AlternateLBA = the device's last LBA;
//! - both header CRC32s recomputed, the entry array (and its CRC32) unchanged;
//! - a protective MBR's SizeInLBA = min(device sectors - 1, 0xFFFFFFFF).
//!
//! The old backup stays where the image put it (as with `sgdisk -e`): it is now in
//! free space, and [`undo_relocation`] reads it to restore the image's first sectors.
//!
//! ```no_run
//! use std::fs::File;
//! use std::os::unix::fs::FileExt;
//!
//! // After an 8 GiB image was written to a 32 GiB device with 512-byte sectors:
//! let device = File::options().read(true).write(true).open("/dev/sdX")?;
//! match bmap::gpt::plan_relocation(&device, 8 << 30, 32 << 30, 512)? {
//!     Ok(relocation) => {
//!         for write in &relocation.writes {
//!             device.write_all_at(&write.bytes, write.offset)?;
//!         }
//!         device.sync_all()?;
//!     }
//!     Err(reason) => eprintln!("backup GPT not moved: {reason}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What differs from `sgdisk -e` (all tested against it in `tests/gpt.rs`):
//! - the MBR: `sgdisk` rebuilds a protective MBR from scratch (it also recomputes the
//!   record's ending CHS, clears its boot flag and the disk signature); we change only
//!   the SizeInLBA, so that an image's deliberate choices (a boot flag some BIOSes
//!   need, as parted's `pmbr_boot` sets) survive and `verify` can restore the image's
//!   exact bytes. Nothing reads CHS values of a protective record. A hybrid MBR (a
//!   0xEE record beside others) is left as it is; `sgdisk` leaves it too, unless its
//!   0xEE record is followed by free space, which it then grows into.
//! - images whose FirstUsableLBA is not right after the primary array (`sfdisk` makes
//!   2048): `sgdisk` mirrors FirstUsableLBA at the end (LastUsableLBA = last + 1 -
//!   FirstUsableLBA), we use the standard layout, as `sfdisk --relocate gpt-bak-std`.

mod header;
mod image;
mod mbr;

use std::fmt;
use std::io;

pub use header::HeaderProblem;

/// Reads the bytes of a disk (an image, or a device as written).
///
/// The reads are few and small (the signature's 8 bytes at 512 and 4096, whole
/// sectors, two entry arrays of at most 1 MiB), at any offset and length into a plain
/// `Vec`: a reader of a device opened with `O_DIRECT` must align them itself (as
/// `Dest::read_at` does), for example through [`ReadFn`].
pub trait ReadAt {
    /// Reads exactly `buf.len()` bytes at byte `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// A disk held in memory; reading past its end is an `UnexpectedEof` error.
impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).ok();
        let bytes = start
            .and_then(|s| Some(s..s.checked_add(buf.len())?))
            .and_then(|range| self.get(range))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// A closure `|buf, offset| ...` as a [`ReadAt`].
pub struct ReadFn<F>(pub F);

impl<F> fmt::Debug for ReadFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadFn")
    }
}

impl<F: Fn(&mut [u8], u64) -> io::Result<()>> ReadAt for ReadFn<F> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (self.0)(buf, offset)
    }
}

/// A failure to read the disk (everything about its contents is a [`NotMoved`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the disk failed.
    #[error("cannot read {len} bytes at byte {offset} of the disk")]
    Read {
        /// Where the read started.
        offset: u64,
        /// How many bytes were asked for.
        len: usize,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

/// Which of the two GPT headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The primary header (LBA 1) and its entry array.
    Primary,
    /// The backup header (the disk's last LBA) and its entry array.
    Backup,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Which::Primary => "primary",
            Which::Backup => "backup",
        })
    }
}

/// Why the backup GPT was not moved: nothing to do, or not safe to do. Each says what
/// was found, in a line the CLI can print after "backup GPT not moved: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotMoved {
    /// No "EFI PART" header at byte 512 or 4096 of the image.
    #[error("the image has no GPT")]
    NoGpt,
    /// Sector 0 holds no 0xEE record (or no MBR): the GPT is unused or stale.
    #[error("the image's MBR does not protect its GPT (no 0xEE partition): the GPT may be stale")]
    NotProtective,
    /// The image's GPT uses a sector size other than the device's logical sector size.
    #[error("the image's GPT is for {image}-byte sectors, the device has {device}-byte sectors")]
    SectorSize {
        /// The image's sector size (512 or 4096).
        image: u64,
        /// The device's logical sector size.
        device: u64,
    },
    /// A header or entry array of the image is invalid.
    #[error("the image's {which} GPT header is invalid: {problem}")]
    Invalid {
        /// Which header.
        which: Which,
        /// What is wrong.
        problem: HeaderProblem,
    },
    /// The primary header's AlternateLBA is not the image's last sector.
    #[error("the image's backup GPT is at LBA {alternate_lba}, not at its end (LBA {last_lba})")]
    BackupNotAtEnd {
        /// The primary header's AlternateLBA.
        alternate_lba: u64,
        /// The image's last LBA.
        last_lba: u64,
    },
    /// The two headers disagree on a field they must share.
    #[error("the image's primary and backup GPT headers disagree on {field}")]
    Disagree {
        /// The field's name in the UEFI specification.
        field: &'static str,
    },
    /// A partition entry lies outside the usable LBAs.
    #[error(
        "partition {number} (LBAs {first}..={last}) is outside the usable LBAs {first_usable}..={last_usable}"
    )]
    PartitionOutOfBounds {
        /// The entry's number, from 1.
        number: u32,
        /// Its StartingLBA.
        first: u64,
        /// Its EndingLBA.
        last: u64,
        /// FirstUsableLBA.
        first_usable: u64,
        /// LastUsableLBA.
        last_usable: u64,
    },
    /// The device is larger than the image by less than the backup's entry array and
    /// header: the moved array would overlap the image's own last sectors.
    #[error(
        "the device ({device_sectors} sectors) is not larger than the image ({image_sectors} \
         sectors) by the {array_sectors} sectors of the backup GPT's entry array and header"
    )]
    NoRoom {
        /// The image's size in sectors.
        image_sectors: u64,
        /// The device's size in sectors.
        device_sectors: u64,
        /// The sectors of the entry array.
        array_sectors: u64,
    },
    /// The device is not larger than the image (by at least one sector).
    #[error(
        "the device ({device_sectors} sectors) is not larger than the image ({image_sectors} sectors)"
    )]
    DeviceNotLarger {
        /// The image's size in sectors.
        image_sectors: u64,
        /// The device's size in sectors.
        device_sectors: u64,
    },
}

/// Sectors to write, at a byte offset of the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Where they go (a multiple of the sector size).
    pub offset: u64,
    /// Whole sectors.
    pub bytes: Vec<u8>,
}

impl Write {
    /// Copies the part of these sectors that falls in `buf`, a buffer holding the disk's
    /// bytes from byte `at` (for `verify`: a range read back, patched with the bytes
    /// [`undo_relocation`] returns). Returns how many bytes were copied.
    pub fn overlay(&self, buf: &mut [u8], at: u64) -> usize {
        let end = |start: u64, len: usize| start.saturating_add(len as u64);
        let from = self.offset.max(at);
        let to = end(self.offset, self.bytes.len()).min(end(at, buf.len()));
        if from >= to {
            return 0;
        }
        // Both differences are below the lengths of `bytes` and `buf`: they fit.
        let (src, dst, len) = (from - self.offset, from - at, to - from);
        let (src, dst, len) = (src as usize, dst as usize, len as usize);
        buf[dst..dst + len].copy_from_slice(&self.bytes[src..src + len]);
        len
    }
}

/// What happened to sector 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MbrChange {
    /// The protective MBR's SizeInLBA now covers the device.
    Resized {
        /// The image's SizeInLBA.
        from: u32,
        /// The device's.
        to: u32,
    },
    /// The protective MBR already had the device's size (a device over 2 TiB).
    Unchanged,
    /// The protective MBR's SizeInLBA did not match the image's size; left as it was.
    KeptMismatched {
        /// Its SizeInLBA.
        size: u32,
    },
    /// A hybrid MBR, left as it was.
    KeptHybrid,
}

/// The plan to move the backup GPT to the end of the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    /// In this order: the backup entry array, the backup header, the primary header
    /// sector, and sector 0 when the MBR changes. Writing them in order keeps a valid
    /// GPT on the device at every step (the old backup stays valid until the primary
    /// points away from it).
    pub writes: Vec<Write>,
    /// The sector size (512 or 4096).
    pub sector: u64,
    /// The image's backup header LBA (its last sector).
    pub old_backup_lba: u64,
    /// The device's last LBA, where the backup header now is.
    pub new_backup_lba: u64,
    /// The new LastUsableLBA.
    pub last_usable_lba: u64,
    /// What was done to the MBR.
    pub mbr: MbrChange,
}

/// Plans moving the backup GPT of an image of `image_size` bytes, read through `disk`,
/// to the end of a device of `device_size` bytes whose logical sector is
/// `device_sector` bytes. `Ok(Err(reason))` when there is nothing to do or it must not
/// be done (no GPT, an invalid one, a device not larger...); `Err` only when reading
/// fails. Reads at most a few sectors and two entry arrays (each at most 1 MiB).
pub fn plan_relocation(
    disk: &dyn ReadAt,
    image_size: u64,
    device_size: u64,
    device_sector: u64,
) -> Result<Result<Relocation, NotMoved>, Error> {
    Ok(match image::Gpt::read(disk, image_size)? {
        Ok(gpt) => gpt.relocate(device_size, device_sector),
        Err(reason) => Err(reason),
    })
}

/// For `verify`: the bytes an image of `image_size` bytes had in its sectors 0 and 1
/// (the MBR and the primary GPT header), given `disk`, a device to which it was copied
/// and its backup GPT then moved by [`plan_relocation`]'s writes. The primary header's
/// AlternateLBA and LastUsableLBA come back from the image's own backup header (still
/// at its end on the device), its CRC32 is recomputed, and a protective MBR's SizeInLBA
/// is set back to the image's size. `None` when the device's GPT is not a moved copy of
/// the image's (not moved, or not the same GPT), and when the moved backup is not
/// whole at the end of the device of `device_size` bytes (its header, pointing back to
/// LBA 1, in the last sector, and its array with the right CRC32 before it).
///
/// One ambiguity is inherent: an image whose protective MBR already claimed the
/// device's size although it did not match its own (only possible with a device over
/// 2 TiB) is restored with its own size.
pub fn undo_relocation(
    disk: &dyn ReadAt,
    image_size: u64,
    device_size: u64,
) -> Result<Option<Vec<Write>>, Error> {
    image::undo(disk, image_size, device_size)
}

/// Reads `len` bytes at `offset`.
fn read(disk: &dyn ReadAt, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0; len];
    disk.read_exact_at(&mut buf, offset)
        .map_err(|source| Error::Read {
            offset,
            len,
            source,
        })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::Write;

    #[test]
    fn overlay_copies_only_the_overlap() {
        let write = Write {
            offset: 10,
            bytes: vec![1, 2, 3, 4],
        };
        let cases: [(u64, usize, usize, &[u8]); 6] = [
            (8, 8, 4, &[0, 0, 1, 2, 3, 4, 0, 0]),
            (12, 4, 2, &[3, 4, 0, 0]),
            (8, 4, 2, &[0, 0, 1, 2]),
            (11, 2, 2, &[2, 3]),
            (14, 4, 0, &[0, 0, 0, 0]),
            (0, 10, 0, &[0; 10]),
        ];
        for (at, len, copied, expected) in cases {
            let mut buf = vec![0; len];
            assert_eq!(write.overlay(&mut buf, at), copied, "at {at}");
            let shown = if at == 0 && len == 20 {
                &buf[8..16]
            } else {
                &buf[..]
            };
            assert_eq!(shown, expected, "at {at}");
        }
        let far = Write {
            offset: u64::MAX - 1,
            bytes: vec![9; 4],
        };
        assert_eq!(far.overlay(&mut [0; 4], u64::MAX - 2), 1);
    }
}
