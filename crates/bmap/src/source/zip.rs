//! The first file of a zip archive, read as a stream (as the reference's `funzip`
//! does): the local header gives the method and, unless a data descriptor follows the
//! data, the sizes and CRC. Stored, deflated, bzip2 and zstd entries are decoded; the
//! CRC-32 and size are checked at the end, then the rest of the archive is read.

use std::io::{self, BufRead, Read};

const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The entry's data decoder, owning the archive stream.
enum Data<R: BufRead> {
    Stored(io::Take<R>),
    Deflate(flate2::bufread::DeflateDecoder<R>),
    Bzip2(bzip2::bufread::BzDecoder<R>),
    Zstd(Box<zstd::stream::read::Decoder<'static, R>>),
}

/// The image inside a zip archive.
pub struct Member<R: BufRead> {
    data: Option<Data<R>>,
    /// The rest of the archive after the entry (set once the entry is done).
    rest: Option<R>,
    header: Header,
    crc: crc32fast::Hasher,
    read: u64,
}

struct Header {
    /// The entry's name, to find it in the central directory.
    name: Vec<u8>,
    flags: u16,
    crc: u32,
    size: Option<u64>,
    zip64: bool,
}

impl<R: BufRead> Member<R> {
    /// Reads local headers up to the first entry that is not a directory. A zstd
    /// entry's window is held to 2^`zstd_window_log` bytes.
    pub fn open(mut input: R, zstd_window_log: u32) -> io::Result<Member<R>> {
        loop {
            let signature = read_u32(&mut input)?;
            if signature != LOCAL {
                return Err(invalid(
                    "the zip archive holds no file (no local file header)",
                ));
            }
            let mut fixed = [0u8; 26];
            input.read_exact(&mut fixed)?;
            let flags = le16(&fixed[2..]);
            let method = le16(&fixed[4..]);
            let crc = le32(&fixed[10..]);
            let mut compressed = u64::from(le32(&fixed[14..]));
            let mut size = u64::from(le32(&fixed[18..]));
            let name_len = usize::from(le16(&fixed[22..]));
            let extra_len = usize::from(le16(&fixed[24..]));
            let mut name = vec![0u8; name_len];
            input.read_exact(&mut name)?;
            let mut extra = vec![0u8; extra_len];
            input.read_exact(&mut extra)?;
            let zip64 = apply_zip64(&extra, &mut size, &mut compressed);
            let descriptor = flags & 0x0008 != 0;
            if flags & 0x0001 != 0 {
                return Err(invalid("encrypted zip entries are not supported"));
            }
            if name.ends_with(b"/") && !descriptor {
                io::copy(&mut (&mut input).take(compressed), &mut io::sink())?;
                continue;
            }
            let data = match method {
                0 if descriptor => {
                    return Err(invalid(
                        "a stored zip entry with a data descriptor cannot be read as a stream",
                    ));
                }
                0 => Data::Stored(input.take(compressed)),
                8 => Data::Deflate(flate2::bufread::DeflateDecoder::new(input)),
                12 => Data::Bzip2(bzip2::bufread::BzDecoder::new(input)),
                93 => {
                    let mut decoder = zstd::stream::read::Decoder::with_buffer(input)?;
                    decoder.window_log_max(zstd_window_log)?;
                    Data::Zstd(Box::new(decoder.single_frame()))
                }
                other => {
                    return Err(invalid(format!(
                        "zip compression method {other} is not supported (stored, deflate, \
                         bzip2 and zstd are)"
                    )));
                }
            };
            return Ok(Member {
                data: Some(data),
                rest: None,
                header: Header {
                    name,
                    flags,
                    crc,
                    size: (!descriptor).then_some(size),
                    zip64,
                },
                crc: crc32fast::Hasher::new(),
                read: 0,
            });
        }
    }

    /// The entry's size, when the local header gives it.
    pub fn size(&self) -> Option<u64> {
        self.header.size
    }

