//! Black-box tests of `bmaptool copy`: the real binary on the test data (made at test
//! time: an image laid out like the reference's `test.image` with bmaps of every format
//! version, and the golden images), to new and existing files, from standard input, and to real loop
//! devices; refusals on mounted, busy and small devices; corrupt, truncated and too
//! long images, a full file system; SIGTERM and SIGINT in the middle of a copy; the
//! psplash pipe; interoperability with the reference tool; messages; and, as extra
//! conformance checks, the reference's own test data from `../shared/conformance`.
//!
//! Tests that need root, loop devices, mounts, python3, the reference tool or
//! `../shared/conformance` skip when those are missing, unless `BMAPTOOL_TEST_STRICT=1`
//! (CI), where they fail.

mod copy_support;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use copy_support::*;

/// `copy --bmap BMAP IMAGE DEST`.
fn with_bmap(bmap: &Path, image: impl AsRef<OsStr>, dest: &Path) -> Vec<OsString> {
    test_support::with_bmap(bmap, image, dest)
}

/// `copy [EXTRA...] IMAGE DEST`.
fn copy_args(extra: &[&str], image: impl AsRef<OsStr>, dest: &Path) -> Vec<OsString> {
    test_support::copy_args(extra, image, dest)
}

/// Offset of a byte inside block 3 of `test.image` (range 3-5 in every bmap version).
const IN_RANGE_3_5: u64 = 3 * 4096 + 100;
/// Offset of a byte inside block 198 (the last range, 198-199).
const IN_RANGE_198_199: u64 = 198 * 4096 + 7;

/// A copy of `test.image` with the byte at `offset` flipped.
fn corrupt_test_image(dir: &Path, offset: u64) -> (PathBuf, Vec<u8>) {
    let (image, _) = test_image(dir);
    let bad = dir.join("bad.image");
    fs::rename(&image, &bad).expect("rename");
    flip_byte(&bad, offset);
    let bytes = read(&bad);
    (bad, bytes)
}

/// Asserts that a destination file is gone, or empty: no partial image left.
#[track_caller]
fn assert_no_partial_image(dest: &Path) {
    if let Ok(meta) = fs::metadata(dest) {
        assert_eq!(
            meta.len(),
            0,
            "{} holds {} bytes of a failed copy",
            dest.display(),
            meta.len()
        );
    }
}

// ---------------------------------------------------------------------------------
// 1. The test image, every bmap version

