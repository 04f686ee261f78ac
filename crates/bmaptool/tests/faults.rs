//! The fault matrix (docs/reliability.md): what `copy`, `create` and `verify` do when
//! the world goes wrong under them, on real files, file systems, loop devices, a FUSE
//! device with bad sectors and a real HTTP server: the destination fills up, the
//! source is truncated or changed during the copy, the network is cut at random
//! points, SIGINT/SIGTERM/SIGKILL arrive mid-run, the destination is read-only or a
//! directory, the device returns I/O errors. Each test waits for a state the tool
//! reports (a JSON progress line, a file appearing) and freezes it with SIGSTOP when
//! the fault must land mid-run: never for time.
//!
//! Tests that need root, mounts, loop devices or FUSE skip with a note, unless
//! `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;
#[allow(dead_code, reason = "each fault test uses part of it")]
mod faults_support;
#[allow(
    clippy::duplicate_mod,
    reason = "both harness modules include the test data generator; each keeps its own"
)]
mod remote_support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use copy_support::*;
use faults_support::*;
use test_support::need_tool;

/// One clean failure line: exit `code`, one `bmaptool: ERROR:` line holding every
/// needle (case-insensitive), no panic. Returns the line.
#[track_caller]
fn assert_error_line(code: Option<i32>, text: &str, status: i32, needles: &[&str]) -> String {
    assert_eq!(code, Some(status), "exit status; stderr:\n{text}");
    assert_no_panic(text);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bmaptool: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{text}");
    let line = errors[0].to_lowercase();
    for needle in needles {
        assert!(
            line.contains(&needle.to_lowercase()),
            "the error line does not mention {needle:?}: {}",
            errors[0]
        );
    }
    errors[0].to_owned()
}

/// A copy of `image` to `dest` with its progress lines on stdout (`--progress-fd 1`).
fn watched_copy(extra: &[&OsStr], image: &Path, dest: &Path) -> Watched {
    let mut cmd = bmaptool();
    cmd.args(["copy", "--progress-fd", "1", "--progress", "none"])
        .args(extra)
        .arg(image)
        .arg(dest);
    Watched::start(cmd)
}

/// Starts `watched` and freezes it once it reports the `writing` phase, with at least
/// `margin` bytes of the image still unread (checked with `/proc/PID/io`, so that a
/// fault injected now lands mid-copy; a machine so fast that the check fails makes the
/// test fail loudly, not pass for the wrong reason).
fn freeze_while_writing(watched: &mut Watched, image_len: u64, margin: u64) {
    assert!(
        watched.wait_line(&["\"progress\"", "\"writing\""]),
        "no writing phase was reported"
    );
    assert!(
        watched.freeze(),
        "the copy ended before it could be stopped"
    );
    let read = watched.read_chars();
    assert!(
        read + margin <= image_len,
        "the copy had read {read} of {image_len} bytes when it was stopped: too late for \
         the fault to land mid-copy"
    );
}

/// A 64 MiB image with 48 MiB of random data (seed `seed`) and its bmap in `dir`.
fn big_image(dir: &Path, seed: u64) -> (PathBuf, PathBuf, Vec<u8>) {
    let (image, bmap) = sparse_image_with_bmap(dir, 64 * MIB, &[(seed, 8 * MIB, 48 << 20)]);
    let bytes = read(&image);
    (image, bmap, bytes)
}

// ---------------------------------------------------------------------------------
// 1. The destination fills up

