//! Black-box tests of OpenPGP-signed bmaps (issue 7): the real `bmaptool copy` binary
//! with the reference's signed test data, and with keys, detached signatures and
//! clearsigned bmaps made by the real `gpg` at test time in a temporary GnuPG home;
//! signatures discovered beside local bmaps and beside bmaps on the test HTTP server
//! (`tests/fixtures/httpd.py`).
//!
//! Every signature failure must be one error line, exit status 1, and no byte written:
//! the destination must not even exist.
//!
//! Tests that need `gpg`, `gzip`, `sha256sum` or `python3` skip when those are missing,
//! unless `BMAPTOOL_TEST_STRICT=1`, where they fail. Each test makes its own GnuPG home
//! and kills its gpg-agent when it ends (even when it fails).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

// ---------------------------------------------------------------------------------
// The environment rule

/// The variable that turns a missing environment into test failures.
const STRICT_VAR: &str = "BMAPTOOL_TEST_STRICT";

fn strict() -> bool {
    std::env::var_os(STRICT_VAR).is_some_and(|v| v == "1")
}

/// `true` when `cond` holds; otherwise skips (`false`, with a note) or, in strict mode,
/// fails naming what is missing.
#[track_caller]
fn require(cond: bool, what: &str) -> bool {
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

/// Whether `program args...` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `gzip` and `sha256sum` (to unpack the test image and to fix a bmap's checksum).
#[track_caller]
fn need_tools() -> bool {
    require(
        runs("gzip", &["--version"]) && runs("sha256sum", &["--version"]),
        "gzip and sha256sum",
    )
}

/// `gpg` and `gpgconf` (and the basic tools).
#[track_caller]
fn need_gpg() -> bool {
    need_tools()
        && require(
            runs("gpg", &["--version"]) && runs("gpgconf", &["--version"]),
            "gpg and gpgconf (GnuPG 2)",
        )
}

/// `python3` (the test HTTP server).
#[track_caller]
fn need_python() -> bool {
    require(runs("python3", &["--version"]), "python3")
}

// ---------------------------------------------------------------------------------
// Data

/// Size of `test.image`.
const TEST_IMAGE_SIZE: usize = 821_752;
/// Block size of `test.image`'s bmaps.
const BLOCK: usize = 4096;
/// The key of the reference's keybox (expired 2024-06-12, after it signed).
const REF_KEY: &str = "927FF9746434704C5774BE648D49DFB1163BDFB4";
/// The key that made the reference's wrong-key signature (not in the keybox).
const REF_WRONG_KEY: &str = "B58A01EDEC4BA009366352C078C1F1FE48CA7604";
/// The user id of the reference key.
const REF_UID: &str =
    "Testkey Bmap-Tool (Do not use, private key published!) <invalid@example.org>";

/// `../shared/conformance`, read-only.
fn conformance() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance"
    ))
}

/// A file of the reference's test data.
fn reference(name: &str) -> PathBuf {
    conformance().join("reference-test-data").join(name)
}

/// The bytes of `test.image` (unpacked once).
fn image_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(reference("test.image.gz"))
            .output()
            .expect("gzip runs");
        assert!(out.status.success(), "gzip -dc test.image.gz failed");
        assert_eq!(out.stdout.len(), TEST_IMAGE_SIZE, "test.image size");
        out.stdout
    })
}

