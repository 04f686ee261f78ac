//! `bmaptool info`: the real binary on bmaps of every format version (written by the
//! library's test fixture from the format's rules), on the reference's own bmaps in
//! `../shared/conformance` (an extra check: skipped without it unless
//! `BMAPTOOL_TEST_STRICT=1`), on a bmap our `create` made of a sparse file, on a bmap
//! served by the test HTTP server, on standard input, and on signed, tampered, corrupt
//! and self-checksum-damaged bmaps. Every expected value is computed here from the
//! image the test made or from the bmap's XML text, never from the product.
//!
//! The exit rule pinned here (see `cmd/info.rs`): the report is printed whenever the
//! bmap parses; a bad or unverifiable signature is shown with exit 0 unless a check was
//! asked for (`--keyring`, `--fingerprint`, `--bmap-sig`), then exit 1 after the report;
//! a bmap whose own checksum does not match exits 1 after the report; a bmap that
//! cannot be parsed exits 1 with one error line and no report.

mod common;
#[path = "../../bmap/tests/fixture/mod.rs"]
mod fixture;
#[path = "common/json_doc.rs"]
mod json_doc;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use common::testdata::element_text;
use common::{assert_error, bmaptool, run, stderr_lines};
use serde_json::Value;
use tempfile::TempDir;
use test_support::{HttpServer, assert_no_panic, gpg::Gpg};

/// What a bmap says, computed by the test.
#[derive(Debug)]
struct Expected {
    version: String,
    image_size: u64,
    block_size: u64,
    blocks: u64,
    mapped_blocks: u64,
    ranges: usize,
    checksum_type: Option<String>,
    bmap_checksum: &'static str,
}

/// The XML text without its comments.
fn without_comments(text: &str) -> String {
    let mut plain = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("<!--") {
        plain.push_str(&rest[..at]);
        rest = rest[at..].split_once("-->").map_or("", |(_, after)| after);
    }
    plain + rest
}

fn number(text: &str, element: &str) -> Option<u64> {
    element_text(text, element).map(|v| v.parse().expect("a number"))
}

/// The checksum type the XML declares: `ChecksumType`, or SHA-1 for the 1.x files that
/// carry `sha1` digests or `BmapFileSHA1`; `None` when it has no checksums.
fn declared_checksum_type(text: &str) -> Option<String> {
    let plain = without_comments(text);
    if let Some(kind) = element_text(&plain, "ChecksumType") {
        return Some(kind.to_lowercase());
    }
    (plain.contains("<BmapFileSHA1>") || plain.contains(" sha1")).then(|| "sha1".to_owned())
}

/// Whether the bmap's own checksum holds by the format's rule: the first occurrence
/// of the stored digest replaced by as many `0`s, the whole file hashed (SHA-1 for
/// `BmapFileSHA1`, else the `ChecksumType`), with the fixture's own hash functions.
fn self_check_status(bytes: &[u8]) -> &'static str {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let (stored, kind) = match element_text(text, "BmapFileSHA1") {
        Some(stored) => (stored, "sha1".to_owned()),
        None => match element_text(text, "BmapFileChecksum") {
            Some(stored) => (stored, declared_checksum_type(text).expect("a type")),
            None => return "absent",
        },
    };
    let zeroed = text.replacen(&stored, &"0".repeat(stored.len()), 1);
    if fixture::hash(&kind, zeroed.as_bytes()).eq_ignore_ascii_case(&stored) {
        "good"
    } else {
        "bad"
    }
}

/// What the XML text of a bmap says, read by the test.
fn expected_from_xml(bytes: &[u8]) -> Expected {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let plain = without_comments(text);
    let root = plain.find("<bmap").expect("a bmap element");
    let at = root
        + plain[root..]
            .find("version=\"")
            .expect("a version attribute")
        + 9;
    let version = plain[at..at + plain[at..].find('"').expect("its end")].to_owned();
    let block_size = number(&plain, "BlockSize").expect("BlockSize");
    let blocks = number(&plain, "BlocksCount").expect("BlocksCount");
    Expected {
        version,
        image_size: number(&plain, "ImageSize").unwrap_or(blocks * block_size),
        block_size,
        blocks,
        mapped_blocks: number(&plain, "MappedBlocksCount").expect("MappedBlocksCount"),
        ranges: plain.matches("</Range>").count(),
        checksum_type: declared_checksum_type(text),
        bmap_checksum: self_check_status(bytes),
    }
}

