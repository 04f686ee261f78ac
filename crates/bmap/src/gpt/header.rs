//! One GPT header (UEFI 2.10, section 5.3.2): parsing and checking its fields, and
//! editing a header sector in place with its CRC32 recomputed.

use std::fmt;

/// "EFI PART", the first eight bytes of every GPT header.
pub(super) const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The only revision in use (1.0).
const REVISION: u32 = 0x0001_0000;
/// The size of the fields the specification defines; the rest of the sector is reserved.
const MIN_HEADER_SIZE: u32 = 92;
/// The largest entry array we accept (128 entries of 128 bytes take 16 KiB).
pub(super) const MAX_ARRAY_BYTES: u64 = 1 << 20;

// Byte offsets of the fields in the header.
const REVISION_AT: usize = 8;
const HEADER_SIZE_AT: usize = 12;
const HEADER_CRC_AT: usize = 16;
const MY_LBA_AT: usize = 24;
const ALTERNATE_LBA_AT: usize = 32;
const FIRST_USABLE_AT: usize = 40;
const LAST_USABLE_AT: usize = 48;
const DISK_GUID_AT: usize = 56;
const ENTRIES_LBA_AT: usize = 72;
const ENTRY_COUNT_AT: usize = 80;
const ENTRY_SIZE_AT: usize = 84;
const ENTRIES_CRC_AT: usize = 88;

/// What is wrong with a GPT header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// The first eight bytes are not "EFI PART".
    Signature,
    /// The revision is not 1.0 (0x00010000).
    Revision(u32),
    /// HeaderSize is below 92 or above the sector size.
    HeaderSize(u32),
    /// The header's CRC32 does not match its bytes.
    HeaderCrc {
        /// The CRC32 in the header.
        stored: u32,
        /// The CRC32 of the header's bytes.
        computed: u32,
    },
    /// MyLBA is not where the header was read.
    MyLba {
        /// The LBA the header was read from.
        expected: u64,
        /// The header's MyLBA.
        found: u64,
    },
    /// AlternateLBA of the backup header is not 1.
    AlternateLba(u64),
    /// SizeOfPartitionEntry is not 128 times a power of two.
    EntrySize(u32),
    /// NumberOfPartitionEntries is zero, or the array is larger than 1 MiB.
    EntryCount(u32),
    /// FirstUsableLBA, LastUsableLBA and the entry array do not fit in order on the disk.
    Layout,
    /// The entry array's CRC32 does not match its bytes.
    EntriesCrc {
        /// The CRC32 in the header.
        stored: u32,
        /// The CRC32 of the array's bytes.
        computed: u32,
    },
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeaderProblem::Signature => write!(f, "no \"EFI PART\" signature"),
            HeaderProblem::Revision(r) => write!(f, "revision {r:#010x} (not 1.0)"),
            HeaderProblem::HeaderSize(s) => write!(f, "header size {s} out of range"),
            HeaderProblem::HeaderCrc { stored, computed } => {
                write!(f, "header CRC32 {stored:#010x}, computed {computed:#010x}")
            }
            HeaderProblem::MyLba { expected, found } => {
                write!(f, "MyLBA {found} where LBA {expected} was expected")
            }
            HeaderProblem::AlternateLba(lba) => write!(f, "AlternateLBA {lba} (not 1)"),
            HeaderProblem::EntrySize(s) => write!(f, "partition entry size {s}"),
            HeaderProblem::EntryCount(n) => write!(f, "{n} partition entries"),
            HeaderProblem::Layout => {
                write!(f, "usable range and entry array do not fit on the disk")
            }
            HeaderProblem::EntriesCrc { stored, computed } => {
                write!(
                    f,
                    "entry array CRC32 {stored:#010x}, computed {computed:#010x}"
                )
            }
        }
    }
}

/// The fields of a header that passed [`Header::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub header_size: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: [u8; 16],
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

