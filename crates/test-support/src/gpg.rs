//! gpg-made keys and signatures for the signature tests of both crates (the library's
//! `tests/signature.rs` and the CLI's `tests/signed.rs`): a temporary GnuPG home driven
//! by the real `gpg`, the clock faked (`--faked-system-time`) where a key or a signature
//! must be from the past, and the situations gpgv refuses, each built the way a user
//! would build it. `gpgv` is the oracle.
//!
//! Tests that need `gpg` skip when it is missing, unless `BMAPTOOL_TEST_STRICT=1`,
//! where they fail (the rule of [`crate::require`]).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

pub use crate::env::{STRICT_VAR, require, runs, strict};

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `secs` as `date -u` shows it (`2024-06-12 20:04:40 UTC`): independent of the product.
pub fn utc(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%F %T UTC"])
        .output()
        .expect("date runs");
    assert!(out.status.success(), "date -u -d @{secs} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Options for every non-interactive gpg run.
const GPG_BATCH: [&str; 5] = [
    "--batch",
    "--yes",
    "--pinentry-mode",
    "loopback",
    "--passphrase=",
];

/// A temporary GnuPG home driven by the real `gpg`; its gpg-agent is killed on drop.
#[derive(Debug)]
pub struct Gpg {
    _dir: TempDir,
    /// The GnuPG home.
    pub home: PathBuf,
}

/// Why a key is revoked, as gpg's menu offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// "No reason specified" (a hard revocation).
    None,
    /// "Key has been compromised" (hard).
    Compromised,
    /// "Key is superseded" (soft).
    Superseded,
    /// "Key is no longer used" (soft).
    Retired,
}

impl Reason {
    /// The answer to gpg's "Please select the reason for the revocation" prompt.
    fn menu(self) -> &'static str {
        match self {
            Reason::None => "0",
            Reason::Compromised => "1",
            Reason::Superseded => "2",
            Reason::Retired => "3",
        }
    }
}

