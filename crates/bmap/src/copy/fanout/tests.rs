//! The fan-out with sinks that keep what they take, stall or fail: every live
//! destination gets every byte, a failure or a stall takes only its own destination
//! out (the lag rule, with its time set through the library), and a copy with no
//! destination left fails.

use std::io::Write;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::{Error, Options, Plan, RangeSink};
use super::Fanout;
use crate::source::Image;

/// Keeps what it takes; stalls (until `gate` is released or dropped) before its
/// chunk number `stall_at`, or fails at chunk number `fail_at`.
struct Keeper {
    bytes: Arc<Mutex<Vec<u8>>>,
    chunks: usize,
    stall_at: Option<(usize, Receiver<()>)>,
    /// Told when the sink stalls.
    stalling: Option<mpsc::Sender<()>>,
    fail_at: Option<usize>,
}

impl Keeper {
    fn new() -> (Keeper, Arc<Mutex<Vec<u8>>>) {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let keeper = Keeper {
            bytes: Arc::clone(&bytes),
            chunks: 0,
            stall_at: None,
            stalling: None,
            fail_at: None,
        };
        (keeper, bytes)
    }
}

impl RangeSink for Keeper {
    fn chunk(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
        if let Some((at, gate)) = &self.stall_at
            && *at == self.chunks
        {
            if let Some(tell) = &self.stalling {
                let _ = tell.send(());
            }
            let _ = gate.recv();
        }
        if self.fail_at == Some(self.chunks) {
            return Err(Error::Finished);
        }
        self.chunks += 1;
        let mut bytes = self.bytes.lock().expect("lock");
        let end = offset as usize + data.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn finish(&mut self, _image_size: u64) -> Result<(), Error> {
        Ok(())
    }
}

/// An image of `len` bytes of a counting pattern, in a temporary file.
fn image(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    file.write_all(&bytes).expect("write the image");
    (file, bytes)
}

fn plan(file: &tempfile::NamedTempFile) -> Plan {
    Plan::new(Image::open(file.path()).expect("open"), None, None).expect("plan")
}

#[test]
fn every_destination_gets_every_byte() {
    let (file, bytes) = image(5 << 20 | 123);
    let (sinks, kept): (Vec<_>, Vec<_>) = (0..3).map(|_| Keeper::new()).unzip();
    let mut fanout = Fanout::with_queue(sinks, 2 << 20);
    let mut events = Vec::new();
    plan(&file)
        .run(&mut fanout, &mut events, &Options::default())
        .expect("copy");
    for (result, kept) in fanout.results().iter().zip(&kept) {
        assert!(result.error.is_none());
        assert_eq!(result.bytes_written, bytes.len() as u64);
        assert!(*kept.lock().expect("lock") == bytes);
    }
}

#[test]
fn a_failing_destination_leaves_the_others_going() {
    let (file, bytes) = image(4 << 20);
    let (good, kept) = Keeper::new();
    let (mut bad, _) = Keeper::new();
    bad.fail_at = Some(1);
    let mut fanout = Fanout::new(vec![bad, good]);
    plan(&file)
        .run(&mut fanout, &mut Vec::new(), &Options::default())
        .expect("copy");
    let results = fanout.results();
    assert!(matches!(results[0].error, Some(Error::Finished)));
    assert!(results[0].sink.is_none());
    assert!(results[1].error.is_none());
    assert!(*kept.lock().expect("lock") == bytes);
}

#[test]
fn every_destination_failing_fails_the_copy() {
    let (file, _) = image(4 << 20);
    let sinks: Vec<Keeper> = (0..2)
        .map(|_| {
            let (mut bad, _) = Keeper::new();
            bad.fail_at = Some(0);
            bad
        })
        .collect();
    let mut fanout = Fanout::new(sinks);
    let error = plan(&file)
        .run(&mut fanout, &mut Vec::new(), &Options::default())
        .expect_err("no destination left");
    assert!(
        matches!(error, Error::NoDestinationLeft { count: 2 }),
        "{error}"
    );
}

#[test]
fn a_stalled_destination_is_dropped_and_the_others_finish() {
    // 12 MiB through queues of 2 MiB: the stalled one fills its queue quickly.
    let (file, bytes) = image(12 << 20);
    let (good, kept) = Keeper::new();
    let (mut stalled, _) = Keeper::new();
    let (release, gate) = mpsc::channel();
    stalled.stall_at = Some((2, gate));
    let mut fanout =
        Fanout::with_queue(vec![good, stalled], 2 << 20).max_lag(Duration::from_secs(2));
    let mut events = Vec::new();
    let run = plan(&file).run(&mut fanout, &mut events, &Options::default());
    assert!(run.is_ok(), "{run:?} {events:?}");
    let results = fanout.results();
    assert!(results[0].error.is_none());
    assert!(*kept.lock().expect("lock") == bytes);
    match &results[1].error {
        Some(Error::Lagging { idle, behind }) => {
            assert!(*idle >= Duration::from_secs(2));
            assert!(*behind > 0);
        }
        other => panic!("expected the lag rule's error, got {other:?}"),
    }
    drop(release);
}

#[test]
fn an_interrupt_ends_a_wait_for_a_stalled_destination() {
    let (file, _) = image(12 << 20);
    let (mut stalled, _) = Keeper::new();
    let (release, gate) = mpsc::channel();
    stalled.stall_at = Some((1, gate));
    let (tell, stalling) = mpsc::channel();
    stalled.stalling = Some(tell);
    let options = Options::default();
    let interrupt = options.interrupt.clone();
    let mut fanout = Fanout::with_queue(vec![stalled], 1 << 20)
        .max_lag(Duration::from_secs(3600))
        .interrupt(interrupt.clone());
    // Raised once the sink stalls, while the copy waits for it.
    let raiser = std::thread::spawn(move || {
        let _ = stalling.recv();
        interrupt.raise();
    });
    let error = plan(&file)
        .run(&mut fanout, &mut Vec::new(), &options)
        .expect_err("interrupted");
    assert!(matches!(error, Error::Interrupted), "{error}");
    raiser.join().expect("raiser");
    drop(release);
    drop(fanout);
}

#[test]
fn time_a_destination_spent_waiting_for_data_is_not_lag() {
    // Idle for longer than the lag rule's time, then a burst that fills its queue while
    // its next write takes a moment: it must not be taken for a stalled destination.
    let (mut slow, kept) = Keeper::new();
    let (release, gate) = mpsc::channel();
    slow.stall_at = Some((1, gate));
    let mut fanout = Fanout::with_queue(vec![slow], 1 << 20).max_lag(Duration::from_secs(2));
    let block = vec![9u8; 1 << 20];
    fanout.chunk(&block, 0).expect("first chunk");
    let mut events = Vec::new();
    let took_it = || kept.lock().expect("lock").len() == 1 << 20;
    while !took_it() {
        std::thread::yield_now();
    }
    // Idle: the image is slow to come.
    std::thread::sleep(Duration::from_millis(2500));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(release);
    });
    for n in 1..5u64 {
        fanout.chunk(&block, n << 20).expect("burst");
    }
    fanout.finish(5 << 20).expect("finish");
    fanout.report(&mut events);
    releaser.join().expect("releaser");
    let results = fanout.results();
    assert!(results[0].error.is_none(), "{:?}", results[0].error);
    assert_eq!(results[0].bytes_written, 5 << 20);
}
