//! Black-box tests of `bmaptool copy` around devices and the files it must not
//! destroy: a block device read as the image (checking a flashed card against its
//! bmap), permission denied as a non-root user, a file system without room, DEST that
//! is one of the inputs under another name, and loop devices that read from DEST.
//!
//! Tests that need root, loop devices, mounts or setpriv skip when those are missing,
//! unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use copy_support::*;

/// `copy --bmap BMAP IMAGE DEST`.
fn with_bmap(bmap: &Path, image: impl AsRef<OsStr>, dest: impl AsRef<OsStr>) -> Vec<OsString> {
    test_support::with_bmap(bmap, image, dest)
}

/// A sparse image of 3 MiB and 5000 bytes (a partial last block) with data in four
/// places, and its bmap made by `bmaptool create`.
struct Sample {
    image: PathBuf,
    bmap: PathBuf,
    bytes: Vec<u8>,
}

impl Sample {
    const SIZE: u64 = 3 * MIB + 5000;
    /// Offset of a byte in the second mapped range (blocks 256-271).
    const IN_SECOND_RANGE: u64 = MIB + 10_000;

    fn new(dir: &Path) -> Sample {
        let (image, bmap) = sparse_image_with_bmap(
            dir,
            Sample::SIZE,
            &[
                (1, 0, 20_000),
                (2, MIB, 64 * 1024),
                (3, 2 * MIB + 4096, 4096),
                (4, 3 * MIB, 5000),
            ],
        );
        let facts = BmapFacts::read(&bmap);
        assert_eq!(facts.ranges.len(), 4, "ranges: {:?}", facts.ranges);
        assert_eq!(facts.ranges[1], (256, 271));
        Sample {
            bytes: read(&image),
            image,
            bmap,
        }
    }

    /// Bytes the bmap maps (the partial last block counted as it is).
    fn mapped_bytes(&self) -> u64 {
        let facts = BmapFacts::read(&self.bmap);
        facts
            .ranges
            .iter()
            .map(|&(a, b)| {
                ((b + 1) * facts.block_size).min(facts.image_size) - a * facts.block_size
            })
            .sum()
    }
}

/// Makes `dir` and the files in it readable by every user (for runs as `nobody`).
fn open_to_all(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    for entry in fs::read_dir(dir).expect("list").flatten() {
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    }
}

// ---------------------------------------------------------------------------------
// 1. A block device as the image

/// A loop device larger than the image, flashed with it: its unmapped blocks keep the
/// device's old 0xAA bytes, which no range covers.
fn flashed_device(sample: &Sample) -> LoopDevice {
    let device = LoopDevice::new(8 * MIB, 0xAA);
    let output = run(with_bmap(&sample.bmap, &sample.image, device.path()));
    assert_ok(&output);
    device
}

#[test]
fn loop_device_larger_than_the_image_verifies_against_its_bmap_to_dev_null() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = flashed_device(&sample);
    let before = read(device.backing());
    assert!(
        before[..sample.bytes.len()] != sample.bytes[..],
        "the holes hold 0xAA"
    );
    let output = run(with_bmap(&sample.bmap, device.path(), "/dev/null"));
    assert_ok(&output);
    let text = stderr(&output);
    assert!(text.contains("4 of 4 ranges verified"), "{text}");
    assert!(
        text.contains(&format!("reading the first {} bytes", Sample::SIZE)),
        "{text}"
    );
    // Only the mapped blocks were read and compared (the holes hold 0xAA, not the
    // image's zeros), and nothing was written to the device.
    assert!(read(device.backing()) == before, "the device was written");
}

#[test]
fn corrupted_range_on_the_device_fails_naming_the_range() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = flashed_device(&sample);
    // Through the device itself, so that its page cache sees the change.
    flip_byte(device.path(), Sample::IN_SECOND_RANGE);
    let output = run(with_bmap(&sample.bmap, device.path(), "/dev/null"));
    assert_fails(&output, &["checksum mismatch for blocks range 256-271"]);
}

#[test]
fn block_device_smaller_than_the_image_is_refused_up_front() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = LoopDevice::new(2 * MIB, 0xAA);
    let dest = dir.path().join("out.img");
    let output = run(with_bmap(&sample.bmap, device.path(), &dest));
    assert_fails(
        &output,
        &[
            "smaller than the image",
            &device.path().to_string_lossy(),
            &(2 * MIB).to_string(),
            &Sample::SIZE.to_string(),
        ],
    );
    assert!(!dest.exists(), "DEST was created");
}

