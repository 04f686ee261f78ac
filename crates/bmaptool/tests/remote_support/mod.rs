//! Harness for the black-box tests of remote images (`tests/remote.rs`): the servers the
//! tests start on the loopback interface, the data they serve, a runner for the real
//! binary with a deadline, and assertions.
//!
//! Servers (each test starts its own, stopped on drop; a server also exits by itself when
//! the test process goes away, because it watches its standard input):
//! - [`HttpServer`]: `tests/fixtures/httpd.py` (Python 3 stdlib): Range requests,
//!   keep-alive, fault injection per path (`POST /_control`), its own count of what it
//!   served (`GET /_stats`), and a forward-proxy mode; optionally over TLS.
//! - [`FtpServer`]: `tests/fixtures/ftpd.py`, a pyftpdlib server with a user and password.
//! - [`Squid`]: Debian's Squid as a forward proxy, with its own configuration and
//!   access log.
//! - [`SshServer`]: Debian's `sshd` on a free loopback port with a throwaway host key and
//!   client key; the binary finds a wrapper `ssh` first on its PATH that adds `-F` with a
//!   config naming the port, the key and no host key checking (OpenSSH reads `~/.ssh`
//!   from the password database, not from `$HOME`, so `HOME` alone cannot redirect it).
//!
//! Environment rule: a test that needs python3, pyftpdlib, sshd, root, openssl or a
//! compressor asks [`require`] first. When the need is not met the test is skipped with a
//! note on stderr, unless `BMAPTOOL_TEST_STRICT=1` (CI), where it fails.

#![allow(
    dead_code,
    reason = "helpers are shared by many tests; not every one uses every helper"
)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bmap::format::{BlockRange, Bmap, ChecksumKind};
use tempfile::TempDir;

/// The variable that turns a missing environment into test failures.
pub const STRICT_VAR: &str = "BMAPTOOL_TEST_STRICT";
/// The binary under test.
pub const BMAPTOOL: &str = env!("CARGO_BIN_EXE_bmaptool");
/// Size of the reference `test.image`.
pub const TEST_IMAGE_SIZE: u64 = 821_752;
/// Mapped bytes of `test.image` (117 blocks of 4 KiB).
pub const TEST_IMAGE_MAPPED: u64 = 479_232;
/// Number of ranges in `test.image.bmap.v2.0`.
pub const TEST_IMAGE_RANGES: usize = 54;
/// Block size of every bmap served here.
pub const BLOCK: u64 = 4096;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// How long a run of the binary may take before the test kills it and fails. It only
/// bounds a hang: a run over the local test servers takes seconds even on a busy
/// machine.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);
/// How long a helper server may take to start (to say which port it listens on, or
/// to listen) on a busy machine; it only bounds a hang.
const START_LIMIT: Duration = Duration::from_secs(120);
/// Variables that choose proxies; removed from every run unless a test sets them.
pub const PROXY_VARS: [&str; 10] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

// ---------------------------------------------------------------------------------
// The environment rule

/// Whether a missing environment must fail tests.
pub fn strict() -> bool {
    std::env::var_os(STRICT_VAR).is_some_and(|v| v == "1")
}

/// `true` when `cond` holds; otherwise skips (`false`, with a note) or, in strict mode,
/// fails naming what is missing.
#[track_caller]
pub fn require(cond: bool, what: &str) -> bool {
    if cond {
        return true;
    }
    assert!(
        !strict(),
        "{STRICT_VAR}=1 and this environment lacks {what}"
    );
    eprintln!("SKIPPED: this environment lacks {what} (set {STRICT_VAR}=1 to fail instead)");
    false
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether `program args...` runs and succeeds.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The full path of an executable on PATH (or in the sbin directories, which a
/// non-root PATH often lacks).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `python3` (any version with the standard library).
#[track_caller]
pub fn need_python() -> bool {
    require(runs("python3", &["--version"]), "python3")
}

/// The first Python 3 interpreter that can import pyftpdlib.
pub fn python_with_pyftpdlib() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|py| runs(py, &["-c", "import pyftpdlib"]))
}

/// A tool that some tests need (`zstd`, `openssl`, ...).
#[track_caller]
pub fn need_tool(tool: &str) -> bool {
    require(which(tool).is_some(), &format!("the {tool} program"))
}

// ---------------------------------------------------------------------------------
// Paths and data

/// `tests/fixtures` of this crate.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// `../shared/conformance/reference-test-data`, read-only.
pub fn reference_data() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/reference-test-data"
    ))
}

/// A fresh directory for destinations and other scratch files.
pub fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("bmaptool-remote-test-")
        .tempdir()
        .expect("cannot make a temporary directory")
}

