//! The advice the command line adds to a library error: the library says what is
//! wrong (and what to get or check), never which option of this program would change
//! the outcome; the options are named here, as a suffix of the error's line.

use bmap::{copy, signature, trust};

/// The suffix that names the options which would let the user go on, for the first
/// error in `error`'s chain that has one.
pub fn hint(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<signature::Error>() {
            return signature_hint(e);
        }
        if let Some(trust::Error::Signature { source, .. }) = cause.downcast_ref::<trust::Error>() {
            return signature_hint(source);
        }
        if cause
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.get_ref())
            .is_some_and(|inner| inner.is::<bmap::source::WindowTooLarge>())
        {
            return Some(" (raise it with --max-window SIZE if the image is trusted)");
        }
        match cause.downcast_ref::<copy::Error>() {
            Some(copy::Error::HoleNotZero { .. }) => Some(" (--no-verify copies it anyway)"),
            _ => None,
        }
    })
}

/// A refused signature can be skipped; an unknown signer's key can also be named.
fn signature_hint(error: &signature::Error) -> Option<&'static str> {
    use signature::Error as E;
    match error {
        E::Keyring(_) => None,
        E::Unsupported { .. } => Some(" and use --no-sig-verify"),
        E::UnknownKey { .. } => Some(" (--keyring), or skip the check with --no-sig-verify"),
        E::WrongSigner { .. } => Some(" (--fingerprint), or skip the check with --no-sig-verify"),
        E::Malformed(_) | E::Bad { .. } | E::WeakHash(_) | E::Refused { .. } => {
            Some(", or skip the check with --no-sig-verify")
        }
        E::OneOfSeveral { error, .. } | E::NoneOfSeveral { error, .. } => signature_hint(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_errors_get_the_option_that_skips_the_check() {
        let bad = signature::Error::Bad {
            fingerprint: "F".into(),
        };
        let nested = signature::Error::NoneOfSeveral {
            number: 1,
            count: 2,
            error: Box::new(bad.clone()),
        };
        for error in [bad, nested] {
            let error = anyhow::Error::new(error).context("cannot use the signature");
            assert_eq!(
                hint(&error),
                Some(", or skip the check with --no-sig-verify")
            );
        }
        let keyring = anyhow::Error::new(signature::Error::Keyring("x".into()));
        assert_eq!(hint(&keyring), None);
    }
}
