//! Black-box tests of `bmaptool copy` from remote images: http, https, ftp, file and ssh
//! URLs, served by real servers on 127.0.0.1 that each test starts (see
//! `remote_support`): the Python test server `tests/fixtures/httpd.py` (Range requests,
//! keep-alive, fault injection, its own count of the bytes it served, forward proxy),
//! pyftpdlib (`tests/fixtures/ftpd.py`), Debian's Squid (a real forward proxy) and
//! Debian's `sshd`.
//!
//! What is shown: copies equal the image; the bmap is discovered beside the image URL in
//! the reference's order; with Range support only the mapped bytes (plus small merged
//! gaps) cross the wire, by the server's own count; a server that ignores Range, and
//! compressed images, are streamed once; dropped connections resume with a Range request;
//! HTTP errors, refused connections, stalls and TLS failures end with one error line
//! naming the URL, never its password; proxies from the environment are used (plain
//! http in absolute form, which Squid's default rules need; https through CONNECT),
//! and bypassed by `no_proxy`; a partial answer that is not what was asked is never
//! taken for the whole image; an https download redirected to http is refused; bad
//! `BMAPTOOL_TIMEOUT`/`BMAPTOOL_RETRIES` values are refused by name; verification and
//! truncation checks hold for remote sources.
//!
//! Tests that need python3, pyftpdlib, squid, sshd (root), sshpass, openssl or zstd
//! skip when those are missing, unless `BMAPTOOL_TEST_STRICT=1` (CI), where they fail.

mod remote_support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use remote_support::*;
use tempfile::TempDir;

/// Whether the two stall tests run: each holds a test thread until the binary gives up
/// on a server that never answers (its read timeout, times its retries).
const STALL_TESTS: bool = true;
/// How long the server stalls: longer than any sane read timeout.
const STALL_SECS: u64 = 120;
/// How long the binary may take to give up on a stalled server.
const STALL_DEADLINE: Duration = Duration::from_secs(90);

/// The reference image and an HTTP server for it, and a scratch directory.
fn http_setup() -> Option<(Served, HttpServer, TempDir)> {
    let served = Served::new();
    let http = HttpServer::start(served.root())?;
    Some((served, http, scratch()))
}

/// The local path of the reference bmap, as an argument.
fn local_bmap(served: &Served) -> String {
    served.file("test.image.bmap").display().to_string()
}

/// Asserts stderr says the bmap at `url` was discovered.
#[track_caller]
fn assert_discovered(run: &Run, url: &str) {
    let want = format!("discovered bmap file '{url}'");
    assert!(
        run.stderr().contains(&want),
        "stderr does not say {want:?}:\n{}",
        run.stderr()
    );
}

/// Asserts the GETs of a stream fetched it exactly once: they start at 0, each one
/// where the previous one stopped, and together they carry `size` bytes.
#[track_caller]
fn assert_fetched_once(gets: &[&Request], size: u64) {
    let mut next = 0;
    for get in gets {
        assert_eq!(
            get.range_start(),
            next,
            "a request starts elsewhere than where the previous one stopped: {gets:?}"
        );
        next += get.bytes;
    }
    assert_eq!(next, size, "bytes served for the stream: {gets:?}");
}

/// Asserts `cuts` requests were cut after `cut` bytes, and that the request after each
/// resumed with a Range request at the byte after the last one received, or further on
/// only across bytes the copy does not need (outside `needed`, byte spans `[start,
/// end)`; `None`: every byte is needed, as in a compressed stream).
#[track_caller]
fn assert_resumed(gets: &[&Request], cut: u64, cuts: usize, needed: Option<&[(u64, u64)]>) {
    let cut_at: Vec<usize> = (0..gets.len()).filter(|&i| gets[i].bytes == cut).collect();
    assert_eq!(
        cut_at.len(),
        cuts,
        "requests cut after {cut} bytes: {gets:?}"
    );
    for i in cut_at {
        let from = gets[i].range_start() + cut;
        let next = gets
            .get(i + 1)
            .unwrap_or_else(|| panic!("nothing after the cut request {:?}", gets[i]));
        let to = next.range_start();
        assert!(
            next.range.is_some() && to >= from,
            "after a cut at byte {from}, the next request starts at {to}: {gets:?}"
        );
        let skips_needed = match needed {
            None => to != from,
            Some(spans) => to > from && spans.iter().any(|&(s, e)| s < to && e > from),
        };
        assert!(
            !skips_needed,
            "after a cut at byte {from}, the next request skips needed bytes up to {to}: \
             {gets:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// HTTP: copies and discovery

#[test]
fn http_copy_discovers_the_bmap_beside_the_image() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_discovered(&run, &http.url("/test.image.bmap"));
    let stats = http.stats();
    assert!(
        stats
            .gets("/test.image.bmap")
            .iter()
            .any(|r| r.status == 200),
        "the bmap was never fetched: {stats:?}"
    );
}

#[test]
fn http_bmap_url_given_with_bmap_option() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(
        Some(&http.url("/test.image.bmap")),
        &http.url("/test.image"),
        &dest,
    );
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert!(
        !run.stderr().contains("discovered"),
        "no discovery with --bmap:\n{}",
        run.stderr()
    );
    let paths = http.stats().paths();
    for path in &paths {
        assert!(
            !path.ends_with(".bmap") || path == "/test.image.bmap",
            "looked for the bmap at {path} although --bmap was given: {paths:?}"
        );
    }
}

#[test]
fn http_image_with_local_bmap() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(Some(&local_bmap(&served)), &http.url("/test.image"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let paths = http.stats().paths();
    assert_eq!(paths, ["/test.image"], "only the image is fetched");
}

#[test]
fn http_discovery_tries_the_compressed_name_first() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image.gz"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_discovered(&run, &http.url("/test.image.bmap"));
    let stats = http.stats();
    let first = stats.first_index("/test.image.gz.bmap");
    let second = stats.first_index("/test.image.bmap");
    assert!(
        first.is_some() && second.is_some() && first < second,
        "candidates not tried in order test.image.gz.bmap, test.image.bmap: {:?}",
        stats.paths()
    );
    assert!(
        stats
            .for_path("/test.image.gz.bmap")
            .iter()
            .all(|r| r.status == 404),
        "the first candidate does not exist"
    );
}

#[test]
fn http_discovery_strips_one_extension_at_a_time() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    served.copy("test.image.gz", "disk.img.gz");
    served.copy("test.image.bmap", "disk.bmap");
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/disk.img.gz"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_discovered(&run, &http.url("/disk.bmap"));
    let stats = http.stats();
    let order: Vec<Option<usize>> = ["/disk.img.gz.bmap", "/disk.img.bmap", "/disk.bmap"]
        .iter()
        .map(|p| stats.first_index(p))
        .collect();
    assert!(
        order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
        "candidates not tried in the reference order: {:?}",
        stats.paths()
    );
}

