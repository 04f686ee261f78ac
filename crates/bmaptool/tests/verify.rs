//! Black-box tests of `bmaptool verify`: the real binary checks real loop devices
//! (flashed by `bmaptool copy`, then changed through the device or behind its back in
//! the backing file) and files against bmaps made by `bmaptool create`; bmaps named
//! by path, discovered beside a file, served by the test HTTP server, and signed with
//! keys the real `gpg` makes. Exit status: 0 all good, 1 a bad range, 2 an error.
//!
//! Tests that need root, loop devices, `python3` or `gpg` skip when those are
//! missing, unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

#[allow(dead_code, reason = "this file uses part of the copy tests' harness")]
mod copy_support;
#[path = "common/json_doc.rs"]
mod json_doc;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use copy_support::*;
use sha2::{Digest, Sha256};
use test_support::with_bmap;

/// A sparse image of 3 MiB and 5000 bytes with data in four places (the last range
/// ends in a partial block), and its bmap made by `bmaptool create`.
struct Sample {
    image: PathBuf,
    bmap: PathBuf,
}

impl Sample {
    const SIZE: u64 = 3 * MIB + 5000;
    /// A byte in the second mapped range (blocks 256-271, bytes 1048576-1114111).
    const IN_SECOND_RANGE: u64 = MIB + 10_000;
    /// A byte in the image's partial last block (range blocks 768-769), which is
    /// read through the page cache (after dropping it), not with O_DIRECT.
    const IN_PARTIAL_LAST_BLOCK: u64 = 3 * MIB + 4500;
    /// A byte in a hole.
    const IN_A_HOLE: u64 = 2 * MIB + 100;

    fn new(dir: &Path) -> Sample {
        let (image, bmap) = sparse_image_with_bmap(
            dir,
            Sample::SIZE,
            &[
                (1, 0, 20_000),
                (2, MIB, 64 * 1024),
                (3, 2 * MIB + 4096, 4096),
                (4, 3 * MIB, 5000),
            ],
        );
        let facts = BmapFacts::read(&bmap);
        assert_eq!(
            facts.ranges,
            [(0, 4), (256, 271), (513, 513), (768, 769)],
            "the sample's ranges"
        );
        assert!(!facts.is_mapped(Sample::IN_A_HOLE));
        Sample { image, bmap }
    }

    /// A loop device of 8 MiB filled with 0xAA, flashed with the image.
    fn flashed_device(&self) -> LoopDevice {
        let device = LoopDevice::new(8 * MIB, 0xAA);
        assert_ok(&run(with_bmap(&self.bmap, &self.image, device.path())));
        device
    }
}

/// `verify [EXTRA...] --bmap BMAP TARGET`.
fn verify_args(bmap: impl AsRef<OsStr>, target: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["verify".into()];
    args.extend(extra.iter().map(OsString::from));
    args.extend(["--bmap".into(), bmap.as_ref().to_owned(), target.into()]);
    args
}

/// Writes `byte` at `offset` of `path` (a device node: through the device) and
/// syncs it.
fn poke(path: &Path, offset: u64, byte: u8) {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open to change");
    file.write_all_at(&[byte], offset).expect("write the byte");
    file.sync_all().expect("sync the change");
}

/// A check that could not be made: exit 2, one error line naming every needle,
/// nothing on stdout.
#[track_caller]
fn assert_check_error(output: &Output, needles: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "exit status:\n{text}");
    assert!(output.stdout.is_empty(), "stdout not empty on error");
    assert_no_panic(&text);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bmaptool: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{text}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "no {needle:?} in: {}",
            errors[0]
        );
    }
}

/// The bad-range lines of a check's stderr.
fn bad_lines(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|l| l.starts_with("bmaptool: ERROR: bad range"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn verify_passes_on_a_loop_device_after_a_copy() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = sample.flashed_device();
    let output = run(verify_args(&sample.bmap, device.path(), &[]));
    let text = assert_ok_text(&output);
    assert!(text.contains("4 of 4 ranges good"), "{text}");
}

/// `assert_ok`, returning stderr.
#[track_caller]
fn assert_ok_text(output: &Output) -> String {
    assert_ok(output);
    stderr(output)
}

#[test]
fn a_byte_changed_on_the_device_names_its_range_by_blocks_and_bytes_and_exits_1() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = sample.flashed_device();
    poke(device.path(), Sample::IN_SECOND_RANGE, 0x5A);
    let output = run(verify_args(&sample.bmap, device.path(), &[]));
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_no_panic(&text);
    let bad = bad_lines(&output);
    assert_eq!(bad.len(), 1, "{text}");
    assert!(
        bad[0].contains("blocks 256-271 (bytes 1048576-1114111)"),
        "{text}"
    );
    assert!(text.contains("3 of 4 ranges good, 1 bad"), "{text}");
}