#[test]
fn a_file_system_too_small_for_a_stream_of_unknown_size_stops_it_and_the_partial_file_goes() {
    if !need_mount() || !need_tool("zstd") {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("data.img");
    fs::write(&image, random_bytes(7, 4 << 20)).expect("write the image");
    succeeds(Command::new("zstd").args(["-q", "-k"]).arg(&image));
    let zst = dir.path().join("data.img.zst");
    let small = Mount::tmpfs("size=1m");
    let dest = small.path().join("out.img");
    // A compressed image without a bmap has no size known before: the copy stops once
    // the file would outgrow the room its file system had (docs/limits.md), before
    // ENOSPC; the ENOSPC path itself is the next test's.
    let output = run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        zst.as_os_str(),
        dest.as_os_str(),
    ]);
    test_support::assert_fails(&output, &["size is unknown", "out.img", "free some space"]);
    assert!(!dest.exists(), "the partial file was left");
    // A raw image's size is known: refused before writing, with both numbers.
    let output = run([
        OsStr::new("copy"),
        OsStr::new("--nobmap"),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    test_support::assert_fails(&output, &["not enough free space", "4194304"]);
    assert!(!dest.exists(), "DEST was created");
}

#[test]
fn a_file_system_filled_by_another_program_mid_copy_gives_enospc_and_the_file_goes() {
    if !need_mount() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 11);
    // Room for the copy when it starts (the up-front check passes) ...
    let fs = Mount::tmpfs("size=56m");
    let dest = fs.path().join("out.img");
    let mut watched = watched_copy(&[OsStr::new("--bmap"), bmap.as_os_str()], &image, &dest);
    freeze_while_writing(&mut watched, 64 * MIB, 16 * MIB);
    // ... then another program takes what is left.
    let filler = fs.path().join("filler");
    let _ = Command::new("fallocate")
        .args(["-l", "56m"])
        .arg(&filler)
        .status();
    if !filler.exists() || fs::metadata(&filler).is_ok_and(|m| m.len() == 0) {
        // fallocate cannot take a part: write until the file system is full.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M"])
            .arg(format!("of={}", filler.display()))
            .status();
    }
    watched.thaw();
    let (code, text, _) = watched.finish();
    assert_error_line(code, &text, 1, &["No space left on device", "out.img"]);
    assert!(!dest.exists(), "the partial file was left");
}

// ---------------------------------------------------------------------------------
// 2. The source changes during the copy

/// Copies a 64 MiB image (with its bmap unless `nobmap`), freezes the copy once it
/// writes, lets `change` alter the image, lets it go on; returns the result.
fn copy_while_the_image_changes(
    image: &Path,
    bmap: Option<&Path>,
    dest: &Path,
    image_len: u64,
    change: impl FnOnce(),
) -> (Option<i32>, String) {
    let extra: Vec<&OsStr> = match bmap {
        Some(bmap) => vec![OsStr::new("--bmap"), bmap.as_os_str()],
        None => vec![OsStr::new("--nobmap")],
    };
    let mut watched = watched_copy(&extra, image, dest);
    freeze_while_writing(&mut watched, image_len, image_len / 4);
    change();
    watched.thaw();
    let (code, text, _) = watched.finish();
    (code, text)
}

#[test]
fn an_image_truncated_during_the_copy_fails_and_the_destination_goes() {
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 21);
    for bmap in [Some(bmap.as_path()), None] {
        fs::copy(
            dir.path().join("disk.img.bmap"),
            dir.path().join("keep.bmap"),
        )
        .ok();
        let dest = dir.path().join("out.img");
        let (code, text) = copy_while_the_image_changes(&image, bmap, &dest, 64 * MIB, || {
            fs::OpenOptions::new()
                .write(true)
                .open(&image)
                .and_then(|f| f.set_len(20 * MIB))
                .expect("truncate the image");
        });
        assert_error_line(code, &text, 1, &["image"]);
        assert!(
            text.to_lowercase().contains("truncated") || text.contains("ends at"),
            "{bmap:?}: the error does not say the image ended early:\n{text}"
        );
        assert!(!dest.exists(), "{bmap:?}: the destination was left");
        // Put the image back for the next round.
        let (again, _, _) = big_image(dir.path(), 21);
        assert_eq!(again, image);
    }
}