#[test]
fn http_discovery_keeps_the_query_string() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image.gz?token=abc&x=1"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_discovered(&run, &http.url("/test.image.bmap?token=abc&x=1"));
    let stats = http.stats();
    assert!(
        stats
            .for_path("/test.image.bmap")
            .iter()
            .any(|r| r.target == "/test.image.bmap?token=abc&x=1"),
        "the bmap was not asked for with the query: {:?}",
        stats.for_path("/test.image.bmap")
    );
}

#[test]
fn http_missing_bmap_is_an_error_only_when_nothing_is_found() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    served.copy("test.image", "alone.img");
    let dest = tmp.path().join("dest.img");
    // Without --nobmap: no candidate exists, the usual error.
    let run = copy(None, &http.url("/alone.img"), &dest);
    assert_fails(&run, &["bmap"]);
    // With --nobmap the whole image is copied.
    let mut cmd = bmaptool();
    cmd.args(["copy", "--nobmap", &http.url("/alone.img")])
        .arg(&dest);
    let run = remote_support::run(&mut cmd);
    assert_ok(&run);
    assert_same(&dest, &served.image);
}

// ---------------------------------------------------------------------------------
// HTTP: what crosses the wire

#[test]
fn http_range_requests_fetch_only_the_mapped_blocks() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let stats = http.stats();
    let gets = stats.gets("/test.image");
    assert!(!gets.is_empty(), "the image was never fetched");
    assert!(
        gets.iter().all(|r| r.status == 206),
        "every request for the raw image should be a Range request: {gets:?}"
    );
    assert!(
        gets.len() <= TEST_IMAGE_RANGES,
        "{} requests for {TEST_IMAGE_RANGES} ranges",
        gets.len()
    );
    let bytes = stats.bytes("/test.image");
    assert!(
        (TEST_IMAGE_MAPPED..TEST_IMAGE_SIZE).contains(&bytes),
        "served {bytes} bytes; mapped {TEST_IMAGE_MAPPED}, image {TEST_IMAGE_SIZE}"
    );
}

#[test]
fn http_range_requests_skip_large_holes_on_one_connection() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let (image, bmap) = served.add_sparse("sparse.img");
    let mapped = bmap.mapped_bytes();
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/sparse.img"), &dest);
    assert_ok(&run);
    assert_same(&dest, &image);
    let stats = http.stats();
    let gets = stats.gets("/sparse.img");
    assert!(
        gets.iter().all(|r| r.status == 206),
        "every request for the raw image should be a Range request: {gets:?}"
    );
    let bytes = stats.bytes("/sparse.img");
    assert!(
        bytes >= mapped && bytes < mapped + MIB,
        "served {bytes} bytes of a {} byte image with {mapped} mapped bytes and \
         holes of several MiB: {gets:?}",
        image.len()
    );
    // Two extents 64 KiB apart may share a request; the others are MiBs apart.
    assert!(
        (3..=4).contains(&gets.len()),
        "{} requests for 4 extents (3 or 4 expected): {gets:?}",
        gets.len()
    );
    let connections: HashSet<u64> = gets.iter().map(|r| r.conn).collect();
    assert!(
        connections.len() < gets.len(),
        "each Range request opened its own connection (no keep-alive): {gets:?}"
    );
}

#[test]
fn http_compressed_image_is_streamed_once() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let Some(size) = served.add_zst("test.image") else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image.zst"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_discovered(&run, &http.url("/test.image.bmap"));
    let stats = http.stats();
    assert_fetched_once(&stats.gets("/test.image.zst"), size);
}

#[test]
fn http_server_ignoring_range_is_streamed_whole() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    http.set_rule("/test.image", r#"{"ignore_range": true}"#);
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let stats = http.stats();
    let gets = stats.gets("/test.image");
    assert_eq!(
        gets.len(),
        1,
        "a 200 answer is streamed, not asked for again per range: {gets:?}"
    );
    assert_eq!(gets[0].status, 200);
}

// ---------------------------------------------------------------------------------
// HTTP: faults

#[test]
fn http_dropped_connection_resumes_with_a_range_request() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    const CUT: u64 = 100_000;
    http.set_rule(
        "/test.image",
        &format!(r#"{{"cut_after": {CUT}, "cut_times": 2}}"#),
    );
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let needed = mapped_spans(&served.bmap());
    assert_resumed(&http.stats().gets("/test.image"), CUT, 2, Some(&needed));
}

