//! OpenPGP signatures of bmaps, verified in-process (no gpg needed): detached
//! signatures (binary or armored) and clearsigned bmaps, against keys from OpenPGP
//! keyring files (binary or armored) or GnuPG keybox (`.kbx`) files.
//!
//! A clearsigned bmap is verified first; only its signed text (dash-escaping undone)
//! is then the bmap: text outside the signed block is never used.
//!
//! Policy: a signature is good when it verifies with a key of the keyring (the primary
//! key, or a subkey whose binding signature by the primary verifies). Expiry of the key
//! is not held against a signature, as gpg does for signatures made while the key was
//! valid. Signatures over MD5 are refused as forgeable; SHA-1 signatures are accepted
//! (as gpgv does) and reported so that the caller can warn.

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature;
use pgp::types::{KeyDetails, VerifyingKey};

/// The start of a clearsigned message.
const CLEARSIGN_HEADER: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";

/// Why a signature is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The keyring file is not a keyring.
    #[error("cannot read the keyring: {0}")]
    Keyring(String),
    /// The signature (or clearsigned message) cannot be parsed.
    #[error(
        "the signature is malformed ({0}): get a good copy of the signature, or skip the \
         check with --no-sig-verify"
    )]
    Malformed(String),
    /// The signature uses an algorithm or curve this build cannot check.
    #[error(
        "the signature by key {fingerprint} cannot be checked here ({reason}); check it with \
         gpgv and use --no-sig-verify"
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
         (gpg --import), name a keyring holding it with --keyring, or skip the check with \
         --no-sig-verify"
    )]
    UnknownKey {
        /// Fingerprint or key id of the signer, as the signature names it.
        issuer: String,
    },
    /// A key of the keyring matches the signature's issuer but the signature does not
    /// verify: the bmap was changed after it was signed, or the signature is forged.
    #[error(
        "discovered a BAD GPG signature on the bmap (key {fingerprint}): the bmap was changed \
         after it was signed, or the signature is not for this bmap; do not use this bmap \
         (get the right bmap and signature, or skip the check with --no-sig-verify)"
    )]
    Bad {
        /// The key that was tried.
        fingerprint: String,
    },
    /// The signature uses a hash we refuse.
    #[error("the signature uses {0:?}, which can be forged; it is not accepted")]
    WeakHash(HashAlgorithm),
}

/// A good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Fingerprint of the key that signed (a subkey's when a subkey signed), upper-case hex.
    pub signer: String,
    /// Fingerprint of the primary key, upper-case hex.
    pub primary: String,
    /// The primary key's first user id.
    pub user_id: String,
    /// Whether the signature hashes with SHA-1 (accepted, worth a warning).
    pub sha1: bool,
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

