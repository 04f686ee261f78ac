//! The rule every error of the library follows: its message says what its own layer
//! knows (paths, offsets, URLs, line numbers) and leaves its cause to `source()`, so
//! that a caller printing the chain (as `bmaptool` does, joined by ": ") shows each
//! cause once. A message that embedded its source's text printed it twice.

use std::error::Error;
use std::io;
use std::path::PathBuf;

use bmap::format::{ChecksumKind, parse};
use bmap::source::remote;
use bmap::{copy, create, dest, layout, source};

/// An OS error ("No such file or directory", ENOENT on Linux).
fn os() -> io::Error {
    io::Error::from_raw_os_error(2)
}

/// Asserts that `error` has a cause and that no message of its chain contains the
/// text of the cause under it.
#[track_caller]
fn assert_cause_left_to_the_chain(error: &(dyn Error + 'static)) {
    assert!(error.source().is_some(), "{error}: no source");
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(cause) = e.source() {
            let (text, cause_text) = (e.to_string(), cause.to_string());
            assert!(
                !text.contains(&cause_text),
                "{text:?} repeats its source {cause_text:?}"
            );
        }
        current = e.source();
    }
}

#[test]
fn io_causes_are_left_to_the_chain() {
    let path = PathBuf::from("/x/disk.img");
    let errors: Vec<Box<dyn Error>> = vec![
        Box::new(source::Error::Open {
            path: path.clone(),
            source: os(),
        }),
        Box::new(source::Error::Decode {
            name: "disk.img.gz".into(),
            format: "gzip".into(),
            source: os(),
        }),
        Box::new(dest::Error::Open {
            path: path.clone(),
            source: os(),
        }),
        Box::new(dest::Error::Io {
            action: "write",
            path: path.clone(),
            source: os(),
        }),
        Box::new(dest::Error::Restore {
            path: path.clone(),
            value: "mq-deadline".into(),
            source: os(),
        }),
        Box::new(copy::Error::Read {
            offset: 4096,
            source: os(),
        }),
        Box::new(copy::Error::Spawn {
            thread: "bmap-read",
            source: os(),
        }),
        Box::new(create::Error::Sync(os())),
        Box::new(create::Error::Read {
            offset: 4096,
            source: os(),
        }),
        Box::new(layout::Error::Stat(os())),
        Box::new(layout::Error::Fiemap(os())),
        Box::new(layout::Error::Seek(os())),
        Box::new(remote::Error::Read {
            url: "http://h/x.bmap".into(),
            source: os(),
        }),
        Box::new(remote::Error::GaveUp {
            url: "http://h/x.img".into(),
            attempts: 6,
            at: 4096,
            source: Box::new(os()),
        }),
    ];
    for error in &errors {
        assert_cause_left_to_the_chain(error.as_ref());
    }
}

#[test]
fn parse_causes_are_left_to_the_chain() {
    // A 2.0 bmap with a correct self-checksum around `body`.
    let bmap = |body: &str| {
        let text = |checksum: &str| {
            format!(
                "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n<ImageSize>8192</ImageSize>\n\
                 <BlockSize>4096</BlockSize>\n<BlocksCount>2</BlocksCount>\n\
                 <MappedBlocksCount>1</MappedBlocksCount>\n<ChecksumType>sha256</ChecksumType>\n\
                 <BmapFileChecksum>{checksum}</BmapFileChecksum>\n<BlockMap>\n{body}</BlockMap>\n\
                 </bmap>\n"
            )
        };
        let zeroed = text(&"0".repeat(64));
        text(&ChecksumKind::Sha256.digest(zeroed.as_bytes()).to_hex())
    };
    let not_xml = parse(b"<bmap version='2.0'><ImageSize>").expect_err("not XML");
    let bad_digest = parse(bmap("<Range chksum=\"12\">0</Range>\n").as_bytes())
        .expect_err("a digest of 2 hex characters");
    let reversed =
        parse(bmap("<Range chksum=\"00\">1-0</Range>\n").as_bytes()).expect_err("a reversed range");
    for error in [not_xml, bad_digest, reversed] {
        assert_cause_left_to_the_chain(&error);
    }
}
