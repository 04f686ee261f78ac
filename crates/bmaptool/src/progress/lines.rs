//! The shapes of the JSON lines (docs/json.md, "Progress lines"): one struct per line
//! type, `type` first and the other fields in the documented order. Field names are
//! stable: never rename one; add fields instead. Every field is always written.

use serde::Serialize;

use crate::cmd::json::Bmap;

/// The `start` line.
#[derive(Debug, Serialize)]
pub struct Start<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub command: &'static str,
    pub image: Option<&'a str>,
    pub image_size: Option<u64>,
    pub destinations: Vec<&'a str>,
    pub bmap: Option<&'a Bmap>,
    pub bytes_total: Option<u64>,
}

/// A `progress` line.
#[derive(Debug, Serialize)]
pub struct Progress {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub phase: Option<&'static str>,
    pub dest: Option<usize>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub rate: u64,
    pub seconds: f64,
}

/// A `range` line.
#[derive(Debug, Serialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub dest: Option<usize>,
    pub index: usize,
    pub verdict: &'static str,
    pub first_block: u64,
    pub last_block: u64,
    pub start: u64,
    pub end: u64,
    pub digest: Option<String>,
    pub expected: Option<String>,
}

/// The `error` object of the result: a stable code and the human message.
#[derive(Debug, Clone, Serialize)]
pub struct Error {
    pub code: &'static str,
    pub message: String,
}

/// The `result` line.
#[derive(Debug, Serialize)]
pub struct Outcome<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub command: &'static str,
    pub ok: bool,
    pub error: Option<Error>,
    pub image: Option<&'a str>,
    pub image_size: Option<u64>,
    pub bmap: Option<&'a Bmap>,
    pub seconds: f64,
    pub destinations: Vec<DestOutcome<'a>>,
}

/// One destination in the `result` line.
#[derive(Debug, Serialize)]
pub struct DestOutcome<'a> {
    pub path: &'a str,
    pub ok: bool,
    pub error: Option<Error>,
    pub ranges_written: u64,
    pub ranges_verified: u64,
    pub ranges_mismatched: u64,
    pub ranges_failed: u64,
    pub bytes_written: u64,
    pub bytes_verified: u64,
    pub bytes_read_back: Option<u64>,
    pub bytes_skipped: Option<u64>,
    pub seconds: f64,
}

/// A `message` line.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub level: &'a str,
    pub message: &'a str,
}