/// Public keys to verify with.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds the keys of a keyring file: a GnuPG keybox, an armored key block, or binary
    /// OpenPGP packets (one key after another).
    pub fn add(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if is_keybox(bytes) {
            for block in keybox_blocks(bytes)? {
                self.add_binary(block)?;
            }
            return Ok(());
        }
        const ARMOR: &[u8] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----";
        if bytes.trim_ascii_start().starts_with(ARMOR) {
            // Exports concatenated one after another: read every armored block.
            let starts: Vec<usize> = bytes
                .windows(ARMOR.len())
                .enumerate()
                .filter(|(_, w)| *w == ARMOR)
                .map(|(i, _)| i)
                .collect();
            for (n, &start) in starts.iter().enumerate() {
                let end = starts.get(n + 1).copied().unwrap_or(bytes.len());
                let (keys, _) = SignedPublicKey::from_armor_many(&bytes[start..end])
                    .map_err(|e| Error::Keyring(e.to_string()))?;
                for key in keys {
                    self.keys
                        .push(key.map_err(|e| Error::Keyring(e.to_string()))?);
                }
            }
            return Ok(());
        }
        self.add_binary(bytes)
    }

    fn add_binary(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let bytes = &without_trust_packets(bytes)?;
        let keys = SignedPublicKey::from_bytes_many(&bytes[..])
            .map_err(|e| Error::Keyring(e.to_string()))?;
        // A keyring may hold secret keys or other packets we cannot use: skip them.
        self.keys.extend(keys.flatten());
        Ok(())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `signature` against the keys; see the module's policy.
    fn verify(
        &self,
        signature: &Signature,
        check: impl Fn(&dyn VerifyingKeyDyn) -> Result<(), Failure>,
    ) -> Result<Verified, Error> {
        let hash = signature.hash_alg();
        if hash == Some(HashAlgorithm::Md5) {
            return Err(Error::WeakHash(HashAlgorithm::Md5));
        }
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
        let named = |fingerprint: &str| {
            issuers.is_empty()
                || issuers
                    .iter()
                    .any(|issuer| fingerprint.ends_with(issuer.as_str()))
        };
        let mut tried: Option<(String, Failure)> = None;
        for key in &self.keys {
            let primary = hex_upper(key.primary_key.fingerprint().as_bytes());
            let user_id = key
                .details
                .users
                .first()
                .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
                .unwrap_or_default();
            let verified = |signer: String| Verified {
                signer,
                primary: primary.clone(),
                user_id: user_id.clone(),
                sha1: hash == Some(HashAlgorithm::Sha1),
            };
            if named(&primary) {
                match check(&key.primary_key) {
                    Ok(()) => return Ok(verified(primary.clone())),
                    Err(failure) => {
                        tried.get_or_insert((primary.clone(), failure));
                    }
                }
            }
            for subkey in &key.public_subkeys {
                let fingerprint = hex_upper(subkey.key.fingerprint().as_bytes());
                if !named(&fingerprint) {
                    continue;
                }
                // The subkey must really belong to this primary key.
                if subkey.verify_bindings(&key.primary_key).is_err() {
                    continue;
                }
                match check(&subkey.key) {
                    Ok(()) => return Ok(verified(fingerprint)),
                    Err(failure) => {
                        tried.get_or_insert((fingerprint, failure));
                    }
                }
            }
        }
        match tried {
            Some((fingerprint, Failure::Mismatch)) => Err(Error::Bad { fingerprint }),
            Some((fingerprint, Failure::Unsupported(reason))) => Err(Error::Unsupported {
                fingerprint,
                reason,
            }),
            None => Err(Error::UnknownKey {
                issuer: issuers
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "(unnamed)".into()),
            }),
        }
    }
}

/// Why a key did not verify a signature.
#[derive(Debug, Clone)]
enum Failure {
    /// The signature does not match the data: tampering, or the wrong bmap.
    Mismatch,
    /// The algorithm, curve or hash is not supported here.
    Unsupported(String),
}

/// A verifying key as a trait object.
trait VerifyingKeyDyn {
    fn verify_detached(&self, signature: &Signature, data: &[u8]) -> Result<(), Failure>;
}

