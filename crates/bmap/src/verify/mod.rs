//! Checking a flashed device (or a file) against a bmap, without the image: every
//! mapped range of the [`Target`] is read back bypassing the page cache
//! (`target.rs`) and hashed against the bmap's digest on all cores. It is the copy
//! engine run with the target as the image: a [`copy::Plan`] over it, into a sink that
//! keeps nothing, with [`copy::Options::stop_at_mismatch`] off so that every bad range
//! is found. The caller gets a [`Report`]; the library prints nothing.
//!
//! A target smaller than the image its bmap describes is refused before anything is
//! read ([`Error::TargetTooSmall`]): the ranges past its end cannot hold the image, and
//! a device cut short is a fact worth one clear error rather than a list of bad
//! ranges. A larger target (any block device holding an image, or a file with bytes
//! after it) is read up to the image's size.
//!
//! ```
//! use std::fs::File;
//! use bmap::{copy, create, verify};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("disk.img");
//! let image = File::create(&path)?;
//! image.set_len(1 << 20)?;
//! std::os::unix::fs::FileExt::write_all_at(&image, &[7; 4096], 64 << 10)?;
//! let bmap = create::create(&File::open(&path)?, &create::Options::default())?.bmap;
//! let parsed = bmap::format::parse(&bmap.to_xml())?;
//!
//! // A device or file that should hold the image: here, the image itself.
//! let target = verify::Target::open(&path)?;
//! let report = verify::verify(
//!     target,
//!     &parsed.bmap,
//!     parsed.self_check,
//!     &mut copy::NoEvents,
//!     &verify::Options::default(),
//! )?;
//! assert!(report.all_good());
//! println!("{} of {} ranges good", report.good(), report.ranges.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod moved;
mod target;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Interrupt;
use crate::copy::{self, Events, RangeResult, RangeSink, Span};
use crate::format::{Bmap, ChecksumKind, Digest, SelfCheck, Version, human_size};
use crate::source::Image;

pub use target::{Target, TargetKind};

/// Choices for [`verify`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Checked between chunks; when raised the check stops with
    /// [`copy::Error::Interrupted`].
    pub interrupt: Interrupt,
}

/// Why a target cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target cannot be opened or inspected.
    #[error("cannot open '{path}'")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Neither a block device nor a regular file.
    #[error("'{0}' is neither a block device nor a regular file: there is nothing to verify")]
    NotATarget(PathBuf),
    /// The bmap has no checksums (formats 1.0-1.2, or made without them).
    #[error(
        "the bmap (format {version}) has no checksums: there is nothing to verify against; \
         make a bmap with checksums (bmaptool create) from the image"
    )]
    NoChecksums {
        /// The bmap's format version.
        version: Version,
    },
    /// The target is smaller than the image its bmap describes.
    #[error(
        "'{path}' ({size} bytes, {}) is smaller than {}the image its bmap describes ({image} \
         bytes, {}): it cannot hold this image", human_size(*.size),
        if *.seek > 0 { format!("the offset {seek} plus ") } else { String::new() },
        human_size(*.image)
    )]
    TargetTooSmall {
        /// The target.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Where the image starts in it ([`Target::at`]).
        seek: u64,
        /// The bmap's ImageSize.
        image: u64,
    },
    /// Reading the target failed.
    #[error(
        "cannot read the {} '{}' at byte {offset}{}",
        match .kind { TargetKind::BlockDevice => "device", TargetKind::File => "file" },
        .path.display(),
        if *.seek > 0 { format!(" (byte {} of the image)", .offset - .seek) } else { String::new() }
    )]
    ReadTarget {
        /// The target.
        path: PathBuf,
        /// A block device or a file.
        kind: TargetKind,
        /// Where in the target the failed read started.
        offset: u64,
        /// Where the image starts in it ([`Target::at`]).
        seek: u64,
        /// Why.
        source: io::Error,
    },
    /// The check was interrupted, or failed otherwise.
    #[error(transparent)]
    Copy(#[from] copy::Error),
}

/// What one range held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeVerdict {
    /// Its bytes hash to the bmap's digest.
    Good(Digest),
    /// Its bytes do not hash to the bmap's digest.
    Bad {
        /// The bmap's digest.
        expected: Digest,
        /// The digest of the bytes read.
        actual: Digest,
    },
    /// The bmap gives this range no digest: not checked.
    Unchecked,
}

