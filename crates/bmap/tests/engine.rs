//! The copy and create engines through the library's API, on in-memory images (the
//! fixture's sparse images, read as streams or from a temporary file) and in-memory
//! range sinks: a plan's checks, the events and the `Outcome` they add up to, the
//! verdict of each range, the sink's calls, create -> copy on a real sparse file, and
//! the trust step (finding, reading, the signature's verdict, parsing) on local files.

mod fixture;

use std::io::Cursor;
use std::path::Path;

use bmap::copy::{
    self, DestWriter, Event, Outcome, Phase, Plan, RangeResult, RangeSink, Span, Verdict,
};
use bmap::dest::Dest;
use bmap::format::{self, Bmap};
use bmap::source::Image;
use bmap::source::remote::Location;
use bmap::trust;
use fixture::BmapText;

/// A sink that keeps the image in memory and records every call.
#[derive(Debug, Default)]
struct Memory {
    bytes: Vec<u8>,
    calls: Vec<Call>,
    finished: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Begin(usize),
    Chunk(u64, usize),
    End(usize, Verdict),
}

impl RangeSink for Memory {
    fn begin(&mut self, span: &Span) -> Result<(), copy::Error> {
        self.calls.push(Call::Begin(span.index));
        Ok(())
    }

    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), copy::Error> {
        let start = usize::try_from(offset).expect("small image");
        if self.bytes.len() < start + data.len() {
            self.bytes.resize(start + data.len(), 0);
        }
        self.bytes[start..start + data.len()].copy_from_slice(data);
        self.calls.push(Call::Chunk(offset, data.len()));
        Ok(())
    }

    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), copy::Error> {
        self.calls.push(Call::End(span.index, verdict.clone()));
        Ok(())
    }

    fn finish(&mut self, image_size: u64) -> Result<(), copy::Error> {
        self.bytes
            .resize(usize::try_from(image_size).expect("small"), 0);
        self.finished = Some(image_size);
        Ok(())
    }
}

fn sample(seed: u64, block_size: u64, blocks: u64, tail: u64) -> (fixture::Image, Bmap) {
    let image = fixture::Image::new(seed, block_size, blocks, tail);
    let text = BmapText::new("2.0", &image).to_bytes();
    let bmap = format::parse(&text)
        .expect("the fixture's bmap parses")
        .bmap;
    (image, bmap)
}

fn stream(bytes: &[u8], size: Option<u64>) -> Image {
    Image::stream(Box::new(Cursor::new(bytes.to_vec())), size)
}

fn run(image: Image, bmap: Option<Bmap>) -> (Result<Outcome, copy::Error>, Memory, Vec<Event>) {
    let plan = Plan::new(image, bmap, None).expect("the plan's checks pass");
    let mut sink = Memory::default();
    let mut events = Vec::new();
    let result = plan.run(&mut sink, &mut events, &copy::Options::default());
    (result, sink, events)
}