/// Parses `info --json`'s standard output: one JSON document.
#[track_caller]
fn json(output: &Output) -> Value {
    assert_no_panic(&String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Checks every field of an `info --json` report against `want`, and that it has
/// exactly the fields docs/json.md lists.
#[track_caller]
fn check_report(label: &str, report: &Value, want: &Expected) {
    assert_eq!(
        json_doc::fields(report),
        json_doc::documented_fields("info"),
        "{label}: the fields docs/json.md lists, and no other"
    );
    let bmap = &report["bmap"];
    let u = |value: &Value, key: &str| {
        value[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{label}: {key} is not an integer: {report}"))
    };
    assert_eq!(bmap["version"], want.version.as_str(), "{label}");
    assert_eq!(u(bmap, "image_size"), want.image_size, "{label}");
    assert_eq!(u(bmap, "block_size"), want.block_size, "{label}");
    assert_eq!(u(report, "blocks"), want.blocks, "{label}");
    assert_eq!(u(report, "mapped_blocks"), want.mapped_blocks, "{label}");
    assert_eq!(
        u(report, "mapped_size"),
        want.mapped_blocks * want.block_size,
        "{label}"
    );
    let percent = report["mapped_percent"].as_f64().expect("a number");
    let wanted = want.mapped_blocks as f64 * 100.0 / want.blocks.max(1) as f64;
    assert!(
        (percent - wanted).abs() < 1e-9,
        "{label}: {percent} vs {wanted}"
    );
    assert_eq!(u(report, "ranges_total"), want.ranges as u64, "{label}");
    match &want.checksum_type {
        Some(kind) => assert_eq!(bmap["checksum_type"], kind.as_str(), "{label}"),
        None => assert!(bmap["checksum_type"].is_null(), "{label}: {report}"),
    }
    let checksum = &bmap["bmap_checksum"];
    assert_eq!(checksum["status"], want.bmap_checksum, "{label}");
    assert_eq!(
        checksum["checksum_type"].is_null(),
        want.bmap_checksum == "absent",
        "{label}: {report}"
    );
}

#[test]
fn info_json_on_every_format_version_the_fixture_writes_matches_its_image() {
    let dir = TempDir::new().expect("tempdir");
    // 37 blocks, the last one 1000 bytes: the mapped share and the partial block show.
    let image = fixture::Image::new(7, 4096, 37, 1000);
    let mapped_blocks: u64 = image.mapped.iter().map(|(a, b)| b - a + 1).sum();
    for (label, text) in fixture::every_version(&image) {
        let bytes = text.to_bytes();
        let path = dir.path().join(format!("{}.bmap", label.replace(' ', "_")));
        fs::write(&path, &bytes).expect("write the bmap");
        let output = run(["info".as_ref(), "--json".as_ref(), path.as_os_str()]);
        assert!(output.status.success(), "{label}: {output:?}");
        let report = json(&output);
        let assumed = label.contains("without ImageSize");
        let want = Expected {
            version: label.split(' ').next().expect("a version").to_owned(),
            image_size: if assumed {
                image.blocks() * image.block_size
            } else {
                image.bytes.len() as u64
            },
            block_size: image.block_size,
            blocks: image.blocks(),
            mapped_blocks,
            ranges: image.mapped.len(),
            checksum_type: declared_checksum_type(std::str::from_utf8(&bytes).expect("UTF-8")),
            bmap_checksum: self_check_status(&bytes),
        };
        check_report(&label, &report, &want);
        assert_eq!(report["bmap"]["signature"]["status"], "unsigned", "{label}");
        assert_eq!(
            report["bmap"]["location"],
            path.to_str().expect("UTF-8"),
            "{label}"
        );
        // The one warning a version earns: ImageSize assumed.
        assert_eq!(
            report["bmap"]["warnings"].as_array().expect("a list").len(),
            usize::from(assumed),
            "{label}: {report}"
        );
    }
}

#[test]
fn info_json_on_every_conformance_bmap_matches_its_xml() {
    if !test_support::need_conformance() {
        return;
    }
    let data = common::conformance_dir();
    let mut seen = 0;
    for sub in ["golden", "reference-test-data"] {
        let mut names: Vec<_> = fs::read_dir(data.join(sub))
            .expect("read the conformance data")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file() && p.to_string_lossy().contains(".bmap"))
            .collect();
        names.sort();
        for path in names {
            let label = path.display().to_string();
            let output = run(["info".as_ref(), "--json".as_ref(), path.as_os_str()]);
            assert!(output.status.success(), "{label}: {output:?}");
            let want = expected_from_xml(&fs::read(&path).expect("read"));
            check_report(&label, &json(&output), &want);
            seen += 1;
        }
    }
    assert!(seen >= 10, "only {seen} conformance bmaps");
    // The reference's clearsigned bmap: no key at hand (the harness's empty GNUPGHOME)
    // is shown as unverifiable, exit 0; with the reference's keyring, its key expired
    // in 2024: bad, and exit 1 since a check was asked for.
    let signed = data.join("reference-test-data/signatures/test.image.bmap.v2.0.asc");
    let output = run(["info".as_ref(), "--json".as_ref(), signed.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(
        report["bmap"]["signature"]["status"], "unverifiable",
        "{report}"
    );
    let plain = fs::read(data.join("reference-test-data/test.image.bmap.v2.0")).expect("read");
    check_report("clearsigned", &report, &expected_from_xml(&plain));
    let keyring = data.join("reference-test-data/gnupg/pubring.kbx");
    let output = run([
        "info".as_ref(),
        "--json".as_ref(),
        "--keyring".as_ref(),
        keyring.as_os_str(),
        signed.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let signature = &json(&output)["bmap"]["signature"];
    assert_eq!(signature["status"], "bad", "{signature}");
    assert!(
        signature["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired on 2024-06-12")),
        "{signature}"
    );
    assert!(stderr_lines(&output)[0].contains("expired"), "{output:?}");
}

#[test]
fn info_of_a_bmap_created_from_a_sparse_file_maps_its_allocated_bytes() {
    // On ext4 with 4 KiB blocks, a file's allocated bytes are exactly its data blocks.
    let Some(dir) = common::Scratch::ext4() else {
        return;
    };
    let image = dir.path().join("sparse.img");
    let file = fs::File::create(&image).expect("create");
    file.set_len(8 << 20).expect("size");
    use std::os::unix::fs::FileExt;
    for (at, len) in [(0u64, 8192usize), (1 << 20, 4096), (3 << 20, 65536)] {
        let data = test_support::random_bytes(at, len);
        file.write_all_at(&data, at).expect("write");
    }
    file.sync_all().expect("sync");
    drop(file);
    let bmap = dir.path().join("sparse.bmap");
    let output = run([
        "create".as_ref(),
        "-o".as_ref(),
        bmap.as_os_str(),
        image.as_os_str(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&run(["info".as_ref(), "--json".as_ref(), bmap.as_os_str()]));
    let allocated = fs::metadata(&image).expect("stat").blocks() * 512;
    assert_eq!(report["mapped_size"], allocated, "{report}");
    assert_eq!(report["bmap"]["image_size"], 8 << 20);
    assert_eq!(report["ranges_total"], 3);
    assert_eq!(report["bmap"]["bmap_checksum"]["status"], "good");
    check_report(
        "created",
        &report,
        &expected_from_xml(&fs::read(&bmap).expect("read")),
    );
}

/// A format-2.0 bmap of a fixture image in `dir`; its bytes.
fn write_bmap(dir: &Path, name: &str) -> Vec<u8> {
    let image = fixture::Image::new(11, 4096, 64, 0);
    let bytes = fixture::BmapText::new("2.0", &image).to_bytes();
    fs::write(dir.join(name), &bytes).expect("write the bmap");
    bytes
}

#[test]
fn info_reads_a_bmap_from_the_test_http_server_as_from_a_file() {
    let dir = TempDir::new().expect("tempdir");
    let bytes = write_bmap(dir.path(), "disk.img.bmap");
    let Some(server) = HttpServer::start(dir.path()) else {
        return;
    };
    let url = server.url("/disk.img.bmap");
    let output = run(["info", "--json", &url]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    check_report(&url, &report, &expected_from_xml(&bytes));
    assert_eq!(report["bmap"]["location"], url.as_str());
    assert_eq!(report["bmap"]["signature"]["status"], "unsigned");
    // The text report says the same in key: value lines.
    let output = run(["info", &url]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(text.contains(&format!("bmap file:      {url}\n")), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let column = lines[0].find(&url).expect("the value");
    for line in &lines {
        let (key, _) = line.split_once(':').expect("key: value");
        assert!(
            line[column..].chars().next().is_some_and(|c| c != ' '),
            "{line}"
        );
        assert_eq!(line[key.len() + 1..column].trim(), "", "aligned: {text}");
    }
}

#[test]
fn info_reads_a_bmap_from_standard_input() {
    let dir = TempDir::new().expect("tempdir");
    let bytes = write_bmap(dir.path(), "disk.img.bmap");
    let output = bmaptool()
        .args(["info", "--json", "-"])
        .write_stdin(bytes.clone())
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    check_report("stdin", &report, &expected_from_xml(&bytes));
    assert_eq!(report["bmap"]["location"], "-");
}

#[test]
fn corrupt_bmap_is_one_error_line_naming_the_line_and_exit_1() {
    let dir = TempDir::new().expect("tempdir");
    let mut text = String::from_utf8(write_bmap(dir.path(), "x.bmap")).expect("UTF-8");
    text = text.replacen(
        "<BlockSize> 4096 </BlockSize>",
        "<BlockSize> many </BlockSize>",
        1,
    );
    let path = dir.path().join("bad.bmap");
    fs::write(&path, &text).expect("write");
    for json in [false, true] {
        let mut args = vec!["info".as_ref(), path.as_os_str()];
        if json {
            args.insert(1, "--json".as_ref());
        }
        let output = run(args);
        assert_error(&output, "bad.bmap");
        assert!(stderr_lines(&output)[0].contains("line "), "{output:?}");
    }
    assert_error(&run(["info", "/nonexistent/x.bmap"]), "/nonexistent/x.bmap");
}

#[test]
fn damaged_bmap_checksum_shows_bad_and_exits_1_after_the_report() {
    let dir = TempDir::new().expect("tempdir");
    let bytes = write_bmap(dir.path(), "x.bmap");
    // One digit of a range's digest changed: the file's own checksum no longer holds.
    let text = String::from_utf8(bytes).expect("UTF-8");
    let at = text.find("chksum=\"").expect("a range digest") + 8;
    let mut damaged = text.into_bytes();
    damaged[at] = if damaged[at] == b'0' { b'1' } else { b'0' };
    let path = dir.path().join("damaged.bmap");
    fs::write(&path, &damaged).expect("write");
    assert_eq!(self_check_status(&damaged), "bad");
    let output = run(["info".as_ref(), "--json".as_ref(), path.as_os_str()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = json(&output);
    check_report("damaged", &report, &expected_from_xml(&damaged));
    assert_eq!(report["bmap"]["bmap_checksum"]["status"], "bad");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("bmaptool: ERROR: ") && lines[0].contains("checksum does not match"),
        "{lines:?}"
    );
    let output = run(["info".as_ref(), path.as_os_str()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("bmap checksum:  bad (sha256)\n"), "{text}");
}

/// `bmaptool info ARGS...` with `GNUPGHOME` (and `HOME`) on `home`.
fn run_in(home: &Path, args: &[&std::ffi::OsStr]) -> Output {
    bmaptool()
        .env("GNUPGHOME", home)
        .env("HOME", home)
        .arg("info")
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn signed_bmap_shows_its_signer_and_a_tampered_one_shows_bad() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let uid = "Info Signer <info@example.org>";
    let fingerprint = gpg.gen_key(uid, "ed25519", "sign");
    let dir = TempDir::new().expect("tempdir");
    write_bmap(dir.path(), "d.bmap");
    let bmap = dir.path().join("d.bmap");
    gpg.detach_sign(&fingerprint, &bmap, &dir.path().join("d.bmap.asc"), true);
    let home = gpg.home.as_path();

    let output = run_in(home, &["--json".as_ref(), bmap.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    let good = json(&output);
    let signature = &good["bmap"]["signature"];
    assert_eq!(signature["status"], "good", "{signature}");
    assert_eq!(signature["signer"], uid);
    assert_eq!(signature["fingerprint"], fingerprint.as_str());
    assert_eq!(signature["inline"], false);
    assert!(
        signature["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("d.bmap.asc")),
        "{signature}"
    );
    let text = String::from_utf8(run_in(home, &[bmap.as_os_str()]).stdout).expect("UTF-8");
    assert!(
        text.contains(&format!(
            "signature:      good, by {uid} (fingerprint {fingerprint})"
        )),
        "{text}"
    );

    // The same over HTTP: the signature is discovered beside the URL.
    if let Some(server) = HttpServer::start(dir.path()) {
        let url = server.url("/d.bmap");
        let output = run_in(home, &["--json".as_ref(), url.as_ref()]);
        assert!(output.status.success(), "{output:?}");
        let signature = &json(&output)["bmap"]["signature"];
        assert_eq!(signature["status"], "good", "{signature}");
        assert_eq!(signature["fingerprint"], fingerprint.as_str());
        assert_eq!(signature["file"], format!("{url}.asc"));
    }

    // A clearsigned copy: good, inline.
    let clear = dir.path().join("c.bmap");
    gpg.clearsign(&[&fingerprint], &bmap, &clear);
    let output = run_in(home, &["--json".as_ref(), clear.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["bmap"]["signature"]["status"], "good", "{report}");
    assert_eq!(report["bmap"]["signature"]["inline"], true);
    check_report(
        "clearsigned",
        &report,
        &expected_from_xml(&fs::read(&bmap).expect("read")),
    );

    // Tampered after signing, its own checksum recomputed: only the signature tells.
    let text = fs::read_to_string(&bmap).expect("read");
    let edited = text.replacen(
        "<!-- made by the test fixture -->",
        "<!-- made by the test fixture, then edited -->",
        1,
    );
    assert_ne!(edited, text);
    fs::write(&bmap, reseal(&edited)).expect("write");
    assert_eq!(self_check_status(&fs::read(&bmap).expect("read")), "good");
    let output = run_in(home, &["--json".as_ref(), bmap.as_os_str()]);
    assert!(output.status.success(), "shown, not fatal: {output:?}");
    let report = json(&output);
    assert_eq!(report["bmap"]["signature"]["status"], "bad", "{report}");
    // The good and the bad report hold every field docs/json.md lists, and no other.
    for report in [&good, &report] {
        assert_eq!(
            json_doc::fields(report),
            json_doc::documented_fields("info")
        );
    }
    // The failed signature is named: the detached file beside the bmap.
    assert_eq!(report["bmap"]["signature"]["inline"], false);
    assert_eq!(report["bmap"]["signature"]["file"], signature["file"]);
    assert!(report["bmap"]["signature"]["signer"].is_null(), "{report}");
    assert!(
        report["bmap"]["signature"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("BAD")),
        "{report}"
    );
    // Asked to check (--fingerprint): the report, then one error line and exit 1.
    let output = run_in(
        home,
        &[
            "--json".as_ref(),
            "--fingerprint".as_ref(),
            fingerprint.as_ref(),
            bmap.as_os_str(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(json(&output)["bmap"]["signature"]["status"], "bad");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("BAD"), "{lines:?}");

    // No key at hand: unverifiable, shown, exit 0.
    let empty = TempDir::new().expect("tempdir");
    let output = run_in(empty.path(), &["--json".as_ref(), clear.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(json(&output)["bmap"]["signature"]["status"], "unverifiable");
    // --no-sig-verify: not checked, and the clearsigned text still read.
    let output = run_in(
        empty.path(),
        &[
            "--json".as_ref(),
            "--no-sig-verify".as_ref(),
            clear.as_os_str(),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(
        report["bmap"]["signature"]["status"], "not-checked",
        "{report}"
    );
    assert_eq!(report["bmap"]["signature"]["inline"], true);
    assert_eq!(report["bmap"]["bmap_checksum"]["status"], "good");
}

#[test]
fn unsigned_bmap_with_a_keyring_asked_for_exits_1_after_the_report() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    gpg.gen_key("K <k@example.org>", "ed25519", "sign");
    let dir = TempDir::new().expect("tempdir");
    write_bmap(dir.path(), "u.bmap");
    let bmap = dir.path().join("u.bmap");
    let keyring = gpg.pubring();
    let output = run([
        "info".as_ref(),
        "--json".as_ref(),
        "--keyring".as_ref(),
        keyring.as_os_str(),
        bmap.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(json(&output)["bmap"]["signature"]["status"], "unsigned");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("not signed"), "{lines:?}");
    let output = run(["info", "--no-sig-verify", "--keyring", "k", "u.bmap"]);
    assert_error(
        &output,
        "--no-sig-verify and --keyring cannot be used together",
    );
}

/// A format-2.0 bmap text with its `BmapFileChecksum` recomputed by the format's rule.
fn reseal(text: &str) -> Vec<u8> {
    let stored = element_text(text, "BmapFileChecksum").expect("a BmapFileChecksum");
    let zeroed = text.replacen(&stored, &"0".repeat(stored.len()), 1);
    let digest = common::testdata::sha256_hex(zeroed.as_bytes());
    zeroed
        .replacen(&"0".repeat(stored.len()), &digest, 1)
        .into_bytes()
}

#[test]
fn docs_json_example_of_info_holds_every_documented_field() {
    let example = json_doc::documented_example("info");
    assert_eq!(
        json_doc::fields(&example),
        json_doc::documented_fields("info")
    );
}
