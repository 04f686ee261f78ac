//! Every command a test runs gets the same clean environment, and every run is judged by
//! the same assertions. [`clean_command`] is the one place that decides what a program
//! under test inherits: no proxy variables (either case), no `BMAPTOOL_*` variable the
//! test did not set itself, `GNUPGHOME` on an empty directory (the user's keys never
//! count), backtraces on (a panic cannot hide), no `NO_COLOR` (colour codes would show),
//! standard input null. A test that needs one of them sets it on the command it gets.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Variables that choose proxies: removed from every command.
pub const PROXY_VARS: [&str; 10] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// The prefix of the variables the binary reads (`BMAPTOOL_TIMEOUT`, ...): removed from
/// every command, so only what a test sets reaches the binary.
pub const BMAPTOOL_VAR_PREFIX: &str = "BMAPTOOL_";

/// `program` with the clean environment described in the module's documentation.
/// Wrappers that run the binary (`sh`, `setpriv`, `/usr/bin/time`) are made here too, so
/// that the binary inherits the same environment.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(BMAPTOOL_VAR_PREFIX) {
            cmd.env_remove(name);
        }
    }
    cmd.env("GNUPGHOME", empty_gnupghome())
        .env("RUST_BACKTRACE", "1")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    cmd
}

/// An empty directory (mode 0700) for `GNUPGHOME`, the same for every test of this
/// user: `$TMPDIR/bmaptool-test-empty-gnupghome-UID`. The binary only reads a GnuPG
/// home; finding anything in this one fails the test run loudly.
pub fn empty_gnupghome() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let uid = fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let dir = std::env::temp_dir().join(format!("bmaptool-test-empty-gnupghome-{uid}"));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot make {}: {e}", dir.display()),
        }
        let meta = fs::symlink_metadata(&dir)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", dir.display()));
        assert!(
            meta.is_dir() && meta.uid() == uid,
            "{} is not a directory of uid {uid}",
            dir.display()
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod 700");
        let entries = fs::read_dir(&dir).map_or(0, Iterator::count);
        assert_eq!(
            entries,
            0,
            "the empty GnuPG home {} is not empty: something wrote into it; remove it",
            dir.display()
        );
        dir
    })
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the text (stderr) shows no panic, backtrace or Python traceback.
#[track_caller]
pub fn assert_no_panic(text: &str) {
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "Traceback"] {
        assert!(!text.contains(bad), "stderr shows {bad:?}:\n{text}");
    }
}

/// Asserts success (exit 0, nothing on stdout, no error line, no panic); returns stderr.
#[track_caller]
pub fn assert_ok(output: &Output) -> String {
    let text = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "exit status; stderr:\n{text}"
    );
    assert!(output.stdout.is_empty(), "stdout not empty");
    assert!(!text.contains("ERROR"), "error on success:\n{text}");
    assert_no_panic(&text);
    text
}

/// Asserts a clean failure: exit 1, nothing on stdout, exactly one `bmaptool: ERROR: `
/// line and no other `ERROR`, which contains every needle (case-insensitive), and no
/// panic. Returns the error line.
#[track_caller]
pub fn assert_fails(output: &Output, needles: &[&str]) -> String {
    let text = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr:\n{text}"
    );
    assert!(output.stdout.is_empty(), "stdout not empty on error");
    assert_no_panic(&text);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bmaptool: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected:\n{text}");
    assert_eq!(
        text.matches("ERROR").count(),
        1,
        "ERROR appears outside the error line:\n{text}"
    );
    let line = errors[0].to_owned();
    for needle in needles {
        assert!(
            line.to_lowercase().contains(&needle.to_lowercase()),
            "error line does not mention {needle:?}: {line}"
        );
    }
    line
}

/// `copy [EXTRA...] IMAGE DEST`: the arguments of a copy, to pass to a command.
pub fn copy_args<S: AsRef<OsStr>>(
    extra: impl IntoIterator<Item = S>,
    image: impl AsRef<OsStr>,
    dest: impl AsRef<OsStr>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["copy".into()];
    args.extend(extra.into_iter().map(|a| a.as_ref().to_owned()));
    args.push(image.as_ref().to_owned());
    args.push(dest.as_ref().to_owned());
    args
}

/// `copy --bmap BMAP IMAGE DEST`.
pub fn with_bmap(
    bmap: impl AsRef<OsStr>,
    image: impl AsRef<OsStr>,
    dest: impl AsRef<OsStr>,
) -> Vec<OsString> {
    copy_args([OsStr::new("--bmap"), bmap.as_ref()], image, dest)
}

/// Runs a setup or oracle command that must succeed; fails the test with the command
/// and its stderr otherwise. Returns its output.
#[track_caller]
pub fn succeeds(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Feeds `input` to `cmd` through a pipe (from a thread, so that a large input cannot
/// deadlock against a full output pipe) and returns what it wrote on stdout; the command
/// must succeed.
#[track_caller]
pub fn pipe_through(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("the piped command runs");
    feeder
        .join()
        .expect("the feeder thread does not panic")
        .unwrap_or_else(|e| panic!("cannot feed {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({})", out.status);
    out.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_command_removes_every_proxy_and_bmaptool_variable_of_the_test_process() {
        let cmd = clean_command("true");
        let removed: Vec<String> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for var in PROXY_VARS {
            assert!(removed.iter().any(|r| r == var), "{var} is not removed");
        }
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with(BMAPTOOL_VAR_PREFIX) {
                assert!(removed.contains(&name), "{name} is not removed");
            }
        }
    }

    #[test]
    fn clean_command_gives_an_empty_gnupghome_null_stdin_and_backtraces() {
        // `cat` reads standard input: null ends it at once (an inherited terminal or
        // pipe would block or feed it).
        let out = succeeds(
            clean_command("sh").args(["-c", "cat; echo \"[$GNUPGHOME][$RUST_BACKTRACE]\""]),
        );
        let home = empty_gnupghome();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("[{}][1]\n", home.display())
        );
        assert_eq!(fs::read_dir(home).map(Iterator::count).ok(), Some(0));
        let mode = fs::metadata(home).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_variable_the_test_sets_reaches_the_program() {
        let out = succeeds(
            clean_command("sh")
                .args(["-c", "echo \"$https_proxy\""])
                .env("https_proxy", "http://127.0.0.1:9"),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "http://127.0.0.1:9\n");
    }

    #[test]
    fn copy_args_and_with_bmap_build_the_copy_command_line() {
        assert_eq!(
            copy_args(["--nobmap"], "a.img", "/dev/x"),
            ["copy", "--nobmap", "a.img", "/dev/x"].map(OsString::from)
        );
        assert_eq!(
            with_bmap("a.bmap", "a.img", "b.img"),
            ["copy", "--bmap", "a.bmap", "a.img", "b.img"].map(OsString::from)
        );
    }
}