#[test]
fn test_image_with_each_bmap_version_to_a_new_sparse_file() {
    if !need_python() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    for version in VERSIONS {
        let bmap = test_bmap(version);
        let dest = dir.path().join(format!("out-{version}.img"));
        let output = run(with_bmap(&bmap, &image, &dest));
        assert_ok(&output);
        assert!(
            stderr(&output).contains(&format!("block map format version {version}")),
            "{}",
            stderr(&output)
        );
        assert_eq!(
            read(&dest),
            bytes,
            "v{version}: copy differs from the image"
        );
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}

#[test]
fn test_image_to_tmpfs_allocates_exactly_the_mapped_468_kib() {
    if !need_mount() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let tmpfs = Mount::tmpfs("size=16m");
    for version in VERSIONS {
        let dest = tmpfs.path().join(format!("out-{version}.img"));
        assert_ok(&run(with_bmap(&test_bmap(version), &image, &dest)));
        assert_eq!(read(&dest), bytes, "v{version}");
        assert_eq!(
            allocated(&dest),
            468 * 1024,
            "v{version}: stat -c %b * 512 must be the 117 mapped blocks"
        );
    }
}

#[test]
fn test_image_from_stdin_through_a_pipe_with_each_bmap_version() {
    if !need_python() {
        return;
    }
    let dir = tempdir();
    let (_, bytes) = test_image(dir.path());
    for version in VERSIONS {
        let bmap = test_bmap(version);
        let dest = dir.path().join(format!("piped-{version}.img"));
        let output = run_stdin_pipe(with_bmap(&bmap, "-", &dest), bytes.clone());
        assert_ok(&output);
        assert_eq!(read(&dest), bytes, "v{version}: copy from a pipe differs");
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}

#[test]
fn test_image_from_stdin_redirected_from_the_file_with_each_bmap_version() {
    if !need_python() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    for version in VERSIONS {
        let bmap = test_bmap(version);
        let dest = dir.path().join(format!("redirected-{version}.img"));
        let output = run_stdin_file(with_bmap(&bmap, "-", &dest), &image);
        assert_ok(&output);
        assert_eq!(read(&dest), bytes, "v{version}: copy from < file differs");
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}

#[test]
fn stdin_redirected_from_a_file_is_read_at_offsets_like_the_path_and_a_pipe_is_read_through() {
    let dir = tempdir();
    let (image, mut bytes) = test_image(dir.path());
    // Data where the bmap has a hole (block 200, in the trailing hole): a copy that reads
    // at offsets never sees it; a copy that reads the image through checks every hole.
    let in_hole = 200 * 4096 + 10;
    flip_byte(&image, in_hole);
    let bmap = test_bmap("2.0");
    for (how, output) in [
        (
            "path",
            run(with_bmap(&bmap, &image, &dir.path().join("path.img"))),
        ),
        (
            "stdin",
            run_stdin_file(with_bmap(&bmap, "-", &dir.path().join("stdin.img")), &image),
        ),
    ] {
        assert_ok(&output);
        // The hole stays a hole: the destination holds the image with zeros there.
        bytes[in_hole as usize] = 0;
        assert_eq!(read(&dir.path().join(format!("{how}.img"))), bytes, "{how}");
    }
    let piped = dir.path().join("piped.img");
    let output = run_stdin_pipe(with_bmap(&bmap, "-", &piped), read(&image));
    assert_fails(
        &output,
        &["block 200 ", "is a hole in the bmap but holds data"],
    );
    assert_no_partial_image(&piped);
}

#[test]
fn test_image_over_a_larger_existing_file_leaves_no_old_bytes() {
    if !need_python() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    for version in VERSIONS {
        let bmap = test_bmap(version);
        let dest = dir.path().join(format!("existing-{version}.img"));
        write_filled(&dest, 2 * MIB, 0xFF);
        assert_ok(&run(with_bmap(&bmap, &image, &dest)));
        let got = read(&dest);
        assert_eq!(got.len() as u64, TEST_IMAGE_SIZE, "v{version}: size");
        // Equal bytes: in particular the holes read as zeros, not as the old 0xFF.
        assert!(got == bytes, "v{version}: copy differs from the image");
        // The old blocks are gone: the file is as sparse as a new copy.
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}

#[test]
fn test_image_to_a_loop_device_with_each_bmap_version_and_from_stdin() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let size = 2 * MIB;
    let check = |device: &LoopDevice, output: &Output, what: &str| {
        assert_ok(output);
        assert!(
            stderr(output).contains(&format!("block device '{}'", device.path().display())),
            "{what}: {}",
            stderr(output)
        );
        // Read the backing file: only what was flushed through the device is there.
        let medium = read(device.backing());
        assert_eq!(medium.len() as u64, size);
        assert!(
            medium[..bytes.len()] == bytes[..],
            "{what}: the first {TEST_IMAGE_SIZE} bytes of the device are not the image"
        );
        assert!(
            medium[bytes.len()..].iter().all(|&b| b == 0),
            "{what}: bytes past the image were written"
        );
    };
    for version in VERSIONS {
        let device = LoopDevice::new(size, 0);
        let ratio = device.sysfs("bdi/max_ratio");
        let output = run(with_bmap(&test_bmap(version), &image, device.path()));
        check(&device, &output, &format!("v{version}"));
        assert_eq!(device.sysfs("bdi/max_ratio"), ratio, "max_ratio restored");
    }
    let device = LoopDevice::new(size, 0);
    let output = run_stdin_pipe(
        with_bmap(&test_bmap("2.0"), "-", device.path()),
        bytes.clone(),
    );
    check(&device, &output, "v2.0 from a pipe");
}

// ---------------------------------------------------------------------------------
// 2. Golden images, bmap discovery, --nobmap

/// A directory holding the six golden images, or `None` (skipped).
fn golden_dir() -> Option<tempfile::TempDir> {
    if !need_python() {
        return None;
    }
    let dir = tempdir();
    golden_images(dir.path());
    Some(dir)
}

#[test]
fn golden_images_copy_exactly_with_their_bmaps() {
    let Some(dir) = golden_dir() else { return };
    for name in GOLDEN_IMAGES {
        let image = dir.path().join(name);
        let bmap = golden_fixture_bmap(name);
        let dest = dir.path().join(format!("{name}.out"));
        assert_ok(&run(with_bmap(&bmap, &image, &dest)));
        assert!(read(&dest) == read(&image), "{name}: copy differs");
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}

#[test]
fn golden_images_copy_exactly_with_the_discovered_image_dot_bmap() {
    let Some(dir) = golden_dir() else { return };
    for name in GOLDEN_IMAGES {
        let image = dir.path().join(name);
        let bmap = dir.path().join(format!("{name}.bmap"));
        fs::copy(golden_fixture_bmap(name), &bmap).expect("copy the bmap beside its image");
        let dest = dir.path().join(format!("{name}.out"));
        let output = run(copy_args(&[], &image, &dest));
        assert_ok(&output);
        assert!(
            stderr(&output).contains(&format!("discovered bmap file '{}'", bmap.display())),
            "{name}: the discovered bmap is not named:\n{}",
            stderr(&output)
        );
        assert!(read(&dest) == read(&image), "{name}: copy differs");
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}

#[test]
fn discovery_strips_one_extension_at_a_time() {
    let dir = tempdir();
    let (test, bytes) = test_image(dir.path());
    let image = dir.path().join("x.img.raw");
    fs::rename(&test, &image).expect("rename");
    // Only x.img.bmap: found after stripping ".raw".
    let bmap = dir.path().join("x.img.bmap");
    fs::copy(test_bmap("2.0"), &bmap).expect("copy bmap");
    let dest = dir.path().join("out1");
    let output = run(copy_args(&[], &image, &dest));
    assert_ok(&output);
    assert!(
        stderr(&output).contains(&format!("discovered bmap file '{}'", bmap.display())),
        "{}",
        stderr(&output)
    );
    assert_eq!(read(&dest), bytes);
    // Only x.bmap: found after stripping ".raw" and ".img".
    let short = dir.path().join("x.bmap");
    fs::rename(&bmap, &short).expect("rename bmap");
    let dest = dir.path().join("out2");
    let output = run(copy_args(&[], &image, &dest));
    assert_ok(&output);
    assert!(
        stderr(&output).contains(&format!("discovered bmap file '{}'", short.display())),
        "{}",
        stderr(&output)
    );
    assert_eq!(read(&dest), bytes);
}

#[test]
fn discovery_tries_image_dot_bmap_first_then_shorter_names() {
    let dir = tempdir();
    let (test, bytes) = test_image(dir.path());
    let image = dir.path().join("x.img.raw");
    fs::rename(&test, &image).expect("rename");
    let full = dir.path().join("x.img.raw.bmap");
    let shorter = dir.path().join("x.img.bmap");
    fs::copy(test_bmap("2.0"), &full).expect("copy bmap");
    fs::write(&shorter, "not a bmap").expect("write decoy");
    fs::write(dir.path().join("x.bmap"), "not a bmap either").expect("write decoy");

    let dest = dir.path().join("out");
    let output = run(copy_args(&[], &image, &dest));
    assert_ok(&output);
    assert!(
        stderr(&output).contains(&format!("discovered bmap file '{}'", full.display())),
        "{}",
        stderr(&output)
    );
    assert_eq!(read(&dest), bytes);

    // Without IMAGE.bmap the next candidate, x.img.bmap, is the one used (and refused).
    fs::remove_file(&full).expect("remove");
    let dest = dir.path().join("out2");
    let output = run(copy_args(&[], &image, &dest));
    assert_fails(&output, &["x.img.bmap"]);
    assert!(!dest.exists(), "DEST created for a bad bmap");
}

#[test]
fn no_bmap_found_is_an_error_that_suggests_nobmap_and_creates_nothing() {
    let dir = tempdir();
    let (test, _) = test_image(dir.path());
    let image = dir.path().join("x.img.raw");
    fs::rename(&test, &image).expect("rename");
    let dest = dir.path().join("out.img");
    assert_fails(&run(copy_args(&[], &image, &dest)), &["--nobmap"]);
    assert!(
        !dest.exists(),
        "DEST was created although no bmap was found"
    );
}

#[test]
fn stdin_image_never_discovers_a_bmap() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    // A bmap named as discovery would name it for "-": it must not be used.
    fs::copy(test_bmap("2.0"), dir.path().join("-.bmap")).expect("copy bmap");
    let output = bmaptool()
        .current_dir(dir.path())
        .args(["copy", "-", "out.img"])
        .stdin(File::open(&image).expect("open image"))
        .output()
        .expect("bmaptool runs");
    assert_fails(&output, &["--nobmap"]);
    assert!(!dir.path().join("out.img").exists());
}

#[test]
fn nobmap_copies_the_whole_image() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let dest = dir.path().join("whole.img");
    let output = run(copy_args(&["--nobmap"], &image, &dest));
    assert_ok(&output);
    assert!(
        stderr(&output).contains("no bmap given"),
        "{}",
        stderr(&output)
    );
    assert_eq!(read(&dest), bytes);
    // Every block was written, holes included: 201 blocks.
    assert!(
        allocated(&dest) >= 201 * 4096,
        "only {} bytes allocated: not the whole image",
        allocated(&dest)
    );
    // Also from a pipe, where the size is unknown.
    let dest = dir.path().join("whole-piped.img");
    assert_ok(&run_stdin_pipe(
        copy_args(&["--nobmap"], "-", &dest),
        bytes.clone(),
    ));
    assert_eq!(read(&dest), bytes);
}

#[test]
fn nobmap_with_bmap_is_refused() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let dest = dir.path().join("out.img");
    let mut args = with_bmap(&test_bmap("2.0"), &image, &dest);
    args.insert(1, "--nobmap".into());
    assert_fails(&run(args), &["cannot be used together"]);
    assert!(!dest.exists());
}

// ---------------------------------------------------------------------------------
// 3. Refusals

#[test]
fn mounted_loop_device_is_refused_naming_the_mount_point() {
    if !need_loop_devices() || !need_mount() || !require(runs("mkfs.ext4", &["-V"]), "mkfs.ext4") {
        return;
    }
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let device = LoopDevice::new(8 * MIB, 0);
    let dev = device.path().to_string_lossy().into_owned();
    let mkfs = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            &dev,
        ])
        .output()
        .expect("mkfs.ext4 runs");
    assert!(mkfs.status.success(), "mkfs.ext4 failed");
    // Read-only (and no journal replay): the mount itself writes nothing, so any change
    // to the device would be the tool's.
    let mount = Mount::new(&[
        OsStr::new("-o"),
        OsStr::new("ro,noload"),
        device.path().as_os_str(),
    ]);
    let before = sha256(device.path());
    let output = run(with_bmap(&test_bmap("2.0"), &image, device.path()));
    assert_fails(&output, &["mounted", &mount.path().to_string_lossy()]);
    assert_eq!(
        sha256(device.path()),
        before,
        "the mounted device was changed"
    );
}

