//! Black-box tests of `bmaptool copy IMAGE DEST1 DEST2 ...` on real loop devices and
//! device-mapper targets: several devices written from one read of a compressed image,
//! a refusal of one destination refusing the run before anything is written, a
//! destination failing halfway (a file system that fills up) or stalling (a file
//! system frozen with `fsfreeze`: dropped by the lag rule) while the others complete,
//! and `--verify-written` and `--skip-unchanged` per destination.
//!
//! Tests that need root, loop devices, mounts or fsfreeze skip when those are missing, unless
//! `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use copy_support::*;
use test_support::need_tool;

/// A sparse image with data in several places, its bmap, and its bytes.
struct Sample {
    image: PathBuf,
    bmap: PathBuf,
    bytes: Vec<u8>,
}

impl Sample {
    /// An image of `size` bytes with `chunks` (offset, length) of random data.
    fn new(dir: &Path, size: u64, chunks: &[(u64, usize)]) -> Sample {
        let seeded: Vec<(u64, u64, usize)> = (1..)
            .zip(chunks)
            .map(|(seed, &(offset, len))| (seed, offset, len))
            .collect();
        let (image, bmap) = sparse_image_with_bmap(dir, size, &seeded);
        let bytes = read(&image);
        Sample { image, bmap, bytes }
    }

    /// The default sample: 16 MiB with data in four places, one range crossing a
    /// chunk boundary.
    fn small(dir: &Path) -> Sample {
        Sample::new(
            dir,
            16 * MIB,
            &[
                (0, 20_000),
                (MIB + 4096, 3 * MIB as usize),
                (9 * MIB, 64 * 1024),
                (16 * MIB - 8192, 8192),
            ],
        )
    }

    /// Compresses the image with `tool` (`zstd`, `xz`); the compressed file's path.
    fn compressed(&self, tool: &str, ext: &str) -> PathBuf {
        succeeds(Command::new(tool).args(["-k", "-q", "-f"]).arg(&self.image));
        let path = PathBuf::from(format!("{}.{ext}", self.image.display()));
        assert!(path.exists(), "{tool} made no {}", path.display());
        path
    }

    /// Whether `dest` holds the image's mapped bytes.
    #[track_caller]
    fn assert_held_by(&self, dest: &Path) {
        let facts = BmapFacts::read(&self.bmap);
        let held = read_prefix(dest, self.bytes.len() as u64);
        for (start, end) in facts.pages() {
            let (s, e) = (start as usize, end.min(self.bytes.len() as u64) as usize);
            assert!(
                held[s..e] == self.bytes[s..e],
                "{} differs from the image in bytes {s}-{e}",
                dest.display()
            );
        }
    }
}

/// `copy --bmap BMAP IMAGE DEST...`.
fn copy_args(bmap: &Path, image: &Path, dests: &[&Path]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["copy".into(), "--bmap".into(), bmap.into(), image.into()];
    args.extend(dests.iter().map(|d| d.as_os_str().to_owned()));
    args
}

/// Sectors written to a loop device since it was set up (`stat` field 7).
fn sectors_written(device: &LoopDevice) -> u64 {
    device
        .sysfs("stat")
        .split_whitespace()
        .nth(6)
        .and_then(|s| s.parse().ok())
        .expect("the stat file's seventh field")
}

/// A loop device over a given backing file; detached on drop.
struct LoopOver {
    path: PathBuf,
}

impl LoopOver {
    fn new(backing: &Path) -> LoopOver {
        let out = succeeds(Command::new("losetup").args(["-f", "--show"]).arg(backing));
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(path.starts_with("/dev/"), "losetup printed {path:?}");
        LoopOver { path }
    }
}

impl Drop for LoopOver {
    fn drop(&mut self) {
        let path = self.path.to_string_lossy().into_owned();
        if !eventually(Duration::from_secs(30), || runs("losetup", &["-d", &path])) {
            eprintln!("warning: cannot detach {path}");
        }
    }
}

/// A file system frozen with `fsfreeze` (writes to it wait); thawed on drop.
struct Frozen {
    mount: PathBuf,
}

