//! Black-box tests of the edges of what `bmaptool` reads and where it writes (issue 10):
//! local bmaps, signatures and keyrings are capped and interruptible (`/dev/zero`, FIFOs
//! whose writer stays silent), a FIFO destination without a reader gives way to
//! SIGINT and SIGTERM, a dangling symlink as DEST gets its target created, and every
//! path may be bytes that are not UTF-8.
//!
//! Tests wait for states of the process under test (its open files, its kernel wait
//! channel, its run state in `/proc`), never for time.

#[allow(dead_code, reason = "this file uses a subset of the copy harness")]
mod copy_support;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use copy_support::{
    HANG, assert_fails, assert_no_panic, assert_ok, bmaptool, eventually, mkfifo, procfs,
    random_bytes, require, run, runs, signal, stderr, tempdir, wait_for,
};

/// How long a state may take to appear on a busy machine (bounds a hang only).
const STATE: Duration = HANG;
/// How long an interrupted process may take to be gone. "Promptly" is checked as
/// "exits after the signal without further input" (the FIFO writers stay open and
/// silent), not as a number of seconds: this only bounds a hang.
const PROMPT: Duration = HANG;

// ---------------------------------------------------------------------------------
// Fixtures

/// A non-UTF-8 name: `prefix`, a byte that is never UTF-8, `suffix`.
fn bytes_name(prefix: &str, suffix: &str) -> OsString {
    let mut name = prefix.as_bytes().to_vec();
    name.push(0xff);
    name.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(name)
}

/// A 4 MiB sparse image with data in two places; returns its bytes.
fn make_image(path: &Path) -> Vec<u8> {
    let file = File::create(path).expect("create image");
    file.set_len(4 << 20).expect("size image");
    let mut model = vec![0u8; 4 << 20];
    for (offset, seed, len) in [(0usize, 1u64, 65_536usize), (1 << 20, 2, 100_000)] {
        let data = random_bytes(seed, len);
        file.write_all_at(&data, offset as u64)
            .expect("write image");
        model[offset..offset + len].copy_from_slice(&data);
    }
    file.sync_all().expect("sync image");
    model
}

/// An image and its bmap (made by `bmaptool create`) under the given names.
fn image_and_bmap(dir: &Path, image: &OsStr, bmap: &OsStr) -> (PathBuf, PathBuf, Vec<u8>) {
    let (image, bmap) = (dir.join(image), dir.join(bmap));
    let bytes = make_image(&image);
    let out = run([
        OsStr::new("create"),
        "-o".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
    ]);
    assert_ok(&out);
    (image, bmap, bytes)
}

/// The names in `dir`, sorted, as bytes.
fn listing(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = fs::read_dir(dir)
        .expect("list directory")
        .map(|e| e.expect("entry").file_name().into_vec())
        .collect();
    names.sort();
    names
}

/// A running `bmaptool`, killed and reaped if the test ends before it does.
struct Running(Option<Child>);

impl Running {
    /// Starts `bmaptool ARGS...` with its output captured.
    fn start<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Running {
        let child = bmaptool()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts");
        Running(Some(child))
    }

    fn child(&self) -> &Child {
        self.0.as_ref().expect("running")
    }

    /// Waits up to `limit` for the exit (failing the test, naming `after`, if it does
    /// not come) and collects the output.
    #[track_caller]
    fn finish(mut self, limit: Duration, after: &str) -> Output {
        let mut child = self.0.take().expect("running");
        if wait_for(&mut child, limit).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bmaptool still ran {} s after {after}", limit.as_secs());
        }
        child.wait_with_output().expect("collect output")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asserts the exit of an interrupted run: `code`, the one interruption line, no panic.
#[track_caller]
fn assert_interrupted(output: &Output, code: i32) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr:\n{text}");
    assert_no_panic(&text);
    assert!(
        text.contains("bmaptool: ERROR: interrupted, exiting"),
        "no interruption message:\n{text}"
    );
}

// ---------------------------------------------------------------------------------
// The process under test, seen through /proc (test_support::procfs)

fn wchan(child: &Child) -> String {
    procfs::wchan(child.id())
}

fn waits_for_fifo_partner(child: &Child) -> bool {
    procfs::waits_for_fifo_partner(child.id())
}

