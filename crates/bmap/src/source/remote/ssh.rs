//! `ssh://` images through the system `ssh` client, so keys, the agent, known hosts
//! and `~/.ssh/config` apply. With a password in the URL, `sshpass` supplies it (from
//! its environment, never on a command line). One connection sends the file's size and
//! then its bytes; the remote command's exit status is checked at the end.

use std::io::{self, Read};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};

use super::{Error, Options, Remote};

/// `[user[:password]@]host[:port]/path` or the reference's `[user[:password]@]host:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    /// The remote path: absolute after `host/`, relative to the home directory after
    /// `host:` (the whole path is kept, unlike the reference).
    pub path: String,
}

impl Target {
    /// Parses the text after `ssh://`.
    pub fn parse(text: &str) -> Result<Target, Error> {
        let bad = || Error::Unsupported(super::redact_str(&format!("ssh://{text}")));
        let (userinfo, rest) = match text.rfind('@') {
            Some(at) if !text[..at].contains('/') => (Some(&text[..at]), &text[at + 1..]),
            _ => (None, text),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                None => (Some(info.to_owned()), None),
            },
            None => (None, None),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (host, port, path) = match (rest.find(':'), rest.find('/')) {
            // host:port/path
            (Some(colon), Some(slash))
                if colon < slash
                    && !rest[colon + 1..slash].is_empty()
                    && rest[colon + 1..slash].bytes().all(|b| b.is_ascii_digit()) =>
            {
                let port = rest[colon + 1..slash].parse().map_err(|_| bad())?;
                (&rest[..colon], Some(port), rest[slash..].to_owned())
            }
            // host:path (relative to the home directory)
            (Some(colon), slash) if slash.is_none_or(|s| colon < s) => {
                (&rest[..colon], None, rest[colon + 1..].to_owned())
            }
            // host/path
            (_, Some(slash)) => (&rest[..slash], None, rest[slash..].to_owned()),
            _ => return Err(bad()),
        };
        if host.is_empty() || path.is_empty() || path == "/" {
            return Err(bad());
        }
        Ok(Target {
            user: user.map(|u| decode(&u)),
            password: password.map(|p| decode(&p)),
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// Quotes `text` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Opens `ssh://...` (the whole URL text).
pub(super) fn open(url: &str, options: &Options) -> Result<Remote, Error> {
    let target = Target::parse(url.trim_start_matches("ssh://"))?;
    let shown = super::redact_str(url);
    let mut command = match &target.password {
        Some(password) => {
            let mut c = Command::new("sshpass");
            c.arg("-e").arg("ssh").env("SSHPASS", password);
            c.args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ]);
            c
        }
        None => {
            let mut c = Command::new("ssh");
            c.args(["-o", "BatchMode=yes"]);
            c
        }
    };
    command.args([
        "-o",
        &format!(
            "ConnectTimeout={}",
            super::capped(options.connect_timeout).as_secs().max(1)
        ),
        "-o",
        "ServerAliveInterval=10",
        "-o",
        "ServerAliveCountMax=3",
        "-x",
        "-T",
    ]);
    if let Some(port) = target.port {
        command.arg("-p").arg(port.to_string());
    }
    if let Some(user) = &target.user {
        command.arg("-l").arg(user);
    }
    let path = quote(&target.path);
    // The size on the first line, then the bytes; "missing" when it cannot be read.
    let script = format!(
        "if test -f {path} && test -r {path}; then wc -c < {path} && exec cat < {path}; else echo missing; exit 3; fi"
    );
    command.arg("--").arg(&target.host).arg(script);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = if target.password.is_some() {
        "sshpass"
    } else {
        "ssh"
    };
    let mut child = command.spawn().map_err(|e| {
        Error::Ssh(if e.kind() == io::ErrorKind::NotFound {
            format!(
                "cannot read '{shown}': the '{program}' program is not installed{}",
                if program == "sshpass" {
                    " (it is needed for ssh URLs with a password)"
                } else {
                    ""
                }
            )
        } else {
            format!("cannot run {program} for '{shown}': {e}")
        })
    })?;
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let first =
        read_line(&mut stdout).map_err(|e| Error::Ssh(format!("cannot read '{shown}': {e}")))?;
    let mut reader = Reader {
        child,
        stdout,
        stderr: Some(stderr),
        shown: shown.clone(),
        done: false,
    };
    match first.trim() {
        "missing" => {
            let _ = reader.child.wait();
            Err(Error::NotFound(shown))
        }
        text => match text.parse::<u64>() {
            Ok(size) => Ok(Remote::Stream {
                reader: Box::new(reader),
                size: Some(size),
            }),
            Err(_) => {
                let message = reader
                    .failure()
                    .unwrap_or_else(|| format!("unexpected answer '{text}'"));
                Err(Error::Ssh(format!(
                    "cannot read '{shown}' over ssh: {message}"
                )))
            }
        },
    }
}

/// One line from the child's output, byte by byte (the rest is the file).
fn read_line(stdout: &mut ChildStdout) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        if stdout.read(&mut byte)? == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

struct Reader {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<ChildStderr>,
    shown: String,
    done: bool,
}

impl Reader {
    /// The child's exit status and last stderr line, when it failed.
    fn failure(&mut self) -> Option<String> {
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut text);
        }
        let status = self.child.wait().ok()?;
        if status.success() {
            return None;
        }
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned();
        Some(match (status.code(), last.is_empty()) {
            (Some(code), true) => format!("ssh exited with status {code}"),
            (Some(code), false) => format!("{last} (exit status {code})"),
            (None, _) => "ssh was killed".to_owned(),
        })
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 {
            self.done = true;
            if let Some(message) = self.failure() {
                return Err(io::Error::other(format!(
                    "reading '{}' over ssh failed: {message}",
                    self.shown
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        let t = Target::parse("user:pw@host/abs/img.gz").expect("slash form");
        assert_eq!(
            (
                t.user.as_deref(),
                t.password.as_deref(),
                t.host.as_str(),
                t.port,
                t.path.as_str()
            ),
            (Some("user"), Some("pw"), "host", None, "/abs/img.gz")
        );
        let t = Target::parse("user@host:dir/img").expect("colon form");
        assert_eq!((t.host.as_str(), t.path.as_str()), ("host", "dir/img"));
        let t = Target::parse("host:2222/abs/img").expect("port form");
        assert_eq!((t.port, t.path.as_str()), (Some(2222), "/abs/img"));
        assert!(Target::parse("host").is_err());
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
