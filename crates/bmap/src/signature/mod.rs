//! OpenPGP signatures of bmaps, verified in-process (no gpg needed): detached
//! signatures (binary or armored) and clearsigned bmaps, against keys from OpenPGP
//! keyring files (binary or armored) or GnuPG keybox (`.kbx`) files.
//!
//! A clearsigned bmap is verified first; only its signed text (dash-escaping undone)
//! is then the bmap: text outside the signed block is never used.
//!
//! Policy: the verdicts of gpgv, as strict as the reference bmaptool, which accepts
//! only gpg's `GOODSIG`. A signature is good when it verifies with a key of the
//! keyring (the primary key, or a subkey bound to it by a valid binding signature and
//! back-signature) whose flags allow signing, that was created before the signature,
//! and when neither the key, nor its primary key, nor the signature has expired (at
//! the time of the check) or been revoked. A signature by an expired key is refused
//! even when it was made while the key was valid (gpgv's `EXPKEYSIG`), and so is one
//! by a revoked key, whatever the revocation's reason (gpgv's `REVKEYSIG`). See
//! [`State`] for each refusal. Signatures over MD5 are refused as forgeable; SHA-1
//! signatures are accepted (as gpgv does) and reported so that the caller can warn.
//! ECDSA signatures on secp256k1 with a "high" S (gpg makes them half of the time)
//! are normalised before they are checked, as libgcrypt accepts them.
//!
//! A file may hold several signatures: each is judged on its own; the first good one
//! (by the key that [`Options::fingerprint`] names, if it names one) is the verdict,
//! and the others are reported in [`Verified::passed_over`]. A BAD signature among
//! them refuses the file, as gpgv fails.

mod clearsigned;
mod date;
mod ecdsa;
mod judge;
mod keyring;
mod validity;

use std::time::SystemTime;

use pgp::composed::{Deserializable, DetachedSignature};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::KeyDetails;

pub use date::Date;
pub use keyring::Keyring;

/// The start of a clearsigned message.
const CLEARSIGN_HEADER: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";

/// More signatures than this in one file are not a signature file.
const MAX_SIGNATURES: usize = 100;

/// What to do about a key that cannot vouch for the bmap. Messages say what is wrong
/// and what to get; they never name a program's options (the caller adds those).
const GET_A_GOOD_ONE: &str = "get a bmap signed with a valid key";

/// Why a signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The keyring file is not a keyring.
    #[error("not an OpenPGP keyring ({0})")]
    Keyring(String),
    /// The signature (or clearsigned message) cannot be parsed.
    #[error("the signature is malformed ({0}): get a good copy of the signature")]
    Malformed(String),
    /// The signature uses an algorithm or curve this build cannot check.
    #[error(
        "the signature by key {fingerprint} cannot be checked here ({reason}); check it with \
         gpgv"
    )]
    Unsupported {
        /// The key.
        fingerprint: String,
        /// What is not supported.
        reason: String,
    },
    /// No key of the keyring made the signature.
    #[error(
        "the bmap's signature was made by key {issuer}, which is not in the keyring: import it \
         (gpg --import) or use a keyring that holds it"
    )]
    UnknownKey {
        /// Fingerprint or key id of the signer, as the signature names it.
        issuer: String,
    },
    /// A key of the keyring matches the signature's issuer but the signature does not
    /// verify: the bmap was changed after it was signed, or the signature is forged.
    #[error(
        "discovered a BAD GPG signature on the bmap (key {fingerprint}): the bmap was changed \
         after it was signed, or the signature is not for this bmap; do not use this bmap: \
         get the right bmap and signature"
    )]
    Bad {
        /// The key that was tried.
        fingerprint: String,
    },
    /// The signature uses a hash we refuse.
    #[error(
        "the signature uses {0:?}, which can be forged; it is not accepted: get the bmap \
         signed again with SHA-256 or better"
    )]
    WeakHash(HashAlgorithm),
    /// The signature verifies, or would, but the key or the signature is not in a state
    /// that lets it vouch for the bmap.
    #[error("the bmap is signed by key {signer}, but {}: {}", state.describe(signer), GET_A_GOOD_ONE)]
    Refused {
        /// The key that signed (a subkey's fingerprint when a subkey signed).
        signer: String,
        /// What is wrong.
        state: State,
    },
    /// Good signatures, none by the key the caller asked for.
    #[error(
        "the bmap is signed by {}, not by the required key ({wanted}): check that you have \
         the right bmap and fingerprint",
        signers.iter().map(|(s, p)| format!("key {s} (primary key {p})")).collect::<Vec<_>>().join(", ")
    )]
    WrongSigner {
        /// The fingerprint asked for, as given.
        wanted: String,
        /// The good signers: (signing key, primary key).
        signers: Vec<(String, String)>,
    },
    /// A file of several signatures holds a BAD one.
    #[error("signature {number} of {count}: {error}")]
    OneOfSeveral {
        /// Which signature (from 1).
        number: usize,
        /// How many the file holds.
        count: usize,
        /// What is wrong with it.
        error: Box<Error>,
    },
    /// A file of several signatures holds no good one.
    #[error("none of the {count} signatures is accepted; signature {number}: {error}")]
    NoneOfSeveral {
        /// The signature whose refusal says the most (from 1).
        number: usize,
        /// How many the file holds.
        count: usize,
        /// Why it is refused.
        error: Box<Error>,
    },
}

