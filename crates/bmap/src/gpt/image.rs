//! The GPT of an image, read and checked as a whole (both headers, both entry arrays,
//! the partitions, the MBR), and what moving its backup to a device's end writes.

use super::header::{self, Edit, Header, HeaderProblem, SIGNATURE};
use super::mbr::{self, Kind};
use super::{Error, MbrChange, NotMoved, ReadAt, Relocation, Which, Write, read};

/// The sector sizes a GPT image can have, probed in this order.
const SECTOR_SIZES: [u64; 2] = [512, 4096];

/// A checked GPT whose backup is in the image's last sector.
pub(super) struct Gpt {
    sector: u64,
    image_sectors: u64,
    sector0: Vec<u8>,
    mbr: Kind,
    primary: Header,
    primary_bytes: Vec<u8>,
    backup: Header,
    backup_bytes: Vec<u8>,
    backup_array: Vec<u8>,
    /// (number, StartingLBA, EndingLBA) of the used entries.
    partitions: Vec<(u32, u64, u64)>,
}

impl Gpt {
    /// Reads and checks the GPT of an image of `image_size` bytes.
    pub fn read(disk: &dyn ReadAt, image_size: u64) -> Result<Result<Gpt, NotMoved>, Error> {
        let Some(sector) = detect_sector(disk, image_size)? else {
            return Ok(Err(NotMoved::NoGpt));
        };
        let s = sector as usize;
        let image_sectors = image_size / sector;
        let last = image_sectors - 1;
        let sector0 = read(disk, 0, s)?;
        let mbr = mbr::classify(&sector0);
        if mbr == Kind::NotGpt {
            return Ok(Err(NotMoved::NotProtective));
        }
        let primary_bytes = read(disk, sector, s)?;
        let primary = match check_primary(&primary_bytes, last) {
            Ok(header) => header,
            Err(reason) => return Ok(Err(reason)),
        };
        let array_len = primary.array_sectors(sector) * sector;
        let primary_array = read(disk, primary.entries_lba * sector, array_len as usize)?;
        if let Err(problem) = header::check_entries(&primary, &primary_array) {
            return Ok(Err(invalid(Which::Primary, problem)));
        }
        let backup_bytes = read(disk, last * sector, s)?;
        let backup = match check_backup(&backup_bytes, &primary, last, sector) {
            Ok(header) => header,
            Err(reason) => return Ok(Err(reason)),
        };
        let backup_array = read(disk, backup.entries_lba * sector, array_len as usize)?;
        if let Err(problem) = header::check_entries(&backup, &backup_array) {
            return Ok(Err(invalid(Which::Backup, problem)));
        }
        let partitions = used_entries(&primary, &primary_array);
        if let Err(reason) = check_partitions(&partitions, &primary, primary.last_usable) {
            return Ok(Err(reason));
        }
        Ok(Ok(Gpt {
            sector,
            image_sectors,
            sector0,
            mbr,
            primary,
            primary_bytes,
            backup,
            backup_bytes,
            backup_array,
            partitions,
        }))
    }

    /// The writes that move the backup to the end of a device of `device_size` bytes.
    pub fn relocate(&self, device_size: u64, device_sector: u64) -> Result<Relocation, NotMoved> {
        let sector = self.sector;
        if device_sector != sector {
            return Err(NotMoved::SectorSize {
                image: sector,
                device: device_sector,
            });
        }
        let device_sectors = device_size / sector;
        if device_sectors <= self.image_sectors {
            return Err(NotMoved::DeviceNotLarger {
                image_sectors: self.image_sectors,
                device_sectors,
            });
        }
        let new_last = device_sectors - 1;
        // The image's backup array ended before its last LBA, which is below the
        // device's: no underflow, and the new usable range only grows.
        let entries_lba = new_last - self.primary.array_sectors(sector);
        if entries_lba < self.image_sectors {
            // The new array would overlap the image's own last sectors (its old
            // backup), which the copy writes too.
            return Err(NotMoved::NoRoom {
                image_sectors: self.image_sectors,
                device_sectors,
                array_sectors: self.primary.array_sectors(sector),
            });
        }
        let last_usable = entries_lba - 1;
        check_partitions(&self.partitions, &self.primary, last_usable)?;

        let mut backup = self.backup_bytes.clone();
        let edit = Edit {
            my_lba: new_last,
            alternate_lba: 1,
            last_usable,
            entries_lba,
        };
        header::rewrite(&mut backup, &self.backup, edit);
        let mut primary = self.primary_bytes.clone();
        let edit = Edit {
            my_lba: 1,
            alternate_lba: new_last,
            last_usable,
            entries_lba: self.primary.entries_lba,
        };
        header::rewrite(&mut primary, &self.primary, edit);
        let mut writes = vec![
            Write {
                offset: entries_lba * sector,
                bytes: self.backup_array.clone(),
            },
            Write {
                offset: new_last * sector,
                bytes: backup,
            },
            Write {
                offset: sector,
                bytes: primary,
            },
        ];
        let (mbr, sector0) = self.resize_mbr(device_sectors);
        writes.extend(sector0.map(|bytes| Write { offset: 0, bytes }));
        Ok(Relocation {
            writes,
            sector,
            old_backup_lba: self.image_sectors - 1,
            new_backup_lba: new_last,
            last_usable_lba: last_usable,
            mbr,
        })
    }

