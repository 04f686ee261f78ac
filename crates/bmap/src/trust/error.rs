//! Why a bmap could not be found, read, trusted or parsed: each error names the file
//! and leaves its cause to the chain; none names a CLI option (the CLI adds advice).

use std::path::PathBuf;

use super::ReadError;
use crate::format;
use crate::signature;
use crate::source::remote;

/// Why no trusted bmap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No bmap beside the image.
    #[error("bmap file not found beside the image")]
    NotFound,
    /// Looking for the bmap beside a remote image failed (not a "not found").
    #[error("cannot look for the bmap beside the image")]
    Lookup(#[source] Box<remote::Error>),
    /// The bmap cannot be read.
    #[error("cannot open {}", named("bmap file", .shown))]
    Bmap {
        /// The bmap's path; `None` for a URL, which the server's error names.
        shown: Option<String>,
        /// Why.
        source: Fetch,
    },
    /// The bmap cannot be parsed.
    #[error("cannot use bmap file '{shown}'")]
    Parse {
        /// The bmap.
        shown: String,
        /// Why.
        source: Box<format::ParseError>,
    },
    /// The named signature file cannot be read.
    #[error("cannot open {}", named("bmap signature file", .shown))]
    SignatureFile {
        /// The signature file's path; `None` for a URL, which the server's error names.
        shown: Option<String>,
        /// Why.
        source: Fetch,
    },
    /// The named signature file does not exist.
    #[error("cannot open bmap signature file '{shown}': not found")]
    SignatureMissing {
        /// The signature file.
        shown: String,
    },
    /// A candidate signature beside the bmap cannot be read.
    #[error("{}", match .shown {
        Some(shown) => format!("cannot read '{shown}'"),
        None => "cannot look for the bmap's signature".to_owned(),
    })]
    SignatureLookup {
        /// The candidate's path; `None` for a URL, which the server's error names.
        shown: Option<String>,
        /// Why.
        source: Fetch,
    },
    /// A clearsigned bmap and a named detached signature.
    #[error(
        "the bmap file '{shown}' has clearsign format and already contains the signature, so \
         no separate signature file should be given"
    )]
    InlineAndDetached {
        /// The bmap.
        shown: String,
    },
    /// A clearsigned bmap whose text cannot be taken out.
    #[error("cannot read the clearsigned bmap file '{shown}'")]
    Clearsigned {
        /// The bmap.
        shown: String,
        /// Why.
        source: Box<signature::Error>,
    },
    /// No signature, but a fingerprint to check it by was given.
    #[error("no signature found but a fingerprint was given")]
    UnsignedWithFingerprint,
    /// No signature, but a keyring to check it with was given.
    #[error("no signature found but a keyring was given")]
    UnsignedWithKeyring,
    /// A keyring cannot be read or parsed.
    #[error("cannot read keyring '{path}'")]
    Keyring {
        /// The keyring.
        path: PathBuf,
        /// Why.
        source: KeyringError,
    },
    /// The bmap is signed, but no keyring had a key.
    #[error("the bmap is signed but there is no public key to check it with ({searched})")]
    NoKeys {
        /// Where keys were looked for.
        searched: String,
    },
    /// The signature does not verify.
    #[error("cannot use {}", match .file {
        Some(file) => format!("the signature '{file}' of bmap file '{shown}'"),
        None => format!("bmap file '{shown}'"),
    })]
    Signature {
        /// The bmap.
        shown: String,
        /// The detached signature file; `None` when inline.
        file: Option<String>,
        /// Why.
        source: Box<signature::Error>,
    },
}

/// Why a small file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Fetch {
    /// A local file.
    #[error(transparent)]
    Local(#[from] ReadError),
    /// A remote one.
    #[error(transparent)]
    Remote(Box<remote::Error>),
}

/// Why a keyring is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Reading it failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Its keys cannot be parsed.
    #[error(transparent)]
    Parse(Box<signature::Error>),
}

/// "bmap file 'PATH'" for a local file, "the bmap file" for a URL (whose error names it).
fn named(what: &str, shown: &Option<String>) -> String {
    match shown {
        Some(shown) => format!("{what} '{shown}'"),
        None => format!("the {what}"),
    }
}
