//! What [`super::HoldBack`] holds: the image's first and last MiB in aligned buffers,
//! the parts of ranges that fell in them, and how they are written at the end (each
//! part between its span's `begin` and `end`, then a hook's extra writes).

use crate::copy::{Error, RangeSink, Span, Verdict};
use crate::dest::{AlignedBuf, Dest};

/// The GPT header's signature, at LBA 1.
pub(super) const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

/// The largest chunk a released part is handed on in (the pipeline's chunk size).
pub(super) const RELEASE_CHUNK: u64 = 1 << 20;

/// One held region of the image: its bytes from `start`, in a buffer aligned like the
/// copy's (so the bytes for offset `o` sit at an index congruent to `o`).
pub struct Region {
    /// Image offset of the first byte.
    pub start: u64,
    /// The region's bytes (zero where nothing was held).
    pub buf: AlignedBuf,
    /// Image offset just past the last byte held (a stream of unknown length may end
    /// inside the region).
    pub(crate) filled: u64,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Region({}+{})", self.start, self.buf.len())
    }
}

impl Region {
    pub(super) fn new(start: u64, end: u64, align: usize) -> Region {
        let len = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
        Region {
            start,
            buf: AlignedBuf::new(len, align),
            filled: start,
        }
    }

    /// Image offset just past the region.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }
}

/// A part of a range that was held: its span (the whole range's, when the range lies
/// in one region; otherwise the held part's, without a digest) and how it ended.
#[derive(Debug)]
pub struct HeldPart {
    /// The bytes held.
    pub span: Span,
    pub(super) verdict: Option<Verdict>,
}

/// What [`HoldBack`](super::HoldBack) holds, open to a hook before it is written (see
/// [`super::HoldBack::before_release`]).
#[derive(Debug)]
pub struct Held {
    /// The image's first MiB.
    pub head: Region,
    /// The image's last MiB (empty when the image's size is not known or it is small).
    pub tail: Region,
    /// The held parts, in the order their ranges began.
    pub parts: Vec<HeldPart>,
}

impl Held {
    /// Whether the held first MiB has a GPT header (its signature at LBA 1 for 512-
    /// or 4096-byte sectors).
    pub fn has_gpt(&self) -> bool {
        [512usize, 4096]
            .iter()
            .any(|&at| self.head.buf.get(at..at + 8) == Some(&GPT_SIGNATURE[..]))
    }

    pub(super) fn region_mut(&mut self, tail: bool) -> &mut Region {
        if tail { &mut self.tail } else { &mut self.head }
    }
}

/// Bytes a hook adds, written before the held parts: `bytes` at device `offset`.
#[derive(Debug, Clone)]
pub struct ExtraWrite {
    /// Device offset.
    pub offset: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Runs on the held parts once everything else is flushed, before they are written,
/// with the destination (to read what is on it) when the sink writes to one; its extra
/// writes go before the held parts, in the order given.
pub type ReleaseHook =
    Box<dyn FnOnce(&mut Held, Option<&Dest>) -> Result<Vec<ExtraWrite>, Error> + Send>;

/// The bytes of `parts`.
pub(super) fn span_bytes(parts: &[HeldPart]) -> u64 {
    parts.iter().filter_map(|p| p.span.len).sum()
}

/// Writes the held `parts` through `inner`, each between its span's `begin` and `end`.
pub(super) fn release<S: RangeSink>(
    inner: &mut S,
    held: &Held,
    parts: &[HeldPart],
) -> Result<(), Error> {
    for part in parts {
        let start = part.span.start;
        let end = part.span.len.map_or(u64::MAX, |len| start + len);
        let region = if start >= held.tail.start && held.tail.end() > held.tail.start {
            &held.tail
        } else {
            &held.head
        };
        let end = end.min(region.filled);
        inner.begin(&part.span)?;
        let mut at = start;
        while at < end {
            let stop = ((at / RELEASE_CHUNK + 1) * RELEASE_CHUNK).min(end);
            let from = (at - region.start) as usize..(stop - region.start) as usize;
            inner.chunk(&region.buf[from], at)?;
            at = stop;
        }
        let verdict = part.verdict.clone().unwrap_or(Verdict::Unverified);
        inner.end(&part.span, &verdict)?;
    }
    Ok(())
}

/// Writes a hook's extra bytes through `inner`, each as a span of its own.
pub(super) fn write_extra<S: RangeSink>(inner: &mut S, extra: &[ExtraWrite]) -> Result<(), Error> {
    let align = inner.alignment();
    for (n, write) in extra.iter().enumerate() {
        let len = write.bytes.len() as u64;
        let span = Span {
            index: usize::MAX - n,
            first_block: write.offset / 4096,
            last_block: (write.offset + len.max(1) - 1) / 4096,
            start: write.offset,
            len: Some(len),
            digest: None,
        };
        let place = (write.offset.wrapping_add(inner.shift()) % align as u64) as usize;
        let mut buf = AlignedBuf::new(place + write.bytes.len(), align);
        buf[place..].copy_from_slice(&write.bytes);
        inner.begin(&span)?;
        inner.chunk(&buf[place..], write.offset)?;
        inner.end(&span, &Verdict::Unverified)?;
    }
    Ok(())
}