impl Gpg {
    /// `None`: skipped (no gpg).
    #[track_caller]
    pub fn new() -> Option<Gpg> {
        if !require(
            runs("gpg", &["--version"]) && runs("gpgconf", &["--version"]),
            "gpg and gpgconf (GnuPG 2)",
        ) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("bmt-gpg-")
            .tempdir()
            .expect("temporary GnuPG home");
        let home = dir.path().join("g");
        fs::create_dir(&home).expect("mkdir GnuPG home");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).expect("chmod");
        Some(Gpg { _dir: dir, home })
    }

    /// Runs `gpg ARGS...` in this home with `input` on stdin; panics with its stderr
    /// when it fails.
    pub fn run_with<S: AsRef<OsStr>>(
        &self,
        input: &str,
        args: impl IntoIterator<Item = S>,
    ) -> Vec<u8> {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(GPG_BATCH)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg runs");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes()).expect("feed gpg");
        drop(stdin);
        let out = child.wait_with_output().expect("gpg runs");
        assert!(
            out.status.success(),
            "gpg {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs `gpg ARGS...` in this home; panics with its stderr when it fails.
    pub fn run<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Vec<u8> {
        self.run_with("", args)
    }

    /// Runs `gpg ARGS...` as if the clock said `epoch` (frozen).
    pub fn run_at<S: AsRef<OsStr>>(
        &self,
        epoch: u64,
        args: impl IntoIterator<Item = S>,
    ) -> Vec<u8> {
        let mut all: Vec<OsString> = vec!["--faked-system-time".into(), format!("{epoch}!").into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self.run(all)
    }

    /// Makes a key now (`algo`, `usage` as `--quick-gen-key` takes them, no expiry);
    /// returns its fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str, usage: &str) -> String {
        self.run(["--quick-gen-key", uid, algo, usage, "never"]);
        self.primary(uid)
    }

    /// Makes a key as if the clock said `epoch`, expiring as `expire` says (`never`,
    /// `seconds=N`, `1d`...); returns its fingerprint.
    pub fn gen_key_at(
        &self,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        epoch: u64,
    ) -> String {
        self.run_at(epoch, ["--quick-gen-key", uid, algo, usage, expire]);
        self.primary(uid)
    }

    /// Adds a subkey to `primary` now; returns the subkey's fingerprint.
    pub fn add_subkey(&self, primary: &str, algo: &str, usage: &str) -> String {
        self.add_subkey_at(primary, algo, usage, "never", now())
    }

    /// Adds a subkey to `primary` as if the clock said `epoch`; returns its fingerprint.
    pub fn add_subkey_at(
        &self,
        primary: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        epoch: u64,
    ) -> String {
        let before = self.fingerprints(primary);
        self.run_at(epoch, ["--quick-add-key", primary, algo, usage, expire]);
        self.fingerprints(primary)
            .into_iter()
            .find(|f| !before.contains(f))
            .expect("a new subkey")
    }

    /// The primary key's fingerprint of the key matching `who`.
    pub fn primary(&self, who: &str) -> String {
        self.fingerprints(who).into_iter().next().expect("the key")
    }

    /// Fingerprints of the key matching `who`: primary first, then subkeys.
    pub fn fingerprints(&self, who: &str) -> Vec<String> {
        let out = self.run(["--with-colons", "--list-keys", who]);
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).expect("fingerprint field").to_owned())
            .collect()
    }

    /// `gpg -u KEY [--armor] --detach-sign -o OUT FILE`.
    pub fn detach_sign(&self, key: &str, file: &Path, out: &Path, armor: bool) {
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

    /// A binary detached signature of `file` by every key of `keys` (one file, one
    /// signature per key, in that order), made as if the clock said `epoch`, with
    /// `extra` options (`--default-sig-expire 1d`...).
    pub fn sign_at(&self, keys: &[&str], file: &Path, out: &Path, epoch: u64, extra: &[&str]) {
        let mut args: Vec<OsString> = Vec::new();
        for key in keys {
            args.extend(["--local-user".into(), OsString::from(key)]);
        }
        args.extend(extra.iter().map(OsString::from));
        args.extend([
            "--detach-sign".into(),
            "--output".into(),
            out.into(),
            file.into(),
        ]);
        self.run_at(epoch, args);
    }

    /// `gpg --faked-system-time EPOCH! -u KEY --detach-sign -o OUT FILE`.
    pub fn detach_sign_at(&self, key: &str, file: &Path, out: &Path, epoch: u64) {
        self.sign_at(&[key], file, out, epoch, &[]);
    }

    /// `gpg -u KEY... --clearsign -o OUT FILE`.
    pub fn clearsign(&self, keys: &[&str], file: &Path, out: &Path) {
        let mut args: Vec<OsString> = Vec::new();
        for key in keys {
            args.extend(["--local-user".into(), OsString::from(key)]);
        }
        args.extend([
            "--clearsign".into(),
            "--output".into(),
            out.into(),
            file.into(),
        ]);
        self.run(args);
    }

    /// Revokes key `primary` (`subkey`: its subkey number N, from 1, as `key N` in
    /// `--edit-key`) for `reason`, as if the clock said `epoch`.
    pub fn revoke_at(&self, primary: &str, subkey: Option<usize>, reason: Reason, epoch: u64) {
        let select = subkey.map(|n| format!("key {n}\n")).unwrap_or_default();
        // revkey, "Really revoke?", the reason, an empty description, "Is this okay?".
        let answers = format!("{select}revkey\ny\n{}\n\ny\nsave\n", reason.menu());
        self.edit_at(primary, &answers, epoch);
    }

    /// Toggles the capabilities `toggles` (letters of gpg's `change-usage` menu: `S`
    /// sign, `E` encrypt, `A` authenticate) of `primary` or of its subkey number N,
    /// as if the clock said `epoch`: a newer self-signature or binding with new flags.
    pub fn change_usage_at(&self, primary: &str, subkey: Option<usize>, toggles: &str, epoch: u64) {
        let select = subkey.map(|n| format!("key {n}\n")).unwrap_or_default();
        let toggles: String = toggles.chars().map(|c| format!("{c}\n")).collect();
        let answers = format!("{select}change-usage\n{toggles}Q\nsave\n");
        self.edit_at(primary, &answers, epoch);
    }

    fn edit_at(&self, primary: &str, answers: &str, epoch: u64) {
        self.run_with(
            answers,
            [
                "--expert",
                "--faked-system-time",
                &format!("{epoch}!"),
                "--command-fd",
                "0",
                "--edit-key",
                primary,
            ],
        );
    }

    /// `gpg --export [-a] KEYS...`.
    pub fn export(&self, keys: &[&str], armor: bool) -> Vec<u8> {
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
    pub fn pubring(&self) -> PathBuf {
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

/// What gpgv says of a signature file: its `--status-fd` lines.
#[derive(Debug)]
pub struct Gpgv {
    /// The status lines.
    pub status: String,
}

impl Gpgv {
    /// `None`: skipped (no gpgv). `keyring` is a binary export or a keybox.
    #[track_caller]
    pub fn check(keyring: &Path, signature: &Path, data: &Path) -> Option<Gpgv> {
        if !require(runs("gpgv", &["--version"]), "gpgv") {
            return None;
        }
        let out = Command::new("gpgv")
            .arg("--status-fd=1")
            .arg("--keyring")
            .arg(keyring)
            .arg(signature)
            .arg(data)
            .stdin(Stdio::null())
            .output()
            .expect("gpgv runs");
        Some(Gpgv {
            status: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }

    /// The reference's rule, signature by signature: some signature is `GOODSIG`
    /// (made by a valid key, unexpired, not revoked) and none is `BADSIG`.
    pub fn accepts(&self) -> bool {
        let has = |word: &str| {
            self.status
                .lines()
                .any(|l| l.starts_with(&format!("[GNUPG:] {word} ")))
        };
        has("GOODSIG") && !has("BADSIG")
    }
}

/// What a [`Case`] must come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A good signature by `signer`.
    Good,
    /// Key `key` expired at this time.
    KeyExpired { key: String, on: u64 },
    /// Key `key` was revoked at this time, for this reason (as the product says it).
    KeyRevoked {
        key: String,
        on: u64,
        reason: &'static str,
    },
    /// Key `key` may not sign; the reason contains `why`.
    NotForSigning { key: String, why: &'static str },
    /// The signature expired at this time.
    SignatureExpired { on: u64 },
    /// The signature is dated `signed`, before the key's creation.
    OlderThanKey { signed: u64, created: u64 },
}

/// A situation made by gpg: a keyring (binary export), a detached signature of the
/// data file, who signed, and what the verdict must be.
#[derive(Debug)]
pub struct Case {
    /// What it is, for messages.
    pub name: &'static str,
    /// The keyring: a binary export of the signer's key.
    pub keyring: PathBuf,
    /// The detached (binary) signature.
    pub signature: PathBuf,
    /// The key that signed (a subkey's fingerprint when a subkey signed).
    pub signer: String,
    /// The primary key.
    pub primary: String,
    /// The verdict.
    pub expect: Expect,
}

/// Ten days ago: keys of the past are made then, with lifetimes of a day or less.
pub fn past() -> u64 {
    now() - 10 * 86_400
}

/// Builds each situation of item 6 (and good ones beside them) for `data`, writing
/// keyrings and signatures into `dir`. Each case has its own key.
pub fn cases(gpg: &Gpg, data: &Path, dir: &Path) -> Vec<Case> {
    let builders: [fn(&Gpg, &Path, &Path) -> Case; 14] = [
        good_key,
        good_subkey,
        key_expiring_later,
        expired_key,
        expired_primary_of_a_signing_subkey,
        hard_revoked_key,
        soft_revoked_key,
        revoked_subkey,
        expired_subkey,
        expired_signature,
        signature_older_than_its_key,
        primary_without_the_sign_flag,
        encryption_only_subkey,
        subkey_with_a_broken_back_signature,
    ];
    builders.iter().map(|build| build(gpg, data, dir)).collect()
}

/// Writes the export of `primary` and returns a [`Case`].
fn case(
    gpg: &Gpg,
    dir: &Path,
    name: &'static str,
    (primary, signer): (&str, &str),
    signature: PathBuf,
    expect: Expect,
) -> Case {
    let keyring = dir.join(format!("{name}.gpg"));
    fs::write(&keyring, gpg.export(&[primary], false)).expect("write the keyring");
    Case {
        name,
        keyring,
        signature,
        signer: signer.to_owned(),
        primary: primary.to_owned(),
        expect,
    }
}

fn uid(name: &str) -> String {
    format!("{name} <{name}@example.org>")
}

/// A key made now, signing now.
pub fn good_key(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let key = gpg.gen_key(&uid("good"), "ed25519", "sign");
    let sig = dir.join("good.sig");
    gpg.detach_sign(&key, data, &sig, false);
    case(gpg, dir, "good", (&key, &key), sig, Expect::Good)
}

/// A certification-only primary key and a signing subkey.
pub fn good_subkey(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let key = gpg.gen_key(&uid("good-subkey"), "ed25519", "cert");
    let sub = gpg.add_subkey(&key, "ed25519", "sign");
    let sig = dir.join("good-subkey.sig");
    gpg.detach_sign(&format!("{sub}!"), data, &sig, false);
    case(gpg, dir, "good-subkey", (&key, &sub), sig, Expect::Good)
}

/// A key made in the past that expires in a year: expiry is judged at the check.
pub fn key_expiring_later(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("expiring-later"), "ed25519", "sign", "1y", t0);
    let sig = dir.join("expiring-later.sig");
    gpg.detach_sign_at(&key, data, &sig, t0 + 100);
    case(gpg, dir, "expiring-later", (&key, &key), sig, Expect::Good)
}

/// A key that expired a day after it was made, signing while it was valid (as the
/// reference's own test data).
pub fn expired_key(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("expired"), "ed25519", "sign", "seconds=86400", t0);
    let sig = dir.join("expired.sig");
    gpg.detach_sign_at(&key, data, &sig, t0 + 100);
    let expect = Expect::KeyExpired {
        key: key.clone(),
        on: t0 + 86_400,
    };
    case(gpg, dir, "expired", (&key, &key), sig, expect)
}

/// A signing subkey that never expires, under a primary key that expired.
pub fn expired_primary_of_a_signing_subkey(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(
        &uid("expired-primary"),
        "ed25519",
        "cert",
        "seconds=86400",
        t0,
    );
    let sub = gpg.add_subkey_at(&key, "ed25519", "sign", "never", t0 + 10);
    let sig = dir.join("expired-primary.sig");
    gpg.detach_sign_at(&format!("{sub}!"), data, &sig, t0 + 100);
    let expect = Expect::KeyExpired {
        key: key.clone(),
        on: t0 + 86_400,
    };
    case(gpg, dir, "expired-primary", (&key, &sub), sig, expect)
}

/// A key revoked after it signed: `reason` chooses hard or soft.
fn revoked(gpg: &Gpg, data: &Path, dir: &Path, name: &'static str, reason: Reason) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid(name), "ed25519", "sign", "never", t0);
    let sig = dir.join(format!("{name}.sig"));
    gpg.detach_sign_at(&key, data, &sig, t0 + 100);
    gpg.revoke_at(&key, None, reason, t0 + 200);
    let expect = Expect::KeyRevoked {
        key: key.clone(),
        on: t0 + 200,
        reason: match reason {
            Reason::None => "no reason given",
            Reason::Compromised => "key compromised",
            Reason::Superseded => "key superseded",
            Reason::Retired => "key retired",
        },
    };
    case(gpg, dir, name, (&key, &key), sig, expect)
}

/// Revoked as compromised (hard), after it signed.
pub fn hard_revoked_key(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    revoked(gpg, data, dir, "hard-revoked", Reason::Compromised)
}

/// Revoked as superseded (soft), after it signed: gpgv still says `REVKEYSIG`.
pub fn soft_revoked_key(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    revoked(gpg, data, dir, "soft-revoked", Reason::Superseded)
}

/// A signing subkey revoked (no reason given) after it signed.
pub fn revoked_subkey(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("revoked-subkey"), "ed25519", "cert", "never", t0);
    let sub = gpg.add_subkey_at(&key, "ed25519", "sign", "never", t0 + 10);
    let sig = dir.join("revoked-subkey.sig");
    gpg.detach_sign_at(&format!("{sub}!"), data, &sig, t0 + 100);
    gpg.revoke_at(&key, Some(1), Reason::None, t0 + 200);
    let expect = Expect::KeyRevoked {
        key: sub.clone(),
        on: t0 + 200,
        reason: "no reason given",
    };
    case(gpg, dir, "revoked-subkey", (&key, &sub), sig, expect)
}

/// A signing subkey that expired 1000 s after it was made, signing while valid.
pub fn expired_subkey(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("expired-subkey"), "ed25519", "cert", "never", t0);
    let sub = gpg.add_subkey_at(&key, "ed25519", "sign", "seconds=1000", t0 + 10);
    let sig = dir.join("expired-subkey.sig");
    gpg.detach_sign_at(&format!("{sub}!"), data, &sig, t0 + 100);
    let expect = Expect::KeyExpired {
        key: sub.clone(),
        on: t0 + 1010,
    };
    case(gpg, dir, "expired-subkey", (&key, &sub), sig, expect)
}

/// A signature that expired a day after it was made (`--default-sig-expire 1d`).
pub fn expired_signature(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("expired-signature"), "ed25519", "sign", "never", t0);
    let sig = dir.join("expired-signature.sig");
    gpg.sign_at(
        &[&key],
        data,
        &sig,
        t0 + 100,
        &["--default-sig-expire", "1d"],
    );
    let expect = Expect::SignatureExpired {
        on: t0 + 100 + 86_400,
    };
    case(gpg, dir, "expired-signature", (&key, &key), sig, expect)
}

