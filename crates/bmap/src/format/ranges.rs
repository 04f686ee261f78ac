//! The ranges as a bmap lists them -> the sorted, disjoint, in-image ranges a [`Bmap`]
//! holds, for bmaps written by tools other than bmaptool: ranges cut at the image's
//! end, sorted, and overlaps resolved without losing a digest. Linear time (plus a
//! sort when the ranges are out of order) and no copy when nothing needs fixing.
//!
//! [`Bmap`]: super::Bmap

use super::BlockRange;
use super::diagnostics::Warning;

/// Listed ranges after [`tidy`], and what was done to them.
#[derive(Debug)]
pub(super) struct Tidied {
    /// Sorted, disjoint, inside the image.
    pub ranges: Vec<BlockRange>,
    /// Blocks the listed ranges hold once cut at the image's end, duplicates counted
    /// twice: what the reference writes and compares with `MappedBlocksCount`.
    pub listed_blocks: u128,
    /// Whether any range was cut or dropped at the image's end.
    pub clamped: bool,
    /// One warning per kind of repair.
    pub warnings: Vec<Warning>,
}

/// Two ranges with digests that share blocks: both cannot be checked in one pass.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Conflict {
    /// The later range (in block order).
    pub range: BlockRange,
    /// The range it overlaps.
    pub previous: BlockRange,
}

/// Cuts `listed` at the image's end (`blocks` blocks), sorts it and resolves overlaps.
pub(super) fn tidy(mut listed: Vec<BlockRange>, blocks: u64) -> Result<Tidied, Box<Conflict>> {
    let mut warnings = Vec::new();
    let past_end = clamp(&mut listed, blocks);
    let clamped = past_end.is_some();
    warnings.extend(past_end);
    let listed_blocks = listed.iter().map(|r| u128::from(r.blocks())).sum();
    if let Some(at) = listed.windows(2).position(|w| w[1].first < w[0].first) {
        warnings.push(Warning::Unordered {
            range: listed[at + 1].to_string(),
            previous: listed[at].to_string(),
        });
        // Stable: of two listings of one range, the later one stays later (and is the
        // one named in a conflict).
        listed.sort_by_key(|r| (r.first, r.last));
    }
    let overlaps = listed
        .windows(2)
        .filter(|w| w[1].first <= w[0].last)
        .count();
    let ranges = if overlaps == 0 {
        listed
    } else {
        let (range, previous) = listed
            .windows(2)
            .find(|w| w[1].first <= w[0].last)
            .map(|w| (w[1].to_string(), w[0].to_string()))
            .expect("an overlap was counted");
        warnings.push(Warning::Overlapping {
            range,
            previous,
            count: overlaps as u64,
        });
        disjoint(listed)?
    };
    Ok(Tidied {
        ranges,
        listed_blocks,
        clamped,
        warnings,
    })
}

/// Cuts ranges at block `blocks - 1` and drops those starting beyond it.
fn clamp(listed: &mut Vec<BlockRange>, blocks: u64) -> Option<Warning> {
    let first_past = listed.iter().find(|r| r.last >= blocks)?.to_string();
    let (mut clamped, mut dropped) = (0, 0);
    listed.retain_mut(|r| {
        if r.first >= blocks {
            dropped += 1;
            return false;
        }
        if r.last >= blocks {
            clamped += 1;
            r.last = blocks - 1;
        }
        true
    });
    Some(Warning::PastEnd {
        example: first_past,
        clamped,
        dropped,
        blocks,
    })
}

/// Sorted ranges that overlap -> disjoint ones. Ranges with digests must not share
/// blocks, except identical duplicates (one is kept); ranges without a digest are
/// merged and lose the blocks a range with a digest covers (those are checked).
fn disjoint(sorted: Vec<BlockRange>) -> Result<Vec<BlockRange>, Box<Conflict>> {
    let (with, without): (Vec<BlockRange>, Vec<BlockRange>) =
        sorted.into_iter().partition(|r| r.digest.is_some());
    let mut checked: Vec<BlockRange> = Vec::with_capacity(with.len());
    for range in with {
        match checked.last() {
            Some(prev) if range.first <= prev.last => {
                if range != *prev {
                    return Err(Box::new(Conflict {
                        range,
                        previous: *prev,
                    }));
                }
            }
            _ => checked.push(range),
        }
    }
    let rest = subtract(&merge(without), &checked);
    Ok(interleave(checked, rest))
}

/// Sorted ranges (no digests) -> their union as disjoint ranges.
fn merge(sorted: Vec<BlockRange>) -> Vec<BlockRange> {
    let mut out: Vec<BlockRange> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match out.last_mut() {
            Some(prev) if range.first <= prev.last => prev.last = prev.last.max(range.last),
            _ => out.push(range),
        }
    }
    out
}

