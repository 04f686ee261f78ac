//! Where image bytes come from: a local file or block device (random access: holes are
//! skipped with positioned reads) or a stream read forward only (standard input, and
//! the decoders and network readers that plug in here), which reads through holes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// An image to copy.
pub enum Image {
    /// A local file or block device: read at offsets, holes skipped.
    File {
        /// The open file.
        file: File,
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
            Image::Stream { size, .. } => f.debug_struct("Stream").field("size", size).finish(),
        }
    }
}

/// Why an image cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be opened or inspected.
    #[error("cannot open image '{path}': {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A directory.
    #[error("'{0}' is a directory, not an image")]
    Directory(PathBuf),
}

impl Image {
    /// Opens a local image: a regular file or a block device (random access), or a
    /// FIFO or character device (read as a stream).
    pub fn open(path: &Path) -> Result<Image, Error> {
        let open_error = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(Error::Directory(path.to_owned()));
        }
        if kind.is_file() {
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

    /// A stream of the image's bytes, of known or unknown length.
    pub fn stream(reader: Box<dyn Read + Send>, size: Option<u64>) -> Image {
        Image::Stream { reader, size }
    }

    /// The image's length in bytes, when known before reading.
    pub fn size(&self) -> Option<u64> {
        match self {
            Image::File { size, .. } => Some(*size),
            Image::Stream { size, .. } => *size,
        }
    }
}