#[test]
fn loop_device_held_open_exclusively_is_refused() {
    if !need_loop_devices() || !need_python() {
        return;
    }
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let device = LoopDevice::new(2 * MIB, 0xAA);
    let mut holder = KillOnDrop(
        Command::new("python3")
            .args([
                "-c",
                "import os, sys\n\
                 fd = os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL)\n\
                 print('ready', flush=True)\n\
                 sys.stdin.read()",
            ])
            .arg(device.path())
            // Holds the device until the test closes its stdin (or kills it), however
            // long the test takes.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts"),
    );
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the holder's line");
    assert_eq!(line.trim(), "ready", "the holder did not open the device");

    let output = run(with_bmap(&test_bmap("2.0"), &image, device.path()));
    assert_fails(&output, &["in use"]);
    drop(holder);
    assert!(
        read_prefix(device.path(), 2 * MIB)
            .iter()
            .all(|&b| b == 0xAA),
        "the busy device was written"
    );
}

#[test]
fn too_small_loop_device_is_refused_before_anything_is_written() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let device = LoopDevice::new(512 * 1024, 0xAA);
    let dev = device.path().to_string_lossy().into_owned();
    let output = run(with_bmap(&test_bmap("2.0"), &image, device.path()));
    assert_fails(&output, &["fit", &dev]);
    // From a pipe the size comes from the bmap: refused just the same.
    let output = run_stdin_pipe(with_bmap(&test_bmap("1.3"), "-", device.path()), bytes);
    assert_fails(&output, &["fit", &dev]);
    assert!(
        read_prefix(device.path(), 512 * 1024)
            .iter()
            .all(|&b| b == 0xAA),
        "the too small device was written"
    );
    assert!(read(device.backing()).iter().all(|&b| b == 0xAA));
}

#[test]
fn removable_device_option_refuses_a_loop_device() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let device = LoopDevice::new(2 * MIB, 0xAA);
    let mut args = with_bmap(&test_bmap("2.0"), &image, device.path());
    args.insert(1, "--removable-device".into());
    let line = assert_fails(
        &run(args),
        &["not a removable", &device.path().to_string_lossy()],
    );
    assert!(line.contains("removable"), "{line}");
    assert!(read(device.backing()).iter().all(|&b| b == 0xAA));
}

#[test]
fn removable_device_option_refuses_a_regular_file() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    // An existing regular file: refused and left alone.
    let existing = dir.path().join("existing.img");
    fs::write(&existing, b"keep me").expect("write");
    let mut args = with_bmap(&test_bmap("2.0"), &image, &existing);
    args.insert(1, "--removable-device".into());
    assert_fails(&run(args), &["not a block device"]);
    assert_eq!(read(&existing), b"keep me");
    // A missing path: refused and not created.
    let missing = dir.path().join("missing.img");
    let mut args = with_bmap(&test_bmap("2.0"), &image, &missing);
    args.insert(1, "--removable-device".into());
    assert_fails(&run(args), &["removable"]);
    assert!(!missing.exists());
}

#[test]
fn missing_path_under_dev_is_refused_and_not_created() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let dest = PathBuf::from(format!(
        "/dev/bmaptool-test-nonexistent-{}",
        std::process::id()
    ));
    let output = run(with_bmap(&test_bmap("2.0"), &image, &dest));
    assert_fails(&output, &[&dest.to_string_lossy()]);
    assert!(!dest.exists(), "a regular file was created under /dev");
}

#[test]
fn dest_that_is_the_image_or_the_bmap_is_refused() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let bmap = dir.path().join("test.image.bmap");
    fs::copy(test_bmap("2.0"), &bmap).expect("copy bmap");
    let bmap_bytes = read(&bmap);
    let image_link = dir.path().join("image-link");
    fs::hard_link(&image, &image_link).expect("hard link");
    let dotted = dir.path().join(".").join("test.image");
    for dest in [&image, &image_link, &dotted] {
        assert_fails(&run(with_bmap(&bmap, &image, dest)), &["image"]);
        assert_eq!(sha256(&image), TEST_IMAGE_SHA256, "the image was changed");
    }
    assert_fails(&run(with_bmap(&bmap, &image, &bmap)), &["bmap"]);
    // Discovered bmap as DEST.
    assert_fails(&run(copy_args(&[], &image, &bmap)), &["bmap"]);
    assert_eq!(read(&bmap), bmap_bytes, "the bmap was changed");
    assert_eq!(sha256(&image), TEST_IMAGE_SHA256);
}

