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

#[cfg(test)]
mod tests {
    use super::*;

    /// Sector 0 with records `(slot, type, start, size)` and the boot signature.
    fn sector0(records: &[(usize, u8, u32, u32)]) -> Vec<u8> {
        let mut s = vec![0; 512];
        s[510..].copy_from_slice(&[0x55, 0xAA]);
        for &(slot, kind, start, size) in records {
            let at = record(slot);
            s[at + TYPE_AT] = kind;
            s[at + START_AT..at + START_AT + 4].copy_from_slice(&start.to_le_bytes());
            s[at + SIZE_AT..at + SIZE_AT + 4].copy_from_slice(&size.to_le_bytes());
        }
        s
    }

    #[test]
    fn protective_record_in_any_slot_starting_at_lba_1() {
        for slot in 0..4 {
            let s = sector0(&[(slot, 0xEE, 1, 99)]);
            assert_eq!(classify(&s), Kind::Protective { slot, size: 99 });
        }
        let mut s = sector0(&[(0, 0xEE, 1, 99)]);
        set_size(&mut s, 0, 12345);
        assert_eq!(
            classify(&s),
            Kind::Protective {
                slot: 0,
                size: 12345
            }
        );
    }

    #[test]
    fn hybrid_and_odd_records_are_not_protective() {
        let hybrid = sector0(&[(0, 0xEE, 1, 2047), (1, 0x0C, 2048, 4096)]);
        assert_eq!(classify(&hybrid), Kind::Hybrid);
        assert_eq!(classify(&sector0(&[(0, 0xEE, 2, 99)])), Kind::Hybrid);
        let two = sector0(&[(0, 0xEE, 1, 99), (1, 0xEE, 100, 5)]);
        assert_eq!(classify(&two), Kind::Hybrid);
    }

    #[test]
    fn no_boot_signature_or_no_0xee_record_is_not_gpt() {
        let mut s = sector0(&[(0, 0xEE, 1, 99)]);
        s[511] = 0;
        assert_eq!(classify(&s), Kind::NotGpt);
        assert_eq!(classify(&sector0(&[(0, 0x83, 2048, 99)])), Kind::NotGpt);
        assert_eq!(classify(&sector0(&[])), Kind::NotGpt);
        assert_eq!(classify(&[0; 100]), Kind::NotGpt);
    }

    #[test]
    fn protective_size_saturates_at_u32_max() {
        assert_eq!(protective_size(0), 0);
        assert_eq!(protective_size(16384), 16383);
        assert_eq!(protective_size(1 << 32), u32::MAX);
        assert_eq!(protective_size(u64::MAX), u32::MAX);
    }
}