#[test]
fn an_image_overwritten_in_place_during_the_copy_fails_its_checksum_and_the_destination_goes() {
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 31);
    let dest = dir.path().join("out.img");
    let (code, text) = copy_while_the_image_changes(&image, Some(&bmap), &dest, 64 * MIB, || {
        use std::os::unix::fs::FileExt;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .expect("open");
        file.write_all_at(&random_bytes(99, (8 * MIB) as usize), 44 * MIB)
            .expect("overwrite the image");
    });
    assert_error_line(code, &text, 1, &["checksum"]);
    assert!(!dest.exists(), "the destination was left");
}

#[test]
fn a_compressed_image_truncated_during_the_copy_fails_and_the_destination_goes() {
    if !need_tool("zstd") {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 41);
    // Level 1, no long matches: random data stays about as large as it is.
    succeeds(Command::new("zstd").args(["-q", "-1", "-k"]).arg(&image));
    let zst = dir.path().join("disk.img.zst");
    let len = fs::metadata(&zst).expect("zst").len();
    let dest = dir.path().join("out.img");
    let (code, text) = copy_while_the_image_changes(&zst, Some(&bmap), &dest, len, || {
        fs::OpenOptions::new()
            .write(true)
            .open(&zst)
            .and_then(|f| f.set_len(len / 3))
            .expect("truncate the image");
    });
    assert_error_line(code, &text, 1, &[]);
    assert!(!dest.exists(), "the destination was left");
}

#[test]
fn an_image_replaced_by_rename_during_the_copy_is_copied_as_it_was_opened() {
    let dir = tempdir();
    let (image, bmap, bytes) = big_image(dir.path(), 51);
    let dest = dir.path().join("out.img");
    let (code, text) = copy_while_the_image_changes(&image, Some(&bmap), &dest, 64 * MIB, || {
        let other = dir.path().join("other.img");
        fs::write(&other, random_bytes(52, (64 * MIB) as usize)).expect("write");
        fs::rename(&other, &image).expect("rename over the image");
    });
    // The open descriptor still reads the file that was opened: the copy is of it.
    assert_eq!(code, Some(0), "{text}");
    assert!(read(&dest) == bytes, "the copy is not the image it opened");
}

// ---------------------------------------------------------------------------------
// 5. A read-only destination

#[test]
fn a_read_only_loop_device_is_refused_before_anything_is_written() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 61);
    let backing = dir.path().join("backing.img");
    write_filled(&backing, 72 * MIB, 0xAA);
    let out = succeeds(
        Command::new("losetup")
            .args(["-r", "-f", "--show"])
            .arg(&backing),
    );
    let device = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let output = run([
        OsStr::new("copy"),
        OsStr::new("--bmap"),
        bmap.as_os_str(),
        image.as_os_str(),
        OsStr::new(&device),
    ]);
    let detached = eventually(std::time::Duration::from_secs(30), || {
        runs("losetup", &["-d", &device])
    });
    test_support::assert_fails(&output, &["read-only", &device]);
    assert!(
        !stderr(&output).contains("partial"),
        "a refusal before writing says nothing was written"
    );
    assert!(detached, "cannot detach {device}");
    assert!(
        read(&backing).iter().all(|&b| b == 0xAA),
        "the read-only device was written"
    );
}

#[test]
fn an_immutable_file_and_a_read_only_mount_are_refused_before_writing() {
    if !need_mount() || !need_tool("chattr") {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 62);
    let immutable = dir.path().join("immutable.img");
    fs::write(&immutable, b"old").expect("write");
    let frozen = runs("chattr", &["+i", &immutable.to_string_lossy()]);
    if require(
        frozen,
        "a file system that takes chattr +i under the temporary directory",
    ) {
        let output = run(with_bmap(&bmap, &image, &immutable));
        let _ = runs("chattr", &["-i", &immutable.to_string_lossy()]);
        test_support::assert_fails(&output, &["immutable.img", "Operation not permitted"]);
        assert_eq!(read(&immutable), b"old");
    }
    // A read-only bind mount of a directory with an existing file in it.
    let target = dir.path().join("target");
    fs::create_dir(&target).expect("mkdir");
    fs::write(target.join("old.img"), b"old").expect("write");
    let ro = Mount::new(&[OsStr::new("--bind"), target.as_os_str()]);
    succeeds(
        Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(ro.path()),
    );
    for name in ["old.img", "new.img"] {
        let dest = ro.path().join(name);
        let output = run(with_bmap(&bmap, &image, &dest));
        test_support::assert_fails(&output, &[name, "Read-only file system"]);
    }
    assert_eq!(read(&target.join("old.img")), b"old");
    assert!(!target.join("new.img").exists());
}