/// The reference checks "bmap path == IMAGE" (step 4 of its copy) before it parses the
/// bmap (step 9), so the user is told what went wrong instead of a parse error about
/// the image's bytes.
#[test]
fn bmap_given_as_the_image_itself_is_refused_with_the_same_path_message() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let dest = dir.path().join("out.img");
    let output = run(with_bmap(&image, &image, &dest));
    assert!(!dest.exists());
    assert_eq!(sha256(&image), TEST_IMAGE_SHA256);
    assert_fails(&output, &["same path"]);
}

// ---------------------------------------------------------------------------------
// 4. Faults

#[test]
fn corrupt_byte_fails_naming_the_range_and_removes_the_new_file() {
    let dir = tempdir();
    let (bad, bytes) = corrupt_test_image(dir.path(), IN_RANGE_3_5);
    for version in ["1.3", "1.4", "2.0"] {
        let dest = dir.path().join(format!("out-{version}.img"));
        let output = run(with_bmap(&test_bmap(version), &bad, &dest));
        assert_fails(&output, &["checksum mismatch for blocks range 3-5"]);
        assert!(
            !dest.exists(),
            "v{version}: the failed copy was left behind"
        );
        // The same from a pipe.
        let output = run_stdin_pipe(with_bmap(&test_bmap(version), "-", &dest), bytes.clone());
        assert_fails(&output, &["checksum mismatch for blocks range 3-5"]);
        assert!(!dest.exists(), "v{version}: the failed piped copy was left");
    }
}

#[test]
fn corrupt_byte_is_detected_with_the_v1_2_sha1_attributes() {
    let dir = tempdir();
    let (bad, _) = corrupt_test_image(dir.path(), IN_RANGE_198_199);
    let dest = dir.path().join("out.img");
    let output = run(with_bmap(&test_bmap("1.2"), &bad, &dest));
    assert_fails(&output, &["checksum mismatch for blocks range 198-199"]);
    assert!(!dest.exists());
}

#[test]
fn corrupt_byte_is_copied_with_no_verify() {
    let dir = tempdir();
    let (bad, bytes) = corrupt_test_image(dir.path(), IN_RANGE_3_5);
    for version in VERSIONS {
        let dest = dir.path().join(format!("out-{version}.img"));
        let mut args = with_bmap(&test_bmap(version), &bad, &dest);
        args.insert(1, "--no-verify".into());
        assert_ok(&run(args));
        assert_eq!(read(&dest), bytes, "v{version}: --no-verify copy differs");
    }
}

#[test]
fn failed_copy_over_an_existing_file_leaves_no_partial_image() {
    let dir = tempdir();
    // The corruption is in the last range: every earlier range was written by then.
    let (bad, bytes) = corrupt_test_image(dir.path(), IN_RANGE_198_199);
    let dest = dir.path().join("existing.img");
    write_filled(&dest, 2 * MIB, 0xFF);
    assert_fails(
        &run(with_bmap(&test_bmap("2.0"), &bad, &dest)),
        &["blocks range 198-199"],
    );
    assert_no_partial_image(&dest);
    write_filled(&dest, 2 * MIB, 0xFF);
    assert_fails(
        &run_stdin_pipe(with_bmap(&test_bmap("2.0"), "-", &dest), bytes),
        &["blocks range 198-199"],
    );
    assert_no_partial_image(&dest);
}

#[test]
fn corrupt_image_to_a_loop_device_says_the_device_holds_a_partial_image() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (bad, _) = corrupt_test_image(dir.path(), IN_RANGE_198_199);
    let device = LoopDevice::new(2 * MIB, 0);
    let ratio = device.sysfs("bdi/max_ratio");
    let output = run(with_bmap(&test_bmap("2.0"), &bad, device.path()));
    assert_fails(&output, &["blocks range 198-199", "partial"]);
    assert_eq!(device.sysfs("bdi/max_ratio"), ratio, "max_ratio restored");
}

#[test]
fn truncated_local_image_is_a_size_mismatch() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let short = dir.path().join("short.image");
    fs::write(&short, &bytes[..800_000]).expect("write");
    let dest = dir.path().join("out.img");
    assert_fails(
        &run(with_bmap(&test_bmap("2.0"), &short, &dest)),
        &["800000", "821752"],
    );
    assert!(!dest.exists());
    // Redirected to stdin, the size is known just the same.
    assert_fails(
        &run_stdin_file(with_bmap(&test_bmap("2.0"), "-", &dest), &short),
        &["800000", "821752"],
    );
    assert!(!dest.exists());
    drop(image);
}

#[test]
fn truncated_image_on_stdin_is_an_error_and_leaves_no_file() {
    let dir = tempdir();
    let (_, bytes) = test_image(dir.path());
    let dest = dir.path().join("out.img");
    // Cut inside a mapped range, and inside the trailing hole (block 200 is a hole).
    for cut in [600_000, 815_000, 820_000] {
        let output = run_stdin_pipe(
            with_bmap(&test_bmap("2.0"), "-", &dest),
            bytes[..cut].to_vec(),
        );
        assert_fails(&output, &["truncated"]);
        assert!(!dest.exists(), "cut at {cut}: file left behind");
    }
}

#[test]
fn image_longer_than_its_bmap_says_is_refused() {
    let dir = tempdir();
    let (_, bytes) = test_image(dir.path());
    let mut long = bytes;
    long.extend_from_slice(b"extra bytes");
    let dest = dir.path().join("out.img");
    let output = run_stdin_pipe(with_bmap(&test_bmap("2.0"), "-", &dest), long.clone());
    assert_fails(&output, &["821752"]);
    assert!(!dest.exists(), "file left behind");
    let image = dir.path().join("long.image");
    fs::write(&image, &long).expect("write");
    assert_fails(
        &run(with_bmap(&test_bmap("2.0"), &image, &dest)),
        &["821752"],
    );
    assert!(!dest.exists());
}

#[test]
fn full_destination_file_system_fails_cleanly() {
    if !need_mount() {
        return;
    }
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    // 256 KiB cannot hold the 468 KiB of mapped data.
    let tmpfs = Mount::tmpfs("size=256k");
    let dest = tmpfs.path().join("out.img");
    let output = run(with_bmap(&test_bmap("2.0"), &image, &dest));
    assert_fails(&output, &["space"]);
    assert!(!dest.exists(), "the failed copy was left behind");
    assert_eq!(fs::read_dir(tmpfs.path()).expect("list").count(), 0);
    // An existing file is refused before it is truncated: it keeps its bytes.
    let existing = tmpfs.path().join("existing.img");
    write_filled(&existing, 64 * 1024, 0xFF);
    assert_fails(
        &run(with_bmap(&test_bmap("2.0"), &image, &existing)),
        &["space"],
    );
    assert!(
        read(&existing).iter().all(|&b| b == 0xFF) && read(&existing).len() == 64 * 1024,
        "the existing file was changed"
    );
}