/// A fresh directory that every user can read (sshd runs a throwaway user's session).
fn public_dir(parent: Option<&Path>) -> TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("bmaptool-remote-test-");
    let dir = match parent {
        Some(p) => builder.tempdir_in(p),
        None => builder.tempdir(),
    }
    .expect("cannot make a temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755");
    dir
}

/// Writes a file readable by everyone.
fn write_public(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod 644");
}

/// The bytes of `test.image` (decompressed from the reference's `test.image.gz`).
pub fn test_image_bytes() -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(reference_data().join("test.image.gz"))
        .output()
        .expect("gzip runs");
    assert!(out.status.success(), "gzip -dc test.image.gz failed");
    assert_eq!(out.stdout.len() as u64, TEST_IMAGE_SIZE, "test.image size");
    out.stdout
}

/// `len` pseudo-random bytes (splitmix64).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A directory of images that the servers serve, readable by every user:
/// `test.image` (the reference image), `test.image.bmap` (its v2.0 bmap) and
/// `test.image.gz` (the reference's own gzip of it); more on request.
#[derive(Debug)]
pub struct Served {
    dir: TempDir,
    /// The bytes of `test.image`.
    pub image: Vec<u8>,
}

impl Served {
    /// Writes the standard files.
    pub fn new() -> Served {
        Served::new_in(None)
    }

    /// The same, in a directory under `parent`.
    pub fn new_in(parent: Option<&Path>) -> Served {
        let dir = public_dir(parent);
        let image = test_image_bytes();
        write_public(&dir.path().join("test.image"), &image);
        let bmap = fs::read(reference_data().join("test.image.bmap.v2.0")).expect("read bmap");
        write_public(&dir.path().join("test.image.bmap"), &bmap);
        let gz = fs::read(reference_data().join("test.image.gz")).expect("read test.image.gz");
        write_public(&dir.path().join("test.image.gz"), &gz);
        Served { dir, image }
    }

    /// The parsed `test.image.bmap`.
    pub fn bmap(&self) -> Bmap {
        let bytes = fs::read(self.file("test.image.bmap")).expect("read test.image.bmap");
        bmap::format::parse(&bytes)
            .expect("test.image.bmap parses")
            .bmap
    }

    /// The served directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A file in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` with `bytes`.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        write_public(&self.file(name), bytes);
    }

    /// Copies a served file under another name.
    pub fn copy(&self, from: &str, to: &str) {
        let bytes = fs::read(self.file(from)).expect("read served file");
        self.put(to, &bytes);
    }

    /// Adds `NAME.zst` of the served file `name` (made by the `zstd` program); returns
    /// its size. `None`: skipped.
    #[track_caller]
    pub fn add_zst(&self, name: &str) -> Option<u64> {
        if !need_tool("zstd") {
            return None;
        }
        let out = Command::new("zstd")
            .args(["-q", "-c", "-3"])
            .arg(self.file(name))
            .output()
            .expect("zstd runs");
        assert!(out.status.success(), "zstd failed");
        self.put(&format!("{name}.zst"), &out.stdout);
        Some(out.stdout.len() as u64)
    }

    /// Writes a sparse image `name` of 16 MiB + 1000 bytes whose mapped blocks are four
    /// extents of random data: two close together (a 64 KiB hole between them) and two
    /// far away (holes of several MiB), and its bmap `name.bmap`, built with the
    /// library's own bmap type (not by `create`). Returns the image bytes and the bmap.
    pub fn add_sparse(&self, name: &str) -> (Vec<u8>, Bmap) {
        const EXTENTS: [(u64, u64); 4] = [(0, 63), (80, 111), (1536, 1599), (3840, 3887)];
        let size = 16 * MIB + 1000;
        let path = self.file(name);
        let file = File::create(&path).expect("create sparse image");
        file.set_len(size).expect("set_len");
        let mut bytes = vec![0u8; usize::try_from(size).expect("fits")];
        let mut ranges = Vec::new();
        for (i, &(first, last)) in EXTENTS.iter().enumerate() {
            let start = usize::try_from(first * BLOCK).expect("fits");
            let end = usize::try_from((last + 1) * BLOCK).expect("fits");
            let data = random_bytes(1000 + i as u64, end - start);
            file.write_all_at(&data, first * BLOCK)
                .expect("write extent");
            bytes[start..end].copy_from_slice(&data);
            let digest = ChecksumKind::Sha256.digest(&data);
            ranges.push(BlockRange::new(first, last, Some(digest)).expect("valid range"));
        }
        file.sync_all().expect("sync sparse image");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let bmap = Bmap::new(size, BLOCK, Some(ChecksumKind::Sha256), ranges).expect("valid bmap");
        self.put(&format!("{name}.bmap"), &bmap.to_xml());
        (bytes, bmap)
    }
}