impl<K: VerifyingKey> VerifyingKeyDyn for K {
    fn verify_detached(&self, signature: &Signature, data: &[u8]) -> Result<(), Failure> {
        signature.verify(self, data).map_err(|e| match e {
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
}

/// Whether `bytes` is a clearsigned message.
pub fn is_clearsigned(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(CLEARSIGN_HEADER)
}

/// Verifies a detached signature (binary or armored) of `data`.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    keyring: &Keyring,
) -> Result<Verified, Error> {
    let detached = if signature
        .trim_ascii_start()
        .starts_with(b"-----BEGIN PGP SIGNATURE-----")
    {
        DetachedSignature::from_armor_single(signature).map(|(s, _)| s)
    } else {
        DetachedSignature::from_bytes(signature)
    }
    .map_err(|e| Error::Malformed(e.to_string()))?;
    let sig = &detached.signature;
    keyring.verify(sig, |key| key.verify_detached(sig, data))
}

/// Verifies a clearsigned bmap; returns the signer and the signed text (the bmap).
pub fn verify_clearsigned(bytes: &[u8], keyring: &Keyring) -> Result<(Verified, Vec<u8>), Error> {
    let (message, text) = parse_clearsigned(bytes)?;
    let signature = message
        .signatures()
        .first()
        .ok_or_else(|| Error::Malformed("a clearsigned message without a signature".into()))?;
    let verified = keyring.verify(signature, |key| clearsigned_ok(&message, key))?;
    Ok((verified, text))
}

fn clearsigned_ok(
    message: &CleartextSignedMessage,
    key: &dyn VerifyingKeyDyn,
) -> Result<(), Failure> {
    let text = message.signed_text();
    let mut last = Failure::Mismatch;
    for signature in message.signatures() {
        match key.verify_detached(signature, text.as_bytes()) {
            Ok(()) => return Ok(()),
            Err(failure) => last = failure,
        }
    }
    Err(last)
}

/// The signed text of a clearsigned bmap, without checking the signature
/// (`--no-sig-verify`): still only the text inside the signed block.
pub fn clearsigned_text(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    parse_clearsigned(bytes).map(|(_, text)| text)
}

fn parse_clearsigned(bytes: &[u8]) -> Result<(CleartextSignedMessage, Vec<u8>), Error> {
    let input = std::str::from_utf8(bytes)
        .map_err(|_| Error::Malformed("a clearsigned bmap that is not UTF-8 text".into()))?;
    let (message, _) = CleartextSignedMessage::from_string(input.trim_start())
        .map_err(|e| Error::Malformed(e.to_string()))?;
    // The signed text with dash-escaping undone ("- -x" was "-x"), without its last
    // line ending as OpenPGP defines it; gpg writes the bmap back with it, and the
    // bmap's own checksum covers it.
    let escaped = message.text().replace("\r\n", "\n");
    let mut text = Vec::with_capacity(escaped.len() + 1);
    for (i, line) in escaped.split('\n').enumerate() {
        if i > 0 {
            text.push(b'\n');
        }
        text.extend_from_slice(line.strip_prefix("- ").unwrap_or(line).as_bytes());
    }
    text.push(b'\n');
    Ok((message, text))
}

/// `bytes` without GnuPG's trust packets (tag 12), which keyrings and keyboxes keep
/// between the packets of a key and which would otherwise end the key early.
fn without_trust_packets(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let corrupt = || Error::Keyring("a corrupt OpenPGP packet".into());
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0usize;
    while at < bytes.len() {
        let ctb = bytes[at];
        if ctb & 0x80 == 0 {
            return Err(corrupt());
        }
        let (tag, header, body) = if ctb & 0x40 != 0 {
            // New format: one, two or five length octets (no partial lengths in keys).
            let first = *bytes.get(at + 1).ok_or_else(corrupt)? as usize;
            match first {
                0..=191 => (ctb & 0x3f, 2, first),
                192..=223 => {
                    let second = *bytes.get(at + 2).ok_or_else(corrupt)? as usize;
                    (ctb & 0x3f, 3, ((first - 192) << 8) + second + 192)
                }
                255 => {
                    let len = bytes.get(at + 2..at + 6).ok_or_else(corrupt)?;
                    (
                        ctb & 0x3f,
                        6,
                        u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize,
                    )
                }
                _ => return Err(Error::Keyring("partial-length packets in a keyring".into())),
            }
        } else {
            // Old format: the length type in the low two bits.
            let tag = (ctb >> 2) & 0x0f;
            let octets = match ctb & 3 {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => {
                    return Err(Error::Keyring(
                        "an indeterminate-length packet in a keyring".into(),
                    ));
                }
            };
            let len = bytes.get(at + 1..at + 1 + octets).ok_or_else(corrupt)?;
            let body = len.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
            (tag, 1 + octets, body)
        };
        let end = at
            .checked_add(header + body)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(corrupt)?;
        if tag != 12 {
            out.extend_from_slice(&bytes[at..end]);
        }
        at = end;
    }
    Ok(out)
}

/// A GnuPG keybox starts with a header blob carrying "KBXf" at offset 8.
fn is_keybox(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes[4] == 1 && &bytes[8..12] == b"KBXf"
}

/// The OpenPGP key blocks of a keybox file (blob type 2).
fn keybox_blocks(bytes: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut blocks = Vec::new();
    let mut at = 0usize;
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    while at + 6 <= bytes.len() {
        let len = be32(&bytes[at..]);
        if len < 6 || at + len > bytes.len() {
            return Err(Error::Keyring(format!(
                "a corrupt keybox blob at byte {at}"
            )));
        }
        let blob = &bytes[at..at + len];
        if blob[4] == 2 && blob.len() >= 16 {
            let offset = be32(&blob[8..]);
            let size = be32(&blob[12..]);
            let block = offset
                .checked_add(size)
                .and_then(|end| blob.get(offset..end))
                .ok_or_else(|| {
                    Error::Keyring(format!("a corrupt keybox key block at byte {at}"))
                })?;
            blocks.push(block);
        }
        at += len;
    }
    Ok(blocks)
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
