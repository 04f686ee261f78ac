//! The wipe of a device's old partition tables (its first and last MiB), run by
//! [`crate::copy::DestWriter`] just before its first write, less the spans a
//! comparing stage found already holding the new bytes.

use super::TABLE_AREA;
use crate::copy::Error;
use crate::dest::Dest;

/// The places of a device's old partition tables: its first and last MiB (MBR,
/// primary GPT; backup GPT), as `(offset, len)`.
pub fn table_regions(device_size: u64) -> Vec<(u64, u64)> {
    let head = device_size.min(TABLE_AREA);
    let tail_start = device_size.saturating_sub(TABLE_AREA).max(head);
    let mut regions = vec![(0, head)];
    if device_size > tail_start {
        regions.push((tail_start, device_size - tail_start));
    }
    regions.retain(|&(_, len)| len > 0);
    regions
}

/// A wipe of the old partition tables that waits for the first write (see
/// [`crate::copy::DestWriter::wipe_before_first_write`]).
#[derive(Debug, Default)]
pub struct Wipe {
    regions: Vec<(u64, u64)>,
    spared: Vec<(u64, u64)>,
    pending: bool,
    zeroed: u64,
    by_device: bool,
}

impl Wipe {
    pub(crate) fn pending(regions: Vec<(u64, u64)>) -> Wipe {
        Wipe {
            pending: !regions.is_empty(),
            regions,
            ..Wipe::default()
        }
    }

    /// Whether the wipe waits for the first write.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Whether the wipe ran.
    pub fn is_done(&self) -> bool {
        !self.pending && !self.regions.is_empty()
    }

    /// The regions to wipe, `(offset, len)`.
    pub fn regions(&self) -> &[(u64, u64)] {
        &self.regions
    }

    /// Bytes zeroed, and whether the device did it (`BLKZEROOUT`) rather than writes.
    pub fn zeroed(&self) -> (u64, bool) {
        (self.zeroed, self.by_device)
    }

    /// Whether a pending wipe would zero some of the `len` bytes at `offset`.
    pub fn would_zero(&self, offset: u64, len: u64) -> bool {
        self.pending && overlaps(&self.regions, offset, len)
    }

    pub(crate) fn spare(&mut self, offset: u64, len: u64) {
        if self.would_zero(offset, len) {
            self.spared.push((offset, len));
        }
    }

    /// Zeroes the regions (less what was spared) and syncs, once.
    pub(crate) fn run(&mut self, dest: &Dest) -> Result<(), Error> {
        if !self.pending {
            return Ok(());
        }
        let mut by_device = true;
        for (offset, len) in subtract(&self.regions, &self.spared) {
            let how = dest.zero_out(offset, len)?;
            by_device &= how == crate::dest::Zeroed::Device;
            self.zeroed += len;
        }
        // Durable before any byte of the image lands: a power loss must not bring
        // the old tables back under new data.
        dest.sync()?;
        self.by_device = by_device && self.zeroed > 0;
        self.pending = false;
        Ok(())
    }
}

/// Whether any of `regions` meets `[offset, offset + len)`.
fn overlaps(regions: &[(u64, u64)], offset: u64, len: u64) -> bool {
    let end = offset.saturating_add(len);
    regions
        .iter()
        .any(|&(start, n)| start < end && offset < start + n)
}

/// `regions` less the spans of `spared`.
fn subtract(regions: &[(u64, u64)], spared: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut spared = spared.to_vec();
    spared.sort_unstable();
    let mut out = Vec::new();
    for &(start, len) in regions {
        let end = start + len;
        let mut at = start;
        for &(s, n) in &spared {
            let (s, e) = (s.max(at), (s + n).min(end));
            if s >= e {
                continue;
            }
            if s > at {
                out.push((at, s - at));
            }
            at = e;
        }
        if end > at {
            out.push((at, end - at));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracting_spared_spans_keeps_the_rest_of_the_regions() {
        let regions = [(0, 100), (1000, 100)];
        assert_eq!(
            subtract(&regions, &[(10, 20), (1050, 100)]),
            vec![(0, 10), (30, 70), (1000, 50)]
        );
        assert_eq!(
            table_regions(3 << 20),
            vec![(0, 1 << 20), (2 << 20, 1 << 20)]
        );
        assert_eq!(table_regions(1 << 19), vec![(0, 1 << 19)]);
    }
}
