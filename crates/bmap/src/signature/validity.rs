//! Whether a key of the keyring may have made a data signature, as gpg decides it:
//! the self-signatures, binding signatures, back-signatures and revocations that rPGP
//! leaves to its caller.
//!
//! Checked before the cryptography (gpg's "can't check signature"): the primary key
//! has a valid self-signature; a signing subkey has a valid binding signature from its
//! primary key with an embedded back-signature; the key flags of the newest of these
//! allow signing (when there are no flags, the algorithm decides); no key was created
//! after this machine's clock. Checked after it (gpg's `REVKEYSIG`, `EXPKEYSIG`,
//! `EXPSIG`): revocations of the primary key or the subkey, expiry of either at the
//! time of the check, and the signature's own expiry.
//!
//! Any revocation counts, whatever its reason and date: gpgv reports `REVKEYSIG` for a
//! signature made before a "superseded" or "retired" revocation too, and the reference
//! accepts only `GOODSIG`.

use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{KeyFlags, RevocationCode, Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, KeyVersion, Tag};

use super::ecdsa::LowS;
use super::{Date, State, fingerprint};

/// What the checks before the cryptography found: the signatures that decide the
/// rest.
#[derive(Debug)]
pub(super) struct Bound<'a> {
    /// The newest valid self-signature of the primary key (a user id's or a direct one).
    primary: SelfSignature<'a>,
    /// The newest valid binding signature of the signing subkey.
    binding: Option<&'a Signature>,
    /// The user id to show.
    pub(super) user_id: String,
}

/// The self-signatures that describe a primary key: gpg takes expiry and flags from a
/// direct-key signature when it has them, else from the chosen user id's.
#[derive(Debug, Clone, Copy)]
struct SelfSignature<'a> {
    user: Option<&'a Signature>,
    direct: Option<&'a Signature>,
}

impl SelfSignature<'_> {
    fn find<T>(&self, get: impl Fn(&Signature) -> Option<T>) -> Option<T> {
        self.direct
            .and_then(&get)
            .or_else(|| self.user.and_then(&get))
    }
}

/// Why the checks before the cryptography did not let a key through.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The key may not sign (or not now).
    State(State),
    /// The key's own signatures use an algorithm or curve this build cannot check, so
    /// nothing can be said of it (gpgv may accept it).
    Unsupported {
        /// Fingerprint of the key.
        key: String,
        /// What is not supported.
        reason: String,
    },
}

impl From<State> for Refusal {
    fn from(state: State) -> Refusal {
        Refusal::State(state)
    }
}

/// The checks made before the cryptography; `subkey` is the signing subkey, `None`
/// when the primary key signed.
pub(super) fn before<'a>(
    key: &'a SignedPublicKey,
    subkey: Option<&'a SignedPublicSubKey>,
    now: Date,
) -> Result<Bound<'a>, Refusal> {
    let primary = &key.primary_key;
    let primary_fpr = fingerprint(primary);
    not_in_the_future(primary, now)?;
    let Some((self_signature, user_id)) = self_signature(key) else {
        if let Some(reason) = unsupported(key) {
            return Err(Refusal::Unsupported {
                key: primary_fpr,
                reason,
            });
        }
        return Err(State::NotForSigning {
            key: primary_fpr,
            why: "it has no valid self-signature".into(),
        }
        .into());
    };
    let Some(subkey) = subkey else {
        let flags = self_signature.find(|s| flags_of(s).map(|()| s.key_flags()));
        can_sign(flags, primary.algorithm()).map_err(|why| State::NotForSigning {
            key: primary_fpr,
            why,
        })?;
        return Ok(Bound {
            primary: self_signature,
            binding: None,
            user_id,
        });
    };
    let sub = &subkey.key;
    let not_for_signing = |why: &str| State::NotForSigning {
        key: fingerprint(sub),
        why: why.into(),
    };
    not_in_the_future(sub, now)?;
    let binding = newest(
        subkey
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
        |s| s.verify_subkey_binding(&LowS(primary), sub).is_ok(),
    )
    .ok_or_else(|| not_for_signing("it has no valid binding signature from its primary key"))?;
    can_sign(
        flags_of(binding).map(|_| binding.key_flags()),
        sub.algorithm(),
    )
    .map_err(|why| not_for_signing(&why))?;
    let back = binding.embedded_signature().filter(|back| {
        back.typ() == Some(SignatureType::KeyBinding)
            && back.verify_primary_key_binding(&LowS(sub), primary).is_ok()
    });
    if back.is_none() {
        return Err(not_for_signing(
            "it has no valid back-signature (cross-certification) of its primary key",
        )
        .into());
    }
    Ok(Bound {
        primary: self_signature,
        binding: Some(binding),
        user_id,
    })
}

