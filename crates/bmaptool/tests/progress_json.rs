//! `--progress json` and `--progress-fd N`: every line a real copy (to a regular file,
//! to a loop device) or check writes is parsed with serde_json, its totals checked
//! against the image and the bmap (read by hand); a failing copy and an interrupted
//! one end with the result object and the right error code; the fields written are
//! exactly those docs/json.md lists, and its error code table is the program's.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;
#[allow(
    dead_code,
    reason = "this file uses part of the JSON documentation helper"
)]
#[path = "common/json_doc.rs"]
mod json_doc;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;

use copy_support::*;
use serde_json::Value;

/// The lines of `text`, each parsed (a line that is not JSON fails the test).
fn lines(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// The image's mapped bytes, from the bmap read by hand.
fn mapped_bytes(facts: &BmapFacts) -> u64 {
    facts
        .ranges
        .iter()
        .map(|&(a, b)| ((b + 1) * facts.block_size).min(facts.image_size) - a * facts.block_size)
        .sum()
}

/// Checks a successful copy's lines against the bmap: start first, result last, a
/// `range` per bmap range, byte totals equal to the mapped bytes.
fn check_successful_copy(all: &[Value], dest: &Path, bmap: &Path) {
    let facts = BmapFacts::read(bmap);
    let mapped = mapped_bytes(&facts);
    let start = all
        .iter()
        .find(|line| line["type"] != "message")
        .expect("lines");
    assert_eq!(start["type"], "start", "the start line comes first");
    assert_eq!(start["command"], "copy");
    assert_eq!(start["destinations"][0], dest.display().to_string());
    assert_eq!(start["bytes_total"], mapped);
    assert_eq!(start["image_size"], facts.image_size);
    assert_eq!(start["bmap"]["block_size"], facts.block_size);
    let result = all.last().expect("lines");
    assert_eq!(result["type"], "result", "the result is the last line");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["error"], Value::Null);
    let mut ranges = of_type(all, "range");
    // Ranges finish in any order; `index` is their place in the bmap.
    ranges.sort_by_key(|r| r["index"].as_u64());
    assert_eq!(
        ranges.len(),
        facts.ranges.len(),
        "one range object per bmap range"
    );
    let mut sum = 0;
    for (range, &(first, last)) in ranges.iter().zip(&facts.ranges) {
        assert_eq!(range["verdict"], "verified", "{range}");
        assert_eq!(range["dest"], 0);
        assert_eq!(
            (range["first_block"].as_u64(), range["last_block"].as_u64()),
            (Some(first), Some(last))
        );
        sum += range["end"].as_u64().expect("end") - range["start"].as_u64().expect("start");
    }
    assert_eq!(sum, mapped, "the ranges' bytes are the mapped bytes");
    let progress = of_type(all, "progress");
    let phases: Vec<&str> = progress
        .iter()
        .filter_map(|p| p["phase"].as_str())
        .collect();
    for phase in ["checking", "writing", "syncing"] {
        assert!(phases.contains(&phase), "no {phase} progress: {phases:?}");
    }
    let mut done = 0;
    for line in &progress {
        assert_eq!(line["bytes_total"], mapped);
        let now = line["bytes_done"].as_u64().expect("bytes_done");
        assert!(
            now >= done && now <= mapped,
            "bytes_done goes up to the total: {line}"
        );
        done = now;
        assert_eq!(
            line["dest"].is_null(),
            line["phase"] == "checking",
            "{line}"
        );
    }
    assert_eq!(done, mapped, "the last progress object has every byte");
    let dest_result = &result["destinations"][0];
    assert_eq!(dest_result["bytes_written"], mapped);
    assert_eq!(dest_result["bytes_verified"], mapped);
    assert_eq!(dest_result["ranges_written"], facts.ranges.len());
    assert_eq!(dest_result["ranges_verified"], facts.ranges.len());
    assert_eq!(dest_result["ok"], true);
}