#[test]
fn http_dropped_compressed_stream_resumes_with_a_range_request() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let (image, _) = served.add_sparse("sparse.img");
    let Some(size) = served.add_zst("sparse.img") else {
        return;
    };
    const CUT: u64 = 200_000;
    assert!(size > 3 * CUT, "sparse.img.zst is only {size} bytes");
    http.set_rule(
        "/sparse.img.zst",
        &format!(r#"{{"cut_after": {CUT}, "cut_times": 2}}"#),
    );
    let dest = tmp.path().join("dest.img");
    let bmap = served.file("sparse.img.bmap").display().to_string();
    let run = copy(Some(&bmap), &http.url("/sparse.img.zst"), &dest);
    assert_ok(&run);
    assert_same(&dest, &image);
    let stats = http.stats();
    let gets = stats.gets("/sparse.img.zst");
    assert_resumed(&gets, CUT, 2, None);
    // Nothing fetched twice: the uncut requests cover the stream exactly once.
    let total: u64 = gets.iter().map(|r| r.bytes).sum();
    assert_eq!(total, size, "bytes served for the stream: {gets:?}");
}

#[test]
fn http_connection_dropped_every_time_fails_clearly() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    http.set_rule(
        "/test.image",
        r#"{"cut_after": 65536, "cut_after_repeat": 0}"#,
    );
    let dest = tmp.path().join("dest.img");
    let url = http.url("/test.image");
    let run = copy(Some(&local_bmap(&served)), &url, &dest);
    assert_fails(&run, &[&url]);
    assert_no_dest(&dest);
    let gets = http.stats().gets("/test.image").len();
    assert!(
        (2..=20).contains(&gets),
        "{gets} requests: a few retries expected, then giving up"
    );
}

