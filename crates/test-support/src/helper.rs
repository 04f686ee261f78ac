//! Helper processes: a server a test starts (killed on drop; it also exits by itself
//! when the test process goes away, because it watches its standard input), its log,
//! and the wait until it listens. The test servers of every binary start this way.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a helper server may take to start (to say which port it listens on, or
/// to listen) on a busy machine; it only bounds a hang.
pub const START_LIMIT: Duration = Duration::from_secs(120);

/// A fresh directory for scratch files (logs, certificates).
pub fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("bmaptool-test-")
        .tempdir()
        .expect("cannot make a temporary directory")
}
/// A server process: killed on drop; it also exits when its stdin (held here) closes.
#[derive(Debug)]
pub struct Helper {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    _logdir: TempDir,
}

impl Helper {
    /// Starts `cmd` with stdout piped and returns it with the first line it printed.
    /// `None` when it exited or stayed silent for [`START_LIMIT`] (the log is printed).
    pub fn start(name: &str, mut cmd: Command) -> Option<(Helper, String)> {
        let logdir = scratch_dir();
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
    pub fn log(&self) -> String {
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
pub fn wait_listening(helper: &mut Helper, port: u16, says: &[&str]) -> bool {
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
