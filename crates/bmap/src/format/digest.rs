//! Digests used by bmap files: the checksum algorithms, fixed-size digest values with
//! their lowercase hex form, an incremental hasher, and the rule for the bmap's own
//! checksum (hash of the file with the digest's text replaced by `0` characters).

use std::fmt;

use sha1::Sha1;
use sha2::{Digest as _, Sha224, Sha256, Sha384, Sha512};

/// The longest digest we support, in bytes (SHA-512).
const MAX_LEN: usize = 64;

/// A checksum algorithm a bmap can name.
///
/// Format 1.3 always uses SHA-1; formats 1.4 and 2.x name the algorithm in
/// `ChecksumType` (the reference writes `sha256`, and reads any name Python's
/// `hashlib` knows: we read the SHA-1 and SHA-2 families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumKind {
    /// SHA-1 (format 1.3, and `sha1` attributes of formats 1.0-1.2).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256: what `create` writes.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl ChecksumKind {
    /// Every supported kind.
    pub const ALL: [ChecksumKind; 5] = [
        ChecksumKind::Sha1,
        ChecksumKind::Sha224,
        ChecksumKind::Sha256,
        ChecksumKind::Sha384,
        ChecksumKind::Sha512,
    ];

    /// The name used in `ChecksumType` (lower case, as Python's hashlib spells it).
    pub fn name(self) -> &'static str {
        match self {
            ChecksumKind::Sha1 => "sha1",
            ChecksumKind::Sha224 => "sha224",
            ChecksumKind::Sha256 => "sha256",
            ChecksumKind::Sha384 => "sha384",
            ChecksumKind::Sha512 => "sha512",
        }
    }

    /// Looks a kind up by its `ChecksumType` name, ignoring case (as hashlib does).
    pub fn from_name(name: &str) -> Option<ChecksumKind> {
        ChecksumKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumKind::Sha1 => 20,
            ChecksumKind::Sha224 => 28,
            ChecksumKind::Sha256 => 32,
            ChecksumKind::Sha384 => 48,
            ChecksumKind::Sha512 => 64,
        }
    }

    /// Length of a digest written in hex.
    pub fn hex_len(self) -> usize {
        self.digest_len() * 2
    }

    /// Starts an incremental hash of this kind.
    pub fn hasher(self) -> Hasher {
        let state = match self {
            ChecksumKind::Sha1 => State::Sha1(Sha1::new()),
            ChecksumKind::Sha224 => State::Sha224(Sha224::new()),
            ChecksumKind::Sha256 => State::Sha256(Sha256::new()),
            ChecksumKind::Sha384 => State::Sha384(Sha384::new()),
            ChecksumKind::Sha512 => State::Sha512(Sha512::new()),
        };
        Hasher { state }
    }

    /// Hashes `bytes` in one call.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl fmt::Display for ChecksumKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A digest value of a known kind, stored inline (no allocation per range).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    kind: ChecksumKind,
    bytes: [u8; MAX_LEN],
}

/// Why a hex string is not a digest of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The text has the wrong number of characters for the kind.
    #[error("{kind} digests have {expected} hex characters, this one has {actual}")]
    Length {
        /// The kind expected.
        kind: ChecksumKind,
        /// Hex characters a digest of that kind has.
        expected: usize,
        /// Characters found.
        actual: usize,
    },
    /// A character is not a hex digit.
    #[error("'{0}' is not a hex digit")]
    NotHex(char),
}

impl Digest {
    /// Builds a digest from raw bytes; `bytes` must be exactly `kind.digest_len()` long.
    pub fn from_bytes(kind: ChecksumKind, bytes: &[u8]) -> Option<Digest> {
        if bytes.len() != kind.digest_len() {
            return None;
        }
        let mut buf = [0u8; MAX_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(Digest { kind, bytes: buf })
    }

    /// Parses a hex digest (either case) of the given kind.
    pub fn from_hex(kind: ChecksumKind, hex: &str) -> Result<Digest, HexError> {
        let hex = hex.as_bytes();
        if hex.len() != kind.hex_len() {
            return Err(HexError::Length {
                kind,
                expected: kind.hex_len(),
                actual: hex.len(),
            });
        }
        let mut buf = [0u8; MAX_LEN];
        for (out, pair) in buf.iter_mut().zip(hex.chunks_exact(2)) {
            *out = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Digest { kind, bytes: buf })
    }

    /// The algorithm that made this digest.
    pub fn kind(&self) -> ChecksumKind {
        self.kind
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.kind.digest_len()]
    }