/// The byte spans `[start, end)` of a bmap's ranges, clipped at the image's end.
pub fn mapped_spans(bmap: &Bmap) -> Vec<(u64, u64)> {
    bmap.ranges()
        .iter()
        .map(|r| {
            let (start, len) = bmap.byte_span(r);
            (start, start + len)
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Helper processes

/// A server process: killed on drop; it also exits when its stdin (held here) closes.
#[derive(Debug)]
struct Helper {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    _logdir: TempDir,
}

impl Helper {
    /// Starts `cmd` with stdout piped and returns it with the first line it printed.
    /// `None` when it exited or stayed silent for [`START_LIMIT`] (the log is printed).
    fn start(name: &str, mut cmd: Command) -> Option<(Helper, String)> {
        let logdir = scratch();
        let log = logdir.path().join(format!("{name}.log"));
        let log_file = File::create(&log).expect("create helper log");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let helper = Helper {
            name: name.to_owned(),
            child,
            stdin,
            log,
            _logdir: logdir,
        };
        match rx.recv_timeout(START_LIMIT) {
            Ok(line) if !line.trim().is_empty() => Some((helper, line.trim().to_owned())),
            _ => {
                eprintln!(
                    "{name} did not start; its log:\n{}",
                    fs::read_to_string(&helper.log).unwrap_or_default()
                );
                None
            }
        }
    }

    /// What the helper wrote on stderr so far.
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            if !log.trim().is_empty() {
                eprintln!("--- log of {}:\n{log}", self.name);
            }
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on (just released by the kernel).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Waits until `helper` says on stderr that it listens (a line holding every one of
/// `says`) and `port` accepts connections; `false` when it exits or says the port is
/// taken first (another program, perhaps another run of this suite, bound it after
/// [`free_port`] released it) or [`START_LIMIT`] passes. Its own line, not just a
/// connection: a connection could reach whatever else took the port.
fn wait_listening(helper: &mut Helper, port: u16, says: &[&str]) -> bool {
    let deadline = Instant::now() + START_LIMIT;
    while Instant::now() < deadline {
        let log = helper.log();
        let said = log
            .lines()
            .any(|line| says.iter().all(|s| line.contains(s)));
        if said && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        // A server that cannot bind may linger without listening: try another port.
        if log.contains("Address already in use")
            || helper.child.try_wait().ok().flatten().is_some()
        {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------------------------
// HTTP

/// `tests/fixtures/httpd.py` on 127.0.0.1.
#[derive(Debug)]
pub struct HttpServer {
    helper: Helper,
    port: u16,
    scheme: &'static str,
}

/// One request the HTTP server answered (from `GET /_stats?format=text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// GET or HEAD.
    pub method: String,
    /// URL path, percent-decoded, without the query.
    pub path: String,
    /// Status sent (0: nothing sent yet, e.g. stalled).
    pub status: u16,
    /// Connection number (1, 2, ... in accept order), to see keep-alive.
    pub conn: u64,
    /// Body bytes the server wrote or tried to write.
    pub bytes: u64,
    /// The Range header, if any.
    pub range: Option<String>,
    /// The request target as sent (path and query).
    pub target: String,
    /// The Authorization header, if any.
    pub auth: Option<String>,
}

impl Request {
    /// The first byte of the Range header (`bytes=A-...`), or 0 without one.
    pub fn range_start(&self) -> u64 {
        self.range
            .as_deref()
            .and_then(|r| r.trim().strip_prefix("bytes="))
            .and_then(|spec| spec.split('-').next())
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// One request forwarded by the server in proxy mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxied {
    /// GET or HEAD with an absolute URI, or CONNECT (a tunnel).
    pub method: String,
    /// The absolute URL asked for (`host:port` for CONNECT).
    pub url: String,
    /// The Range header, if any.
    pub range: Option<String>,
    /// Status of the origin's answer (502: unreachable).
    pub status: u16,
    /// Body bytes forwarded (for CONNECT: all bytes from the origin).
    pub bytes: u64,
}

impl Proxied {
    /// Whether this request was for the origin at `127.0.0.1:port`, in either form.
    pub fn reaches(&self, port: u16) -> bool {
        let origin = format!("127.0.0.1:{port}");
        self.url == origin || self.url.starts_with(&format!("http://{origin}/"))
    }
}

/// What the HTTP server saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests for files, in arrival order.
    pub requests: Vec<Request>,
    /// Requests forwarded as a proxy.
    pub proxied: Vec<Proxied>,
}

impl Stats {
    /// Requests for `path` (any method).
    pub fn for_path(&self, path: &str) -> Vec<&Request> {
        self.requests.iter().filter(|r| r.path == path).collect()
    }

    /// GET requests for `path`.
    pub fn gets(&self, path: &str) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.path == path && r.method == "GET")
            .collect()
    }

    /// Body bytes served for `path`.
    pub fn bytes(&self, path: &str) -> u64 {
        self.for_path(path).iter().map(|r| r.bytes).sum()
    }

    /// Index of the first request for `path`.
    pub fn first_index(&self, path: &str) -> Option<usize> {
        self.requests.iter().position(|r| r.path == path)
    }

    /// Paths in the order they were first asked for.
    pub fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.requests {
            if !out.contains(&r.path) {
                out.push(r.path.clone());
            }
        }
        out
    }

    fn parse(text: &str) -> Stats {
        let mut stats = Stats::default();
        let opt = |s: &str| (s != "-").then(|| s.to_owned());
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                [
                    "req",
                    method,
                    path,
                    status,
                    conn,
                    bytes,
                    range,
                    target,
                    auth,
                ] => {
                    stats.requests.push(Request {
                        method: (*method).to_owned(),
                        path: (*path).to_owned(),
                        status: status.parse().expect("status"),
                        conn: conn.parse().expect("conn"),
                        bytes: bytes.parse().expect("bytes"),
                        range: opt(range),
                        target: (*target).to_owned(),
                        auth: opt(auth),
                    });
                }
                ["proxy", method, url, range, status, bytes] => stats.proxied.push(Proxied {
                    method: (*method).to_owned(),
                    url: (*url).to_owned(),
                    range: opt(range),
                    status: status.parse().expect("status"),
                    bytes: bytes.parse().expect("bytes"),
                }),
                _ => panic!("unexpected stats line {line:?}"),
            }
        }
        stats
    }
}

impl HttpServer {
    fn launch(name: &str, args: &[&std::ffi::OsStr], scheme: &'static str) -> Option<Self> {
        if !need_python() {
            return None;
        }
        let mut cmd = Command::new("python3");
        cmd.arg(fixtures().join("httpd.py")).args(args);
        let Some((helper, line)) = Helper::start(name, cmd) else {
            panic!("{name} (tests/fixtures/httpd.py) did not start");
        };
        let port = line
            .parse()
            .unwrap_or_else(|_| panic!("{name} printed {line:?}, not a port"));
        Some(HttpServer {
            helper,
            port,
            scheme,
        })
    }

    /// Serves `root` over plain HTTP. `None`: skipped (no python3).
    pub fn start(root: &Path) -> Option<Self> {
        HttpServer::launch("httpd", &["--root".as_ref(), root.as_os_str()], "http")
    }

    /// A forward proxy (absolute-URI requests only). `None`: skipped.
    pub fn start_proxy() -> Option<Self> {
        HttpServer::launch("proxy", &["--proxy-only".as_ref()], "http")
    }

    /// Serves `root` over HTTPS with the certificate of `tls`. `None`: skipped.
    pub fn start_tls(root: &Path, tls: &TlsFiles) -> Option<Self> {
        HttpServer::start_tls_with_rules(root, tls, "{}")
    }

    /// The same, with fault rules from the start (`{"/path": {rule}, ...}`, see
    /// httpd.py): the control endpoint of a TLS server is out of the tests' reach.
    pub fn start_tls_with_rules(root: &Path, tls: &TlsFiles, rules_json: &str) -> Option<Self> {
        HttpServer::launch(
            "httpsd",
            &[
                "--root".as_ref(),
                root.as_os_str(),
                "--tls-cert".as_ref(),
                tls.cert.as_os_str(),
                "--tls-key".as_ref(),
                tls.key.as_os_str(),
                "--rules".as_ref(),
                rules_json.as_ref(),
            ],
            "https",
        )
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `SCHEME://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// The same with `user:password@` in it.
    pub fn url_with_auth(&self, user: &str, password: &str, path: &str) -> String {
        format!(
            "{}://{user}:{password}@127.0.0.1:{}{path}",
            self.scheme, self.port
        )
    }

    /// `http://127.0.0.1:PORT`, for `http_proxy`.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the fault rule of `path` (a JSON object, see httpd.py).
    pub fn set_rule(&self, path: &str, rule_json: &str) {
        let body = format!("{{\"path\": {}, \"rule\": {rule_json}}}", json_string(path));
        let (status, text) = self.call("POST", "/_control", body.as_bytes());
        assert_eq!(status, 200, "POST /_control {body}: {text}");
    }

    /// Removes the rule of `path`.
    pub fn clear_rule(&self, path: &str) {
        self.set_rule(path, "null");
    }

    /// What the server saw so far.
    pub fn stats(&self) -> Stats {
        let (status, text) = self.call("GET", "/_stats?format=text", b"");
        assert_eq!(status, 200, "GET /_stats: {text}");
        Stats::parse(&text)
    }

    /// What the server wrote on stderr.
    pub fn log(&self) -> String {
        self.helper.log()
    }

    /// One request on a fresh connection; returns the status and the body.
    fn call(&self, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        assert_eq!(self.scheme, "http", "control requests are plain HTTP only");
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the test server");
        stream
            .set_read_timeout(Some(START_LIMIT))
            .expect("set_read_timeout");
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send request");
        stream.write_all(body).expect("send body");
        let _ = stream.shutdown(Shutdown::Write);
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read answer");
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad answer from the test server: {text:?}"));
        (status, body.to_owned())
    }
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A throwaway certificate authority and a server certificate for 127.0.0.1 signed by
/// it (made with the `openssl` program).
#[derive(Debug)]
pub struct TlsFiles {
    dir: TempDir,
    /// The CA certificate (PEM), for `SSL_CERT_FILE`.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Makes them. `None`: skipped (no openssl).
    pub fn generate() -> Option<TlsFiles> {
        if !need_tool("openssl") {
            return None;
        }
        let dir = scratch();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bmaptool test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        run(&ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&csr);
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "1",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Some(TlsFiles {
            ca: d.join("ca.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            dir,
        })
    }
}

// ---------------------------------------------------------------------------------
// Squid

/// Debian's Squid, a real forward proxy, on a free 127.0.0.1 port, with a
/// configuration of its own in a temporary directory: Debian's default access rules
/// (`CONNECT` only to the "SSL ports", 443 and those the test names), no caching (every
/// request reaches the origin), its access log in the directory.
#[derive(Debug)]
pub struct Squid {
    helper: Helper,
    dir: TempDir,
    port: u16,
}

impl Squid {
    /// Starts it, allowing `CONNECT` to port 443 and to `ssl_ports`. `None`: skipped
    /// (no squid).
    pub fn start(ssl_ports: &[u16]) -> Option<Squid> {
        let squid = which("squid");
        if !require(squid.is_some(), "squid (Debian package squid)") {
            return None;
        }
        let squid = squid.expect("checked");
        let dir = public_dir(None);
        // Started as root, Squid runs as the user `proxy`, which writes the logs here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod 777");
        let ssl_ports: Vec<String> = ssl_ports.iter().map(u16::to_string).collect();
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "acl SSL_ports port 443 {ssl}\n\
                 acl Safe_ports port 80 443 1025-65535\n\
                 http_access deny !Safe_ports\n\
                 http_access deny CONNECT !SSL_ports\n\
                 http_access allow localhost\n\
                 http_access deny all\n\
                 http_port 127.0.0.1:{port}\n\
                 cache deny all\n\
                 cache_mem 8 MB\n\
                 access_log stdio:{d}/access.log\n\
                 cache_log {d}/cache.log\n\
                 cache_store_log none\n\
                 pid_filename none\n\
                 logfile_rotate 0\n\
                 coredump_dir {d}\n\
                 netdb_filename none\n\
                 pinger_enable off\n\
                 dns_nameservers 127.0.0.1\n\
                 shutdown_lifetime 0 seconds\n",
                ssl = ssl_ports.join(" "),
                d = dir.path().display(),
            );
            let conf = dir.path().join("squid.conf");
            fs::write(&conf, config).expect("write squid.conf");
            // sh stops squid when our end of its stdin closes (also if this process
            // dies), as for sshd.
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(
                    "exec 3<&0; \"$1\" -N -d 1 -f \"$2\" </dev/null & pid=$!; \
                     (cat <&3 >/dev/null; kill $pid 2>/dev/null) & exec 3<&-; \
                     echo started; wait $pid",
                )
                .arg("sh")
                .arg(&squid)
                .arg(&conf);
            let Some((mut helper, _)) = Helper::start("squid", cmd) else {
                panic!("the squid wrapper did not start");
            };
            // Squid's -d 1 copies this line of cache.log to stderr.
            let local = format!(" local=127.0.0.1:{port} ");
            if wait_listening(&mut helper, port, &["Accepting HTTP Socket", &local]) {
                return Some(Squid { helper, dir, port });
            }
            eprintln!("squid did not listen on {port}; log:\n{}", helper.log());
        }
        panic!("squid did not start");
    }

    /// `http://127.0.0.1:PORT`, for `http_proxy` and `https_proxy`.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its access log so far.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Waits until a line of the access log contains every one of `needles` (Squid
    /// logs a request when it ends, a tunnel when it closes); returns that line.
    #[track_caller]
    pub fn wait_for_line(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let log = self.access_log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "squid logged no line with {needles:?}; access log:\n{log}\nsquid's log:\n{}",
                self.helper.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------
// FTP

/// `tests/fixtures/ftpd.py` (pyftpdlib) on 127.0.0.1 with one user.
#[derive(Debug)]
pub struct FtpServer {
    helper: Helper,
    port: u16,
    /// The user name.
    pub user: &'static str,
    /// Its password.
    pub password: &'static str,
}

impl FtpServer {
    /// Serves `root` to user `tester`, password `ftp-S3cret`. `None`: skipped.
    pub fn start(root: &Path) -> Option<FtpServer> {
        let python = python_with_pyftpdlib();
        if !require(
            python.is_some(),
            "pyftpdlib for python3 (pip install pyftpdlib, or Debian's python3-pyftpdlib)",
        ) {
            return None;
        }
        let (user, password) = ("tester", "ftp-S3cret");
        let mut cmd = Command::new(python.expect("checked"));
        cmd.arg(fixtures().join("ftpd.py"))
            .arg("--root")
            .arg(root)
            .args(["--user", user, "--password", password]);
        let Some((helper, line)) = Helper::start("ftpd", cmd) else {
            panic!("tests/fixtures/ftpd.py did not start");
        };
        let port = line
            .parse()
            .unwrap_or_else(|_| panic!("ftpd printed {line:?}, not a port"));
        Some(FtpServer {
            helper,
            port,
            user,
            password,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ftp://USER:PASSWORD@127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://{}:{}@127.0.0.1:{}{path}",
            self.user, self.password, self.port
        )
    }

    /// What the server wrote on stderr.
    pub fn log(&self) -> String {
        self.helper.log()
    }
}

// ---------------------------------------------------------------------------------
// SSH

/// The name of the ssh config alias for the test server (for `ssh://host:path` URLs).
pub const SSH_ALIAS: &str = "bmaptool-sshd";

/// Debian's `sshd` on a free loopback port, run as root in a temporary directory.
/// Logins: the current user (root) with the throwaway client key; password logins for
/// a [`ThrowawayUser`].
#[derive(Debug)]
pub struct SshServer {
    helper: Helper,
    dir: TempDir,
    port: u16,
}

impl SshServer {
    /// Starts it. `None`: skipped (not root, or no sshd / ssh / ssh-keygen).
    pub fn start() -> Option<SshServer> {
        let sshd = which("sshd");
        if !require(
            is_root() && sshd.is_some() && which("ssh").is_some() && which("ssh-keygen").is_some(),
            "root with sshd, ssh and ssh-keygen (Debian openssh-server, openssh-client)",
        ) {
            return None;
        }
        let sshd = sshd.expect("checked");
        let dir = public_dir(None);
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(d.join(key))
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ssh-keygen {key} failed");
        }
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys.root"))
            .expect("authorized_keys");
        // sshd refuses to start without its privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");

        // A wrapper `ssh` that reads our config: first on the binary's PATH.
        let bin = d.join("bin");
        fs::create_dir(&bin).expect("mkdir bin");
        let real_ssh = which("ssh").expect("checked");
        let wrapper = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nexec '{ssh}' -F '{config}' \"$@\"\n",
            log = d.join("ssh-calls.log").display(),
            ssh = real_ssh.display(),
            config = d.join("ssh_config").display(),
        );
        fs::write(bin.join("ssh"), wrapper).expect("write ssh wrapper");
        fs::set_permissions(bin.join("ssh"), fs::Permissions::from_mode(0o755)).expect("chmod");

        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nPidFile none\n\
                 AuthorizedKeysFile {d}/authorized_keys.%u\nStrictModes no\n\
                 PermitRootLogin yes\nPubkeyAuthentication yes\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nX11Forwarding no\n\
                 AllowTcpForwarding no\nAllowAgentForwarding no\nPrintMotd no\n\
                 UseDNS no\nMaxStartups 100\nLogLevel INFO\n",
                d = d.display()
            );
            fs::write(d.join("sshd_config"), config).expect("write sshd_config");
            let client = format!(
                "Host 127.0.0.1 localhost {SSH_ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n\
                 \x20 IdentityFile {d}/client_key\n  IdentitiesOnly yes\n\
                 \x20 StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n\
                 \x20 LogLevel ERROR\n  ConnectTimeout 60\n",
                d = d.display()
            );
            fs::write(d.join("ssh_config"), &client).expect("write ssh_config");
            fs::set_permissions(d.join("ssh_config"), fs::Permissions::from_mode(0o600))
                .expect("chmod ssh_config");
            // The same config as ~/.ssh/config of a private HOME, for tools that honour it.
            let home_ssh = d.join("home/.ssh");
            fs::create_dir_all(&home_ssh).expect("mkdir home/.ssh");
            fs::write(home_ssh.join("config"), &client).expect("write home config");
            fs::set_permissions(home_ssh.join("config"), fs::Permissions::from_mode(0o600))
                .expect("chmod");

            // sh stops sshd when our end of its stdin closes (also if this process dies).
            // A background job's stdin is /dev/null unless redirected: hence fd 3.
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(
                    "exec 3<&0; \"$1\" -D -e -f \"$2\" </dev/null & pid=$!; \
                     (cat <&3 >/dev/null; kill $pid 2>/dev/null) & exec 3<&-; \
                     echo started; wait $pid",
                )
                .arg("sh")
                .arg(&sshd)
                .arg(d.join("sshd_config"));
            let Some((mut helper, _)) = Helper::start("sshd", cmd) else {
                panic!("sshd wrapper did not start");
            };
            let says = format!("Server listening on 127.0.0.1 port {port}.");
            if wait_listening(&mut helper, port, &[&says]) {
                return Some(SshServer { helper, dir, port });
            }
            eprintln!("sshd did not listen on {port}; log:\n{}", helper.log());
        }
        panic!("sshd did not start");
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A directory readable by every user, for served files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sets PATH (wrapper `ssh` first) and HOME for a run of the binary.
    pub fn apply_env(&self, cmd: &mut Command) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.dir.path().join("bin")];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).expect("join PATH"))
            .env("HOME", self.dir.path().join("home"));
    }

    /// The wrapper's directory (it holds only `ssh`).
    pub fn wrapper_bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// The argument lists the wrapper `ssh` was called with, one per line.
    pub fn ssh_calls(&self) -> String {
        fs::read_to_string(self.dir.path().join("ssh-calls.log")).unwrap_or_default()
    }

    /// What sshd logged.
    pub fn log(&self) -> String {
        self.helper.log()
    }
}