impl Frozen {
    fn new(mount: &Path) -> Frozen {
        succeeds(Command::new("fsfreeze").arg("--freeze").arg(mount));
        Frozen {
            mount: mount.to_owned(),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let mount = self.mount.to_string_lossy().into_owned();
        let _ = runs("fsfreeze", &["--unfreeze", &mount]);
    }
}

/// The table row of destination `path`, from the run's stderr.
#[track_caller]
fn row<'a>(stderr: &'a str, path: &Path) -> &'a str {
    let shown = path.display().to_string();
    stderr
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some(shown.as_str()))
        .unwrap_or_else(|| panic!("no table row for {shown} in:\n{stderr}"))
}

#[test]
fn three_loop_devices_written_in_one_run_from_a_zstd_image() {
    if !(need_loop_devices() && need_tool("zstd")) {
        return;
    }
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let image = sample.compressed("zstd", "zst");
    let devices: Vec<LoopDevice> = (0..3).map(|_| LoopDevice::new(32 * MIB, 0x5a)).collect();
    let dests: Vec<&Path> = devices.iter().map(LoopDevice::path).collect();
    let output = run(copy_args(&sample.bmap, &image, &dests));
    assert_ok(&output);
    let text = stderr(&output);
    for device in &devices {
        sample.assert_held_by(device.path());
        let row = row(&text, device.path());
        assert!(row.contains(" ok "), "{row}");
    }
    // The image was read and verified once: one summary for all of them.
    assert_eq!(text.matches("copying time").count(), 1, "{text}");
    assert!(text.contains("to 3 destinations"), "{text}");
}

#[test]
fn a_mounted_destination_refuses_the_run_before_anything_is_written() {
    if !(need_loop_devices() && need_mount() && need_tool("mkfs.ext4")) {
        return;
    }
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let free = LoopDevice::new(32 * MIB, 0);
    let mounted = LoopDevice::new(32 * MIB, 0);
    succeeds(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(mounted.path()),
    );
    let _mount = Mount::new(&[mounted.path().as_os_str()]);
    let small = LoopDevice::new(4 * MIB, 0);
    let before = sectors_written(&free);
    let output = run(copy_args(
        &sample.bmap,
        &sample.image,
        &[free.path(), mounted.path()],
    ));
    let text = assert_fails(&output, &["destination 2 of 2", "nothing was written"]);
    assert!(
        text.contains(&mounted.path().display().to_string()),
        "{text}"
    );
    assert_eq!(
        sectors_written(&free),
        before,
        "the free device was written"
    );
    assert!(read(free.backing()).iter().all(|&b| b == 0));
    // Too small: refused the same way.
    let output = run(copy_args(
        &sample.bmap,
        &sample.image,
        &[free.path(), small.path()],
    ));
    assert_fails(&output, &["destination 2 of 2", "nothing was written"]);
    assert_eq!(
        sectors_written(&free),
        before,
        "the free device was written"
    );
}

#[test]
fn the_same_destination_given_twice_is_refused() {
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let dest = dir.path().join("out.img");
    let link = dir.path().join("link.img");
    std::fs::write(&dest, b"old").expect("write the destination");
    std::os::unix::fs::symlink(&dest, &link).expect("symlink");
    let output = run(copy_args(&sample.bmap, &sample.image, &[&dest, &link]));
    assert_fails(
        &output,
        &["are the same file", "give each destination once"],
    );
    assert_eq!(read(&dest), b"old");
    // Not there yet, named twice.
    let new = dir.path().join("new.img");
    let again = dir.path().join(".").join("new.img");
    let output = run(copy_args(&sample.bmap, &sample.image, &[&new, &again]));
    assert_fails(&output, &["are the same file"]);
    assert!(!new.exists());
}

#[test]
fn regular_files_as_destinations_hold_the_image() {
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let dests: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("out{i}"))).collect();
    let refs: Vec<&Path> = dests.iter().map(PathBuf::as_path).collect();
    let output = run(copy_args(&sample.bmap, &sample.image, &refs));
    assert_ok(&output);
    for dest in &dests {
        assert_eq!(read(dest), sample.bytes, "{}", dest.display());
    }
}

#[test]
fn a_block_device_and_a_regular_file_in_one_run() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let device = LoopDevice::new(32 * MIB, 0x33);
    let file = dir.path().join("copy.img");
    let output = run(copy_args(
        &sample.bmap,
        &sample.image,
        &[&file, device.path()],
    ));
    assert_ok(&output);
    assert_eq!(read(&file), sample.bytes);
    sample.assert_held_by(device.path());
    // The fail-safe order applies to the device only.
    assert_eq!(stderr(&output).matches("fail-safe order").count(), 1);
}

