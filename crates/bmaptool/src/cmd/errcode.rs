//! The stable error codes of the JSON result object (docs/json.md, "Error codes"):
//! one kebab-case word per kind of failure, derived here, in one place, from the typed
//! errors in an anyhow chain (the library's error enums). The first cause in the chain
//! that has a code of its own gives it; an error with none is `error`. Codes are never
//! renamed; new ones are added to [`CODES`] and the documentation together.

use bmap::source::remote;
use bmap::{copy, dest, signature, source, trust, verify};

/// Every code, for the documentation's table (a test checks they match).
pub const CODES: &[&str] = &[
    "usage",
    "interrupted",
    "checksum-mismatch",
    "read-back-mismatch",
    "image-truncated",
    "image-size-mismatch",
    "hole-not-zero",
    "image-unreadable",
    "dest-failed",
    "dest-too-small",
    "dest-no-space",
    "dest-busy",
    "dest-missing",
    "dest-unusable",
    "permission-denied",
    "bmap-not-found",
    "bmap-invalid",
    "bmap-no-checksums",
    "signature-bad",
    "signature-unverifiable",
    "signature-missing",
    "not-found",
    "network",
    "io",
    "error",
];

/// An error the CLI words itself (no typed cause left to tell its kind), with its
/// code; it prints as its message.
#[derive(Debug)]
pub struct Coded {
    /// The code, one of [`CODES`].
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error with `code` that prints as `message`.
pub fn coded(code: &'static str, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.to_string(),
    })
}

/// Marks an option check's error as a usage error (same message).
pub fn usage(error: anyhow::Error) -> anyhow::Error {
    coded("usage", format!("{error:#}"))
}

/// The result object's `error`: the code, and the message `main` prints (the chain on
/// one line, with the advice).
pub fn describe(error: &anyhow::Error, interrupted: bool) -> (&'static str, String) {
    let hint = crate::advice::hint(error).unwrap_or_default();
    (code(error, interrupted), format!("{error:#}{hint}"))
}

/// The `error` object of a typed error that has no anyhow chain (one destination's
/// failure in a copy to several): its code, and it with its causes on one line.
pub fn describe_cause(error: &(dyn std::error::Error + 'static)) -> (&'static str, String) {
    let mut code = None;
    let mut message = error.to_string();
    let mut cause = Some(error);
    while let Some(current) = cause {
        code = code.or_else(|| cause_code(current));
        if !std::ptr::addr_eq(current, error) {
            message += &format!(": {current}");
        }
        cause = current.source();
    }
    let io = || {
        let mut cause = Some(error);
        while let Some(current) = cause {
            if current.is::<std::io::Error>() {
                return Some("io");
            }
            cause = current.source();
        }
        None
    };
    (code.or_else(io).unwrap_or("error"), message)
}

/// The code of `error`; `interrupted` when a signal ended the run.
pub fn code(error: &anyhow::Error, interrupted: bool) -> &'static str {
    if interrupted {
        return "interrupted";
    }
    error
        .chain()
        .find_map(cause_code)
        .or_else(|| {
            error
                .chain()
                .any(|cause| cause.is::<std::io::Error>())
                .then_some("io")
        })
        .unwrap_or("error")
}