#[test]
fn the_bytes_in_the_events_add_up_to_the_outcome() {
    let (image, bmap) = sample(7, 4096, 700, 100);
    let mapped = bmap.mapped_bytes();
    let ranges = bmap.ranges().len();
    let (result, sink, events) = run(stream(&image.bytes, None), Some(bmap));
    let outcome = result.expect("the copy succeeds");

    let written: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Written(n) => Some(*n),
            _ => None,
        })
        .sum();
    let read: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Read(n) => Some(*n),
            _ => None,
        })
        .sum();
    let range_events: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Range(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(written, outcome.bytes_written);
    assert_eq!(written, mapped);
    // A stream is read whole: the holes too.
    assert_eq!(read, outcome.bytes_read);
    assert_eq!(read, image.bytes.len() as u64);
    assert_eq!(range_events, outcome.ranges);
    assert_eq!(outcome.ranges.len(), ranges);
    assert_eq!(outcome.ranges_verified, ranges as u64);
    assert!(
        outcome
            .ranges
            .iter()
            .all(|r| matches!(r.result, RangeResult::Verified(_)))
    );
    let phases: Vec<Phase> = events
        .iter()
        .filter_map(|e| match e {
            Event::Phase(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [Phase::Checking, Phase::Writing, Phase::Syncing, Phase::Done]
    );
    assert_eq!(
        events.last(),
        Some(&Event::Finished(Box::new(outcome.clone())))
    );
    assert_eq!(sink.finished, Some(image.bytes.len() as u64));
    assert_eq!(sink.bytes, image.bytes, "the sink holds the image");
}

#[test]
fn a_mismatch_event_names_the_range_and_the_sink_is_not_finished() {
    let (mut image, bmap) = sample(11, 4096, 300, 0);
    let victim = bmap.ranges().len() / 2;
    let range = bmap.ranges()[victim];
    let (start, _) = bmap.byte_span(&range);
    image.bytes[usize::try_from(start).expect("small") + 1] ^= 0x40;
    let (result, sink, events) = run(stream(&image.bytes, None), Some(bmap));

    let error = result.expect_err("a changed byte fails the copy");
    let copy::Error::ChecksumMismatch(mismatch) = &error else {
        panic!("not a mismatch: {error}");
    };
    assert_eq!(
        (mismatch.first, mismatch.last),
        (range.first(), range.last())
    );
    let mismatched: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Range(r) if matches!(r.result, RangeResult::Mismatched { .. }) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(mismatched.len(), 1, "{events:?}");
    assert_eq!(mismatched[0].index, victim);
    assert_eq!(
        (mismatched[0].first_block, mismatched[0].last_block),
        (range.first(), range.last())
    );
    assert!(
        sink.calls
            .iter()
            .any(|c| matches!(c, Call::End(i, Verdict::Mismatched { .. }) if *i == victim)),
        "the sink heard the verdict"
    );
    assert_eq!(sink.finished, None);
    assert!(!events.iter().any(|e| matches!(e, Event::Finished(_))));
}

#[test]
fn one_large_range_is_hashed_as_it_passes_in_order_chunks() {
    // 9 MiB mapped in one range: several of the pipeline's 1 MiB chunks.
    let size = 9 << 20;
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8 | 1).collect();
    let digest = {
        let mut hasher = format::ChecksumKind::Sha256.hasher();
        hasher.update(&bytes);
        hasher.finish()
    };
    let blocks = (size as u64).div_ceil(4096);
    let range = format::BlockRange::new(0, blocks - 1, Some(digest)).expect("range");
    let bmap = Bmap::new(
        size as u64,
        4096,
        Some(format::ChecksumKind::Sha256),
        vec![range],
    )
    .expect("bmap");
    let (result, sink, _) = run(stream(&bytes, Some(size as u64)), Some(bmap));
    let outcome = result.expect("verified");
    assert_eq!(outcome.ranges.len(), 1);
    assert_eq!(outcome.ranges[0].result, RangeResult::Verified(digest));
    let offsets: Vec<(u64, usize)> = sink
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Chunk(o, n) => Some((*o, *n)),
            _ => None,
        })
        .collect();
    assert!(offsets.len() >= 9, "{offsets:?}");
    let mut next = 0;
    for (offset, len) in offsets {
        assert_eq!(offset, next, "chunks of a range arrive in order");
        next += len as u64;
    }
    assert_eq!(sink.calls.first(), Some(&Call::Begin(0)));
    assert_eq!(
        sink.calls.last(),
        Some(&Call::End(0, Verdict::Verified(digest)))
    );
}

