//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), one function per target,
//! shared with the stable test that replays their corpora (`tests/fuzz_corpus.rs`), so
//! that CI runs exactly what the fuzzer ran, without nightly. Not part of the API.
//!
//! Each body feeds arbitrary bytes to one of the library's entry points for hostile
//! input, through the same paths a real run takes, and asserts what must hold whatever
//! the bytes (a panic here is a bug found). It returns whether the input was accepted
//! or refused with a typed error; it must never hang, and what it reads is capped.

use std::io::{self, Cursor, Read};
use std::time::{Duration, SystemTime};

use crate::copy::{self, Discard, NoEvents, Plan};
use crate::format::{self, Bmap};
use crate::signature::{self, Keyring};
use crate::source::{self, Image, RandomAccess, remote};

/// How an input ended: each body finishes with one, or panics (a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The input was read to its end without error.
    Accepted,
    /// The input was refused with a typed error.
    Refused,
}

impl<T, E> From<&Result<T, E>> for Ended {
    fn from(result: &Result<T, E>) -> Ended {
        if result.is_ok() {
            Ended::Accepted
        } else {
            Ended::Refused
        }
    }
}

/// Decoded bytes read from one input at most (a tiny input may be a bomb).
pub const DECODE_CAP: u64 = 64 << 20;
/// Largest image the bmap target copies (from bytes made of the input itself).
pub const COPY_CAP: u64 = 1 << 20;

/// The bmap parser: [`format::parse`] and [`format::inspect`], then for an accepted
/// bmap what a copy does with it: its spans, the XML written back (which must parse to
/// the same bmap), and (for a small image) a verifying copy of an image made of the
/// input's own bytes, read at offsets as a local file is.
pub fn bmap(data: &[u8]) -> Ended {
    same_reading_with_and_without_the_cut(data);
    let inspected = format::inspect(data);
    let parsed = format::parse(data);
    if let Ok(parsed) = &parsed {
        let inspected = inspected
            .as_ref()
            .expect("inspect accepts what parse accepts");
        assert_eq!(inspected.bmap, parsed.bmap);
        check_bmap(&parsed.bmap);
        copy_from(data, &parsed.bmap);
    }
    Ended::from(&parsed)
}

/// The parser reads a `BlockMap` as `create` writes it without the XML tree (the cut,
/// `format/fastpath.rs`); whenever it does, the whole tree must read the same bmap,
/// self-check and warnings (both strict and lenient).
fn same_reading_with_and_without_the_cut(data: &[u8]) {
    for lenient in [false, true] {
        if let Some((cut, tree)) = format::cut_and_tree(data, lenient) {
            let tree = tree.unwrap_or_else(|e| panic!("the cut read a bmap the tree refuses: {e}"));
            assert_eq!(
                cut.bmap, tree.bmap,
                "the cut and the tree read different bmaps"
            );
            assert_eq!(cut.self_check, tree.self_check);
            assert_eq!(cut.warnings, tree.warnings);
        }
    }
}

/// What holds for every accepted bmap: its ranges lie in the image, in order, and its
/// own XML reads back as the same bmap.
fn check_bmap(bmap: &Bmap) {
    let mut end = 0;
    let mut mapped = 0u64;
    for range in bmap.ranges() {
        let (start, len) = bmap.byte_span(range);
        assert!(start >= end && len > 0 && start + len <= bmap.image_size());
        end = start + len;
        mapped += len;
    }
    assert_eq!(mapped, bmap.mapped_bytes());
    let again = format::parse(&bmap.to_xml()).expect("a bmap's own XML parses");
    assert_eq!(again.bmap.ranges(), bmap.ranges());
    assert_eq!(again.bmap.image_size(), bmap.image_size());
}

/// Copies (verifying, into [`Discard`]) an image of the bmap's size whose bytes are
/// `data` repeated, as a local file is read: at offsets, holes skipped.
fn copy_from(data: &[u8], bmap: &Bmap) {
    let size = bmap.image_size();
    if size > COPY_CAP {
        return;
    }
    let source = Repeated {
        pattern: data.to_vec(),
        size,
    };
    let image = Image::Ranged {
        source: Box::new(source),
        size,
    };
    let plan = Plan::new(image, Some(bmap.clone()), None).expect("the image has the bmap's size");
    let options = copy::Options {
        stop_at_mismatch: false,
        ..copy::Options::default()
    };
    let outcome = plan
        .run(&mut Discard, &mut NoEvents, &options)
        .expect("a copy into nothing of an image in memory cannot fail");
    assert_eq!(outcome.image_size, size);
}

/// An image of `size` bytes: `pattern` again and again.
struct Repeated {
    pattern: Vec<u8>,
    size: u64,
}

impl RandomAccess for Repeated {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = self.pattern.len() as u64;
        let want = (buf.len() as u64).min(self.size.saturating_sub(offset));
        for (i, byte) in buf.iter_mut().take(want as usize).enumerate() {
            *byte = self.pattern[((offset + i as u64) % len) as usize];
        }
        Ok(want as usize)
    }
}

/// Separates the parts of a [`signature`] input: keyring, signature, signed data.
pub const PART_SEPARATOR: &[u8] = b"\n--8<--fuzz--8<--\n";

