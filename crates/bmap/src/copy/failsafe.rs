//! The fail-safe order for block devices: the old partition tables are wiped just
//! before the first write ([`Wipe`], run by [`super::DestWriter`]), and the parts of
//! the image where partition tables live are held back ([`HoldBack`]) and written
//! last, after everything else was written and flushed (synced and, where the sink
//! checks what it wrote, checked). A copy interrupted at any point before the end then
//! leaves a device without a valid partition table instead of a half-new system that
//! looks bootable.
//!
//! Held: the image's first MiB (MBR, primary GPT, boot sectors) and its last MiB
//! (where a GPT keeps its backup header and table). For an image without a GPT (no
//! "EFI PART" at LBA 1 for 512- or 4096-byte sectors) the last MiB is released before
//! the flush, with the rest. At most about 2 MiB is held, whatever the image.
//!
//! The CLI uses both for block devices only: a regular file the copy created is
//! removed when the copy fails (and an existing one was emptied first), so it never
//! holds a half-new image that looks whole. A hook given to
//! [`HoldBack::before_release`] may change the held bytes and add writes after
//! everything else is flushed (moving a GPT's backup to a larger device's end).

mod held;
mod wipe;

use super::sink::{RangeSink, Verdict};
use super::{Error, Span};
use held::{Region, release, span_bytes, write_extra};

pub use held::{ExtraWrite, Held, HeldPart, ReleaseHook};
pub use wipe::{Wipe, table_regions};

/// A MiB: the size of each held region and of each wiped one.
pub const TABLE_AREA: u64 = 1 << 20;

/// A range in flight: where its parts went.
#[derive(Debug)]
struct Open {
    index: usize,
    /// The part handed on at once (a sub-span when parts of the range are held).
    passed: Option<Span>,
    /// The held parts (indexes into `Held::parts`).
    held: Vec<usize>,
}

/// A [`RangeSink`] that holds back every part of the image in its first and last MiB
/// and hands the rest on; at [`finish`](RangeSink::finish) it flushes the inner sink,
/// then writes the held parts through it (each between `begin` and `end` of its span,
/// so that a stage checking what it wrote checks them too), then finishes it.
pub struct HoldBack<S: RangeSink> {
    inner: S,
    held: Held,
    open: Vec<Open>,
    hook: Option<ReleaseHook>,
    held_bytes: u64,
}

impl<S: RangeSink> std::fmt::Debug for HoldBack<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldBack")
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl<S: RangeSink> HoldBack<S> {
    /// Holds the first and last MiB of an image of `image_size` bytes (only the
    /// first when the size is not known) in front of `inner`.
    pub fn new(inner: S, image_size: Option<u64>) -> HoldBack<S> {
        let align = inner.alignment();
        let head_end = image_size.map_or(TABLE_AREA, |s| s.min(TABLE_AREA));
        let tail_start = image_size.map_or(head_end, |size| {
            let start = size.saturating_sub(TABLE_AREA);
            (start - start % align as u64).max(head_end)
        });
        let tail_end = image_size.unwrap_or(head_end).max(tail_start);
        HoldBack::with_regions(
            inner,
            Region::new(0, head_end, align),
            Region::new(tail_start, tail_end, align),
        )
    }

    /// Holds nothing: every call goes straight to `inner` (`--no-fail-safe`, or a
    /// destination that is not a block device).
    pub fn pass_through(inner: S) -> HoldBack<S> {
        let align = inner.alignment();
        HoldBack::with_regions(inner, Region::new(0, 0, align), Region::new(0, 0, align))
    }

    fn with_regions(inner: S, head: Region, tail: Region) -> HoldBack<S> {
        HoldBack {
            inner,
            held: Held {
                head,
                tail,
                parts: Vec::new(),
            },
            open: Vec::new(),
            hook: None,
            held_bytes: 0,
        }
    }

    /// Lets `hook` change the held bytes and add writes once everything else is
    /// flushed (moving a GPT's backup to a larger device's end).
    pub fn before_release(&mut self, hook: ReleaseHook) {
        self.hook = Some(hook);
    }

    /// The sink the rest goes to.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Bytes held back so far; after [`finish`](RangeSink::finish), the bytes
    /// written after the flush (a last MiB without a GPT goes before it).
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Whether anything is held at all.
    pub fn holds(&self) -> bool {
        !self.held.head.buf.is_empty()
    }

    /// Splits `[start, end)` at the held regions: the head part, the part between,
    /// the tail part (each possibly empty).
    fn split(&self, start: u64, end: u64) -> [(u64, u64); 3] {
        let (head_end, tail_start) = (self.held.head.end(), self.held.tail.start);
        let tail_end = self.held.tail.end();
        let (tail_start, tail_end) = if tail_end > tail_start {
            (tail_start, tail_end)
        } else {
            (u64::MAX, u64::MAX)
        };
        [
            (start, end.min(head_end)),
            (start.max(head_end), end.min(tail_start)),
            (start.max(tail_start), end.min(tail_end)),
        ]
    }
}