#[test]
fn the_plan_refuses_a_wrong_size_or_a_larger_declared_size_before_any_sink() {
    let (image, bmap) = sample(3, 4096, 40, 0);
    let short = &image.bytes[..image.bytes.len() - 1];
    let error = Plan::new(
        stream(short, Some(short.len() as u64)),
        Some(bmap.clone()),
        None,
    )
    .expect_err("a known size that differs");
    assert!(
        matches!(error, copy::Error::SizeMismatch { expected, actual }
            if expected == bmap.image_size() && actual == short.len() as u64),
        "{error}"
    );
    let declared = bmap.image_size() + 1;
    let error = Plan::new(
        stream(&image.bytes, None),
        Some(bmap.clone()),
        Some(declared),
    )
    .expect_err("a stream that declares more");
    assert!(
        matches!(error, copy::Error::DeclaredTooLarge { declared: d, .. } if d == declared),
        "{error}"
    );
    assert!(error.to_string().contains("does not belong to this image"));
    let plan = Plan::new(stream(&image.bytes, None), Some(bmap.clone()), None).expect("fits");
    assert_eq!(plan.image_size(), Some(bmap.image_size()));
    assert_eq!(plan.bytes_to_write(), Some(bmap.mapped_bytes()));
    assert_eq!(plan.spans().len(), bmap.ranges().len());
}

#[test]
fn without_a_bmap_a_stream_of_unknown_length_is_one_written_range() {
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 13) as u8).collect();
    let (result, sink, _) = run(stream(&bytes, None), None);
    let outcome = result.expect("copied");
    assert_eq!(outcome.bytes_written, bytes.len() as u64);
    assert_eq!(outcome.image_size, bytes.len() as u64);
    assert_eq!(outcome.ranges.len(), 1);
    assert_eq!(outcome.ranges[0].result, RangeResult::Written);
    assert_eq!(outcome.ranges[0].end, bytes.len() as u64);
    assert_eq!(sink.bytes, bytes);
}

#[test]
fn verification_off_writes_every_range_unverified() {
    let (image, bmap) = sample(5, 1024, 200, 0);
    let plan = Plan::new(stream(&image.bytes, None), Some(bmap.clone()), None).expect("plan");
    let mut sink = Memory::default();
    let options = copy::Options {
        verify: false,
        ..copy::Options::default()
    };
    let outcome = plan
        .run(&mut sink, &mut copy::NoEvents, &options)
        .expect("copied");
    assert_eq!(outcome.ranges_verified, 0);
    assert_eq!(outcome.ranges_unverified, bmap.ranges().len() as u64);
    assert!(
        outcome
            .ranges
            .iter()
            .all(|r| r.result == RangeResult::Written)
    );
    assert_eq!(sink.bytes, image.bytes);
}

/// Writes `bytes` as a sparse file: only the non-zero 4 KiB blocks are written.
fn write_sparse(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path).expect("create");
    file.set_len(bytes.len() as u64).expect("size");
    for (i, block) in bytes.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            file.write_all_at(block, i as u64 * 4096).expect("write");
        }
    }
}

#[test]
fn create_then_copy_through_the_library_reproduces_a_sparse_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (image, _) = sample(19, 4096, 500, 3000);
    let source = dir.path().join("disk.img");
    write_sparse(&source, &image.bytes);

    let file = std::fs::File::open(&source).expect("open");
    let created = bmap::create::create(&file, &bmap::create::Options::default())
        .expect("create works on a sparse file");
    let bmap = created.bmap;
    assert_eq!(bmap.image_size(), image.bytes.len() as u64);
    let reparsed = format::parse(&bmap.to_xml())
        .expect("emitted bmap parses")
        .bmap;
    assert_eq!(reparsed.ranges(), bmap.ranges());

    let plan = Plan::new(Image::open(&source).expect("image"), Some(reparsed), None).expect("plan");
    let target = dir.path().join("copy.img");
    let dest = Dest::open(&target, &plan.dest_options(false)).expect("destination");
    let mut events = Vec::new();
    let outcome = plan
        .run(
            &mut DestWriter::new(dest),
            &mut events,
            &copy::Options::default(),
        )
        .expect("copy");
    assert_eq!(outcome.ranges_verified, bmap.ranges().len() as u64);
    assert_eq!(outcome.bytes_written, bmap.mapped_bytes());
    // From a file the holes are skipped: only the mapped bytes are read.
    assert_eq!(outcome.bytes_read, bmap.mapped_bytes());
    assert_eq!(std::fs::read(&target).expect("read back"), image.bytes);
}