#[test]
fn a_destination_failing_halfway_does_not_stop_the_others() {
    if !(need_loop_devices() && need_mount()) {
        return;
    }
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let good = LoopDevice::new(32 * MIB, 0);
    // A device larger than the image whose medium has room for two thirds of its
    // data: its size passes every check, its writes fail halfway.
    let medium = Mount::tmpfs("size=2m");
    let backing = medium.path().join("backing.img");
    File::create(&backing)
        .and_then(|f| f.set_len(32 * MIB))
        .expect("make the backing file");
    let failing = LoopOver::new(&backing);
    let output = run(copy_args(
        &sample.bmap,
        &sample.image,
        &[good.path(), &failing.path],
    ));
    let error = assert_fails(&output, &["1 of 2 destinations failed"]);
    assert!(
        error.contains(&format!("'{}'", failing.path.display())),
        "{error}"
    );
    let text = stderr(&output);
    assert!(row(&text, &failing.path).contains("FAILED"), "{text}");
    assert!(row(&text, good.path()).contains(" ok "), "{text}");
    sample.assert_held_by(good.path());
}

#[test]
fn a_stalled_destination_is_dropped_by_the_lag_rule() {
    if !(need_loop_devices() && need_mount() && need_tool("mkfs.ext4") && need_tool("fsfreeze")) {
        return;
    }
    let dir = tempdir();
    // More than a destination's queue (64 MiB) and the pipeline's buffers.
    let size = 100 * MIB;
    let image = dir.path().join("disk.img");
    write_filled(&image, size, 0x77);
    let bmap = dir.path().join("disk.img.bmap");
    assert_ok(&run([
        OsStr::new("create"),
        OsStr::new("-o"),
        bmap.as_os_str(),
        image.as_os_str(),
    ]));
    let good = LoopDevice::new(size, 0);
    let disk = LoopDevice::new(160 * MIB, 0);
    succeeds(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(disk.path()),
    );
    let mount = Mount::new(&[disk.path().as_os_str()]);
    let stalled = mount.path().join("out.img");
    let log = dir.path().join("stderr");
    let mut child = KillOnDrop(
        bmaptool()
            .args(copy_args(&bmap, Path::new("-"), &[good.path(), &stalled]))
            .env("BMAPTOOL_MAX_LAG", "5")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(File::create(&log).expect("create the log"))
            .spawn()
            .expect("run bmaptool"),
    );
    let mut stdin = child.0.stdin.take().expect("stdin");
    let bytes = read(&image);
    use std::io::Write;
    stdin
        .write_all(&bytes[..8 * MIB as usize])
        .expect("feed the start");
    // Once the file system holds some of the data, freeze it: its writes now wait.
    // The new file is unnamed (O_TMPFILE) until finished: read it through the fd.
    let pid = child.0.id();
    let first_byte = || {
        let mut byte = [0u8; 1];
        let at = procfs::open_in(pid, mount.path())?;
        File::open(at).ok()?.read_exact(&mut byte).ok()?;
        Some(byte[0])
    };
    assert!(
        eventually(Duration::from_secs(60), || first_byte() == Some(0x77)),
        "nothing reached {}",
        stalled.display()
    );
    let frozen = Frozen::new(mount.path());
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes[8 * MIB as usize..]);
    });
    let said = eventually(Duration::from_secs(120), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("destinations failed"))
    });
    drop(frozen);
    let status = wait_for(&mut child.0, Duration::from_secs(120)).expect("bmaptool ends");
    feeder.join().expect("the feeder");
    let text = std::fs::read_to_string(&log).expect("read the log");
    assert!(said, "no failure reported:\n{text}");
    assert_eq!(status.code(), Some(1), "{text}");
    let row = row(&text, &stalled);
    assert!(
        row.contains("FAILED") && row.contains("took no data"),
        "{text}"
    );
    assert_eq!(read_prefix(good.path(), size), read(&image));
}

