//! Where image bytes come from: a local file or block device (random access: holes are
//! skipped with positioned reads) or a stream read forward only (standard input, a
//! compressed or archived image through its decoder chain, a network reader), which
//! reads through holes.
//!
//! [`open`] and [`open_stream`] recognise compressed and archived images by name and
//! by content ([`compression`]) and put the right decoders in front.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

pub mod compression;
mod declared;
mod decode;
mod gzip;
mod limits;
mod lz4watch;
mod lzop;
mod multibz;
pub mod remote;
mod tar;
mod zip;

pub use compression::{Codec, Container, Format};
pub use decode::{Decoded, Later, Notice, decode, decode_with};
pub use limits::{DEFAULT_MAX_WINDOW, Limits, WindowTooLarge};

/// An image to copy.
pub enum Image {
    /// A local file or block device: read at offsets, holes skipped.
    File {
        /// The open file.
        file: File,
        /// Its size in bytes.
        size: u64,
    },
    /// A remote file with random access (HTTP Range requests): only the spans the
    /// copy reads are fetched.
    Ranged {
        /// The source.
        source: Box<dyn RandomAccess>,
        /// Its size in bytes.
        size: u64,
    },
    /// A forward-only stream.
    Stream {
        /// The bytes.
        reader: Box<dyn Read + Send>,
        /// Its length, when known in advance.
        size: Option<u64>,
    },
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Image::File { size, .. } => f.debug_struct("File").field("size", size).finish(),
            Image::Ranged { size, .. } => f.debug_struct("Ranged").field("size", size).finish(),
            Image::Stream { size, .. } => f.debug_struct("Stream").field("size", size).finish(),
        }
    }
}

/// Why an image cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be opened or inspected.
    #[error("cannot open image '{path}'")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A directory.
    #[error("'{0}' is a directory, not an image")]
    Directory(PathBuf),
    /// Reading a device node is not permitted.
    #[error("permission denied reading {kind} '{path}': {access}")]
    PermissionDenied {
        /// The path.
        path: PathBuf,
        /// "block device" or "device".
        kind: &'static str,
        /// Who may read it.
        access: crate::access::Access,
    },
    /// A remote image cannot be reached or read.
    #[error(transparent)]
    Remote(#[from] remote::Error),
    /// The decoder chain could not start (a corrupt header, an archive without a file).
    #[error("cannot read image '{name}' as {format}")]
    Decode {
        /// The image's name.
        name: String,
        /// The format it was read as.
        format: String,
        /// Why.
        source: io::Error,
    },
}

/// A block device read as the image is smaller than the image its bmap describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the block device ({device} bytes) is smaller than the image its bmap describes \
     ({image} bytes)"
)]
pub struct DeviceTooSmall {
    /// The device's size.
    pub device: u64,
    /// The image's size in the bmap.
    pub image: u64,
}

/// The error for a local image that cannot be opened: a device node refused by its
/// permissions says who may read it.
fn denied(path: &Path, source: io::Error) -> Error {
    let node = std::fs::metadata(path).ok().filter(|m| {
        let kind = m.file_type();
        kind.is_block_device() || kind.is_char_device()
    });
    match node {
        Some(meta) if source.kind() == io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            path: path.to_owned(),
            kind: if meta.file_type().is_block_device() {
                "block device"
            } else {
                "device"
            },
            access: crate::access::Access::of(&meta, false),
        },
        _ => Error::Open {
            path: path.to_owned(),
            source,
        },
    }
}

/// An opened image with what was learned about its format.
#[derive(Debug)]
pub struct Opened {
    /// The image's bytes.
    pub image: Image,
    /// Its format (raw, or a compression and container).
    pub format: Format,
    /// Worth telling the user (a name that disagrees with the content).
    pub notices: Vec<Notice>,
    /// A size the image has at least, declared by its stream (see [`Decoded::min_size`]);
    /// an exact size is the image's own.
    pub min_size: Option<u64>,
    /// Worth telling the user once the image has been read (padding after the data).
    pub later: Later,
}

/// Decoding threads to use (xz): one per core.
fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// Opens a local image, recognising compression and archives by name and content.
/// A raw regular file or block device is read with random access (holes skipped);
/// anything else through its decoder chain.
pub fn open(path: &Path) -> Result<Opened, Error> {
    open_with(path, &Limits::default())
}

/// [`open`], with the decoders held to `limits`.
pub fn open_with(path: &Path, limits: &Limits) -> Result<Opened, Error> {
    let image = Image::open(path)?;
    let name = path.to_string_lossy();
    let Image::File { file, size } = image else {
        return open_stream_named(image_reader(image), Some(&name), None, None, limits);
    };
    open_at_offsets(file, size, path, Some(&name), limits)
}