fn cause_code(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(coded) = cause.downcast_ref::<Coded>() {
        return Some(coded.code);
    }
    if let Some(e) = cause.downcast_ref::<copy::Error>() {
        return copy_code(e);
    }
    if let Some(e) = cause.downcast_ref::<verify::Error>() {
        return match e {
            verify::Error::NoChecksums { .. } => Some("bmap-no-checksums"),
            verify::Error::TargetTooSmall { .. } => Some("dest-too-small"),
            verify::Error::NotATarget(_) => Some("dest-unusable"),
            // The code reading the target has always had (stable).
            verify::Error::ReadTarget { .. } => Some("image-unreadable"),
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<dest::Error>() {
        return dest_code(e);
    }
    if let Some(e) = cause.downcast_ref::<trust::Error>() {
        return trust_code(e);
    }
    if let Some(e) = cause.downcast_ref::<signature::Error>() {
        return Some(signature_code(e));
    }
    if let Some(e) = cause.downcast_ref::<remote::Error>() {
        return Some(remote_code(e));
    }
    match cause.downcast_ref::<source::Error>() {
        Some(source::Error::PermissionDenied { .. }) => Some("permission-denied"),
        Some(source::Error::Decode { .. }) => Some("image-unreadable"),
        _ => None,
    }
}

fn copy_code(error: &copy::Error) -> Option<&'static str> {
    use copy::Error as E;
    Some(match error {
        E::ChecksumMismatch(_) => "checksum-mismatch",
        E::ReadBack(_) => "read-back-mismatch",
        E::Truncated { .. } => "image-truncated",
        E::TooLong { .. } | E::SizeMismatch { .. } | E::DeclaredTooLarge { .. } => {
            "image-size-mismatch"
        }
        E::HoleNotZero { .. } => "hole-not-zero",
        E::DeviceTooSmall { .. } => "dest-too-small",
        E::Interrupted => "interrupted",
        E::NothingToReadBack(_) => "dest-unusable",
        E::Read { .. } => "image-unreadable",
        // The cause says more (a destination's, a thread's, an I/O error).
        _ => return None,
    })
}

fn dest_code(error: &dest::Error) -> Option<&'static str> {
    use dest::Error as E;
    Some(match error {
        E::MissingDevice(_) => "dest-missing",
        E::PermissionDenied { .. } => "permission-denied",
        E::BacksLoop { .. } | E::Busy { .. } => "dest-busy",
        E::NoRoom { .. } => "dest-no-space",
        E::TooSmall { .. } => "dest-too-small",
        E::Directory(_) | E::ReadOnly(_) => "dest-unusable",
        _ => return None,
    })
}

fn trust_code(error: &trust::Error) -> Option<&'static str> {
    use trust::Error as E;
    Some(match error {
        E::NotFound => "bmap-not-found",
        E::Parse { .. } => "bmap-invalid",
        E::SignatureMissing { .. } | E::UnsignedWithFingerprint | E::UnsignedWithKeyring => {
            "signature-missing"
        }
        E::NoKeys { .. } => "signature-unverifiable",
        E::Signature { source, .. } => signature_code(source),
        _ => return None,
    })
}

fn signature_code(error: &signature::Error) -> &'static str {
    use signature::Error as E;
    match error {
        E::UnknownKey { .. } | E::Unsupported { .. } | E::Keyring(_) => "signature-unverifiable",
        E::OneOfSeveral { error, .. } | E::NoneOfSeveral { error, .. } => signature_code(error),
        _ => "signature-bad",
    }
}

fn remote_code(error: &remote::Error) -> &'static str {
    match error {
        remote::Error::NotFound(_) => "not-found",
        remote::Error::Interrupted(_) => "interrupted",
        _ => "network",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_the_typed_cause_under_any_context() {
        let error = anyhow::Error::new(copy::Error::Interrupted).context("cannot copy");
        assert_eq!(code(&error, false), "interrupted");
        let error = anyhow::Error::new(signature::Error::Bad {
            fingerprint: "F".into(),
        })
        .context("cannot use the signature");
        assert_eq!(code(&error, false), "signature-bad");
        let io = std::io::Error::other("disk on fire");
        assert_eq!(code(&anyhow::Error::new(io).context("x"), false), "io");
        assert_eq!(code(&anyhow::anyhow!("something"), false), "error");
        assert_eq!(code(&anyhow::anyhow!("something"), true), "interrupted");
        assert_eq!(code(&usage(anyhow::anyhow!("a and b")), false), "usage");
        let coded = coded("bmap-not-found", "no bmap").context("cannot copy");
        assert_eq!(code(&coded, false), "bmap-not-found");
        assert_eq!(format!("{coded:#}"), "cannot copy: no bmap");
    }

    #[test]
    fn verify_failing_to_read_its_target_keeps_the_image_unreadable_code() {
        let error = anyhow::Error::new(verify::Error::ReadTarget {
            path: "/dev/sdz".into(),
            kind: verify::TargetKind::BlockDevice,
            offset: 9 << 20,
            seek: 1 << 20,
            source: std::io::Error::from_raw_os_error(libc::EIO),
        })
        .context("cannot verify '/dev/sdz'");
        assert_eq!(code(&error, false), "image-unreadable");
        let message = format!("{error:#}");
        assert!(
            message.starts_with(
                "cannot verify '/dev/sdz': cannot read the device '/dev/sdz' at byte 9437184 \
                 (byte 8388608 of the image): "
            ),
            "{message}"
        );
    }

    #[test]
    fn every_code_is_kebab_case_and_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for code in CODES {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{code}"
            );
            assert!(seen.insert(code), "{code} twice");
        }
    }
}
