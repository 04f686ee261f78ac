//! The parts every JSON document shares (docs/json.md): the `bmap` object (where the
//! bmap is, its geometry and checksum type, its own checksum's verdict and its
//! signature's verdict, the parser's warnings) and writing a document on standard
//! output. `info` and `verify` build their documents from these, and so will any other
//! command that reports on a bmap, so one concept keeps one name and one shape. Field
//! names and values are stable: never rename one; add fields instead. Every field is
//! always written; one that does not apply is `null`.

use std::io::Write;

use anyhow::{Context, Result};
use bmap::format::{self, SelfCheck};
use bmap::signature;
use bmap::trust::{self, Inspected, SignatureCheck, Trusted};
use serde::Serialize;

/// The bmap a command used: the `bmap` object of every document.
#[derive(Debug, Serialize)]
pub struct Bmap {
    /// A path, a URL without its credentials, or `-` for standard input.
    pub location: String,
    /// The format version the file declares, `"major.minor"`.
    pub version: String,
    /// The image's size in bytes.
    pub image_size: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// The ranges' checksum algorithm; `None` when the bmap has none.
    pub checksum_type: Option<&'static str>,
    /// The bmap's own checksum's verdict.
    pub bmap_checksum: BmapChecksum,
    /// The signature's verdict.
    pub signature: Signature,
    /// Oddities the parser accepted (also printed as warnings on standard error).
    pub warnings: Vec<String>,
}

impl Bmap {
    /// The `bmap` object of a bmap a command trusted (`copy`, `verify`).
    pub fn trusted(trusted: &Trusted) -> Bmap {
        Bmap::new(
            &trusted.shown,
            &trusted.bmap,
            &trusted.self_check,
            Signature::checked(&trusted.signature),
            &trusted.warnings,
        )
    }

    /// The `bmap` object of a bmap `info` inspected, whatever its verdicts.
    pub fn inspected(inspected: &Inspected) -> Bmap {
        Bmap::new(
            &inspected.shown,
            &inspected.bmap,
            &inspected.self_check,
            Signature::new(&inspected.signature),
            &inspected.warnings,
        )
    }

    fn new(
        location: &str,
        bmap: &format::Bmap,
        self_check: &SelfCheck,
        signature: Signature,
        warnings: &[String],
    ) -> Bmap {
        Bmap {
            location: location.to_owned(),
            version: bmap.version().to_string(),
            image_size: bmap.image_size(),
            block_size: bmap.block_size(),
            checksum_type: bmap.checksum_kind().map(|kind| kind.name()),
            bmap_checksum: BmapChecksum::new(self_check),
            signature,
            warnings: warnings.to_vec(),
        }
    }
}

/// A verdict's status word: lower case, `-` between words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Checked and it holds.
    Good,
    /// Checked and it does not hold.
    Bad,
    /// The bmap's own checksum: the format (1.0-1.2) has none.
    Absent,
    /// A signature that no key at hand could check.
    Unverifiable,
    /// No signature.
    Unsigned,
    /// A signature left unchecked (`--no-sig-verify`).
    NotChecked,
}

impl Status {
    /// The word as the JSON document writes it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Good => "good",
            Status::Bad => "bad",
            Status::Absent => "absent",
            Status::Unverifiable => "unverifiable",
            Status::Unsigned => "unsigned",
            Status::NotChecked => "not-checked",
        }
    }
}

/// The bmap's own checksum's verdict.
#[derive(Debug, Serialize)]
pub struct BmapChecksum {
    /// `good`, `bad` or `absent` (formats 1.0-1.2).
    pub status: Status,
    /// The algorithm; `None` when absent.
    pub checksum_type: Option<&'static str>,
}

impl BmapChecksum {
    /// The verdict `check` gives.
    pub fn new(check: &SelfCheck) -> BmapChecksum {
        let (status, kind) = match check {
            SelfCheck::Absent => (Status::Absent, None),
            SelfCheck::Verified(kind) => (Status::Good, Some(*kind)),
            SelfCheck::Mismatch { actual, .. } => (Status::Bad, Some(actual.kind())),
        };
        BmapChecksum {
            status,
            checksum_type: kind.map(|kind| kind.name()),
        }
    }
}