impl Error {
    /// Why a signature was refused, without the advice on what to do: for a signature
    /// that was passed over because another one of the file verified.
    pub fn reason(&self) -> String {
        match self {
            Error::Refused { signer, state } => {
                format!("signed by key {signer}, but {}", state.describe(signer))
            }
            Error::UnknownKey { issuer } => {
                format!("made by key {issuer}, which is not in the keyring")
            }
            Error::Unsupported {
                fingerprint,
                reason,
            } => format!("made by key {fingerprint}, which cannot be checked here ({reason})"),
            Error::WeakHash(hash) => format!("it uses {hash:?}, which can be forged"),
            Error::Malformed(what) => format!("it is malformed ({what})"),
            other => other.to_string(),
        }
    }
}

/// Why a signature that names a key of the keyring cannot vouch for the bmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `key` (the signing key or its primary key) expired (gpgv's `EXPKEYSIG`).
    KeyExpired {
        /// Fingerprint of the expired key.
        key: String,
        /// When it expired.
        on: Date,
    },
    /// `key` (the signing key or its primary key) was revoked (gpgv's `REVKEYSIG`).
    KeyRevoked {
        /// Fingerprint of the revoked key.
        key: String,
        /// The revocation's date.
        on: Date,
        /// The revocation's reason, with its text.
        reason: String,
    },
    /// `key` may not make data signatures: its flags, a missing binding or back
    /// signature, or no valid self-signature (gpgv's "wrong key usage").
    NotForSigning {
        /// Fingerprint of the key.
        key: String,
        /// Why.
        why: String,
    },
    /// `key` was created after this machine's clock (gpgv's "time warp").
    KeyInTheFuture {
        /// Fingerprint of the key.
        key: String,
        /// Its creation time.
        created: Date,
    },
    /// The signature expired (gpgv's `EXPSIG`).
    SignatureExpired {
        /// When.
        on: Date,
    },
    /// The signature is dated before its key was created (gpgv's "time conflict").
    OlderThanKey {
        /// The signature's date.
        signed: Date,
        /// The signing key's creation.
        created: Date,
    },
    /// The signature carries a critical notation gpg does not know (gpgv: "assuming bad
    /// signature ... due to an unknown critical bit", then BAD).
    CriticalNotation {
        /// The notation's name.
        name: String,
    },
}

impl State {
    /// Whether the state is found only once the signature verified (revocation and
    /// expiry), so that the key is certainly the signer.
    fn after_cryptography(&self) -> bool {
        matches!(
            self,
            State::KeyExpired { .. }
                | State::KeyRevoked { .. }
                | State::SignatureExpired { .. }
                | State::CriticalNotation { .. }
        )
    }

    /// The state as the end of "the bmap is signed by key SIGNER, but ...".
    fn describe(&self, signer: &str) -> String {
        let subject = |key: &str| {
            if key == signer {
                "the key".to_owned()
            } else {
                format!("its primary key {key}")
            }
        };
        match self {
            State::KeyExpired { key, on } => format!("{} expired on {on}", subject(key)),
            State::KeyRevoked { key, on, reason } => {
                format!("{} was revoked on {on} ({reason})", subject(key))
            }
            State::NotForSigning { key, why } => {
                format!("{} is not allowed to sign: {why}", subject(key))
            }
            State::KeyInTheFuture { key, created } => format!(
                "{} was created on {created}, which is in the future (check this machine's \
                 clock)",
                subject(key)
            ),
            State::SignatureExpired { on } => format!("the signature expired on {on}"),
            State::OlderThanKey { signed, created } => format!(
                "the signature is dated {signed}, older than the key (created on {created})"
            ),
            State::CriticalNotation { name } => format!(
                "the signature carries the critical notation '{name}', which gpg does not \
                 know and so counts as BAD"
            ),
        }
    }
}