#[test]
fn bmap_failing_its_own_checksum_is_refused_before_dest_is_touched() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let original = String::from_utf8(read(&test_bmap("2.0"))).expect("UTF-8");
    // One digit in a comment: only the bmap's own checksum can tell.
    let comment = original.replacen("bytes: 802.5 KiB", "bytes: 802.6 KiB", 1);
    // One digit in a range (3-5 -> 4-6 keeps the mapped block count).
    let range = original.replacen("> 3-5 <", "> 4-6 <", 1);
    // The same in the SHA-1 era (BmapFileSHA1).
    let v13 = String::from_utf8(read(&test_bmap("1.3")))
        .expect("UTF-8")
        .replacen("> 3-5 <", "> 4-6 <", 1);
    for (name, text, original) in [
        ("comment.bmap", comment, &original),
        ("range.bmap", range, &original),
        ("v13.bmap", v13, &original),
    ] {
        assert!(&text != original, "{name}: the edit did not apply");
        let bmap = dir.path().join(name);
        fs::write(&bmap, text).expect("write edited bmap");
        let dest = dir.path().join("new.img");
        let line = assert_fails(&run(with_bmap(&bmap, &image, &dest)), &["checksum", name]);
        assert!(!line.contains("blocks range"), "{name}: {line}");
        assert!(!dest.exists(), "{name}: DEST created");
        let existing = dir.path().join("existing.img");
        fs::write(&existing, b"old contents").expect("write");
        assert_fails(&run(with_bmap(&bmap, &image, &existing)), &["checksum"]);
        assert_eq!(read(&existing), b"old contents", "{name}: DEST touched");
    }
}

// ---------------------------------------------------------------------------------
// 5. Signals

