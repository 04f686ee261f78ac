//! Whether writing one file changes the bytes of another, judged by what the files are
//! (device and inode, or the block device behind a node), not by how they are named:
//! a symlink, a hard link, a `file://` URL, standard input redirected from a file, a
//! second device node, or a loop device (or one of its partitions) backed by the file
//! all reach the same storage.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// Whether writing the file or device `dest` changes the bytes of `input`: the same
/// regular file, the same block device through any node, or a block device and one of
/// its partitions, a loop device (or a partition of one) backed by the file. Other nodes
/// hold no bytes to destroy (`/dev/null` may well be both the input and DEST).
pub fn same_storage(input: &Metadata, dest: &Metadata) -> bool {
    let same_file = |m: &Metadata| m.is_file() && m.dev() == input.dev() && m.ino() == input.ino();
    if input.is_file() && dest.is_file() {
        return same_file(dest);
    }
    if input.is_file() && dest.file_type().is_block_device() {
        let rdev = dest.rdev();
        return [Some(rdev), disk_of(rdev)]
            .into_iter()
            .flatten()
            .filter_map(loop_backing_file)
            .any(|backing| std::fs::metadata(backing).is_ok_and(|m| same_file(&m)));
    }
    let block = |m: &Metadata| m.file_type().is_block_device().then(|| m.rdev());
    let (Some(a), Some(b)) = (block(input), block(dest)) else {
        return false;
    };
    a == b || disk_of(a) == Some(b) || disk_of(b) == Some(a)
}

/// The backing file of the loop device `rdev` (`None` when it is not a bound loop device).
fn loop_backing_file(rdev: u64) -> Option<PathBuf> {
    let attribute = format!(
        "/sys/dev/block/{}:{}/loop/backing_file",
        rustix::fs::major(rdev),
        rustix::fs::minor(rdev)
    );
    super::loops::backing_path(&std::fs::read_to_string(attribute).ok()?)
}

/// The whole disk a partition belongs to (its `MAJ:MIN`); `None` for a whole disk.
fn disk_of(rdev: u64) -> Option<u64> {
    let link = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        rustix::fs::major(rdev),
        rustix::fs::minor(rdev)
    ));
    let dir = std::fs::canonicalize(link).ok()?;
    if !dir.join("partition").exists() {
        return None;
    }
    let text = std::fs::read_to_string(dir.parent()?.join("dev")).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some(rustix::fs::makedev(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_link_and_a_symlink_are_the_same_file_and_a_copy_is_not() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("image");
        std::fs::write(&file, b"bytes").expect("write");
        let link = dir.path().join("hard");
        std::fs::hard_link(&file, &link).expect("hard link");
        let symlink = dir.path().join("soft");
        std::os::unix::fs::symlink(&file, &symlink).expect("symlink");
        let copy = dir.path().join("copy");
        std::fs::copy(&file, &copy).expect("copy");
        let meta = |p: &std::path::Path| std::fs::metadata(p).expect("stat");
        assert!(same_storage(&meta(&file), &meta(&link)));
        assert!(same_storage(&meta(&file), &meta(&symlink)));
        assert!(!same_storage(&meta(&file), &meta(&copy)));
    }

    #[test]
    fn dev_null_as_input_and_destination_destroys_nothing() {
        let null = std::fs::metadata("/dev/null").expect("stat /dev/null");
        assert!(!same_storage(&null, &null));
    }
}
