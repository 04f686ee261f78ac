//! The copy engine: an [`Image`] and its (already parsed and trusted) [`Bmap`] become a
//! [`Plan`] (every check that needs no destination, done once), which runs into a
//! [`RangeSink`] (writing to a [`Dest`] is [`DestWriter`]), reporting [`Event`]s to a
//! sink the caller owns and returning an [`Outcome`]. See `pipeline.rs` for how the work
//! is spread over threads.
//!
//! ```
//! use std::fs::File;
//! use bmap::{copy, create, dest::Dest, source::Image};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("disk.img");
//! let image = File::create(&path)?;
//! image.set_len(1 << 20)?;
//! std::os::unix::fs::FileExt::write_all_at(&image, &[7; 4096], 64 << 10)?;
//! let bmap = create::create(&File::open(&path)?, &create::Options::default())?.bmap;
//!
//! let plan = copy::Plan::new(Image::open(&path)?, Some(bmap), None)?;
//! let dest = Dest::open(&dir.path().join("copy.img"), &plan.dest_options(false))?;
//! let mut events = Vec::new();
//! let outcome = plan.run(
//!     &mut copy::DestWriter::new(dest),
//!     &mut events,
//!     &copy::Options::default(),
//! )?;
//! assert_eq!(outcome.bytes_written, 4096);
//! println!("wrote {} bytes in {:?}", outcome.bytes_written, outcome.timings.copying());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To several destinations at once, run the plan into a [`Fanout`] of sinks (see
//! `fanout.rs`, and the crate's example).

mod events;
pub mod failsafe;
pub mod fanout;
mod gptmove;
mod last;
mod pipeline;
mod plan;
mod readback;
mod sink;
mod skip;

use std::io;
use std::path::PathBuf;

use crate::Interrupt;
use crate::dest::{self, Dest};
use crate::format::{Bmap, Digest, human_size};
use crate::source::Image;

pub use events::{
    DestEvent, Event, Events, NoEvents, Outcome, Phase, RangeOutcome, RangeResult, Timings,
};
pub use failsafe::HoldBack;
pub use fanout::{DestResult, Fanout};
pub use gptmove::{GptMove, GptMoveSlot, gpt_move_hook};
pub use plan::{Plan, Span};
#[cfg(feature = "fault-injection")]
pub use readback::FaultHook;
pub use readback::{BATCH as READ_BACK_BATCH, IN_FLIGHT as READ_BACK_IN_FLIGHT};
pub use readback::{ReadBack, ReadBackMismatch, ReadBackStats};
pub use sink::{DestWriter, Discard, RangeSink, Verdict};
pub use skip::{SkipStats, SkipUnchanged};

/// Choices for [`Plan::run`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Verify each range's digest.
    pub verify: bool,
    /// Checked between chunks; when raised the copy stops with [`Error::Interrupted`].
    pub interrupt: Interrupt,
    /// Stop at the first range whose digest does not match (with
    /// [`Error::ChecksumMismatch`]); when off, the range is reported as
    /// [`RangeResult::Mismatched`] (its last chunk is passed to the sink too) and the
    /// run goes on, so that every bad range is found (`verify`).
    pub stop_at_mismatch: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            verify: true,
            interrupt: Interrupt::new(),
            stop_at_mismatch: true,
        }
    }
}