    /// What becomes of the MBR on a device of `device_sectors`, and sector 0 if it changes.
    fn resize_mbr(&self, device_sectors: u64) -> (MbrChange, Option<Vec<u8>>) {
        let Kind::Protective { slot, size } = self.mbr else {
            return (MbrChange::KeptHybrid, None);
        };
        if size != mbr::protective_size(self.image_sectors) {
            return (MbrChange::KeptMismatched { size }, None);
        }
        let to = mbr::protective_size(device_sectors);
        if to == size {
            return (MbrChange::Unchanged, None);
        }
        let mut sector0 = self.sector0.clone();
        mbr::set_size(&mut sector0, slot, to);
        (MbrChange::Resized { from: size, to }, Some(sector0))
    }
}

/// The image's sector size: where the first "EFI PART" is, at byte 512 or 4096.
fn detect_sector(disk: &dyn ReadAt, image_size: u64) -> Result<Option<u64>, Error> {
    for sector in SECTOR_SIZES {
        // The smallest plausible GPT disk: MBR, primary, array, backup array and header.
        if image_size / sector < 5 {
            continue;
        }
        if read(disk, sector, SIGNATURE.len())? == SIGNATURE {
            return Ok(Some(sector));
        }
    }
    Ok(None)
}

fn invalid(which: Which, problem: HeaderProblem) -> NotMoved {
    NotMoved::Invalid { which, problem }
}

/// Checks the primary header of a disk whose last LBA is `last`.
fn check_primary(bytes: &[u8], last: u64) -> Result<Header, NotMoved> {
    let primary = Header::parse(bytes).map_err(|p| invalid(Which::Primary, p))?;
    if primary.my_lba != 1 {
        let problem = HeaderProblem::MyLba {
            expected: 1,
            found: primary.my_lba,
        };
        return Err(invalid(Which::Primary, problem));
    }
    if primary.alternate_lba != last {
        return Err(NotMoved::BackupNotAtEnd {
            alternate_lba: primary.alternate_lba,
            last_lba: last,
        });
    }
    let sector = bytes.len() as u64;
    let array_end = primary
        .entries_lba
        .checked_add(primary.array_sectors(sector));
    let fits = primary.entries_lba >= 2
        && array_end.is_some_and(|end| end <= primary.first_usable)
        && primary.first_usable <= primary.last_usable
        && primary.last_usable < last;
    if !fits {
        return Err(invalid(Which::Primary, HeaderProblem::Layout));
    }
    Ok(primary)
}

/// Checks the backup header in the last LBA `last` against the checked `primary`.
fn check_backup(
    bytes: &[u8],
    primary: &Header,
    last: u64,
    sector: u64,
) -> Result<Header, NotMoved> {
    let backup = Header::parse(bytes).map_err(|p| invalid(Which::Backup, p))?;
    if backup.my_lba != last {
        let problem = HeaderProblem::MyLba {
            expected: last,
            found: backup.my_lba,
        };
        return Err(invalid(Which::Backup, problem));
    }
    if backup.alternate_lba != 1 {
        let problem = HeaderProblem::AlternateLba(backup.alternate_lba);
        return Err(invalid(Which::Backup, problem));
    }
    if let Some(field) = disagreement(primary, &backup, true) {
        return Err(NotMoved::Disagree { field });
    }
    let array_end = backup.entries_lba.checked_add(backup.array_sectors(sector));
    if backup.entries_lba <= backup.last_usable || array_end.is_none_or(|end| end > last) {
        return Err(invalid(Which::Backup, HeaderProblem::Layout));
    }
    Ok(backup)
}

/// The first field two headers of one GPT must share but do not (LastUsableLBA only
/// when `with_last_usable`).
fn disagreement(a: &Header, b: &Header, with_last_usable: bool) -> Option<&'static str> {
    let fields = [
        (a.header_size == b.header_size, "HeaderSize"),
        (a.disk_guid == b.disk_guid, "DiskGUID"),
        (a.first_usable == b.first_usable, "FirstUsableLBA"),
        (
            !with_last_usable || a.last_usable == b.last_usable,
            "LastUsableLBA",
        ),
        (a.entry_count == b.entry_count, "NumberOfPartitionEntries"),
        (a.entry_size == b.entry_size, "SizeOfPartitionEntry"),
        (a.entries_crc == b.entries_crc, "PartitionEntryArrayCRC32"),
    ];
    fields.iter().find(|(same, _)| !same).map(|&(_, name)| name)
}

