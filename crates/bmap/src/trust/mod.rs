//! Finding, fetching and trusting a bmap: the one step `copy` (and a later `verify`)
//! takes before a [`crate::copy::Plan`] is made. [`find`] locates the bmap (named, or
//! discovered beside a local or remote image in the reference's order); [`trust`]
//! reads it (capped in size, interruptible), checks its OpenPGP signature as the
//! [`Options`] say (inline, named or discovered beside it) and parses it. What the
//! caller may want to tell the user comes back as facts in [`Found`] and
//! [`Trusted`]; nothing is printed. [`inspect`] takes the same step to describe a bmap
//! (`bmaptool info`): a signature that does not verify and a bmap checksum that does
//! not match come back as facts in [`Inspected`], not as errors.
//!
//! A whole copy, as `bmaptool copy IMAGE /dev/sdX` composes it:
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use bmap::{copy, dest::Dest, source, trust};
//! use bmap::source::remote::Location;
//!
//! let image = Path::new("disk.img.xz");
//! let remote = source::remote::Options::default();
//! let found = trust::find(Some(&Location::Local(image.to_owned())), &remote)?;
//! let trusted = trust::trust(found, &trust::Options {
//!     signature: trust::SignatureSource::Discover,
//!     keys: trust::Keys::Named(PathBuf::from("signer.gpg")),
//!     fingerprint: None,
//!     remote,
//!     interrupt: bmap::Interrupt::new(),
//! })?;
//! let opened = source::open(image)?;
//! let plan = copy::Plan::new(opened.image, Some(trusted.bmap), opened.min_size)?;
//! let dest = Dest::open(Path::new("/dev/sdX"), &plan.dest_options(true))?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! let renderer = std::thread::spawn(move || {
//!     for event in rx {
//!         if let copy::Event::Range(range) = event {
//!             println!("blocks {}-{}: {:?}", range.first_block, range.last_block, range.result);
//!         }
//!     }
//! });
//! let mut events = tx;
//! let outcome = plan.run(&mut copy::DestWriter::new(dest), &mut events, &Default::default())?;
//! drop(events);
//! renderer.join().ok();
//! println!("{} bytes in {:?}", outcome.bytes_written, outcome.timings.copying());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod inspect;
mod read;

use std::path::PathBuf;

use crate::Interrupt;
use crate::format::{self, Bmap, SelfCheck};
use crate::signature::{self, Keyring, Verified};
use crate::source::remote::{self, Location};

pub use error::{Error, Fetch, KeyringError};
pub use inspect::{Inspected, inspect};
pub use read::{BMAP, Cap, KEYRING, ReadError, SIGNATURE, read_capped};

/// Where the signature comes from.
#[derive(Debug, Clone)]
pub enum SignatureSource {
    /// Not checked.
    Skip,
    /// This detached signature file.
    Named(Location),
    /// Inline, or a `.asc`/`.sig` file beside the bmap.
    Discover,
}

/// Which keys a signature is checked with.
#[derive(Debug, Clone)]
pub enum Keys {
    /// This keyring file, which must be readable.
    Named(PathBuf),
    /// The first readable of these (the user's GnuPG keyrings); `home` names where
    /// they were looked for in the error when none has a key.
    Default {
        /// Candidate files; missing or unreadable ones are skipped.
        files: Vec<PathBuf>,
        /// Where they were looked for, for messages.
        home: Option<PathBuf>,
    },
}

/// Choices for [`trust`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The signature to check.
    pub signature: SignatureSource,
    /// The keys to check it with.
    pub keys: Keys,
    /// Accept only a signature by the key with this fingerprint.
    pub fingerprint: Option<String>,
    /// How remote files are fetched.
    pub remote: remote::Options,
    /// Stops a read that waits or floods.
    pub interrupt: Interrupt,
}

/// A bmap found, not yet read (local) or already fetched (remote discovery).
#[derive(Debug)]
pub struct Found {
    /// Where it is.
    pub location: Location,
    /// How to name it: a path, or a URL without credentials.
    pub shown: String,
    /// Whether it was discovered beside the image rather than named.
    pub discovered: bool,
    /// Its bytes, when discovery fetched them.
    bytes: Option<Vec<u8>>,
}

impl Found {
    /// The bmap at `location`, named by the caller.
    pub fn named(location: Location) -> Found {
        Found {
            shown: shown(&location),
            location,
            discovered: false,
            bytes: None,
        }
    }
}

/// How the signature was judged.
#[derive(Debug, Clone)]
pub enum SignatureCheck {
    /// No signature inline or beside the bmap.
    Unsigned,
    /// Not checked, as the options said; `inline` when the bmap was clearsigned.
    Skipped {
        /// A clearsigned bmap (its text was taken without checking).
        inline: bool,
    },
    /// A good signature.
    Verified {
        /// Who made it, and which of the file's signatures it is.
        verdict: Box<Verified>,
        /// The signature file (the bmap itself when inline).
        file: String,
        /// Whether it was inline (clearsigned) rather than detached.
        inline: bool,
        /// Whether a detached file was discovered rather than named.
        discovered: bool,
        /// The keyrings read.
        keyrings: Vec<String>,
    },
}

