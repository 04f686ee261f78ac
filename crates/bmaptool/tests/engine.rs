//! How `bmaptool copy` renders the engine's events: progress still shows under `-d`,
//! plain progress lines (stderr not a terminal) carry an ETA, the final sync is
//! announced instead of looking hung, and a Ctrl-C that comes during that sync still
//! leaves the device's tuning restored.
//!
//! Tests that need root or loop devices skip when those are missing, unless
//! `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Stdio};
use std::sync::{Arc, Mutex};

use copy_support::*;

const MIB: u64 = 1 << 20;

/// A fully mapped image of `len` random bytes and its bmap, made by `bmaptool create`.
fn image_and_bmap(dir: &Path, len: u64) -> (PathBuf, PathBuf, Vec<u8>) {
    let image = dir.join("disk.img");
    let bytes = random_bytes(42, usize::try_from(len).expect("small"));
    fs::write(&image, &bytes).expect("write the image");
    let bmap = dir.join("disk.img.bmap");
    assert_ok(&run([
        "create".as_ref(),
        "-o".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
    ]));
    (image, bmap, bytes)
}

/// Collects a child's stderr lines on a thread, so a test can wait for one.
#[derive(Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(stderr: ChildStderr) -> Lines {
        let lines = Lines(Arc::new(Mutex::new(Vec::new())));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().expect("lines").push(line);
            }
        });
        lines
    }

    fn find(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.0
            .lock()
            .expect("lines")
            .iter()
            .find(|l| pred(l))
            .cloned()
    }

    fn text(&self) -> String {
        self.0.lock().expect("lines").join("\n")
    }
}

#[test]
fn progress_still_shows_under_debug_logging() {
    let dir = tempdir();
    let (image, bmap, bytes) = image_and_bmap(dir.path(), 3 * MIB);
    let dest = dir.path().join("out.img");
    let output = run([
        "-d".as_ref(),
        "copy".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_ok(&output);
    let text = stderr(&output);
    assert!(
        text.lines()
            .any(|l| l.starts_with("bmaptool: debug: synchronizing file 'out.img'")),
        "no synchronizing line under -d:\n{text}"
    );
    assert!(
        text.contains("bmaptool: debug: checking "),
        "no phase times under -d:\n{text}"
    );
    assert_eq!(read(&dest), bytes);
}

#[test]
fn quiet_shows_no_progress_at_all() {
    let dir = tempdir();
    let (image, bmap, _) = image_and_bmap(dir.path(), MIB);
    let dest = dir.path().join("out.img");
    let output = run([
        "-q".as_ref(),
        "copy".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_ok(&output);
    assert_eq!(stderr(&output), "", "-q printed something");
}

#[test]
fn plain_progress_lines_carry_an_eta() {
    let dir = tempdir();
    let (_, bmap, bytes) = image_and_bmap(dir.path(), 8 * MIB);
    let dest = dir.path().join("out.img");
    let mut child = KillOnDrop(
        bmaptool()
            .args(["copy", "--bmap"])
            .arg(&bmap)
            .arg("-")
            .arg(&dest)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    let lines = Lines::collect(child.0.stderr.take().expect("piped stderr"));
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    // Half the image, then the input stays open: the copy is half done until a
    // progress line (due every few seconds) has been printed.
    stdin
        .write_all(&bytes[..bytes.len() / 2])
        .expect("the first half reaches bmaptool");
    let is_progress = |l: &str| l.contains("% copied (");
    let seen = eventually(HANG, || lines.find(is_progress).is_some());
    let line = lines.find(is_progress);
    drop(stdin.write_all(&bytes[bytes.len() / 2..]));
    drop(stdin);
    let status = wait_for(&mut child.0, HANG).expect("bmaptool ends");
    assert!(seen, "no progress line; stderr:\n{}", lines.text());
    let line = line.expect("seen");
    assert!(
        line.starts_with("bmaptool: info: ") && line.contains("/sec, ETA "),
        "no ETA in {line:?}"
    );
    assert!(!line.contains("ETA unknown"), "{line:?}");
    assert!(status.success(), "stderr:\n{}", lines.text());
    assert_eq!(read(&dest), bytes);
}

#[test]
fn sigint_during_the_final_sync_restores_the_device_tuning() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, bytes) = image_and_bmap(dir.path(), 24 * MIB);
    let device = LoopDevice::new(64 * MIB, 0);
    // Start from settings that differ from the tuned ones (a loop device keeps its
    // settings across bindings), or seeing them restored would prove nothing.
    let ratio_path = Path::new("/sys/block")
        .join(device.name())
        .join("bdi/max_ratio");
    if device.sysfs("bdi/max_ratio") == "1" {
        fs::write(&ratio_path, "100").expect("reset max_ratio of our loop device");
    }
    let ratio = device.sysfs("bdi/max_ratio");
    let _ = device.set_scheduler("mq-deadline");
    let scheduler = device.scheduler();
    let mut child = KillOnDrop(
        bmaptool()
            .args(["-d", "copy", "--bmap"])
            .arg(&bmap)
            .arg(&image)
            .arg(device.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    let lines = Lines::collect(child.0.stderr.take().expect("piped stderr"));
    // The phase line (at once under -d) comes when every byte was handed to the
    // device and the final sync starts.
    let syncing = eventually(HANG, || {
        lines
            .find(|l| l.contains("synchronizing block device"))
            .is_some()
            || child.0.try_wait().ok().flatten().is_some()
    });
    let alive = child.0.try_wait().ok().flatten().is_none();
    signal(&child.0, "INT");
    let status = wait_for(&mut child.0, HANG).expect("bmaptool ends after SIGINT");
    if !alive {
        eprintln!("note: bmaptool had ended before SIGINT reached it; the check is weaker");
    }
    let text = lines.text();
    assert!(syncing, "no synchronizing line; stderr:\n{text}");
    assert!(
        text.contains("synchronizing block device"),
        "the copy ended before its sync was announced:\n{text}"
    );
    assert_no_panic(&text);
    // The data was on its way to the device: the sync completes (success) or the
    // interrupt is reported (130); either way the tuning is undone.
    assert!(
        matches!(status.code(), Some(0 | 130)),
        "exit {status:?}; stderr:\n{text}"
    );
    assert_eq!(
        device.sysfs("bdi/max_ratio"),
        ratio,
        "max_ratio not restored"
    );
    assert_eq!(device.scheduler(), scheduler, "scheduler not restored");
    if status.success() {
        assert_eq!(read_prefix(device.path(), bytes.len() as u64), bytes);
    }
}