/// A signature dated 1000 s before its key was made (`--ignore-time-conflict`).
pub fn signature_older_than_its_key(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("older-than-key"), "ed25519", "sign", "never", t0);
    let sig = dir.join("older-than-key.sig");
    gpg.sign_at(&[&key], data, &sig, t0 - 1000, &["--ignore-time-conflict"]);
    let expect = Expect::OlderThanKey {
        signed: t0 - 1000,
        created: t0,
    };
    case(gpg, dir, "older-than-key", (&key, &key), sig, expect)
}

/// A primary key that signed, then lost its sign flag (a newer self-signature).
pub fn primary_without_the_sign_flag(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("no-sign-flag"), "ed25519", "sign,cert", "never", t0);
    let sig = dir.join("no-sign-flag.sig");
    gpg.detach_sign_at(&key, data, &sig, t0 + 100);
    gpg.change_usage_at(&key, None, "S", t0 + 200);
    let expect = Expect::NotForSigning {
        key: key.clone(),
        why: "allow only certification",
    };
    case(gpg, dir, "no-sign-flag", (&key, &key), sig, expect)
}

/// An RSA subkey that signed, then became encryption-only (a newer binding).
pub fn encryption_only_subkey(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let t0 = past();
    let key = gpg.gen_key_at(&uid("encryption-only"), "ed25519", "cert", "never", t0);
    let sub = gpg.add_subkey_at(&key, "rsa2048", "sign", "never", t0 + 10);
    let sig = dir.join("encryption-only.sig");
    gpg.detach_sign_at(&format!("{sub}!"), data, &sig, t0 + 100);
    gpg.change_usage_at(&key, Some(1), "SE", t0 + 200);
    let expect = Expect::NotForSigning {
        key: sub.clone(),
        why: "allow only encryption",
    };
    case(gpg, dir, "encryption-only", (&key, &sub), sig, expect)
}

