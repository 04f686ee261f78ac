//! The bmap's OpenPGP signature, for `copy`: option checks, discovery of a detached
//! signature beside the bmap, the keyring, and the verdict. Runs before the bmap is
//! parsed and before anything is written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::signature::{self, Keyring, Verified};
use bmap::source::remote::{self, Location};

use crate::cli::CopyArgs;
use crate::input;
use crate::messages;

/// Refuses the option combinations the reference refuses.
pub fn check_options(args: &CopyArgs) -> Result<()> {
    if args.bmap_sig.is_some() && args.no_sig_verify {
        bail!("--bmap-sig and --no-sig-verify cannot be used together");
    }
    if args.keyring.is_some() && args.no_sig_verify {
        bail!("--no-sig-verify and --keyring cannot be used together");
    }
    if args.fingerprint.is_some() && args.no_sig_verify {
        bail!("--no-sig-verify and --fingerprint cannot be used together");
    }
    if args.bmap_sig.is_some() && args.nobmap {
        bail!("the bmap signature file was specified, but bmap file was not found");
    }
    Ok(())
}

/// Verifies the bmap's signature as the options say; returns the bmap bytes to parse
/// (a clearsigned bmap's signed text).
pub fn verify(
    args: &CopyArgs,
    location: &Location,
    shown: &str,
    bytes: Vec<u8>,
    remote: &remote::Options,
    interrupt: &Interrupt,
) -> Result<Vec<u8>> {
    if signature::is_clearsigned(&bytes) {
        messages::info(format_args!(
            "discovered inline signature in bmap file '{shown}'"
        ));
        if args.bmap_sig.is_some() {
            bail!(
                "the bmap file '{shown}' has clearsign format and already contains the \
                 signature, so --bmap-sig option should not be used"
            );
        }
        if args.no_sig_verify {
            messages::warning("not verifying the bmap's signature (--no-sig-verify)");
            return signature::clearsigned_text(&bytes)
                .with_context(|| format!("cannot read the clearsigned bmap file '{shown}'"));
        }
        let keyring = keyring(args, interrupt)?;
        let (verified, text) = signature::verify_clearsigned(&bytes, &keyring, &options(args))
            .with_context(|| format!("cannot use bmap file '{shown}'"))?;
        report(&verified, shown, shown);
        return Ok(text);
    }
    if args.no_sig_verify {
        return Ok(bytes);
    }
    let Some((sig_shown, sig)) = detached(args, location, shown, remote, interrupt)? else {
        if args.fingerprint.is_some() {
            bail!("no signature found but --fingerprint given");
        }
        if args.keyring.is_some() {
            bail!("no signature found but --keyring given");
        }
        messages::debug(format_args!("bmap file '{shown}' is not signed"));
        return Ok(bytes);
    };
    let keyring = keyring(args, interrupt)?;
    let verified = signature::verify_detached(&bytes, &sig, &keyring, &options(args))
        .with_context(|| {
            format!("cannot use the signature '{sig_shown}' of bmap file '{shown}'")
        })?;
    report(&verified, shown, &sig_shown);
    Ok(bytes)
}

/// How to judge: now, and by the key of `--fingerprint` if given.
fn options(args: &CopyArgs) -> signature::Options {
    signature::Options {
        fingerprint: args.fingerprint.clone(),
        ..signature::Options::default()
    }
}

/// Reports the good signature: who made it, which one of the file's signatures it is,
/// and why the others were passed over.
fn report(verified: &Verified, shown: &str, sig_shown: &str) {
    messages::info(format_args!(
        "successfully verified bmap file signature of {} (fingerprint {})",
        verified.user_id, verified.signer
    ));
    if verified.count > 1 {
        messages::info(format_args!(
            "signature {} of the {} in '{sig_shown}' is the one that verified",
            verified.number, verified.count
        ));
    }
    for (number, why) in &verified.passed_over {
        messages::info(format_args!(
            "signature {number} was passed over: {}",
            why.reason()
        ));
    }
    if verified.sha1 {
        messages::warning(format_args!(
            "the signature of bmap file '{shown}' uses SHA-1, which is weak; ask for a new \
             signature"
        ));
    }
}