/// Opens a regular file that is already open as an image, read at offsets with its
/// holes skipped, as [`open`] reads a path: standard input redirected from a file
/// (`bmaptool copy - DEST < disk.img`). Its format is recognised from its first bytes
/// alone. A raw image is read with positioned reads; a compressed one is decoded from
/// the file's offset. The caller makes sure that offset is 0 (bytes before it would not
/// be the image's). `label` names it in errors.
pub fn open_file(file: File, label: &Path) -> Result<Opened, Error> {
    open_file_with(file, label, &Limits::default())
}

/// [`open_file`], with the decoders held to `limits`.
pub fn open_file_with(file: File, label: &Path, limits: &Limits) -> Result<Opened, Error> {
    let meta = file.metadata().map_err(|source| Error::Open {
        path: label.to_owned(),
        source,
    })?;
    open_at_offsets(file, meta.len(), label, None, limits)
}

/// A regular file or block device of `size` bytes: a raw image is read at offsets,
/// anything else through its decoder chain.
fn open_at_offsets(
    mut file: File,
    size: u64,
    path: &Path,
    name: Option<&str>,
    limits: &Limits,
) -> Result<Opened, Error> {
    let named = name.and_then(compression::from_name);
    let mut head = vec![0u8; compression::SNIFF_LEN];
    let got = file.read_at(&mut head, 0).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    head.truncate(got);
    if let Some(notices) = raw_image(&head, named) {
        return Ok(Opened {
            image: Image::File { file, size },
            format: Format::RAW,
            notices,
            min_size: None,
            later: Later::default(),
        });
    }
    let declared = declared_size(&head, &mut file, size);
    open_stream_named(Box::new(file), name, None, declared, limits)
}

/// The decoded size an xz file that can be read at offsets declares in its indexes.
fn declared_size(head: &[u8], source: &mut dyn RandomAccess, size: u64) -> Option<u64> {
    (compression::sniff_codec(head) == Some(Codec::Xz))
        .then(|| declared::xz_size(source, size))
        .flatten()
}

/// Prepares a pipe to be read as an image (standard input from `cat` or a
/// decompressor): a 1 MiB pipe buffer instead of 64 KiB halves the wake-ups on both
/// sides. Does nothing for other files.
pub fn tune_pipe(file: &File) {
    if file.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
        crate::sys::grow_pipe(file, 1 << 20);
    }
}

/// Opens a stream (standard input, a download) as an image: its format is recognised
/// from `name` (a path or URL path, when there is one) and its first bytes. `size` is
/// the stream's length when known; it is the image's size only for a raw stream.
pub fn open_stream(
    reader: Box<dyn Read + Send>,
    name: Option<&str>,
    size: Option<u64>,
) -> Result<Opened, Error> {
    open_stream_with(reader, name, size, &Limits::default())
}

/// [`open_stream`], with the decoders held to `limits`.
pub fn open_stream_with(
    reader: Box<dyn Read + Send>,
    name: Option<&str>,
    size: Option<u64>,
    limits: &Limits,
) -> Result<Opened, Error> {
    open_stream_named(reader, name, size, None, limits)
}

/// `declared`: the decoded size the compressed stream declares (xz indexes).
fn open_stream_named(
    reader: Box<dyn Read + Send>,
    name: Option<&str>,
    size: Option<u64>,
    declared: Option<u64>,
    limits: &Limits,
) -> Result<Opened, Error> {
    let label = name.unwrap_or("-").to_owned();
    let decoded = decode_with(reader, name, threads(), limits).map_err(|source| Error::Decode {
        name: label,
        format: name
            .and_then(compression::from_name)
            .map_or_else(|| "a stream".to_owned(), |f| f.to_string()),
        source,
    })?;
    let size = if decoded.format.is_raw() {
        size
    } else if decoded.format.container == Container::None {
        decoded.size.or(declared)
    } else {
        decoded.size
    };
    Ok(Opened {
        image: Image::Stream {
            reader: decoded.reader,
            size,
        },
        format: decoded.format,
        notices: decoded.notices,
        min_size: decoded.min_size.filter(|_| size.is_none()),
        later: decoded.later,
    })
}

/// Whether an image whose first bytes are `head` and whose name says `named` is raw
/// (no compression or archive magic, and not named `.lzma`, which has no magic); if so,
/// the notice to give when the name said otherwise.
fn raw_image(head: &[u8], named: Option<Format>) -> Option<Vec<Notice>> {
    let raw = compression::sniff_codec(head).is_none()
        && compression::sniff_container(head).is_none()
        && named.is_none_or(|f| f.codec != Codec::Lzma);
    raw.then(|| {
        named
            .map(|named| Notice::Mismatch {
                named,
                found: Format::RAW,
            })
            .into_iter()
            .collect()
    })
}