/// A signing subkey whose binding's embedded back-signature (unhashed, as gpg writes
/// it) has one bit flipped.
pub fn subkey_with_a_broken_back_signature(gpg: &Gpg, data: &Path, dir: &Path) -> Case {
    let key = gpg.gen_key(&uid("broken-back-signature"), "ed25519", "cert");
    let sub = gpg.add_subkey(&key, "ed25519", "sign");
    let sig = dir.join("broken-back-signature.sig");
    gpg.detach_sign(&format!("{sub}!"), data, &sig, false);
    let expect = Expect::NotForSigning {
        key: sub.clone(),
        why: "back-signature",
    };
    let mut case = case(gpg, dir, "broken-back-signature", (&key, &sub), sig, expect);
    let mut bytes = fs::read(&case.keyring).expect("read the export");
    // Subpacket type 32 (embedded signature) holding a v4 signature of class 0x19; the
    // octet before it is the subpacket's length (type octet included).
    let at = bytes
        .windows(3)
        .position(|w| w == [0x20, 0x04, 0x19])
        .expect("an embedded back-signature");
    let len = usize::from(bytes[at - 1]);
    bytes[at + len - 1] ^= 0x01;
    case.keyring = dir.join("broken-back-signature-flipped.gpg");
    fs::write(&case.keyring, bytes).expect("write the keyring");
    case
}

