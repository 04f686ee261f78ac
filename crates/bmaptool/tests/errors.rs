//! Black-box tests of how `bmaptool` reports errors (issue 11, item 6): one line that
//! names each cause once (the library leaves its source to the chain, the command
//! line joins the chain), advice in the words of what most likely went wrong, the
//! output path rather than a temporary file, and Ctrl-C obeyed during the wait
//! between two attempts to reach a server.
//!
//! Tests wait for states (the server's count of requests, the process's exit), never
//! for time.

mod common;
#[allow(
    clippy::duplicate_mod,
    reason = "both harnesses include common/testdata.rs until they become one (issue 11, item 7)"
)]
mod remote_support;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::procfs;
use common::{Scratch, assert_error, random_bytes, stderr_lines};
use remote_support::{HttpServer, Served};

/// Removes the variables that choose proxies: the test servers are on 127.0.0.1.
trait NoProxy {
    fn envs_remove_proxies(&mut self) -> &mut Self;
}

impl NoProxy for assert_cmd::Command {
    fn envs_remove_proxies(&mut self) -> &mut Self {
        for var in remote_support::PROXY_VARS {
            self.env_remove(var);
        }
        self
    }
}

/// The message of the one error line, without `bmaptool: ERROR: `.
fn error_message(output: &Output) -> String {
    let lines = stderr_lines(output);
    let line = lines.last().cloned().unwrap_or_default();
    line.strip_prefix("bmaptool: ERROR: ")
        .unwrap_or_else(|| panic!("not an error line: {line:?}"))
        .to_owned()
}

/// Asserts that no part of the chain (the message split at ": ") says again what an
/// earlier part said, and that `phrase` occurs exactly once.
#[track_caller]
fn assert_said_once(message: &str, phrase: &str) {
    assert_eq!(
        message.matches(phrase).count(),
        1,
        "{phrase:?} should occur once in: {message}"
    );
    let parts: Vec<&str> = message.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        for earlier in &parts[..i] {
            assert!(
                !earlier.contains(part) && !part.contains(earlier),
                "{part:?} repeats {earlier:?} in: {message}"
            );
        }
    }
}

/// A 1 MiB sparse image with two mapped pieces of pseudo-random bytes from `seed`.
fn sparse_image(path: &Path, seed: u64) {
    let file = File::create(path).expect("create the image");
    file.set_len(1 << 20).expect("size the image");
    file.write_all_at(&random_bytes(seed, 8192), 0)
        .expect("write the first piece");
    file.write_all_at(&random_bytes(seed + 1, 8192), 512 * 1024)
        .expect("write the second piece");
}

