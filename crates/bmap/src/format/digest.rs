//! Digests used by bmap files: the checksum algorithms, fixed-size digest values with
//! their lowercase hex form, an incremental hasher, and the rule for the bmap's own
//! checksum (hash of the file with the digest's text replaced by `0` characters).

use std::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::{Sha224, Sha256, Sha384, Sha512, Sha512_224, Sha512_256};
use sha3::{Sha3_224, Sha3_256, Sha3_384, Sha3_512};

/// The longest digest we support, in bytes (SHA-512, SHA3-512, BLAKE2b).
const MAX_LEN: usize = 64;

/// A checksum algorithm a bmap can name.
///
/// Format 1.3 always uses SHA-1; formats 1.4 and 2.x name the algorithm in
/// `ChecksumType`. The reference writes `sha256` and reads any name Python's `hashlib`
/// knows; we read those of `hashlib.algorithms_guaranteed` that have a fixed length
/// (all but `shake_*`, which the reference cannot use either) and OpenSSL's
/// `sha512_224` and `sha512_256`.
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
    /// SHA-512/224.
    Sha512_224,
    /// SHA-512/256.
    Sha512_256,
    /// SHA3-224.
    Sha3_224,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
    /// BLAKE2b with its 64-byte default output (hashlib's `blake2b`).
    Blake2b,
    /// BLAKE2s with its 32-byte default output (hashlib's `blake2s`).
    Blake2s,
    /// MD5: catches damage, not tampering (collisions are cheap to make).
    Md5,
}

impl ChecksumKind {
    /// Every supported kind.
    pub const ALL: [ChecksumKind; 14] = [
        ChecksumKind::Sha1,
        ChecksumKind::Sha224,
        ChecksumKind::Sha256,
        ChecksumKind::Sha384,
        ChecksumKind::Sha512,
        ChecksumKind::Sha512_224,
        ChecksumKind::Sha512_256,
        ChecksumKind::Sha3_224,
        ChecksumKind::Sha3_256,
        ChecksumKind::Sha3_384,
        ChecksumKind::Sha3_512,
        ChecksumKind::Blake2b,
        ChecksumKind::Blake2s,
        ChecksumKind::Md5,
    ];

