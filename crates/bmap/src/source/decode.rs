//! Decoder chains: a raw byte stream -> the image's bytes, for every [`Format`].
//!
//! The format is taken from the name and checked against the stream's magic bytes
//! (the content wins, with a warning). Every decoder reads its stream to the end and
//! checks the trailer (gzip CRC and length, bzip2 CRCs, xz index and check, zstd and
//! lz4 checksums, lzop checksums, zip CRC), so a truncated or corrupt download is an
//! error even when the damage lies past the last mapped block. Errors name the format
//! and the compressed offset reached.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::compression::{self, Codec, Container, Format, SNIFF_LEN};
use super::limits::Limits;
use super::lz4watch::Watch;
use super::{declared, gzip, lzop, multibz, tar, zip};

/// Input buffer in front of each decoder.
const BUFFER: usize = 1 << 20;
/// Memory the multithreaded xz decoder may use before it falls back to one thread.
const XZ_MEMLIMIT_THREADING: u64 = 1 << 30;

/// Something worth telling the user about how a stream was decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The name said one format, the content another; the content was used.
    Mismatch {
        /// What the name said.
        named: Format,
        /// What the content is.
        found: Format,
    },
    /// Zero bytes after the compressed data (a tape or `dd` padded the file), ignored
    /// as the format's own tool ignores them.
    Padding {
        /// The format padded.
        codec: Codec,
        /// How many zero bytes followed it.
        bytes: u64,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Mismatch { named, found } => write!(
                f,
                "the image's name says {named} but its content is {found}; reading it as {found}"
            ),
            Notice::Padding { codec, bytes } => write!(
                f,
                "the {codec} data is followed by {bytes} zero bytes (padding, as a tape or dd \
                 leaves); they were ignored, as {codec} itself ignores them"
            ),
        }
    }
}

/// Notices a decoder finds while the image is read, after [`decode`] returned: take
/// them once the image has been read to its end.
#[derive(Debug, Clone, Default)]
pub struct Later(Arc<Mutex<Vec<Notice>>>);

impl Later {
    /// The notices found so far (each is returned once).
    pub fn take(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn push(&self, notice: Notice) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(notice);
    }
}

/// A decoded image stream.
pub struct Decoded {
    /// The image's bytes.
    pub reader: Box<dyn Read + Send>,
    /// The format found.
    pub format: Format,
    /// The image's size when the container says it (tar and zip members).
    pub size: Option<u64>,
    /// A size the image has at least, when the stream declares one (the first zstd
    /// frame's content size: more frames may follow).
    pub min_size: Option<u64>,
    /// Things worth telling the user.
    pub notices: Vec<Notice>,
    /// Things worth telling the user that are found while the image is read.
    pub later: Later,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("format", &self.format)
            .field("size", &self.size)
            .field("min_size", &self.min_size)
            .field("notices", &self.notices)
            .finish_non_exhaustive()
    }
}

/// Opens a decoder chain over `input`, whose name (path or URL path, when there is
/// one) is `name`. Reads the first bytes to recognise the format; a tar or zip
/// container's header is read too, to find the image inside.
pub fn decode(
    input: Box<dyn Read + Send>,
    name: Option<&str>,
    threads: u32,
) -> io::Result<Decoded> {
    decode_with(input, name, threads, &Limits::default())
}