/// The detached signature: `--bmap-sig`, or the first `.asc`/`.sig` found beside the bmap.
fn detached(
    args: &CopyArgs,
    location: &Location,
    shown: &str,
    remote: &remote::Options,
    interrupt: &Interrupt,
) -> Result<Option<(String, Vec<u8>)>> {
    if let Some(arg) = &args.bmap_sig {
        let name = Path::new(arg).display().to_string();
        // A location is refused only for its URL scheme, which the error names.
        let location = input::locate(arg).context("cannot open the bmap signature file")?;
        let bytes = read(&location, remote, interrupt)
            .with_context(|| match &location {
                Location::Local(_) => format!("cannot open bmap signature file '{name}'"),
                // The server's error names the URL.
                Location::Url(_) => "cannot open the bmap signature file".to_owned(),
            })?
            .ok_or_else(|| {
                anyhow::anyhow!("cannot open bmap signature file '{name}': not found")
            })?;
        return Ok(Some((name, bytes)));
    }
    let candidates: Vec<Location> = match location {
        Location::Local(path) => bmap::discover::signature_candidate_paths(path)
            .into_iter()
            .map(Location::Local)
            .collect(),
        Location::Url(url) => remote::signature_candidates(url)
            .into_iter()
            .map(Location::Url)
            .collect(),
    };
    for candidate in candidates {
        let name = match &candidate {
            Location::Local(path) => path.display().to_string(),
            Location::Url(url) => remote::redact(url),
        };
        let found = read(&candidate, remote, interrupt).with_context(|| match &candidate {
            Location::Local(_) => format!("cannot read '{name}'"),
            // The server's error names the URL.
            Location::Url(_) => "cannot look for the bmap's signature".to_owned(),
        })?;
        if let Some(bytes) = found {
            messages::info(format_args!(
                "discovered signature file for bmap '{shown}': '{name}'"
            ));
            return Ok(Some((name, bytes)));
        }
    }
    Ok(None)
}

/// A signature file's bytes, `None` when it does not exist.
fn read(
    location: &Location,
    remote: &remote::Options,
    interrupt: &Interrupt,
) -> Result<Option<Vec<u8>>> {
    match location {
        Location::Local(path) => match input::read(path, &input::SIGNATURE, interrupt) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        },
        Location::Url(url) => {
            let (url, options) = (url.clone(), remote.clone());
            let fetched = crate::signals::blocking(interrupt, move || {
                remote::fetch(&url, &options, input::SIGNATURE.bytes)
            })?;
            match fetched {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e)
                    if e.is_not_found()
                        || matches!(e, remote::Error::Status { status: 403, .. }) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The keys to verify with: `--keyring`, or the user's GnuPG keys.
fn keyring(args: &CopyArgs, interrupt: &Interrupt) -> Result<Keyring> {
    let mut keyring = Keyring::new();
    if let Some(path) = &args.keyring {
        let bytes = input::read(path, &input::KEYRING, interrupt)
            .with_context(|| format!("cannot read keyring '{}'", path.display()))?;
        keyring
            .add(&bytes)
            .with_context(|| format!("cannot read keyring '{}'", path.display()))?;
        return Ok(keyring);
    }
    let home = std::env::var_os("GNUPGHOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".gnupg")));
    let mut read_any = Vec::new();
    if let Some(home) = &home {
        for name in [
            "pubring.kbx",
            "pubring.gpg",
            "trustedkeys.kbx",
            "trustedkeys.gpg",
        ] {
            let path = home.join(name);
            let bytes = match input::read(&path, &input::KEYRING, interrupt) {
                Ok(bytes) => bytes,
                // A missing or unreadable keyring is skipped: only the others count.
                Err(input::ReadError::Io(_)) => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read keyring '{}'", path.display()));
                }
            };
            keyring
                .add(&bytes)
                .with_context(|| format!("cannot read keyring '{}'", path.display()))?;
            read_any.push(path.display().to_string());
        }
    }
    messages::debug(format_args!(
        "verifying with the keys of {}",
        read_any.join(", ")
    ));
    if keyring.is_empty() {
        bail!(
            "the bmap is signed but there is no public key to check it with ({}): import the \
             signer's key (gpg --import), pass --keyring FILE, or use --no-sig-verify",
            home.map_or_else(
                || "no GnuPG home".to_owned(),
                |h| format!("none in {}", h.display())
            )
        );
    }
    Ok(keyring)
}
