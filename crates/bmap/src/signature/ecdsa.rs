//! ECDSA signatures on secp256k1 with a "high" S: libgcrypt (gpg) makes them about
//! half of the time and accepts them, while the k256 verifier under rPGP takes only
//! S <= n/2. (r, n - S) is the same signature, so a key wrapped in [`LowS`] turns S
//! into n - S before it checks: for data signatures and for the self-signatures,
//! bindings and back-signatures of the key alike.

use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::types::{
    EcdsaPublicParams, Fingerprint, KeyDetails, KeyId, KeyVersion, Mpi, PublicParams,
    SignatureBytes, Timestamp, VerifyingKey,
};

/// The order of secp256k1's group.
const SECP256K1_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
    0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
];

/// A key that verifies secp256k1 ECDSA signatures whatever half S falls in; every
/// other key and signature passes through unchanged.
#[derive(Debug)]
pub(super) struct LowS<'a, K>(pub(super) &'a K);

impl<K: KeyDetails> KeyDetails for LowS<'_, K> {
    fn version(&self) -> KeyVersion {
        self.0.version()
    }
    fn legacy_key_id(&self) -> KeyId {
        self.0.legacy_key_id()
    }
    fn fingerprint(&self) -> Fingerprint {
        self.0.fingerprint()
    }
    fn algorithm(&self) -> PublicKeyAlgorithm {
        self.0.algorithm()
    }
    fn created_at(&self) -> Timestamp {
        self.0.created_at()
    }
    fn legacy_v3_expiration_days(&self) -> Option<u16> {
        self.0.legacy_v3_expiration_days()
    }
    fn public_params(&self) -> &PublicParams {
        self.0.public_params()
    }
}

impl<K: VerifyingKey> VerifyingKey for LowS<'_, K> {
    fn verify(
        &self,
        hash: HashAlgorithm,
        data: &[u8],
        sig: &SignatureBytes,
    ) -> pgp::errors::Result<()> {
        let secp256k1 = matches!(
            self.0.public_params(),
            PublicParams::ECDSA(EcdsaPublicParams::Secp256k1 { .. })
        );
        match low_s(sig).filter(|_| secp256k1) {
            Some(normalised) => self.0.verify(hash, data, &normalised),
            None => self.0.verify(hash, data, sig),
        }
    }
}

impl<K: pgp::ser::Serialize> pgp::ser::Serialize for LowS<'_, K> {
    fn to_writer<W: std::io::Write>(&self, w: &mut W) -> pgp::errors::Result<()> {
        self.0.to_writer(w)
    }
    fn write_len(&self) -> usize {
        self.0.write_len()
    }
}

/// (r, n - s) when `sig` is an (r, s) pair with n/2 < s < n on secp256k1; `None` when
/// nothing changes.
fn low_s(sig: &SignatureBytes) -> Option<SignatureBytes> {
    let SignatureBytes::Mpis(mpis) = sig else {
        return None;
    };
    let [r, s] = mpis.as_slice() else {
        return None;
    };
    let s = s.as_ref();
    if s.len() > 32 {
        return None;
    }
    let mut padded = [0u8; 32];
    padded[32 - s.len()..].copy_from_slice(s);
    if padded >= SECP256K1_N || padded <= half(&SECP256K1_N) {
        return None;
    }
    let negated = Mpi::from_slice(&subtract(&SECP256K1_N, &padded));
    Some(SignatureBytes::Mpis(vec![r.clone(), negated]))
}

/// `n / 2` (rounded down) of a big-endian number.
fn half(n: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u8;
    for (o, &b) in out.iter_mut().zip(n) {
        *o = (b >> 1) | (carry << 7);
        carry = b & 1;
    }
    out
}

/// `a - b` of big-endian numbers, `a >= b`.
fn subtract(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0u16;
    for i in (0..32).rev() {
        let (d, under) = u16::from(a[i]).overflowing_sub(u16::from(b[i]) + borrow);
        out[i] = d.to_be_bytes()[1];
        borrow = u16::from(under);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{SECP256K1_N, SignatureBytes, half, low_s, subtract};
    use pgp::types::Mpi;

    #[test]
    fn half_of_the_secp256k1_order_and_negation_are_exact() {
        let h = half(&SECP256K1_N);
        // n = 2h + 1 (n is odd): n - h = h + 1.
        let mut h_plus_one = h;
        h_plus_one[31] += 1;
        assert_eq!(subtract(&SECP256K1_N, &h), h_plus_one);
        assert_eq!(h[..4], [0x7F, 0xFF, 0xFF, 0xFF], "n/2 starts 7FFFFFFF");
        assert_eq!(h[28..], [0x68, 0x1B, 0x20, 0xA0], "n/2 ends 681B20A0");
        assert_eq!(subtract(&SECP256K1_N, &SECP256K1_N), [0u8; 32]);
    }

    #[test]
    fn only_s_above_half_the_order_is_negated() {
        let r = Mpi::from_slice(&[7; 32]);
        let pair = |s: &[u8]| SignatureBytes::Mpis(vec![r.clone(), Mpi::from_slice(s)]);
        let h = half(&SECP256K1_N);
        assert_eq!(low_s(&pair(&h)), None, "n/2 itself is low");
        let mut above = h;
        above[31] += 1;
        // n - (h + 1) = h.
        assert_eq!(low_s(&pair(&above)), Some(pair(&h)));
        assert_eq!(low_s(&pair(&SECP256K1_N)), None, "s = n is not a signature");
        assert_eq!(low_s(&pair(&[1])), None);
        assert_eq!(low_s(&SignatureBytes::Mpis(vec![r.clone()])), None);
    }
}