#[test]
fn verify_written_and_skip_unchanged_work_per_destination() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let first = LoopDevice::new(32 * MIB, 0);
    let second = LoopDevice::new(32 * MIB, 0);
    let mut args = copy_args(&sample.bmap, &sample.image, &[first.path(), second.path()]);
    args.insert(1, "--verify-written".into());
    let output = run(&args);
    assert_ok(&output);
    let text = stderr(&output);
    for device in [&first, &second] {
        sample.assert_held_by(device.path());
        let row = row(&text, device.path());
        assert!(row.contains(" ranges"), "read back column empty: {row}");
    }
    assert_eq!(text.matches("read back").count(), 3, "{text}");
    // The second copy finds everything unchanged on both.
    let before = (sectors_written(&first), sectors_written(&second));
    args[1] = "--skip-unchanged".into();
    let output = run(&args);
    assert_ok(&output);
    let text = stderr(&output);
    assert_eq!(text.matches("skip-unchanged:").count(), 2, "{text}");
    for device in [&first, &second] {
        sample.assert_held_by(device.path());
    }
    // Only the fail-safe wipe and nothing else may be written: far less than the image.
    let after = (sectors_written(&first), sectors_written(&second));
    assert!(after.0 - before.0 < 4 * MIB / 512, "{before:?} {after:?}");
    assert!(after.1 - before.1 < 4 * MIB / 512, "{before:?} {after:?}");
}

#[test]
fn each_device_gets_the_gpt_backup_at_its_own_end() {
    if !(need_loop_devices() && need_tool("sgdisk")) {
        return;
    }
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    succeeds(
        Command::new("sgdisk")
            .args(["-o", "-n1:2048:+8M"])
            .arg(&sample.image),
    );
    assert_ok(&run([
        OsStr::new("create"),
        OsStr::new("-o"),
        sample.bmap.as_os_str(),
        sample.image.as_os_str(),
    ]));
    let devices = [LoopDevice::new(24 * MIB, 0), LoopDevice::new(40 * MIB, 0)];
    let output = run(copy_args(
        &sample.bmap,
        &sample.image,
        &[devices[0].path(), devices[1].path()],
    ));
    assert_ok(&output);
    let text = stderr(&output);
    assert_eq!(
        text.matches("moved the image's backup GPT").count(),
        2,
        "{text}"
    );
    for device in &devices {
        let check = succeeds(Command::new("sgdisk").arg("-v").arg(device.path()));
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(report.contains("No problems found"), "{report}");
        let size = std::fs::metadata(device.backing()).expect("backing").len();
        let last = read_prefix(device.path(), size);
        assert_eq!(&last[(size - 512) as usize..][..8], b"EFI PART");
        let output = run([
            OsStr::new("verify"),
            OsStr::new("--bmap"),
            sample.bmap.as_os_str(),
            device.path().as_os_str(),
        ]);
        assert_ok(&output);
    }
}

#[test]
fn a_bad_max_lag_is_refused_before_anything_is_read() {
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let dests = [dir.path().join("a"), dir.path().join("b")];
    for bad in ["abc", "0", "-3"] {
        let output = bmaptool()
            .args(copy_args(
                &sample.bmap,
                &sample.image,
                &[&dests[0], &dests[1]],
            ))
            .env("BMAPTOOL_MAX_LAG", bad)
            .output()
            .expect("run bmaptool");
        assert_fails(&output, &[&format!("BMAPTOOL_MAX_LAG={bad}"), "seconds"]);
        assert!(!stderr(&output).contains("info:"), "{}", stderr(&output));
        assert!(!dests[0].exists() && !dests[1].exists());
    }
}

#[test]
fn seek_applies_to_every_destination() {
    let dir = tempdir();
    let sample = Sample::small(dir.path());
    let dests = [dir.path().join("a"), dir.path().join("b")];
    for dest in &dests {
        write_filled(dest, 20 * MIB, 0xee);
    }
    let mut args = copy_args(&sample.bmap, &sample.image, &[&dests[0], &dests[1]]);
    args.splice(1..1, ["--seek".into(), "2MiB".into()]);
    let output = run(&args);
    assert_ok(&output);
    for dest in &dests {
        let bytes = read(dest);
        assert!(bytes[..2 * MIB as usize].iter().all(|&b| b == 0xee));
        let facts = BmapFacts::read(&sample.bmap);
        for (start, end) in facts.pages() {
            let (s, e) = (start as usize, end as usize);
            let at = 2 * MIB as usize;
            assert!(
                bytes[at + s..at + e] == sample.bytes[s..e],
                "{}",
                dest.display()
            );
        }
    }
}