#[test]
fn progress_json_lines_of_a_copy_to_a_file_add_up_to_the_bmap() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let bmap = test_bmap("2.0");
    let dest = dir.path().join("out.img");
    let out = run([
        "copy".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = lines(&out.stderr);
    check_successful_copy(&all, &dest, &bmap);
    assert!(
        of_type(&all, "message")
            .iter()
            .any(|m| m["level"] == "info"),
        "the human messages are message objects"
    );
    assert_eq!(read(&dest), bytes);
}

#[test]
fn progress_json_lines_of_a_copy_to_a_loop_device_add_up_to_the_bmap() {
    if !need_loop_devices() {
        return;
    }
    let device = LoopDevice::new(4 * MIB, 0);
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let bmap = test_bmap("2.0");
    let out = run([
        "copy".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--verify-written".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        device.path().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = lines(&out.stderr);
    check_successful_copy(&all, device.path(), &bmap);
    let result = all.last().expect("lines");
    let mapped = mapped_bytes(&BmapFacts::read(&bmap));
    assert_eq!(result["destinations"][0]["bytes_read_back"], mapped);
    assert_eq!(result["destinations"][0]["bytes_skipped"], Value::Null);
    assert_eq!(read_prefix(device.path(), bytes.len() as u64), bytes);
}

/// The lines a failing copy writes end with `ok: false` and the code of the failure.
#[test]
fn a_copy_with_another_images_bmap_ends_with_checksum_mismatch() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let bmap = test_bmap("2.0");
    let facts = BmapFacts::read(&bmap);
    // Another image: the same layout, one byte of the first range changed.
    flip_byte(&image, facts.ranges[0].0 * facts.block_size + 7);
    let dest = dir.path().join("out.img");
    let out = run([
        "copy".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        dest.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let all = lines(&out.stderr);
    let result = all.last().expect("lines");
    assert_eq!(result["type"], "result");
    assert_eq!(result["ok"], false);
    assert_eq!(result["error"]["code"], "checksum-mismatch", "{result}");
    assert_eq!(
        result["destinations"][0]["error"]["code"],
        "checksum-mismatch"
    );
    let mismatched = of_type(&all, "range");
    assert_eq!(mismatched.last().expect("a range")["verdict"], "mismatched");
    assert_eq!(
        of_type(&all, "result").len(),
        1,
        "one result, and no error line"
    );
}

#[test]
fn a_refused_option_ends_with_the_usage_code() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let out = run([
        "copy".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--nobmap".as_ref(),
        "--bmap".as_ref(),
        "x.bmap".as_ref(),
        image.as_os_str(),
        dir.path().join("out").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let all = lines(&out.stderr);
    assert_eq!(all.len(), 1, "only the result: {all:?}");
    assert_eq!(all[0]["error"]["code"], "usage");
    assert_eq!(all[0]["bmap"], Value::Null);
}

/// SIGINT while the copy waits for its image: the last line is the result, with the
/// `interrupted` code. The signal is sent once the writing phase was announced.
#[test]
fn sigint_mid_copy_ends_with_the_interrupted_code() {
    interrupt_mid_copy("INT", 130);
}

#[test]
fn sigterm_mid_copy_ends_with_the_interrupted_code() {
    interrupt_mid_copy("TERM", 143);
}

/// Sends `name` to a copy in its writing phase (waiting for more of its image on a
/// pipe); it exits with `status`, its last line the result with `interrupted`.
fn interrupt_mid_copy(name: &str, status: i32) {
    let dir = tempdir();
    let dest = dir.path().join("out.img");
    let mut child = KillOnDrop(
        bmaptool()
            .args(["copy", "--progress", "json", "--nobmap", "-"])
            .arg(&dest)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts"),
    );
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    stdin
        .write_all(&[0x5a; 4096])
        .expect("first bytes reach bmaptool");
    let stderr = child.0.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(HANG)
            .expect("a progress line of the writing phase");
        let value: Value = serde_json::from_str(&line).expect("a JSON line");
        let writing = value["type"] == "progress" && value["phase"] == "writing";
        seen.push(value);
        if writing {
            break;
        }
    }
    signal(&child.0, name);
    let exited = wait_for(&mut child.0, HANG).expect("bmaptool exits after the signal");
    drop(stdin);
    reader.join().expect("the reader ends");
    seen.extend(
        rx.try_iter()
            .map(|l| serde_json::from_str(&l).expect("a JSON line")),
    );
    assert_eq!(exited.code(), Some(status));
    let result = seen.last().expect("lines");
    assert_eq!(result["type"], "result", "{seen:?}");
    assert_eq!(result["ok"], false);
    assert_eq!(result["error"]["code"], "interrupted");
}

/// `--progress-fd 3` with the test's own pipe: the lines go there, stderr keeps the
/// human messages.
#[test]
fn progress_fd_writes_the_lines_to_the_callers_pipe() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let bmap = test_bmap("2.0");
    let dest = dir.path().join("out.img");
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    // std opens pipes close-on-exec: a shell puts the pipe's write end on descriptor 3
    // of the child (through /proc, without unsafe code) and execs bmaptool.
    let pipe = format!("/proc/{}/fd/{}", std::process::id(), writer.as_raw_fd());
    let out = clean_command("sh")
        .arg("-c")
        .arg(format!("exec \"$0\" \"$@\" 3>{pipe}"))
        .arg(env!("CARGO_BIN_EXE_bmaptool"))
        .args(["copy", "--progress-fd", "3", "--bmap"])
        .arg(&bmap)
        .arg(&image)
        .arg(&dest)
        .output()
        .expect("bmaptool runs");
    drop(writer);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bmaptool: info: "),
        "stderr keeps the human messages"
    );
    let mut text = Vec::new();
    reader.read_to_end(&mut text).expect("read the pipe");
    check_successful_copy(&lines(&text), &dest, &bmap);
}

/// `verify --progress json`: the target's bytes read, a range per bmap range, a
/// result; `--json`'s report stays on stdout.
#[test]
fn verify_progress_json_reports_every_range() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let bmap = test_bmap("2.0");
    let out = run([
        "verify".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--json".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report on stdout");
    assert_eq!(report["result"], "good");
    let all = lines(&out.stderr);
    let facts = BmapFacts::read(&bmap);
    assert_eq!(of_type(&all, "range").len(), facts.ranges.len());
    let last = all.last().expect("lines");
    assert_eq!(last["type"], "result");
    assert_eq!(last["command"], "verify");
    assert_eq!(
        last["destinations"][0]["bytes_verified"],
        mapped_bytes(&facts)
    );
    assert!(
        of_type(&all, "progress")
            .iter()
            .any(|p| p["phase"] == "verifying")
    );
}

/// Every field a line writes is in docs/json.md's table for its type (with the
/// `bmap` object's), and every documented field is written.
#[test]
fn progress_lines_hold_exactly_the_documented_fields() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let bmap = test_bmap("2.0");
    let good = run([
        "copy".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        dir.path().join("good.img").as_os_str(),
    ]);
    flip_byte(&image, BmapFacts::read(&bmap).ranges[0].0 * 4096);
    let bad = run([
        "copy".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        dir.path().join("bad.img").as_os_str(),
    ]);
    let mut all = lines(&good.stderr);
    all.extend(lines(&bad.stderr));
    let bmap_fields = json_doc::documented_table("The `bmap` object");
    for kind in ["start", "progress", "range", "result", "message"] {
        let mut written = BTreeSet::new();
        for line in of_type(&all, kind) {
            written.extend(json_doc::fields(line));
        }
        let mut documented = json_doc::documented_table(&format!("The `{kind}` line"));
        if documented.contains("bmap") {
            documented.extend(bmap_fields.iter().cloned());
        }
        assert_eq!(written, documented, "the {kind} line's fields");
    }
}

#[test]
fn the_error_code_table_is_the_programs() {
    let documented = json_doc::documented_table("Error codes");
    let codes: BTreeSet<String> = bmaptool::cmd::errcode::CODES
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(documented, codes);
}

/// docs/json.md's example lines are JSON Lines of the documented shapes: every field
/// they hold is documented for their type, and every top-level field is there.
#[test]
fn the_documented_example_lines_have_the_documented_fields() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json.md");
    let text = std::fs::read_to_string(doc).expect("read docs/json.md");
    let bmap_fields = json_doc::documented_table("The `bmap` object");
    let mut seen = BTreeSet::new();
    for block in text.split("```jsonl\n").skip(1) {
        let (block, _) = block.split_once("```").expect("the block's end");
        for line in lines(block.as_bytes()) {
            let kind = line["type"].as_str().expect("a type").to_owned();
            let mut documented = json_doc::documented_table(&format!("The `{kind}` line"));
            documented.extend(bmap_fields.iter().cloned());
            let written = json_doc::fields(&line);
            assert!(written.is_subset(&documented), "{kind}: {written:?}");
            for field in documented.iter().filter(|f| !f.contains(['.', '['])) {
                let top = written.contains(field) || bmap_fields.contains(field);
                assert!(top, "the example's {kind} line has no {field}");
            }
            seen.insert(kind);
        }
    }
    let all = ["message", "progress", "range", "result", "start"];
    assert_eq!(seen, all.iter().map(|k| k.to_string()).collect());
}