/// The image answers `code`: exit 1, one line naming the URL and the status.
fn http_status_fails(code: u16, words: &str) {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    http.set_rule("/test.image", &format!(r#"{{"status": {code}}}"#));
    let dest = tmp.path().join("dest.img");
    let url = http.url("/test.image");
    let run = copy(Some(&local_bmap(&served)), &url, &dest);
    let line = assert_fails(&run, &[&url]);
    assert_mentions_any(&line, &[&code.to_string(), words]);
    assert_no_dest(&dest);
}

#[test]
fn http_404_fails_naming_the_url() {
    http_status_fails(404, "not found");
}

#[test]
fn http_403_fails_naming_the_url() {
    http_status_fails(403, "forbidden");
}

#[test]
fn http_500_fails_naming_the_url() {
    http_status_fails(500, "internal server error");
}

#[test]
fn http_missing_image_fails_naming_the_url() {
    let Some((_served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let url = http.url("/missing.img");
    let line = assert_fails(&copy(None, &url, &dest), &[&url]);
    assert_mentions_any(&line, &["404", "not found"]);
    assert_no_dest(&dest);
}

#[test]
fn http_missing_bmap_url_fails_naming_it() {
    let Some((_served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let bmap = http.url("/nope.bmap");
    let line = assert_fails(
        &copy(Some(&bmap), &http.url("/test.image"), &dest),
        &[&bmap],
    );
    assert_mentions_any(&line, &["404", "not found"]);
    assert_no_dest(&dest);
}

#[test]
fn http_refused_connection_fails_naming_the_url() {
    let Some((served, _http, tmp)) = http_setup() else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/test.image", free_port());
    let dest = tmp.path().join("dest.img");
    let run = copy(Some(&local_bmap(&served)), &url, &dest);
    assert_fails(&run, &[&url]);
    assert_no_dest(&dest);
}

#[test]
fn http_credentials_are_sent_but_never_printed() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    const SECRET: &str = "Secr3tPw";
    let rule = format!(r#"{{"auth": "user:{SECRET}"}}"#);
    http.set_rule("/test.image", &rule);
    http.set_rule("/test.image.bmap", &rule);
    let dest = tmp.path().join("dest.img");
    let run = copy(
        None,
        &http.url_with_auth("user", SECRET, "/test.image"),
        &dest,
    );
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_no_secret(&run, SECRET);
    let port = http.port();
    assert!(
        run.stderr().contains("discovered bmap file")
            && run
                .stderr()
                .contains(&format!("127.0.0.1:{port}/test.image.bmap")),
        "the discovered bmap URL is named (without the password):\n{}",
        run.stderr()
    );
    let stats = http.stats();
    assert!(
        stats
            .gets("/test.image")
            .iter()
            .any(|r| r.auth.is_some() && (r.status == 200 || r.status == 206)),
        "the image was not fetched with the credentials: {stats:?}"
    );
}

#[test]
fn http_credentials_never_appear_in_errors() {
    let Some((_served, http, tmp)) = http_setup() else {
        return;
    };
    const SECRET: &str = "Secr3tPw";
    let dest = tmp.path().join("dest.img");
    let run = copy(
        None,
        &http.url_with_auth("user", SECRET, "/missing.img"),
        &dest,
    );
    assert_fails(&run, &[&format!("127.0.0.1:{}/missing.img", http.port())]);
    assert_no_secret(&run, SECRET);
}

#[test]
fn http_401_fails_naming_the_url() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    http.set_rule("/test.image", r#"{"auth": "user:pw"}"#);
    let dest = tmp.path().join("dest.img");
    let url = http.url("/test.image");
    let line = assert_fails(&copy(Some(&local_bmap(&served)), &url, &dest), &[&url]);
    assert_mentions_any(&line, &["401", "unauthorized", "authentication"]);
    assert_no_dest(&dest);
}

#[test]
fn http_corrupt_byte_fails_verification_and_removes_the_destination() {
    let Some((_served, http, tmp)) = http_setup() else {
        return;
    };
    // Block 3 is in the mapped range 3-5.
    http.set_rule(
        "/test.image",
        &format!(r#"{{"corrupt_offset": {}}}"#, 3 * BLOCK + 10),
    );
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/test.image"), &dest);
    assert_fails(&run, &["checksum mismatch", "3-5"]);
    assert_no_dest(&dest);
}

#[test]
fn http_truncated_image_fails_and_removes_the_destination() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    served.put("short.image", &served.image[..800_000]);
    served.copy("test.image.bmap", "short.image.bmap");
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &http.url("/short.image"), &dest);
    assert_fails(&run, &[]);
    assert_no_dest(&dest);
}

/// A server that stops answering: the binary gives up within [`STALL_DEADLINE`].
fn http_stall_fails(rule: &str) {
    if !STALL_TESTS {
        eprintln!("SKIPPED: stall tests are switched off (STALL_TESTS)");
        return;
    }
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    http.set_rule("/test.image", rule);
    let dest = tmp.path().join("dest.img");
    let url = http.url("/test.image");
    let mut cmd = copy_cmd(Some(&local_bmap(&served)), &url, &dest);
    let run = run_within(&mut cmd, STALL_DEADLINE);
    assert_fails(&run, &[&url]);
    assert_no_dest(&dest);
    eprintln!("gave up on a stalled server after {:?}", run.elapsed);
}

#[test]
fn http_stall_before_the_answer_fails_in_bounded_time() {
    http_stall_fails(&format!(r#"{{"stall": {STALL_SECS}}}"#));
}

#[test]
fn http_stall_in_the_body_is_resumed_after_the_read_timeout() {
    if !STALL_TESTS {
        eprintln!("SKIPPED: stall tests are switched off (STALL_TESTS)");
        return;
    }
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    const AFTER: u64 = 100_000;
    http.set_rule(
        "/test.image",
        &format!(r#"{{"stall": {STALL_SECS}, "stall_after": {AFTER}, "stall_times": 1}}"#),
    );
    let dest = tmp.path().join("dest.img");
    let mut cmd = copy_cmd(Some(&local_bmap(&served)), &http.url("/test.image"), &dest);
    let run = run_within(&mut cmd, STALL_DEADLINE);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let needed = mapped_spans(&served.bmap());
    assert_resumed(&http.stats().gets("/test.image"), AFTER, 1, Some(&needed));
    eprintln!("resumed after a stall in {:?}", run.elapsed);
}

// ---------------------------------------------------------------------------------
// HTTP: partial answers that are not what was asked

/// The image's partial answers are of the kind `content_range` (see httpd.py): the
/// probe's answer is no base for random access, so the whole image is streamed,
/// with `--nobmap` and with the discovered bmap; never taken for a 512-byte image.
fn untrusted_partial_answers_stream_the_whole_image(content_range: &str) {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    http.set_rule(
        "/test.image",
        &format!(r#"{{"content_range": "{content_range}"}}"#),
    );
    let url = http.url("/test.image");
    for nobmap in [true, false] {
        let dest = tmp.path().join(format!("dest-{nobmap}.img"));
        let mut cmd = bmaptool();
        cmd.arg("copy");
        if nobmap {
            cmd.arg("--nobmap");
        }
        cmd.arg(&url).arg(&dest);
        let run = remote_support::run(&mut cmd);
        assert_ok(&run);
        assert_same(&dest, &served.image);
    }
    let stats = http.stats();
    let gets = stats.gets("/test.image");
    let whole: Vec<_> = gets.iter().filter(|r| r.range.is_none()).collect();
    assert!(
        whole.len() == 2
            && whole
                .iter()
                .all(|r| r.status == 200 && r.bytes == TEST_IMAGE_SIZE),
        "each copy should ask for the whole image once: {gets:?}"
    );
}

#[test]
fn range_answer_of_unknown_total_size_streams_the_whole_image() {
    untrusted_partial_answers_stream_the_whole_image("unknown");
}

#[test]
fn range_answer_without_content_range_streams_the_whole_image() {
    untrusted_partial_answers_stream_the_whole_image("none");
}

#[test]
fn range_answer_with_another_span_than_asked_streams_the_whole_image() {
    untrusted_partial_answers_stream_the_whole_image("whole");
}

// ---------------------------------------------------------------------------------
// Redirects

/// An http server and an https server (trusted through `SSL_CERT_FILE`) for the same
/// files; the https server starts with `rules` (`{path}` in a rule is replaced by the
/// http server's URL of that path). `None`: skipped.
fn redirect_setup(rules: &[(&str, &str)]) -> Option<(Served, HttpServer, HttpServer, TlsFiles)> {
    let served = Served::new();
    let http = HttpServer::start(served.root())?;
    let tls = TlsFiles::generate()?;
    let rules: Vec<String> = rules
        .iter()
        .map(|(path, target)| {
            let target = target.replace("{http}", &http.url(""));
            format!(
                r#"{}: {{"redirect": {}}}"#,
                json_string(path),
                json_string(&target)
            )
        })
        .collect();
    let https = HttpServer::start_tls_with_rules(
        served.root(),
        &tls,
        &format!("{{{}}}", rules.join(", ")),
    )?;
    Some((served, http, https, tls))
}

/// `bmaptool copy ARGS...` trusting the test CA.
fn copy_trusting(tls: &TlsFiles, args: &[&str], dest: &Path) -> Run {
    let mut cmd = bmaptool();
    cmd.arg("copy")
        .args(args)
        .arg(dest)
        .env("SSL_CERT_FILE", &tls.ca)
        .env_remove("SSL_CERT_DIR");
    remote_support::run(&mut cmd)
}

/// Asserts the run refused to follow `from` to `to`, wrote nothing, and that the http
/// server was never asked for `path`.
#[track_caller]
fn assert_downgrade_refused(run: &Run, from: &str, to: &str, http: &HttpServer, dest: &Path) {
    let line = assert_fails(run, &[from, to]);
    assert_mentions_any(&line, &["refusing"]);
    eprintln!("refused as it should be: {line}");
    assert_no_dest(dest);
    let path = to
        .rsplit_once(&format!(":{}", http.port()))
        .map_or(to, |(_, p)| p);
    let asked = http.stats().for_path(path).len();
    assert_eq!(asked, 0, "the http server was asked for {path} after all");
}

#[test]
fn https_image_redirected_to_http_is_refused() {
    let Some((served, http, https, tls)) = redirect_setup(&[("/test.image", "{http}/test.image")])
    else {
        return;
    };
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let from = https.url("/test.image");
    let run = copy_trusting(&tls, &["--bmap", &local_bmap(&served), &from], &dest);
    assert_downgrade_refused(&run, &from, &http.url("/test.image"), &http, &dest);
}

#[test]
fn https_bmap_redirected_to_http_is_refused_given_or_discovered() {
    let Some((served, http, https, tls)) =
        redirect_setup(&[("/test.image.bmap", "{http}/test.image.bmap")])
    else {
        return;
    };
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let from = https.url("/test.image.bmap");
    let to = http.url("/test.image.bmap");
    let image = served.file("test.image").display().to_string();
    let run = copy_trusting(&tls, &["--bmap", &from, &image], &dest);
    assert_downgrade_refused(&run, &from, &to, &http, &dest);
    // Discovered beside an https image: the same refusal, not "no bmap here".
    let run = copy_trusting(&tls, &[&https.url("/test.image")], &dest);
    assert_downgrade_refused(&run, &from, &to, &http, &dest);
}

#[test]
fn https_signature_redirected_to_http_is_refused_given_or_discovered() {
    let Some((served, http, https, tls)) =
        redirect_setup(&[("/test.image.bmap.asc", "{http}/test.image.bmap.asc")])
    else {
        return;
    };
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let from = https.url("/test.image.bmap.asc");
    let to = http.url("/test.image.bmap.asc");
    let image = served.file("test.image").display().to_string();
    let args = ["--bmap", &local_bmap(&served), "--bmap-sig", &from, &image];
    let run = copy_trusting(&tls, &args, &dest);
    assert_downgrade_refused(&run, &from, &to, &http, &dest);
    // Looked for beside an https bmap.
    let bmap = https.url("/test.image.bmap");
    let run = copy_trusting(&tls, &["--bmap", &bmap, &image], &dest);
    assert_downgrade_refused(&run, &from, &to, &http, &dest);
}

#[test]
fn https_redirect_to_https_is_followed() {
    let Some((served, _http, https, tls)) = redirect_setup(&[]) else {
        return;
    };
    let tmp = scratch();
    // Rules come with a TLS server's start: a second server redirects to the first.
    let second = HttpServer::start_tls_with_rules(
        served.root(),
        &tls,
        &format!(
            r#"{{"/old.image": {{"redirect": {}, "redirect_status": 301}}}}"#,
            json_string(&https.url("/test.image"))
        ),
    );
    let Some(second) = second else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy_trusting(
        &tls,
        &["--bmap", &local_bmap(&served), &second.url("/old.image")],
        &dest,
    );
    assert_ok(&run);
    assert_same(&dest, &served.image);
}

// ---------------------------------------------------------------------------------
// BMAPTOOL_TIMEOUT and BMAPTOOL_RETRIES

/// `bmaptool copy --bmap BMAP URL DEST` with `var=value`.
fn copy_with_env(served: &Served, url: &str, dest: &Path, env: &[(&str, &str)]) -> Run {
    let mut cmd = copy_cmd(Some(&local_bmap(served)), url, dest);
    for (var, value) in env {
        cmd.env(var, value);
    }
    remote_support::run(&mut cmd)
}

/// Each of `values` of `var` is refused before anything is read or written, by one
/// line naming the variable, the value and what it takes.
fn env_values_refused(var: &str, values: &[&str]) {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    for value in values {
        let run = copy_with_env(&served, &http.url("/test.image"), &dest, &[(var, value)]);
        let line = assert_fails(&run, &[var, value, "whole number", "from"]);
        assert_no_dest(&dest);
        assert!(
            http.stats().requests.is_empty(),
            "{var}={value}: the image was read before the value was refused ({line})"
        );
    }
}

#[test]
fn bmaptool_timeout_that_is_not_a_number_is_refused_naming_it() {
    env_values_refused("BMAPTOOL_TIMEOUT", &["abc", "30s", "1.5", "-1", "0x10"]);
}

#[test]
fn bmaptool_timeout_out_of_range_is_refused_without_a_panic() {
    // 18446744073709551615 s overflowed when added to the connect timeout (a panic).
    env_values_refused(
        "BMAPTOOL_TIMEOUT",
        &[
            "18446744073709551615",
            "99999999999999999999999",
            "0",
            "86401",
        ],
    );
}

#[test]
fn bmaptool_retries_that_is_not_a_number_or_too_large_is_refused_naming_it() {
    env_values_refused(
        "BMAPTOOL_RETRIES",
        &["many", "-1", "101", "4294967296", "18446744073709551616"],
    );
}

#[test]
fn bmaptool_timeout_and_retries_at_their_largest_copy_over_a_dropping_server() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    http.set_rule("/test.image", r#"{"cut_after": 100000, "cut_times": 1}"#);
    let dest = tmp.path().join("dest.img");
    let env = [("BMAPTOOL_TIMEOUT", "86400"), ("BMAPTOOL_RETRIES", " 100 ")];
    let run = copy_with_env(&served, &http.url("/test.image"), &dest, &env);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let needed = mapped_spans(&served.bmap());
    assert_resumed(&http.stats().gets("/test.image"), 100_000, 1, Some(&needed));
}

// ---------------------------------------------------------------------------------
// HTTPS

#[test]
fn https_with_a_trusted_certificate_copies() {
    let served = Served::new();
    let Some(tls) = TlsFiles::generate() else {
        return;
    };
    let Some(https) = HttpServer::start_tls(served.root(), &tls) else {
        return;
    };
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let mut cmd = copy_cmd(None, &https.url("/test.image"), &dest);
    cmd.env("SSL_CERT_FILE", &tls.ca).env_remove("SSL_CERT_DIR");
    let run = remote_support::run(&mut cmd);
    assert_eq!(
        run.output.status.code(),
        Some(0),
        "https copy failed with SSL_CERT_FILE naming the test CA (the usual way to \
         extend the system's CA store, honoured by rustls-native-certs); stderr:\n{}",
        run.stderr()
    );
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_discovered(&run, &https.url("/test.image.bmap"));
}

#[test]
fn https_with_an_untrusted_certificate_fails_naming_the_url() {
    let served = Served::new();
    let Some(tls) = TlsFiles::generate() else {
        return;
    };
    let Some(https) = HttpServer::start_tls(served.root(), &tls) else {
        return;
    };
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let url = https.url("/test.image");
    let mut cmd = copy_cmd(Some(&local_bmap(&served)), &url, &dest);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    let line = assert_fails(&remote_support::run(&mut cmd), &[&url]);
    assert_mentions_any(&line, &["certificate", "tls", "ssl", "issuer"]);
    assert_no_dest(&dest);
}

#[test]
fn https_to_a_plain_http_port_fails_naming_the_url() {
    let Some((served, http, tmp)) = http_setup() else {
        return;
    };
    let url = format!("https://127.0.0.1:{}/test.image", http.port());
    let dest = tmp.path().join("dest.img");
    assert_fails(&copy(Some(&local_bmap(&served)), &url, &dest), &[&url]);
    assert_no_dest(&dest);
}

// ---------------------------------------------------------------------------------
// Proxies

/// Copies `/test.image` from a fresh origin with `env` set (`{proxy}` in a value is the
/// proxy's URL), and returns what the origin and the proxy saw, and the origin's port.
/// `None`: skipped.
fn copy_with_proxy_env(env: &[(&str, &str)]) -> Option<(Stats, Stats, u16)> {
    let (served, origin, tmp) = http_setup()?;
    let proxy = HttpServer::start_proxy()?;
    let dest = tmp.path().join("dest.img");
    let mut cmd = copy_cmd(None, &origin.url("/test.image"), &dest);
    for (k, v) in env {
        cmd.env(k, v.replace("{proxy}", &proxy.proxy_url()));
    }
    let run = remote_support::run(&mut cmd);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    Some((origin.stats(), proxy.stats(), origin.port()))
}

#[test]
fn http_proxy_is_used() {
    let Some((origin, proxy, port)) = copy_with_proxy_env(&[("http_proxy", "{proxy}")]) else {
        return;
    };
    assert!(
        proxy.proxied.iter().any(|p| p.reaches(port)),
        "the image did not go through the proxy: {:?}",
        proxy.proxied
    );
    assert!(
        !origin.gets("/test.image").is_empty(),
        "the origin did not see the forwarded requests"
    );
}

#[test]
fn http_urls_go_to_the_proxy_as_absolute_uris() {
    // For http:// URLs clients send `GET http://host/path` to the proxy (curl, wget,
    // Python); CONNECT is for https. Squid's default configuration refuses CONNECT to
    // ports other than 443 ("http_access deny CONNECT !SSL_ports"), so a client that
    // tunnels plain http cannot use the most common proxy.
    let Some((_, proxy, port)) = copy_with_proxy_env(&[("http_proxy", "{proxy}")]) else {
        return;
    };
    let to_origin: Vec<&Proxied> = proxy.proxied.iter().filter(|p| p.reaches(port)).collect();
    assert!(!to_origin.is_empty(), "the proxy was not used");
    assert!(
        to_origin.iter().all(|p| p.method != "CONNECT"),
        "http:// requests were tunnelled with CONNECT instead of sent as absolute URIs: \
         {to_origin:?}"
    );
    assert!(
        to_origin
            .iter()
            .any(|p| p.url == format!("http://127.0.0.1:{port}/test.image.bmap")),
        "bmap discovery did not go through the proxy: {to_origin:?}"
    );
}

#[test]
fn squid_forwards_plain_http_urls_sent_as_absolute_uris() {
    // Squid with Debian's default rules refuses CONNECT to any port but 443: the copy
    // works only if the requests come as absolute URIs, and its access log shows them.
    let Some((served, origin, tmp)) = http_setup() else {
        return;
    };
    let Some(squid) = Squid::start(&[]) else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let mut cmd = copy_cmd(None, &origin.url("/test.image"), &dest);
    cmd.env("http_proxy", squid.proxy_url());
    let run = remote_support::run(&mut cmd);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let port = origin.port();
    squid.wait_for_line(&[&format!(" GET http://127.0.0.1:{port}/test.image.bmap ")]);
    let line = squid.wait_for_line(&[&format!(" GET http://127.0.0.1:{port}/test.image ")]);
    assert!(
        line.contains("/206 "),
        "the image's Range requests did not pass through as such: {line}"
    );
    let log = squid.access_log();
    assert!(
        !log.contains("CONNECT"),
        "plain-http requests were tunnelled:\n{log}"
    );
    let stats = origin.stats();
    let gets = stats.gets("/test.image");
    assert!(
        !gets.is_empty() && gets.iter().all(|r| r.status == 206),
        "the origin did not get the proxied Range requests: {gets:?}"
    );
}

#[test]
fn squid_tunnels_https_urls_with_connect() {
    let served = Served::new();
    let Some(tls) = TlsFiles::generate() else {
        return;
    };
    let Some(https) = HttpServer::start_tls(served.root(), &tls) else {
        return;
    };
    // As an administrator would allow it: CONNECT to the server's port.
    let Some(squid) = Squid::start(&[https.port()]) else {
        return;
    };
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let mut cmd = copy_cmd(None, &https.url("/test.image"), &dest);
    cmd.env("https_proxy", squid.proxy_url())
        .env("SSL_CERT_FILE", &tls.ca)
        .env_remove("SSL_CERT_DIR");
    let run = remote_support::run(&mut cmd);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    let line = squid.wait_for_line(&[&format!(" CONNECT 127.0.0.1:{} ", https.port())]);
    assert!(line.contains("/200 "), "the tunnel was not opened: {line}");
}

#[test]
fn no_proxy_bypasses_the_proxy() {
    let Some((origin, proxy, _)) =
        copy_with_proxy_env(&[("http_proxy", "{proxy}"), ("no_proxy", "127.0.0.1")])
    else {
        return;
    };
    assert!(
        proxy.proxied.is_empty(),
        "no_proxy=127.0.0.1 but the proxy was used: {:?}",
        proxy.proxied
    );
    assert!(!origin.gets("/test.image").is_empty());
}

#[test]
fn upper_case_no_proxy_bypasses_the_proxy() {
    let Some((_, proxy, _)) = copy_with_proxy_env(&[
        ("http_proxy", "{proxy}"),
        ("NO_PROXY", "localhost,127.0.0.1"),
    ]) else {
        return;
    };
    assert!(
        proxy.proxied.is_empty(),
        "NO_PROXY lists 127.0.0.1 but the proxy was used: {:?}",
        proxy.proxied
    );
}

#[test]
fn no_proxy_for_other_hosts_still_uses_the_proxy() {
    let Some((_, proxy, port)) = copy_with_proxy_env(&[
        ("http_proxy", "{proxy}"),
        ("no_proxy", "example.invalid,.other.invalid"),
    ]) else {
        return;
    };
    assert!(
        proxy.proxied.iter().any(|p| p.reaches(port)),
        "no_proxy does not match 127.0.0.1, yet the proxy was not used: {:?}",
        proxy.proxied
    );
}

#[test]
fn https_proxy_is_not_used_for_http_urls() {
    let Some((_, proxy, _)) = copy_with_proxy_env(&[("https_proxy", "{proxy}")]) else {
        return;
    };
    assert!(
        proxy.proxied.is_empty(),
        "https_proxy was used for an http:// URL: {:?}",
        proxy.proxied
    );
}

// ---------------------------------------------------------------------------------
// FTP

fn ftp_setup() -> Option<(Served, FtpServer, TempDir)> {
    let served = Served::new();
    let ftp = FtpServer::start(served.root())?;
    Some((served, ftp, scratch()))
}

#[test]
fn ftp_with_user_and_password_copies_and_discovers_the_bmap() {
    let Some((served, ftp, tmp)) = ftp_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &ftp.url("/test.image"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_no_secret(&run, ftp.password);
    assert!(
        run.stderr().contains("discovered bmap file")
            && run
                .stderr()
                .contains(&format!("127.0.0.1:{}/test.image.bmap", ftp.port())),
        "the discovered bmap is named:\n{}",
        run.stderr()
    );
}

#[test]
fn ftp_compressed_image_discovers_the_bmap_of_the_raw_name() {
    let Some((served, ftp, tmp)) = ftp_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &ftp.url("/test.image.gz"), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_no_secret(&run, ftp.password);
    assert!(
        run.stderr()
            .contains(&format!("127.0.0.1:{}/test.image.bmap'", ftp.port())),
        "test.image.bmap is the one discovered:\n{}",
        run.stderr()
    );
}

#[test]
fn ftp_missing_file_fails_naming_the_url_without_password() {
    let Some((served, ftp, tmp)) = ftp_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let run = copy(Some(&local_bmap(&served)), &ftp.url("/missing.img"), &dest);
    assert_fails(&run, &[&format!("127.0.0.1:{}/missing.img", ftp.port())]);
    assert_no_secret(&run, ftp.password);
    assert_no_dest(&dest);
}

#[test]
fn ftp_wrong_password_fails_without_printing_it() {
    let Some((served, ftp, tmp)) = ftp_setup() else {
        return;
    };
    let dest = tmp.path().join("dest.img");
    let url = format!(
        "ftp://{}:Wr0ngPass@127.0.0.1:{}/test.image",
        ftp.user,
        ftp.port()
    );
    let run = copy(Some(&local_bmap(&served)), &url, &dest);
    assert_fails(&run, &[&format!("127.0.0.1:{}/test.image", ftp.port())]);
    assert_no_secret(&run, "Wr0ngPass");
    assert_no_secret(&run, ftp.password);
    assert_no_dest(&dest);
}

// ---------------------------------------------------------------------------------
// file://

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[test]
fn file_url_copies_and_discovers_the_bmap() {
    let served = Served::new();
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let run = copy(None, &file_url(&served.file("test.image")), &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert!(
        run.stderr().contains("discovered bmap file") && run.stderr().contains("test.image.bmap'"),
        "the discovered bmap is named:\n{}",
        run.stderr()
    );
}

#[test]
fn file_url_compressed_image_copies() {
    let served = Served::new();
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let run = copy(
        Some(&file_url(&served.file("test.image.bmap"))),
        &file_url(&served.file("test.image.gz")),
        &dest,
    );
    assert_ok(&run);
    assert_same(&dest, &served.image);
}

#[test]
fn file_url_missing_fails_naming_it() {
    let served = Served::new();
    let tmp = scratch();
    let dest = tmp.path().join("dest.img");
    let run = copy(
        Some(&local_bmap(&served)),
        &file_url(&served.file("missing.img")),
        &dest,
    );
    assert_fails(&run, &["missing.img"]);
    assert_no_dest(&dest);
}

// ---------------------------------------------------------------------------------
// ssh://

fn ssh_setup() -> Option<(Served, SshServer, TempDir)> {
    let sshd = SshServer::start()?;
    Some((Served::new(), sshd, scratch()))
}

/// `bmaptool copy [--bmap BMAP] URL DEST` with the wrapper `ssh` first on PATH.
fn ssh_copy(sshd: &SshServer, bmap: Option<&str>, url: &str, dest: &Path) -> Run {
    let mut cmd = copy_cmd(bmap, url, dest);
    sshd.apply_env(&mut cmd);
    remote_support::run(&mut cmd)
}

#[test]
fn ssh_url_with_port_copies_with_key_and_batch_mode() {
    let Some((served, sshd, tmp)) = ssh_setup() else {
        return;
    };
    let url = format!(
        "ssh://root@127.0.0.1:{}{}",
        sshd.port(),
        served.file("test.image").display()
    );
    let dest = tmp.path().join("dest.img");
    let run = ssh_copy(&sshd, None, &url, &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert!(
        run.stderr().contains("discovered bmap file") && run.stderr().contains("test.image.bmap'"),
        "the bmap beside the image is discovered over ssh:\n{}",
        run.stderr()
    );
    let calls = sshd.ssh_calls();
    assert!(
        calls.contains("BatchMode=yes"),
        "ssh was not run with -o BatchMode=yes (no password given):\n{calls}"
    );
}

#[test]
fn ssh_host_colon_absolute_path_copies() {
    let Some((served, sshd, tmp)) = ssh_setup() else {
        return;
    };
    // The port comes from the ssh config of the alias; the path follows the colon.
    let url = format!(
        "ssh://root@{SSH_ALIAS}:{}",
        served.file("test.image.gz").display()
    );
    let dest = tmp.path().join("dest.img");
    let run = ssh_copy(&sshd, None, &url, &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert!(
        run.stderr().contains("test.image.bmap'"),
        "test.image.bmap is discovered after test.image.gz.bmap is not found:\n{}",
        run.stderr()
    );
}

#[test]
fn ssh_host_colon_relative_path_is_kept_whole() {
    let Some((_, sshd, tmp)) = ssh_setup() else {
        return;
    };
    let Some(home) = passwd_home().filter(|h| h.is_dir()) else {
        require(false, "a home directory for the remote user");
        return;
    };
    // A directory in the remote user's home, named relative to it: the reference would
    // drop everything before the first slash; the whole path must be kept.
    let served = Served::new_in(Some(&home));
    let rel = served
        .root()
        .file_name()
        .expect("a directory name")
        .to_string_lossy()
        .into_owned();
    let url = format!("ssh://root@{SSH_ALIAS}:{rel}/test.image");
    let dest = tmp.path().join("dest.img");
    let run = ssh_copy(&sshd, None, &url, &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
}

#[test]
fn ssh_password_login_goes_through_sshpass() {
    let Some((served, sshd, tmp)) = ssh_setup() else {
        return;
    };
    if !need_tool("sshpass") {
        return;
    }
    let Some(user) = ThrowawayUser::create() else {
        return;
    };
    let url = format!(
        "ssh://{}:{}@127.0.0.1:{}{}",
        user.name,
        user.password,
        sshd.port(),
        served.file("test.image").display()
    );
    let dest = tmp.path().join("dest.img");
    let run = ssh_copy(&sshd, Some(&local_bmap(&served)), &url, &dest);
    assert_ok(&run);
    assert_same(&dest, &served.image);
    assert_no_secret(&run, &user.password);
    assert!(
        !sshd.ssh_calls().contains(&user.password),
        "the password was on ssh's command line"
    );
}

#[test]
fn ssh_password_without_sshpass_names_it() {
    // No server needed: the binary must stop before connecting.
    let served = Served::new();
    let tmp = scratch();
    let empty_path = scratch();
    let dest = tmp.path().join("dest.img");
    let url = format!(
        "ssh://someone:Pw9secret@127.0.0.1:{}{}",
        free_port(),
        served.file("test.image").display()
    );
    let mut cmd = copy_cmd(Some(&local_bmap(&served)), &url, &dest);
    cmd.env("PATH", empty_path.path());
    let run = remote_support::run(&mut cmd);
    assert_fails(&run, &["sshpass"]);
    assert_no_secret(&run, "Pw9secret");
    assert_no_dest(&dest);
}

#[test]
fn ssh_wrong_password_fails_without_printing_it() {
    let Some((served, sshd, tmp)) = ssh_setup() else {
        return;
    };
    if !need_tool("sshpass") {
        return;
    }
    let Some(user) = ThrowawayUser::create() else {
        return;
    };
    let url = format!(
        "ssh://{}:Wr0ngPass@127.0.0.1:{}{}",
        user.name,
        sshd.port(),
        served.file("test.image").display()
    );
    let dest = tmp.path().join("dest.img");
    let run = ssh_copy(&sshd, Some(&local_bmap(&served)), &url, &dest);
    assert_fails(&run, &[]);
    assert_no_secret(&run, "Wr0ngPass");
    assert_no_dest(&dest);
}

#[test]
fn ssh_missing_file_fails_naming_it() {
    let Some((served, sshd, tmp)) = ssh_setup() else {
        return;
    };
    let missing = served.file("missing.img");
    let url = format!("ssh://root@127.0.0.1:{}{}", sshd.port(), missing.display());
    let dest = tmp.path().join("dest.img");
    let run = ssh_copy(&sshd, Some(&local_bmap(&served)), &url, &dest);
    assert_fails(&run, &[&missing.display().to_string()]);
    assert_no_dest(&dest);
}

#[test]
fn ssh_refused_login_fails_without_prompting() {
    let Some((served, sshd, tmp)) = ssh_setup() else {
        return;
    };
    // No key and no password for this user: BatchMode must fail at once, not prompt.
    let url = format!(
        "ssh://nosuchuser@127.0.0.1:{}{}",
        sshd.port(),
        served.file("test.image").display()
    );
    let dest = tmp.path().join("dest.img");
    let mut cmd = copy_cmd(Some(&local_bmap(&served)), &url, &dest);
    sshd.apply_env(&mut cmd);
    let run = remote_support::run(&mut cmd);
    assert_fails(&run, &[]);
    assert_no_dest(&dest);
}