fn run_state(child: &Child) -> Option<char> {
    procfs::run_state(child.id())
}

fn has_open(child: &Child, path: &Path) -> bool {
    procfs::has_open(child.id(), path)
}

fn exited(child: &Child) -> bool {
    procfs::exited(child.id())
}

// ---------------------------------------------------------------------------------
// Unbounded reads

#[test]
fn bmap_dev_zero_is_refused_at_the_128_mib_cap_naming_the_file() {
    let dir = tempdir();
    let (image, _, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.bmap".as_ref());
    let dest = dir.path().join("out.img");
    let output = Running::start([
        OsStr::new("copy"),
        "--bmap".as_ref(),
        "/dev/zero".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ])
    .finish(STATE, "it started reading /dev/zero as the bmap");
    assert_fails(
        &output,
        &[
            "bmap file '/dev/zero'",
            "larger than 128.0 MiB (134217728 bytes)",
        ],
    );
    assert!(!dest.exists(), "a destination was created");
}

#[test]
fn bmap_sig_and_keyring_dev_zero_are_refused_at_their_caps() {
    let dir = tempdir();
    let (image, bmap, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.bmap".as_ref());
    let dest = dir.path().join("out.img");
    let out = run([
        OsStr::new("copy"),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        "--bmap-sig".as_ref(),
        "/dev/zero".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_fails(
        &out,
        &[
            "signature file '/dev/zero'",
            "larger than 1.0 MiB (1048576 bytes)",
        ],
    );
    // The keyring is read once a signature is found; the signature is not looked at yet.
    let sig = dir.path().join("a.bmap.sig");
    fs::write(&sig, b"not a signature").expect("write signature");
    let out = run([
        OsStr::new("copy"),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        "--keyring".as_ref(),
        "/dev/zero".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_fails(
        &out,
        &[
            "keyring '/dev/zero'",
            "larger than 256.0 MiB (268435456 bytes)",
        ],
    );
    assert!(!dest.exists(), "a destination was created");
}

/// The decision pinned here: a signal that arrives while `/dev/zero` is being read as
/// the bmap stops the read at the next chunk (exit 130); if the read reached the cap
/// first, the cap's error stands. The test stops the process while it reads, so that
/// the signal is sure to come first when it was caught reading.
#[test]
fn sigint_while_reading_bmap_dev_zero_exits_130_before_the_cap() {
    let dir = tempdir();
    let (image, _, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.bmap".as_ref());
    let dest = dir.path().join("out.img");
    let running = Running::start([
        OsStr::new("copy"),
        "--bmap".as_ref(),
        "/dev/zero".as_ref(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    let child = running.child();
    assert!(
        eventually(STATE, || has_open(child, Path::new("/dev/zero"))
            || exited(child)),
        "bmaptool never opened /dev/zero"
    );
    signal(child, "STOP");
    assert!(
        eventually(STATE, || matches!(run_state(child), Some('T' | 'Z') | None)),
        "bmaptool did not stop"
    );
    // Stopped with /dev/zero still open: the read loop has not returned, so the flag
    // the signal raises on resuming decides the outcome.
    let caught_reading = run_state(child) == Some('T') && has_open(child, Path::new("/dev/zero"));
    signal(child, "INT");
    signal(child, "CONT");
    let output = running.finish(PROMPT, "SIGINT");
    if caught_reading {
        assert_interrupted(&output, 130);
    } else {
        // It reached the cap before it could be stopped: the cap's refusal.
        assert_fails(&output, &["bmap file '/dev/zero'", "128.0 MiB"]);
    }
    assert!(!dest.exists(), "a destination was created");
}

/// A FIFO named as `option`, whose writer connects and then stays silent, stops the
/// run at `sig` with `code`, leaving nothing behind.
fn silent_fifo_writer(option: Option<&str>, sig: &str, code: i32) {
    let dir = tempdir();
    let (image, bmap, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.bmap".as_ref());
    let fifo = dir.path().join("input.fifo");
    mkfifo(&fifo);
    let dest = dir.path().join("out.img");
    let mut args: Vec<OsString> = vec!["copy".into()];
    match option {
        // The FIFO is the image.
        None => args.extend(["--nobmap".into(), fifo.clone().into()]),
        Some(option) => {
            if option != "--bmap" {
                args.extend(["--bmap".into(), bmap.into()]);
            }
            if option == "--keyring" {
                // The keyring is read once a signature is found.
                let sig = dir.path().join("a.sig");
                fs::write(&sig, b"not a signature").expect("write signature");
                args.extend(["--bmap-sig".into(), sig.into()]);
            }
            args.extend([option.into(), fifo.clone().into(), image.into()]);
        }
    }
    args.push(dest.clone().into());
    let before = listing(dir.path());
    let running = Running::start(&args);
    // A non-blocking open for writing succeeds only once bmaptool has the read end.
    let mut writer = None;
    assert!(
        eventually(STATE, || {
            writer = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .ok();
            writer.is_some() || exited(running.child())
        }),
        "bmaptool never opened the FIFO"
    );
    if writer.is_none() {
        let output = running.finish(PROMPT, "its exit");
        panic!(
            "bmaptool exited before reading the FIFO:\n{}",
            stderr(&output)
        );
    }
    signal(running.child(), sig);
    let output = running.finish(PROMPT, sig);
    drop(writer);
    assert_interrupted(&output, code);
    assert_eq!(listing(dir.path()), before, "something was left behind");
}

#[test]
fn sigint_while_a_bmap_fifo_writer_stays_silent_exits_130() {
    silent_fifo_writer(Some("--bmap"), "INT", 130);
}

#[test]
fn sigterm_while_a_bmap_sig_fifo_writer_stays_silent_exits_143() {
    silent_fifo_writer(Some("--bmap-sig"), "TERM", 143);
}

#[test]
fn sigint_while_a_keyring_fifo_writer_stays_silent_exits_130() {
    silent_fifo_writer(Some("--keyring"), "INT", 130);
}

#[test]
fn sigint_while_an_image_fifo_writer_stays_silent_exits_130() {
    silent_fifo_writer(None, "INT", 130);
}

/// A FIFO as DEST that no one reads: bmaptool waits in `open` until `sig`.
fn readerless_fifo_dest(sig: &str, code: i32) {
    let dir = tempdir();
    let (image, _, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.img.bmap".as_ref());
    let fifo = dir.path().join("dest.fifo");
    mkfifo(&fifo);
    let before = listing(dir.path());
    let running = Running::start([OsStr::new("copy"), image.as_os_str(), fifo.as_os_str()]);
    let child = running.child();
    assert!(
        eventually(STATE, || waits_for_fifo_partner(child) || exited(child)),
        "bmaptool never waited for a reader of the FIFO (wait channel {:?})",
        wchan(child)
    );
    assert!(!exited(child), "bmaptool exited before opening the FIFO");
    signal(child, sig);
    let output = running.finish(PROMPT, sig);
    assert_interrupted(&output, code);
    assert_eq!(listing(dir.path()), before, "something was left behind");
    assert!(
        fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo()),
        "the FIFO is gone"
    );
}

#[test]
fn sigint_while_a_readerless_fifo_dest_blocks_open_exits_130() {
    readerless_fifo_dest("INT", 130);
}

#[test]
fn sigterm_while_a_readerless_fifo_dest_blocks_open_exits_143() {
    readerless_fifo_dest("TERM", 143);
}

// ---------------------------------------------------------------------------------
// Dangling symlinks as DEST

#[test]
fn dangling_symlink_dest_gets_its_target_created_through_a_chain_of_links() {
    let dir = tempdir();
    let (image, _, bytes) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.img.bmap".as_ref());
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    // first -> sub/second -> ../target.img (relative links, resolved from their directory)
    std::os::unix::fs::symlink("sub/second", dir.path().join("first")).expect("symlink");
    std::os::unix::fs::symlink("../target.img", dir.path().join("sub/second")).expect("symlink");
    let out = run([
        OsStr::new("copy"),
        image.as_os_str(),
        dir.path().join("first").as_os_str(),
    ]);
    assert_ok(&out);
    let target = dir.path().join("target.img");
    assert_eq!(fs::read(&target).expect("the target exists"), bytes);
    assert_eq!(
        fs::read_link(dir.path().join("first")).expect("still a link"),
        Path::new("sub/second")
    );
}

#[test]
fn failed_copy_to_a_dangling_symlink_removes_the_target_and_keeps_the_link() {
    let dir = tempdir();
    let (image, _, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.img.bmap".as_ref());
    // Corrupt a mapped byte after the bmap was made: the copy fails its checksum.
    let file = OpenOptions::new()
        .write(true)
        .open(&image)
        .expect("open image");
    file.write_all_at(b"\x00\x01\x02", 1 << 20)
        .expect("corrupt image");
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink("target.img", &link).expect("symlink");
    let out = run([OsStr::new("copy"), image.as_os_str(), link.as_os_str()]);
    assert_fails(&out, &["checksum"]);
    assert!(
        !dir.path().join("target.img").exists(),
        "the half-written target was left behind"
    );
    assert_eq!(
        fs::read_link(&link).expect("the link is kept"),
        Path::new("target.img")
    );
}

#[test]
fn dangling_symlink_into_dev_is_refused_as_a_missing_device() {
    let dir = tempdir();
    let (image, _, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.img.bmap".as_ref());
    let missing = Path::new("/dev/bmaptool-edge-test-no-such-device");
    assert!(!missing.exists(), "{} exists", missing.display());
    let link = dir.path().join("card");
    std::os::unix::fs::symlink(missing, &link).expect("symlink");
    let out = run([OsStr::new("copy"), image.as_os_str(), link.as_os_str()]);
    let created = missing.exists();
    let _ = fs::remove_file(missing);
    assert_fails(&out, &["does not exist", "under /dev"]);
    assert!(!created, "a regular file was created under /dev");
}

// ---------------------------------------------------------------------------------
// Paths that are not UTF-8

#[test]
fn copy_takes_image_dest_bmap_and_psplash_paths_that_are_not_utf8() {
    let dir = tempdir();
    let (image, bmap, bytes) = image_and_bmap(
        dir.path(),
        &bytes_name("im", ".img"),
        &bytes_name("b", ".bmap"),
    );
    let dest = dir.path().join(bytes_name("de", ".img"));
    let psplash = dir.path().join(bytes_name("ps", ".fifo"));
    mkfifo(&psplash);
    let out = run([
        OsStr::new("copy"),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        "--psplash-pipe".as_ref(),
        psplash.as_os_str(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_ok(&out);
    assert!(!stderr(&out).contains("not a pipe"), "{}", stderr(&out));
    assert_eq!(fs::read(&dest).expect("dest written"), bytes);
    // The shown names are the lossy forms.
    assert!(
        stderr(&out).contains("copying image 'im\u{fffd}.img'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bmap_is_discovered_beside_an_image_whose_path_is_not_utf8() {
    let dir = tempdir();
    let sub = dir.path().join(bytes_name("dir", ""));
    fs::create_dir(&sub).expect("mkdir");
    let (image, _, bytes) = image_and_bmap(
        &sub,
        &bytes_name("im", ".img.raw"),
        &bytes_name("im", ".img.bmap"),
    );
    // IMAGE.bmap is missing: discovery strips one extension at a time.
    let dest = dir.path().join("out.img");
    let out = run([OsStr::new("copy"), image.as_os_str(), dest.as_os_str()]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("discovered bmap file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&dest).expect("dest written"), bytes);
}

#[test]
fn create_takes_image_and_output_paths_that_are_not_utf8() {
    let dir = tempdir();
    let image = dir.path().join(bytes_name("im", ".img"));
    let bytes = make_image(&image);
    let bmap = dir.path().join(bytes_name("out", ".bmap"));
    let out = run([
        OsStr::new("create"),
        "-o".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
    ]);
    assert_ok(&out);
    let parsed = bmap::format::parse(&fs::read(&bmap).expect("bmap written")).expect("valid bmap");
    assert_eq!(parsed.bmap.image_size(), bytes.len() as u64);
    // Without -o the bmap goes to stdout, the same bytes.
    let stdout = run([OsStr::new("create"), image.as_os_str()]);
    assert!(stdout.status.success(), "{}", stderr(&stdout));
    assert_eq!(stdout.stdout, fs::read(&bmap).expect("bmap"));
    // A missing non-UTF-8 image: one readable error line.
    let missing = dir.path().join(bytes_name("none", ".img"));
    let out = run([OsStr::new("create"), missing.as_os_str()]);
    assert_fails(&out, &["none\u{fffd}.img"]);
}

#[test]
fn errors_show_non_utf8_paths_lossily_and_only_utf8_arguments_can_be_urls() {
    let dir = tempdir();
    let (image, _, _) = image_and_bmap(dir.path(), "a.img".as_ref(), "a.img.bmap".as_ref());
    let dest = dir.path().join("out.img");
    let missing = dir.path().join(bytes_name("none", ".img"));
    let out = run([OsStr::new("copy"), missing.as_os_str(), dest.as_os_str()]);
    assert_fails(&out, &["none\u{fffd}.img"]);
    let out = run([
        OsStr::new("copy"),
        "--bmap".as_ref(),
        missing.as_os_str(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_fails(&out, &["bmap file", "none\u{fffd}.img"]);
    // Not UTF-8, so not a URL: a local path that does not exist.
    let url_like = bytes_name("http://127.0.0.1:9/", ".img");
    let out = run([OsStr::new("copy"), url_like.as_os_str(), dest.as_os_str()]);
    assert_fails(
        &out,
        &["cannot open image", "9/\u{fffd}.img", "no such file"],
    );
    assert!(!dest.exists(), "a destination was created");
}

// ---------------------------------------------------------------------------------
// Signatures and keyrings under non-UTF-8 names (real gpg)

/// A temporary GnuPG home with one signing key; its agent is stopped on drop.
struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Option<Gpg> {
        if !require(
            runs("gpg", &["--version"]) && runs("gpgconf", &["--version"]),
            "gpg and gpgconf (GnuPG 2)",
        ) {
            return None;
        }
        let gpg = Gpg {
            dir: tempfile::Builder::new()
                .prefix("bmt-edge-gpg-")
                .tempdir()
                .expect("GnuPG home"),
        };
        gpg.run([
            "--quick-gen-key",
            "Edge <edge@example.org>",
            "ed25519",
            "sign",
            "never",
        ]);
        Some(gpg)
    }

    fn run<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.dir.path())
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase=",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("gpg runs");
        assert!(
            out.status.success(),
            "gpg failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.dir.path())
            .args(["--kill", "all"])
            .status();
    }
}

#[test]
fn signature_and_keyring_paths_that_are_not_utf8_verify() {
    let Some(gpg) = Gpg::new() else { return };
    let dir = tempdir();
    let (image, bmap, bytes) = image_and_bmap(
        dir.path(),
        &bytes_name("im", ".img"),
        &bytes_name("b", ".bmap"),
    );
    let keyring = dir.path().join(bytes_name("keys", ".gpg"));
    fs::write(&keyring, gpg.run(["--export", "edge@example.org"])).expect("write keyring");
    // Discovered beside the bmap: BMAP.asc.
    let mut asc = bmap.clone().into_os_string();
    asc.push(".asc");
    gpg.run([
        OsStr::new("--armor"),
        "--detach-sign".as_ref(),
        "--output".as_ref(),
        asc.as_os_str(),
        bmap.as_os_str(),
    ]);
    let dest = dir.path().join(bytes_name("de", ".img"));
    let copy = |extra: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec![
            "copy".as_ref(),
            "--bmap".as_ref(),
            bmap.as_os_str(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
        ];
        args.extend(extra.iter().copied());
        args.extend([image.as_os_str(), dest.as_os_str()]);
        bmaptool()
            .env("GNUPGHOME", gpg.dir.path())
            .args(args)
            .output()
            .expect("runs")
    };
    let out = copy(&[]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("discovered signature file"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("successfully verified"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&dest).expect("dest"), bytes);
    // Named with --bmap-sig, under another non-UTF-8 name.
    let sig = dir.path().join(bytes_name("s", ".sig"));
    fs::rename(&asc, &sig).expect("rename signature");
    let out = copy(&["--bmap-sig".as_ref(), sig.as_os_str()]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("successfully verified"),
        "{}",
        stderr(&out)
    );
}