/// [`decode`], refusing a stream whose header asks for more than `limits` allow.
pub fn decode_with(
    input: Box<dyn Read + Send>,
    name: Option<&str>,
    threads: u32,
    limits: &Limits,
) -> io::Result<Decoded> {
    let named = name.and_then(compression::from_name);
    let counter = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        inner: input,
        count: Arc::clone(&counter),
    };
    let (head, input) = sniff(counted)?;
    let mut notices = Vec::new();
    let later = Later::default();

    let sniffed = compression::sniff_codec(&head);
    let skippable = head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18];
    let codec = match (sniffed, named.map(|f| f.codec)) {
        // A skippable frame may start an lz4 stream as well as a zstd one: the name says.
        (Some(Codec::Zstd), Some(Codec::Lz4)) if skippable => Codec::Lz4,
        (Some(found), _) => found,
        // `.lzma` has no magic number: trust the name.
        (None, Some(Codec::Lzma)) => Codec::Lzma,
        _ => Codec::None,
    };
    let content_size = match codec {
        Codec::Zstd => declared::zstd_content_size(&head),
        _ => None,
    };
    // The decoded stream and its first bytes. An uncompressed stream is passed on as it
    // is (no extra buffer copies): its first bytes are the ones already read.
    let (inner_head, decoded): (Vec<u8>, Box<dyn Read + Send>) = if codec == Codec::None {
        (head, Box::new(input))
    } else {
        limits.check(codec, &head)?;
        let input = BufReader::with_capacity(BUFFER, input);
        let raw = Guard::new(
            decoder(codec, input, threads, limits, &later)?,
            codec,
            counter,
        );
        let (inner_head, decoded) = sniff(raw)?;
        (inner_head, Box::new(decoded))
    };
    let container = compression::sniff_container(&inner_head).unwrap_or(Container::None);
    let format = Format { container, codec };
    if let Some(named) = named
        && named != format
    {
        notices.push(Notice::Mismatch {
            named,
            found: format,
        });
    }
    let (reader, size): (Box<dyn Read + Send>, Option<u64>) = match container {
        Container::None => (decoded, None),
        Container::Tar => {
            let member = tar::Member::open(BufReader::with_capacity(BUFFER, decoded))?;
            let size = member.size();
            (Box::new(member), Some(size))
        }
        Container::Zip => {
            let member = zip::Member::open(
                BufReader::with_capacity(BUFFER, decoded),
                limits.zstd_window_log(),
            )?;
            let size = member.size();
            (Box::new(member), size)
        }
    };
    Ok(Decoded {
        reader,
        format,
        size,
        // The size of what the stream holds, the image only when no archive wraps it.
        min_size: content_size.filter(|_| container == Container::None),
        notices,
        later,
    })
}

/// The decoder for one codec over a buffered input.
fn decoder<R: BufRead + Send + 'static>(
    codec: Codec,
    input: R,
    threads: u32,
    limits: &Limits,
    later: &Later,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match codec {
        Codec::None => Box::new(input),
        Codec::Gzip => Box::new(gzip::Decoder::new(input, later.clone())),
        Codec::Bzip2 => Box::new(multibz::Decoder::new(input, threads as usize)),
        Codec::Xz => Box::new(Xz::new(input, threads, limits.xz_memlimit())?),
        Codec::Lzma => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(limits.xz_memlimit())
                .map_err(io::Error::other)?;
            Box::new(Lzma {
                inner: liblzma::bufread::XzDecoder::new_stream(input, stream),
            })
        }
        Codec::Lzo => Box::new(lzop::Decoder::new(input)),
        Codec::Lz4 => Box::new(Lz4::new(input)),
        Codec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)?;
            decoder.window_log_max(limits.zstd_window_log())?;
            Box::new(decoder)
        }
    })
}

/// Reads up to [`SNIFF_LEN`] bytes without consuming them.
/// Reads up to [`SNIFF_LEN`] bytes (fewer only at the end of the input), however the
/// input trickles in, and returns them with a reader that yields them again first.
fn sniff<R: Read + Send + 'static>(mut input: R) -> io::Result<(Vec<u8>, Head<R>)> {
    let mut head = vec![0u8; SNIFF_LEN];
    let mut got = 0;
    while got < SNIFF_LEN {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    let again = io::Cursor::new(head.clone()).chain(input);
    Ok((head, again))
}

type Head<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Counts the bytes read from the compressed input, for error messages.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Names the codec and the compressed offset in the decoder's errors.
struct Guard {
    inner: Box<dyn Read + Send>,
    codec: Codec,
    compressed: Arc<AtomicU64>,
}