fn with_bmap(bmap: &Path, image: &Path, dest: &Path) -> Vec<std::ffi::OsString> {
    test_support::with_bmap(bmap, image, dest)
}

// ---------------------------------------------------------------------------------
// 6. A destination that is, or becomes, a directory

#[test]
fn a_directory_as_the_destination_is_refused_naming_it() {
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 71);
    let target = dir.path().join("a-directory");
    fs::create_dir(&target).expect("mkdir");
    let output = run(with_bmap(&bmap, &image, &target));
    test_support::assert_fails(&output, &["a-directory", "is a directory"]);
    assert!(fs::read_dir(&target).expect("list").next().is_none());
}

#[test]
fn create_with_a_directory_as_its_output_is_refused_naming_it() {
    let dir = tempdir();
    let (image, _, _) = big_image(dir.path(), 73);
    let target = dir.path().join("a-directory");
    fs::create_dir(&target).expect("mkdir");
    let output = run([
        OsStr::new("create"),
        OsStr::new("-o"),
        target.as_os_str(),
        image.as_os_str(),
    ]);
    test_support::assert_fails(&output, &["a-directory", "is a directory"]);
    assert!(fs::read_dir(&target).expect("list").next().is_none());
}

#[test]
fn a_destination_replaced_by_a_directory_before_it_is_opened_is_refused() {
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 72);
    let dest = dir.path().join("out.img");
    fs::write(&dest, b"old").expect("write");
    // The bmap comes through a FIFO: the tool waits for it before it opens DEST.
    let fifo = dir.path().join("bmap.fifo");
    mkfifo(&fifo);
    let mut child = KillOnDrop(
        bmaptool()
            .arg("copy")
            .arg("--bmap")
            .arg(&fifo)
            .arg(&image)
            .arg(&dest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    // A non-blocking open for writing succeeds only once the tool has the read end.
    let pid = child.0.id();
    let mut writer = None;
    assert!(
        procfs::within_hang(|| {
            writer = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .ok();
            writer.is_some() || procfs::exited(pid)
        }),
        "the tool never opened the bmap FIFO"
    );
    let mut writer = writer.expect("the tool exited before reading the bmap");
    fs::remove_file(&dest).expect("remove DEST");
    fs::create_dir(&dest).expect("make DEST a directory");
    std::io::Write::write_all(&mut writer, &read(&bmap)).expect("feed the bmap");
    drop(writer);
    let output = std::mem::replace(
        &mut child.0,
        Command::new("true").spawn().expect("true runs"),
    )
    .wait_with_output()
    .expect("bmaptool ends");
    test_support::assert_fails(&output, &["out.img", "directory"]);
    assert!(dest.is_dir() && fs::read_dir(&dest).expect("list").next().is_none());
}

// ---------------------------------------------------------------------------------
// 7. A device that returns I/O errors

/// Where the FUSE device's bad sectors are: 8 MiB to 9 MiB, inside the image's data.
const BAD: (u64, u64) = (8 * MIB, 9 * MIB);

/// A 16 MiB image of random data (every block mapped) and its bmap.
fn small_image(dir: &Path, seed: u64) -> (PathBuf, PathBuf, Vec<u8>) {
    let (image, bmap) = sparse_image_with_bmap(dir, 16 * MIB, &[(seed, 0, 16 << 20)]);
    let bytes = read(&image);
    (image, bmap, bytes)
}

/// Asserts a failed run never claimed success.
#[track_caller]
fn assert_no_success_claim(text: &str) {
    for claim in ["wrote ", "all matched", "ranges good", "holds the image"] {
        assert!(
            !text.contains(claim),
            "a failed run says {claim:?}:\n{text}"
        );
    }
}

#[test]
fn a_device_failing_writes_stops_the_copy_naming_the_offset() {
    if !need_fuse() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = small_image(dir.path(), 81);
    let disk = EioDisk::new(32 * MIB, BAD, "w");
    let output = run(with_bmap(&bmap, &image, disk.path()));
    let line = test_support::assert_fails(
        &output,
        &[
            &disk.path().to_string_lossy(),
            "Input/output error",
            "at byte",
        ],
    );
    assert_no_success_claim(&stderr(&output));
    assert!(
        disk.log().contains("EIO on write"),
        "no write reached the bad sectors"
    );
    let offset: u64 = line
        .split("at byte ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {line}"));
    assert!(
        offset < BAD.1,
        "the offset named, {offset}, is past the bad sectors"
    );
}

