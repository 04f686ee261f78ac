//! The verdict on a file of signatures: each signature judged on its own against the
//! keys it names (the checks of [`super::validity`] around the cryptography), then one
//! verdict for the file.

use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, VerifyingKey};

use super::ecdsa::LowS;
use super::{
    Date, Error, Keyring, MAX_SIGNATURES, Options, State, Verified, fingerprint, hex_upper,
    validity,
};

/// The verdict on a file of `signatures` over `data`; see the module's policy.
pub(super) fn all(
    signatures: &[Signature],
    data: &[u8],
    keyring: &Keyring,
    options: &Options,
) -> Result<Verified, Error> {
    let count = signatures.len();
    if count == 0 {
        return Err(Error::Malformed("no signature in it".into()));
    }
    if count > MAX_SIGNATURES {
        return Err(Error::Malformed(format!(
            "more than {MAX_SIGNATURES} signatures in one file"
        )));
    }
    let now = Date::from_system_time(options.now);
    let verdicts: Vec<Result<Verified, Error>> = signatures
        .iter()
        .enumerate()
        .map(|(i, signature)| {
            one(signature, data, keyring, now).map(|mut v| {
                v.number = i + 1;
                v.count = count;
                v
            })
        })
        .collect();
    let several = |number: usize, error: Error| {
        if count == 1 {
            error
        } else {
            Error::NoneOfSeveral {
                number,
                count,
                error: Box::new(error),
            }
        }
    };
    // A BAD signature refuses the file, as gpgv fails on one (gpgv counts a signature
    // with a critical notation it does not know as BAD).
    if let Some((i, Err(bad))) = verdicts.iter().enumerate().find(|(_, v)| {
        matches!(
            v,
            Err(Error::Bad { .. }
                | Error::Refused {
                    state: State::CriticalNotation { .. },
                    ..
                })
        )
    }) {
        return Err(if count == 1 {
            bad.clone()
        } else {
            Error::OneOfSeveral {
                number: i + 1,
                count,
                error: Box::new(bad.clone()),
            }
        });
    }
    let passed_over: Vec<(usize, Error)> = verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().err().map(|e| (i + 1, e.clone())))
        .collect();
    let good: Vec<Verified> = verdicts.into_iter().filter_map(Result::ok).collect();
    if good.is_empty() {
        let (number, error) = passed_over
            .into_iter()
            .max_by_key(|(number, e)| (rank(e), std::cmp::Reverse(*number)))
            .expect("at least one signature, none good");
        return Err(several(number, error));
    }
    let chosen = match &options.fingerprint {
        None => good.first(),
        Some(wanted) => good.iter().find(|v| v.matches(wanted)),
    };
    let Some(chosen) = chosen else {
        return Err(Error::WrongSigner {
            wanted: options.fingerprint.clone().unwrap_or_default(),
            signers: good
                .iter()
                .map(|v| (v.signer.clone(), v.primary.clone()))
                .collect(),
        });
    };
    Ok(Verified {
        passed_over,
        ..chosen.clone()
    })
}

/// How much a refusal tells: when no signature is good, the most telling is reported.
fn rank(error: &Error) -> u8 {
    match error {
        Error::Bad { .. } => 6,
        Error::Refused { .. } => 5,
        Error::Unsupported { .. } => 4,
        Error::WeakHash(_) => 3,
        Error::Malformed(_) => 2,
        Error::UnknownKey { .. } => 1,
        _ => 0,
    }
}

/// The verdict on one signature, against every key of the keyring it names.
fn one(
    signature: &Signature,
    data: &[u8],
    keyring: &Keyring,
    now: Date,
) -> Result<Verified, Error> {
    match signature.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => {
            let kind = other.map_or_else(|| "unknown".to_owned(), |t| format!("{t:?}"));
            return Err(Error::Malformed(format!(
                "a signature of type {kind}, not a signature of data"
            )));
        }
    }
    let hash = signature.hash_alg();
    if hash == Some(HashAlgorithm::Md5) {
        return Err(Error::WeakHash(HashAlgorithm::Md5));
    }
    let created = signature
        .created()
        .map(Date::from)
        .ok_or_else(|| Error::Malformed("a signature without a creation time".into()))?;
    let issuers: Vec<String> = signature
        .issuer_fingerprint()
        .iter()
        .map(|f| hex_upper(f.as_bytes()))
        .chain(
            signature
                .issuer_key_id()
                .iter()
                .map(|id| hex_upper(id.as_ref())),
        )
        .collect();
    let named = |key: &dyn KeyDetails| {
        let fingerprint = hex_upper(key.fingerprint().as_bytes());
        issuers.is_empty()
            || issuers
                .iter()
                .any(|issuer| fingerprint.ends_with(issuer.as_str()))
    };
    let mut refused: Option<Error> = None;
    for key in &keyring.keys {
        let subkeys = key.public_subkeys.iter().map(Some);
        for subkey in std::iter::once(None).chain(subkeys) {
            let named = match subkey {
                None => named(&key.primary_key),
                Some(subkey) => named(&subkey.key),
            };
            if !named {
                continue;
            }
            let candidate = Candidate {
                key,
                subkey,
                signature,
                created,
            };
            match candidate.judge(data, now) {
                Ok(mut verified) => {
                    verified.sha1 = hash == Some(HashAlgorithm::Sha1);
                    return Ok(verified);
                }
                // Refused after its cryptography verified: this is the signer.
                Err(e) if matches!(&e, Error::Refused { state, .. } if state.after_cryptography()) =>
                {
                    return Err(e);
                }
                Err(e) => {
                    if refused.as_ref().is_none_or(|r| rank(&e) > rank(r)) {
                        refused = Some(e);
                    }
                }
            }
        }
    }
    // A signature that names no issuer is tried with every key: one that does not
    // verify with a key is a stranger's, not a BAD one (gpgv: "no public key").
    if issuers.is_empty() && matches!(refused, Some(Error::Bad { .. })) {
        refused = None;
    }
    Err(refused.unwrap_or_else(|| Error::UnknownKey {
        issuer: issuers
            .first()
            .cloned()
            .unwrap_or_else(|| "(unnamed)".into()),
    }))
}

