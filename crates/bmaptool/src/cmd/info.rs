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
use bmap::format::{SelfCheck, human_size};
use bmap::source::remote::{self, Location};
use bmap::trust::{self, Found, Inspected, SignatureCheck};
use serde::Serialize;

use super::json;

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
    if args.json {
        json::print(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(report.text().as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write the report")?;
    }
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
    bmap: json::Bmap,
    blocks: u64,
    mapped_blocks: u64,
    mapped_size: u64,
    mapped_percent: f64,
    ranges_total: usize,
}

impl Report {
    fn new(inspected: &Inspected) -> Report {
        let bmap = &inspected.bmap;
        let blocks = bmap.blocks_count();
        let mapped_blocks = bmap.mapped_blocks();
        Report {
            bmap: json::Bmap::inspected(inspected),
            blocks,
            mapped_blocks,
            mapped_size: mapped_blocks.saturating_mul(bmap.block_size()),
            mapped_percent: percent(mapped_blocks, blocks),
            ranges_total: bmap.ranges().len(),
        }
    }

    /// The human report: aligned `key: value` lines.
    fn text(&self) -> String {
        let bmap = &self.bmap;
        let status = bmap.bmap_checksum.status.name();
        let checksum = match bmap.bmap_checksum.checksum_type {
            Some(kind) => format!("{status} ({kind})"),
            None => format!("{status} (format {} has none)", bmap.version),
        };
        let lines = [
            ("bmap file", bmap.location.clone()),
            ("format version", bmap.version.clone()),
            ("image size", sized(bmap.image_size)),
            ("block size", sized(bmap.block_size)),
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
            ("ranges", self.ranges_total.to_string()),
            (
                "checksum type",
                bmap.checksum_type.unwrap_or("none").to_owned(),
            ),
            ("bmap checksum", checksum),
            ("signature", signature_text(&bmap.signature)),
        ];
        let width = lines.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
        lines
            .iter()
            .map(|(key, value)| format!("{:<width$} {value}\n", format!("{key}:")))
            .collect()
    }
}

/// The signature's line of the human report.
fn signature_text(signature: &json::Signature) -> String {
    let mut text = signature.status.name().to_owned();
    if let (Some(signer), Some(fingerprint)) = (&signature.signer, &signature.fingerprint) {
        text += &format!(", by {signer} (fingerprint {fingerprint})");
    }
    if let Some(error) = &signature.error {
        // The error names the signature file already.
        return text + ": " + error;
    }
    match (signature.inline, &signature.file) {
        (Some(true), _) => text += ", inline (clearsigned)",
        (Some(false), Some(file)) => text += &format!(", in '{file}'"),
        _ => {}
    }
    if signature.sha1 == Some(true) {
        text += ", uses SHA-1 (weak)";
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