impl Header {
    /// Parses and checks the header in `sector` (one whole sector): signature, revision,
    /// HeaderSize, header CRC32, entry size and count. Positions are checked by callers.
    pub fn parse(sector: &[u8]) -> Result<Header, HeaderProblem> {
        if !sector.starts_with(SIGNATURE) {
            return Err(HeaderProblem::Signature);
        }
        let revision = u32_at(sector, REVISION_AT);
        if revision != REVISION {
            return Err(HeaderProblem::Revision(revision));
        }
        let header_size = u32_at(sector, HEADER_SIZE_AT);
        let size = usize::try_from(header_size).unwrap_or(usize::MAX);
        if header_size < MIN_HEADER_SIZE || size > sector.len() {
            return Err(HeaderProblem::HeaderSize(header_size));
        }
        let stored = u32_at(sector, HEADER_CRC_AT);
        let computed = header_crc(&sector[..size]);
        if stored != computed {
            return Err(HeaderProblem::HeaderCrc { stored, computed });
        }
        let header = Header {
            header_size,
            my_lba: u64_at(sector, MY_LBA_AT),
            alternate_lba: u64_at(sector, ALTERNATE_LBA_AT),
            first_usable: u64_at(sector, FIRST_USABLE_AT),
            last_usable: u64_at(sector, LAST_USABLE_AT),
            disk_guid: sector[DISK_GUID_AT..DISK_GUID_AT + 16]
                .try_into()
                .expect("a 16-byte slice"),
            entries_lba: u64_at(sector, ENTRIES_LBA_AT),
            entry_count: u32_at(sector, ENTRY_COUNT_AT),
            entry_size: u32_at(sector, ENTRY_SIZE_AT),
            entries_crc: u32_at(sector, ENTRIES_CRC_AT),
        };
        if header.entry_size < 128 || !header.entry_size.is_power_of_two() {
            return Err(HeaderProblem::EntrySize(header.entry_size));
        }
        if header.entry_count == 0 || header.array_bytes() > MAX_ARRAY_BYTES {
            return Err(HeaderProblem::EntryCount(header.entry_count));
        }
        Ok(header)
    }

    /// The bytes of the entries (NumberOfPartitionEntries * SizeOfPartitionEntry).
    pub fn array_bytes(&self) -> u64 {
        // Two u32 factors: the product fits in a u64.
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }

    /// The sectors the entry array takes.
    pub fn array_sectors(&self, sector: u64) -> u64 {
        self.array_bytes().div_ceil(sector)
    }
}

/// The fields a relocation rewrites.
#[derive(Debug, Clone, Copy)]
pub(super) struct Edit {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub last_usable: u64,
    pub entries_lba: u64,
}

/// Rewrites the fields of `edit` in the header sector `bytes` (which passed
/// [`Header::parse`]) and recomputes its CRC32.
pub(super) fn rewrite(bytes: &mut [u8], header: &Header, edit: Edit) {
    put_u64(bytes, MY_LBA_AT, edit.my_lba);
    put_u64(bytes, ALTERNATE_LBA_AT, edit.alternate_lba);
    put_u64(bytes, LAST_USABLE_AT, edit.last_usable);
    put_u64(bytes, ENTRIES_LBA_AT, edit.entries_lba);
    let size = header.header_size as usize;
    let crc = header_crc(&bytes[..size]);
    bytes[HEADER_CRC_AT..HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The CRC32 of a header's HeaderSize bytes, its CRC field counted as zero.
fn header_crc(header: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..HEADER_CRC_AT]);
    hasher.update(&[0; 4]);
    hasher.update(&header[HEADER_CRC_AT + 4..]);
    hasher.finalize()
}

/// Checks the CRC32 of an entry array (`array` holds at least its bytes).
pub(super) fn check_entries(header: &Header, array: &[u8]) -> Result<(), HeaderProblem> {
    let len = usize::try_from(header.array_bytes()).unwrap_or(usize::MAX);
    let computed = crc32fast::hash(array.get(..len).ok_or(HeaderProblem::Layout)?);
    if computed != header.entries_crc {
        return Err(HeaderProblem::EntriesCrc {
            stored: header.entries_crc,
            computed,
        });
    }
    Ok(())
}

pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("a 4-byte slice"))
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("an 8-byte slice"))
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