/// One range of the bmap and what the target holds there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeCheck {
    /// Index of the range in the bmap.
    pub index: usize,
    /// First block.
    pub first_block: u64,
    /// Last block.
    pub last_block: u64,
    /// First byte offset.
    pub start: u64,
    /// Byte offset just past the range.
    pub end: u64,
    /// The verdict.
    pub verdict: RangeVerdict,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The bmap's ImageSize.
    pub image_size: u64,
    /// The bmap's block size.
    pub block_size: u64,
    /// A block device or a regular file.
    pub target_kind: TargetKind,
    /// The target's size.
    pub target_size: u64,
    /// The bmap's checksum type.
    pub checksum: ChecksumKind,
    /// Whether the bmap checked its own bytes (a bmap whose own checksum is wrong
    /// does not parse).
    pub self_check: SelfCheck,
    /// Every range, in bmap order.
    pub ranges: Vec<RangeCheck>,
    /// Bytes read from the target.
    pub bytes_read: u64,
    /// Of those, bytes read with `O_DIRECT`.
    pub bytes_direct: u64,
    /// Of those, bytes read through the page cache after dropping it for their span.
    pub bytes_buffered: u64,
    /// Time spent reading and hashing.
    pub elapsed: Duration,
    /// Whether the device's backup GPT was found moved to its end (by `copy` on a
    /// device larger than the image): the range holding the image's first sectors was
    /// then checked with the image's original GPT header and MBR, which the move
    /// changed on purpose.
    pub gpt_moved: bool,
}

impl Report {
    /// Ranges whose bytes hash to the bmap's digest.
    pub fn good(&self) -> usize {
        self.ranges
            .iter()
            .filter(|r| matches!(r.verdict, RangeVerdict::Good(_)))
            .count()
    }

    /// Ranges whose bytes do not hash to the bmap's digest.
    pub fn bad(&self) -> impl Iterator<Item = &RangeCheck> {
        self.ranges
            .iter()
            .filter(|r| matches!(r.verdict, RangeVerdict::Bad { .. }))
    }

    /// Ranges without a digest in the bmap.
    pub fn unchecked(&self) -> usize {
        self.ranges
            .iter()
            .filter(|r| r.verdict == RangeVerdict::Unchecked)
            .count()
    }

    /// Whether no range is bad.
    pub fn all_good(&self) -> bool {
        self.bad().next().is_none()
    }
}

/// Refuses a bmap without checksums and a target smaller than the image; run by
/// [`verify`], and usable alone to check before showing progress.
pub fn check(target: &Target, bmap: &Bmap) -> Result<(), Error> {
    if bmap.checksum_kind().is_none() || bmap.ranges().iter().all(|r| r.digest().is_none()) {
        return Err(Error::NoChecksums {
            version: bmap.version(),
        });
    }
    if target.size().saturating_sub(target.seek()) < bmap.image_size() {
        return Err(Error::TargetTooSmall {
            path: target.path().to_owned(),
            size: target.size(),
            seek: target.seek(),
            image: bmap.image_size(),
        });
    }
    Ok(())
}

/// Checks `target` against `bmap` (already trusted; `self_check` is what parsing it
/// found): reads every mapped range, hashes it on all cores and compares it with its
/// digest, going on past bad ranges. The engine's events go to `events` (bytes read
/// are reported as both read and "written" to the sink, for a progress bar).
pub fn verify(
    target: Target,
    bmap: &Bmap,
    self_check: SelfCheck,
    events: &mut dyn Events,
    options: &Options,
) -> Result<Report, Error> {
    check(&target, bmap)?;
    let started = Instant::now();
    let (target_size, target_kind) = (target.size(), target.kind());
    let path = target.path().to_owned();
    let seek = target.seek();
    let mut sink = Check {
        align: target.alignment(),
        seek,
    };
    // A moved GPT is a whole device's: not looked for in an image at a seek.
    let whole_device =
        target_kind == TargetKind::BlockDevice && seek == 0 && target_size > bmap.image_size();
    let original = if whole_device {
        moved::original_sectors(&path, bmap.image_size(), target_size)?
    } else {
        None
    };
    let gpt_moved = original.is_some();
    let reader = target.into_reader();
    let counters = Arc::clone(&reader.counters);
    let source: Box<dyn crate::source::RandomAccess> = match original {
        Some(writes) => Box::new(moved::Overlay {
            inner: reader,
            writes,
        }),
        None => Box::new(reader),
    };
    let image = Image::Ranged {
        source,
        size: bmap.image_size(),
    };
    let plan = copy::Plan::new(image, Some(bmap.clone()), None)?;
    let copy_options = copy::Options {
        verify: true,
        interrupt: options.interrupt.clone(),
        stop_at_mismatch: false,
    };
    // The pipeline names its source "the image": here it is the target.
    let outcome = plan
        .run(&mut sink, events, &copy_options)
        .map_err(|error| match error {
            copy::Error::Read { offset, source } => Error::ReadTarget {
                path: path.clone(),
                kind: target_kind,
                offset: offset.saturating_add(seek),
                seek,
                source,
            },
            other => Error::Copy(other),
        })?;
    let mut ranges: Vec<RangeCheck> = outcome.ranges.iter().map(range_check).collect();
    ranges.sort_by_key(|r| r.index);
    Ok(Report {
        image_size: bmap.image_size(),
        block_size: bmap.block_size(),
        target_kind,
        target_size,
        checksum: bmap.checksum_kind().unwrap_or(ChecksumKind::Sha256),
        self_check,
        ranges,
        bytes_read: outcome.bytes_read,
        bytes_direct: counters.direct.load(Ordering::Relaxed),
        bytes_buffered: counters.buffered.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        gpt_moved,
    })
}

