//! Public keys to verify with, read from OpenPGP keyring files (binary or armored, one
//! key after another) or GnuPG keybox (`.kbx`) files.

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails;

use super::Error;

/// Public keys to verify with. The same key read twice (from a keybox and from an
/// older export, say) is one key with the signatures of both copies, as gpg merges
/// them on import: a stale copy can neither hide a revocation nor a newer expiry.
#[derive(Debug, Default)]
pub struct Keyring {
    pub(super) keys: Vec<SignedPublicKey>,
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
                    .map_err(|e| Error::Keyring(super::pgp_message(&e)))?;
                for key in keys {
                    self.push(key.map_err(|e| Error::Keyring(super::pgp_message(&e)))?);
                }
            }
            return Ok(());
        }
        self.add_binary(bytes)
    }

    fn add_binary(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let bytes = &without_trust_packets(bytes)?;
        let keys = SignedPublicKey::from_bytes_many(&bytes[..])
            .map_err(|e| Error::Keyring(super::pgp_message(&e)))?;
        // A keyring may hold secret keys or other packets we cannot use: skip them.
        for key in keys.flatten() {
            self.push(key);
        }
        Ok(())
    }

    /// Adds `key`, merged into the copy already there if there is one.
    fn push(&mut self, key: SignedPublicKey) {
        let fingerprint = key.primary_key.fingerprint();
        match self
            .keys
            .iter_mut()
            .find(|k| k.primary_key.fingerprint() == fingerprint)
        {
            Some(existing) => merge(existing, key),
            None => self.keys.push(key),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Adds the signatures, user ids and subkeys of `new` (the same primary key) to `into`.
fn merge(into: &mut SignedPublicKey, new: SignedPublicKey) {
    let details = &mut into.details;
    extend(
        &mut details.revocation_signatures,
        new.details.revocation_signatures,
    );
    extend(
        &mut details.direct_signatures,
        new.details.direct_signatures,
    );
    for user in new.details.users {
        match details.users.iter_mut().find(|u| u.id == user.id) {
            Some(existing) => extend(&mut existing.signatures, user.signatures),
            None => details.users.push(user),
        }
    }
    for subkey in new.public_subkeys {
        let fingerprint = subkey.key.fingerprint();
        match into
            .public_subkeys
            .iter_mut()
            .find(|s| s.key.fingerprint() == fingerprint)
        {
            Some(existing) => extend(&mut existing.signatures, subkey.signatures),
            None => into.public_subkeys.push(subkey),
        }
    }
}

/// Appends the signatures of `new` that `into` does not hold yet.
fn extend(into: &mut Vec<Signature>, new: Vec<Signature>) {
    for signature in new {
        if !into.contains(&signature) {
            into.push(signature);
        }
    }
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
