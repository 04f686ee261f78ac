//! Compression and archive formats of images: the exhaustive [`Format`] list, the
//! reference's extension table, and recognition by magic bytes.
//!
//! An image format is a [`Codec`] (how the bytes are compressed) inside an optional
//! [`Container`] (tar or zip, where the image is the first regular file). Extensions
//! are matched case-sensitively, as the reference does; the content's magic bytes win
//! when they disagree with the extension.

use std::fmt;

/// How a stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Not compressed.
    None,
    /// gzip (RFC 1952), concatenated members included (pigz).
    Gzip,
    /// bzip2, multi-stream files included (pbzip2).
    Bzip2,
    /// xz, several blocks and streams included (`xz -T0`); decoded on several threads.
    Xz,
    /// The legacy `.lzma` ("LZMA alone") format.
    Lzma,
    /// lzop files (LZO1X blocks with Adler-32/CRC-32 checksums).
    Lzo,
    /// LZ4 frames, concatenated frames and the legacy format (`lz4 -l`) included.
    Lz4,
    /// Zstandard frames, concatenated and skippable frames included (pzstd), with
    /// windows up to 2 GiB (`--long=31`).
    Zstd,
}

/// What wraps the image inside the (decompressed) stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// The stream is the image.
    None,
    /// A tar archive: the image is its first regular file.
    Tar,
    /// A zip archive: the image is its first file (stored, deflated, bzip2 or zstd).
    Zip,
}

/// The format of an image: a container around a codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    /// The archive the image is in, if any.
    pub container: Container,
    /// The compression of the whole stream.
    pub codec: Codec,
}

impl Format {
    /// A raw, uncompressed image.
    pub const RAW: Format = Format {
        container: Container::None,
        codec: Codec::None,
    };

    const fn new(container: Container, codec: Codec) -> Format {
        Format { container, codec }
    }

    /// Whether bytes must be decoded (not a raw image).
    pub fn is_raw(self) -> bool {
        self == Format::RAW
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::Lzma => "lzma",
            Codec::Lzo => "lzop",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.container, self.codec) {
            (Container::None, codec) => write!(f, "{codec}"),
            (Container::Tar, Codec::None) => f.write_str("tar"),
            (Container::Tar, codec) => write!(f, "tar.{codec}"),
            (Container::Zip, Codec::None) => f.write_str("zip"),
            (Container::Zip, codec) => write!(f, "zip inside {codec}"),
        }
    }
}

/// Extensions the reference knows (plus `.lzma` forms), longest first so that
/// `.tar.gz` wins over `.gz`.
const EXTENSIONS: &[(&str, Format)] = &[
    (".tar.gz", Format::new(Container::Tar, Codec::Gzip)),
    (".tar.bz2", Format::new(Container::Tar, Codec::Bzip2)),
    (".tar.xz", Format::new(Container::Tar, Codec::Xz)),
    (".tar.lzma", Format::new(Container::Tar, Codec::Lzma)),
    (".tar.lzo", Format::new(Container::Tar, Codec::Lzo)),
    (".tar.lz4", Format::new(Container::Tar, Codec::Lz4)),
    (".tar.zst", Format::new(Container::Tar, Codec::Zstd)),
    (".gzip", Format::new(Container::None, Codec::Gzip)),
    (".lzma", Format::new(Container::None, Codec::Lzma)),
    (".tbz2", Format::new(Container::Tar, Codec::Bzip2)),
    (".tlz4", Format::new(Container::Tar, Codec::Lz4)),
    (".tzst", Format::new(Container::Tar, Codec::Zstd)),
    (".tgz", Format::new(Container::Tar, Codec::Gzip)),
    (".tbz", Format::new(Container::Tar, Codec::Bzip2)),
    (".tb2", Format::new(Container::Tar, Codec::Bzip2)),
    (".txz", Format::new(Container::Tar, Codec::Xz)),
    (".tzo", Format::new(Container::Tar, Codec::Lzo)),
    (".bz2", Format::new(Container::None, Codec::Bzip2)),
    (".lzo", Format::new(Container::None, Codec::Lzo)),
    (".lz4", Format::new(Container::None, Codec::Lz4)),
    (".zst", Format::new(Container::None, Codec::Zstd)),
    (".zip", Format::new(Container::Zip, Codec::None)),
    (".tar", Format::new(Container::Tar, Codec::None)),
    (".gz", Format::new(Container::None, Codec::Gzip)),
    (".xz", Format::new(Container::None, Codec::Xz)),
];