/// Feeds a child's stdin 1 MiB every 20 ms (a slow download) until stopped or the
/// pipe breaks.
struct SlowFeeder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowFeeder {
    fn start(mut stdin: ChildStdin) -> SlowFeeder {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let chunk = random_bytes(42, MIB as usize);
        let thread = std::thread::spawn(move || {
            for _ in 0..900 {
                if flag.load(Ordering::SeqCst) || stdin.write_all(&chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Never end the stream: the copy must be interrupted, not finish.
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        SlowFeeder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowFeeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `bmaptool copy --nobmap - DEST` fed slowly; returns the child and its feeder.
fn start_slow_copy(dest: &Path) -> (KillOnDrop, SlowFeeder) {
    let mut child = KillOnDrop(
        bmaptool()
            .args(["copy", "--nobmap", "-"])
            .arg(dest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    let feeder = SlowFeeder::start(child.0.stdin.take().expect("piped stdin"));
    (child, feeder)
}

/// Sends `sig`, waits for the exit, and returns the exit code and stderr. The feeder
/// keeps the input open, so an exit is the signal's doing; [`HANG`] only bounds a hang.
fn interrupt(child: &mut KillOnDrop, sig: &str) -> (Option<i32>, String) {
    signal(&child.0, sig);
    let status = wait_for(&mut child.0, HANG);
    let Some(status) = status else {
        panic!("bmaptool still runs {} s after SIG{sig}", HANG.as_secs());
    };
    let mut text = String::new();
    child
        .0
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut text)
        .expect("read stderr");
    (status.code(), text)
}

/// One error line saying the copy was interrupted, and no panic.
#[track_caller]
fn assert_interrupted_message(text: &str) {
    assert_no_panic(text);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bmaptool: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{text}");
    assert!(errors[0].contains("interrupted"), "{text}");
}

/// Kills a child that is still running and returns what it wrote to stderr.
fn stop_and_read_stderr(child: &mut KillOnDrop) -> String {
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut text = String::new();
    if let Some(mut stderr) = child.0.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// Sectors written to a block device so far (`/sys/block/NAME/stat`, field 7).
fn sectors_written(device: &LoopDevice) -> u64 {
    device
        .sysfs("stat")
        .split_whitespace()
        .nth(6)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The tool tunes the device (scheduler `none`, `bdi/max_ratio` 1) while it writes and
/// restores both on SIGINT/SIGTERM. The test waits for the states it needs, never for
/// time: the tuned settings (both of them: one says nothing about the other), then
/// data on the device; then it interrupts and checks the restored values.
fn interrupt_copy_to_a_loop_device(sig: &str, code: i32) {
    if !need_loop_devices() {
        return;
    }
    let device = LoopDevice::new(1 << 30, 0);
    // A loop device keeps its settings across bindings: start from values that differ
    // from the tuned ones, or seeing them tuned would prove nothing.
    let ratio_path = Path::new("/sys/block")
        .join(device.name())
        .join("bdi/max_ratio");
    if device.sysfs("bdi/max_ratio") == "1" {
        fs::write(&ratio_path, "100").expect("reset max_ratio of our loop device");
    }
    let ratio = device.sysfs("bdi/max_ratio");
    assert_ne!(ratio, "1", "max_ratio of {} cannot be reset", device.name());
    // Give the tool a scheduler to change too, where the kernel offers one.
    let _ = device.set_scheduler("mq-deadline");
    let scheduler = device.scheduler();
    let switch_scheduler = scheduler != "none" && !scheduler.is_empty();
    let (mut child, feeder) = start_slow_copy(device.path());
    let tuned = || {
        device.sysfs("bdi/max_ratio") == "1" && (!switch_scheduler || device.scheduler() == "none")
    };
    if !eventually(HANG, tuned) {
        let (now_ratio, now_scheduler) = (device.sysfs("bdi/max_ratio"), device.scheduler());
        let text = stop_and_read_stderr(&mut child);
        panic!(
            "the device was never tuned during the copy (max_ratio {now_ratio}, was {ratio}; \
             scheduler {now_scheduler}, was {scheduler}); bmaptool said:\n{text}"
        );
    }
    // The copy is in its stride once data reaches the device.
    let before = sectors_written(&device);
    let flowing = eventually(HANG, || sectors_written(&device) >= before + 4 * MIB / 512);
    if !flowing {
        let text = stop_and_read_stderr(&mut child);
        panic!(
            "no data reached {} during the copy; bmaptool said:\n{text}",
            device.name()
        );
    }
    let (status, text) = interrupt(&mut child, sig);
    drop(feeder);
    assert_eq!(
        status,
        Some(code),
        "exit status after SIG{sig}; stderr:\n{text}"
    );
    assert_interrupted_message(&text);
    assert!(
        !text.contains("failed to enable I/O optimization"),
        "the tool could not tune the scheduler:\n{text}"
    );
    assert_eq!(
        device.sysfs("bdi/max_ratio"),
        ratio,
        "max_ratio not restored"
    );
    assert_eq!(device.scheduler(), scheduler, "scheduler not restored");
}

#[test]
fn sigterm_during_a_copy_to_a_loop_device_exits_143_and_restores_tuning() {
    interrupt_copy_to_a_loop_device("TERM", 143);
}

#[test]
fn sigint_during_a_copy_to_a_loop_device_exits_130_and_restores_tuning() {
    interrupt_copy_to_a_loop_device("INT", 130);
}

#[test]
fn sigint_during_a_copy_to_a_new_file_removes_it() {
    let dir = tempdir();
    let dest = dir.path().join("out.img");
    let (mut child, feeder) = start_slow_copy(&dest);
    // A new file is written unnamed until finished: count the bytes written.
    let pid = child.0.id();
    assert!(
        eventually(HANG, || {
            procfs::written_chars(pid).is_some_and(|n| n >= 4 * MIB)
                && procfs::has_open_in(pid, dir.path())
        }),
        "the copy never got going"
    );
    let (status, text) = interrupt(&mut child, "INT");
    drop(feeder);
    assert_eq!(status, Some(130), "stderr:\n{text}");
    assert_interrupted_message(&text);
    assert!(!dest.exists(), "the interrupted copy was left behind");
}

#[test]
fn sigint_while_stdin_is_idle_exits_promptly() {
    let dir = tempdir();
    let dest = dir.path().join("out.img");
    let mut child = KillOnDrop(
        bmaptool()
            .args(["copy", "--nobmap", "-"])
            .arg(&dest)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    // A stalled producer: a little data (enough to recognise the format and start the
    // copy), then the pipe stays open and nothing more comes.
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    stdin
        .write_all(&[0x5a; 4096])
        .expect("first bytes reach bmaptool");
    // The copy has started and taken every byte: it waits in a read of the empty pipe.
    let pid = child.0.id();
    assert!(
        eventually(HANG, || {
            (procfs::has_open_in(pid, dir.path()) && procfs::waits_reading_a_pipe(pid))
                || procfs::exited(pid)
        }),
        "the copy never waited for more input (wait channels {:?})",
        procfs::wchans(pid)
    );
    assert!(
        !procfs::exited(pid),
        "bmaptool exited before the copy started"
    );
    signal(&child.0, "INT");
    // Promptly: without further input (the pipe stays open until it exits).
    let status = wait_for(&mut child.0, HANG);
    // Unblock it either way, so that the test ends.
    drop(stdin);
    let status = status.unwrap_or_else(|| {
        let late = wait_for(&mut child.0, HANG);
        panic!(
            "bmaptool did not exit after SIGINT while waiting for input; after the input \
             closed it exited with {late:?}"
        )
    });
    assert_eq!(status.code(), Some(130));
    assert!(!dest.exists(), "the interrupted copy was left behind");
}

#[test]
fn sigint_before_any_input_exits_promptly_without_creating_dest() {
    let dir = tempdir();
    let dest = dir.path().join("out.img");
    let mut child = KillOnDrop(
        bmaptool()
            .args(["copy", "--nobmap", "-"])
            .arg(&dest)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    let stdin = child.0.stdin.take().expect("piped stdin");
    // It waits for the image's first bytes (the signal handlers are installed by then).
    let pid = child.0.id();
    assert!(
        eventually(HANG, || procfs::waits_reading_a_pipe(pid)
            || procfs::exited(pid)),
        "bmaptool never waited for its input (wait channels {:?})",
        procfs::wchans(pid)
    );
    signal(&child.0, "INT");
    // Promptly: without any input (the pipe stays open until it exits).
    let status = wait_for(&mut child.0, HANG);
    drop(stdin);
    let status = status.expect("bmaptool does not exit after SIGINT while no input came");
    assert_eq!(status.code(), Some(130));
    assert!(
        !dest.exists(),
        "nothing is created before the image's first bytes arrive"
    );
}

// ---------------------------------------------------------------------------------
// 6. psplash

#[test]
fn psplash_pipe_receives_progress_lines_up_to_100() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let fifo = dir.path().join("psplash_fifo");
    mkfifo(&fifo);
    // Read-write: the FIFO always has a reader (so no update is lost between opens) and
    // the read end never sees EOF; "END" stops the reader.
    let reader = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open the FIFO");
    let collector = std::thread::spawn(move || {
        BufReader::new(reader)
            .lines()
            .map(|l| l.expect("read the FIFO"))
            .take_while(|l| l != "END")
            .collect::<Vec<String>>()
    });
    let dest = dir.path().join("out.img");
    let mut args = with_bmap(&test_bmap("2.0"), &image, &dest);
    args.splice(1..1, ["--psplash-pipe".into(), fifo.clone().into()]);
    let output = run(args);
    OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"END\n"))
        .expect("stop the collector");
    let lines = collector.join().expect("collector thread");
    assert_ok(&output);
    assert_eq!(read(&dest), bytes);

    assert!(lines.len() >= 2, "too few progress lines: {lines:?}");
    let mut last = 0;
    for line in &lines {
        let percent: u64 = line
            .strip_prefix("PROGRESS ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a psplash line: {line:?}"));
        assert!(percent <= 100 && percent >= last, "bad progress {lines:?}");
        last = percent;
    }
    assert_eq!(lines.last().map(String::as_str), Some("PROGRESS 100"));
}

#[test]
fn psplash_path_that_is_not_a_fifo_warns_and_the_copy_succeeds() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let regular = dir.path().join("not-a-fifo");
    fs::write(&regular, b"").expect("write");
    for path in [regular.clone(), dir.path().join("missing")] {
        let dest = dir.path().join("out.img");
        let mut args = with_bmap(&test_bmap("2.0"), &image, &dest);
        args.splice(1..1, ["--psplash-pipe".into(), path.clone().into()]);
        let output = run(args);
        assert_ok(&output);
        let text = stderr(&output);
        assert!(
            text.lines().any(|l| l.starts_with("bmaptool: WARNING: ")
                && l.contains("is not a pipe")
                && l.contains(&*path.to_string_lossy())),
            "no 'is not a pipe' warning:\n{text}"
        );
        assert_eq!(read(&dest), bytes);
        fs::remove_file(&dest).expect("remove");
    }
    assert_eq!(read(&regular), b"", "the non-FIFO was written to");
}

// ---------------------------------------------------------------------------------
// 7. Interoperability with the reference (Debian bmap-tools 3.6)

/// A sparse image with holes, unaligned data, explicitly zero-filled (mapped) blocks and
/// a partial last block; returns its bytes.
fn write_interop_image(path: &Path) -> Vec<u8> {
    let size = 5 * MIB + 1000;
    let file = File::create(path).expect("create image");
    file.set_len(size).expect("set_len");
    let mut model = vec![0u8; size as usize];
    let pieces: [(u64, usize, Option<u64>); 6] = [
        (0, 70_000, Some(1)),
        (MIB + 100, 5_000, Some(2)),
        (2 * MIB, 16_384, None),
        (3 * MIB - 4096, 300_000, Some(3)),
        (4 * MIB + 12_345, 1, Some(4)),
        (size - 500, 500, Some(5)),
    ];
    for (offset, len, seed) in pieces {
        let bytes = seed.map_or_else(|| vec![0u8; len], |s| random_bytes(s, len));
        file.write_all_at(&bytes, offset).expect("write piece");
        model[offset as usize..offset as usize + len].copy_from_slice(&bytes);
    }
    file.sync_all().expect("sync");
    model
}

#[test]
fn bmap_made_by_the_reference_copies_with_ours() {
    if !need_reference() || !need_python() {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("random.img");
    let bytes = write_interop_image(&image);
    let bmap = dir.path().join("reference.bmap");
    let made = Command::new(REFERENCE)
        .args(["create", "-o"])
        .arg(&bmap)
        .arg(&image)
        .output()
        .expect("the reference runs");
    assert!(made.status.success(), "reference create failed");
    let facts = BmapFacts::read(&bmap);
    assert!(
        facts.ranges.len() >= 5,
        "the image is not sparse enough: {facts:?}"
    );
    assert!(
        facts.is_mapped(2 * MIB),
        "zero-filled blocks must be mapped"
    );

    let dest = dir.path().join("ours.img");
    assert_ok(&run(with_bmap(&bmap, &image, &dest)));
    assert!(read(&dest) == bytes, "our copy differs from the image");
    assert_sparse_as(&dest, &facts);
    let dest = dir.path().join("ours-piped.img");
    assert_ok(&run_stdin_pipe(with_bmap(&bmap, "-", &dest), bytes.clone()));
    assert!(
        read(&dest) == bytes,
        "our piped copy differs from the image"
    );
}

#[test]
fn reference_and_ours_write_the_same_bytes_with_our_bmap() {
    if !need_reference() || !need_python() {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("random.img");
    let bytes = write_interop_image(&image);
    let bmap = dir.path().join("ours.bmap");
    assert_ok(&run([
        "create".as_ref(),
        "-o".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
    ]));
    let reference = |dest: &Path| {
        let out = Command::new(REFERENCE)
            .args(["-q", "copy", "--bmap"])
            .arg(&bmap)
            .arg(&image)
            .arg(dest)
            .output()
            .expect("the reference runs");
        assert!(
            out.status.success(),
            "the reference refused our bmap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    let theirs = dir.path().join("theirs.img");
    let ours = dir.path().join("ours.img");
    reference(&theirs);
    assert_ok(&run(with_bmap(&bmap, &image, &ours)));
    assert!(
        read(&theirs) == bytes,
        "the reference's copy differs from the image"
    );
    assert!(read(&ours) == read(&theirs), "the two copies differ");
    assert_eq!(
        data_pages(&ours),
        data_pages(&theirs),
        "different sparseness"
    );

    // On devices, unmapped blocks keep their old bytes: both tools must agree exactly
    // in the reference's (plain) order. The fail-safe order also zeroes the device's
    // first and last MiB (tests/failsafe.rs).
    if !need_loop_devices() {
        return;
    }
    let theirs = LoopDevice::new(8 * MIB, 0xAA);
    let ours = LoopDevice::new(8 * MIB, 0xAA);
    reference(theirs.path());
    let mut args = with_bmap(&bmap, &image, ours.path());
    args.insert(1, "--no-fail-safe".into());
    assert_ok(&run(args));
    let (a, b) = (read(theirs.backing()), read(ours.backing()));
    assert!(a == b, "the two devices differ");
    let facts = BmapFacts::read(&bmap);
    for (offset, (&got, &want)) in b.iter().zip(bytes.iter()).enumerate() {
        let expected = if facts.is_mapped(offset as u64) {
            want
        } else {
            0xAA
        };
        assert_eq!(got, expected, "device byte {offset}");
    }
}

// ---------------------------------------------------------------------------------
// 8. Messages

#[test]
fn non_tty_stderr_has_no_progress_bar_or_escape_codes() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let (bad, _) = {
        let sub = dir.path().join("bad");
        fs::create_dir(&sub).expect("mkdir");
        corrupt_test_image(&sub, IN_RANGE_3_5)
    };
    let outputs = [
        run(with_bmap(
            &test_bmap("2.0"),
            &image,
            &dir.path().join("a.img"),
        )),
        run(copy_args(&["--nobmap"], &image, &dir.path().join("b.img"))),
        run(with_bmap(
            &test_bmap("2.0"),
            &bad,
            &dir.path().join("c.img"),
        )),
        run({
            let mut args = with_bmap(&test_bmap("2.0"), &image, &dir.path().join("d.img"));
            args.splice(1..1, ["--psplash-pipe".into(), "/nonexistent/fifo".into()]);
            args
        }),
    ];
    for output in &outputs {
        let text = stderr(output);
        assert!(
            !text.contains('\x1b'),
            "escape codes on a non-TTY:\n{text:?}"
        );
        assert!(
            !text.contains('\r'),
            "carriage returns on a non-TTY:\n{text:?}"
        );
        assert_no_panic(&text);
        assert!(
            text.lines().all(|l| l.starts_with("bmaptool: ")),
            "a line without the 'bmaptool: ' prefix:\n{text}"
        );
    }
    assert!(stderr(&outputs[0]).contains("copying time"));
    assert_fails(&outputs[2], &["checksum mismatch"]);
}

#[test]
fn quiet_copy_prints_nothing_on_success_and_only_the_error_on_failure() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let dest = dir.path().join("out.img");
    let mut args = with_bmap(&test_bmap("2.0"), &image, &dest);
    args.insert(0, "-q".into());
    let output = run(&args);
    assert_ok(&output);
    assert!(output.stderr.is_empty(), "-q printed:\n{}", stderr(&output));
    assert_eq!(read(&dest), bytes);

    let piped = dir.path().join("piped.img");
    let output = run_stdin_pipe(
        ["-q", "copy", "--nobmap", "-", &*piped.to_string_lossy()],
        bytes,
    );
    assert_ok(&output);
    assert!(output.stderr.is_empty(), "-q printed:\n{}", stderr(&output));

    let output = run([
        "-q".as_ref(),
        "copy".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_fails(&output, &["--nobmap"]);
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

#[test]
fn error_messages_do_not_repeat_the_os_error() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let mut lines = vec![
        assert_fails(
            &run(with_bmap(
                &test_bmap("2.0"),
                dir.path().join("missing.image"),
                &dir.path().join("out.img"),
            )),
            &["missing.image"],
        ),
        assert_fails(
            &run(with_bmap(
                &test_bmap("2.0"),
                &image,
                &dir.path().join("no-such-dir/out.img"),
            )),
            &["no-such-dir"],
        ),
    ];
    if need_mount() {
        let tmpfs = Mount::tmpfs("size=256k");
        lines.push(assert_fails(
            &run(with_bmap(
                &test_bmap("2.0"),
                &image,
                &tmpfs.path().join("o"),
            )),
            &["space"],
        ));
    }
    let repeated: Vec<&String> = lines
        .iter()
        .filter(|line| line.matches("os error").count() > 1)
        .collect();
    assert!(
        repeated.is_empty(),
        "the cause is printed twice in:\n{}",
        repeated
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------
// 9. Test data: the fixtures' own rules

#[test]
fn fixture_bmaps_of_every_version_carry_their_checksums_by_the_format_rules() {
    let image = test_image_bytes();
    for version in VERSIONS {
        let values = BmapValues::read(&test_bmap(version));
        assert_eq!(values.version, version);
        assert_eq!(values.ranges.len(), TEST_IMAGE_RANGES.len(), "v{version}");
        let text = read(&test_bmap(version));
        let expected = match version {
            "1.2" => None,
            _ => Some(true),
        };
        assert_eq!(self_checksum_holds(&text), expected, "v{version}");
        let digest_len = if matches!(version, "1.2" | "1.3") {
            40
        } else {
            64
        };
        for (range, digest) in &values.ranges {
            assert_eq!(
                digest.as_ref().map(String::len),
                Some(digest_len),
                "{range}"
            );
        }
    }
    // Mapped blocks hold data and holes are zero: the layout is the reference's.
    for block in 0..TEST_IMAGE_SIZE.div_ceil(BLOCK) {
        let start = (block * BLOCK) as usize;
        let end = (start + BLOCK as usize).min(image.len());
        let mapped = TEST_IMAGE_RANGES
            .iter()
            .any(|&(a, b)| (a..=b).contains(&block));
        let data = image[start..end].iter().any(|&b| b != 0);
        assert_eq!(data, mapped, "block {block}");
    }
    let mapped: u64 = TEST_IMAGE_RANGES.iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(mapped, TEST_IMAGE_MAPPED_BLOCKS);
}

// ---------------------------------------------------------------------------------
// 10. Extra conformance checks: the reference's own data (../shared/conformance)

#[test]
fn conformance_reference_test_image_copies_with_each_of_its_bmaps_raw_and_gzipped() {
    if !need_conformance() || !need_python() {
        return;
    }
    let dir = tempdir();
    let (image, _) = reference_test_image(dir.path());
    let gz = conformance().join("reference-test-data/test.image.gz");
    for version in VERSIONS {
        let bmap = reference_test_bmap(version);
        for (what, source) in [("raw", &image), ("gz", &gz)] {
            let dest = dir.path().join(format!("out-{version}-{what}.img"));
            let output = run(with_bmap(&bmap, source, &dest));
            assert_ok(&output);
            assert_eq!(
                sha256(&dest),
                REFERENCE_TEST_IMAGE_SHA256,
                "v{version} from {what}"
            );
            assert_sparse_as(&dest, &BmapFacts::read(&bmap));
        }
    }
}

#[test]
fn conformance_reference_test_image_with_a_corrupt_byte_fails_naming_the_range() {
    if !need_conformance() {
        return;
    }
    let dir = tempdir();
    let (image, _) = reference_test_image(dir.path());
    flip_byte(&image, IN_RANGE_3_5);
    // Every version, 1.2 included: its `sha1` attributes are verified here.
    for version in VERSIONS {
        let dest = dir.path().join(format!("out-{version}.img"));
        let output = run(with_bmap(&reference_test_bmap(version), &image, &dest));
        assert_fails(&output, &["checksum mismatch for blocks range 3-5"]);
        assert!(
            !dest.exists(),
            "v{version}: the failed copy was left behind"
        );
    }
}

#[test]
fn conformance_fixture_bmaps_say_what_the_reference_bmaps_say() {
    if !need_conformance() {
        return;
    }
    let dir = tempdir();
    let (_, bytes) = reference_test_image(dir.path());
    for version in VERSIONS {
        let theirs = reference_test_bmap(version);
        let ours = dir.path().join(format!("fixture.v{version}"));
        fs::write(
            &ours,
            fixture_bmap(version, &bytes, BLOCK, &TEST_IMAGE_RANGES),
        )
        .expect("write the fixture bmap");
        assert_eq!(
            BmapValues::read(&ours),
            BmapValues::read(&theirs),
            "v{version}: the fixture and the reference disagree"
        );
        assert_eq!(
            self_checksum_holds(&read(&theirs)),
            self_checksum_holds(&read(&ours)),
            "v{version}: the self-checksum rule"
        );
    }
}

#[test]
fn conformance_golden_images_are_make_images_py_bytes_and_copy_with_the_3_9_bmaps() {
    if !need_conformance() || !need_python() {
        return;
    }
    let dir = tempdir();
    let py = dir.path().join("py");
    let out = Command::new("python3")
        .arg(conformance().join("golden/make-images.py"))
        .arg(&py)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "make-images.py failed");
    for name in GOLDEN_IMAGES {
        let image = py.join(name);
        assert!(
            read(&image) == golden_bytes(name),
            "{name}: the Rust port differs from make-images.py"
        );
        let bmap = conformance().join("golden").join(format!("{name}.bmap"));
        assert_eq!(
            BmapValues::read(&bmap).ranges,
            BmapValues::read(&golden_fixture_bmap(name)).ranges,
            "{name}: the fixture's ranges or digests differ from the reference 3.9's"
        );
        let dest = dir.path().join(format!("{name}.out"));
        assert_ok(&run(with_bmap(&bmap, &image, &dest)));
        assert!(read(&dest) == read(&image), "{name}: copy differs");
        assert_sparse_as(&dest, &BmapFacts::read(&bmap));
    }
}
