//! The MBR in front of a GPT (sector 0): is it protective, hybrid or absent, and the
//! protective record's size for a disk of a given size.

use super::header::u32_at;

/// The four partition records start here.
const RECORDS_AT: usize = 446;
const RECORD_LEN: usize = 16;
/// Offsets within a record.
const TYPE_AT: usize = 4;
const START_AT: usize = 8;
const SIZE_AT: usize = 12;
/// The GPT protective partition type.
const PROTECTIVE_TYPE: u8 = 0xEE;

/// What sector 0 of a GPT disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A protective MBR: one record, of type 0xEE, starting at LBA 1 (the others empty).
    Protective {
        /// Which of the four records it is.
        slot: usize,
        /// Its SizeInLBA.
        size: u32,
    },
    /// A 0xEE record beside other records (a hybrid MBR), or one not starting at LBA 1.
    Hybrid,
    /// No 0x55AA boot signature, or no 0xEE record: the GPT is not in use (or stale).
    NotGpt,
}

/// Classifies sector 0 (at least 512 bytes).
pub(super) fn classify(sector0: &[u8]) -> Kind {
    if sector0.get(510..512) != Some(&[0x55, 0xAA][..]) {
        return Kind::NotGpt;
    }
    let used: Vec<usize> = (0..4)
        .filter(|&slot| sector0[record(slot) + TYPE_AT] != 0)
        .collect();
    let protective: Vec<usize> = used
        .iter()
        .copied()
        .filter(|&slot| sector0[record(slot) + TYPE_AT] == PROTECTIVE_TYPE)
        .collect();
    match (used.as_slice(), protective.as_slice()) {
        (_, []) => Kind::NotGpt,
        ([one], [slot]) if one == slot && u32_at(sector0, record(*slot) + START_AT) == 1 => {
            Kind::Protective {
                slot: *slot,
                size: u32_at(sector0, record(*slot) + SIZE_AT),
            }
        }
        _ => Kind::Hybrid,
    }
}

/// The SizeInLBA of a protective record covering a disk of `sectors` sectors: all of
/// it after LBA 0, or 0xFFFFFFFF when that does not fit (UEFI 2.10, table 5.4).
pub(super) fn protective_size(sectors: u64) -> u32 {
    u32::try_from(sectors.saturating_sub(1)).unwrap_or(u32::MAX)
}

/// Sets the SizeInLBA of record `slot` of sector 0.
pub(super) fn set_size(sector0: &mut [u8], slot: usize, size: u32) {
    let at = record(slot) + SIZE_AT;
    sector0[at..at + 4].copy_from_slice(&size.to_le_bytes());
}

fn record(slot: usize) -> usize {
    RECORDS_AT + slot * RECORD_LEN
}