fn image_reader(image: Image) -> Box<dyn Read + Send> {
    match image {
        Image::File { file, .. } => Box::new(file),
        Image::Ranged { source, .. } => Box::new(Sequential { source, pos: 0 }),
        Image::Stream { reader, .. } => reader,
    }
}

/// Positioned reads of a source, for the copy engine: a local file, or a remote file
/// that supports ranges.
pub trait RandomAccess: Send {
    /// Tells the source which byte spans `(offset, length)` will be read, ascending, so
    /// that a remote source can fetch neighbouring spans in one request.
    fn plan(&mut self, spans: &[(u64, u64)]) {
        let _ = spans;
    }

    /// Reads at `offset`; `Ok(0)` only at the end of the file.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl RandomAccess for File {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

/// A random-access source read from the start as a stream.
struct Sequential {
    source: Box<dyn RandomAccess>,
    pos: u64,
}

impl Read for Sequential {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Opens a remote image: random access when it is uncompressed and the server honours
/// Range requests, a stream through its decoder chain otherwise.
pub fn open_url(url: &url::Url, options: &remote::Options) -> Result<Opened, Error> {
    open_url_with(url, options, &Limits::default())
}

/// [`open_url`], with the decoders held to `limits`.
pub fn open_url_with(
    url: &url::Url,
    options: &remote::Options,
    limits: &Limits,
) -> Result<Opened, Error> {
    let name = remote::name_for_format(url);
    match remote::open_random(url, options)? {
        remote::Remote::Stream { reader, size } => {
            open_stream_named(reader, Some(&name), size, None, limits)
        }
        remote::Remote::Ranged(mut ranged) => {
            let size = ranged.size();
            let named = compression::from_name(&name);
            if let Some(notices) = raw_image(ranged.head(), named) {
                return Ok(Opened {
                    image: Image::Ranged {
                        source: ranged,
                        size,
                    },
                    format: Format::RAW,
                    notices,
                    min_size: None,
                    later: Later::default(),
                });
            }
            let head = ranged.head().to_vec();
            let declared = declared_size(&head, ranged.as_mut(), size);
            open_stream_named(
                Box::new(ranged.into_stream()),
                Some(&name),
                Some(size),
                declared,
                limits,
            )
        }
    }
}

impl Image {
    /// Opens a local image: a regular file or a block device (random access), or a
    /// FIFO or character device (read as a stream).
    pub fn open(path: &Path) -> Result<Image, Error> {
        let open_error = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(|source| denied(path, source))?;
        let meta = file.metadata().map_err(open_error)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(Error::Directory(path.to_owned()));
        }
        // A file of /proc says it is empty and has bytes: read it as a stream, to its end.
        if kind.is_file() && !(meta.len() == 0 && file.read_at(&mut [0u8], 0).is_ok_and(|n| n > 0))
        {
            return Ok(Image::File {
                file,
                size: meta.len(),
            });
        }
        if kind.is_block_device() {
            let size = file.seek(SeekFrom::End(0)).map_err(open_error)?;
            return Ok(Image::File { file, size });
        }
        Ok(Image::Stream {
            reader: Box::new(file),
            size: None,
        })
    }

    /// Whether the image is a block device read at offsets (a flashed card, checked
    /// against its bmap by copying it to `/dev/null`).
    pub fn is_block_device(&self) -> bool {
        match self {
            Image::File { file, .. } => file
                .metadata()
                .is_ok_and(|m| m.file_type().is_block_device()),
            Image::Ranged { .. } | Image::Stream { .. } => false,
        }
    }

    /// Fits a block device read as the image to `size`, the image's size in its bmap:
    /// a larger device is read up to `size` (returns its own size), a smaller one
    /// cannot hold the image. Other images are left as they are (`Ok(None)`): their
    /// size must match exactly.
    pub fn fit_device(&mut self, size: u64) -> Result<Option<u64>, DeviceTooSmall> {
        if !self.is_block_device() {
            return Ok(None);
        }
        let Image::File { size: device, .. } = self else {
            return Ok(None);
        };
        match (*device).cmp(&size) {
            std::cmp::Ordering::Less => Err(DeviceTooSmall {
                device: *device,
                image: size,
            }),
            std::cmp::Ordering::Equal => Ok(None),
            std::cmp::Ordering::Greater => {
                let whole = *device;
                *device = size;
                Ok(Some(whole))
            }
        }
    }

    /// A stream of the image's bytes, of known or unknown length.
    pub fn stream(reader: Box<dyn Read + Send>, size: Option<u64>) -> Image {
        Image::Stream { reader, size }
    }

    /// The image's length in bytes, when known before reading.
    pub fn size(&self) -> Option<u64> {
        match self {
            Image::File { size, .. } | Image::Ranged { size, .. } => Some(*size),
            Image::Stream { size, .. } => *size,
        }
    }
}
