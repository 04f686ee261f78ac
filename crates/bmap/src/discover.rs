//! Finding the bmap beside an image, in the reference's order: `IMAGE.bmap`, then one
//! extension stripped at a time (`disk.img.gz` -> `disk.img.gz.bmap`, `disk.img.bmap`,
//! `disk.bmap`). Only the last path component loses extensions; a leading dot does
//! not start an extension (as Python's `os.path.splitext`).

/// Candidate bmap names for `image`, most specific first.
pub fn bmap_candidates(image: &str) -> Vec<String> {
    stems(image)
        .into_iter()
        .map(|stem| format!("{stem}.bmap"))
        .collect()
}

/// Candidate detached-signature names for `bmap`: `.asc` then `.sig` after the bmap's
/// name, then after the name with one extension stripped at a time.
pub fn signature_candidates(bmap: &str) -> Vec<String> {
    stems(bmap)
        .into_iter()
        .flat_map(|stem| [format!("{stem}.asc"), format!("{stem}.sig")])
        .collect()
}

/// `name`, then `name` with one more extension stripped each time.
fn stems(name: &str) -> Vec<&str> {
    let mut stems = vec![name];
    let mut stem = name;
    while let Some(shorter) = strip_extension(stem) {
        stems.push(shorter);
        stem = shorter;
    }
    stems
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
}
