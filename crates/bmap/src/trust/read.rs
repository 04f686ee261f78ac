//! Small local files read whole (a bmap, its detached signature, a keyring): capped in
//! size, and interruptible even when the file is an endless device such as
//! `/dev/zero` or a FIFO whose writer is slow or silent.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::Interrupt;
use crate::format::human_size;

/// The most bytes read from a kind of input, and what to call that input.
#[derive(Debug)]
pub struct Cap {
    /// The limit, in bytes.
    pub bytes: u64,
    /// The input's name in messages.
    pub what: &'static str,
}

/// A bmap: 128 MiB. The largest real bmaps list tens of thousands of ranges (about 110
/// bytes a line with a SHA-256), a few MB; this holds the most ranges the parser accepts
/// ([`MAX_RANGES`](crate::format::limits::MAX_RANGES), 2^20) at that line length, and
/// is read into memory whole, so it also bounds what a hostile file costs. A regular
/// file over it is refused before any byte is read; a stream (a pipe, a device, a URL)
/// is read up to it and no further.
pub const BMAP: Cap = Cap {
    bytes: 128 << 20,
    what: "bmap file",
};

/// A detached signature (real ones are a few hundred bytes).
pub const SIGNATURE: Cap = Cap {
    bytes: 1 << 20,
    what: "signature",
};

/// A keyring or keybox: generous, since real ones range from kilobytes to tens of
/// MiB; the cap only stops an endless or mistaken file.
pub const KEYRING: Cap = Cap {
    bytes: 256 << 20,
    what: "keyring",
};

/// Why a file could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error(transparent)]
    Io(io::Error),
    /// The file holds more than its cap allows.
    #[error(
        "it is larger than {} ({} bytes), the most bmaptool reads for a {}: check that the \
         right file was named", human_size(.0.bytes), .0.bytes, .0.what
    )]
    TooLarge(&'static Cap),
    /// The interrupt flag was raised while waiting or reading.
    #[error("interrupted")]
    Interrupted,
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// Bytes per read.
const CHUNK: usize = 256 << 10;

/// How long a wait for data lasts before the interrupt flag is looked at again.
const POLL: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// Reads the file at `path` whole, refusing more than `cap` bytes. The file is opened
/// with `O_NONBLOCK`, so a FIFO without a writer does not block the open, and every
/// read waits in `poll`, which wakes to look at `interrupt`: a signal ends the wait
/// for a silent writer, and the flood from an endless device, within a moment.
pub fn read_capped(
    path: &Path,
    cap: &'static Cap,
    interrupt: &Interrupt,
) -> Result<Vec<u8>, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::Io)?;
    let length = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    if length.is_some_and(|len| len > cap.bytes) {
        return Err(ReadError::TooLarge(cap));
    }
    let expected = length.unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    let mut chunk = vec![0u8; CHUNK];
    loop {
        wait_readable(&file, interrupt)?;
        match (&file).read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                if bytes.len() as u64 > cap.bytes {
                    return Err(ReadError::TooLarge(cap));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Waits until `file` can be read (data, end of file or an error), looking at
/// `interrupt` at least every [`POLL`]. A FIFO that no writer has opened yet is not
/// readable (Linux reports its hang-up only after a writer came and went), so its
/// first read does not mistake the missing writer for an empty file.
fn wait_readable(file: &File, interrupt: &Interrupt) -> Result<(), ReadError> {
    loop {
        if interrupt.is_raised() {
            return Err(ReadError::Interrupted);
        }
        let mut fds = [PollFd::new(file, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&POLL)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(ReadError::Io(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SMALL: Cap = Cap {
        bytes: 10,
        what: "test file",
    };

    #[test]
    fn a_file_within_its_cap_is_read_whole_and_one_byte_more_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        let read_back = read_capped(&path, &SMALL, &Interrupt::new()).expect("within the cap");
        assert_eq!(read_back, b"0123456789");
        std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"x"))
            .expect("append");
        let err = read_capped(&path, &SMALL, &Interrupt::new()).expect_err("over the cap");
        assert!(matches!(err, ReadError::TooLarge(_)), "{err:?}");
        assert!(err.to_string().contains("10 bytes"), "{err}");
    }

    #[test]
    fn a_missing_file_is_not_found_and_a_raised_flag_stops_the_read() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let missing = read_capped(&dir.path().join("none"), &SMALL, &Interrupt::new());
        assert!(missing.is_err_and(|e| e.is_not_found()));
        let interrupt = Interrupt::new();
        interrupt.raise();
        let stopped = read_capped(Path::new("/dev/zero"), &BMAP, &interrupt);
        assert!(matches!(stopped, Err(ReadError::Interrupted)));
    }
}
