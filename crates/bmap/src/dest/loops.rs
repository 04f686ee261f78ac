//! Loop devices that read from the destination: one whose backing file is the
//! destination file, or the destination device or one of its partitions. Writing
//! under a live loop device corrupts whatever uses it, and the kernel lists no holder
//! for a loop device's backing file, so `holders` does not show it.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A bound loop device and its backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Backed {
    /// `loopN`.
    pub(super) device: String,
    /// The backing file, as the kernel names it.
    pub(super) backing: PathBuf,
}

/// The first bound loop device whose backing file satisfies `is_dest`.
fn find(is_dest: impl Fn(&Metadata) -> bool) -> Option<Backed> {
    let mut found: Vec<Backed> = bound()
        .into_iter()
        .filter(|b| std::fs::metadata(&b.backing).is_ok_and(|m| is_dest(&m)))
        .collect();
    // The lowest number first, so that the message does not depend on sysfs order.
    found.sort_by_key(|b| (b.device.len(), b.device.clone()));
    found.into_iter().next()
}

/// A loop device backed by the regular file `dest`.
pub(super) fn backed_by_file(dest: &Metadata) -> Option<Backed> {
    find(|m| m.is_file() && m.dev() == dest.dev() && m.ino() == dest.ino())
}

/// Why a block device must not be written when a loop device reads from it or from
/// one of its partitions; `family` holds `(name, device number, sysfs dir)` of the
/// device and its partitions.
pub(super) fn reading_device(family: &[(String, u64, PathBuf)]) -> Option<String> {
    let member = |m: &Metadata| {
        family
            .iter()
            .find(|(_, dev, _)| m.file_type().is_block_device() && *dev == m.rdev())
            .map(|(name, _, _)| name.clone())
    };
    let backed = find(|m| member(m).is_some())?;
    let name = std::fs::metadata(&backed.backing)
        .ok()
        .and_then(|m| member(&m))
        .unwrap_or_else(|| backed.backing.display().to_string());
    Some(format!(
        "loop device /dev/{} reads from {name} (detach it with 'losetup -d /dev/{}')",
        backed.device, backed.device
    ))
}

/// Every bound loop device with its backing file (`/sys/block/loop*/loop/backing_file`).
fn bound() -> Vec<Backed> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let device = entry.file_name().to_string_lossy().into_owned();
            if !device.starts_with("loop") {
                return None;
            }
            let text = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            backing_path(&text).map(|backing| Backed { device, backing })
        })
        .collect()
}

/// The path in a `backing_file` attribute; `None` for a file deleted since (no other
/// name can reach it).
pub(super) fn backing_path(text: &str) -> Option<PathBuf> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() || text.ends_with(" (deleted)") {
        return None;
    }
    Some(Path::new(text).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_file_attribute() {
        assert_eq!(
            backing_path("/tmp/a b.img\n"),
            Some(PathBuf::from("/tmp/a b.img"))
        );
        assert_eq!(backing_path("/tmp/x.img (deleted)\n"), None);
        assert_eq!(backing_path("\n"), None);
    }
}
