//! The create engine: a local sparse image -> its [`Bmap`].
//!
//! The mapped ranges come from [`crate::layout`]; each range's SHA-256 is computed by
//! a small pool of threads (one per core by default) reading with `pread`, longest
//! ranges first so that the cores finish together. Memory is one read buffer per
//! thread plus the range list, whatever the image size.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Interrupt;
use crate::format::{BlockRange, Bmap, ChecksumKind, Digest, InvalidBmap};
use crate::layout::{self, Layout, Method};

/// Bytes read per `pread` while hashing.
const CHUNK: usize = 1 << 20;

/// Choices for [`create`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Algorithm of the range digests (SHA-256 by default); `None` writes ranges
    /// without digests (`--no-checksum`).
    pub checksum: Option<ChecksumKind>,
    /// Hashing threads; `0` means one per available core.
    pub threads: usize,
    /// Force a layout method (`None`: FIEMAP, falling back to SEEK_DATA/SEEK_HOLE).
    pub method: Option<Method>,
    /// Checked between chunks; when raised, [`create`] returns [`Error::Interrupted`].
    pub interrupt: Interrupt,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            checksum: Some(ChecksumKind::Sha256),
            threads: 0,
            method: None,
            interrupt: Interrupt::new(),
        }
    }
}

/// What [`create`] found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The block map.
    pub bmap: Bmap,
    /// How the mapped blocks were found.
    pub method: Method,
}

impl Outcome {
    /// Whether every block of the image is mapped: the image has no holes at all,
    /// which usually means it lost its sparseness (copied, downloaded, decompressed).
    pub fn fully_mapped(&self) -> bool {
        self.bmap.mapped_blocks() == self.bmap.blocks_count()
    }
}

/// Why no bmap could be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image cannot be opened.
    #[error("cannot open the image")]
    Open(#[source] io::Error),
    /// The path is a directory.
    #[error("it is a directory, not an image file")]
    Directory,
    /// The path is not a regular file.
    #[error("it is not a regular file: bmaps are made of image files")]
    NotAFile,
    /// The image is empty.
    #[error("the image is zero-sized: there is nothing to map")]
    Empty,
    /// Syncing the image to disk failed.
    #[error("cannot synchronize the image")]
    Sync(#[source] io::Error),
    /// Finding the mapped blocks failed.
    #[error(transparent)]
    Layout(#[from] layout::Error),
    /// Reading the image failed.
    #[error("cannot read the image at byte {offset}")]
    Read {
        /// Where.
        offset: u64,
        /// Why.
        source: io::Error,
    },
    /// The image got shorter while it was read.
    #[error(
        "the image ended at byte {offset}, inside a mapped range: was it changed while bmaptool read it?"
    )]
    Shrunk {
        /// Where it ended.
        offset: u64,
    },
    /// The layout broke a bmap invariant (a file-system bug).
    #[error("the file system reported an impossible layout")]
    Invalid(#[from] InvalidBmap),
    /// The interrupt flag was raised.
    #[error("interrupted")]
    Interrupted,
}

/// Opens the image at `path` for [`create`] and checks it (see [`check`]). Opened
/// with `O_NONBLOCK`, so that a FIFO is refused instead of waiting for a writer.
pub fn open(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(Error::Open)?;
    check(&file)?;
    Ok(file)
}

/// Checks that `file` can have a bmap: a regular file, not empty.
pub fn check(file: &File) -> Result<(), Error> {
    let metadata = file
        .metadata()
        .map_err(|e| Error::Layout(layout::Error::Stat(e)))?;
    if metadata.is_dir() {
        return Err(Error::Directory);
    }
    if !metadata.is_file() {
        return Err(Error::NotAFile);
    }
    if metadata.len() == 0 {
        return Err(Error::Empty);
    }
    Ok(())
}

/// Makes the bmap of the image `file` (checked by [`check`]).
pub fn create(file: &File, options: &Options) -> Result<Outcome, Error> {
    check(file)?;
    file.sync_all().map_err(Error::Sync)?;
    let layout = layout::mapped_ranges_with(file, options.method)?;
    let digests = match options.checksum {
        Some(kind) => hash_ranges(file, &layout, kind, options)?,
        None => vec![None; layout.ranges.len()],
    };
    let ranges = layout
        .ranges
        .iter()
        .zip(digests)
        .map(|(&(first, last), digest)| BlockRange::new(first, last, digest))
        .collect::<Result<Vec<_>, _>>()?;
    let bmap = Bmap::new(layout.size, layout.block_size, options.checksum, ranges)?;
    Ok(Outcome {
        bmap,
        method: layout.method,
    })
}

/// Digests of every range of `layout`, in range order.
fn hash_ranges(
    file: &File,
    layout: &Layout,
    kind: ChecksumKind,
    options: &Options,
) -> Result<Vec<Option<Digest>>, Error> {
    let span = |&(first, last): &(u64, u64)| {
        let start = first * layout.block_size;
        let end = ((last + 1) * layout.block_size).min(layout.size);
        (start, end - start)
    };
    // Longest first: the threads end together even when one range dominates.
    let mut order: Vec<usize> = (0..layout.ranges.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(span(&layout.ranges[i]).1));

    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
    .min(order.len())
    .max(1);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; layout.ranges.len()]);
    let worker = || -> Result<(), Error> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let Some(&index) = order.get(n) else {
                return Ok(());
            };
            let (start, len) = span(&layout.ranges[index]);
            let digest = hash_span(file, start, len, kind, &mut buf, &options.interrupt)?;
            results
                .lock()
                .expect("no worker panics while holding the lock")[index] = Some(digest);
        }
    };
    std::thread::scope(|scope| {
        // A thread that cannot be started leaves its share to the others: hashing
        // needs no more than the calling thread.
        let handles: Vec<_> = (1..threads)
            .map_while(|_| {
                std::thread::Builder::new()
                    .name("bmap-create-hash".into())
                    .spawn_scoped(scope, worker)
                    .ok()
            })
            .collect();
        let mut outcome = worker();
        for handle in handles {
            let result = handle.join().expect("hashing threads do not panic");
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    })?;
    // A failing worker stops the others at their next range only; that is fine, the
    // error is returned either way.
    Ok(results.into_inner().expect("workers are done"))
}

fn hash_span(
    file: &File,
    start: u64,
    len: u64,
    kind: ChecksumKind,
    buf: &mut [u8],
    interrupt: &Interrupt,
) -> Result<Digest, Error> {
    let mut hasher = kind.hasher();
    let mut offset = start;
    let end = start + len;
    while offset < end {
        if interrupt.is_raised() {
            return Err(Error::Interrupted);
        }
        let want = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let got = match file.read_at(&mut buf[..want], offset) {
            Ok(0) => return Err(Error::Shrunk { offset }),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Error::Read { offset, source }),
        };
        hasher.update(&buf[..got]);
        offset += got as u64;
    }
    Ok(hasher.finish())
}