/// The parts of `spans` (disjoint, sorted, no digests) that no range of `covered`
/// (disjoint, sorted) covers.
fn subtract(spans: &[BlockRange], covered: &[BlockRange]) -> Vec<BlockRange> {
    let mut out = Vec::with_capacity(spans.len());
    let mut next = 0;
    for span in spans {
        let mut start = span.first;
        // Skip ranges ending before this span; they end before every later span too.
        while next < covered.len() && covered[next].last < start {
            next += 1;
        }
        let mut at = next;
        while start <= span.last {
            match covered.get(at) {
                Some(c) if c.first <= span.last => {
                    if c.first > start {
                        out.push(piece(start, c.first - 1));
                    }
                    start = c.last.saturating_add(1);
                    if c.last == u64::MAX {
                        break;
                    }
                    at += 1;
                }
                _ => {
                    out.push(piece(start, span.last));
                    break;
                }
            }
        }
    }
    out
}

fn piece(first: u64, last: u64) -> BlockRange {
    BlockRange {
        first,
        last,
        digest: None,
    }
}

/// Two sorted lists of ranges, disjoint from each other -> one sorted list.
fn interleave(a: Vec<BlockRange>, b: Vec<BlockRange>) -> Vec<BlockRange> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.first < y.first,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ChecksumKind;

    fn r(first: u64, last: u64) -> BlockRange {
        piece(first, last)
    }

    fn d(first: u64, last: u64, seed: u8) -> BlockRange {
        let digest = ChecksumKind::Sha256.digest(&[seed]);
        BlockRange::new(first, last, Some(digest)).expect("ordered")
    }

    fn spans(ranges: &[BlockRange]) -> Vec<(u64, u64, bool)> {
        ranges
            .iter()
            .map(|r| (r.first, r.last, r.digest.is_some()))
            .collect()
    }

    #[test]
    fn clean_ranges_pass_untouched() {
        let t = tidy(vec![d(0, 3, 1), r(5, 5), d(7, 9, 2)], 10).expect("clean");
        assert_eq!(
            spans(&t.ranges),
            [(0, 3, true), (5, 5, false), (7, 9, true)]
        );
        assert!(t.warnings.is_empty());
        assert_eq!(t.listed_blocks, 8);
        assert!(!t.clamped);
    }

    #[test]
    fn ranges_past_the_end_are_cut_and_those_beyond_dropped() {
        let t = tidy(vec![d(0, 3, 1), d(6, 14, 2), r(20, 25)], 11).expect("clamped");
        assert_eq!(spans(&t.ranges), [(0, 3, true), (6, 10, true)]);
        assert_eq!(t.listed_blocks, 9);
        assert!(t.clamped);
        assert_eq!(
            t.warnings,
            [Warning::PastEnd {
                example: "6-14".into(),
                clamped: 1,
                dropped: 1,
                blocks: 11
            }]
        );
        let text = t.warnings[0].to_string();
        assert_eq!(
            text,
            "ranges run past the end of the image, which has 11 blocks (the first is 6-14): \
             1 cut at the image's end, where its checksum must end too; 1 lying wholly \
             beyond it skipped"
        );
    }

    #[test]
    fn unordered_ranges_are_sorted() {
        let t = tidy(vec![d(6, 9, 1), d(0, 3, 2)], 10).expect("sorted");
        assert_eq!(spans(&t.ranges), [(0, 3, true), (6, 9, true)]);
        assert_eq!(
            t.warnings,
            [Warning::Unordered {
                range: "0-3".into(),
                previous: "6-9".into()
            }]
        );
    }

    #[test]
    fn identical_duplicates_are_kept_once_but_counted_twice() {
        let t = tidy(vec![d(0, 3, 1), d(0, 3, 1), d(5, 6, 2)], 10).expect("dup");
        assert_eq!(spans(&t.ranges), [(0, 3, true), (5, 6, true)]);
        assert_eq!(
            t.listed_blocks, 10,
            "the reference writes a duplicate twice"
        );
        assert!(matches!(
            t.warnings[..],
            [Warning::Overlapping { count: 1, .. }]
        ));
    }

    #[test]
    fn overlapping_ranges_with_their_own_checksums_conflict() {
        let err = tidy(vec![d(0, 3, 1), d(2, 5, 2)], 10).expect_err("overlap");
        assert_eq!((err.previous.first, err.range.first), (0, 2));
        let err = tidy(vec![d(0, 3, 1), d(0, 3, 2)], 10).expect_err("same span");
        assert_eq!(err.range.digest, Some(ChecksumKind::Sha256.digest(&[2])));
    }

    #[test]
    fn ranges_without_checksums_give_way_to_checked_ones() {
        // 0-9 unchecked around two checked ranges; 12-15 and 14-20 unchecked, merged.
        let listed = vec![
            r(0, 9),
            d(2, 3, 1),
            d(6, 7, 2),
            r(12, 15),
            r(14, 20),
            d(20, 21, 3),
        ];
        let t = tidy(listed, 30).expect("resolved");
        assert_eq!(
            spans(&t.ranges),
            [
                (0, 1, false),
                (2, 3, true),
                (4, 5, false),
                (6, 7, true),
                (8, 9, false),
                (12, 19, false),
                (20, 21, true)
            ]
        );
    }

    #[test]
    fn the_last_block_of_the_address_space_does_not_overflow() {
        let max = u64::MAX;
        let t = tidy(vec![r(max - 5, max), d(max - 3, max, 1)], max).expect("resolved");
        assert_eq!(
            spans(&t.ranges),
            [(max - 5, max - 4, false), (max - 3, max - 1, true)]
        );
    }
}