impl Guard {
    fn new(inner: Box<dyn Read + Send>, codec: Codec, compressed: Arc<AtomicU64>) -> Guard {
        Guard {
            inner,
            codec,
            compressed,
        }
    }
}

impl Read for Guard {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = match e.kind() {
                io::ErrorKind::Interrupted => return e,
                io::ErrorKind::UnexpectedEof => io::ErrorKind::UnexpectedEof,
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(
                kind,
                format!(
                    "{} data error after {} compressed bytes: {e}",
                    self.codec,
                    self.compressed.load(Ordering::Relaxed)
                ),
            )
        })
    }
}

/// LZ4: frames one after another (lz4_flex reports the end of each frame as the end
/// of the stream; we go on with a new frame decoder while input remains), legacy
/// frames included; the watcher under the decoder reports a stream cut short.
struct Lz4<R: BufRead> {
    inner: Option<lz4_flex::frame::FrameDecoder<Watch<R>>>,
}

impl<R: BufRead> Lz4<R> {
    fn new(input: R) -> Lz4<R> {
        Lz4 {
            inner: Some(lz4_flex::frame::FrameDecoder::new(Watch::new(input))),
        }
    }
}

impl<R: BufRead> Read for Lz4<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let inner = self.inner.as_mut().expect("always put back");
            let n = inner.read(buf)?;
            if n > 0 || inner.get_mut().at_end()? {
                return Ok(n);
            }
            // A legacy stream ends only where the next frame starts: the decoder would
            // go on reading legacy blocks, so the next frame gets a new one.
            let watch = self.inner.take().expect("always put back").into_inner();
            self.inner = Some(lz4_flex::frame::FrameDecoder::new(watch));
        }
    }
}

/// `.lzma`: one stream, and nothing after it (as `xz -d`, which calls anything there
/// corrupt data).
struct Lzma<R: BufRead> {
    inner: liblzma::bufread::XzDecoder<R>,
}

impl<R: BufRead> Read for Lzma<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.inner.get_mut().fill_buf()?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "data follows the end of the lzma stream",
            ));
        }
        Ok(n)
    }
}

/// xz: the multithreaded decoder (several blocks decode on several cores), one stream
/// after another with the stream padding between them, as `xz -d` reads them.
struct Xz<R: BufRead> {
    decoder: Option<liblzma::bufread::XzDecoder<R>>,
    threads: u32,
    memlimit: u64,
}

impl<R: BufRead> Xz<R> {
    fn new(input: R, threads: u32, memlimit: u64) -> io::Result<Xz<R>> {
        Ok(Xz {
            decoder: Some(Xz::stream(input, threads, memlimit)?),
            threads,
            memlimit,
        })
    }

    fn stream(input: R, threads: u32, memlimit: u64) -> io::Result<liblzma::bufread::XzDecoder<R>> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(threads.max(1))
            .memlimit_threading(XZ_MEMLIMIT_THREADING)
            // Never below the threading budget, which would turn threads off (liblzma
            // lowers that budget to this): the first block's dictionary was checked
            // against the window limit from its header already.
            .memlimit_stop(memlimit.max(XZ_MEMLIMIT_THREADING))
            .decoder()
            .map_err(io::Error::other)?;
        Ok(liblzma::bufread::XzDecoder::new_stream(input, stream))
    }
}

impl<R: BufRead> Read for Xz<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // End of a stream: skip its padding; another stream may follow.
            let mut input = self.decoder.take().expect("checked above").into_inner();
            let mut padding = 0usize;
            loop {
                let available = input.fill_buf()?;
                if available.is_empty() {
                    if !padding.is_multiple_of(4) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "xz stream padding is not a multiple of four bytes",
                        ));
                    }
                    return Ok(0);
                }
                let zeros = available.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                padding += zeros;
                input.consume(zeros);
            }
            self.decoder = Some(Xz::stream(input, self.threads, self.memlimit)?);
        }
    }
}
