//! Finding the bmap beside an image, in the reference's order: `IMAGE.bmap`, then one
//! extension stripped at a time (`disk.img.gz` -> `disk.img.gz.bmap`, `disk.img.bmap`,
//! `disk.bmap`). Only the last path component loses extensions; a leading dot does
//! not start an extension (as Python's `os.path.splitext`).

/// Candidate bmap names for `image`, most specific first.
pub fn bmap_candidates(image: &str) -> Vec<String> {
    let mut candidates = Vec::new();
    let mut stem = image;
    loop {
        candidates.push(format!("{stem}.bmap"));
        match strip_extension(stem) {
            Some(shorter) => stem = shorter,
            None => return candidates,
        }
    }
}

/// `stem` without its last extension, or `None` when it has none.
fn strip_extension(path: &str) -> Option<&str> {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let name = &path[name_start..];
    let dot = name.rfind('.')?;
    // Leading dots belong to the name (".bashrc" has no extension).
    if name[..dot].bytes().all(|b| b == b'.') {
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
    }
}