/// The format an image's name says (case-sensitive suffix, as the reference), or
/// `None` when the name says nothing (a raw image, or unknown).
pub fn from_name(name: &str) -> Option<Format> {
    EXTENSIONS
        .iter()
        .find(|(ext, _)| name.ends_with(ext) && name.len() > ext.len())
        .map(|&(_, format)| format)
}

/// Bytes [`sniff_codec`] wants to see (fewer is fine near the end of a stream).
pub const SNIFF_LEN: usize = 512;

/// The codec the first bytes of a stream reveal, if any.
pub fn sniff_codec(head: &[u8]) -> Option<Codec> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(&[0x1f, 0x8b]) {
        Some(Codec::Gzip)
    } else if starts(b"BZh") && head.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        Some(Codec::Bzip2)
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Codec::Xz)
    } else if starts(&[0x89, b'L', b'Z', b'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a]) {
        Some(Codec::Lzo)
    } else if starts(&[0x04, 0x22, 0x4d, 0x18]) || starts(&[0x02, 0x21, 0x4c, 0x18]) {
        Some(Codec::Lz4)
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
    {
        // A zstd frame, or a skippable frame (pzstd starts with one).
        Some(Codec::Zstd)
    } else if is_lzma_alone(head) {
        Some(Codec::Lzma)
    } else {
        None
    }
}

/// The legacy `.lzma` format has no magic number; recognise its header as xz's
/// `file(1)` rules do: the usual properties byte (lc=3, lp=0, pb=2), a dictionary size
/// of 2^n or 2^n + 2^(n-1), and an uncompressed size that is unknown (all ones) or
/// plausible.
fn is_lzma_alone(head: &[u8]) -> bool {
    if head.len() < 13 || head[0] != 0x5d {
        return false;
    }
    let dict = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let dict_ok = dict >= 4096
        && (dict.is_power_of_two() || (dict.is_multiple_of(3) && (dict / 3).is_power_of_two()));
    let mut size = [0u8; 8];
    size.copy_from_slice(&head[5..13]);
    let size = u64::from_le_bytes(size);
    dict_ok && (size == u64::MAX || size < 1 << 56)
}

/// The container the first bytes of a (decompressed) stream reveal, if any.
pub fn sniff_container(head: &[u8]) -> Option<Container> {
    if head.starts_with(b"PK\x03\x04") {
        Some(Container::Zip)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Container::Tar)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_as_the_reference() {
        let f = |name| from_name(name).map(|f| f.to_string());
        assert_eq!(f("a.img.gz").as_deref(), Some("gzip"));
        assert_eq!(f("a.img.tar.gz").as_deref(), Some("tar.gzip"));
        assert_eq!(f("a.tgz").as_deref(), Some("tar.gzip"));
        assert_eq!(f("a.tb2").as_deref(), Some("tar.bzip2"));
        assert_eq!(f("a.tzst").as_deref(), Some("tar.zstd"));
        assert_eq!(f("a.zip").as_deref(), Some("zip"));
        assert_eq!(f("a.lzma").as_deref(), Some("lzma"));
        assert_eq!(f("a.img"), None);
        assert_eq!(f("a.GZ"), None, "case-sensitive, as the reference");
        assert_eq!(f(".gz"), None, "a bare extension is a name");
    }

    #[test]
    fn magic_bytes() {
        assert_eq!(sniff_codec(&[0x1f, 0x8b, 8]), Some(Codec::Gzip));
        assert_eq!(sniff_codec(b"BZh9"), Some(Codec::Bzip2));
        assert_eq!(sniff_codec(b"BZhx"), None);
        assert_eq!(sniff_codec(&[0x50, 0x2a, 0x4d, 0x18]), Some(Codec::Zstd));
        assert_eq!(sniff_codec(&[0xeb, 0x63, 0x90]), None, "an MBR boot sector");
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff_container(&tar), Some(Container::Tar));
        assert_eq!(sniff_container(b"PK\x03\x04"), Some(Container::Zip));
    }
}