    /// The name used in `ChecksumType`, as Python's hashlib spells it.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumKind::Sha1 => "sha1",
            ChecksumKind::Sha224 => "sha224",
            ChecksumKind::Sha256 => "sha256",
            ChecksumKind::Sha384 => "sha384",
            ChecksumKind::Sha512 => "sha512",
            ChecksumKind::Sha512_224 => "sha512_224",
            ChecksumKind::Sha512_256 => "sha512_256",
            ChecksumKind::Sha3_224 => "sha3_224",
            ChecksumKind::Sha3_256 => "sha3_256",
            ChecksumKind::Sha3_384 => "sha3_384",
            ChecksumKind::Sha3_512 => "sha3_512",
            ChecksumKind::Blake2b => "blake2b",
            ChecksumKind::Blake2s => "blake2s",
            ChecksumKind::Md5 => "md5",
        }
    }

    /// Looks a kind up by its `ChecksumType` name, ignoring case and taking `-` for `_`
    /// (`SHA256`, `sha3-256` and `sha512-256` are OpenSSL's spellings, which hashlib
    /// also accepts).
    pub fn from_name(name: &str) -> Option<ChecksumKind> {
        let canonical = name.to_ascii_lowercase().replace('-', "_");
        ChecksumKind::ALL
            .into_iter()
            .find(|kind| kind.name() == canonical)
    }

    /// The supported names, comma-separated, for messages.
    pub fn names() -> String {
        let names: Vec<&str> = ChecksumKind::ALL.iter().map(|k| k.name()).collect();
        names.join(", ")
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumKind::Md5 => 16,
            ChecksumKind::Sha1 => 20,
            ChecksumKind::Sha224 | ChecksumKind::Sha512_224 | ChecksumKind::Sha3_224 => 28,
            ChecksumKind::Sha256
            | ChecksumKind::Sha512_256
            | ChecksumKind::Sha3_256
            | ChecksumKind::Blake2s => 32,
            ChecksumKind::Sha384 | ChecksumKind::Sha3_384 => 48,
            ChecksumKind::Sha512 | ChecksumKind::Sha3_512 | ChecksumKind::Blake2b => 64,
        }
    }

    /// Length of a digest written in hex.
    pub fn hex_len(self) -> usize {
        self.digest_len() * 2
    }

    /// Starts an incremental hash of this kind.
    pub fn hasher(self) -> Hasher {
        let state = match self {
            ChecksumKind::Sha1 => State::Sha1(Sha1::default()),
            ChecksumKind::Sha224 => State::Sha224(Sha224::default()),
            ChecksumKind::Sha256 => State::Sha256(Sha256::default()),
            ChecksumKind::Sha384 => State::Sha384(Sha384::default()),
            ChecksumKind::Sha512 => State::Sha512(Sha512::default()),
            ChecksumKind::Sha512_224 => State::Sha512_224(Sha512_224::default()),
            ChecksumKind::Sha512_256 => State::Sha512_256(Sha512_256::default()),
            ChecksumKind::Sha3_224 => State::Sha3_224(Sha3_224::default()),
            ChecksumKind::Sha3_256 => State::Sha3_256(Sha3_256::default()),
            ChecksumKind::Sha3_384 => State::Sha3_384(Sha3_384::default()),
            ChecksumKind::Sha3_512 => State::Sha3_512(Sha3_512::default()),
            ChecksumKind::Blake2b => State::Blake2b(blake2::Blake2b512::default()),
            ChecksumKind::Blake2s => State::Blake2s(blake2::Blake2s256::default()),
            ChecksumKind::Md5 => State::Md5(Md5::default()),
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

/// The hash states. SHA-1 and SHA-2 implement `digest` 0.11, the others (shared with
/// the OpenPGP code) `digest` 0.10: each arm calls its own trait.
#[derive(Clone)]
enum State {
    Sha1(Sha1),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
    Sha512_224(Sha512_224),
    Sha512_256(Sha512_256),
    Sha3_224(Sha3_224),
    Sha3_256(Sha3_256),
    Sha3_384(Sha3_384),
    Sha3_512(Sha3_512),
    Blake2b(blake2::Blake2b512),
    Blake2s(blake2::Blake2s256),
    Md5(Md5),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("kind", &self.kind())
            .finish()
    }
}

/// Runs `$body` with `$h` bound to the state's hasher and its `Digest` trait in scope.
macro_rules! each_state {
    ($state:expr, $h:ident => $body:expr) => {
        match $state {
            State::Sha1($h) => {
                use sha2::Digest as _;
                $body
            }
            State::Sha224($h) => {
                use sha2::Digest as _;
                $body
            }
            State::Sha256($h) => {
                use sha2::Digest as _;
                $body
            }
            State::Sha384($h) => {
                use sha2::Digest as _;
                $body
            }
            State::Sha512($h) => {
                use sha2::Digest as _;
                $body
            }
            State::Sha512_224($h) => {
                use sha2::Digest as _;
                $body
            }
            State::Sha512_256($h) => {
                use sha2::Digest as _;
                $body
            }
            State::Sha3_224($h) => {
                use sha3::Digest as _;
                $body
            }
            State::Sha3_256($h) => {
                use sha3::Digest as _;
                $body
            }
            State::Sha3_384($h) => {
                use sha3::Digest as _;
                $body
            }
            State::Sha3_512($h) => {
                use sha3::Digest as _;
                $body
            }
            State::Blake2b($h) => {
                use blake2::Digest as _;
                $body
            }
            State::Blake2s($h) => {
                use blake2::Digest as _;
                $body
            }
            State::Md5($h) => {
                use md5::Digest as _;
                $body
            }
        }
    };
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
            State::Sha512_224(_) => ChecksumKind::Sha512_224,
            State::Sha512_256(_) => ChecksumKind::Sha512_256,
            State::Sha3_224(_) => ChecksumKind::Sha3_224,
            State::Sha3_256(_) => ChecksumKind::Sha3_256,
            State::Sha3_384(_) => ChecksumKind::Sha3_384,
            State::Sha3_512(_) => ChecksumKind::Sha3_512,
            State::Blake2b(_) => ChecksumKind::Blake2b,
            State::Blake2s(_) => ChecksumKind::Blake2s,
            State::Md5(_) => ChecksumKind::Md5,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        each_state!(&mut self.state, h => h.update(bytes));
    }

    /// Finishes the hash.
    pub fn finish(self) -> Digest {
        let kind = self.kind();
        let digest = each_state!(self.state, h => Digest::from_bytes(kind, &h.finalize()));
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
    fn names_as_hashlib_and_openssl_spell_them() {
        use ChecksumKind::*;
        for (name, kind) in [
            ("SHA256", Sha256),
            ("md5", Md5),
            ("sha3-256", Sha3_256),
            ("SHA512_256", Sha512_256),
            ("blake2b", Blake2b),
        ] {
            assert_eq!(ChecksumKind::from_name(name), Some(kind), "{name}");
        }
        for name in ["shake_128", "md4", "sha-3", ""] {
            assert_eq!(ChecksumKind::from_name(name), None, "{name}");
        }
        for kind in ChecksumKind::ALL {
            assert_eq!(ChecksumKind::from_name(kind.name()), Some(kind));
        }
    }

    /// Every kind against Python's `hashlib.new(name, b"abc").hexdigest()`.
    #[test]
    fn every_kind_matches_hashlib() {
        let expected = [
            ("sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                "sha224",
                "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
            ),
            (
                "sha256",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "sha384",
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                "sha512",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (
                "sha512_224",
                "4634270f707b6a54daae7530460842e20e37ed265ceee9a43e8924aa",
            ),
            (
                "sha512_256",
                "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23",
            ),
            (
                "sha3_224",
                "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf",
            ),
            (
                "sha3_256",
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            ),
            (
                "sha3_384",
                "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b298d88cea927ac7f539f1edf228376d25",
            ),
            (
                "sha3_512",
                "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0",
            ),
            (
                "blake2b",
                "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
            ),
            (
                "blake2s",
                "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
            ),
            ("md5", "900150983cd24fb0d6963f7d28e17f72"),
        ];
        assert_eq!(expected.len(), ChecksumKind::ALL.len());
        for (name, hex) in expected {
            let kind = ChecksumKind::from_name(name).expect("known");
            let mut hasher = kind.hasher();
            hasher.update(b"a");
            hasher.update(b"bc");
            let digest = hasher.finish();
            assert_eq!(digest.to_hex(), hex, "{name}");
            assert_eq!(hex.len(), kind.hex_len(), "{name}");
            assert_eq!(Digest::from_hex(kind, hex), Ok(digest));
        }
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