/// A bmap read, signature-checked and parsed.
#[derive(Debug, Clone)]
pub struct Trusted {
    /// The bmap.
    pub bmap: Bmap,
    /// How to name it.
    pub shown: String,
    /// The signature's verdict.
    pub signature: SignatureCheck,
    /// Whether the bmap checks its own bytes.
    pub self_check: SelfCheck,
    /// Oddities the parser accepted.
    pub warnings: Vec<String>,
}

/// How a location may be shown: a path, or a URL without credentials.
pub fn shown(location: &Location) -> String {
    match location {
        Location::Local(path) => path.display().to_string(),
        Location::Url(url) => remote::redact(url),
    }
}

/// A local file's name for an error; `None` for a URL, which the server's or the
/// network's error names already.
fn local_name(location: &Location) -> Option<String> {
    match location {
        Location::Local(_) => Some(shown(location)),
        Location::Url(_) => None,
    }
}

/// Finds the bmap beside the image at `image` in the reference's order; for a URL the
/// candidates are fetched, and one that is not found (404, or 403 as some stores
/// answer) moves on. `None` for an image read from standard input (nothing beside it).
pub fn find(image: Option<&Location>, remote: &remote::Options) -> Result<Found, Error> {
    match image {
        None => {}
        Some(Location::Local(path)) => {
            // The path, not the argument: a file:// URL names a local path.
            for candidate in crate::discover::bmap_candidate_paths(path) {
                if candidate.is_file() {
                    let mut found = Found::named(Location::Local(candidate));
                    found.discovered = true;
                    return Ok(found);
                }
            }
        }
        Some(Location::Url(url)) => {
            for candidate in remote::bmap_candidates(url) {
                match remote::fetch(&candidate, remote, BMAP.bytes) {
                    Ok(bytes) => {
                        let mut found = Found::named(Location::Url(candidate));
                        found.discovered = true;
                        found.bytes = Some(bytes);
                        return Ok(found);
                    }
                    Err(e) if absent(&e) => {}
                    Err(e) => return Err(Error::Lookup(Box::new(e))),
                }
            }
        }
    }
    Err(Error::NotFound)
}

/// A remote answer that means "not here".
fn absent(error: &remote::Error) -> bool {
    error.is_not_found() || matches!(error, remote::Error::Status { status: 403, .. })
}

/// Reads the bmap `found`, checks its signature as `options` say, and parses it.
pub fn trust(mut found: Found, options: &Options) -> Result<Trusted, Error> {
    let shown = found.shown.clone();
    let bytes = read_bmap(&mut found, options)?;
    let (signature, bytes) = check_signature(&found.location, &shown, bytes, options)?;
    let parsed = format::parse(&bytes).map_err(|source| Error::Parse {
        shown: shown.clone(),
        source: Box::new(source),
    })?;
    Ok(Trusted {
        bmap: parsed.bmap,
        shown,
        signature,
        self_check: parsed.self_check,
        warnings: parsed.warnings.iter().map(ToString::to_string).collect(),
    })
}

/// The bmap's bytes: fetched by discovery already, or read now (capped).
fn read_bmap(found: &mut Found, options: &Options) -> Result<Vec<u8>, Error> {
    if let Some(bytes) = found.bytes.take() {
        return Ok(bytes);
    }
    let fetched = match &found.location {
        Location::Local(path) => read_capped(path, &BMAP, &options.interrupt).map_err(Fetch::from),
        Location::Url(url) => {
            remote::fetch(url, &options.remote, BMAP.bytes).map_err(|e| Fetch::Remote(Box::new(e)))
        }
    };
    fetched.map_err(|source| Error::Bmap {
        shown: local_name(&found.location),
        source,
    })
}