/// The bit length of the last MPI of a binary v4 signature packet (ECDSA's `s`).
pub fn last_mpi_bits(sig: &[u8]) -> usize {
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

/// A secp256k1 key and two signatures of `data` by it: one with S above n/2 ("high
/// S": S >= 2^255 certainly is) and one below 2^255. Signs at successive faked times
/// (each deterministic) until both kinds occurred; returns (key, high, low, tries).
pub fn secp256k1_high_and_low_s(
    gpg: &Gpg,
    data: &Path,
    dir: &Path,
) -> (String, PathBuf, PathBuf, u64) {
    let start = now() - 86_400;
    let key = gpg.gen_key_at(&uid("koblitz"), "secp256k1", "sign", "never", start);
    let (mut high, mut low) = (None, None);
    for i in 1..200 {
        let sig = dir.join(format!("k1-{i}.sig"));
        gpg.detach_sign_at(&key, data, &sig, start + i);
        let bytes = fs::read(&sig).expect("read the signature");
        let slot = if last_mpi_bits(&bytes) == 256 {
            &mut high
        } else {
            &mut low
        };
        slot.get_or_insert(sig);
        if let (Some(high), Some(low)) = (&high, &low) {
            return (key, high.clone(), low.clone(), i);
        }
    }
    panic!("no high-S and low-S pair in 200 secp256k1 signatures");
}
