//! Sparseness checks of a copy: where its data is (`SEEK_DATA`/`SEEK_HOLE`), which
//! blocks the file system gave it (`FIEMAP`), and what it allocated in all (`st_blocks`),
//! each read with tools independent of the product (python3, `stat`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::{BmapFacts, PAGE, merge, succeeds};

/// Bytes allocated to a file (`stat -c %b` times 512).
pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .blocks()
        * 512
}

/// Whether `path` is on tmpfs, where `st_blocks` counts data pages only.
pub fn on_tmpfs(path: &Path) -> bool {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .expect("stat runs");
    String::from_utf8_lossy(&out.stdout).trim() == "tmpfs"
}

/// The 4 KiB pages of a file that hold data, from SEEK_DATA/SEEK_HOLE (via python3).
pub fn data_pages(path: &Path) -> Vec<(u64, u64)> {
    const PROBE: &str = "
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
off = 0
while off < size:
    try:
        data = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    hole = os.lseek(fd, data, os.SEEK_HOLE)
    print(data, hole)
    off = hole
";
    let out = succeeds(Command::new("python3").args(["-c", PROBE]).arg(path));
    merge(String::from_utf8_lossy(&out.stdout).lines().map(|line| {
        let (data, hole) = line.split_once(' ').expect("two numbers");
        let data: u64 = data.parse().expect("offset");
        let hole: u64 = hole.parse().expect("offset");
        (data / PAGE, hole.div_ceil(PAGE) - 1)
    }))
}

/// One extent `FIEMAP` reports: file offset, length (bytes) and `fe_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub length: u64,
    pub flags: u32,
}

/// `FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_UNWRITTEN`: blocks
/// that are allocated (or promised) but hold no data a reader sees.
const NOT_WRITTEN: u32 = 0x2 | 0x4 | 0x800;

/// Every extent of a file, past its end too (what `fallocate` or speculative
/// preallocation would add), from `FS_IOC_FIEMAP` with `FIEMAP_FLAG_SYNC` (via python3);
/// `None` where the file system has no `FIEMAP` (tmpfs before Linux 6.x, FUSE).
pub fn fiemap_extents(path: &Path) -> Option<Vec<Extent>> {
    const PROBE: &str = "
import errno, fcntl, os, struct, sys
FS_IOC_FIEMAP, SYNC, LAST, COUNT, HEAD, EXT = 0xC020660B, 1, 1, 256, 32, 56
fd = os.open(sys.argv[1], os.O_RDONLY)
start = 0
while True:
    buf = bytearray(struct.pack('=QQIIII', start, 2**64 - 1 - start, SYNC, 0, COUNT, 0))
    buf += bytes(EXT * COUNT)
    try:
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOTTY):
            print('unsupported')
            sys.exit(0)
        raise
    mapped = struct.unpack_from('=I', buf, 20)[0]
    last = None
    for i in range(mapped):
        logical, _, length, _, _, flags = struct.unpack_from('=QQQQQI', buf, HEAD + EXT * i)
        print(logical, length, flags)
        last = (logical, length, flags)
    if last is None or last[2] & LAST:
        break
    start = last[0] + last[1]
";
    let out = succeeds(Command::new("python3").args(["-c", PROBE]).arg(path));
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim() == "unsupported" {
        return None;
    }
    let extents = text.lines().map(|line| {
        let mut numbers = line.split(' ').map(|n| n.parse::<u64>().expect("a number"));
        let mut next = || numbers.next().expect("three numbers");
        Extent {
            logical: next(),
            length: next(),
            flags: u32::try_from(next()).expect("32-bit flags"),
        }
    });
    Some(extents.collect())
}

/// Asserts that a copy is as sparse as its bmap: data exactly in the mapped pages
/// (`SEEK_DATA`); where the file system has `FIEMAP`, blocks allocated exactly to the
/// mapped pages, none of them unwritten or delayed, none past them; and the allocation
/// (`st_blocks`) equal to the mapped data on tmpfs, elsewhere the mapped data plus at
/// most the file system's block-mapping metadata for that many extents.
///
/// That metadata is not fixed: ext4 keeps 4 extents in the inode and 340 per 4 KiB
/// tree leaf, and a leaf split moves the extents after the insertion point to a new
/// leaf. The copy writes each range when its hasher is done with it, not strictly in
/// image order, so under load leaves end up part full: for `many.img`'s 2700 one-block
/// extents, 9 tree blocks written in order, up to 15 measured on a busy 2-core machine
/// (16 written in random order). The bound allows one tree block per 32 extents (leaves
/// a tenth full) plus 2 index blocks; the exact check is the `FIEMAP` one.
#[track_caller]
pub fn assert_sparse_as(dest: &Path, facts: &BmapFacts) {
    let expected_pages = facts.pages();
    assert_eq!(
        data_pages(dest),
        expected_pages,
        "{}: data is not exactly where the bmap maps it",
        dest.display()
    );
    let mapped: u64 = expected_pages.iter().map(|(a, b)| (b - a + 1) * PAGE).sum();
    let got = allocated(dest);
    if on_tmpfs(dest) {
        assert_eq!(got, mapped, "{}: allocated bytes", dest.display());
        return;
    }
    let extents = match fiemap_extents(dest) {
        Some(extents) => {
            assert_allocated_as_mapped(dest, &extents, &expected_pages);
            extents.len()
        }
        None => expected_pages.len(),
    };
    let metadata = PAGE * (2 + extents as u64 / 32);
    assert!(
        (mapped..=mapped + metadata).contains(&got),
        "{}: {got} bytes allocated, expected the {mapped} mapped bytes (plus at most \
         {metadata} of file system metadata for {extents} extents)",
        dest.display()
    );
}

/// Asserts that the extents `FIEMAP` reports cover exactly the mapped pages, all
/// written.
#[track_caller]
fn assert_allocated_as_mapped(dest: &Path, extents: &[Extent], expected_pages: &[(u64, u64)]) {
    let not_written: Vec<&Extent> = extents
        .iter()
        .filter(|e| e.flags & NOT_WRITTEN != 0)
        .collect();
    assert!(
        not_written.is_empty(),
        "{}: extents allocated but not written (unwritten, delayed or unknown): {:?}",
        dest.display(),
        not_written
    );
    let pages = merge(
        extents
            .iter()
            .filter(|e| e.length > 0)
            .map(|e| (e.logical / PAGE, (e.logical + e.length).div_ceil(PAGE) - 1)),
    );
    assert_eq!(
        pages,
        expected_pages,
        "{}: the file system allocated blocks other than the mapped ones",
        dest.display()
    );
}