#[test]
fn create_open_refuses_an_empty_file_a_directory_and_a_fifo_without_waiting() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, b"").expect("write");
    let error = bmap::create::open(&empty).expect_err("nothing to map");
    assert!(matches!(error, bmap::create::Error::Empty), "{error}");
    let error = bmap::create::open(dir.path()).expect_err("a directory");
    assert!(matches!(error, bmap::create::Error::Directory), "{error}");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    // No writer: the open must not wait for one.
    let error = bmap::create::open(&fifo).expect_err("a FIFO");
    assert!(matches!(error, bmap::create::Error::NotAFile), "{error}");
    let missing = bmap::create::open(&dir.path().join("none")).expect_err("missing");
    assert!(matches!(missing, bmap::create::Error::Open(_)), "{missing}");
}

// ---------------------------------------------------------------------------------
// The trust step: find, read, signature, parse

fn trust_options(signature: trust::SignatureSource, keys: trust::Keys) -> trust::Options {
    trust::Options {
        signature,
        keys,
        fingerprint: None,
        remote: bmap::source::remote::Options::default(),
        interrupt: bmap::Interrupt::new(),
    }
}

fn no_keys() -> trust::Keys {
    trust::Keys::Default {
        files: Vec::new(),
        home: None,
    }
}

#[test]
fn trust_finds_the_bmap_beside_the_image_and_an_unsigned_one_is_parsed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (image, bmap) = sample(23, 4096, 50, 0);
    let image_path = dir.path().join("disk.img");
    std::fs::write(&image_path, &image.bytes).expect("image");
    let location = Location::Local(image_path.clone());
    let missing = trust::find(Some(&location), &Default::default()).expect_err("no bmap yet");
    assert!(matches!(missing, trust::Error::NotFound), "{missing}");
    assert!(matches!(
        trust::find(None, &Default::default()),
        Err(trust::Error::NotFound)
    ));

    let bmap_path = dir.path().join("disk.img.bmap");
    std::fs::write(&bmap_path, BmapText::new("2.0", &image).to_bytes()).expect("bmap");
    let found = trust::find(Some(&location), &Default::default()).expect("discovered");
    assert!(found.discovered);
    assert_eq!(found.shown, bmap_path.display().to_string());
    let trusted = trust::trust(
        found,
        &trust_options(trust::SignatureSource::Discover, no_keys()),
    )
    .expect("an unsigned bmap is trusted as it is");
    assert!(matches!(trusted.signature, trust::SignatureCheck::Unsigned));
    assert_eq!(trusted.bmap.ranges(), bmap.ranges());
    assert_eq!(trusted.bmap.image_size(), bmap.image_size());
}

#[test]
fn trust_refuses_a_missing_named_signature_and_a_keyring_without_a_signature() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (image, _) = sample(29, 4096, 30, 0);
    let bmap_path = dir.path().join("disk.img.bmap");
    std::fs::write(&bmap_path, BmapText::new("2.0", &image).to_bytes()).expect("bmap");
    let found = || trust::Found::named(Location::Local(bmap_path.clone()));

    let sig = dir.path().join("disk.img.bmap.asc");
    let error = trust::trust(
        found(),
        &trust_options(
            trust::SignatureSource::Named(Location::Local(sig.clone())),
            no_keys(),
        ),
    )
    .expect_err("the named signature is missing");
    assert!(
        matches!(&error, trust::Error::SignatureMissing { shown } if *shown == sig.display().to_string()),
        "{error}"
    );

    let keyring = dir.path().join("keys.gpg");
    let error = trust::trust(
        found(),
        &trust_options(
            trust::SignatureSource::Discover,
            trust::Keys::Named(keyring),
        ),
    )
    .expect_err("a keyring but nothing signed");
    assert!(
        matches!(error, trust::Error::UnsignedWithKeyring),
        "{error}"
    );
    // The message names no CLI option: the CLI adds its own advice.
    assert!(!error.to_string().contains("--"), "{error}");

    let skipped = trust::trust(
        found(),
        &trust_options(trust::SignatureSource::Skip, no_keys()),
    )
    .expect("not checked");
    assert!(matches!(
        skipped.signature,
        trust::SignatureCheck::Skipped { inline: false }
    ));
}