/// `span` cut to `[start, end)`, without the range's digest (it covers the whole).
fn sub_span(span: &Span, start: u64, end: u64) -> Span {
    Span {
        start,
        len: (end != u64::MAX).then(|| end - start),
        digest: None,
        ..span.clone()
    }
}

/// The verdict for a part of a range: the digest covers the whole range only.
fn part_verdict(verdict: &Verdict) -> Verdict {
    match verdict {
        Verdict::Mismatched { .. } => verdict.clone(),
        _ => Verdict::Unverified,
    }
}

impl<S: RangeSink> RangeSink for HoldBack<S> {
    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn shift(&self) -> u64 {
        self.inner.shift()
    }

    fn begin(&mut self, span: &Span) -> Result<(), Error> {
        let start = span.start;
        let end = span.len.map_or(u64::MAX, |len| start + len);
        let [head, between, tail] = self.split(start, end);
        let held: Vec<(u64, u64)> = [head, tail].into_iter().filter(|p| p.1 > p.0).collect();
        let mut open = Open {
            index: span.index,
            passed: None,
            held: Vec::new(),
        };
        if between.1 > between.0 {
            let passed = if held.is_empty() {
                span.clone()
            } else {
                sub_span(span, between.0, between.1)
            };
            self.inner.begin(&passed)?;
            open.passed = Some(passed);
        }
        let whole = held.len() == 1 && open.passed.is_none();
        for (a, b) in held {
            let span = if whole {
                span.clone()
            } else {
                sub_span(span, a, b)
            };
            open.held.push(self.held.parts.len());
            self.held.parts.push(HeldPart {
                span,
                verdict: None,
            });
        }
        self.open.push(open);
        Ok(())
    }

    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
        let end = offset + data.len() as u64;
        let [head, between, tail] = self.split(offset, end);
        for (part, is_tail) in [(head, false), (tail, true)] {
            if part.1 > part.0 {
                let region = self.held.region_mut(is_tail);
                let from = (part.0 - offset) as usize..(part.1 - offset) as usize;
                let to = (part.0 - region.start) as usize..(part.1 - region.start) as usize;
                region.buf[to].copy_from_slice(&data[from]);
                region.filled = region.filled.max(part.1);
                self.held_bytes += part.1 - part.0;
            }
        }
        if between.1 > between.0 {
            let from = (between.0 - offset) as usize..(between.1 - offset) as usize;
            self.inner.chunk(&data[from], between.0)?;
        }
        Ok(())
    }

    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), Error> {
        let Some(at) = self.open.iter().position(|o| o.index == span.index) else {
            return self.inner.end(span, verdict);
        };
        let open = self.open.remove(at);
        let whole = open.passed.is_none() && open.held.len() == 1;
        for &part in &open.held {
            self.held.parts[part].verdict = Some(if whole {
                verdict.clone()
            } else {
                part_verdict(verdict)
            });
        }
        match &open.passed {
            Some(passed) if open.held.is_empty() => self.inner.end(passed, verdict),
            Some(passed) => self.inner.end(passed, &part_verdict(verdict)),
            None => Ok(()),
        }
    }

    fn dest(&self) -> Option<&crate::dest::Dest> {
        self.inner.dest()
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush()
    }

    fn finish(&mut self, image_size: u64) -> Result<(), Error> {
        let parts = std::mem::take(&mut self.held.parts);
        let gpt = self.held.has_gpt();
        let tail_start = self.held.tail.start;
        let in_tail =
            |p: &HeldPart| self.held.tail.end() > tail_start && p.span.start >= tail_start;
        let (tail, head): (Vec<HeldPart>, Vec<HeldPart>) = parts.into_iter().partition(in_tail);
        // The last MiB (the last partition's end and, for a GPT, the image's backup
        // table) once everything else is durable: every data byte is on the medium
        // before any table is.
        if gpt && !tail.is_empty() {
            self.inner.flush()?;
        } else {
            self.held_bytes = self.held_bytes.saturating_sub(span_bytes(&tail));
        }
        release(&mut self.inner, &self.held, &tail)?;
        if !head.is_empty() || !tail.is_empty() || self.hook.is_some() {
            self.inner.flush()?;
        }
        // Then the hook's writes (the GPT move writes the backup at the device's end,
        // before the primary that points to it), then the first MiB.
        if let Some(hook) = self.hook.take() {
            self.held.parts = head;
            let extra = hook(&mut self.held, self.inner.dest())?;
            write_extra(&mut self.inner, &extra)?;
            let parts = std::mem::take(&mut self.held.parts);
            release(&mut self.inner, &self.held, &parts)?;
        } else {
            release(&mut self.inner, &self.held, &head)?;
        }
        self.inner.finish(image_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use held::{GPT_SIGNATURE, RELEASE_CHUNK};

    /// Records what reaches it, in order.
    #[derive(Default)]
    struct Record(Vec<String>, Vec<(u64, Vec<u8>)>);

    impl RangeSink for Record {
        fn begin(&mut self, span: &Span) -> Result<(), Error> {
            self.0.push(format!("begin {}+{:?}", span.start, span.len));
            Ok(())
        }
        fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
            self.0.push(format!("chunk {offset}+{}", data.len()));
            self.1.push((offset, data.to_vec()));
            Ok(())
        }
        fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), Error> {
            let v = matches!(verdict, Verdict::Unverified);
            self.0
                .push(format!("end {}+{:?} {v}", span.start, span.len));
            Ok(())
        }
        fn flush(&mut self) -> Result<(), Error> {
            self.0.push("flush".into());
            Ok(())
        }
        fn finish(&mut self, size: u64) -> Result<(), Error> {
            self.0.push(format!("finish {size}"));
            Ok(())
        }
    }

    fn span(index: usize, start: u64, len: u64) -> Span {
        Span {
            index,
            first_block: start / 4096,
            last_block: (start + len - 1) / 4096,
            start,
            len: Some(len),
            digest: None,
        }
    }

    /// Feeds `spans` in 1 MiB chunks of a pattern.
    fn feed(sink: &mut dyn RangeSink, spans: &[Span], gpt: bool) {
        for s in spans {
            sink.begin(s).expect("begin");
            let end = s.start + s.len.expect("len");
            let mut at = s.start;
            while at < end {
                let stop = (at + RELEASE_CHUNK).min(end);
                let mut data: Vec<u8> = (at..stop).map(|o| (o % 251) as u8).collect();
                if gpt && at <= 512 && stop >= 520 {
                    let i = (512 - at) as usize;
                    data[i..i + 8].copy_from_slice(GPT_SIGNATURE);
                }
                sink.chunk(&data, at).expect("chunk");
                at = stop;
            }
            sink.end(s, &Verdict::Unverified).expect("end");
        }
    }

    #[test]
    fn a_range_straddling_the_head_is_split_and_its_head_part_written_after_the_flush() {
        let size = 8 * TABLE_AREA;
        let mut hold = HoldBack::new(Record::default(), Some(size));
        let spans = [
            span(0, 0, 3 * TABLE_AREA),
            span(1, 7 * TABLE_AREA + 4096, 8192),
        ];
        feed(&mut hold, &spans, false);
        hold.finish(size).expect("finish");
        let log = &hold.inner().0;
        let flush = log.iter().position(|l| l == "flush").expect("flushed");
        let head = log
            .iter()
            .position(|l| l == "chunk 0+1048576")
            .expect("head");
        let tail = log
            .iter()
            .position(|l| l == "chunk 7344128+8192")
            .expect("tail");
        assert!(head > flush, "{log:?}");
        // No GPT: the tail went with the rest, before the flush.
        assert!(tail < flush, "{log:?}");
        assert_eq!(
            log.iter().filter(|l| l.starts_with("end 1048576")).count(),
            1
        );
        assert_eq!(hold.held_bytes(), TABLE_AREA);
    }

    #[test]
    fn a_gpt_image_holds_its_last_mib_too_and_every_byte_lands_once() {
        let size = 4 * TABLE_AREA + 5000;
        let mut hold = HoldBack::new(Record::default(), Some(size));
        let spans = [span(0, 0, size)];
        feed(&mut hold, &spans, true);
        hold.finish(size).expect("finish");
        let (log, writes) = (&hold.inner().0, &hold.inner().1);
        // Everything else, a flush, the last MiB, a flush, the first MiB.
        let flushes: Vec<usize> = (0..log.len()).filter(|&i| log[i] == "flush").collect();
        assert_eq!(flushes.len(), 2, "{log:?}");
        let chunk_at = |line: &str| -> Option<u64> {
            let rest = line.strip_prefix("chunk ")?;
            rest.split('+').next()?.parse().ok()
        };
        let tail_start = size - TABLE_AREA;
        for (i, line) in log.iter().enumerate() {
            let Some(offset) = chunk_at(line) else {
                continue;
            };
            let phase = flushes.iter().filter(|&&f| f < i).count();
            let expected = if offset < TABLE_AREA {
                2
            } else if offset + 4096 > tail_start {
                1
            } else {
                0
            };
            assert_eq!(phase, expected, "{line} after {phase} flushes: {log:?}");
        }
        let mut image = vec![0u8; size as usize];
        let mut seen = vec![false; size as usize];
        for (offset, data) in writes {
            for (i, b) in data.iter().enumerate() {
                let at = *offset as usize + i;
                assert!(!seen[at], "byte {at} written twice");
                seen[at] = true;
                image[at] = *b;
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(&image[512..520], GPT_SIGNATURE);
        assert_eq!(image[700_000], (700_000 % 251) as u8);
    }

    #[test]
    fn a_stream_of_unknown_length_shorter_than_the_head_is_written_as_far_as_it_went() {
        let mut hold = HoldBack::new(Record::default(), None);
        let whole = Span {
            len: None,
            last_block: u64::MAX,
            ..span(0, 0, 1)
        };
        hold.begin(&whole).expect("begin");
        hold.chunk(&[7u8; 5000], 0).expect("chunk");
        hold.end(&whole, &Verdict::Unverified).expect("end");
        hold.finish(5000).expect("finish");
        let writes = &hold.inner().1;
        assert_eq!(writes.len(), 1);
        assert_eq!((writes[0].0, writes[0].1.len()), (0, 5000));
    }
}