#[test]
fn a_file_on_a_file_system_failing_writes_stops_the_copy_naming_the_offset() {
    if !need_fuse() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = small_image(dir.path(), 82);
    let disk = EioDisk::file_only(32 * MIB, BAD, "w");
    let output = run(with_bmap(&bmap, &image, &disk.file()));
    test_support::assert_fails(&output, &["disk", "Input/output error", "at byte"]);
    assert_no_success_claim(&stderr(&output));
}

#[test]
fn verify_of_a_device_failing_reads_fails_naming_the_device_and_offset() {
    if !need_fuse() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = small_image(dir.path(), 83);
    let disk = EioDisk::new(32 * MIB, BAD, "r");
    assert_ok(&run(with_bmap(&bmap, &image, disk.path())));
    let output = run([
        OsStr::new("verify"),
        OsStr::new("--bmap"),
        bmap.as_os_str(),
        disk.path().as_os_str(),
    ]);
    let text = stderr(&output);
    assert_error_line(
        output.status.code(),
        &text,
        2,
        &[
            "Input/output error",
            // The target, not "the image": `verify` reads the device.
            &format!(
                "cannot read the device '{}' at byte {}",
                disk.path().display(),
                BAD.0
            ),
        ],
    );
    assert_no_success_claim(&text);
    assert!(
        disk.log().contains("EIO on read"),
        "no read reached the bad sectors"
    );
}

#[test]
fn verify_written_on_a_device_failing_reads_fails_naming_the_offset() {
    if !need_fuse() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = small_image(dir.path(), 84);
    let disk = EioDisk::new(32 * MIB, BAD, "r");
    let mut args = with_bmap(&bmap, &image, disk.path());
    args.insert(1, "--verify-written".into());
    let output = run(args);
    test_support::assert_fails(&output, &["read from", "Input/output error", "at byte"]);
    assert_no_success_claim(&stderr(&output));
}

// ---------------------------------------------------------------------------------
// 3. The network is cut at random points

/// The sparse image (raw, with Range requests for its mapped parts) and its `.zst`
/// (one stream) on a real HTTP server; `None`: skipped.
fn served_sparse() -> Option<(
    remote_support::Served,
    test_support::HttpServer,
    Vec<u8>,
    u64,
)> {
    let served = remote_support::Served::new();
    let http = test_support::HttpServer::start(served.root())?;
    let (bytes, _) = served.add_sparse("sparse.img");
    let zst_len = served.add_zst("sparse.img")?;
    Some((served, http, bytes, zst_len))
}

