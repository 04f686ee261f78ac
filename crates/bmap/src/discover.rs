//! Finding the bmap beside an image, in the reference's order: `IMAGE.bmap`, then one
//! extension stripped at a time (`disk.img.gz` -> `disk.img.gz.bmap`, `disk.img.bmap`,
//! `disk.bmap`). Only the last path component loses extensions; a leading dot does
//! not start an extension (as Python's `os.path.splitext`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Candidate bmap names for `image`, most specific first.
pub fn bmap_candidates(image: &str) -> Vec<String> {
    stems(image.as_bytes())
        .into_iter()
        .map(|len| format!("{}.bmap", &image[..len]))
        .collect()
}

/// Candidate detached-signature names for `bmap`: `.asc` then `.sig` after the bmap's
/// name, then after the name with one extension stripped at a time.
pub fn signature_candidates(bmap: &str) -> Vec<String> {
    stems(bmap.as_bytes())
        .into_iter()
        .flat_map(|len| {
            let stem = &bmap[..len];
            [format!("{stem}.asc"), format!("{stem}.sig")]
        })
        .collect()
}

/// [`bmap_candidates`] for a local path, which need not be UTF-8.
pub fn bmap_candidate_paths(image: &Path) -> Vec<PathBuf> {
    with_suffixes(image, &[".bmap"])
}

/// [`signature_candidates`] for a local path, which need not be UTF-8.
pub fn signature_candidate_paths(bmap: &Path) -> Vec<PathBuf> {
    with_suffixes(bmap, &[".asc", ".sig"])
}

fn with_suffixes(path: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let bytes = path.as_os_str().as_bytes();
    stems(bytes)
        .into_iter()
        .flat_map(|len| {
            suffixes.iter().map(move |suffix| {
                let mut name = bytes[..len].to_vec();
                name.extend_from_slice(suffix.as_bytes());
                PathBuf::from(OsStr::from_bytes(&name))
            })
        })
        .collect()
}

/// The lengths of `name`, then of `name` with one more extension stripped each time.
/// Every cut is at an ASCII `.`, so a UTF-8 name stays UTF-8.
fn stems(name: &[u8]) -> Vec<usize> {
    let mut stems = vec![name.len()];
    let mut stem = name;
    while let Some(shorter) = strip_extension(stem) {
        stems.push(shorter.len());
        stem = shorter;
    }
    stems
}

/// `stem` without its last extension, or `None` when it has none.
fn strip_extension(path: &[u8]) -> Option<&[u8]> {
    let name_start = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let name = &path[name_start..];
    let dot = name.iter().rposition(|&b| b == b'.')?;
    // Leading dots belong to the name (".bashrc" has no extension).
    if name[..dot].iter().all(|&b| b == b'.') {
        return None;
    }
    Some(&path[..name_start + dot])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_order() {
        assert_eq!(
            bmap_candidates("disk.img.gz"),
            ["disk.img.gz.bmap", "disk.img.bmap", "disk.bmap"]
        );
        assert_eq!(bmap_candidates("/a.d/img"), ["/a.d/img.bmap"]);
        assert_eq!(bmap_candidates("dir/.hidden"), ["dir/.hidden.bmap"]);
        assert_eq!(bmap_candidates("x/..a.b"), ["x/..a.b.bmap", "x/..a.bmap"]);
        assert_eq!(bmap_candidates("a..b"), ["a..b.bmap", "a..bmap", "a.bmap"]);
        assert_eq!(
            signature_candidates("d/x.img.bmap"),
            [
                "d/x.img.bmap.asc",
                "d/x.img.bmap.sig",
                "d/x.img.asc",
                "d/x.img.sig",
                "d/x.asc",
                "d/x.sig"
            ]
        );
    }

    #[test]
    fn paths_that_are_not_utf8_keep_their_bytes() {
        let image = PathBuf::from(OsStr::from_bytes(b"d\xff/x\xfe.img.gz"));
        let want: Vec<PathBuf> = [
            &b"d\xff/x\xfe.img.gz.bmap"[..],
            b"d\xff/x\xfe.img.bmap",
            b"d\xff/x\xfe.bmap",
        ]
        .iter()
        .map(|b| PathBuf::from(OsStr::from_bytes(b)))
        .collect();
        assert_eq!(bmap_candidate_paths(&image), want);
        let bmap = PathBuf::from(OsStr::from_bytes(b"\xff.bmap"));
        let want: Vec<PathBuf> = [
            &b"\xff.bmap.asc"[..],
            b"\xff.bmap.sig",
            b"\xff.asc",
            b"\xff.sig",
        ]
        .iter()
        .map(|b| PathBuf::from(OsStr::from_bytes(b)))
        .collect();
        assert_eq!(signature_candidate_paths(&bmap), want);
        assert_eq!(
            bmap_candidate_paths(Path::new("disk.img.gz")),
            bmap_candidates("disk.img.gz")
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
    }
}
