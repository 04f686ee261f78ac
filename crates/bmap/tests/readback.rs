//! Read-back verification (`DestWriter::read_back`) on real loop devices, with the
//! library's test-only fault hook (feature `fault-injection`) flipping a byte on the
//! device, through the test's own descriptor, after a write and before it is read
//! back: a corruption seen once is rewritten and the copy succeeds; one that persists
//! fails after the retries, naming the range and the byte.

mod fixture;

use std::fs::{File, OpenOptions};
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmap::copy::{self, DestWriter, Plan, RangeSink, ReadBack, ReadBackMismatch, Span, Verdict};
use bmap::dest::{AlignedBuf, Dest};
use bmap::format::{self, Bmap};
use bmap::source::Image;
use fixture::BmapText;

/// A loop device over a sparse backing file in its own temporary directory;
/// detached on drop.
struct LoopDevice {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    fn new(size: u64) -> LoopDevice {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backing = dir.path().join("backing.img");
        File::create(&backing)
            .and_then(|f| f.set_len(size))
            .expect("make the backing file");
        let out =
            test_support::succeeds(Command::new("losetup").args(["-f", "--show"]).arg(&backing));
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(path.starts_with("/dev/"), "losetup printed {path:?}");
        LoopDevice { path, _dir: dir }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let path = self.path.to_string_lossy().into_owned();
        // A just-closed device can be briefly busy (udev probing it): retry.
        let detached = test_support::eventually(Duration::from_secs(30), || {
            test_support::runs("losetup", &["-d", &path])
        });
        if !detached {
            eprintln!("warning: cannot detach {path}");
        }
    }
}

/// A 16 MiB image of many small ranges (several read-back batches) and its bmap.
fn sample() -> (fixture::Image, Bmap) {
    let image = fixture::Image::new(11, 4096, 4096, 0);
    let text = BmapText::new("2.0", &image).to_bytes();
    let bmap = format::parse(&text)
        .expect("the fixture's bmap parses")
        .bmap;
    (image, bmap)
}

/// A byte well inside the image's mapped data (in a later batch than the first) and
/// the range `(first, last)` that holds it.
fn target(image: &fixture::Image) -> (u64, (u64, u64)) {
    let &(first, last) = image
        .mapped
        .iter()
        .find(|&&(first, _)| first * image.block_size >= 6 << 20)
        .expect("a range past 6 MiB");
    let offset = first * image.block_size + (last - first + 1) * image.block_size / 2 + 7;
    (offset, (first, last))
}

/// Flips the byte at `offset` of `device` through a descriptor of its own, and
/// syncs it to the device.
fn flip(device: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .expect("open the device");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset)
        .expect("read the byte");
    byte[0] = !byte[0];
    file.write_all_at(&byte, offset).expect("write the byte");
    file.sync_all().expect("sync the device");
}

