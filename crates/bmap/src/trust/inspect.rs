//! A bmap read to be described (`bmaptool info`), not to be copied with: the same
//! reading and signature check as [`super::trust`], but a signature that does not
//! verify and a file checksum that does not match are facts to show, not errors.

use super::{Error, Found, Options, SignatureCheck, check_signature, read_bmap};
use crate::format::{self, Bmap, SelfCheck};
use crate::signature;

/// A bmap read, its signature judged and its text parsed, whatever the verdicts.
#[derive(Debug)]
pub struct Inspected {
    /// The bmap.
    pub bmap: Bmap,
    /// How to name it.
    pub shown: String,
    /// The signature's verdict: `Err` when a signature was found but did not verify,
    /// or there was no key to check it with. A missing signature is
    /// [`SignatureCheck::Unsigned`] even when a keyring or fingerprint was given.
    pub signature: Result<SignatureCheck, Error>,
    /// Whether the bmap checks its own bytes, and whether they match
    /// ([`SelfCheck::Mismatch`] when not).
    pub self_check: SelfCheck,
    /// Oddities the parser accepted.
    pub warnings: Vec<String>,
}

/// Reads the bmap `found`, judges its signature as `options` say and parses it.
///
/// Errors are what prevents describing the bmap at all: it cannot be read, it is not
/// a bmap (the parser's error, with its line), a named signature or keyring cannot be
/// read, or a clearsigned bmap's text cannot be taken out.
pub fn inspect(mut found: Found, options: &Options) -> Result<Inspected, Error> {
    let shown = found.shown.clone();
    let bytes = read_bmap(&mut found, options)?;
    let (signature, text) = match check_signature(&found.location, &shown, bytes.clone(), options) {
        Ok((check, text)) => (Ok(check), text),
        Err(Error::UnsignedWithFingerprint | Error::UnsignedWithKeyring) => {
            (Ok(SignatureCheck::Unsigned), bytes)
        }
        Err(verdict @ (Error::Signature { .. } | Error::NoKeys { .. })) => {
            (Err(verdict), plain_text(&shown, bytes)?)
        }
        Err(other) => return Err(other),
    };
    let parsed = format::inspect(&text).map_err(|source| Error::Parse {
        shown: shown.clone(),
        source: Box::new(source),
    })?;
    Ok(Inspected {
        bmap: parsed.bmap,
        shown,
        signature,
        self_check: parsed.self_check,
        warnings: parsed.warnings.iter().map(ToString::to_string).collect(),
    })
}

/// The bmap's text: a clearsigned bmap's signed text, or the bytes as they are.
fn plain_text(shown: &str, bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
    if !signature::is_clearsigned(&bytes) {
        return Ok(bytes);
    }
    signature::clearsigned_text(&bytes).map_err(|source| Error::Clearsigned {
        shown: shown.to_owned(),
        source: Box::new(source),
    })
}