    /// Lowercase hex, as bmap files write it.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

fn nibble(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError::NotHex(char::from(c))),
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self)
    }
}

/// An incremental hash of one [`ChecksumKind`].
#[derive(Clone)]
pub struct Hasher {
    state: State,
}

#[derive(Clone)]
enum State {
    Sha1(Sha1),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("kind", &self.kind())
            .finish()
    }
}

impl Hasher {
    /// The algorithm of this hasher.
    pub fn kind(&self) -> ChecksumKind {
        match self.state {
            State::Sha1(_) => ChecksumKind::Sha1,
            State::Sha224(_) => ChecksumKind::Sha224,
            State::Sha256(_) => ChecksumKind::Sha256,
            State::Sha384(_) => ChecksumKind::Sha384,
            State::Sha512(_) => ChecksumKind::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Sha1(h) => h.update(bytes),
            State::Sha224(h) => h.update(bytes),
            State::Sha256(h) => h.update(bytes),
            State::Sha384(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// Finishes the hash.
    pub fn finish(self) -> Digest {
        let kind = self.kind();
        let digest = match self.state {
            State::Sha1(h) => Digest::from_bytes(kind, &h.finalize()),
            State::Sha224(h) => Digest::from_bytes(kind, &h.finalize()),
            State::Sha256(h) => Digest::from_bytes(kind, &h.finalize()),
            State::Sha384(h) => Digest::from_bytes(kind, &h.finalize()),
            State::Sha512(h) => Digest::from_bytes(kind, &h.finalize()),
        };
        digest.expect("a hasher yields digests of its own length")
    }
}

/// The bmap's own checksum: `kind` over `file` with the `len` bytes at `at`
/// (where the checksum's hex text stands) replaced by ASCII `0`.
///
/// Returns `None` when `at..at + len` lies outside `file`.
pub fn self_checksum(kind: ChecksumKind, file: &[u8], at: usize) -> Option<Digest> {
    let end = at.checked_add(kind.hex_len())?;
    if end > file.len() {
        return None;
    }
    let mut hasher = kind.hasher();
    hasher.update(&file[..at]);
    hasher.update(&[b'0'; MAX_LEN * 2][..kind.hex_len()]);
    hasher.update(&file[end..]);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_case() {
        let d = ChecksumKind::Sha256.digest(b"x");
        assert_eq!(
            d.to_hex(),
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
        let upper = d.to_hex().to_uppercase();
        assert_eq!(Digest::from_hex(ChecksumKind::Sha256, &upper), Ok(d));
    }

    #[test]
    fn hex_errors() {
        assert!(matches!(
            Digest::from_hex(ChecksumKind::Sha1, "abc"),
            Err(HexError::Length {
                expected: 40,
                actual: 3,
                ..
            })
        ));
        let bad = "g".repeat(40);
        assert_eq!(
            Digest::from_hex(ChecksumKind::Sha1, &bad),
            Err(HexError::NotHex('g'))
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(
            ChecksumKind::from_name("SHA256"),
            Some(ChecksumKind::Sha256)
        );
        assert_eq!(ChecksumKind::from_name("md5"), None);
    }

    #[test]
    fn self_checksum_zeroes_the_digest_text() {
        let file = b"<a>ffff</a>";
        let kind = ChecksumKind::Sha1;
        assert_eq!(
            self_checksum(kind, file, 3),
            None,
            "digest would run past the end"
        );
        let mut text = b"<x>".to_vec();
        text.extend_from_slice(&[b'f'; 40]);
        text.extend_from_slice(b"</x>");
        let mut zeroed = b"<x>".to_vec();
        zeroed.extend_from_slice(&[b'0'; 40]);
        zeroed.extend_from_slice(b"</x>");
        assert_eq!(self_checksum(kind, &text, 3), Some(kind.digest(&zeroed)));
    }
}