#[test]
fn trust_reports_a_bmap_that_cannot_be_read_or_parsed_by_name() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("none.bmap");
    let error = trust::trust(
        trust::Found::named(Location::Local(missing.clone())),
        &trust_options(trust::SignatureSource::Skip, no_keys()),
    )
    .expect_err("missing");
    assert!(
        matches!(&error, trust::Error::Bmap { shown: Some(shown), .. } if *shown == missing.display().to_string()),
        "{error}"
    );
    let garbage = dir.path().join("garbage.bmap");
    std::fs::write(&garbage, b"<bmap version=\"2.0\">").expect("write");
    let error = trust::trust(
        trust::Found::named(Location::Local(garbage)),
        &trust_options(trust::SignatureSource::Skip, no_keys()),
    )
    .expect_err("not a bmap");
    assert!(matches!(error, trust::Error::Parse { .. }), "{error}");
}

/// A sink that refuses the chunk at one offset, as a full or failing disk does.
struct FailAt(u64, Memory);

impl RangeSink for FailAt {
    fn begin(&mut self, span: &Span) -> Result<(), copy::Error> {
        self.1.begin(span)
    }

    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), copy::Error> {
        if (offset..offset + data.len() as u64).contains(&self.0) {
            return Err(copy::Error::Dest(bmap::dest::Error::Io {
                action: "write",
                path: "memory".into(),
                source: std::io::Error::from_raw_os_error(28),
            }));
        }
        self.1.chunk(data, offset)
    }

    fn end(&mut self, span: &Span, verdict: &Verdict) -> Result<(), copy::Error> {
        self.1.end(span, verdict)
    }

    fn finish(&mut self, image_size: u64) -> Result<(), copy::Error> {
        self.1.finish(image_size)
    }
}

#[test]
fn a_failed_write_is_a_range_event_and_the_copy_stops_unfinished() {
    let (image, bmap) = sample(31, 4096, 200, 0);
    let victim = bmap.ranges().len() - 1;
    let (start, _) = bmap.byte_span(&bmap.ranges()[victim]);
    let plan = Plan::new(stream(&image.bytes, None), Some(bmap.clone()), None).expect("plan");
    let mut sink = FailAt(start, Memory::default());
    let mut events = Vec::new();
    let error = plan
        .run(&mut sink, &mut events, &copy::Options::default())
        .expect_err("the write fails");
    assert!(matches!(error, copy::Error::Dest(_)), "{error}");
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Range(r) if matches!(r.result, RangeResult::WriteFailed { .. }) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].index, victim);
    assert_eq!(failed[0].result, RangeResult::WriteFailed { offset: start });
    assert_eq!(sink.1.finished, None);
    assert!(!events.contains(&Event::Phase(Phase::Syncing)));
}

#[test]
fn a_verify_only_pass_checks_an_image_against_its_bmap_without_writing() {
    let (mut image, bmap) = sample(37, 4096, 120, 0);
    let plan = Plan::new(stream(&image.bytes, None), Some(bmap.clone()), None).expect("plan");
    let outcome = plan
        .run(
            &mut copy::Discard,
            &mut copy::NoEvents,
            &copy::Options::default(),
        )
        .expect("the image matches its bmap");
    assert_eq!(outcome.ranges_verified, bmap.ranges().len() as u64);
    assert_eq!(outcome.bytes_written, bmap.mapped_bytes());

    let last = bmap.ranges()[bmap.ranges().len() - 1];
    let (start, len) = bmap.byte_span(&last);
    image.bytes[usize::try_from(start + len - 1).expect("small")] ^= 1;
    let plan = Plan::new(stream(&image.bytes, None), Some(bmap.clone()), None).expect("plan");
    let error = plan
        .run(
            &mut copy::Discard,
            &mut copy::NoEvents,
            &copy::Options::default(),
        )
        .expect_err("a changed last byte");
    assert!(
        matches!(&error, copy::Error::ChecksumMismatch(m) if m.first == last.first()),
        "{error}"
    );
}
