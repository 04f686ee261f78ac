//! The bmap's OpenPGP signature, for `copy` and `verify`: option checks, the
//! library's trust options from the arguments (and the user's GnuPG home), the trust
//! step both commands share (find the bmap, then fetch, check and parse it), advice for
//! its errors in the CLI's words, and what the check found, told to the user.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bmap::Interrupt;
use bmap::signature::Verified;
use bmap::source::remote::{self, Location};
use bmap::trust::{self, Found, Keys, SignatureCheck, SignatureSource, Trusted};

use crate::cli::SignatureArgs;
use crate::input;
use crate::messages;

/// Refuses the option combinations the reference refuses (`nobmap`: `copy --nobmap`).
pub fn check_options(args: &SignatureArgs, nobmap: bool) -> Result<()> {
    if args.bmap_sig.is_some() && args.no_sig_verify {
        bail!("--bmap-sig and --no-sig-verify cannot be used together");
    }
    if args.keyring.is_some() && args.no_sig_verify {
        bail!("--no-sig-verify and --keyring cannot be used together");
    }
    if args.fingerprint.is_some() && args.no_sig_verify {
        bail!("--no-sig-verify and --fingerprint cannot be used together");
    }
    if args.bmap_sig.is_some() && nobmap {
        bail!("the bmap signature file was specified, but bmap file was not found");
    }
    Ok(())
}

/// The library's trust options for these arguments: which signature, which keys
/// (`--keyring`, or the user's GnuPG keyrings from `GNUPGHOME` or `~/.gnupg`).
pub fn trust_options(
    args: &SignatureArgs,
    remote: &remote::Options,
    interrupt: &Interrupt,
) -> Result<trust::Options> {
    let signature = if args.no_sig_verify {
        SignatureSource::Skip
    } else if let Some(arg) = &args.bmap_sig {
        // A location is refused only for its URL scheme, which the error names.
        SignatureSource::Named(input::locate(arg).context("cannot open the bmap signature file")?)
    } else {
        SignatureSource::Discover
    };
    let keys = match &args.keyring {
        Some(path) => Keys::Named(path.clone()),
        None => {
            let home = std::env::var_os("GNUPGHOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".gnupg")));
            let files = home
                .iter()
                .flat_map(|home| {
                    [
                        "pubring.kbx",
                        "pubring.gpg",
                        "trustedkeys.kbx",
                        "trustedkeys.gpg",
                    ]
                    .map(|name| home.join(name))
                })
                .collect();
            Keys::Default { files, home }
        }
    };
    Ok(trust::Options {
        signature,
        keys,
        fingerprint: args.fingerprint.clone(),
        remote: remote.clone(),
        interrupt: interrupt.clone(),
    })
}

/// Finds the bmap: `named` (`--bmap`, a path or URL), or discovered beside `image`
/// (remote candidates are fetched; a signal ends a stalled transfer).
/// `copy`'s words when no bmap is found beside the image (the reference's).
pub const NOT_FOUND: &str = "bmap file not found, please, use --bmap to name it, or --nobmap \
                             to flash the whole image without bmap";

/// `not_found` is what to say when nothing is found beside `image` (each command has
/// its own way out).
pub fn find_bmap(
    named: Option<&OsStr>,
    image: Option<&Location>,
    remote: &remote::Options,
    interrupt: &Interrupt,
    not_found: &'static str,
) -> Result<Found> {
    Ok(match named {
        // A location is refused only for its URL scheme, which the error names.
        Some(name) => Found::named(input::locate(name).context("cannot open the bmap file")?),
        None => {
            let (image, options) = (image.cloned(), remote.clone());
            let found =
                crate::signals::blocking(interrupt, move || trust::find(image.as_ref(), &options))?
                    .map_err(|error| match error {
                        trust::Error::NotFound => {
                            super::errcode::coded("bmap-not-found", not_found)
                        }
                        other => explain(other),
                    })?;
            messages::info(format_args!("discovered bmap file '{}'", found.shown));
            found
        }
    })
}

/// Reads the bmap `found`, checks its signature as `args` say, parses it, and tells
/// the user what was found (the signature, the parser's warnings).
pub fn trust_bmap(
    found: Found,
    args: &SignatureArgs,
    remote: &remote::Options,
    interrupt: &Interrupt,
) -> Result<Trusted> {
    let options = trust_options(args, remote, interrupt)?;
    let trusted = crate::signals::blocking(interrupt, move || trust::trust(found, &options))?
        .map_err(explain)?;
    report(&trusted);
    let shown = &trusted.shown;
    for warning in &trusted.warnings {
        messages::warning(format_args!("bmap file '{shown}': {warning}"));
    }
    Ok(trusted)
}

/// The advice a trust error needs in the CLI's words: the options to use.
pub fn explain(error: trust::Error) -> anyhow::Error {
    let advice = match &error {
        trust::Error::NotFound => {
            return super::errcode::coded("bmap-not-found", NOT_FOUND);
        }
        trust::Error::InlineAndDetached { shown } => {
            return super::errcode::coded(
                "usage",
                format!(
                    "the bmap file '{shown}' has clearsign format and already contains the \
                 signature, so --bmap-sig option should not be used"
                ),
            );
        }
        trust::Error::UnsignedWithFingerprint => {
            return super::errcode::coded(
                "signature-missing",
                "no signature found but --fingerprint given",
            );
        }
        trust::Error::UnsignedWithKeyring => {
            return super::errcode::coded(
                "signature-missing",
                "no signature found but --keyring given",
            );
        }
        trust::Error::NoKeys { .. } => Some(
            "import the signer's key (gpg --import), pass --keyring FILE, or use \
             --no-sig-verify",
        ),
        _ => None,
    };
    match advice {
        Some(advice) => anyhow::anyhow!("{error}: {advice}"),
        None => anyhow::Error::new(error),
    }
}

/// Tells what the signature check found: the inline signature, the file discovered
/// beside the bmap, who signed it, and why other signatures were passed over.
pub fn report(trusted: &Trusted) {
    let shown = &trusted.shown;
    match &trusted.signature {
        SignatureCheck::Unsigned => {
            messages::debug(format_args!("bmap file '{shown}' is not signed"));
        }
        SignatureCheck::Skipped { inline: true } => {
            messages::info(format_args!(
                "discovered inline signature in bmap file '{shown}'"
            ));
            messages::warning("not verifying the bmap's signature (--no-sig-verify)");
        }
        SignatureCheck::Skipped { inline: false } => {}
        SignatureCheck::Verified {
            verdict,
            file,
            inline,
            discovered,
            keyrings,
        } => {
            if *inline {
                messages::info(format_args!(
                    "discovered inline signature in bmap file '{shown}'"
                ));
            } else if *discovered {
                messages::info(format_args!(
                    "discovered signature file for bmap '{shown}': '{file}'"
                ));
            }
            messages::debug(format_args!(
                "verifying with the keys of {}",
                keyrings.join(", ")
            ));
            report_verified(verdict, shown, file);
        }
    }
}

/// Reports the good signature: who made it, which one of the file's signatures it is,
/// and why the others were passed over.
fn report_verified(verified: &Verified, shown: &str, sig_shown: &str) {
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
