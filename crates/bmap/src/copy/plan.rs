//! A [`Plan`]: an image and its trusted bmap, checked against each other once (sizes,
//! a stream's declared size, a block device read as the image), with the spans to
//! copy. Everything that needs no destination is decided here; [`Plan::run`] then
//! drives the pipeline into a [`RangeSink`].

use std::time::{Duration, Instant};

use super::events::{Event, Events, Outcome, Phase};
use super::sink::RangeSink;
use super::{Error, Options, pipeline};
use crate::dest;
use crate::format::{Bmap, Digest};
use crate::source::Image;

/// A run of image bytes to copy: a bmap range, or the whole image without a bmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Index of the range in the bmap (0 without a bmap).
    pub index: usize,
    /// First block.
    pub first_block: u64,
    /// Last block (`u64::MAX` for a stream of unknown length).
    pub last_block: u64,
    /// First byte offset.
    pub start: u64,
    /// Length in bytes; `None` up to the end of a stream of unknown length.
    pub len: Option<u64>,
    /// The bmap's digest of the range.
    pub digest: Option<Digest>,
}

/// An image and its bmap, checked against each other, ready to run.
pub struct Plan {
    image: Image,
    bmap: Option<Bmap>,
    spans: Vec<Span>,
    min_size: Option<u64>,
    device_size: Option<u64>,
    checking: Duration,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("spans", &self.spans.len())
            .field("min_size", &self.min_size)
            .field("device_size", &self.device_size)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// Checks `image` against `bmap` (already parsed and trusted): a block device read
    /// as the image may be larger than the bmap's ImageSize (it is then read up to
    /// it) but not smaller; any other image of known size must have exactly that
    /// size; a stream that declares it holds at least `min_size` bytes must not
    /// declare more. Without a bmap the whole image is copied.
    pub fn new(image: Image, bmap: Option<Bmap>, min_size: Option<u64>) -> Result<Plan, Error> {
        let started = Instant::now();
        let mut image = image;
        let mut device_size = None;
        if let Some(bmap) = &bmap {
            let wanted = bmap.image_size();
            device_size = image
                .fit_device(wanted)
                .map_err(|e| Error::DeviceTooSmall {
                    device: e.device,
                    image: e.image,
                })?;
            if let Some(actual) = image.size()
                && actual != wanted
            {
                return Err(Error::SizeMismatch {
                    expected: wanted,
                    actual,
                });
            }
            if let Some(min) = min_size
                && min > wanted
            {
                return Err(Error::DeclaredTooLarge {
                    declared: min,
                    expected: wanted,
                });
            }
        }
        let spans = spans(bmap.as_ref(), image.size());
        Ok(Plan {
            image,
            bmap,
            spans,
            min_size,
            device_size,
            checking: started.elapsed(),
        })
    }

    /// The bmap, when there is one.
    pub fn bmap(&self) -> Option<&Bmap> {
        self.bmap.as_ref()
    }

    /// The spans to copy, in image order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// The image's size: the bmap's, or the image's own when known.
    pub fn image_size(&self) -> Option<u64> {
        self.bmap
            .as_ref()
            .map(Bmap::image_size)
            .or(self.image.size())
    }

    /// The bytes the copy writes, when known: the bmap's mapped bytes, or the whole
    /// image.
    pub fn bytes_to_write(&self) -> Option<u64> {
        self.bmap
            .as_ref()
            .map(Bmap::mapped_bytes)
            .or(self.image.size())
    }

    /// The image's unmapped byte spans `(offset, len)`, in order, up to the image's
    /// size: what `--discard` and `--zero-holes` act on. `None` without a bmap (then
    /// every byte is written).
    pub fn holes(&self) -> Option<Vec<(u64, u64)>> {
        let size = self.bmap.as_ref()?.image_size();
        let mut holes = Vec::new();
        let mut at = 0;
        for span in &self.spans {
            let start = span.start.min(size);
            if start > at {
                holes.push((at, start - at));
            }
            at = at.max(span.start.saturating_add(span.len.unwrap_or(0)).min(size));
        }
        if size > at {
            holes.push((at, size - at));
        }
        Some(holes)
    }

    /// The size of a block device read as the image when it is larger than the image
    /// (it is read up to the image's size).
    pub fn device_size(&self) -> Option<u64> {
        self.device_size
    }

    /// What a destination must be checked for before this plan runs into it.
    pub fn dest_options(&self, tune: bool) -> dest::Options {
        dest::Options {
            image_size: self.image_size(),
            mapped_bytes: self.bytes_to_write(),
            min_size: self.min_size,
            tune,
            seek: None,
        }
    }

    /// Runs the copy: reads the spans, hashes them (verifying unless `options.verify`
    /// is off) and hands them to `sink`, then finishes it. Every step is reported to
    /// `events`; the last event is [`Event::Finished`] with the same [`Outcome`] as
    /// returned.
    pub fn run(
        self,
        sink: &mut dyn RangeSink,
        events: &mut dyn Events,
        options: &Options,
    ) -> Result<Outcome, Error> {
        events.event(Event::Phase(Phase::Checking));
        let Plan {
            image,
            bmap,
            spans,
            checking,
            ..
        } = self;
        events.event(Event::Phase(Phase::Writing));
        let started = Instant::now();
        let expected = bmap.as_ref().map(Bmap::image_size);
        let block_size = bmap.as_ref().map_or(4096, Bmap::block_size);
        let job = pipeline::Job {
            spans,
            expected,
            block_size,
        };
        let mut outcome = match pipeline::run(image, job, sink, events, options) {
            Ok(outcome) => outcome,
            Err(error) => {
                sink.report(events);
                return Err(error);
            }
        };
        outcome.timings.checking = checking;
        outcome.timings.writing = started.elapsed();
        events.event(Event::Phase(Phase::Syncing));
        let syncing = Instant::now();
        let finished = sink.finish(outcome.image_size);
        sink.report(events);
        finished?;
        outcome.timings.syncing = syncing.elapsed();
        events.event(Event::Phase(Phase::Done));
        events.event(Event::Finished(Box::new(outcome.clone())));
        Ok(outcome)
    }
}

/// The spans to copy, in image order.
fn spans(bmap: Option<&Bmap>, image_size: Option<u64>) -> Vec<Span> {
    match bmap {
        Some(bmap) => bmap
            .ranges()
            .iter()
            .enumerate()
            .map(|(index, range)| {
                let (start, len) = bmap.byte_span(range);
                Span {
                    index,
                    first_block: range.first(),
                    last_block: range.last(),
                    start,
                    len: Some(len),
                    digest: range.digest().copied(),
                }
            })
            .collect(),
        None => {
            if image_size == Some(0) {
                return Vec::new();
            }
            let block_size = 4096;
            vec![Span {
                index: 0,
                first_block: 0,
                last_block: image_size
                    .map_or(u64::MAX, |s| s.div_ceil(block_size).saturating_sub(1)),
                start: 0,
                len: image_size,
                digest: None,
            }]
        }
    }
}