#[test]
fn a_byte_changed_in_a_hole_is_not_reported() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = sample.flashed_device();
    poke(device.path(), Sample::IN_A_HOLE, 0x11);
    let output = run(verify_args(&sample.bmap, device.path(), &[]));
    let text = assert_ok_text(&output);
    assert!(text.contains("4 of 4 ranges good"), "{text}");
}

#[test]
fn reads_bypass_a_stale_page_cache_and_every_bad_range_is_reported() {
    // The device's page cache is filled by a buffered read, then the backing file is
    // changed behind the device's back: a buffered read of the device still shows the
    // old bytes, the medium (the backing file) has the new ones. verify must see the
    // medium, both where it reads with O_DIRECT (the second range) and where it reads
    // buffered after dropping the cache (the image's partial last block).
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = sample.flashed_device();
    let node = File::open(device.path()).expect("open the device");
    let mut cached = vec![0u8; Sample::SIZE as usize];
    node.read_exact_at(&mut cached, 0)
        .expect("read the device through its page cache");
    for offset in [Sample::IN_SECOND_RANGE, Sample::IN_PARTIAL_LAST_BLOCK] {
        flip_byte(device.backing(), offset);
        let mut seen = [0u8];
        node.read_exact_at(&mut seen, offset)
            .expect("buffered read");
        assert_eq!(
            seen[0], cached[offset as usize],
            "the device's page cache was not stale: the test proves nothing"
        );
    }
    let output = run(verify_args(&sample.bmap, device.path(), &[]));
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let bad = bad_lines(&output);
    assert_eq!(bad.len(), 2, "{text}");
    assert!(bad[0].contains("blocks 256-271"), "{text}");
    assert!(
        bad[1].contains("blocks 768-769 (bytes 3145728-3150727)"),
        "{text}"
    );
    assert!(text.contains("2 of 4 ranges good, 2 bad"), "{text}");
}

#[test]
fn json_report_parses_and_matches_the_bmap() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = sample.flashed_device();
    let good = run(verify_args(&sample.bmap, device.path(), &["--json"]));
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    let doc: serde_json::Value = serde_json::from_slice(&good.stdout).expect("JSON on stdout");
    let facts = BmapFacts::read(&sample.bmap);
    assert_eq!(doc["result"], "good");
    assert_eq!(doc["ranges_total"], facts.ranges.len());
    assert_eq!(doc["ranges_good"], facts.ranges.len());
    assert_eq!(doc["ranges_bad"], 0);
    assert_eq!(doc["target_kind"], "block-device");
    assert_eq!(doc["target_size"], 8 * MIB);
    let bmap = &doc["bmap"];
    assert_eq!(bmap["location"], sample.bmap.to_str().expect("UTF-8"));
    assert_eq!(bmap["image_size"], facts.image_size);
    assert_eq!(bmap["block_size"], facts.block_size);
    assert_eq!(bmap["version"], "2.0");
    assert_eq!(bmap["checksum_type"], "sha256");
    assert_eq!(bmap["bmap_checksum"]["status"], "good");
    assert_eq!(bmap["bmap_checksum"]["checksum_type"], "sha256");
    assert_eq!(bmap["signature"]["status"], "unsigned");
    assert!(bmap["signature"]["fingerprint"].is_null(), "{doc}");
    assert_eq!(bmap["warnings"], serde_json::json!([]));
    let mapped: u64 = facts
        .ranges
        .iter()
        .map(|&(a, b)| ((b + 1) * facts.block_size).min(facts.image_size) - a * facts.block_size)
        .sum();
    assert_eq!(doc["bytes_read"], mapped);
    assert_eq!(doc["bad_ranges"], serde_json::json!([]));
    // Every field docs/json.md lists, and no other (a good report has no bad range).
    let documented = json_doc::documented_fields("verify");
    let without_ranges: std::collections::BTreeSet<String> = documented
        .iter()
        .filter(|f| !f.starts_with("bad_ranges[]"))
        .cloned()
        .collect();
    assert_eq!(json_doc::fields(&doc), without_ranges);

    poke(device.path(), Sample::IN_SECOND_RANGE, 0x5A);
    let bad = run(verify_args(&sample.bmap, device.path(), &["--json"]));
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let doc: serde_json::Value = serde_json::from_slice(&bad.stdout).expect("JSON on stdout");
    assert_eq!(doc["result"], "bad");
    assert_eq!(json_doc::fields(&doc), documented);
    assert_eq!(doc["ranges_good"], 3);
    assert_eq!(doc["ranges_bad"], 1);
    let range = &doc["bad_ranges"][0];
    assert_eq!(range["first_block"], 256);
    assert_eq!(range["last_block"], 271);
    assert_eq!(range["start"], MIB);
    assert_eq!(range["end"], MIB + 16 * 4096);
    let values = BmapValues::read(&sample.bmap);
    assert_eq!(
        range["expected"].as_str(),
        values.ranges[1].1.as_deref(),
        "the bmap's digest"
    );
    let mut on_device = vec![0u8; 16 * 4096];
    File::open(device.backing())
        .expect("open the backing file")
        .read_exact_at(&mut on_device, MIB)
        .expect("read the range");
    let actual: String = Sha256::digest(&on_device)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(range["actual"].as_str(), Some(actual.as_str()));
}