/// `bmaptool create -o BMAP IMAGE`, which must succeed.
fn create_bmap(image: &Path, bmap: &Path) {
    let output = common::bmaptool()
        .arg("create")
        .arg("-o")
        .arg(bmap)
        .arg(image)
        .output()
        .expect("bmaptool runs");
    assert!(
        output.status.success(),
        "create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------
// Each cause once

/// "cannot open the image: cannot open image 'x': ..." said it twice.
#[test]
fn missing_image_names_the_image_and_the_os_error_once() {
    let dir = Scratch::fast();
    let image = dir.path().join("missing.img");
    let output = common::bmaptool()
        .arg("copy")
        .arg("--nobmap")
        .arg(&image)
        .arg(dir.path().join("out.img"))
        .output()
        .expect("bmaptool runs");
    assert_error(&output, &format!("'{}'", image.display()));
    let message = error_message(&output);
    assert_said_once(&message, "cannot open");
    assert_said_once(&message, "No such file or directory");
    assert!(
        !dir.path().join("out.img").exists(),
        "no output left behind"
    );
}

#[test]
fn missing_bmap_names_the_bmap_and_the_os_error_once() {
    let dir = Scratch::fast();
    let image = dir.path().join("disk.img");
    sparse_image(&image, 1);
    let bmap = dir.path().join("missing.bmap");
    let output = common::bmaptool()
        .arg("copy")
        .arg("--bmap")
        .arg(&bmap)
        .arg(&image)
        .arg(dir.path().join("out.img"))
        .output()
        .expect("bmaptool runs");
    assert_error(
        &output,
        &format!("cannot open bmap file '{}'", bmap.display()),
    );
    let message = error_message(&output);
    assert_said_once(&message, "cannot open");
    assert_said_once(&message, "No such file or directory");
}

#[test]
fn unopenable_destination_names_it_and_the_os_error_once() {
    let dir = Scratch::fast();
    let image = dir.path().join("disk.img");
    sparse_image(&image, 2);
    let dest = dir.path().join("no-such-dir").join("out.img");
    let output = common::bmaptool()
        .arg("copy")
        .arg("--nobmap")
        .arg(&image)
        .arg(&dest)
        .output()
        .expect("bmaptool runs");
    assert_error(&output, &format!("'{}'", dest.display()));
    let message = error_message(&output);
    assert_said_once(&message, "No such file or directory");
}

/// "cannot open bmap file 'URL': 'URL' was not found" named the URL twice.
#[test]
fn missing_remote_bmap_and_signature_name_the_url_once() {
    let served = Served::new();
    let Some(http) = HttpServer::start(served.root()) else {
        return;
    };
    let dir = Scratch::fast();
    let image = dir.path().join("disk.img");
    sparse_image(&image, 4);
    let bmap_url = http.url("/missing.bmap");
    let output = common::bmaptool()
        .arg("copy")
        .arg("--bmap")
        .arg(&bmap_url)
        .arg(&image)
        .arg(dir.path().join("out.img"))
        .envs_remove_proxies()
        .output()
        .expect("bmaptool runs");
    assert_error(&output, "was not found");
    assert_said_once(&error_message(&output), &bmap_url);
    let sig_url = http.url("/missing.sig");
    let output = common::bmaptool()
        .arg("copy")
        .arg("--bmap")
        .arg(served.file("test.image.bmap"))
        .arg("--bmap-sig")
        .arg(&sig_url)
        .arg(served.file("test.image"))
        .arg(dir.path().join("out2.img"))
        .envs_remove_proxies()
        .output()
        .expect("bmaptool runs");
    assert_error(&output, "not found");
    assert_said_once(&error_message(&output), &sig_url);
}

#[test]
fn bmap_that_is_not_xml_says_so_once_with_the_parser_detail() {
    let dir = Scratch::fast();
    let image = dir.path().join("disk.img");
    sparse_image(&image, 3);
    let bmap = dir.path().join("disk.bmap");
    fs::write(&bmap, "<bmap version='2.0'><ImageSize>").expect("write the bmap");
    let output = common::bmaptool()
        .arg("copy")
        .arg("--bmap")
        .arg(&bmap)
        .arg(&image)
        .arg(dir.path().join("out.img"))
        .output()
        .expect("bmaptool runs");
    assert_error(&output, "not a valid XML file: ");
    assert_said_once(&error_message(&output), "not a valid XML file");
}

// ---------------------------------------------------------------------------------
// Advice

/// The mismatch used to end with "the image is corrupt or does not belong to this
/// bmap"; the likely cause is a bmap made for another image, and nothing suggests
/// turning verification off.
#[test]
fn checksum_mismatch_says_the_bmap_likely_belongs_to_another_image() {
    let dir = Scratch::fast();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    sparse_image(&a, 10);
    sparse_image(&b, 20);
    let bmap = dir.path().join("a.bmap");
    create_bmap(&a, &bmap);
    let dest = dir.path().join("out.img");
    let output = common::bmaptool()
        .arg("-q")
        .arg("copy")
        .arg("--bmap")
        .arg(&bmap)
        .arg(&b)
        .arg(&dest)
        .output()
        .expect("bmaptool runs");
    assert_error(&output, "checksum mismatch for blocks range ");
    let message = error_message(&output);
    assert!(
        message.contains("most likely the bmap belongs to another image"),
        "{message}"
    );
    assert!(!message.contains("--no-verify"), "{message}");
    assert!(!dest.exists(), "the new destination file is removed");
}

// ---------------------------------------------------------------------------------
// create -o

/// The error named tempfile's `.bmaptool-XXXX.tmp` beside the output, a file the user
/// never asked for.
#[test]
fn create_into_an_unwritable_directory_names_the_output_path() {
    let dir = Scratch::fast();
    let image = dir.path().join("disk.img");
    sparse_image(&image, 30);
    // Root writes anywhere a mode allows nothing: a read-only mount stops it too.
    let (_mount, out_dir) = if common::is_root() {
        let Some(ro) = Scratch::mount_tmpfs("ro,size=64k") else {
            return;
        };
        let path = ro.path().to_owned();
        (Some(ro), path)
    } else {
        let path = dir.path().join("locked");
        fs::create_dir(&path).expect("mkdir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o555)).expect("chmod 555");
        (None, path)
    };
    let output_path = out_dir.join("disk.bmap");
    let output = common::bmaptool()
        .arg("create")
        .arg("-o")
        .arg(&output_path)
        .arg(&image)
        .output()
        .expect("bmaptool runs");
    assert_error(
        &output,
        &format!("cannot create the output file '{}'", output_path.display()),
    );
    let message = error_message(&output);
    assert!(
        !message.contains(".bmaptool-") && !message.contains(".tmp"),
        "the temporary file is named: {message}"
    );
    assert!(
        fs::read_dir(&out_dir).expect("list").next().is_none(),
        "nothing left in {}",
        out_dir.display()
    );
}

// ---------------------------------------------------------------------------------
// Ctrl-C between two attempts

/// With 100 retries allowed and every range request cut before its first byte, the
/// waits between attempts grow to 8 s each (13 minutes of attempts in all). A SIGINT
/// during them ends the copy at once: exit 130, no further attempt, no output left.
/// (`crates/bmap/tests/remote_retry.rs` pins that the wait itself obeys the flag; the
/// command line also stopped promptly before, by leaving the reader thread behind.)
#[test]
fn ctrl_c_during_an_http_retry_backoff_exits_130_at_once() {
    let served = Served::new();
    let Some(http) = HttpServer::start(served.root()) else {
        return;
    };
    let dir = Scratch::fast();
    // The bmap comes through a FIFO, so that the image is opened (one probe request,
    // which must succeed) before the rule that cuts every later request is set.
    let fifo = dir.path().join("test.image.bmap");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo {}", fifo.display());
    let dest = dir.path().join("out.img");
    let mut child = remote_support::bmaptool()
        .env("BMAPTOOL_RETRIES", "100")
        .arg("copy")
        .arg("--bmap")
        .arg(&fifo)
        .arg(http.url("/test.image"))
        .arg(&dest)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bmaptool runs");
    let pid = child.id();
    let probed =
        procfs::within_hang(|| !http.stats().gets("/test.image").is_empty() || procfs::exited(pid));
    assert!(probed && !procfs::exited(pid), "the image was not opened");
    http.set_rule("/test.image", r#"{"cut_after": 0}"#);
    // Opening the FIFO waits for the binary to open its end.
    let mut writer = File::options()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO");
    writer
        .write_all(&fs::read(served.file("test.image.bmap")).expect("read the bmap"))
        .expect("write the bmap");
    drop(writer);
    // The probe, then three cut requests: the process now waits 2 s or more before
    // its next attempt (or is making one).
    let retrying =
        procfs::within_hang(|| http.stats().gets("/test.image").len() >= 4 || procfs::exited(pid));
    assert!(retrying && !procfs::exited(pid), "no retries seen");
    let before = http.stats().gets("/test.image").len();
    let sent = Command::new("kill")
        .args(["-s", "INT", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -s INT {pid}");
    let gone = procfs::within_hang(|| procfs::exited(pid));
    if !gone {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(gone, "still running long after SIGINT; stderr:\n{stderr}");
    assert_eq!(output.status.code(), Some(130), "stderr:\n{stderr}");
    assert!(stderr.contains("interrupted"), "stderr:\n{stderr}");
    common::assert_no_panic(&stderr);
    // At most the attempt already under way when the signal came.
    let after = http.stats().gets("/test.image").len();
    assert!(
        after <= before + 1,
        "{} more attempts after SIGINT",
        after - before
    );
    assert!(!dest.exists(), "the new destination file is removed");
}