#[test]
fn http_cuts_at_seeded_random_points_resume_to_a_byte_identical_copy() {
    let Some((served, http, bytes, zst_len)) = served_sparse() else {
        return;
    };
    let mut rng = Rng(seed("http_cuts_at_seeded_random_points"));
    let bmap = served.file("sparse.img.bmap").display().to_string();
    let dir = tempdir();
    for round in 0..8 {
        // The first body of the raw image is at least its first extent (256 KiB):
        // a cut below that always lands in a body.
        let (path, body) = if round % 2 == 0 {
            ("/sparse.img", 256 * 1024)
        } else {
            ("/sparse.img.zst", zst_len)
        };
        let cut = rng.between(1, body);
        let times = rng.between(1, 4);
        let rst = rng.next_u64().is_multiple_of(2);
        eprintln!("round {round}: {path} cut after {cut} bytes, {times} times, rst {rst}");
        http.set_rule(
            path,
            &format!(r#"{{"cut_after": {cut}, "cut_times": {times}, "cut_rst": {rst}}}"#),
        );
        let dest = dir.path().join(format!("out{round}.img"));
        let run = remote_support::copy(Some(&bmap), &http.url(path), &dest);
        remote_support::assert_ok(&run);
        remote_support::assert_same(&dest, &bytes);
        let stats = http.stats();
        let gets = stats.gets(path);
        let cuts = gets.iter().filter(|r| r.bytes == cut).count();
        assert!(cuts >= 1, "round {round}: no request was cut: {gets:?}");
        assert!(
            gets.iter().skip(1).all(|r| r.range.is_some()),
            "round {round}: a retry was not a Range request: {gets:?}"
        );
        http.clear_rule(path);
        fs::remove_file(&dest).expect("remove the copy");
    }
}

#[test]
fn http_server_that_stops_answering_after_a_random_point_ends_in_a_clean_error() {
    let Some((served, http, _, zst_len)) = served_sparse() else {
        return;
    };
    let mut rng = Rng(seed("http_server_that_stops_answering"));
    let bmap = served.file("sparse.img.bmap").display().to_string();
    let dir = tempdir();
    for (path, body) in [("/sparse.img", 256 * 1024), ("/sparse.img.zst", zst_len)] {
        let cut = rng.between(1, body);
        eprintln!("{path}: cut after {cut} bytes, then every answer cut at once");
        http.set_rule(
            path,
            &format!(r#"{{"cut_after": {cut}, "cut_after_repeat": 0}}"#),
        );
        let dest = dir.path().join("out.img");
        let url = http.url(path);
        let run = remote_support::copy(Some(&bmap), &url, &dest);
        remote_support::assert_fails(&run, &[&url]);
        remote_support::assert_no_dest(&dest);
        http.clear_rule(path);
    }
}

// ---------------------------------------------------------------------------------
// 4. SIGINT, SIGTERM and SIGKILL mid-run

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Freezes `watched` at the `phase` line with most of `len` bytes unread, sends
/// `sig`, lets it go on; returns its exit code and stderr.
fn signal_mid(mut watched: Watched, phase: &str, len: u64, sig: &str) -> (Option<i32>, String) {
    assert!(
        watched.wait_line(&["\"progress\"", &format!("\"{phase}\"")]),
        "no {phase} phase was reported"
    );
    assert!(watched.freeze(), "the run ended before it could be stopped");
    let read = watched.read_chars();
    assert!(read + len / 4 <= len, "{read} of {len} bytes already read");
    assert!(kill(&watched.child.0, sig), "kill -s {sig} failed");
    watched.thaw();
    let (code, text, _) = watched.finish();
    (code, text)
}

fn interrupt_copy_to_a_new_file(sig: &str, status: i32) {
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 91);
    let out = tempdir();
    let dest = out.path().join("out.img");
    let watched = watched_copy(&[OsStr::new("--bmap"), bmap.as_os_str()], &image, &dest);
    let (code, text) = signal_mid(watched, "writing", 64 * MIB, sig);
    assert_error_line(code, &text, status, &["interrupted"]);
    assert!(
        names(out.path()).is_empty(),
        "left: {:?}",
        names(out.path())
    );
}

#[test]
fn sigint_mid_copy_to_a_new_file_exits_130_and_leaves_nothing() {
    interrupt_copy_to_a_new_file("INT", 130);
}

#[test]
fn sigterm_mid_copy_to_a_new_file_exits_143_and_leaves_nothing() {
    interrupt_copy_to_a_new_file("TERM", 143);
}

/// `verify` of a file or a loop device holding the big image, interrupted.
fn interrupt_verify(on_device: bool, sig: &str, status: i32) {
    if on_device && !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, bytes) = big_image(dir.path(), 92);
    let device = on_device.then(|| LoopDevice::new(64 * MIB, 0));
    let target = match &device {
        Some(device) => {
            fs::write(device.backing(), &bytes).expect("fill the backing file");
            device.path().to_owned()
        }
        None => image.clone(),
    };
    let ratio = device.as_ref().map(|d| d.sysfs("bdi/max_ratio"));
    let scheduler = device.as_ref().map(LoopDevice::scheduler);
    let mut cmd = bmaptool();
    cmd.args([
        "verify",
        "--progress-fd",
        "1",
        "--progress",
        "none",
        "--bmap",
    ])
    .arg(&bmap)
    .arg(&target);
    let before = names(dir.path());
    let (code, text) = signal_mid(Watched::start(cmd), "verifying", 64 * MIB, sig);
    assert_error_line(code, &text, status, &["interrupted"]);
    assert_eq!(names(dir.path()), before, "files appeared or went");
    assert!(read(&target) == bytes, "verify changed its target");
    if let Some(device) = &device {
        assert_eq!(Some(device.sysfs("bdi/max_ratio")), ratio);
        assert_eq!(Some(device.scheduler()), scheduler);
    }
}