/// A good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Fingerprint of the key that signed (a subkey's when a subkey signed), upper-case hex.
    pub signer: String,
    /// Fingerprint of the primary key, upper-case hex.
    pub primary: String,
    /// The primary key's user id (its primary one).
    pub user_id: String,
    /// Whether the signature hashes with SHA-1 (accepted, worth a warning).
    pub sha1: bool,
    /// When the signature was made.
    pub created: Date,
    /// Which signature of the file this is (from 1).
    pub number: usize,
    /// How many signatures the file holds.
    pub count: usize,
    /// The file's other signatures that are not good: (number, why).
    pub passed_over: Vec<(usize, Error)>,
}

impl Verified {
    /// Whether `fingerprint` (hex, any case, spaces allowed) names the signing key or
    /// its primary key.
    pub fn matches(&self, fingerprint: &str) -> bool {
        let wanted: String = fingerprint
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        wanted == self.signer || wanted == self.primary
    }
}

/// How to judge signatures.
#[derive(Debug, Clone)]
pub struct Options {
    /// The time of the check: expiry is judged at this time.
    pub now: SystemTime,
    /// Accept only a signature by this key (the signing key's or its primary key's
    /// fingerprint, hex, any case, spaces allowed).
    pub fingerprint: Option<String>,
}

impl Default for Options {
    /// Now, any key of the keyring.
    fn default() -> Options {
        Options {
            now: SystemTime::now(),
            fingerprint: None,
        }
    }
}

/// Whether `bytes` is a clearsigned message.
pub fn is_clearsigned(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(CLEARSIGN_HEADER)
}

/// Verifies a file of detached signatures (binary or armored) of `data`.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    keyring: &Keyring,
    options: &Options,
) -> Result<Verified, Error> {
    let malformed = |e: pgp::errors::Error| Error::Malformed(pgp_message(&e));
    let parsed: Vec<_> = if signature
        .trim_ascii_start()
        .starts_with(b"-----BEGIN PGP SIGNATURE-----")
    {
        DetachedSignature::from_armor_many(signature)
            .map_err(malformed)?
            .0
            .take(MAX_SIGNATURES + 1)
            .collect()
    } else {
        DetachedSignature::from_bytes_many(signature)
            .map_err(malformed)?
            .take(MAX_SIGNATURES + 1)
            .collect()
    };
    let signatures = parsed
        .into_iter()
        .map(|s| s.map(|s| s.signature).map_err(malformed))
        .collect::<Result<Vec<_>, _>>()?;
    judge::all(&signatures, data, keyring, options)
}

/// What rPGP says about a signature it cannot parse, without the `Debug` form that its
/// `InvalidPacketContent` shows (with a captured backtrace when `RUST_BACKTRACE` is
/// set): the innermost message instead.
pub(crate) fn pgp_message(e: &pgp::errors::Error) -> String {
    match e {
        pgp::errors::Error::InvalidPacketContent { source } => {
            format!("invalid packet content: {}", pgp_message(source))
        }
        other => other.to_string(),
    }
}

/// Verifies a clearsigned bmap; returns the verdict and the signed text (the bmap).
pub fn verify_clearsigned(
    bytes: &[u8],
    keyring: &Keyring,
    options: &Options,
) -> Result<(Verified, Vec<u8>), Error> {
    let message = clearsigned::parse(bytes)?;
    let verified = judge::all(&message.signatures, &message.signed, keyring, options)?;
    Ok((verified, message.text))
}

/// The signed text of a clearsigned bmap, without checking the signature
/// (`--no-sig-verify`): still only the text inside the signed block.
pub fn clearsigned_text(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    clearsigned::parse(bytes).map(|message| message.text)
}

/// A key's fingerprint, upper-case hex.
fn fingerprint(key: &impl KeyDetails) -> String {
    hex_upper(key.fingerprint().as_bytes())
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