/// A range whose bytes do not hash to the bmap's digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "checksum mismatch for blocks range {first}-{last} (bytes {start}-{end}): calculated \
     {actual}, should be {expected}; most likely the bmap belongs to another image (or the \
     image was changed or damaged after its bmap was made)"
)]
pub struct Mismatch {
    /// First block.
    pub first: u64,
    /// Last block.
    pub last: u64,
    /// First byte offset.
    pub start: u64,
    /// Byte offset just past the range.
    pub end: u64,
    /// Digest from the bmap.
    pub expected: Digest,
    /// Digest of the bytes read.
    pub actual: Digest,
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A range's bytes do not hash to the bmap's digest.
    #[error("{0}")]
    ChecksumMismatch(Box<Mismatch>),
    /// The image ended early.
    #[error(
        "image is truncated: it ended at byte {offset}, but the bmap says it has {expected} \
         bytes{}", .range.map(|(a, b)| format!(" (inside blocks range {a}-{b})")).unwrap_or_default()
    )]
    Truncated {
        /// Where it ended.
        offset: u64,
        /// The size the bmap gives.
        expected: u64,
        /// The range being read, if any.
        range: Option<(u64, u64)>,
    },
    /// A block the bmap calls a hole holds data (read through a stream).
    #[error(
        "block {block} (byte {offset}) is a hole in the bmap but holds data: the image was \
         changed after its bmap was made, or belongs to another bmap"
    )]
    HoleNotZero {
        /// The block.
        block: u64,
        /// The first non-zero byte.
        offset: u64,
    },
    /// The image is longer than its bmap says.
    #[error(
        "the image has more than the {expected} bytes its bmap says: the bmap does not belong \
         to this image"
    )]
    TooLong {
        /// The size the bmap gives.
        expected: u64,
    },
    /// The image's known size differs from the bmap's.
    #[error(
        "the image is {actual} bytes ({}) but its bmap says {expected} bytes: the bmap does \
         not belong to this image", human_size(*.actual)
    )]
    SizeMismatch {
        /// The bmap's ImageSize.
        expected: u64,
        /// The image's size.
        actual: u64,
    },
    /// A block device read as the image is smaller than the image its bmap gives.
    #[error(
        "the block device ({device} bytes, {}) is smaller than the image its bmap describes \
         ({image} bytes, {}): it cannot hold this image", human_size(*.device),
        human_size(*.image)
    )]
    DeviceTooSmall {
        /// The device's size.
        device: u64,
        /// The bmap's ImageSize.
        image: u64,
    },
    /// The image's stream declares more bytes than the bmap gives.
    #[error(
        "the image holds at least {declared} bytes ({}) but its bmap says {expected} bytes: \
         the bmap does not belong to this image", human_size(*.declared)
    )]
    DeclaredTooLarge {
        /// The size the stream declares it has at least.
        declared: u64,
        /// The bmap's ImageSize.
        expected: u64,
    },
    /// The range sink was used after it was finished.
    #[error("the destination was already finished")]
    Finished,
    /// Reading the image failed.
    #[error("cannot read the image at byte {offset}")]
    Read {
        /// Where.
        offset: u64,
        /// Why.
        source: io::Error,
    },
    /// A thread of the pipeline could not be started.
    #[error("cannot start the {thread} thread")]
    Spawn {
        /// The thread's name.
        thread: &'static str,
        /// Why.
        source: io::Error,
    },
    /// Bytes read back from the destination still differ from what was written
    /// after every retry.
    #[error("{0}")]
    ReadBack(Box<ReadBackMismatch>),
    /// Reading back was asked for a destination that cannot be read back.
    #[error(
        "cannot verify what is written to '{}': it is neither a regular file nor a block \
         device, so nothing can be read back from it", .0.display()
    )]
    NothingToReadBack(PathBuf),
    /// Writing, sizing or syncing the destination failed.
    #[error(transparent)]
    Dest(#[from] dest::Error),
    /// The interrupt flag was raised.
    #[error("interrupted")]
    Interrupted,
    /// A destination of a [`Fanout`] took no data for too long while the copy waited
    /// for it, and was dropped (the lag rule).
    #[error(
        "dropped: it took no data for {:.1} s while the other destinations waited for it \
         ({} behind the fastest)", .idle.as_secs_f64(), human_size(*.behind)
    )]
    Lagging {
        /// How long it took nothing.
        idle: std::time::Duration,
        /// Image bytes it was behind the destination that took the most.
        behind: u64,
    },
    /// Every destination of a [`Fanout`] failed.
    #[error("every destination failed ({count} of {count})")]
    NoDestinationLeft {
        /// The number of destinations.
        count: usize,
    },
    /// The copy stopped before this destination of a [`Fanout`] was finished.
    #[error("the copy stopped before this destination was finished")]
    Unfinished,
}

/// Copies `image` to `dest`: with a bmap, only its ranges (verified unless
/// `options.verify` is off); without, the whole image. Finishes the destination
/// (final size, fsync, settings restored) on success; on failure the destination is
/// dropped, which removes a file it created. The short form of [`Plan::new`] and
/// [`Plan::run`] into a [`DestWriter`], without events.
pub fn copy(
    image: Image,
    bmap: Option<&Bmap>,
    dest: Dest,
    options: &Options,
) -> Result<Outcome, Error> {
    let plan = Plan::new(image, bmap.cloned(), None)?;
    plan.run(&mut DestWriter::new(dest), &mut NoEvents, options)
}