#[test]
fn regular_file_larger_than_its_bmap_says_is_still_refused() {
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let longer = dir.path().join("longer.img");
    fs::copy(&sample.image, &longer).expect("copy");
    File::options()
        .append(true)
        .open(&longer)
        .and_then(|f| f.set_len(Sample::SIZE + 4096))
        .expect("grow");
    let dest = dir.path().join("out.img");
    let output = run(with_bmap(&sample.bmap, &longer, &dest));
    assert_fails(&output, &["does not belong to this image"]);
    assert!(!dest.exists());
}

// ---------------------------------------------------------------------------------
// 2. Messages that save time: permission denied, no room

/// A device node's owner, group and mode, put back on drop.
struct NodeMode {
    path: PathBuf,
    uid: u32,
    gid: u32,
    mode: u32,
}

impl NodeMode {
    fn save(path: &Path) -> NodeMode {
        let meta = fs::metadata(path).expect("stat the node");
        NodeMode {
            path: path.to_owned(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

impl Drop for NodeMode {
    fn drop(&mut self) {
        let _ = std::os::unix::fs::chown(&self.path, Some(self.uid), Some(self.gid));
        let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(self.mode));
    }
}

/// `bmaptool ARGS...` as user `nobody` (no supplementary groups).
fn run_as_nobody(args: &[OsString]) -> Output {
    clean_command("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_bmaptool"))
        .args(args)
        .output()
        .expect("setpriv runs")
}

#[test]
fn permission_denied_on_a_loop_device_says_to_run_as_root_or_join_its_group() {
    if !need_loop_devices()
        || !require(runs("setpriv", &["--version"]), "setpriv (util-linux)")
        || !require(runs("getent", &["group", "disk"]), "a 'disk' group")
    {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    open_to_all(dir.path());
    let device = LoopDevice::new(4 * MIB, 0xAA);
    let dev = device.path().to_string_lossy().into_owned();
    let _restore = NodeMode::save(device.path());
    // Only the owner (root) may open the node.
    std::os::unix::fs::chown(device.path(), Some(0), Some(0)).expect("chown");
    fs::set_permissions(device.path(), fs::Permissions::from_mode(0o600)).expect("chmod");
    let output = run_as_nobody(&with_bmap(&sample.bmap, &sample.image, device.path()));
    let line = assert_fails(
        &output,
        &["permission denied", &dev, "as root", "group 'root'"],
    );
    assert!(!line.contains("add your user"), "{line}");
    // The group 'disk' may write: joining it is the other way in.
    assert!(runs("chgrp", &["disk", &dev]), "chgrp disk {dev} failed");
    fs::set_permissions(device.path(), fs::Permissions::from_mode(0o660)).expect("chmod");
    let output = run_as_nobody(&with_bmap(&sample.bmap, &sample.image, device.path()));
    assert_fails(
        &output,
        &[
            "permission denied",
            &dev,
            "as root",
            "add your user to the group 'disk'",
        ],
    );
    // Read as the image, the same advice.
    let output = run_as_nobody(&with_bmap(&sample.bmap, device.path(), "/dev/null"));
    assert_fails(
        &output,
        &["permission denied reading block device", &dev, "'disk'"],
    );
    assert!(
        read(device.backing()).iter().all(|&b| b == 0xAA),
        "the device was written"
    );
}

/// Free bytes for root on the file system holding `path` (`stat -f`: free blocks
/// times the fundamental block size).
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%f %S"])
        .arg(path)
        .output()
        .expect("stat runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("number"));
    numbers.next().expect("free blocks") * numbers.next().expect("block size")
}

#[test]
fn file_system_without_room_is_refused_before_writing_with_both_numbers() {
    if !need_mount() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let needed = sample.mapped_bytes();
    let tmpfs = Mount::tmpfs("size=64k");
    let available = free_bytes(tmpfs.path());
    assert!(available < needed, "{available} free, {needed} needed");
    let dest = tmpfs.path().join("out.img");
    let output = run(with_bmap(&sample.bmap, &sample.image, &dest));
    assert_fails(
        &output,
        &[
            "not enough free space",
            &needed.to_string(),
            &available.to_string(),
        ],
    );
    assert!(!dest.exists(), "DEST was created");
    // An existing file keeps its bytes; what truncating it would free is counted.
    let existing = tmpfs.path().join("existing.img");
    write_filled(&existing, 16 * 1024, 0xFF);
    let free_now = free_bytes(tmpfs.path());
    let line = assert_fails(
        &run(with_bmap(&sample.bmap, &sample.image, &existing)),
        &["not enough free space", &needed.to_string()],
    );
    assert!(
        line.contains(&(free_now + 16 * 1024).to_string()),
        "the old file's blocks are not counted: {line}"
    );
    assert_eq!(
        read(&existing),
        vec![0xFF; 16 * 1024],
        "the existing file changed"
    );
}

#[test]
fn blocks_freed_by_truncating_the_old_file_are_counted_as_room() {
    if !need_mount() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let needed = sample.mapped_bytes();
    // Room for the mapped bytes only once the old file is truncated.
    let tmpfs = Mount::tmpfs(&format!("size={}k", needed.div_ceil(1024) + 32));
    let existing = tmpfs.path().join("existing.img");
    write_filled(&existing, needed, 0xFF);
    assert!(free_bytes(tmpfs.path()) < needed);
    let output = run(with_bmap(&sample.bmap, &sample.image, &existing));
    assert_ok(&output);
    assert!(
        read(&existing) == sample.bytes,
        "the copy differs from the image"
    );
}

// ---------------------------------------------------------------------------------
// 3. DEST that is an input under another name

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[test]
fn image_survives_a_copy_onto_itself_through_file_url_stdin_symlink_and_hard_link() {
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let symlink = dir.path().join("link.img");
    std::os::unix::fs::symlink(&sample.image, &symlink).expect("symlink");
    let hard = dir.path().join("hard.img");
    fs::hard_link(&sample.image, &hard).expect("hard link");
    let image_url = file_url(&sample.image);
    let cases: Vec<(&str, Output)> = vec![
        (
            "file:// URL",
            run(with_bmap(&sample.bmap, &image_url, &sample.image)),
        ),
        (
            "file:// URL without a bmap",
            run([
                OsStr::new("copy"),
                OsStr::new("--nobmap"),
                OsStr::new(&image_url),
                sample.image.as_os_str(),
            ]),
        ),
        (
            "stdin redirected from DEST",
            run_stdin_file(with_bmap(&sample.bmap, "-", &sample.image), &sample.image),
        ),
        (
            "a symlink",
            run(with_bmap(&sample.bmap, &sample.image, &symlink)),
        ),
        (
            "a hard link",
            run(with_bmap(&sample.bmap, &sample.image, &hard)),
        ),
        (
            "stdin and a hard link",
            run_stdin_file(with_bmap(&sample.bmap, "-", &hard), &sample.image),
        ),
    ];
    for (how, output) in cases {
        let line = assert_fails(&output, &["is the image itself"]);
        assert!(line.contains("destroy"), "{how}: {line}");
        assert!(
            read(&sample.image) == sample.bytes,
            "{how}: the image was changed"
        );
    }
}

#[test]
fn bmap_and_its_signature_survive_a_copy_onto_themselves() {
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let bmap_bytes = read(&sample.bmap);
    let link = dir.path().join("link.bmap");
    std::os::unix::fs::symlink(&sample.bmap, &link).expect("symlink");
    let hard = dir.path().join("hard.bmap");
    fs::hard_link(&sample.bmap, &hard).expect("hard link");
    let bmap_url = file_url(&sample.bmap);
    let image = sample.image.to_string_lossy().into_owned();
    let cases: Vec<(&str, Output)> = vec![
        (
            "--bmap file:// URL",
            run([
                OsStr::new("copy"),
                OsStr::new("--bmap"),
                OsStr::new(&bmap_url),
                OsStr::new(&image),
                sample.bmap.as_os_str(),
            ]),
        ),
        (
            "discovered beside a file:// image",
            run([
                OsStr::new("copy"),
                OsStr::new(&file_url(&sample.image)),
                sample.bmap.as_os_str(),
            ]),
        ),
        ("a symlink", run(with_bmap(&sample.bmap, &image, &link))),
        ("a hard link", run(with_bmap(&sample.bmap, &image, &hard))),
    ];
    for (how, output) in cases {
        assert_fails(&output, &["is the bmap file itself"]);
        assert_eq!(
            read(&sample.bmap),
            bmap_bytes,
            "{how}: the bmap was changed"
        );
    }
    // A detached signature beside the bmap, and one named with --bmap-sig.
    let beside = dir.path().join("disk.img.bmap.asc");
    fs::write(&beside, b"not checked before the refusal").expect("write");
    let other = dir.path().join("other.sig");
    fs::write(&other, b"not checked before the refusal").expect("write");
    let mut given = with_bmap(&sample.bmap, &image, &other);
    given.splice(1..1, ["--bmap-sig".into(), other.clone().into_os_string()]);
    for (sig, output) in [
        (&beside, run(with_bmap(&sample.bmap, &image, &beside))),
        (&other, run(&given)),
    ] {
        assert_fails(&output, &["signature file itself"]);
        assert_eq!(read(sig), b"not checked before the refusal");
    }
}

/// Only regular files and block devices hold bytes a copy could destroy.
#[test]
fn dev_null_as_both_the_image_and_dest_is_not_refused() {
    let output = run_stdin_file(
        ["copy", "--nobmap", "-", "/dev/null"],
        Path::new("/dev/null"),
    );
    assert_ok(&output);
}

#[test]
fn block_device_reached_through_another_node_is_refused_as_the_image() {
    if !need_loop_devices() || !require(runs("mknod", &["--version"]), "mknod") {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = flashed_device(&sample);
    let numbers = device.sysfs("dev");
    let (major, minor) = numbers.split_once(':').expect("MAJ:MIN");
    let alias = dir.path().join("alias");
    let made = Command::new("mknod")
        .arg(&alias)
        .args(["b", major, minor])
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mknod failed");
    let before = read(device.backing());
    let output = run(with_bmap(&sample.bmap, device.path(), &alias));
    assert_fails(&output, &["is the image itself"]);
    assert!(read(device.backing()) == before, "the device was written");
}

// ---------------------------------------------------------------------------------
// 4. Loop devices that read from DEST

/// A loop device over an existing file or device (`losetup -f --show [-P] PATH`),
/// detached on drop.
struct Attached {
    path: PathBuf,
}

impl Attached {
    fn new(backing: &Path, partitions: bool) -> Attached {
        let mut cmd = Command::new("losetup");
        cmd.args(["-f", "--show"]);
        if partitions {
            cmd.arg("-P");
        }
        let out = cmd.arg(backing).output().expect("losetup runs");
        assert!(
            out.status.success(),
            "losetup {}: {}",
            backing.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Attached {
            path: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        }
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .expect("device name")
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let path = self.path.to_string_lossy().into_owned();
        if !eventually(Duration::from_secs(30), || runs("losetup", &["-d", &path])) {
            eprintln!("warning: cannot detach {path}");
        }
        // While another process (udev probing it) has the device open, `losetup -d`
        // only marks it for detaching at the last close: wait until its backing file
        // is gone, or the next test still sees it reading from its old backing.
        let backing = PathBuf::from("/sys/block")
            .join(self.name())
            .join("loop/backing_file");
        if !eventually(HANG, || !backing.exists()) {
            eprintln!("warning: {path} still has a backing file");
        }
    }
}

/// A 16 MiB backing file attached with partitions allowed, and one partition from
/// 1 MiB to the end added with `addpart` (BLKPG: no partition-table parser needed):
/// `(device, its first partition)`.
fn partitioned(dir: &Path) -> Option<(Attached, PathBuf)> {
    if !require(runs("addpart", &["--version"]), "addpart (util-linux)") {
        return None;
    }
    let backing = dir.join("disk.raw");
    write_filled(&backing, 16 * MIB, 0xAA);
    let disk = Attached::new(&backing, true);
    let part = PathBuf::from(format!("{}p1", disk.path.display()));
    let dev = disk.path.to_string_lossy().into_owned();
    assert!(
        runs("addpart", &[&dev, "1", "2048", "30720"]),
        "addpart {dev} failed"
    );
    assert!(
        eventually(HANG, || part.exists()),
        "{} never appeared",
        part.display()
    );
    Some((disk, part))
}

#[test]
fn loop_device_backed_by_dest_or_one_of_its_partitions_is_refused_naming_it() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let Some((disk, part)) = partitioned(dir.path()) else {
        return;
    };
    let before = read(&dir.path().join("disk.raw"));
    {
        let reader = Attached::new(&part, false);
        for dest in [&disk.path, &part] {
            let output = run(with_bmap(&sample.bmap, &sample.image, dest));
            assert_fails(
                &output,
                &["in use", &format!("/dev/{}", reader.name()), "losetup -d"],
            );
        }
    }
    {
        let reader = Attached::new(&disk.path, false);
        let output = run(with_bmap(&sample.bmap, &sample.image, &disk.path));
        assert_fails(&output, &["in use", &format!("/dev/{}", reader.name())]);
    }
    assert!(
        read(&dir.path().join("disk.raw")) == before,
        "the device under a loop device was written"
    );
}

#[test]
fn regular_file_backing_a_loop_device_is_refused_naming_it() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = LoopDevice::new(4 * MIB, 0xAA);
    let output = run(with_bmap(&sample.bmap, &sample.image, device.backing()));
    assert_fails(
        &output,
        &[
            "backing file of loop device",
            &device.path().to_string_lossy(),
        ],
    );
    assert!(
        read(device.backing()).iter().all(|&b| b == 0xAA),
        "the backing file was written"
    );
    assert_eq!(fs::metadata(device.backing()).expect("stat").len(), 4 * MIB);
}