/// A hook that flips `offset` whenever it is among the parts about to be read back,
/// on the attempts `when` accepts; counts the flips.
fn flipper(device: &Path, offset: u64, when: fn(u32) -> bool) -> (copy::FaultHook, Arc<AtomicU32>) {
    let flips = Arc::new(AtomicU32::new(0));
    let (device, counter) = (device.to_owned(), Arc::clone(&flips));
    let seen = Mutex::new(());
    let hook: copy::FaultHook = Arc::new(move |parts: &[(u64, u64)], attempt: u32| {
        let _one_at_a_time = seen.lock().expect("lock");
        let inside = parts
            .iter()
            .any(|&(start, len)| (start..start + len).contains(&offset));
        if inside && when(attempt) {
            flip(&device, offset);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (hook, flips)
}

/// Copies the sample to `device` with read-back (`retries`, `hook`).
fn copy_with(
    image: &fixture::Image,
    bmap: &Bmap,
    device: &Path,
    read_back: ReadBack,
) -> (Result<copy::Outcome, copy::Error>, DestWriter) {
    let size = image.bytes.len() as u64;
    let source = Image::stream(Box::new(Cursor::new(image.bytes.clone())), Some(size));
    let plan = Plan::new(source, Some(bmap.clone()), None).expect("plan");
    let dest = Dest::open(device, &plan.dest_options(false)).expect("open the device");
    let mut writer = DestWriter::new(dest)
        .read_back(read_back)
        .expect("read-back starts");
    let result = plan.run(&mut writer, &mut copy::NoEvents, &copy::Options::default());
    (result, writer)
}

fn device_prefix(device: &Path, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    File::open(device)
        .and_then(|f| f.read_exact_at(&mut bytes, 0))
        .expect("read the device");
    bytes
}

#[test]
fn a_corruption_seen_once_is_rewritten_and_the_device_then_holds_the_image() {
    if !test_support::need_loop_devices() {
        return;
    }
    let (image, bmap) = sample();
    let device = LoopDevice::new(image.bytes.len() as u64 + (1 << 20));
    let (offset, _) = target(&image);
    let (hook, flips) = flipper(&device.path, offset, |attempt| attempt == 0);
    let (result, writer) = copy_with(
        &image,
        &bmap,
        &device.path,
        ReadBack::new(2).fault_hook(hook),
    );
    let outcome = result.expect("the copy succeeds after rewriting");
    assert_eq!(
        flips.load(Ordering::SeqCst),
        1,
        "the hook flipped the byte once"
    );
    let stats = writer.read_back_stats().expect("read-back stats");
    assert_eq!(stats.rewrites, 1);
    assert_eq!(stats.ranges_rewritten, 1);
    assert_eq!(stats.ranges, bmap.ranges().len() as u64);
    assert_eq!(stats.bytes, bmap.mapped_bytes());
    assert_eq!(outcome.bytes_written, bmap.mapped_bytes());
    assert!(
        !stats.through_page_cache,
        "a loop device reads back directly"
    );
    let back = device_prefix(&device.path, image.bytes.len());
    assert!(back == image.bytes, "the device does not hold the image");
}

/// The error of a copy whose read-back fails.
fn read_back_error(result: Result<copy::Outcome, copy::Error>) -> ReadBackMismatch {
    match result {
        Err(copy::Error::ReadBack(mismatch)) => *mismatch,
        other => panic!("expected a read-back mismatch, got {other:?}"),
    }
}

#[test]
fn a_corruption_that_persists_fails_after_the_retries_naming_the_range_and_byte() {
    if !test_support::need_loop_devices() {
        return;
    }
    let (image, bmap) = sample();
    let device = LoopDevice::new(image.bytes.len() as u64);
    let (offset, (first, last)) = target(&image);
    let (hook, flips) = flipper(&device.path, offset, |_| true);
    let (result, mut writer) = copy_with(
        &image,
        &bmap,
        &device.path,
        ReadBack::new(2).fault_hook(hook),
    );
    let error = read_back_error(result);
    assert_eq!((error.first, error.last), (first, last));
    assert_eq!(error.offset, offset);
    assert_eq!(error.writes, 3, "written once and rewritten twice");
    assert_eq!(error.wrote, image.bytes[offset as usize]);
    assert_eq!(error.found, !image.bytes[offset as usize]);
    assert_eq!(flips.load(Ordering::SeqCst), 3);
    let text = copy::Error::ReadBack(Box::new(error)).to_string();
    assert!(
        text.contains(&format!("blocks range {first}-{last}"))
            && text.contains(&offset.to_string()),
        "{text}"
    );
    assert!(
        matches!(writer.finish(0), Err(copy::Error::Finished)),
        "a failed read-back leaves the writer unusable"
    );
}

#[test]
fn write_retries_zero_fails_at_the_first_difference() {
    if !test_support::need_loop_devices() {
        return;
    }
    let (image, bmap) = sample();
    let device = LoopDevice::new(image.bytes.len() as u64);
    let (offset, (first, last)) = target(&image);
    let (hook, flips) = flipper(&device.path, offset, |attempt| attempt == 0);
    let (result, _) = copy_with(
        &image,
        &bmap,
        &device.path,
        ReadBack::new(0).fault_hook(hook),
    );
    let error = read_back_error(result);
    assert_eq!(
        (error.first, error.last, error.offset),
        (first, last, offset)
    );
    assert_eq!(error.writes, 1, "never written again");
    assert_eq!(flips.load(Ordering::SeqCst), 1);
}

/// Writes blocks `first..=last` (4 KiB each) of `bytes` through `writer` as one range,
/// in 1 MiB chunks from aligned buffers, as the pipeline does (numbered by its first
/// block, so that each range is one of its own).
fn write_range(writer: &mut DestWriter, bytes: &[u8], first: u64, last: u64) {
    let span = Span {
        index: first as usize,
        first_block: first,
        last_block: last,
        start: first * 4096,
        len: Some((last - first + 1) * 4096),
        digest: None,
    };
    writer.begin(&span).expect("begin");
    let (start, end) = (first as usize * 4096, (last as usize + 1) * 4096);
    for at in (start..end).step_by(1 << 20) {
        let len = (end - at).min(1 << 20);
        let mut chunk = AlignedBuf::new(len, writer.alignment());
        chunk.copy_from_slice(&bytes[at..at + len]);
        writer.chunk(&chunk, at as u64).expect("chunk");
    }
    writer.end(&span, &Verdict::Unverified).expect("end");
}

#[test]
fn flush_waits_until_everything_written_was_read_back_and_reports_a_mismatch() {
    if !test_support::need_loop_devices() {
        return;
    }
    let bytes = test_support::random_bytes(5, 16 << 20);
    let device = LoopDevice::new(bytes.len() as u64);
    let bad = (12 << 20) + 12_345;
    let (hook, flips) = flipper(&device.path, bad, |_| true);
    let dest = Dest::open(&device.path, &bmap::dest::Options::default()).expect("open");
    let mut writer = DestWriter::new(dest)
        .read_back(ReadBack::new(1).fault_hook(hook))
        .expect("read-back starts");
    // 5 MiB and 3 MiB: more than a batch, then part of one.
    write_range(&mut writer, &bytes, 0, 1279);
    write_range(&mut writer, &bytes, 2048, 2815);
    writer.flush().expect("both ranges read back and matched");
    let stats = writer.read_back_stats().expect("stats");
    assert_eq!(
        stats.bytes,
        8 << 20,
        "flush returned before everything was read back"
    );
    assert_eq!(stats.ranges, 2);
    write_range(&mut writer, &bytes, 3072, 3199);
    match writer.flush() {
        Err(copy::Error::ReadBack(error)) => {
            assert_eq!((error.first, error.last, error.offset), (3072, 3199, bad));
            assert_eq!(error.writes, 2);
        }
        other => panic!("expected a read-back mismatch, got {other:?}"),
    }
    assert_eq!(flips.load(Ordering::SeqCst), 2);
}
