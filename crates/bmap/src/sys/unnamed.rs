//! Unnamed files (`O_TMPFILE`): a new destination is written as an inode without a
//! name and linked to its path only once it is complete, so that a run killed by
//! SIGKILL (or a power loss) leaves no half-written file behind: the kernel frees the
//! unnamed inode when its last descriptor closes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Mode, OFlags};

/// Opens an unnamed regular file in directory `dir`, read-write, with mode 0666 less
/// the umask (as `O_CREAT` would). Fails with an error [`refused`] says yes to where
/// the file system or kernel has no `O_TMPFILE` (FUSE, NFS, old kernels).
pub fn open_unnamed(dir: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )?;
    Ok(File::from(fd))
}

/// Whether an error of [`open_unnamed`] means "no `O_TMPFILE` here" (the caller then
/// makes a named file), rather than a real failure (permissions, no such directory).
pub fn refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
    )
}

/// Gives `file`, opened by [`open_unnamed`], the name `path`; fails with `EEXIST` when
/// the name was taken in the meantime (it is never replaced). Through
/// `/proc/self/fd`, or, without `/proc`, with `AT_EMPTY_PATH` (which needs
/// `CAP_DAC_READ_SEARCH`).
pub fn link_unnamed(file: &File, path: &Path) -> io::Result<()> {
    let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, by_fd.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
        Err(rustix::io::Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
            rustix::fs::linkat(file, "", CWD, path, AtFlags::EMPTY_PATH)?;
            Ok(())
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn an_unnamed_file_appears_only_when_linked_with_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = match open_unnamed(dir.path()) {
            Err(e) if refused(&e) => return,
            other => other.expect("open_unnamed"),
        };
        file.write_all(b"complete").expect("write");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        let path = dir.path().join("out.img");
        link_unnamed(&file, &path).expect("link");
        assert_eq!(std::fs::read(&path).expect("read"), b"complete");
        let again = link_unnamed(&file, &path).expect_err("the name is taken");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        file.rewind().expect("rewind");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read back");
        assert_eq!(text, "complete");
    }

    #[test]
    fn an_unnamed_file_never_linked_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        match open_unnamed(dir.path()) {
            Err(e) if refused(&e) => return,
            other => drop(other.expect("open_unnamed")),
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