/// The signature's verdict and the bmap bytes to parse (a clearsigned bmap's text).
fn check_signature(
    location: &Location,
    shown: &str,
    bytes: Vec<u8>,
    options: &Options,
) -> Result<(SignatureCheck, Vec<u8>), Error> {
    let skip = matches!(options.signature, SignatureSource::Skip);
    if signature::is_clearsigned(&bytes) {
        if matches!(options.signature, SignatureSource::Named(_)) {
            return Err(Error::InlineAndDetached {
                shown: shown.to_owned(),
            });
        }
        if skip {
            let text =
                signature::clearsigned_text(&bytes).map_err(|source| Error::Clearsigned {
                    shown: shown.to_owned(),
                    source: Box::new(source),
                })?;
            return Ok((SignatureCheck::Skipped { inline: true }, text));
        }
        let (keyring, keyrings) = keyring(&options.keys, options)?;
        let (verdict, text) = signature::verify_clearsigned(&bytes, &keyring, &judge(options))
            .map_err(|source| Error::Signature {
                shown: shown.to_owned(),
                file: None,
                source: Box::new(source),
            })?;
        let check = SignatureCheck::Verified {
            verdict: Box::new(verdict),
            file: shown.to_owned(),
            inline: true,
            discovered: true,
            keyrings,
        };
        return Ok((check, text));
    }
    if skip {
        return Ok((SignatureCheck::Skipped { inline: false }, bytes));
    }
    let Some((file, sig, discovered)) = detached(location, options)? else {
        if options.fingerprint.is_some() {
            return Err(Error::UnsignedWithFingerprint);
        }
        if matches!(options.keys, Keys::Named(_)) {
            return Err(Error::UnsignedWithKeyring);
        }
        return Ok((SignatureCheck::Unsigned, bytes));
    };
    let (keyring, keyrings) = keyring(&options.keys, options)?;
    let verdict =
        signature::verify_detached(&bytes, &sig, &keyring, &judge(options)).map_err(|source| {
            Error::Signature {
                shown: shown.to_owned(),
                file: Some(file.clone()),
                source: Box::new(source),
            }
        })?;
    let check = SignatureCheck::Verified {
        verdict: Box::new(verdict),
        file,
        inline: false,
        discovered,
        keyrings,
    };
    Ok((check, bytes))
}

/// How to judge: now, and by the key of the fingerprint if given.
fn judge(options: &Options) -> signature::Options {
    signature::Options {
        fingerprint: options.fingerprint.clone(),
        ..signature::Options::default()
    }
}

/// The detached signature: the named file, or the first `.asc`/`.sig` found beside
/// the bmap; with its name and whether it was discovered.
fn detached(bmap: &Location, options: &Options) -> Result<Option<(String, Vec<u8>, bool)>, Error> {
    if let SignatureSource::Named(location) = &options.signature {
        let name = shown(location);
        let bytes = fetch(location, &SIGNATURE, options)
            .map_err(|source| Error::SignatureFile {
                shown: local_name(location),
                source,
            })?
            .ok_or_else(|| Error::SignatureMissing {
                shown: name.clone(),
            })?;
        return Ok(Some((name, bytes, false)));
    }
    let candidates: Vec<Location> = match bmap {
        Location::Local(path) => crate::discover::signature_candidate_paths(path)
            .into_iter()
            .map(Location::Local)
            .collect(),
        Location::Url(url) => remote::signature_candidates(url)
            .into_iter()
            .map(Location::Url)
            .collect(),
    };
    for candidate in candidates {
        let name = shown(&candidate);
        let found =
            fetch(&candidate, &SIGNATURE, options).map_err(|source| Error::SignatureLookup {
                shown: local_name(&candidate),
                source,
            })?;
        if let Some(bytes) = found {
            return Ok(Some((name, bytes, true)));
        }
    }
    Ok(None)
}

/// A small file's bytes, `None` when it does not exist.
fn fetch(
    location: &Location,
    cap: &'static Cap,
    options: &Options,
) -> Result<Option<Vec<u8>>, Fetch> {
    match location {
        Location::Local(path) => match read_capped(path, cap, &options.interrupt) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        },
        Location::Url(url) => match remote::fetch(url, &options.remote, cap.bytes) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(Fetch::Remote(Box::new(e))),
        },
    }
}

/// The keys to verify with, and the keyrings they came from.
fn keyring(keys: &Keys, options: &Options) -> Result<(Keyring, Vec<String>), Error> {
    let mut keyring = Keyring::new();
    let add = |keyring: &mut Keyring, path: &PathBuf, bytes: &[u8]| {
        keyring.add(bytes).map_err(|e| Error::Keyring {
            path: path.clone(),
            source: KeyringError::Parse(Box::new(e)),
        })
    };
    match keys {
        Keys::Named(path) => {
            let bytes =
                read_capped(path, &KEYRING, &options.interrupt).map_err(|e| Error::Keyring {
                    path: path.clone(),
                    source: e.into(),
                })?;
            add(&mut keyring, path, &bytes)?;
            Ok((keyring, vec![path.display().to_string()]))
        }
        Keys::Default { files, home } => {
            let mut read_any = Vec::new();
            for path in files {
                let bytes = match read_capped(path, &KEYRING, &options.interrupt) {
                    Ok(bytes) => bytes,
                    // A missing or unreadable keyring is skipped: only the others count.
                    Err(ReadError::Io(_)) => continue,
                    Err(e) => {
                        return Err(Error::Keyring {
                            path: path.clone(),
                            source: e.into(),
                        });
                    }
                };
                add(&mut keyring, path, &bytes)?;
                read_any.push(path.display().to_string());
            }
            if keyring.is_empty() {
                return Err(Error::NoKeys {
                    searched: home.as_ref().map_or_else(
                        || "no GnuPG home".to_owned(),
                        |h| format!("none in {}", h.display()),
                    ),
                });
            }
            Ok((keyring, read_any))
        }
    }
}