/// The signature's verdict; the fields after `status` are `None` where they do not apply.
#[derive(Debug, Serialize)]
pub struct Signature {
    /// `good`, `bad`, `unverifiable`, `unsigned` or `not-checked`.
    pub status: Status,
    /// Whether the bmap is clearsigned (else the signature is a detached file); when
    /// a signature was checked (good, bad, most unverifiable) or not checked.
    pub inline: Option<bool>,
    /// The signature file (the bmap itself when inline); when a signature was checked.
    pub file: Option<String>,
    /// The signer's user ID; when good.
    pub signer: Option<String>,
    /// The signing key's fingerprint; when good.
    pub fingerprint: Option<String>,
    /// The primary key's fingerprint (differs when a subkey signed); when good.
    pub primary_fingerprint: Option<String>,
    /// Whether the signature uses SHA-1 (weak); when good.
    pub sha1: Option<bool>,
    /// Why it is bad or unverifiable.
    pub error: Option<String>,
}

impl Signature {
    /// A verdict with nothing but its status.
    fn of(status: Status) -> Signature {
        Signature {
            status,
            inline: None,
            file: None,
            signer: None,
            fingerprint: None,
            primary_fingerprint: None,
            sha1: None,
            error: None,
        }
    }

    /// The verdict of a check that did not fail.
    pub fn checked(check: &SignatureCheck) -> Signature {
        match check {
            SignatureCheck::Unsigned => Signature::of(Status::Unsigned),
            SignatureCheck::Skipped { inline } => Signature {
                inline: Some(*inline),
                ..Signature::of(Status::NotChecked)
            },
            SignatureCheck::Verified {
                verdict,
                file,
                inline,
                ..
            } => Signature {
                inline: Some(*inline),
                file: Some(file.clone()),
                signer: Some(verdict.user_id.clone()),
                fingerprint: Some(verdict.signer.clone()),
                primary_fingerprint: Some(verdict.primary.clone()),
                sha1: Some(verdict.sha1),
                ..Signature::of(Status::Good)
            },
        }
    }

    /// The verdict of a check: good, unsigned or not checked, or why it failed.
    pub fn new(check: &Result<SignatureCheck, trust::Error>) -> Signature {
        match check {
            Ok(check) => Signature::checked(check),
            Err(error) => {
                let status = if unverifiable(error) {
                    Status::Unverifiable
                } else {
                    Status::Bad
                };
                // Which signature failed, when one was read (not when no key was at hand).
                let (inline, file) = match error {
                    trust::Error::Signature { shown, file, .. } => (
                        Some(file.is_none()),
                        Some(file.clone().unwrap_or_else(|| shown.clone())),
                    ),
                    _ => (None, None),
                };
                Signature {
                    inline,
                    file,
                    error: Some(one_line(error)),
                    ..Signature::of(status)
                }
            }
        }
    }
}

/// A signature no key at hand could check, as opposed to one that failed its check.
fn unverifiable(error: &trust::Error) -> bool {
    match error {
        trust::Error::NoKeys { .. } => true,
        trust::Error::Signature { source, .. } => matches!(
            **source,
            signature::Error::UnknownKey { .. } | signature::Error::Unsupported { .. }
        ),
        _ => false,
    }
}

/// An error and its causes on one line, as `main` prints them.
fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text += &format!(": {next}");
        cause = next.source();
    }
    text
}

/// Writes `document` on standard output: pretty-printed, then a newline.
pub fn print(document: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, document).context("cannot write the report")?;
    writeln!(out).context("cannot write the report")?;
    out.flush().context("cannot write the report")
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn status_names_are_the_words_the_documents_write() {
        for status in [
            Status::Good,
            Status::Bad,
            Status::Absent,
            Status::Unverifiable,
            Status::Unsigned,
            Status::NotChecked,
        ] {
            assert_eq!(serde_json::to_value(status).expect("a word"), status.name());
        }
    }
}