/// A key of the keyring that a signature names.
struct Candidate<'a> {
    key: &'a SignedPublicKey,
    /// The signing subkey; `None`: the primary key.
    subkey: Option<&'a SignedPublicSubKey>,
    signature: &'a Signature,
    /// The signature's creation.
    created: Date,
}

impl Candidate<'_> {
    /// gpg's order: whether the key may sign at all, the times, the cryptography, then
    /// revocation and expiry.
    fn judge(&self, data: &[u8], now: Date) -> Result<Verified, Error> {
        let primary = &self.key.primary_key;
        let signer = match self.subkey {
            None => fingerprint(primary),
            Some(subkey) => fingerprint(&subkey.key),
        };
        let refused = |state: State| Error::Refused {
            signer: signer.clone(),
            state,
        };
        let bound =
            validity::before(self.key, self.subkey, now).map_err(|refusal| match refusal {
                validity::Refusal::State(state) => refused(state),
                validity::Refusal::Unsupported { key, reason } => Error::Unsupported {
                    fingerprint: key,
                    reason,
                },
            })?;
        let key_created = match self.subkey {
            None => Date::from(primary.created_at()),
            Some(subkey) => Date::from(subkey.key.created_at()),
        };
        if self.created < key_created {
            return Err(refused(State::OlderThanKey {
                signed: self.created,
                created: key_created,
            }));
        }
        let checked = match self.subkey {
            None => crypto(primary, self.signature, data),
            Some(subkey) => crypto(&subkey.key, self.signature, data),
        };
        checked.map_err(|failure| match failure {
            Failure::Mismatch => Error::Bad {
                fingerprint: signer.clone(),
            },
            Failure::Unsupported(reason) => Error::Unsupported {
                fingerprint: signer.clone(),
                reason,
            },
        })?;
        if let Some(name) = unknown_critical_notation(self.signature) {
            return Err(refused(State::CriticalNotation { name }));
        }
        validity::after(self.key, self.subkey, &bound, self.signature, now).map_err(&refused)?;
        Ok(Verified {
            primary: fingerprint(primary),
            signer,
            user_id: bound.user_id,
            sha1: false,
            created: self.created,
            number: 1,
            count: 1,
            passed_over: Vec::new(),
        })
    }
}

/// Critical notations gpg knows (`register_known_notation` in its parse-packet.c).
const KNOWN_CRITICAL_NOTATIONS: [&[u8]; 2] = [
    b"preferred-email-encoding@pgp.com",
    b"pka-address@gnupg.org",
];

/// The name of a critical notation in the signed part of `signature` that gpg does not
/// know: the signer asked that a verifier who does not understand it refuse the
/// signature (RFC 4880, 5.2.3.16), and gpgv does.
fn unknown_critical_notation(signature: &Signature) -> Option<String> {
    signature
        .config()?
        .hashed_subpackets()
        .find_map(|packet| match &packet.data {
            SubpacketData::Notation(notation)
                if packet.is_critical
                    && !KNOWN_CRITICAL_NOTATIONS.contains(&notation.name.as_ref()) =>
            {
                Some(String::from_utf8_lossy(&notation.name).into_owned())
            }
            _ => None,
        })
}

/// Why a key did not verify a signature.
#[derive(Debug, Clone)]
enum Failure {
    /// The signature does not match the data: tampering, or the wrong bmap.
    Mismatch,
    /// The algorithm, curve or hash is not supported here.
    Unsupported(String),
}

/// Checks the cryptography of `signature` over `data` with `key`.
fn crypto(key: &impl VerifyingKey, signature: &Signature, data: &[u8]) -> Result<(), Failure> {
    signature.verify(&LowS(key), data).map_err(|e| match e {
        pgp::errors::Error::Unsupported { .. } | pgp::errors::Error::Unimplemented { .. } => {
            Failure::Unsupported(e.to_string())
        }
        // Refused before any check, such as a hash too short for the key's
        // algorithm (EdDSA with SHA-1): say so rather than call the bmap tampered.
        pgp::errors::Error::Message { ref message, .. }
            if message.contains("invalid hash algorithm")
                || message.contains("too weak")
                || message.contains("must at least match") =>
        {
            Failure::Unsupported(e.to_string())
        }
        _ => Failure::Mismatch,
    })
}
