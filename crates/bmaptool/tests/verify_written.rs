//! `bmaptool copy --verify-written [--write-retries N]`: the real binary reads back
//! what it wrote to a loop device and to a regular file (with a bmap, without one,
//! with a bmap that has no checksums, from a compressed stream) and says so in its
//! summary (and, where the file system refuses `O_DIRECT`, that it read through the
//! page cache); the destination then holds the image. Refused for `/dev/null`; bad
//! `--write-retries` values are refused by the parser. (The rewrite and failure paths
//! are pinned by the library's `tests/readback.rs`, which injects corruption.)

#[allow(dead_code, reason = "this file uses a subset of the copy harness")]
mod copy_support;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::Path;
use std::process::Output;

use copy_support::*;

/// `copy --verify-written [EXTRA...] IMAGE DEST`.
fn args(extra: &[&str], image: impl Into<OsString>, dest: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["copy".into(), "--verify-written".into()];
    args.extend(extra.iter().map(OsString::from));
    args.push(image.into());
    args.push(dest.into());
    args
}

/// Asserts success and the read-back summary for `ranges` ranges; returns stderr.
#[track_caller]
fn assert_read_back(output: &Output, ranges: usize) -> String {
    let text = test_support::assert_ok(output);
    let line = text
        .lines()
        .find(|l| l.contains("read back "))
        .unwrap_or_else(|| panic!("no read-back line:\n{text}"));
    assert!(
        line.contains(&format!("read back {ranges} ranges (")) && line.contains("all matched"),
        "{line}"
    );
    assert!(!line.contains("rewritten"), "nothing was rewritten: {line}");
    text
}

#[test]
fn verify_written_to_a_loop_device_reads_back_every_range_and_the_device_holds_the_image() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let device = LoopDevice::new(TEST_IMAGE_SIZE + MIB, 0);
    let bmap = test_bmap("2.0");
    let output = run(args(
        &["--bmap", bmap.to_str().expect("utf-8")],
        &image,
        device.path(),
    ));
    let text = assert_read_back(&output, TEST_IMAGE_RANGES.len());
    assert!(
        !text.contains("page cache"),
        "a loop device reads directly:\n{text}"
    );
    assert!(read_prefix(device.path(), TEST_IMAGE_SIZE) == bytes);
}

#[test]
fn verify_written_to_a_regular_file_reads_back_every_range() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let dest = dir.path().join("out.img");
    let bmap = test_bmap("2.0");
    let output = run(args(
        &[
            "--bmap",
            bmap.to_str().expect("utf-8"),
            "--write-retries",
            "0",
        ],
        &image,
        &dest,
    ));
    let text = assert_read_back(&output, TEST_IMAGE_RANGES.len());
    // tmpfs may refuse O_DIRECT: then the summary says the read went through the cache.
    if !on_tmpfs(&dest) {
        assert!(!text.contains("page cache"), "{text}");
    }
    assert!(fs::read(&dest).expect("read the copy") == bytes);
}

#[test]
fn verify_written_to_a_file_system_without_o_direct_says_it_read_through_the_page_cache() {
    if !need_mount() {
        return;
    }
    // ramfs refuses O_DIRECT at open.
    let ramfs = Mount::new(&[OsStr::new("-t"), OsStr::new("ramfs"), OsStr::new("ramfs")]);
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let dest = ramfs.path().join("out.img");
    let bmap = test_bmap("2.0");
    let output = run(args(
        &["--bmap", bmap.to_str().expect("utf-8")],
        &image,
        &dest,
    ));
    let text = assert_read_back(&output, TEST_IMAGE_RANGES.len());
    assert!(
        text.contains("read through the page cache") && text.contains("refused O_DIRECT"),
        "{text}"
    );
    assert!(fs::read(&dest).expect("read the copy") == bytes);
}

#[test]
fn verify_written_without_a_bmap_reads_back_the_whole_image() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let device = LoopDevice::new(TEST_IMAGE_SIZE + MIB, 0xAA);
    let output = run(args(&["--nobmap"], &image, device.path()));
    let text = assert_read_back(&output, 1);
    let size = human_size(TEST_IMAGE_SIZE);
    assert!(
        text.contains(&format!("read back 1 ranges ({size})")),
        "{text}"
    );
    assert!(read_prefix(device.path(), TEST_IMAGE_SIZE) == bytes);
}

#[test]
fn verify_written_with_a_bmap_without_checksums_compares_with_what_was_written() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let text = fs::read_to_string(test_bmap("1.2")).expect("read the bmap");
    let bare: String = text
        .lines()
        .map(|line| match line.find(" sha1=\"") {
            Some(at) => {
                let end = at + 7 + line[at + 7..].find('"').expect("closing quote");
                format!("{}{}\n", &line[..at], &line[end + 1..])
            }
            None => format!("{line}\n"),
        })
        .collect();
    assert!(!bare.contains("sha1"), "the checksums are gone:\n{bare}");
    let bmap = dir.path().join("bare.bmap");
    fs::write(&bmap, bare).expect("write the bmap");
    let device = LoopDevice::new(TEST_IMAGE_SIZE + MIB, 0);
    let output = run(args(
        &["--bmap", bmap.to_str().expect("utf-8")],
        &image,
        device.path(),
    ));
    let text = assert_read_back(&output, TEST_IMAGE_RANGES.len());
    assert!(text.contains("has no checksums"), "{text}");
    assert!(read_prefix(device.path(), TEST_IMAGE_SIZE) == bytes);
}

#[test]
fn verify_written_reads_back_a_compressed_image_read_from_stdin() {
    if !need_loop_devices() || !require(runs("gzip", &["--version"]), "gzip") {
        return;
    }
    let dir = tempdir();
    let (_, bytes) = test_image(dir.path());
    let gz = test_support::pipe_through(clean_command("gzip").args(["-n", "-c"]), &bytes);
    let device = LoopDevice::new(TEST_IMAGE_SIZE + MIB, 0);
    let bmap = test_bmap("2.0");
    let output = run_stdin_pipe(
        args(
            &["--bmap", bmap.to_str().expect("utf-8")],
            "-",
            device.path(),
        ),
        gz,
    );
    assert_read_back(&output, TEST_IMAGE_RANGES.len());
    assert!(read_prefix(device.path(), TEST_IMAGE_SIZE) == bytes);
}

#[test]
fn verify_written_is_refused_for_dev_null() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let output = run(args(&["--nobmap"], &image, Path::new("/dev/null")));
    assert_fails(&output, &["--verify-written", "/dev/null", "read back"]);
}

#[test]
fn bad_write_retries_values_are_refused_by_the_parser() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let dest = dir.path().join("out.img");
    for bad in ["x", "-1", "101", ""] {
        let option = format!("--write-retries={bad}");
        let output = run(args(&["--nobmap", &option], &image, &dest));
        assert_eq!(output.status.code(), Some(2), "--write-retries {bad:?}");
        assert!(
            stderr(&output).contains("--write-retries"),
            "{}",
            stderr(&output)
        );
    }
    let mut alone: Vec<OsString> = vec!["copy".into(), "--write-retries".into(), "1".into()];
    alone.extend([image.into_os_string(), dest.clone().into_os_string()]);
    let output = run(alone);
    assert_eq!(
        output.status.code(),
        Some(2),
        "--write-retries needs --verify-written"
    );
    assert!(
        stderr(&output).contains("--verify-written"),
        "{}",
        stderr(&output)
    );
    assert!(!dest.exists(), "nothing was written");
}

/// The size as the tool's messages print it.
fn human_size(bytes: u64) -> String {
    bmap::format::human_size(bytes)
}