/// Signature handling. The input is up to three parts, split at [`PART_SEPARATOR`]:
/// a keyring, then a detached signature or a clearsigned bmap, then the data the
/// detached signature signs. The keyring is read (an unreadable one leaves it empty),
/// the second part is verified as a detached signature of the third and as a
/// clearsigned message, and a clearsigned bmap's text is parsed.
pub fn signature(data: &[u8]) -> Ended {
    let parts = split(data, PART_SEPARATOR);
    let part = |n: usize| parts.get(n).copied().unwrap_or_default();
    let (keys, signature, signed) = (part(0), part(1), part(2));
    let mut keyring = Keyring::new();
    let added = keyring.add(keys);
    // Signatures made at the fixtures' time are good then.
    let options = signature::Options {
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        fingerprint: None,
    };
    let detached = signature::verify_detached(signed, signature, &keyring, &options);
    let clearsigned = signature::verify_clearsigned(signature, &keyring, &options);
    let text = signature::clearsigned_text(signature);
    if let (Ok((_, verified_text)), Ok(text)) = (&clearsigned, &text) {
        assert_eq!(verified_text, text, "the verified text is the text");
    }
    if let Ok(text) = &text {
        let _ = format::parse(text);
    }
    let accepted = added.is_ok() && (detached.is_ok() || clearsigned.is_ok());
    if accepted {
        Ended::Accepted
    } else {
        Ended::Refused
    }
}

/// `data` cut at each `separator` (at most three parts: the last keeps the rest).
fn split<'a>(data: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < 2 {
        let Some(at) = memchr::memmem::find(rest, separator) else {
            break;
        };
        parts.push(&rest[..at]);
        rest = &rest[at + separator.len()..];
    }
    parts.push(rest);
    parts
}

/// Names a [`decoder`] input's first byte selects (the name decides `.lzma`, which has
/// no magic, and lz4 behind a skippable frame; others only give a notice).
pub const DECODER_NAMES: &[Option<&str>] = &[
    None,
    Some("disk.img.gz"),
    Some("disk.img.bz2"),
    Some("disk.img.xz"),
    Some("disk.img.lzma"),
    Some("disk.img.lzo"),
    Some("disk.img.lz4"),
    Some("disk.img.zst"),
    Some("disk.tar"),
    Some("disk.zip"),
    Some("disk.img"),
];

/// Format sniffing and every decoder chain: the first byte picks the image's name
/// from [`DECODER_NAMES`], the rest is the stream, decoded (one thread) and read to its
/// end, or to [`DECODE_CAP`] bytes.
pub fn decoder(data: &[u8]) -> Ended {
    let Some((&pick, stream)) = data.split_first() else {
        return Ended::Refused;
    };
    let name = DECODER_NAMES[usize::from(pick) % DECODER_NAMES.len()];
    let input = Box::new(Cursor::new(stream.to_vec()));
    let decoded = match source::decode(input, name, 1) {
        Ok(decoded) => decoded,
        Err(_) => return Ended::Refused,
    };
    let mut reader = decoded.reader.take(DECODE_CAP);
    let read = io::copy(&mut reader, &mut io::sink());
    if let (Ok(n), Some(size)) = (&read, decoded.size)
        && *n < DECODE_CAP
    {
        assert_eq!(*n, size, "an archive member is as long as its header says");
    }
    let _ = decoded.later.take();
    Ended::from(&read)
}

/// Source-location parsing and bmap discovery, without network I/O: the input (as
/// UTF-8, lossily) is located as an image argument is, parsed as a URL, and the bmap
/// and signature candidates beside it are listed.
pub fn location(data: &[u8]) -> Ended {
    let name = String::from_utf8_lossy(data);
    let _ = source::compression::from_name(&name);
    check_candidates(&name, &crate::discover::bmap_candidates(&name), ".bmap");
    let _ = crate::discover::signature_candidates(&name);
    let path = std::path::Path::new(name.as_ref());
    let _ = crate::discover::bmap_candidate_paths(path);
    let _ = crate::discover::signature_candidate_paths(path);
    // An ssh location is never a parsed URL (`locate` keeps its text).
    if let Ok(url) = url::Url::parse(&name)
        && url.scheme() != "ssh"
    {
        url_candidates(&url);
    }
    let located = remote::locate(&name);
    if let Ok(remote::Location::Url(url)) = &located {
        url_candidates(url);
        let _ = remote::name_for_format(url);
        let _ = remote::redact(url);
    }
    Ended::from(&located)
}

/// The candidates beside `url`: each keeps all but the path.
fn url_candidates(url: &url::Url) {
    for candidate in remote::bmap_candidates(url)
        .iter()
        .chain(&remote::signature_candidates(url))
    {
        assert_eq!(candidate.scheme(), url.scheme());
        assert_eq!(candidate.host_str(), url.host_str());
        assert_eq!(candidate.query(), url.query());
        let _ = remote::redact(candidate);
    }
}

/// The first candidate is the name with the suffix added; every one ends with it.
fn check_candidates(name: &str, candidates: &[String], suffix: &str) {
    assert_eq!(candidates.first(), Some(&format!("{name}{suffix}")));
    assert!(candidates.iter().all(|c| c.ends_with(suffix)));
}