/// An error the command line words itself still has its code: no bmap beside the
/// target.
#[test]
fn verify_without_a_bmap_ends_with_bmap_not_found() {
    let dir = tempdir();
    let (image, _) = test_image(dir.path());
    let out = run([
        "verify".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        image.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let all = lines(&out.stderr);
    assert_eq!(all.len(), 1, "only the result: {all:?}");
    assert_eq!(all[0]["error"]["code"], "bmap-not-found");
    assert_eq!(all[0]["destinations"][0]["ok"], false);
}

/// A copy to two files: the destinations are listed once, each one's progress reaches
/// the total, range verdicts on the image read once are `dest: null`, and the result
/// has a row per destination with every mapped byte.
#[test]
fn progress_json_lines_of_a_copy_to_two_files_count_each_destination() {
    let dir = tempdir();
    let (image, bytes) = test_image(dir.path());
    let bmap = test_bmap("2.0");
    let (one, two) = (dir.path().join("one.img"), dir.path().join("two.img"));
    let out = run([
        "copy".as_ref(),
        "--progress".as_ref(),
        "json".as_ref(),
        "--bmap".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
        one.as_os_str(),
        two.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = lines(&out.stderr);
    let facts = BmapFacts::read(&bmap);
    let mapped = mapped_bytes(&facts);
    let start = of_type(&all, "start");
    assert_eq!(start[0]["destinations"].as_array().map(Vec::len), Some(2));
    for dest in 0..2u64 {
        let last = of_type(&all, "progress")
            .into_iter()
            .rfind(|p| p["dest"] == dest)
            .expect("progress lines of each destination");
        assert_eq!(last["bytes_done"], mapped, "{last}");
    }
    let ranges = of_type(&all, "range");
    assert_eq!(ranges.len(), facts.ranges.len());
    assert!(
        ranges.iter().all(|r| r["dest"].is_null()),
        "shared verdicts"
    );
    let result = all.last().expect("lines");
    assert_eq!(result["ok"], true);
    for row in result["destinations"].as_array().expect("destinations") {
        assert_eq!(row["bytes_written"], mapped, "{row}");
        assert_eq!(row["ranges_verified"], facts.ranges.len());
        assert_eq!(row["ok"], true);
    }
    assert_eq!(read(&one), bytes);
    assert_eq!(read(&two), bytes);
}