/// The v2.0 bmap of `test.image` as text.
fn bmap_text() -> String {
    fs::read_to_string(reference("test.image.bmap.v2.0")).expect("read the v2.0 bmap")
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn copy_file(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}

/// SHA-256 (hex) of `bytes`, by `sha256sum` (independent of the product).
fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(bytes)
        .expect("feed sha256sum");
    let out = child.wait_with_output().expect("sha256sum runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

/// A format-2.0 bmap text with its `BmapFileChecksum` recomputed (the SHA-256 of the
/// file with the checksum's value replaced by 64 zeros), so that only a signature can
/// tell it was edited.
fn with_fixed_checksum(text: &str) -> String {
    let open = "<BmapFileChecksum>";
    let close = "</BmapFileChecksum>";
    let start = text.find(open).expect("a BmapFileChecksum") + open.len();
    let end = start + text[start..].find(close).expect("its end");
    let value = text[start..end].trim();
    assert_eq!(value.len(), 64, "a sha256 checksum");
    let value_at = start + text[start..end].find(value).expect("the value");
    let mut zeroed = text.to_owned();
    zeroed.replace_range(value_at..value_at + 64, &"0".repeat(64));
    let digest = sha256_hex(zeroed.as_bytes());
    zeroed.replace_range(value_at..value_at + 64, &digest);
    zeroed
}

/// The v2.0 bmap with range 193 removed (and the mapped count and its own checksum
/// fixed): a consistent bmap that copies one block less than the signed one.
fn bmap_without_range_193() -> String {
    let text = bmap_text();
    let line = text
        .lines()
        .find(|l| l.contains("> 193 </Range>"))
        .expect("range 193")
        .to_owned();
    let edited = text.replacen(&format!("{line}\n"), "", 1).replacen(
        "<MappedBlocksCount> 117    </MappedBlocksCount>",
        "<MappedBlocksCount> 116    </MappedBlocksCount>",
        1,
    );
    assert_ne!(edited, text);
    assert!(edited.contains("> 116 "), "mapped count edited");
    with_fixed_checksum(&edited)
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A fresh directory for one test.
fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("bmaptool-signed-")
        .tempdir()
        .expect("cannot make a temporary directory")
}

/// A test's work directory: `x.img` (the test image) and `x.img.bmap` (its v2.0 bmap),
/// and an empty GnuPG home (`empty-gnupg`) for runs that must use `--keyring` only.
#[derive(Debug)]
struct Work {
    dir: TempDir,
}

impl Work {
    fn new() -> Work {
        let work = Work { dir: tempdir() };
        write(&work.image(), image_bytes());
        write(&work.bmap(), bmap_text());
        fs::create_dir(work.empty_home()).expect("mkdir empty-gnupg");
        work
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn image(&self) -> PathBuf {
        self.path("x.img")
    }

    fn bmap(&self) -> PathBuf {
        self.path("x.img.bmap")
    }

    fn empty_home(&self) -> PathBuf {
        self.path("empty-gnupg")
    }
}

// ---------------------------------------------------------------------------------
// Running the binary

/// Variables that choose proxies: removed from every run.
const PROXY_VARS: [&str; 10] = [
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

/// `bmaptool` with `GNUPGHOME` and `HOME` both `gnupghome` (so that the user's own keys
/// never count), no proxies, backtraces on, stdin closed.
fn bmaptool(gnupghome: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmaptool"));
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("GNUPGHOME", gnupghome)
        .env("HOME", gnupghome)
        .env("RUST_BACKTRACE", "1")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    cmd
}

/// Runs `bmaptool ARGS...` with `GNUPGHOME=gnupghome`.
fn run<S: AsRef<OsStr>>(gnupghome: &Path, args: impl IntoIterator<Item = S>) -> Output {
    bmaptool(gnupghome)
        .args(args)
        .output()
        .expect("bmaptool runs")
}

/// `copy [EXTRA...] IMAGE DEST`.
fn copy_args<S: AsRef<OsStr>>(
    extra: impl IntoIterator<Item = S>,
    image: impl AsRef<OsStr>,
    dest: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["copy".into()];
    args.extend(extra.into_iter().map(|a| a.as_ref().to_owned()));
    args.push(image.as_ref().to_owned());
    args.push(dest.into());
    args
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_no_panic(text: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "Traceback"] {
        assert!(!text.contains(bad), "stderr shows {bad:?}:\n{text}");
    }
}

/// Asserts success (exit 0, nothing on stdout, no error, no panic); returns stderr.
#[track_caller]
fn assert_ok(output: &Output) -> String {
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

/// Asserts a clean failure: exit 1, nothing on stdout, exactly one
/// `bmaptool: ERROR: ` line containing every needle (case-insensitive), no panic.
/// Returns the error line.
#[track_caller]
fn assert_fails(output: &Output, needles: &[&str]) -> String {
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

/// Asserts a refusal before anything was written: a clean failure and no `dest`.
#[track_caller]
fn assert_refused(output: &Output, dest: &Path, needles: &[&str]) -> String {
    let line = assert_fails(output, needles);
    assert!(
        !dest.exists(),
        "{} was created although the signature check failed ({line})",
        dest.display()
    );
    line
}

/// Asserts a successful copy equal to the test image; returns stderr.
#[track_caller]
fn assert_copied(output: &Output, dest: &Path) -> String {
    let text = assert_ok(output);
    assert!(
        read(dest) == image_bytes(),
        "{} differs from the image",
        dest.display()
    );
    text
}

/// Asserts a good signature by `uid` and key `fingerprint` was reported.
#[track_caller]
fn assert_verified_by(text: &str, uid: &str, fingerprint: &str) {
    let wanted =
        format!("successfully verified bmap file signature of {uid} (fingerprint {fingerprint})");
    assert!(
        text.contains(&wanted),
        "stderr does not say {wanted:?}:\n{text}"
    );
}

/// Asserts the detached signature `name` (as shown) was the one discovered.
#[track_caller]
fn assert_discovered_sig(text: &str, name: &str) {
    let line = text
        .lines()
        .find(|l| l.contains("discovered signature file"))
        .unwrap_or_else(|| panic!("no signature discovered:\n{text}"));
    assert!(
        line.ends_with(&format!("'{name}'")),
        "expected {name:?} to be discovered, got: {line}"
    );
}

// ---------------------------------------------------------------------------------
// gpg

/// A temporary GnuPG home driven by the real `gpg`; its gpg-agent is killed on drop.
#[derive(Debug)]
struct Gpg {
    _dir: TempDir,
    home: PathBuf,
}

/// Options for every non-interactive gpg run.
const GPG_BATCH: [&str; 5] = [
    "--batch",
    "--yes",
    "--pinentry-mode",
    "loopback",
    "--passphrase=",
];

impl Gpg {
    /// `None`: skipped (no gpg).
    #[track_caller]
    fn new() -> Option<Gpg> {
        if !need_gpg() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("bmt-gpg-")
            .tempdir()
            .expect("temporary GnuPG home");
        let home = dir.path().join("g");
        fs::create_dir(&home).expect("mkdir GnuPG home");
        set_mode(&home, 0o700);
        Some(Gpg { _dir: dir, home })
    }

    /// Runs `gpg ARGS...` in this home; panics with its stderr when it fails.
    fn run<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Vec<u8> {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = Command::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(GPG_BATCH)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("gpg runs");
        assert!(
            out.status.success(),
            "gpg {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Makes a key (`algo`, `usage` as `--quick-gen-key` takes them); returns its
    /// fingerprint.
    fn gen_key(&self, uid: &str, algo: &str, usage: &str) -> String {
        self.run(["--quick-gen-key", uid, algo, usage, "never"]);
        self.fingerprints(uid)
            .into_iter()
            .next()
            .expect("the new key")
    }

    /// Makes a key as if the clock said `epoch` (`--quick-gen-key` arguments as in
    /// [`Gpg::gen_key`]); returns its fingerprint.
    fn gen_key_at(&self, uid: &str, algo: &str, usage: &str, epoch: u64) -> String {
        self.run([
            "--faked-system-time",
            &format!("{epoch}!"),
            "--quick-gen-key",
            uid,
            algo,
            usage,
            "never",
        ]);
        self.fingerprints(uid)
            .into_iter()
            .next()
            .expect("the new key")
    }

    /// Adds a subkey to `primary`; returns the subkey's fingerprint.
    fn add_subkey(&self, primary: &str, algo: &str, usage: &str) -> String {
        let before = self.fingerprints(primary);
        self.run(["--quick-add-key", primary, algo, usage, "never"]);
        let after = self.fingerprints(primary);
        after
            .into_iter()
            .find(|f| !before.contains(f))
            .expect("a new subkey")
    }

    /// Fingerprints of the key matching `who`: primary first, then subkeys.
    fn fingerprints(&self, who: &str) -> Vec<String> {
        let out = self.run(["--with-colons", "--list-keys", who]);
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).expect("fingerprint field").to_owned())
            .collect()
    }

    /// `gpg -u KEY [--armor] --detach-sign -o OUT FILE`.
    fn detach_sign(&self, key: &str, file: &Path, out: &Path, armor: bool) {
        let mut args: Vec<OsString> = vec!["--local-user".into(), key.into()];
        if armor {
            args.push("--armor".into());
        }
        args.extend([
            "--detach-sign".into(),
            "--output".into(),
            out.into(),
            file.into(),
        ]);
        self.run(args);
    }

    /// `gpg --faked-system-time EPOCH! -u KEY --detach-sign -o OUT FILE`: a binary
    /// signature made at a chosen time.
    fn detach_sign_at(&self, key: &str, file: &Path, out: &Path, epoch: u64) {
        self.run([
            OsStr::new("--faked-system-time"),
            format!("{epoch}!").as_ref(),
            "--local-user".as_ref(),
            key.as_ref(),
            "--detach-sign".as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
            file.as_os_str(),
        ]);
    }

    /// `gpg -u KEY --clearsign -o OUT FILE`.
    fn clearsign(&self, key: &str, file: &Path, out: &Path) {
        self.run([
            OsStr::new("--local-user"),
            key.as_ref(),
            "--clearsign".as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
            file.as_os_str(),
        ]);
    }

    /// `gpg --export [-a] KEYS...`.
    fn export(&self, keys: &[&str], armor: bool) -> Vec<u8> {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        args.extend(keys);
        let out = self.run(args);
        assert!(!out.is_empty(), "gpg exported nothing");
        out
    }

    /// The home's keybox.
    fn pubring(&self) -> PathBuf {
        self.home.join("pubring.kbx")
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "all"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A GnuPG home with Alice (ed25519) and Bob (ed25519), both able to sign.
fn alice_and_bob() -> Option<(Gpg, String, String)> {
    let gpg = Gpg::new()?;
    let alice = gpg.gen_key(ALICE, "ed25519", "sign");
    let bob = gpg.gen_key(BOB, "ed25519", "sign");
    Some((gpg, alice, bob))
}

const ALICE: &str = "Alice Signer <alice@example.org>";
const BOB: &str = "Bob Other <bob@example.org>";

// ---------------------------------------------------------------------------------
// 1. The reference's signed test data

#[test]
fn reference_valid_signature_with_the_reference_keybox_is_good_although_the_key_expired() {
    if !need_tools() {
        return;
    }
    let work = Work::new();
    let home = work.empty_home();
    let kbx = reference("gnupg/pubring.kbx");
    let sig = reference("signatures/test.image.bmap.v2.0.valid-sig");
    let base = [
        OsString::from("--bmap"),
        work.bmap().into(),
        "--bmap-sig".into(),
        sig.clone().into(),
        "--keyring".into(),
        kbx.clone().into(),
    ];
    let dest = work.path("out.img");
    let text = assert_copied(&run(&home, copy_args(&base, work.image(), &dest)), &dest);
    assert_verified_by(&text, REF_UID, REF_KEY);

    // --fingerprint, as gpg prints it (upper case), in lower case and grouped by four.
    let grouped: String = REF_KEY
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    for (i, fingerprint) in [REF_KEY.to_owned(), grouped].iter().enumerate() {
        let dest = work.path(&format!("fpr-{i}.img"));
        let mut args = base.to_vec();
        args.extend(["--fingerprint".into(), fingerprint.into()]);
        let text = assert_copied(&run(&home, copy_args(&args, work.image(), &dest)), &dest);
        assert_verified_by(&text, REF_UID, REF_KEY);
    }

    // The same signature discovered beside the bmap (x.img.bmap.sig), no --bmap.
    copy_file(&sig, &work.path("x.img.bmap.sig"));
    let dest = work.path("discovered.img");
    let output = run(
        &home,
        copy_args(
            [OsStr::new("--keyring"), kbx.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert_discovered_sig(&text, &work.path("x.img.bmap.sig").display().to_string());
    assert_verified_by(&text, REF_UID, REF_KEY);
}

#[test]
fn reference_signature_by_a_key_not_in_the_keyring_is_refused_unless_no_sig_verify() {
    if !need_tools() {
        return;
    }
    let work = Work::new();
    let home = work.empty_home();
    let kbx = reference("gnupg/pubring.kbx");
    let wrong = reference("signatures/test.image.bmap.v2.0.sig-by-wrong-key");

    let dest = work.path("out.img");
    let output = run(
        &home,
        copy_args(
            [
                OsStr::new("--bmap"),
                work.bmap().as_os_str(),
                "--bmap-sig".as_ref(),
                wrong.as_os_str(),
                "--keyring".as_ref(),
                kbx.as_os_str(),
            ],
            work.image(),
            &dest,
        ),
    );
    let line = assert_refused(&output, &dest, &["not in the keyring"]);
    assert!(line.contains(REF_WRONG_KEY), "names the signer: {line}");

    // Discovered beside the bmap: refused too, and --no-sig-verify goes on.
    copy_file(&wrong, &work.path("x.img.bmap.sig"));
    let output = run(
        &home,
        copy_args(
            [OsStr::new("--keyring"), kbx.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["not in the keyring"]);
    let output = run(&home, copy_args(["--no-sig-verify"], work.image(), &dest));
    let text = assert_copied(&output, &dest);
    assert!(!text.contains("successfully verified"), "{text}");
}

#[test]
fn reference_clearsigned_bmap_copies_the_image_verified_and_with_no_sig_verify() {
    if !need_tools() {
        return;
    }
    let work = Work::new();
    let home = work.empty_home();
    let kbx = reference("gnupg/pubring.kbx");
    let asc = reference("signatures/test.image.bmap.v2.0.asc");

    let dest = work.path("verified.img");
    let output = run(
        &home,
        copy_args(
            [
                OsStr::new("--bmap"),
                asc.as_os_str(),
                "--keyring".as_ref(),
                kbx.as_os_str(),
                "--fingerprint".as_ref(),
                REF_KEY.as_ref(),
            ],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, REF_UID, REF_KEY);
    assert!(
        text.contains("48 of 48 ranges verified"),
        "the signed text is the whole bmap:\n{text}"
    );

    let dest = work.path("unverified.img");
    let output = run(
        &home,
        copy_args(
            [
                OsStr::new("--bmap"),
                asc.as_os_str(),
                "--no-sig-verify".as_ref(),
            ],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert!(!text.contains("successfully verified"), "{text}");

    // No key at all (empty GnuPG home, no --keyring): refused, saying what to do.
    let dest = work.path("nokey.img");
    let output = run(
        &home,
        copy_args([OsStr::new("--bmap"), asc.as_os_str()], work.image(), &dest),
    );
    let line = assert_refused(&output, &dest, &[]);
    assert!(
        line.contains("--keyring") || line.contains("--no-sig-verify"),
        "says what to do: {line}"
    );
}

#[test]
fn clearsigned_bmap_with_bmap_sig_is_refused_as_the_reference_does() {
    // The reference: "the bmap file has clearsign format and already contains the
    // signature, so --bmap-sig option should not be used". Silently ignoring the
    // signature the user named is no answer.
    if !need_tools() {
        return;
    }
    let work = Work::new();
    let dest = work.path("out.img");
    let output = run(
        &work.empty_home(),
        copy_args(
            [
                OsStr::new("--bmap"),
                reference("signatures/test.image.bmap.v2.0.asc").as_os_str(),
                "--bmap-sig".as_ref(),
                reference("signatures/test.image.bmap.v2.0.sig-by-wrong-key").as_os_str(),
                "--keyring".as_ref(),
                reference("gnupg/pubring.kbx").as_os_str(),
            ],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["--bmap-sig"]);
}

// ---------------------------------------------------------------------------------
// 2. Keys and signatures made by gpg

#[test]
fn detached_signatures_are_discovered_beside_the_bmap_in_the_reference_order() {
    let Some((gpg, alice, bob)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    let bmap = work.bmap();
    // Alice signs armored, Bob binary: who is reported tells which file was used.
    let by_alice = work.path("alice.asc");
    let by_bob = work.path("bob.sig");
    gpg.detach_sign(&alice, &bmap, &by_alice, true);
    gpg.detach_sign(&bob, &bmap, &by_bob, false);
    assert!(read(&by_alice).starts_with(b"-----BEGIN PGP SIGNATURE-----"));
    assert_eq!(read(&by_bob)[0] & 0x80, 0x80, "a binary OpenPGP packet");

    let clear = |names: &[&str]| {
        for name in names {
            let _ = fs::remove_file(work.path(name));
        }
    };
    let all = [
        "x.img.bmap.asc",
        "x.img.bmap.sig",
        "x.img.asc",
        "x.img.sig",
        "x.asc",
        "x.sig",
    ];
    // Files present (name, signed by Alice?), the name expected to be discovered, and
    // whether Alice signed it.
    type Case<'a> = (&'a [(&'a str, bool)], &'a str, bool);
    let cases: [Case; 7] = [
        (
            &[("x.img.bmap.asc", true), ("x.img.bmap.sig", false)],
            "x.img.bmap.asc",
            true,
        ),
        (&[("x.img.bmap.sig", false)], "x.img.bmap.sig", false),
        (
            &[("x.img.asc", true), ("x.img.sig", false), ("x.asc", true)],
            "x.img.asc",
            true,
        ),
        (&[("x.img.sig", false), ("x.asc", true)], "x.img.sig", false),
        (&[("x.asc", true), ("x.sig", false)], "x.asc", true),
        (&[("x.sig", false)], "x.sig", false),
        // The bmap's own name wins over every stripped one.
        (
            &[
                ("x.img.bmap.sig", false),
                ("x.img.asc", true),
                ("x.asc", true),
            ],
            "x.img.bmap.sig",
            false,
        ),
    ];
    for (i, (present, expected, by_alice_expected)) in cases.iter().enumerate() {
        clear(&all);
        for (name, alice_signed) in *present {
            let from = if *alice_signed { &by_alice } else { &by_bob };
            copy_file(from, &work.path(name));
        }
        let dest = work.path(&format!("out-{i}.img"));
        let output = run(&gpg.home, copy_args::<&str>([], work.image(), &dest));
        let text = assert_copied(&output, &dest);
        assert_discovered_sig(&text, &work.path(expected).display().to_string());
        if *by_alice_expected {
            assert_verified_by(&text, ALICE, &alice);
        } else {
            assert_verified_by(&text, BOB, &bob);
        }
    }

    // --bmap-sig overrides discovery.
    clear(&all);
    copy_file(&by_alice, &work.path("x.img.bmap.asc"));
    let dest = work.path("explicit.img");
    let output = run(
        &gpg.home,
        copy_args(
            [OsStr::new("--bmap-sig"), by_bob.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, BOB, &bob);
}

#[test]
fn keys_come_from_gnupghome_or_home_gnupg_without_keyring() {
    let Some((gpg, alice, _)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    gpg.detach_sign(&alice, &work.bmap(), &work.path("x.img.bmap.asc"), true);
    assert!(gpg.pubring().is_file(), "gpg 2 keeps keys in pubring.kbx");

    // GNUPGHOME with pubring.kbx.
    let dest = work.path("gnupghome.img");
    let text = assert_copied(
        &run(&gpg.home, copy_args::<&str>([], work.image(), &dest)),
        &dest,
    );
    assert_verified_by(&text, ALICE, &alice);

    // No GNUPGHOME: $HOME/.gnupg/pubring.kbx.
    let home = work.path("home");
    fs::create_dir_all(home.join(".gnupg")).expect("mkdir ~/.gnupg");
    copy_file(&gpg.pubring(), &home.join(".gnupg/pubring.kbx"));
    let dest = work.path("home.img");
    let output = bmaptool(&work.empty_home())
        .env_remove("GNUPGHOME")
        .env("HOME", &home)
        .args(copy_args::<&str>([], work.image(), &dest))
        .output()
        .expect("bmaptool runs");
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, ALICE, &alice);

    // gpgv's trustedkeys.gpg (binary export) and a legacy pubring.gpg alone.
    for name in ["trustedkeys.gpg", "pubring.gpg"] {
        let other = work.path(&format!("home-{name}"));
        fs::create_dir(&other).expect("mkdir");
        write(&other.join(name), gpg.export(&[&alice], false));
        let dest = work.path(&format!("{name}.img"));
        let text = assert_copied(
            &run(&other, copy_args::<&str>([], work.image(), &dest)),
            &dest,
        );
        assert_verified_by(&text, ALICE, &alice);
    }

    // A home whose keys do not include the signer: refused, nothing written.
    let bob_only = work.path("home-bob");
    fs::create_dir(&bob_only).expect("mkdir");
    let bob = gpg.fingerprints(BOB).remove(0);
    write(
        &bob_only.join("trustedkeys.gpg"),
        gpg.export(&[&bob], false),
    );
    let dest = work.path("bob-only.img");
    let output = run(&bob_only, copy_args::<&str>([], work.image(), &dest));
    let line = assert_refused(&output, &dest, &["not in the keyring"]);
    assert!(line.contains(&alice), "names the signer: {line}");
}

#[test]
fn keyring_option_reads_binary_and_armored_exports_keyboxes_and_legacy_keyrings() {
    let Some((gpg, alice, bob)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    gpg.detach_sign(&alice, &work.bmap(), &work.path("x.img.bmap.sig"), false);

    let binary = work.path("alice.gpg");
    write(&binary, gpg.export(&[&alice], false));
    let armored = work.path("alice.asc");
    write(&armored, gpg.export(&[&alice], true));
    assert!(read(&armored).starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let both_binary = work.path("both.gpg");
    write(&both_binary, gpg.export(&[&bob, &alice], false));
    let both_armored = work.path("both.asc");
    write(&both_armored, gpg.export(&[&bob, &alice], true));
    let keybox = work.path("keys.kbx");
    copy_file(&gpg.pubring(), &keybox);
    // A legacy keyring, as gpg writes it into an existing empty file (with its ring
    // trust packets between the key packets).
    let legacy = work.path("legacy.gpg");
    write(&legacy, b"");
    gpg.run([
        OsStr::new("--no-default-keyring"),
        "--keyring".as_ref(),
        legacy.as_os_str(),
        "--import".as_ref(),
        both_binary.as_os_str(),
    ]);
    assert!(
        !read(&legacy).windows(4).any(|w| w == b"KBXf"),
        "gpg wrote a legacy keyring, not a keybox"
    );

    for (i, keyring) in [
        &binary,
        &armored,
        &both_binary,
        &both_armored,
        &keybox,
        &legacy,
    ]
    .iter()
    .enumerate()
    {
        let dest = work.path(&format!("out-{i}.img"));
        let output = run(
            &work.empty_home(),
            copy_args(
                [OsStr::new("--keyring"), keyring.as_os_str()],
                work.image(),
                &dest,
            ),
        );
        let text = assert_ok(&output);
        assert!(
            read(&dest) == image_bytes(),
            "--keyring {}: copy differs",
            keyring.display()
        );
        assert_verified_by(&text, ALICE, &alice);
    }

    // A keyring without the signer: refused, nothing written.
    let bob_keyring = work.path("bob.asc");
    write(&bob_keyring, gpg.export(&[&bob], true));
    let dest = work.path("bob.img");
    let output = run(
        &work.empty_home(),
        copy_args(
            [OsStr::new("--keyring"), bob_keyring.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["not in the keyring", &alice]);

    // --keyring replaces the GnuPG home: Alice in GNUPGHOME does not count.
    let output = run(
        &gpg.home,
        copy_args(
            [OsStr::new("--keyring"), bob_keyring.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["not in the keyring"]);

    // A keyring that does not exist.
    let output = run(
        &work.empty_home(),
        copy_args(
            [
                OsStr::new("--keyring"),
                work.path("missing.kbx").as_os_str(),
            ],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["missing.kbx"]);
}

#[test]
fn keyring_of_concatenated_armored_exports_holds_every_key() {
    // `gpg --export -a BOB > keys.asc; gpg --export -a ALICE >> keys.asc` is how people
    // collect keys; gpg --import takes every block. The signer in the second block
    // must be found.
    let Some((gpg, alice, bob)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    gpg.detach_sign(&alice, &work.bmap(), &work.path("x.img.bmap.asc"), true);
    let mut keys = gpg.export(&[&bob], true);
    keys.extend(gpg.export(&[&alice], true));
    let keyring = work.path("keys.asc");
    write(&keyring, &keys);
    let dest = work.path("out.img");
    let output = run(
        &work.empty_home(),
        copy_args(
            [OsStr::new("--keyring"), keyring.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, ALICE, &alice);
}

#[test]
fn bmap_edited_after_signing_is_bad_and_nothing_is_written() {
    let Some((gpg, alice, _)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    gpg.detach_sign(&alice, &work.bmap(), &work.path("x.img.bmap.asc"), true);
    // The edit: one range fewer, the mapped count and the bmap's own checksum fixed.
    write(&work.bmap(), bmap_without_range_193());

    let dest = work.path("out.img");
    let output = run(&gpg.home, copy_args::<&str>([], work.image(), &dest));
    let line = assert_refused(&output, &dest, &["BAD"]);
    assert!(line.contains(&alice), "names the key: {line}");

    // An existing destination keeps its bytes.
    let existing = work.path("existing.img");
    write(&existing, b"old contents");
    let output = run(&gpg.home, copy_args::<&str>([], work.image(), &existing));
    assert_fails(&output, &["BAD"]);
    assert_eq!(
        read(&existing),
        b"old contents",
        "the destination was touched"
    );

    // The edited bmap is self-consistent: only the signature caught it.
    let output = run(
        &gpg.home,
        copy_args(["--no-sig-verify"], work.image(), &dest),
    );
    let text = assert_ok(&output);
    assert!(text.contains("47 of 47 ranges verified"), "{text}");
    let copied = read(&dest);
    assert_eq!(copied.len(), TEST_IMAGE_SIZE);
    let block = 193 * BLOCK..194 * BLOCK;
    assert!(
        copied[block.clone()].iter().all(|&b| b == 0)
            && image_bytes()[block].iter().any(|&b| b != 0),
        "without range 193 its data is not copied"
    );
}

#[test]
fn clearsigned_bmap_made_by_gpg_is_verified_and_only_its_signed_text_is_used() {
    let Some((gpg, alice, _)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    let clear = work.path("clear.bmap");
    gpg.clearsign(&alice, &work.bmap(), &clear);
    assert!(read(&clear).starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));

    let dest = work.path("out.img");
    let output = run(
        &gpg.home,
        copy_args(
            [OsStr::new("--bmap"), clear.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, ALICE, &alice);
    assert!(text.contains("48 of 48 ranges verified"), "{text}");

    // Discovered as the image's bmap (x.img.bmap is the clearsigned one).
    copy_file(&clear, &work.bmap());
    let dest = work.path("discovered.img");
    let output = run(
        &gpg.home,
        copy_args(["--fingerprint", alice.as_str()], work.image(), &dest),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, ALICE, &alice);

    // --no-sig-verify: no check, still the signed text.
    let dest = work.path("unverified.img");
    let output = run(
        &work.empty_home(),
        copy_args(
            [
                OsStr::new("--bmap"),
                clear.as_os_str(),
                "--no-sig-verify".as_ref(),
            ],
            work.image(),
            &dest,
        ),
    );
    assert_copied(&output, &dest);

    // Edited inside the signed text (range removed, own checksum fixed): BAD.
    let text = String::from_utf8(read(&clear)).expect("text");
    let signed_bmap = bmap_text();
    let edited_bmap = bmap_without_range_193();
    let edited = text.replacen(signed_bmap.trim_end(), edited_bmap.trim_end(), 1);
    assert_ne!(edited, text, "the edit applies");
    let edited_path = work.path("edited.bmap");
    write(&edited_path, &edited);
    let dest = work.path("edited.img");
    let output = run(
        &gpg.home,
        copy_args(
            [OsStr::new("--bmap"), edited_path.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["BAD"]);
}

#[test]
fn clearsigned_bmap_with_a_range_added_outside_the_signed_block_never_uses_it() {
    let Some((gpg, alice, _)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    let clear = work.path("clear.bmap");
    gpg.clearsign(&alice, &work.bmap(), &clear);
    let signed = String::from_utf8(read(&clear)).expect("text");
    // Range 3-5 with a wrong checksum: used, it would fail the copy's verification.
    let range = format!(
        "        <Range chksum=\"{}\"> 3-5 </Range>\n",
        "0".repeat(64)
    );
    // A whole bmap (self-consistent) that maps one block less.
    let other = bmap_without_range_193();
    let variants = [
        ("after", format!("{signed}{range}")),
        ("before", format!("{range}{signed}")),
        ("bmap-after", format!("{signed}{other}")),
        (
            "blockmap-after",
            format!("{signed}<BlockMap>\n{range}</BlockMap>\n"),
        ),
    ];
    for (name, text) in variants {
        let path = work.path(&format!("{name}.bmap"));
        write(&path, &text);
        for no_sig_verify in [false, true] {
            let dest = work.path(&format!("{name}-{no_sig_verify}.img"));
            let mut args = vec![OsString::from("--bmap"), path.clone().into()];
            if no_sig_verify {
                args.push("--no-sig-verify".into());
            }
            let output = run(&gpg.home, copy_args(&args, work.image(), &dest));
            if output.status.success() {
                // Ignored: the copy is the image, and came from the signed bmap.
                let text = assert_copied(&output, &dest);
                assert!(
                    text.contains("48 of 48 ranges verified"),
                    "{name}: the bmap used is not the signed one:\n{text}"
                );
                if !no_sig_verify {
                    assert_verified_by(&text, ALICE, &alice);
                }
            } else {
                // Or a clear refusal, before anything is written.
                assert_refused(&output, &dest, &[]);
            }
        }
    }
}

#[test]
fn clearsigned_bmap_with_dash_escaped_lines_yields_the_original_bmap() {
    // gpg dash-escapes every signed line that starts with '-' ("- -x"); the bmap is the
    // text with the escaping undone, and its own checksum covers that text.
    let Some((gpg, alice, _)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    let bmap = with_fixed_checksum(&bmap_text().replacen(
        "<bmap version=\"2.0\">\n",
        "<bmap version=\"2.0\">\n<!--\n- a line that starts with a dash\n-x\n-->\n",
        1,
    ));
    write(&work.bmap(), &bmap);
    // The unsigned bmap is valid as it is.
    let dest = work.path("plain.img");
    assert_copied(
        &run(
            &work.empty_home(),
            copy_args(["--no-sig-verify"], work.image(), &dest),
        ),
        &dest,
    );

    let clear = work.path("clear.bmap");
    gpg.clearsign(&alice, &work.bmap(), &clear);
    let clear_text = String::from_utf8(read(&clear)).expect("text");
    assert!(clear_text.contains("\n- -x\n"), "gpg dash-escaped the line");

    let dest = work.path("verified.img");
    let output = run(
        &gpg.home,
        copy_args(
            [OsStr::new("--bmap"), clear.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, ALICE, &alice);

    let dest = work.path("unverified.img");
    let output = run(
        &gpg.home,
        copy_args(
            [
                OsStr::new("--bmap"),
                clear.as_os_str(),
                "--no-sig-verify".as_ref(),
            ],
            work.image(),
            &dest,
        ),
    );
    assert_copied(&output, &dest);
}

#[test]
fn fingerprint_of_another_key_is_refused() {
    let Some((gpg, alice, bob)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    gpg.detach_sign(&alice, &work.bmap(), &work.path("x.img.bmap.sig"), false);
    let clear = work.path("clear.bmap");
    gpg.clearsign(&alice, &work.bmap(), &clear);

    let dest = work.path("out.img");
    let output = run(
        &gpg.home,
        copy_args(["--fingerprint", bob.as_str()], work.image(), &dest),
    );
    let line = assert_refused(&output, &dest, &["--fingerprint", &alice]);
    assert!(line.contains(&bob), "names the wanted key: {line}");

    let output = run(
        &gpg.home,
        copy_args(
            [
                OsStr::new("--bmap"),
                clear.as_os_str(),
                "--fingerprint".as_ref(),
                bob.as_ref(),
            ],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["--fingerprint"]);

    // A fingerprint that names no key at all, and a key id (not a fingerprint).
    for wanted in ["0123456789ABCDEF0123456789ABCDEF01234567", &alice[24..]] {
        let output = run(
            &gpg.home,
            copy_args(["--fingerprint", wanted], work.image(), &dest),
        );
        assert_refused(&output, &dest, &["--fingerprint"]);
    }

    // The signer's own fingerprint, in lower case.
    let output = run(
        &gpg.home,
        copy_args(
            ["--fingerprint", alice.to_lowercase().as_str()],
            work.image(),
            &dest,
        ),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, ALICE, &alice);
}

#[test]
fn subkey_signature_is_accepted_with_the_primary_or_the_subkey_fingerprint() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let carol_uid = "Carol Subkey <carol@example.org>";
    // A certification-only primary key with a signing subkey.
    let primary = gpg.gen_key(carol_uid, "ed25519", "cert");
    let subkey = gpg.add_subkey(&primary, "ed25519", "sign");
    let other = gpg.gen_key(ALICE, "ed25519", "sign");
    let work = Work::new();
    gpg.detach_sign(
        &format!("{subkey}!"),
        &work.bmap(),
        &work.path("x.img.bmap.asc"),
        true,
    );
    let clear = work.path("clear.bmap");
    gpg.clearsign(&format!("{subkey}!"), &work.bmap(), &clear);
    let keyring = work.path("carol.gpg");
    write(&keyring, gpg.export(&[&primary], false));

    for (i, wanted) in [&primary, &subkey].iter().enumerate() {
        // From GNUPGHOME, and from an exported keyring.
        for (j, extra) in [
            vec![],
            vec!["--keyring".to_owned(), keyring.display().to_string()],
        ]
        .iter()
        .enumerate()
        {
            let dest = work.path(&format!("detached-{i}-{j}.img"));
            let mut args = extra.clone();
            args.extend(["--fingerprint".to_owned(), (*wanted).clone()]);
            let output = run(&gpg.home, copy_args(&args, work.image(), &dest));
            let text = assert_copied(&output, &dest);
            // The good signature names the key that signed: the subkey.
            assert_verified_by(&text, carol_uid, &subkey);
        }
        let dest = work.path(&format!("clear-{i}.img"));
        let output = run(
            &gpg.home,
            copy_args(
                [
                    OsStr::new("--bmap"),
                    clear.as_os_str(),
                    "--fingerprint".as_ref(),
                    wanted.as_ref(),
                ],
                work.image(),
                &dest,
            ),
        );
        let text = assert_copied(&output, &dest);
        assert_verified_by(&text, carol_uid, &subkey);
    }

    let dest = work.path("other.img");
    let output = run(
        &gpg.home,
        copy_args(["--fingerprint", other.as_str()], work.image(), &dest),
    );
    assert_refused(&output, &dest, &["--fingerprint"]);
}

#[test]
fn contradictory_options_are_refused_before_anything_is_written() {
    if !need_tools() {
        return;
    }
    let work = Work::new();
    let home = work.empty_home();
    let sig = reference("signatures/test.image.bmap.v2.0.valid-sig");
    let kbx = reference("gnupg/pubring.kbx");
    let dest = work.path("out.img");
    let cases: [(&[&OsStr], &str); 3] = [
        (
            &[
                OsStr::new("--bmap-sig"),
                sig.as_os_str(),
                "--no-sig-verify".as_ref(),
            ],
            "--bmap-sig",
        ),
        (
            &[
                OsStr::new("--keyring"),
                kbx.as_os_str(),
                "--no-sig-verify".as_ref(),
            ],
            "--keyring",
        ),
        (
            &[
                OsStr::new("--fingerprint"),
                REF_KEY.as_ref(),
                "--no-sig-verify".as_ref(),
            ],
            "--fingerprint",
        ),
    ];
    for (extra, option) in cases {
        let output = run(&home, copy_args(extra, work.image(), &dest));
        assert_refused(
            &output,
            &dest,
            &["cannot be used together", option, "--no-sig-verify"],
        );
    }

    // --fingerprint or --keyring with an unsigned bmap.
    let output = run(
        &home,
        copy_args(["--fingerprint", REF_KEY], work.image(), &dest),
    );
    assert_refused(
        &output,
        &dest,
        &["no signature found but --fingerprint given"],
    );
    let output = run(
        &home,
        copy_args(
            [OsStr::new("--keyring"), kbx.as_os_str()],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["no signature found but --keyring given"]);

    // An unsigned bmap alone is fine (nothing to verify).
    let output = run(&home, copy_args::<&str>([], work.image(), &dest));
    let text = assert_copied(&output, &dest);
    assert!(!text.contains("successfully verified"), "{text}");
}

#[test]
fn malformed_signature_files_are_one_error_and_nothing_is_written() {
    if !need_tools() {
        return;
    }
    let work = Work::new();
    let home = work.empty_home();
    let kbx = reference("gnupg/pubring.kbx");
    let garbage: [(&str, Vec<u8>); 6] = [
        ("random", noise(7, 3000)),
        ("random-small", noise(8, 5)),
        ("empty", Vec::new()),
        ("text", b"this is not a signature\n".to_vec()),
        (
            "armored-garbage",
            b"-----BEGIN PGP SIGNATURE-----\n\nAAAAAAAAAAAA\n-----END PGP SIGNATURE-----\n"
                .to_vec(),
        ),
        // A public key where a signature should be.
        ("a-key", {
            let kbx = read(&kbx);
            kbx[kbx.len() / 2..].to_vec()
        }),
    ];
    for (name, bytes) in garbage {
        let sig = work.path(&format!("{name}.sig"));
        write(&sig, &bytes);
        let dest = work.path(&format!("{name}.img"));
        // Named with --bmap-sig.
        let output = run(
            &home,
            copy_args(
                [
                    OsStr::new("--bmap-sig"),
                    sig.as_os_str(),
                    "--keyring".as_ref(),
                    kbx.as_os_str(),
                ],
                work.image(),
                &dest,
            ),
        );
        assert_refused(&output, &dest, &[]);
        // Discovered beside the bmap.
        write(&work.path("x.img.bmap.sig"), &bytes);
        let output = run(
            &home,
            copy_args(
                [OsStr::new("--keyring"), kbx.as_os_str()],
                work.image(),
                &dest,
            ),
        );
        let line = assert_refused(&output, &dest, &[]);
        assert!(line.contains("x.img.bmap.sig"), "names the file: {line}");
    }
    // A clearsigned bmap whose signature block is garbage.
    let asc =
        String::from_utf8(read(&reference("signatures/test.image.bmap.v2.0.asc"))).expect("text");
    let begin = asc
        .find("-----BEGIN PGP SIGNATURE-----")
        .expect("signature block");
    let broken = format!(
        "{}-----BEGIN PGP SIGNATURE-----\n\nAAAAAAAA\n-----END PGP SIGNATURE-----\n",
        &asc[..begin]
    );
    let path = work.path("broken.bmap");
    write(&path, broken);
    let dest = work.path("broken.img");
    let output = run(
        &home,
        copy_args(
            [
                OsStr::new("--bmap"),
                path.as_os_str(),
                "--keyring".as_ref(),
                kbx.as_os_str(),
            ],
            work.image(),
            &dest,
        ),
    );
    assert_refused(&output, &dest, &[]);
}

#[test]
fn signature_failures_say_what_to_do() {
    // Issue 7: "bad signature, unknown key, wrong fingerprint, malformed signature: a
    // one-line error that says what to do (import the key, pass --keyring, or
    // --no-sig-verify)" (the reference ends every such error with "use
    // --no-sig-verify to disable signature verification").
    if !need_tools() {
        return;
    }
    let work = Work::new();
    let home = work.empty_home();
    let kbx = reference("gnupg/pubring.kbx");
    let malformed = work.path("malformed.sig");
    write(&malformed, noise(3, 500));
    let other_bmap = work.path("other.bmap");
    copy_file(&reference("test.image.bmap.v1.4"), &other_bmap);
    let cases: [(&str, Vec<OsString>); 4] = [
        (
            "unknown key",
            vec![
                "--bmap-sig".into(),
                reference("signatures/test.image.bmap.v2.0.sig-by-wrong-key").into(),
            ],
        ),
        (
            "bad signature",
            vec![
                "--bmap".into(),
                other_bmap.clone().into(),
                "--bmap-sig".into(),
                reference("signatures/test.image.bmap.v2.0.valid-sig").into(),
            ],
        ),
        (
            "wrong fingerprint",
            vec![
                "--bmap-sig".into(),
                reference("signatures/test.image.bmap.v2.0.valid-sig").into(),
                "--fingerprint".into(),
                REF_WRONG_KEY.into(),
            ],
        ),
        (
            "malformed signature",
            vec!["--bmap-sig".into(), malformed.clone().into()],
        ),
    ];
    let mut silent = Vec::new();
    for (what, mut extra) in cases {
        extra.extend(["--keyring".into(), kbx.clone().into()]);
        let dest = work.path("out.img");
        let output = run(&home, copy_args(&extra, work.image(), &dest));
        let line = assert_refused(&output, &dest, &[]);
        if !["--no-sig-verify", "--keyring", "gpg --import"]
            .iter()
            .any(|remedy| line.contains(remedy))
        {
            silent.push(format!("{what}: {line}"));
        }
    }
    assert!(
        silent.is_empty(),
        "these errors do not say what to do (--no-sig-verify, --keyring or gpg --import):\n{}",
        silent.join("\n")
    );
}

#[test]
fn good_signatures_gpg_accepts_are_never_reported_as_bad() {
    // gpgv says "Good signature" for all of these. The tool may accept them (SHA-1 with
    // a warning, per its documented policy) or refuse them naming the reason (an
    // algorithm it does not support), but calling them BAD ("the bmap was changed after
    // it was signed") accuses an intact bmap of tampering.
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let work = Work::new();
    let ed = gpg.gen_key(ALICE, "ed25519", "sign");
    let rsa = gpg.gen_key("Rsa Signer <rsa@example.org>", "rsa2048", "sign");
    let mut cases: Vec<(String, Vec<String>, PathBuf)> = Vec::new();
    let sign = |name: &str, args: &[&str]| -> PathBuf {
        let out = work.path(&format!("{name}.sig"));
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        all.extend([
            "--detach-sign".into(),
            "--output".into(),
            out.clone().into(),
            work.bmap().into(),
        ]);
        gpg.run(all);
        out
    };
    // RSA with SHA-1 (accepted and warned about, as the library documents).
    cases.push((
        "rsa-sha1".into(),
        vec!["sha1".into()],
        sign("rsa-sha1", &["-u", &rsa, "--digest-algo", "SHA1"]),
    ));
    // Text-mode signature (signature class 0x01).
    cases.push((
        "textmode".into(),
        vec![],
        sign("textmode", &["-u", &ed, "--textmode"]),
    ));
    // Ed25519 with SHA-1.
    cases.push((
        "ed25519-sha1".into(),
        vec!["sha1".into(), "sha-1".into()],
        sign("ed25519-sha1", &["-u", &ed, "--digest-algo", "SHA1"]),
    ));
    // Curves gpg supports (secp256k1: see the next test).
    for curve in ["nistp256", "nistp384", "brainpoolP256r1"] {
        let key = gpg.gen_key(
            &format!("Curve {curve} <{curve}@example.org>"),
            curve,
            "sign",
        );
        cases.push((
            curve.to_owned(),
            vec![curve.to_lowercase(), "unsupported".into()],
            sign(curve, &["-u", &key]),
        ));
    }
    let mut wrong = Vec::new();
    for (name, reasons, sig) in &cases {
        let gpgv = Command::new("gpgv")
            .arg("--keyring")
            .arg(gpg.pubring())
            .arg(sig)
            .arg(work.bmap())
            .output();
        if let Ok(gpgv) = gpgv {
            assert!(
                gpgv.status.success(),
                "{name}: gpgv does not accept it:\n{}",
                String::from_utf8_lossy(&gpgv.stderr)
            );
        }
        let dest = work.path(&format!("{name}.img"));
        let output = run(
            &gpg.home,
            copy_args(
                [OsStr::new("--bmap-sig"), sig.as_os_str()],
                work.image(),
                &dest,
            ),
        );
        if output.status.success() {
            let text = assert_copied(&output, &dest);
            if name.contains("sha1") {
                assert!(
                    text.contains("SHA-1"),
                    "{name}: accepted without the SHA-1 warning:\n{text}"
                );
            }
            continue;
        }
        let line = assert_refused(&output, &dest, &[]);
        let lower = line.to_lowercase();
        if line.contains("BAD")
            || lower.contains("changed after")
            || !reasons.iter().any(|r| lower.contains(r.as_str()))
        {
            wrong.push(format!("{name}: {line}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "good signatures (gpgv agrees) refused as if the bmap were tampered with, or \
         without naming the reason:\n{}",
        wrong.join("\n")
    );
}

/// The bit length of the last MPI of a binary v4 signature packet (ECDSA's `s`).
fn last_mpi_bits(sig: &[u8]) -> usize {
    let ctb = sig[0];
    assert_eq!(ctb & 0x80, 0x80, "an OpenPGP packet");
    let (header, len) = if ctb & 0x40 != 0 {
        match sig[1] {
            l @ 0..=191 => (2, l as usize),
            l @ 192..=223 => (3, ((l as usize - 192) << 8) + sig[2] as usize + 192),
            _ => (
                6,
                u32::from_be_bytes([sig[2], sig[3], sig[4], sig[5]]) as usize,
            ),
        }
    } else {
        match ctb & 3 {
            0 => (2, sig[1] as usize),
            1 => (3, u16::from_be_bytes([sig[1], sig[2]]) as usize),
            _ => (
                5,
                u32::from_be_bytes([sig[1], sig[2], sig[3], sig[4]]) as usize,
            ),
        }
    };
    let body = &sig[header..header + len];
    assert_eq!(body[0], 4, "a v4 signature");
    let be16 = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]) as usize;
    let mut at = 4;
    at += 2 + be16(at); // hashed subpackets
    at += 2 + be16(at); // unhashed subpackets
    at += 2; // left 16 bits of the digest
    let mut bits = 0;
    while at < body.len() {
        bits = be16(at);
        at += 2 + bits.div_ceil(8);
    }
    bits
}

#[test]
#[ignore = "known limitation: rPGP (k256) rejects the high-S ECDSA signatures gpg makes on secp256k1 about half the time; secp256k1 keys are rare for signing images"]
fn secp256k1_signatures_verify_whatever_half_of_the_curve_order_s_falls_in() {
    // gpg (libgcrypt) does not normalise ECDSA signatures to "low S": about half of its
    // secp256k1 signatures have s > n/2, and gpgv says "Good signature" for all.
    // Refusing those as BAD makes verification fail for one signing second in two.
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let work = Work::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let start = now - 86_400;
    let key = gpg.gen_key_at("Koblitz <k1@example.org>", "secp256k1", "sign", start);
    // Signatures at chosen times (deterministic per time) until there is one of each
    // kind: s >= 2^255 (above n/2, "high S") and s < 2^255.
    let (mut high, mut low) = (None, None);
    for i in 1..200 {
        let sig = work.path(&format!("k1-{i}.sig"));
        gpg.detach_sign_at(&key, &work.bmap(), &sig, start + i);
        let slot = if last_mpi_bits(&read(&sig)) == 256 {
            &mut high
        } else {
            &mut low
        };
        slot.get_or_insert(sig);
        if high.is_some() && low.is_some() {
            break;
        }
    }
    let (Some(high), Some(low)) = (high, low) else {
        panic!("no high-S and low-S pair in 200 signatures");
    };
    let mut refused = Vec::new();
    for (name, sig) in [("low S", &low), ("high S", &high)] {
        let gpgv = Command::new("gpgv")
            .arg("--keyring")
            .arg(gpg.pubring())
            .arg(sig)
            .arg(work.bmap())
            .output();
        if let Ok(gpgv) = gpgv {
            assert!(gpgv.status.success(), "{name}: gpgv does not accept it");
        }
        let dest = work.path(&format!("{name}.img"));
        let output = run(
            &gpg.home,
            copy_args(
                [OsStr::new("--bmap-sig"), sig.as_os_str()],
                work.image(),
                &dest,
            ),
        );
        if output.status.success() {
            let text = assert_copied(&output, &dest);
            assert_verified_by(&text, "Koblitz <k1@example.org>", &key);
        } else {
            let line = assert_refused(&output, &dest, &[]);
            refused.push(format!("{name} ({}): {line}", sig.display()));
        }
    }
    assert!(
        refused.is_empty(),
        "good secp256k1 signatures refused:\n{}",
        refused.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// 3. Remote bmaps: signatures beside URLs

/// `tests/fixtures/httpd.py --root DIR`: prints its port, exits when stdin closes.
#[derive(Debug)]
struct Httpd {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl Httpd {
    /// `None`: skipped (no python3).
    #[track_caller]
    fn start(root: &Path) -> Option<Httpd> {
        if !need_python() {
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/httpd.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--root")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("httpd.py starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Httpd {
            child,
            stdin,
            port: 0,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("httpd.py printed its port");
        server.port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("httpd.py printed {line:?}, not a port"));
        Some(server)
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn signatures_beside_a_url_bmap_are_discovered_and_verified() {
    let Some((gpg, alice, bob)) = alice_and_bob() else {
        return;
    };
    let work = Work::new();
    let root = work.path("www");
    fs::create_dir(&root).expect("mkdir www");
    copy_file(&work.image(), &root.join("x.img"));
    copy_file(&work.bmap(), &root.join("x.img.bmap"));
    let Some(server) = Httpd::start(&root) else {
        return;
    };
    let image = server.url("x.img");

    // x.img.bmap.asc beside the URL bmap.
    gpg.detach_sign(&alice, &work.bmap(), &root.join("x.img.bmap.asc"), true);
    let dest = work.path("asc.img");
    let output = run(&gpg.home, copy_args::<&str>([], &image, &dest));
    let text = assert_copied(&output, &dest);
    assert_discovered_sig(&text, &server.url("x.img.bmap.asc"));
    assert_verified_by(&text, ALICE, &alice);

    // Only a binary x.img.sig (a stripped name), by Bob, with --fingerprint.
    fs::remove_file(root.join("x.img.bmap.asc")).expect("rm");
    gpg.detach_sign(&bob, &work.bmap(), &root.join("x.img.sig"), false);
    let dest = work.path("sig.img");
    let output = run(
        &gpg.home,
        copy_args(["--fingerprint", bob.as_str()], &image, &dest),
    );
    let text = assert_copied(&output, &dest);
    assert_discovered_sig(&text, &server.url("x.img.sig"));
    assert_verified_by(&text, BOB, &bob);

    // A clearsigned bmap given as a URL.
    gpg.clearsign(&alice, &work.bmap(), &root.join("clear.bmap"));
    let dest = work.path("clear.img");
    let output = run(
        &gpg.home,
        copy_args(["--bmap", server.url("clear.bmap").as_str()], &image, &dest),
    );
    let text = assert_copied(&output, &dest);
    assert_verified_by(&text, ALICE, &alice);

    // A bad signature on the server: a signature of another file.
    let other = work.path("other.txt");
    write(&other, b"not the bmap\n");
    gpg.detach_sign(&alice, &other, &root.join("x.img.bmap.asc"), true);
    let dest = work.path("bad.img");
    let output = run(&gpg.home, copy_args::<&str>([], &image, &dest));
    assert_refused(&output, &dest, &["BAD"]);

    // The bmap on the server edited after signing (own checksum fixed): BAD.
    gpg.detach_sign(&alice, &work.bmap(), &root.join("x.img.bmap.asc"), true);
    write(&root.join("x.img.bmap"), bmap_without_range_193());
    let output = run(&gpg.home, copy_args::<&str>([], &image, &dest));
    assert_refused(&output, &dest, &["BAD"]);

    // The signer unknown to the keys in use: refused.
    copy_file(&work.bmap(), &root.join("x.img.bmap"));
    let keyring = work.path("bob.gpg");
    write(&keyring, gpg.export(&[&bob], false));
    let output = run(
        &gpg.home,
        copy_args(
            [OsStr::new("--keyring"), keyring.as_os_str()],
            &image,
            &dest,
        ),
    );
    assert_refused(&output, &dest, &["not in the keyring"]);

    // --no-sig-verify goes on.
    let dest = work.path("unverified.img");
    let output = run(&gpg.home, copy_args(["--no-sig-verify"], &image, &dest));
    assert_copied(&output, &dest);
}