/// (number, StartingLBA, EndingLBA) of the entries whose type GUID is not zero.
fn used_entries(header: &Header, array: &[u8]) -> Vec<(u32, u64, u64)> {
    let size = header.entry_size as usize;
    let count = header.entry_count as usize;
    array
        .chunks_exact(size)
        .take(count)
        .zip(1..)
        .filter(|(entry, _)| entry[..16].iter().any(|&b| b != 0))
        .map(|(entry, number)| (number, header::u64_at(entry, 32), header::u64_at(entry, 40)))
        .collect()
}

/// Checks that every partition lies within FirstUsableLBA..=`last_usable`.
fn check_partitions(
    parts: &[(u32, u64, u64)],
    header: &Header,
    last_usable: u64,
) -> Result<(), NotMoved> {
    let outside = parts.iter().find(|&&(_, first, last)| {
        first < header.first_usable || first > last || last > last_usable
    });
    match outside {
        None => Ok(()),
        Some(&(number, first, last)) => Err(NotMoved::PartitionOutOfBounds {
            number,
            first,
            last,
            first_usable: header.first_usable,
            last_usable,
        }),
    }
}

/// [`super::undo_relocation`].
pub(super) fn undo(
    disk: &dyn ReadAt,
    image_size: u64,
    device_size: u64,
) -> Result<Option<Vec<Write>>, Error> {
    let Some(sector) = detect_sector(disk, image_size)? else {
        return Ok(None);
    };
    let s = sector as usize;
    let last = image_size / sector - 1;
    let mut primary_bytes = read(disk, sector, s)?;
    let Ok(primary) = Header::parse(&primary_bytes) else {
        return Ok(None);
    };
    let device_last = primary.alternate_lba;
    let array_sectors = primary.array_sectors(sector);
    let moved = primary.my_lba == 1
        && device_last > last
        && device_last == device_size / sector - 1
        && device_last.checked_sub(array_sectors + 1) == Some(primary.last_usable);
    if !moved || !moved_backup_is_whole(disk, &primary, sector)? {
        return Ok(None);
    }
    let backup_bytes = read(disk, last * sector, s)?;
    let Ok(backup) = Header::parse(&backup_bytes) else {
        return Ok(None);
    };
    let same = backup.my_lba == last
        && backup.alternate_lba == 1
        && disagreement(&primary, &backup, false).is_none();
    if !same {
        return Ok(None);
    }
    let edit = Edit {
        my_lba: 1,
        alternate_lba: last,
        last_usable: backup.last_usable,
        entries_lba: primary.entries_lba,
    };
    header::rewrite(&mut primary_bytes, &primary, edit);
    let mut sector0 = read(disk, 0, s)?;
    if let Kind::Protective { slot, size } = mbr::classify(&sector0) {
        let image = mbr::protective_size(last + 1);
        if size == mbr::protective_size(device_last + 1) && size != image {
            mbr::set_size(&mut sector0, slot, image);
        }
    }
    Ok(Some(vec![
        Write {
            offset: 0,
            bytes: sector0,
        },
        Write {
            offset: sector,
            bytes: primary_bytes,
        },
    ]))
}

/// Whether the backup the move wrote at the device's end is there and valid: its
/// header at the primary's AlternateLBA, pointing back to LBA 1, with the array right
/// before it and that array's CRC32 right. A primary header that says "moved" over a
/// missing or broken backup is not a moved copy of the image's GPT.
fn moved_backup_is_whole(disk: &dyn ReadAt, primary: &Header, sector: u64) -> Result<bool, Error> {
    let s = sector as usize;
    let bytes = read(disk, primary.alternate_lba * sector, s)?;
    let Ok(backup) = Header::parse(&bytes) else {
        return Ok(false);
    };
    let array_sectors = primary.array_sectors(sector);
    let placed = backup.my_lba == primary.alternate_lba
        && backup.alternate_lba == 1
        && backup.last_usable == primary.last_usable
        && backup.first_usable == primary.first_usable
        && backup.disk_guid == primary.disk_guid
        && backup.entry_count == primary.entry_count
        && backup.entry_size == primary.entry_size
        && backup.entries_crc == primary.entries_crc
        && Some(backup.entries_lba) == primary.alternate_lba.checked_sub(array_sectors);
    if !placed {
        return Ok(false);
    }
    // At most 1 MiB (checked when the header was parsed).
    let len = usize::try_from(array_sectors * sector).unwrap_or(usize::MAX);
    let array = read(disk, backup.entries_lba * sector, len)?;
    Ok(header::check_entries(&backup, &array).is_ok())
}
