//! Inputs named on the command line: how an argument becomes a local path or a URL.
//! (Small files are read whole, capped and interruptibly, by the library's
//! `bmap::trust`.)

use std::ffi::OsStr;
use std::path::PathBuf;

use bmap::source::remote::{self, Location};

/// Where an argument points: a URL only when it is valid UTF-8 and has a scheme
/// (`remote::locate` decides); anything else is a local path, byte for byte.
pub fn locate(arg: &OsStr) -> Result<Location, remote::Error> {
    match arg.to_str() {
        Some(text) => remote::locate(text),
        None => Ok(Location::Local(PathBuf::from(arg))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_utf8_arguments_can_be_urls() {
        use std::os::unix::ffi::OsStrExt;
        let url = locate(OsStr::new("http://example.org/x.img")).expect("a URL");
        assert!(matches!(url, Location::Url(_)));
        let bytes = b"http://example.org/\xff.img";
        let local = locate(OsStr::from_bytes(bytes)).expect("a local path");
        assert!(
            matches!(&local, Location::Local(p) if p.as_os_str().as_bytes() == bytes),
            "{local:?}"
        );
    }
}
