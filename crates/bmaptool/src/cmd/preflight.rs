//! The check `copy` makes before DEST is opened for writing: DEST is none of the inputs
//! (the image, the bmap, its signature, the keyring), whatever names reach them. (The
//! image's size against its bmap's is checked by the library's `copy::Plan`.)

use std::fs::{File, Metadata};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use bmap::dest::same_storage;
use bmap::source::remote::Location;

use crate::cli::CopyArgs;

/// An input of the copy, and how to name it.
struct Input {
    what: &'static str,
    how: String,
    meta: Metadata,
}

/// Refuses a DEST that is the image, the bmap, the bmap's signature or the keyring,
/// comparing what the files are (device and inode, or the block device behind a node)
/// for every way of naming them: a path, a `file://` URL, standard input redirected
/// from a file, a symlink, a hard link, another node of the same device. `image` and
/// `bmap` are where they were found; run before DEST is opened (for every DEST).
pub fn check_dest_is_not_an_input(
    args: &CopyArgs,
    image: &Location,
    bmap: Option<&Location>,
) -> Result<()> {
    let inputs = inputs(args, image, bmap);
    for path in &args.dest {
        check_one(path, &inputs)?;
    }
    Ok(())
}

fn check_one(path: &Path, inputs: &[Input]) -> Result<()> {
    let Ok(dest) = std::fs::metadata(path) else {
        // Nothing there yet (or a dangling symlink): it cannot be an input.
        return Ok(());
    };
    for input in inputs {
        if same_storage(&input.meta, &dest) {
            bail!(
                "the destination '{}' is the {} itself ({}): writing it would destroy the {}; \
                 choose another destination",
                path.display(),
                input.what,
                input.how,
                input.what
            );
        }
    }
    Ok(())
}

/// The local inputs that exist, with their metadata.
fn inputs(args: &CopyArgs, image: &Location, bmap: Option<&Location>) -> Vec<Input> {
    let mut found = Vec::new();
    let mut add = |what, how: String, meta: Option<Metadata>| {
        if let Some(meta) = meta {
            found.push(Input { what, how, meta });
        }
    };
    if args.image == "-" {
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| File::from(fd).metadata().ok());
        add(
            "image",
            "standard input is redirected from it".into(),
            stdin,
        );
    } else if let Location::Local(path) = image {
        add("image", named("image", path), std::fs::metadata(path).ok());
    }
    let bmap_path = match bmap {
        Some(Location::Local(path)) => Some(path),
        _ => None,
    };
    if let Some(path) = bmap_path {
        add(
            "bmap file",
            named("bmap", path),
            std::fs::metadata(path).ok(),
        );
    }
    for path in signatures(args, bmap_path) {
        let how = named("signature", &path);
        add("bmap's signature file", how, std::fs::metadata(&path).ok());
    }
    if let Some(path) = &args.signature.keyring {
        add(
            "keyring",
            named("keyring", path),
            std::fs::metadata(path).ok(),
        );
    }
    found
}

/// How an input was named, for the message.
fn named(what: &str, path: &Path) -> String {
    format!("the {what} is '{}'", path.display())
}

/// The signature files that may be read: `--bmap-sig`, or those beside a local bmap.
fn signatures(args: &CopyArgs, bmap: Option<&PathBuf>) -> Vec<PathBuf> {
    if args.signature.no_sig_verify {
        return Vec::new();
    }
    if let Some(name) = &args.signature.bmap_sig {
        return match crate::input::locate(name) {
            Ok(Location::Local(path)) => vec![path],
            _ => Vec::new(),
        };
    }
    bmap.map(|path| bmap::discover::signature_candidate_paths(path))
        .unwrap_or_default()
}
