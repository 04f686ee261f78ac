//! The fault tests' own harness (`faults.rs`): a block device with bad sectors (a loop
//! device over a file served by `tests/fixtures/eiofs.py`, a FUSE file system that
//! fails reads or writes in a byte range), a run of the binary watched through its
//! JSON progress lines (`--progress-fd 1`) and frozen with SIGSTOP at a state it
//! reports, and a seeded random number generator whose seed every test prints.
//!
//! What every test binary shares comes from `copy_support` and `test_support`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;
use test_support::procfs::{self, HANG};
use test_support::{Helper, KillOnDrop, eventually, is_root, require, runs, send_signal, succeeds};

/// The Python of the Debian packages (`python3-fusepy` installs for it, whatever
/// `python3` on PATH is).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Root, `/dev/fuse`, loop devices and fusepy (Debian `python3-fusepy`, `libfuse2`).
#[track_caller]
pub fn need_fuse() -> bool {
    require(
        is_root()
            && Path::new("/dev/fuse").exists()
            && Path::new("/dev/loop-control").exists()
            && runs(SYSTEM_PYTHON, &["-c", "import fusepy"]),
        "root, /dev/fuse, loop devices and fusepy (apt-get install python3-fusepy libfuse2)",
    )
}

/// A loop device whose reads (`"r"`), writes (`"w"`) or both (`"rw"`) fail with EIO
/// in a byte range: a file of `size` zero bytes served through eiofs.py (FUSE, direct
/// I/O), attached to a loop device. Detached, unmounted and stopped on drop.
#[derive(Debug)]
pub struct EioDisk {
    device: Option<PathBuf>,
    mount: PathBuf,
    helper: Option<Helper>,
    _dir: TempDir,
}

impl EioDisk {
    /// Serves the file and attaches a loop device to it.
    pub fn new(size: u64, bad: (u64, u64), what: &str) -> EioDisk {
        let mut disk = EioDisk::file_only(size, bad, what);
        let out = succeeds(
            Command::new("losetup")
                .args(["-f", "--show"])
                .arg(disk.file()),
        );
        disk.device = Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        disk
    }

    /// Serves the file only (no loop device: [`EioDisk::path`] panics).
    pub fn file_only(size: u64, bad: (u64, u64), what: &str) -> EioDisk {
        let dir = crate::copy_support::tempdir();
        let backing = dir.path().join("backing.img");
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(size))
            .expect("make the backing file");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("make the mount point");
        let mut cmd = Command::new(SYSTEM_PYTHON);
        cmd.arg(test_support::fixtures().join("eiofs.py"))
            .arg(&backing)
            .arg(&mount)
            .args([bad.0.to_string(), bad.1.to_string(), what.to_owned()]);
        let (helper, line) = Helper::start("eiofs", cmd).expect("eiofs.py starts");
        assert_eq!(line, "ready", "eiofs.py said {line:?}");
        let disk = EioDisk {
            device: None,
            mount,
            helper: Some(helper),
            _dir: dir,
        };
        assert!(
            eventually(HANG, || disk.file().exists()),
            "the FUSE file never appeared"
        );
        disk
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        self.device.as_deref().expect("attached")
    }

    /// The FUSE file itself (a regular file whose I/O fails in the range).
    pub fn file(&self) -> PathBuf {
        self.mount.join("disk")
    }

    /// What eiofs.py logged (each refused read and write).
    pub fn log(&self) -> String {
        self.helper.as_ref().map(Helper::log).unwrap_or_default()
    }
}

impl Drop for EioDisk {
    fn drop(&mut self) {
        if let Some(device) = self.device.take() {
            let path = device.to_string_lossy().into_owned();
            if !eventually(Duration::from_secs(30), || runs("losetup", &["-d", &path])) {
                eprintln!("warning: cannot detach {path}");
            }
        }
        let mount = self.mount.to_string_lossy().into_owned();
        if !(runs("umount", &[&mount]) || runs("umount", &["-l", &mount])) {
            eprintln!("warning: cannot unmount {mount}");
        }
        drop(self.helper.take());
    }
}

/// A run of the binary with its JSON progress lines on stdout (`--progress-fd 1`,
/// which the caller passes), read by a thread so that the tool never blocks on them,
/// and its stderr collected.
pub struct Watched {
    /// The process (killed on drop).
    pub child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Watched {
    /// Starts `cmd` (stdin null, stdout and stderr piped).
    pub fn start(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bmaptool starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Watched {
            child: KillOnDrop(child),
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Waits for a progress line holding every one of `needles`; `false` when the
    /// output ends (the process exited) or [`HANG`] passes first.
    pub fn wait_line(&mut self, needles: &[&str]) -> bool {
        let deadline = std::time::Instant::now() + HANG;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = needles.iter().all(|n| line.contains(n));
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Stops every thread (SIGSTOP) and waits until they are; `false` when the
    /// process had already exited.
    pub fn freeze(&self) -> bool {
        let pid = self.pid();
        if procfs::exited(pid) || !send_signal(&self.child.0, "STOP") {
            return false;
        }
        assert!(
            procfs::within_hang(|| procfs::exited(pid) || procfs::all_threads_stopped(pid)),
            "bmaptool did not stop"
        );
        !procfs::exited(pid)
    }

    /// Lets it go on (SIGCONT).
    pub fn thaw(&self) {
        send_signal(&self.child.0, "CONT");
    }

    /// Bytes it has read so far (`rchar`).
    pub fn read_chars(&self) -> u64 {
        procfs::read_chars(self.pid()).unwrap_or(0)
    }

    /// Waits for the exit; the exit code (`None`: killed by a signal) and stderr.
    pub fn finish(mut self) -> (Option<i32>, String, Vec<String>) {
        let status = test_support::wait_for(&mut self.child.0, HANG)
            .unwrap_or_else(|| panic!("bmaptool still runs after {} s", HANG.as_secs()));
        let text = self.stderr.join().unwrap_or_default();
        self.seen.extend(self.lines.try_iter());
        (status.code(), text, self.seen)
    }
}

/// Sends `sig` to a child; whether it was delivered.
pub fn kill(child: &Child, sig: &str) -> bool {
    send_signal(child, sig)
}

/// The seed of a test's random choices: `BMAPTOOL_FAULT_SEED` when set (to replay a
/// failure), else the clock; printed either way.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("BMAPTOOL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: seed {seed} (replay with BMAPTOOL_FAULT_SEED={seed})");
    seed
}

/// The seeded generator of fault points.
pub use test_support::SplitMix as Rng;