#[test]
fn sigint_mid_verify_of_a_file_exits_130() {
    interrupt_verify(false, "INT", 130);
}

#[test]
fn sigterm_mid_verify_of_a_loop_device_exits_143_and_leaves_its_settings() {
    interrupt_verify(true, "TERM", 143);
}

#[test]
fn sigint_mid_verify_of_a_loop_device_exits_130_and_leaves_its_settings() {
    interrupt_verify(true, "INT", 130);
}

/// SIGKILL, which no handler sees, during a copy to a new file: the file is written
/// unnamed (`O_TMPFILE`) and named only once complete, so nothing is left; where the
/// file system has no `O_TMPFILE` (FUSE, NFS), the partial file stays at DEST
/// (docs/reliability.md).
#[test]
fn sigkill_mid_copy_to_a_new_file_leaves_no_file() {
    let dir = tempdir();
    let (image, bmap, bytes) = big_image(dir.path(), 93);
    let out = tempdir();
    let dest = out.path().join("out.img");
    let watched = watched_copy(&[OsStr::new("--bmap"), bmap.as_os_str()], &image, &dest);
    let pid = watched.pid();
    assert!(
        procfs::within_hang(|| procfs::has_open_in(pid, out.path()) || procfs::exited(pid)),
        "the copy never opened its destination"
    );
    let (code, _) = signal_mid(watched, "writing", 64 * MIB, "KILL");
    assert_eq!(code, None, "SIGKILL ends the process");
    assert!(
        names(out.path()).is_empty(),
        "left: {:?}",
        names(out.path())
    );
    assert_ok(&run(with_bmap(&bmap, &image, &dest)));
    assert!(read(&dest) == bytes);
}

/// A new DEST has no name until the copy is complete: a file another program puts
/// at that name meanwhile is kept, and the copy fails saying so (where the file system
/// has `O_TMPFILE`; otherwise the copy holds the name from the start).
#[test]
fn a_name_taken_during_the_copy_is_kept_and_the_copy_fails_saying_so() {
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 96);
    let out = tempdir();
    let dest = out.path().join("out.img");
    let mut watched = watched_copy(&[OsStr::new("--bmap"), bmap.as_os_str()], &image, &dest);
    freeze_while_writing(&mut watched, 64 * MIB, 16 * MIB);
    if dest.exists() {
        // No O_TMPFILE here: the copy has its name already.
        watched.thaw();
        let (code, text, _) = watched.finish();
        assert_eq!(code, Some(0), "{text}");
        return;
    }
    fs::write(&dest, b"someone else's").expect("take the name");
    watched.thaw();
    let (code, text, _) = watched.finish();
    assert_error_line(code, &text, 1, &["out.img", "File exists"]);
    assert_no_success_claim(&text);
    assert_eq!(read(&dest), b"someone else's");
    assert_eq!(names(out.path()), ["out.img"]);
}