fn range_check(outcome: &copy::RangeOutcome) -> RangeCheck {
    let verdict = match &outcome.result {
        RangeResult::Verified(digest) => RangeVerdict::Good(*digest),
        RangeResult::Mismatched { expected, actual } => RangeVerdict::Bad {
            expected: *expected,
            actual: *actual,
        },
        RangeResult::Written | RangeResult::WriteFailed { .. } => RangeVerdict::Unchecked,
    };
    RangeCheck {
        index: outcome.index,
        first_block: outcome.first_block,
        last_block: outcome.last_block,
        start: outcome.start,
        end: outcome.end,
        verdict,
    }
}

/// The sink of a check: keeps nothing, and asks for buffers aligned for the
/// target's direct reads.
#[derive(Debug)]
struct Check {
    align: usize,
    /// Where the image starts in the target: the buffers are placed for the target's
    /// offsets.
    seek: u64,
}

impl RangeSink for Check {
    fn alignment(&self) -> usize {
        self.align.max(crate::dest::MIN_ALIGN)
    }

    fn shift(&self) -> u64 {
        self.seek
    }

    fn begin(&mut self, _span: &Span) -> Result<(), copy::Error> {
        Ok(())
    }

    fn chunk(&mut self, _data: &[u8], _offset: u64) -> Result<(), copy::Error> {
        Ok(())
    }

    fn finish(&mut self, _image_size: u64) -> Result<(), copy::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use super::*;
    use crate::format::BlockRange;

    const BLOCK: u64 = 512;

    /// A file of `size` bytes of a pattern, and a bmap of 512-byte blocks over
    /// `ranges` (inclusive block numbers) with their SHA-256 digests.
    fn sample(dir: &Path, size: u64, ranges: &[(u64, u64)]) -> (PathBuf, Bmap) {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let path = dir.join("target.img");
        std::fs::write(&path, &bytes).expect("write the target");
        let ranges = ranges
            .iter()
            .map(|&(first, last)| {
                let start = (first * BLOCK) as usize;
                let end = ((last + 1) * BLOCK).min(size) as usize;
                let digest = ChecksumKind::Sha256.digest(&bytes[start..end]);
                BlockRange::new(first, last, Some(digest)).expect("range")
            })
            .collect();
        let bmap = Bmap::new(size, BLOCK, Some(ChecksumKind::Sha256), ranges).expect("bmap");
        (path, bmap)
    }

    fn check(path: &Path, bmap: &Bmap) -> Report {
        let target = Target::open(path).expect("open");
        verify(
            target,
            bmap,
            SelfCheck::Absent,
            &mut copy::NoEvents,
            &Options::default(),
        )
        .expect("checked")
    }

    fn flip(path: &Path, offset: u64) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open");
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).expect("read");
        file.write_all_at(&[!byte[0]], offset).expect("write");
    }

    #[test]
    fn ranges_of_512_byte_blocks_are_read_whole_and_every_bad_one_is_reported() {
        let dir = tempfile::tempdir().expect("temporary directory");
        // Ranges starting and ending inside 4 KiB blocks, one spanning several, and
        // the image's partial last block.
        let size = 40 * 1024 + 100;
        let ranges = [(1, 2), (7, 30), (33, 33), (79, 80)];
        let (path, bmap) = sample(dir.path(), size, &ranges);
        let report = check(&path, &bmap);
        assert!(report.all_good(), "{report:?}");
        assert_eq!(report.good(), 4);
        assert_eq!(report.bytes_read, bmap.mapped_bytes());
        assert_eq!(
            report.bytes_direct + report.bytes_buffered,
            report.bytes_read
        );

        // A byte in the unaligned head of the second range (block 7, byte 3584) and
        // one in its aligned middle; one in the partial last block.
        flip(&path, 7 * BLOCK + 10);
        flip(&path, 16 * BLOCK + 5);
        flip(&path, size - 1);
        let report = check(&path, &bmap);
        let bad: Vec<(u64, u64, u64, u64)> = report
            .bad()
            .map(|r| (r.first_block, r.last_block, r.start, r.end))
            .collect();
        assert_eq!(bad, [(7, 30, 3584, 15872), (79, 80, 40448, size)]);
        assert_eq!(report.good(), 2);
    }

    #[test]
    fn a_bmap_without_checksums_and_a_short_target_are_refused_before_reading() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (path, bmap) = sample(dir.path(), 8192, &[(0, 3)]);
        let bare = Bmap::new(
            8192,
            BLOCK,
            None,
            vec![BlockRange::new(0, 3, None).expect("range")],
        )
        .expect("bmap");
        let target = Target::open(&path).expect("open");
        assert!(matches!(
            check_target(&target, &bare),
            Err(Error::NoChecksums { .. })
        ));
        let longer =
            Bmap::new(9000, BLOCK, bmap.checksum_kind(), bmap.ranges().to_vec()).expect("bmap");
        assert!(matches!(
            check_target(&target, &longer),
            Err(Error::TargetTooSmall {
                size: 8192,
                image: 9000,
                ..
            })
        ));
    }

    fn check_target(target: &Target, bmap: &Bmap) -> Result<(), Error> {
        super::check(target, bmap)
    }
}