#[test]
fn a_bmap_served_over_http_verifies_the_device() {
    if !need_loop_devices() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let Some(server) = test_support::HttpServer::start(dir.path()) else {
        return;
    };
    let device = sample.flashed_device();
    let url = server.url("/disk.img.bmap");
    let output = run(verify_args(&url, device.path(), &[]));
    let text = assert_ok_text(&output);
    assert!(text.contains("4 of 4 ranges good"), "{text}");
    assert!(text.contains(&url), "{text}");
    poke(device.path(), Sample::IN_SECOND_RANGE, 0x5A);
    let output = run(verify_args(&url, device.path(), &[]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(bad_lines(&output).len(), 1);
}

#[test]
fn a_signed_bmap_is_checked_and_a_bad_signature_is_refused() {
    if !need_loop_devices() {
        return;
    }
    let Some(gpg) = test_support::gpg::Gpg::new() else {
        return;
    };
    let key = gpg.gen_key("Verify Signer <verify@example.org>", "ed25519", "sign");
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let device = sample.flashed_device();
    let signature = dir.path().join("disk.img.bmap.asc");
    gpg.detach_sign(&key, &sample.bmap, &signature, true);
    let keyring = gpg.pubring();
    let with_keys = |extra: &[&str]| {
        let mut args = verify_args(&sample.bmap, device.path(), extra);
        args.splice(1..1, [OsString::from("--keyring"), keyring.clone().into()]);
        args
    };
    let output = run(with_keys(&[]));
    let text = assert_ok_text(&output);
    assert!(
        text.contains("successfully verified bmap file signature"),
        "{text}"
    );
    let json = run(with_keys(&["--json"]));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    // The signature object is `info`'s: the same fields, the same words.
    let signed = &doc["bmap"]["signature"];
    assert_eq!(signed["status"], "good", "{signed}");
    assert_eq!(signed["signer"], "Verify Signer <verify@example.org>");
    assert_eq!(signed["inline"], false);
    assert_eq!(signed["file"], signature.to_str().expect("UTF-8"));
    assert_eq!(signed["sha1"], false);
    assert!(signed["error"].is_null(), "{signed}");
    let fingerprints = gpg.fingerprints(&key);
    for field in ["fingerprint", "primary_fingerprint"] {
        assert!(
            fingerprints.iter().any(|f| signed[field] == f.as_str()),
            "{field} {} not in {fingerprints:?}",
            signed[field]
        );
    }
    assert_eq!(
        json_doc::fields(&doc),
        json_doc::documented_fields("verify")
            .into_iter()
            .filter(|f| !f.starts_with("bad_ranges[]"))
            .collect()
    );

    // A signature of other bytes beside the bmap: refused before anything is read.
    let other = dir.path().join("other");
    fs::write(&other, b"not the bmap").expect("write");
    gpg.detach_sign(&key, &other, &signature, true);
    let output = run(with_keys(&[]));
    assert_check_error(&output, &["signature"]);
    // --no-sig-verify checks the data anyway, and the report says so.
    let output = run(verify_args(
        &sample.bmap,
        device.path(),
        &["--no-sig-verify", "--json"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let skipped = &doc["bmap"]["signature"];
    assert_eq!(skipped["status"], "not-checked", "{skipped}");
    assert_eq!(skipped["inline"], false, "{skipped}");
    assert!(skipped["signer"].is_null(), "{skipped}");
    assert_eq!(doc["result"], "good");
}

#[test]
fn a_file_target_finds_its_bmap_beside_it() {
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let copy = dir.path().join("copy.img");
    assert_ok(&run(with_bmap(&sample.bmap, &sample.image, &copy)));
    fs::copy(&sample.bmap, dir.path().join("copy.img.bmap")).expect("bmap beside");
    let output = run([OsStr::new("verify"), copy.as_os_str()]);
    let text = assert_ok_text(&output);
    assert!(text.contains("discovered bmap file"), "{text}");
    assert!(text.contains("4 of 4 ranges good"), "{text}");
    // A file longer than the image is checked up to the image's size.
    OpenOptions::new()
        .append(true)
        .open(&copy)
        .expect("open")
        .write_all_at(b"trailing bytes", Sample::SIZE)
        .expect("append");
    assert_ok(&run([OsStr::new("verify"), copy.as_os_str()]));
    flip_byte(&copy, 100);
    let output = run([OsStr::new("verify"), copy.as_os_str()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(bad_lines(&output)[0].contains("blocks 0-4 (bytes 0-20479)"));
}

#[test]
fn a_target_smaller_than_the_image_is_refused_before_reading() {
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let short = dir.path().join("short.img");
    fs::copy(&sample.image, &short).expect("copy");
    File::options()
        .write(true)
        .open(&short)
        .and_then(|f| f.set_len(Sample::SIZE - 1))
        .expect("cut");
    let output = run(verify_args(&sample.bmap, &short, &[]));
    assert_check_error(&output, &["is smaller than the image its bmap describes"]);
    if !need_loop_devices() {
        return;
    }
    let device = LoopDevice::new(2 * MIB, 0);
    let output = run(verify_args(&sample.bmap, device.path(), &[]));
    assert_check_error(&output, &["2097152 bytes", "is smaller than the image"]);
}

#[test]
fn a_bmap_without_checksums_is_refused() {
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let bare = dir.path().join("bare.bmap");
    assert_ok(&run([
        OsStr::new("create"),
        OsStr::new("--no-checksum"),
        OsStr::new("-o"),
        bare.as_os_str(),
        sample.image.as_os_str(),
    ]));
    let output = run(verify_args(&bare, &sample.image, &[]));
    assert_check_error(&output, &["has no checksums", "nothing to verify"]);
    // Format 1.2 has SHA-1 checksums: the generated test image verifies against it.
    let (image, _) = test_image(dir.path());
    assert_ok(&run(verify_args(test_bmap("1.2"), &image, &[])));
}

#[test]
fn a_block_device_without_bmap_needs_the_option() {
    if !need_loop_devices() {
        return;
    }
    let device = LoopDevice::new(MIB, 0);
    let output = run([OsStr::new("verify"), device.path().as_os_str()]);
    assert_check_error(&output, &["is a block device", "--bmap"]);
}

#[test]
fn a_file_where_direct_io_is_refused_is_read_through_a_dropped_cache() {
    // ramfs has no direct I/O: opening with O_DIRECT fails with EINVAL.
    if !need_mount() {
        return;
    }
    let dir = tempdir();
    let sample = Sample::new(dir.path());
    let ramfs = Mount::new(&[OsStr::new("-t"), OsStr::new("ramfs"), OsStr::new("ramfs")]);
    let copy = ramfs.path().join("copy.img");
    assert_ok(&run(with_bmap(&sample.bmap, &sample.image, &copy)));
    let output = run(verify_args(&sample.bmap, &copy, &["--json"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(doc["target_kind"], "file");
    assert_eq!(doc["bytes_direct"], 0);
    assert_eq!(doc["bytes_buffered"], doc["bytes_read"]);
    poke(&copy, Sample::IN_SECOND_RANGE, 0x5A);
    let output = run(verify_args(&sample.bmap, &copy, &[]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(bad_lines(&output)[0].contains("blocks 256-271"));
}

#[test]
fn a_mounted_device_is_checked_with_a_warning() {
    if !need_loop_devices() || !test_support::need_tool("mkfs.ext4") {
        return;
    }
    let dir = tempdir();
    let image = dir.path().join("fs.img");
    File::create(&image)
        .and_then(|f| f.set_len(16 * MIB))
        .expect("make the image");
    succeeds(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image),
    );
    let bmap = dir.path().join("fs.img.bmap");
    assert_ok(&run([
        OsStr::new("create"),
        OsStr::new("-o"),
        bmap.as_os_str(),
        image.as_os_str(),
    ]));
    let device = LoopDevice::new(16 * MIB, 0);
    assert_ok(&run(with_bmap(&bmap, &image, device.path())));
    // Read-only, without replaying a journal: mounting writes nothing.
    let mount = Mount::new(&[
        OsStr::new("-o"),
        OsStr::new("ro,noload"),
        device.path().as_os_str(),
    ]);
    let output = run(verify_args(&bmap, device.path(), &[]));
    let text = assert_ok_text(&output);
    assert!(
        text.contains("WARNING") && text.contains("is mounted on") && text.contains("in use"),
        "{text}"
    );
    drop(mount);
}

#[test]
fn docs_json_example_of_verify_holds_every_documented_field() {
    let example = json_doc::documented_example("verify");
    assert_eq!(
        json_doc::fields(&example),
        json_doc::documented_fields("verify")
    );
    assert_eq!(example["result"], "bad", "the example shows a bad range");
}