/// SIGKILL during a copy to a block device leaves the device tuned (scheduler `none`,
/// `bdi/max_ratio` 1): docs/reliability.md says how to put them back, as done here.
#[test]
fn sigkill_mid_copy_to_a_loop_device_leaves_its_tuning_which_sysfs_restores() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let (image, bmap, _) = big_image(dir.path(), 94);
    let device = LoopDevice::new(64 * MIB, 0);
    let ratio_path = Path::new("/sys/block")
        .join(device.name())
        .join("bdi/max_ratio");
    fs::write(&ratio_path, "100").expect("reset max_ratio of our loop device");
    let watched = watched_copy(
        &[OsStr::new("--bmap"), bmap.as_os_str()],
        &image,
        device.path(),
    );
    let (code, _) = signal_mid(watched, "writing", 64 * MIB, "KILL");
    assert_eq!(code, None, "SIGKILL ends the process");
    assert_eq!(device.sysfs("bdi/max_ratio"), "1", "the tuning was undone?");
    // What the document tells the user to run.
    fs::write(&ratio_path, "100").expect("restore max_ratio");
    assert_eq!(device.sysfs("bdi/max_ratio"), "100");
}

/// `create` of a block device is refused before any output exists: there is no
/// `create` on a device to interrupt.
#[test]
fn create_refuses_a_loop_device_as_its_image_and_leaves_no_output() {
    if !need_loop_devices() {
        return;
    }
    let device = LoopDevice::new(16 * MIB, 0x33);
    let out_dir = tempdir();
    let out = out_dir.path().join("out.bmap");
    let output = run([
        OsStr::new("create"),
        OsStr::new("-o"),
        out.as_os_str(),
        device.path().as_os_str(),
    ]);
    test_support::assert_fails(
        &output,
        &[&device.path().to_string_lossy(), "not a regular file"],
    );
    assert!(
        names(out_dir.path()).is_empty(),
        "left: {:?}",
        names(out_dir.path())
    );
}

/// SIGKILL during `create -o OUT`: the bmap is written unnamed (`O_TMPFILE`) beside
/// OUT and only named (then renamed over OUT) once complete, so nothing is left: not
/// OUT, not a temporary file. (Where the file system has no `O_TMPFILE`, an empty
/// `.bmaptool-PID-*.tmp` is left: docs/reliability.md.)
#[test]
fn sigkill_mid_create_leaves_neither_the_output_nor_a_temporary_file() {
    let dir = tempdir();
    let (image, _, _) = big_image(dir.path(), 95);
    let out_dir = tempdir();
    let out = out_dir.path().join("out.bmap");
    let mut child = KillOnDrop(
        bmaptool()
            .arg("create")
            .arg("-o")
            .arg(&out)
            .arg(&image)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("bmaptool starts"),
    );
    let pid = child.0.id();
    assert!(
        procfs::within_hang(|| procfs::exited(pid) || procfs::has_open_in(pid, out_dir.path())),
        "the output was never opened"
    );
    assert!(kill(&child.0, "KILL"), "kill -s KILL failed");
    let status = test_support::wait_for(&mut child.0, procfs::HANG).expect("killed");
    let left = names(out_dir.path());
    if status.success() {
        // It finished first: then OUT is whole.
        assert_eq!(left, ["out.bmap"]);
        return;
    }
    assert!(left.is_empty(), "left after SIGKILL: {left:?}");
}