/// The checks made after the cryptography: revocations, then expiry of the keys, then
/// of the signature.
pub(super) fn after(
    key: &SignedPublicKey,
    subkey: Option<&SignedPublicSubKey>,
    bound: &Bound<'_>,
    signature: &Signature,
    now: Date,
) -> Result<(), State> {
    let primary = &key.primary_key;
    let revocations = key
        .details
        .revocation_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::KeyRevocation));
    if let Some(revocation) = oldest(revocations, |s| s.verify_key(&LowS(primary)).is_ok()) {
        return Err(revoked(fingerprint(primary), revocation));
    }
    if let Some(subkey) = subkey {
        let revocations = subkey
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
        if let Some(revocation) = oldest(revocations, |s| {
            s.verify_subkey_binding(&LowS(primary), &subkey.key).is_ok()
        }) {
            return Err(revoked(fingerprint(&subkey.key), revocation));
        }
    }
    let primary_lifetime = bound.primary.find(Signature::key_expiration_time);
    expiry(primary, primary_lifetime.map(|d| d.as_secs()), now)?;
    if let (Some(subkey), Some(binding)) = (subkey, bound.binding) {
        let lifetime = binding.key_expiration_time().map(|d| d.as_secs());
        expiry(&subkey.key, lifetime, now)?;
    }
    if let (Some(created), Some(lifetime)) =
        (signature.created(), signature.signature_expiration_time())
        && lifetime.as_secs() > 0
    {
        let expired = Date::from(created).plus(lifetime.as_secs());
        if now >= expired {
            return Err(State::SignatureExpired { on: expired });
        }
    }
    Ok(())
}

/// The primary key's newest valid self-signatures and the user id to show: the
/// newest user id flagged primary, else the one with the newest self-signature (user
/// ids revoked after their self-signature do not count).
fn self_signature(key: &SignedPublicKey) -> Option<(SelfSignature<'_>, String)> {
    let primary = &key.primary_key;
    let mut chosen: Option<(&Signature, &[u8])> = None;
    for user in &key.details.users {
        let valid = |s: &Signature| {
            s.verify_certification(&LowS(primary), Tag::UserId, &user.id)
                .is_ok()
        };
        let certifications = user.signatures.iter().filter(|s| is_self_certification(s));
        let Some(certification) = newest(certifications, valid) else {
            continue;
        };
        let revocations = user
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::CertRevocation));
        if newest(revocations, valid).is_some_and(|r| r.created() >= certification.created()) {
            continue;
        }
        let rank = |s: &Signature| (s.is_primary(), s.created());
        if chosen.is_none_or(|(best, _)| rank(certification) >= rank(best)) {
            chosen = Some((certification, user.id.id()));
        }
    }
    let direct = newest(
        key.details
            .direct_signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::Key)),
        |s| s.verify_key(&LowS(primary)).is_ok(),
    );
    if chosen.is_none() && direct.is_none() {
        return None;
    }
    let user_id = chosen
        .map(|(_, id)| id)
        .or_else(|| key.details.users.first().map(|u| u.id.id()))
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .unwrap_or_default();
    let signature = SelfSignature {
        user: chosen.map(|(s, _)| s),
        direct,
    };
    Some((signature, user_id))
}

/// Why the primary key's self-signatures cannot be checked here, when that is why none
/// of them verified (an algorithm or curve rPGP does not implement, such as brainpool).
fn unsupported(key: &SignedPublicKey) -> Option<String> {
    let primary = &key.primary_key;
    let certifications = key.details.users.iter().flat_map(|user| {
        user.signatures
            .iter()
            .filter(|s| is_self_certification(s))
            .map(move |s| s.verify_certification(&LowS(primary), Tag::UserId, &user.id))
    });
    let direct = key
        .details
        .direct_signatures
        .iter()
        .map(|s| s.verify_key(&LowS(primary)));
    certifications
        .chain(direct)
        .find_map(|checked| match checked {
            Err(
                e @ (pgp::errors::Error::Unsupported { .. }
                | pgp::errors::Error::Unimplemented { .. }),
            ) => Some(e.to_string()),
            _ => None,
        })
}

fn is_self_certification(s: &Signature) -> bool {
    matches!(
        s.typ(),
        Some(
            SignatureType::CertGeneric
                | SignatureType::CertPersona
                | SignatureType::CertCasual
                | SignatureType::CertPositive
        )
    )
}

