//! The test HTTP server, `crates/bmaptool/tests/fixtures/httpd.py` (Python 3 stdlib) on
//! 127.0.0.1: Range requests, keep-alive, fault injection per path (`POST /_control`),
//! its own count of what it served (`GET /_stats`), a forward-proxy mode, and TLS with
//! a throwaway certificate authority made by `openssl`. One server for the remote and
//! the signature tests.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::env::{need_python, need_tool};
use crate::helper::{Helper, START_LIMIT, scratch_dir};

/// `crates/bmaptool/tests/fixtures`: the test servers' scripts.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bmaptool/tests/fixtures"
    ))
}

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
    _dir: TempDir,
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
        let dir = scratch_dir();
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
            _dir: dir,
        })
    }
}
