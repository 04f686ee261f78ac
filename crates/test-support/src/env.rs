//! The environment rule: a test that needs root, loop devices, a mount, a program or
//! data asks [`require`] first. When the need is not met the test is skipped with a
//! note on stderr, unless `BMAPTOOL_TEST_STRICT=1` (CI), where it fails. The probes the
//! tests pass to it live here too.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variable that turns a missing environment into test failures.
pub const STRICT_VAR: &str = "BMAPTOOL_TEST_STRICT";

/// The Debian `bmap-tools` reference (3.6), a Python script.
pub const REFERENCE: &str = "/usr/bin/bmaptool";

/// Whether a missing environment must fail tests (`BMAPTOOL_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var_os(STRICT_VAR).is_some_and(|v| v == "1")
}

/// `true` when `cond` holds; otherwise skips (`false`, with a note on stderr) or, in
/// strict mode, fails naming `what` is missing.
#[track_caller]
pub fn require(cond: bool, what: &str) -> bool {
    if cond {
        return true;
    }
    assert!(
        !strict(),
        "{STRICT_VAR}=1 and this environment lacks {what}"
    );
    eprintln!("SKIPPED: this environment lacks {what} (set {STRICT_VAR}=1 to fail instead)");
    false
}

/// Whether the tests run as root (the owner of `/proc/self` is the effective uid).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether `program args...` runs and succeeds (stdin, stdout and stderr null).
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The full path of an executable on PATH (or in the sbin directories, which a
/// non-root PATH often lacks).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A program some tests need (`zstd`, `openssl`, ...).
#[track_caller]
pub fn need_tool(tool: &str) -> bool {
    require(which(tool).is_some(), &format!("the {tool} program"))
}

/// `python3` (the test servers, the golden image generator, SEEK_DATA probes).
#[track_caller]
pub fn need_python() -> bool {
    require(runs("python3", &["--version"]), "python3")
}

/// Root, `losetup` and the loop control device.
#[track_caller]
pub fn need_loop_devices() -> bool {
    require(
        is_root() && Path::new("/dev/loop-control").exists() && runs("losetup", &["--version"]),
        "root and loop devices (losetup, /dev/loop-control)",
    )
}

/// Root and `mount` (for tmpfs mounts).
#[track_caller]
pub fn need_mount() -> bool {
    require(
        is_root() && runs("mount", &["--version"]),
        "root and mount (to mount a tmpfs)",
    )
}

/// Whether the reference tool and the Python it needs are installed.
pub fn have_reference() -> bool {
    Path::new(REFERENCE).exists() && runs(REFERENCE, &["--version"])
}

/// The reference tool.
#[track_caller]
pub fn need_reference() -> bool {
    require(
        have_reference(),
        "the reference bmaptool (Debian bmap-tools) at /usr/bin/bmaptool",
    )
}

/// The reference's own test data and golden output, `../shared/conformance` beside
/// the repository; present only where the project is developed.
pub fn conformance_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance"
    ))
}

/// What tests that read `../shared/conformance` say when it is missing.
pub const CONFORMANCE_NEED: &str = "the reference 3.9's test data and golden output in \
    ../shared/conformance beside the repository (extra conformance checks)";

/// Whether `../shared/conformance` is there (the extra tests against the reference's
/// own data); otherwise skipped or, strict, failed.
#[track_caller]
pub fn need_conformance() -> bool {
    let present = conformance_path()
        .join("reference-test-data/test.image.gz")
        .is_file();
    require(present, CONFORMANCE_NEED)
}

/// `../shared/conformance/reference-test-data`; `None` (skipped, or failing when
/// strict) when it is not beside the repository.
#[track_caller]
pub fn reference_test_data() -> Option<PathBuf> {
    let dir = conformance_path().join("reference-test-data");
    require(
        dir.is_dir(),
        "../shared/conformance (the reference's test data)",
    )
    .then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a test of its own: the probe the two tests below run in a child process,
    /// with and without `BMAPTOOL_TEST_STRICT=1`.
    #[test]
    #[ignore = "run by the environment-rule tests in a child process"]
    fn probe_a_missing_need() {
        assert!(!require(false, "a probe's missing need"));
    }

    /// Runs [`probe_a_missing_need`] in a child test process with `strict` as the value
    /// of `BMAPTOOL_TEST_STRICT` (removed when `None`).
    fn probe(strict: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
        cmd.args([
            "--ignored",
            "--exact",
            "env::tests::probe_a_missing_need",
            "--nocapture",
        ]);
        match strict {
            Some(value) => cmd.env(STRICT_VAR, value),
            None => cmd.env_remove(STRICT_VAR),
        };
        cmd.stdin(Stdio::null())
            .output()
            .expect("the test binary runs")
    }

    #[test]
    fn a_missing_need_skips_with_a_note_when_not_strict() {
        for strict in [None, Some("0")] {
            let out = probe(strict);
            let text = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{strict:?}: {text}");
            assert!(
                text.contains("SKIPPED: this environment lacks a probe's missing need"),
                "{strict:?}: no note:\n{text}"
            );
        }
    }

    #[test]
    fn a_missing_need_fails_the_test_when_strict() {
        let out = probe(Some("1"));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "the probe passed under strict:\n{text}"
        );
        assert!(
            text.contains(
                "BMAPTOOL_TEST_STRICT=1 and this environment lacks a probe's missing need"
            ),
            "{text}"
        );
    }
}