/// The home directory of the current user in the password database (what sshd uses).
pub fn passwd_home() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = fs::metadata("/proc/self").ok()?.uid();
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid)).then(|| PathBuf::from(f[5]))
    })
}

static USER_LOCK: Mutex<()> = Mutex::new(());

/// The lock that one process of this suite holds while it uses the throwaway user: the
/// user database is the machine's, and two runs of the suite at once would otherwise
/// change each other's password, or delete the user under the other's login.
const USER_LOCK_FILE: &str = "/tmp/bmaptool-test-throwaway-user.lock";

/// A local user `bmaptooltest` (home `/`, shell `/bin/sh`) with a random password, for
/// password logins through sshpass; removed again on drop. One test at a time uses it.
#[derive(Debug)]
pub struct ThrowawayUser {
    /// The user name.
    pub name: &'static str,
    /// Its password (letters and digits only).
    pub password: String,
    _lock: MutexGuard<'static, ()>,
    /// Holds `USER_LOCK_FILE` (flock) until dropped.
    _machine_lock: File,
}

impl ThrowawayUser {
    /// Creates it. `None`: skipped (not root, or no useradd/chpasswd/userdel).
    pub fn create() -> Option<ThrowawayUser> {
        if !require(
            is_root()
                && which("useradd").is_some()
                && which("chpasswd").is_some()
                && which("userdel").is_some(),
            "root with useradd, chpasswd and userdel (a throwaway user for password logins)",
        ) {
            return None;
        }
        let lock = USER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let machine_lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(USER_LOCK_FILE)
            .unwrap_or_else(|e| panic!("cannot open {USER_LOCK_FILE}: {e}"));
        rustix::fs::flock(&machine_lock, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("cannot lock {USER_LOCK_FILE}: {e}"));
        let name = "bmaptooltest";
        if !runs("id", &[name]) {
            let ok = runs("useradd", &["-M", "-d", "/", "-s", "/bin/sh", name]);
            assert!(ok, "useradd {name} failed");
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let password = format!("Pw{:x}{:x}", nanos, std::process::id());
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("chpasswd runs");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(format!("{name}:{password}\n").as_bytes())
            .expect("write to chpasswd");
        assert!(child.wait().is_ok_and(|s| s.success()), "chpasswd failed");
        Some(ThrowawayUser {
            name,
            password,
            _lock: lock,
            _machine_lock: machine_lock,
        })
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        if !runs("userdel", &[self.name]) {
            // Still logged in somewhere? At least lock the password.
            let _ = runs("usermod", &["-p", "!", self.name]);
            eprintln!("warning: cannot remove the user {}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------
// Running the binary

/// Overrides the binary under test (to check the harness against another
/// implementation, e.g. the reference at /usr/bin/bmaptool).
pub const BIN_VAR: &str = "BMAPTOOL_TEST_BIN";

/// `bmaptool` with no proxy variables, backtraces on, stdin from /dev/null.
pub fn bmaptool() -> Command {
    let bin = std::env::var_os(BIN_VAR).unwrap_or_else(|| BMAPTOOL.into());
    let mut cmd = Command::new(bin);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("RUST_BACKTRACE", "1").stdin(Stdio::null());
    cmd
}

/// What a run did, and how long it took.
#[derive(Debug)]
pub struct Run {
    /// Exit status and captured output.
    pub output: Output,
    /// Wall time.
    pub elapsed: Duration,
}

impl Run {
    /// Standard error, lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// Runs `cmd`, killing it and failing the test after `limit`. Output goes through files
/// (not pipes), so an `ssh` child that outlives the binary cannot hold the test up.
#[track_caller]
pub fn run_within(cmd: &mut Command, limit: Duration) -> Run {
    let dir = scratch();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let start = Instant::now();
    let mut child = cmd
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("bmaptool runs");
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bmaptool {:?} still running after {limit:?}; stderr so far:\n{}",
                cmd.get_args().collect::<Vec<_>>(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Run {
        output: Output {
            status,
            stdout: fs::read(&out_path).expect("read stdout"),
            stderr: fs::read(&err_path).expect("read stderr"),
        },
        elapsed,
    }
}

/// Runs `cmd` within [`RUN_LIMIT`].
#[track_caller]
pub fn run(cmd: &mut Command) -> Run {
    run_within(cmd, RUN_LIMIT)
}

/// `bmaptool copy [--bmap BMAP] IMAGE DEST` within [`RUN_LIMIT`].
#[track_caller]
pub fn copy(bmap: Option<&str>, image: &str, dest: &Path) -> Run {
    run(&mut copy_cmd(bmap, image, dest))
}

/// The command `bmaptool copy [--bmap BMAP] IMAGE DEST`, to add environment to.
pub fn copy_cmd(bmap: Option<&str>, image: &str, dest: &Path) -> Command {
    let mut cmd = bmaptool();
    cmd.arg("copy");
    if let Some(b) = bmap {
        cmd.args(["--bmap", b]);
    }
    cmd.arg(image).arg(dest);
    cmd
}

// ---------------------------------------------------------------------------------
// Assertions

/// Asserts stderr shows no panic or backtrace.
#[track_caller]
pub fn assert_no_panic(text: &str) {
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "Traceback"] {
        assert!(!text.contains(bad), "stderr shows {bad:?}:\n{text}");
    }
}

/// Asserts success: exit 0, nothing on stdout, no error, no panic.
#[track_caller]
pub fn assert_ok(run: &Run) {
    let text = run.stderr();
    assert_eq!(
        run.output.status.code(),
        Some(0),
        "exit status; stderr:\n{text}"
    );
    assert!(run.output.stdout.is_empty(), "stdout not empty");
    assert!(!text.contains("ERROR"), "error on success:\n{text}");
    assert_no_panic(&text);
}

/// Asserts a clean failure: exit 1, nothing on stdout, exactly one `bmaptool: ERROR:`
/// line (the last line), which contains every needle (case-insensitive), and no panic.
/// Returns the line.
#[track_caller]
pub fn assert_fails(run: &Run, needles: &[&str]) -> String {
    let text = run.stderr();
    assert_eq!(
        run.output.status.code(),
        Some(1),
        "exit status; stderr:\n{text}"
    );
    assert!(run.output.stdout.is_empty(), "stdout not empty on error");
    assert_no_panic(&text);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bmaptool: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected:\n{text}");
    assert_eq!(
        text.lines().last(),
        Some(errors[0]),
        "the error line is not the last line:\n{text}"
    );
    let line = errors[0].to_owned();
    for needle in needles {
        assert!(
            line.to_lowercase().contains(&needle.to_lowercase()),
            "error line does not mention {needle:?}: {line}"
        );
    }
    line
}

/// Asserts that the error line mentions one of `alternatives` (case-insensitive).
#[track_caller]
pub fn assert_mentions_any(line: &str, alternatives: &[&str]) {
    let lower = line.to_lowercase();
    assert!(
        alternatives
            .iter()
            .any(|a| lower.contains(&a.to_lowercase())),
        "error line mentions none of {alternatives:?}: {line}"
    );
}

/// Asserts `secret` appears nowhere in the output of the run.
#[track_caller]
pub fn assert_no_secret(run: &Run, secret: &str) {
    let text = run.stderr();
    assert!(
        !text.contains(secret),
        "stderr shows the password {secret:?}:\n{text}"
    );
    assert!(
        !String::from_utf8_lossy(&run.output.stdout).contains(secret),
        "stdout shows the password"
    );
}

/// Asserts `path` holds exactly `expected` (without printing megabytes on failure).
#[track_caller]
pub fn assert_same(path: &Path, expected: &[u8]) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(got.len(), expected.len(), "size of {}", path.display());
    if let Some(i) = got.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{} differs from the image first at byte {i} (block {})",
            path.display(),
            i as u64 / BLOCK
        );
    }
}

/// Asserts the destination is gone after a failure.
#[track_caller]
pub fn assert_no_dest(dest: &Path) {
    assert!(
        !dest.exists(),
        "{} was left behind after a failure",
        dest.display()
    );
}