    /// Checks the CRC and size once the entry's data ended, then reads the archive's
    /// remaining bytes.
    fn finish(&mut self) -> io::Result<()> {
        let Some(data) = self.data.take() else {
            return Ok(());
        };
        let mut rest = match data {
            Data::Stored(take) => take.into_inner(),
            Data::Deflate(d) => d.into_inner(),
            Data::Bzip2(d) => d.into_inner(),
            Data::Zstd(d) => d.finish(),
        };
        let (crc, size) = if self.header.flags & 0x0008 != 0 {
            let mut first = read_u32(&mut rest)?;
            if first == DESCRIPTOR {
                first = read_u32(&mut rest)?;
            }
            let size = if self.header.zip64 {
                let _compressed = read_u64(&mut rest)?;
                read_u64(&mut rest)?
            } else {
                let _compressed = read_u32(&mut rest)?;
                u64::from(read_u32(&mut rest)?)
            };
            (first, size)
        } else {
            (self.header.crc, self.header.size.unwrap_or(0))
        };
        let actual = std::mem::take(&mut self.crc).finalize();
        if actual != crc {
            return Err(invalid(format!(
                "zip entry CRC-32 mismatch (calculated {actual:08x}, the archive says {crc:08x})"
            )));
        }
        if size != self.read {
            return Err(invalid(format!(
                "zip entry has {} bytes, the archive says {size}",
                self.read
            )));
        }
        let tail = check_end(&mut rest)?;
        check_central(&tail, &self.header.name, actual, self.read)?;
        self.rest = Some(rest);
        Ok(())
    }
}

impl<R: BufRead> Read for Member<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match self.data.as_mut() {
            None => return Ok(0),
            Some(Data::Stored(d)) => d.read(buf)?,
            Some(Data::Deflate(d)) => d.read(buf)?,
            Some(Data::Bzip2(d)) => d.read(buf)?,
            Some(Data::Zstd(d)) => d.read(buf)?,
        };
        if n == 0 {
            if let (Some(Data::Stored(take)), Some(size)) = (&self.data, self.header.size)
                && take.limit() > 0
            {
                let _ = size;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the zip archive ends inside the image",
                ));
            }
            self.finish()?;
            return Ok(0);
        }
        self.crc.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads the rest of the archive and checks that it ends with an end-of-central-
/// directory record (whose comment reaches exactly the end): a cut archive is an error.
/// Returns the archive's tail: the last 64 KiB or more, the end record at its end.
fn check_end(rest: &mut impl BufRead) -> io::Result<Vec<u8>> {
    // The record is 22 bytes plus a comment of at most 65535: keep that much of the tail.
    const KEEP: usize = 22 + 65535;
    let mut tail: Vec<u8> = Vec::with_capacity(KEEP * 2);
    loop {
        let buf = rest.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        tail.extend_from_slice(buf);
        let n = buf.len();
        rest.consume(n);
        if tail.len() > KEEP * 2 {
            tail.drain(..tail.len() - KEEP);
        }
    }
    let found = (0..tail.len().saturating_sub(21)).rev().find(|&at| {
        tail[at..at + 4] == [0x50, 0x4b, 0x05, 0x06]
            && at + 22 + usize::from(le16(&tail[at + 20..])) == tail.len()
    });
    let Some(at) = found else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the zip archive is truncated (its end-of-central-directory record is missing)",
        ));
    };
    tail.truncate(at + 22);
    Ok(tail)
}

/// Checks the central directory's record of the entry (found by name) against what was
/// read: its CRC-32 and size must be the local header's. Skipped when the directory
/// does not lie whole in `tail` (which ends with the end record), or is ZIP64's.
fn check_central(tail: &[u8], name: &[u8], crc: u32, read: u64) -> io::Result<()> {
    let end = tail.len() - 22;
    let size = le32(&tail[end + 12..]) as usize;
    let Some(mut at) = end.checked_sub(size) else {
        return Ok(());
    };
    while at + 46 <= end && tail[at..at + 4] == [0x50, 0x4b, 0x01, 0x02] {
        let record = &tail[at..end];
        let name_len = usize::from(le16(&record[28..]));
        let extra_len = usize::from(le16(&record[30..]));
        let comment_len = usize::from(le16(&record[32..]));
        let Some(extra) = record.get(46 + name_len..46 + name_len + extra_len) else {
            return Ok(());
        };
        if &record[46..46 + name_len] == name {
            let (expected_crc, mut size) = (le32(&record[16..]), u64::from(le32(&record[24..])));
            let mut compressed = u64::from(le32(&record[20..]));
            apply_zip64(extra, &mut size, &mut compressed);
            if (expected_crc, size) != (crc, read) {
                return Err(invalid(format!(
                    "the zip archive contradicts itself: its central directory says the entry \
                     has {size} bytes with CRC-32 {expected_crc:08x}, its local header and \
                     data {read} bytes with CRC-32 {crc:08x}"
                )));
            }
            return Ok(());
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(())
}

/// Applies a zip64 extended-information extra field; returns whether there was one.
fn apply_zip64(extra: &[u8], size: &mut u64, compressed: &mut u64) -> bool {
    let mut rest = extra;
    while rest.len() >= 4 {
        let id = le16(rest);
        let len = usize::from(le16(&rest[2..]));
        let body = &rest[4..(4 + len).min(rest.len())];
        if id == 0x0001 {
            let mut fields = body
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
            if *size == u64::from(u32::MAX) {
                *size = fields.next().unwrap_or(*size);
            }
            if *compressed == u64::from(u32::MAX) {
                *compressed = fields.next().unwrap_or(*compressed);
            }
            return true;
        }
        rest = &rest[(4 + len).min(rest.len())..];
    }
    false
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut buf = [0u8; 4];
    input.read_exact(&mut buf)?;
    Ok(u32::from_le_bytes(buf))
}

fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    input.read_exact(&mut buf)?;
    Ok(u64::from_le_bytes(buf))
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