/// The newest of `signatures` that `valid` accepts (signatures over MD5 never are).
fn newest<'a>(
    signatures: impl Iterator<Item = &'a Signature>,
    valid: impl Fn(&Signature) -> bool,
) -> Option<&'a Signature> {
    signatures
        .filter(|s| s.hash_alg() != Some(HashAlgorithm::Md5) && valid(s))
        .max_by_key(|s| s.created())
}

/// The oldest of `signatures` that `valid` accepts (signatures over MD5 never are).
fn oldest<'a>(
    signatures: impl Iterator<Item = &'a Signature>,
    valid: impl Fn(&Signature) -> bool,
) -> Option<&'a Signature> {
    signatures
        .filter(|s| s.hash_alg() != Some(HashAlgorithm::Md5) && valid(s))
        .min_by_key(|s| s.created())
}

/// `Some(())` when `signature` has a key flags subpacket.
fn flags_of(signature: &Signature) -> Option<()> {
    signature
        .config()?
        .hashed_subpackets()
        .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
        .then_some(())
}

/// Whether the key flags (when there are any) or else the algorithm allow signing;
/// `Err` says why not.
fn can_sign(flags: Option<KeyFlags>, algorithm: PublicKeyAlgorithm) -> Result<(), String> {
    match flags {
        Some(flags) if flags.sign() => Ok(()),
        Some(flags) => {
            let mut uses = Vec::new();
            if flags.certify() {
                uses.push("certification");
            }
            if flags.encrypt_comms() || flags.encrypt_storage() {
                uses.push("encryption");
            }
            if flags.authentication() {
                uses.push("authentication");
            }
            Err(if uses.is_empty() {
                "its key flags allow no use at all".to_owned()
            } else {
                format!("its key flags allow only {}", uses.join(" and "))
            })
        }
        None => match algorithm {
            PublicKeyAlgorithm::RSA
            | PublicKeyAlgorithm::RSASign
            | PublicKeyAlgorithm::DSA
            | PublicKeyAlgorithm::ECDSA
            | PublicKeyAlgorithm::EdDSALegacy
            | PublicKeyAlgorithm::Ed25519
            | PublicKeyAlgorithm::Ed448 => Ok(()),
            other => Err(format!("{other:?} is not a signing algorithm")),
        },
    }
}

/// Refuses a key created after `now` (gpg: "key created in the future").
fn not_in_the_future(key: &impl KeyDetails, now: Date) -> Result<(), State> {
    let created = Date::from(key.created_at());
    if created > now {
        return Err(State::KeyInTheFuture {
            key: fingerprint(key),
            created,
        });
    }
    Ok(())
}

/// Refuses `key` when it has expired by `now`: `lifetime` seconds after its creation
/// (0: never), or after the days of a version 3 key.
fn expiry(key: &impl KeyDetails, lifetime: Option<u32>, now: Date) -> Result<(), State> {
    let legacy = match key.version() {
        KeyVersion::V2 | KeyVersion::V3 => key
            .legacy_v3_expiration_days()
            .map(|days| u32::from(days).saturating_mul(86_400)),
        _ => None,
    };
    let Some(lifetime) = lifetime.or(legacy).filter(|&secs| secs > 0) else {
        return Ok(());
    };
    let expired = Date::from(key.created_at()).plus(lifetime);
    if now >= expired {
        return Err(State::KeyExpired {
            key: fingerprint(key),
            on: expired,
        });
    }
    Ok(())
}

/// The state of a key revoked by `revocation`.
fn revoked(key: String, revocation: &Signature) -> State {
    let reason = match revocation.revocation_reason_code() {
        None | Some(RevocationCode::NoReason) => "no reason given".to_owned(),
        Some(RevocationCode::KeyCompromised) => "key compromised".to_owned(),
        Some(RevocationCode::KeySuperseded) => "key superseded".to_owned(),
        Some(RevocationCode::KeyRetired) => "key retired".to_owned(),
        Some(other) => format!("reason {}", u8::from(*other)),
    };
    let text = revocation
        .revocation_reason_string()
        .map(|t| String::from_utf8_lossy(t).trim().to_owned())
        .filter(|t| !t.is_empty());
    State::KeyRevoked {
        key,
        on: revocation.created().map_or(Date(0), Date::from),
        reason: match text {
            Some(text) => format!("{reason}: {text:?}"),
            None => reason,
        },
    }
}
