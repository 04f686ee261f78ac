//! `bmaptool info [signature options] [--json] BMAP`: what a bmap says (geometry,
//! mapped share, checksums, its own checksum's and its signature's verdicts), as
//! aligned `key: value` lines or one JSON document on standard output.
//!
//! Exit rule: the report is printed whenever the bmap can be read and parsed. A bad
//! or unverifiable signature is shown, not fatal, unless a check was asked for
//! (`--bmap-sig`, `--keyring` or `--fingerprint`, with which `copy` requires a good
//! signature): then a missing or failed signature exits 1 after the report. A bmap
//! whose own checksum does not match exits 1 after the report (`copy` refuses it
//! whatever the options). A bmap that cannot be read or parsed exits 1 with one error
//! line and no report.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use bmap::Interrupt;
use bmap::format::{Bmap, SelfCheck, human_size};
use bmap::signature;
use bmap::source::remote::{self, Location};
use bmap::trust::{self, Found, Inspected, SignatureCheck};
use serde::Serialize;

use crate::cli::InfoArgs;
use crate::input;
use crate::messages;

/// Runs `info`: reads and judges the bmap, prints the report, then fails if a check
/// the rule above makes fatal failed.
pub fn run(args: &InfoArgs, interrupt: &Interrupt) -> Result<()> {
    super::signature::check_options(&args.signature, false)?;
    let remote = remote::Options {
        interrupt: interrupt.clone(),
        ..super::network::remote_options()?
    };
    let found = if args.bmap == "-" {
        // Read capped and interruptibly as any local bmap; nothing lies beside it.
        let mut found = Found::named(Location::Local(PathBuf::from("/dev/stdin")));
        found.shown = "-".to_owned();
        found
    } else {
        // A location is refused only for its URL scheme, which the error names.
        Found::named(input::locate(&args.bmap).context("cannot open the bmap file")?)
    };
    let options = super::signature::trust_options(&args.signature, &remote, interrupt)?;
    let inspected = crate::signals::blocking(interrupt, move || trust::inspect(found, &options))?
        .map_err(super::signature::explain)?;
    for warning in &inspected.warnings {
        messages::warning(format_args!("bmap file '{}': {warning}", inspected.shown));
    }
    let report = Report::new(&inspected);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("cannot write the report")?;
        writeln!(out).context("cannot write the report")?;
    } else {
        out.write_all(report.text().as_bytes())
            .context("cannot write the report")?;
    }
    out.flush().context("cannot write the report")?;
    verdict(args, inspected)
}

/// The exit rule (see the module's docs): `Err` for a bmap whose own checksum does not
/// match, or a signature that is not good when a check was asked for.
fn verdict(args: &InfoArgs, inspected: Inspected) -> Result<()> {
    let shown = &inspected.shown;
    if let SelfCheck::Mismatch { expected, actual } = inspected.self_check {
        return Err(anyhow!(
            "bmap file '{shown}' is corrupt: its checksum does not match its contents \
             (calculated {actual}, the file says {expected}); get a good copy of the bmap"
        ));
    }
    let sig = &args.signature;
    let asked = sig.bmap_sig.is_some() || sig.keyring.is_some() || sig.fingerprint.is_some();
    match inspected.signature {
        Err(error) if asked => Err(super::signature::explain(error)),
        Ok(SignatureCheck::Unsigned) if asked => Err(anyhow!(
            "bmap file '{shown}' is not signed, but --keyring or --fingerprint was given"
        )),
        _ => Ok(()),
    }
}

/// What `info` reports; its field names are the stable JSON schema (docs/json.md).
#[derive(Debug, Serialize)]
struct Report {
    bmap: String,
    version: String,
    image_size: u64,
    block_size: u64,
    blocks: u64,
    mapped_blocks: u64,
    mapped_size: u64,
    mapped_percent: f64,
    ranges: usize,
    checksum_type: Option<String>,
    bmap_checksum: BmapChecksum,
    signature: Signature,
    warnings: Vec<String>,
}

/// The bmap's own checksum's verdict.
#[derive(Debug, Serialize)]
struct BmapChecksum {
    /// `good`, `bad` or `absent` (formats 1.0-1.2).
    status: &'static str,
    /// The algorithm, unless absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum_type: Option<String>,
}

