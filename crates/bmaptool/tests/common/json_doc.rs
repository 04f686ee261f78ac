//! The JSON documents against their schema in docs/json.md: the field paths a
//! document holds, and the field paths docs/json.md's tables list for a command.
//! Tests compare the two, so a field cannot be added, renamed or dropped without the
//! documentation saying so. Used by `info.rs` and `verify.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

/// Every field path of `document`: `a`, `a.b` for an object's fields, `a[].b` for
/// the fields of an array's objects (objects and arrays are listed themselves too).
pub fn fields(document: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect(document, "", &mut out);
    out
}

fn collect(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.insert(path.clone());
                collect(inner, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// The field paths docs/json.md lists for `bmaptool COMMAND --json`: the first
/// column of its section's table, and of the table of the `bmap` object every
/// document holds.
pub fn documented_fields(command: &str) -> BTreeSet<String> {
    let text = docs();
    let mut fields = table(&text, &format!("`bmaptool {command} --json`"));
    fields.extend(table(&text, "The `bmap` object"));
    fields
}

/// The field names (first column) of the tables in docs/json.md's section headed
/// `heading` (the progress lines' sections, the error codes).
#[allow(
    dead_code,
    reason = "progress_json.rs uses it; info.rs and verify.rs do not"
)]
pub fn documented_table(heading: &str) -> BTreeSet<String> {
    table(&docs(), heading)
}

/// The first example of docs/json.md's section on `bmaptool COMMAND --json`: the
/// first `json` code block, parsed.
pub fn documented_example(command: &str) -> Value {
    let text = docs();
    let section = section(&text, &format!("`bmaptool {command} --json`"));
    let (_, rest) = section
        .split_once("```json\n")
        .unwrap_or_else(|| panic!("no example for {command}"));
    let (example, _) = rest.split_once("\n```").expect("the example's end");
    serde_json::from_str(example).unwrap_or_else(|e| panic!("{command}'s example: {e}"))
}

fn docs() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json.md");
    fs::read_to_string(doc).expect("read docs/json.md")
}

/// The section of `text` headed `heading`.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    text.split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/json.md has no section {heading}"))
}

/// The first column of the tables in the section of `text` headed `heading`.
fn table(text: &str, heading: &str) -> BTreeSet<String> {
    section(text, heading)
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}
