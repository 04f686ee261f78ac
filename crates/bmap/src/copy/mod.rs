//! The copy engine: an [`Image`] and its (already parsed and trusted) [`Bmap`] -> a
//! [`Dest`], writing only the mapped ranges and verifying each range's digest as its
//! bytes pass. See [`pipeline`] for how the work is spread over threads.
//!
//! ```no_run
//! use std::path::Path;
//! use bmap::{copy, dest::{self, Dest}, format, source::Image};
//!
//! let bmap = format::parse(&std::fs::read("disk.img.bmap")?)?.bmap;
//! let image = Image::open(Path::new("disk.img"))?;
//! let options = dest::Options {
//!     image_size: Some(bmap.image_size()),
//!     mapped_bytes: Some(bmap.mapped_bytes()),
//!     tune: true,
//!     ..Default::default()
//! };
//! let dest = Dest::open(Path::new("/dev/sdX"), &options)?;
//! let outcome = copy::copy(image, Some(&bmap), dest, &copy::Options::default())?;
//! println!("wrote {} bytes", outcome.bytes_written);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod pipeline;

use std::io;
use std::sync::Arc;

use crate::Interrupt;
use crate::dest::{self, Dest};
use crate::format::{Bmap, Digest};
use crate::progress::{NoProgress, Progress};
use crate::source::Image;

/// Choices for [`copy`].
#[derive(Clone)]
pub struct Options {
    /// Verify each range's digest.
    pub verify: bool,
    /// Checked between chunks; when raised the copy stops with [`Error::Interrupted`].
    pub interrupt: Interrupt,
    /// Receives progress events.
    pub progress: Arc<dyn Progress>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            verify: true,
            interrupt: Interrupt::new(),
            progress: Arc::new(NoProgress),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("verify", &self.verify)
            .field("interrupt", &self.interrupt)
            .finish_non_exhaustive()
    }
}

/// Facts about a finished copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Size of the image in bytes (learned while reading when it was not known).
    pub image_size: u64,
    /// Image bytes written to the destination.
    pub bytes_written: u64,
    /// Ranges whose digest was checked and matched.
    pub ranges_verified: u64,
    /// Ranges copied without a check (no digest in the bmap, or `verify` off).
    pub ranges_unverified: u64,
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
        "the image is {actual} bytes but its bmap says {expected}: the bmap does not belong \
         to this image"
    )]
    SizeMismatch {
        /// The bmap's ImageSize.
        expected: u64,
        /// The image's size.
        actual: u64,
    },
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
    /// Writing, sizing or syncing the destination failed.
    #[error(transparent)]
    Dest(#[from] dest::Error),
    /// The interrupt flag was raised.
    #[error("interrupted")]
    Interrupted,
}

/// Copies `image` to `dest`: with a bmap, only its ranges (verified unless
/// `options.verify` is off); without, the whole image. Finishes the destination
/// (final size, fsync, settings restored) on success; on failure the destination is
/// dropped, which removes a file it created.
pub fn copy(
    image: Image,
    bmap: Option<&Bmap>,
    dest: Dest,
    options: &Options,
) -> Result<Outcome, Error> {
    let mut image = image;
    if let Some(bmap) = bmap {
        // A block device larger than the image is read up to the image's end; a
        // smaller one is the size mismatch below.
        let _ = image.fit_device(bmap.image_size());
    }
    if let (Some(bmap), Some(actual)) = (bmap, image.size())
        && actual != bmap.image_size()
    {
        return Err(Error::SizeMismatch {
            expected: bmap.image_size(),
            actual,
        });
    }
    let outcome = pipeline::run(image, bmap, &dest, options)?;
    options.progress.syncing();
    dest.finish(outcome.image_size)?;
    Ok(outcome)
}