/// The signature's verdict.
#[derive(Debug, Default, Serialize)]
struct Signature {
    /// `good`, `bad`, `unverifiable`, `unsigned` or `not-checked`.
    status: &'static str,
    /// Whether the bmap is clearsigned (else the signature is a detached file).
    #[serde(skip_serializing_if = "Option::is_none")]
    inline: Option<bool>,
    /// The signature file (the bmap itself when inline); when good.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// The signer's user ID; when good.
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<String>,
    /// The signing key's fingerprint; when good.
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    /// The primary key's fingerprint (differs when a subkey signed); when good.
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_fingerprint: Option<String>,
    /// Whether the signature uses SHA-1 (weak); when good.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha1: Option<bool>,
    /// Why it is bad or unverifiable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Report {
    fn new(inspected: &Inspected) -> Report {
        let bmap: &Bmap = &inspected.bmap;
        let blocks = bmap.blocks_count();
        let mapped_blocks = bmap.mapped_blocks();
        let bmap_checksum = match inspected.self_check {
            SelfCheck::Absent => BmapChecksum {
                status: "absent",
                checksum_type: None,
            },
            SelfCheck::Verified(kind) => BmapChecksum {
                status: "good",
                checksum_type: Some(kind.to_string()),
            },
            SelfCheck::Mismatch { actual, .. } => BmapChecksum {
                status: "bad",
                checksum_type: Some(actual.kind().to_string()),
            },
        };
        Report {
            bmap: inspected.shown.clone(),
            version: bmap.version().to_string(),
            image_size: bmap.image_size(),
            block_size: bmap.block_size(),
            blocks,
            mapped_blocks,
            mapped_size: mapped_blocks.saturating_mul(bmap.block_size()),
            mapped_percent: percent(mapped_blocks, blocks),
            ranges: bmap.ranges().len(),
            checksum_type: bmap.checksum_kind().map(|kind| kind.to_string()),
            bmap_checksum,
            signature: Signature::new(&inspected.signature),
            warnings: inspected.warnings.clone(),
        }
    }

    /// The human report: aligned `key: value` lines.
    fn text(&self) -> String {
        let checksum = match &self.bmap_checksum.checksum_type {
            Some(kind) => format!("{} ({kind})", self.bmap_checksum.status),
            None => format!(
                "{} (format {} has none)",
                self.bmap_checksum.status, self.version
            ),
        };
        let lines = [
            ("bmap file", self.bmap.clone()),
            ("format version", self.version.clone()),
            ("image size", sized(self.image_size)),
            ("block size", sized(self.block_size)),
            ("blocks", self.blocks.to_string()),
            ("mapped blocks", self.mapped_blocks.to_string()),
            (
                "mapped size",
                format!(
                    "{}, {:.1}% of the image",
                    sized(self.mapped_size),
                    self.mapped_percent
                ),
            ),
            ("ranges", self.ranges.to_string()),
            (
                "checksum type",
                self.checksum_type.clone().unwrap_or_else(|| "none".into()),
            ),
            ("bmap checksum", checksum),
            ("signature", self.signature.text()),
        ];
        let width = lines.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
        lines
            .iter()
            .map(|(key, value)| format!("{:<width$} {value}\n", format!("{key}:")))
            .collect()
    }
}

impl Signature {
    fn new(check: &Result<SignatureCheck, trust::Error>) -> Signature {
        match check {
            Ok(SignatureCheck::Unsigned) => Signature {
                status: "unsigned",
                ..Signature::default()
            },
            Ok(SignatureCheck::Skipped { inline }) => Signature {
                status: "not-checked",
                inline: Some(*inline),
                ..Signature::default()
            },
            Ok(SignatureCheck::Verified {
                verdict,
                file,
                inline,
                ..
            }) => Signature {
                status: "good",
                inline: Some(*inline),
                file: Some(file.clone()),
                signer: Some(verdict.user_id.clone()),
                fingerprint: Some(verdict.signer.clone()),
                primary_fingerprint: Some(verdict.primary.clone()),
                sha1: Some(verdict.sha1),
                error: None,
            },
            Err(error) => Signature {
                status: if unverifiable(error) {
                    "unverifiable"
                } else {
                    "bad"
                },
                error: Some(one_line(error)),
                ..Signature::default()
            },
        }
    }

    fn text(&self) -> String {
        let mut text = self.status.to_owned();
        if let (Some(signer), Some(fingerprint)) = (&self.signer, &self.fingerprint) {
            text += &format!(", by {signer} (fingerprint {fingerprint})");
        }
        match (self.inline, &self.file) {
            (Some(true), _) => text += ", inline (clearsigned)",
            (Some(false), Some(file)) => text += &format!(", in '{file}'"),
            _ => {}
        }
        if self.sha1 == Some(true) {
            text += ", uses SHA-1 (weak)";
        }
        if let Some(error) = &self.error {
            text += &format!(": {error}");
        }
        text
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

/// "N bytes (human)".
fn sized(bytes: u64) -> String {
    format!("{bytes} bytes ({})", human_size(bytes))
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
