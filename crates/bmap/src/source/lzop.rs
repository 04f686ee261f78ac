//! The lzop container: a header, then blocks of LZO1X data, each with Adler-32 or
//! CRC-32 checksums of its decompressed (and optionally compressed) bytes, ended by a
//! zero-length block. Blocks are decompressed with the `lzo` crate; every checksum the
//! file carries is verified. Several lzop files one after another are read as one.

use std::io::{self, BufRead, Read};

const MAGIC: [u8; 9] = [0x89, b'L', b'Z', b'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a];
const F_ADLER32_D: u32 = 0x0000_0001;
const F_ADLER32_C: u32 = 0x0000_0002;
const F_H_EXTRA_FIELD: u32 = 0x0000_0040;
const F_CRC32_D: u32 = 0x0000_0100;
const F_CRC32_C: u32 = 0x0000_0200;
const F_H_FILTER: u32 = 0x0000_0800;
const F_H_CRC32: u32 = 0x0000_1000;
/// lzop writes blocks of at most 256 KiB; liblzo's limit is 64 MiB.
const MAX_BLOCK: u32 = 64 << 20;

/// Decodes an lzop stream.
pub struct Decoder<R> {
    input: R,
    /// Flags of the current file; `None` before a header is read.
    flags: Option<u32>,
    out: Vec<u8>,
    pos: usize,
    compressed: Vec<u8>,
    done: bool,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl<R: BufRead> Decoder<R> {
    /// A decoder over `input`, which starts with the lzop magic.
    pub fn new(input: R) -> Decoder<R> {
        Decoder {
            input,
            flags: None,
            out: Vec::new(),
            pos: 0,
            compressed: Vec::new(),
            done: false,
        }
    }

    fn read_header(&mut self) -> io::Result<u32> {
        let mut magic = [0u8; 9];
        self.input.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(invalid("not an lzop file (bad magic)"));
        }
        // Everything from the version to the end of the name is checksummed.
        let mut header = Vec::with_capacity(64);
        let mut take = |input: &mut R, n: usize| -> io::Result<Vec<u8>> {
            let mut buf = vec![0u8; n];
            input.read_exact(&mut buf)?;
            header.extend_from_slice(&buf);
            Ok(buf)
        };
        let version = be16(&take(&mut self.input, 2)?);
        let _lib_version = take(&mut self.input, 2)?;
        if version >= 0x0940 {
            let _needed = take(&mut self.input, 2)?;
        }
        let method = take(&mut self.input, 1)?[0];
        if !matches!(method, 1..=3) {
            return Err(invalid(format!(
                "unsupported lzop method {method} (only LZO1X)"
            )));
        }
        if version >= 0x0940 {
            let _level = take(&mut self.input, 1)?;
        }
        let flags = be32(&take(&mut self.input, 4)?);
        if flags & F_H_FILTER != 0 {
            return Err(invalid("lzop files with filters are not supported"));
        }
        let _mode = take(&mut self.input, 4)?;
        let _mtime = take(&mut self.input, if version >= 0x0940 { 8 } else { 4 })?;
        let name_len = take(&mut self.input, 1)?[0] as usize;
        let _name = take(&mut self.input, name_len)?;
        let expected = self.read_u32()?;
        let actual = if flags & F_H_CRC32 != 0 {
            crc32(&header)
        } else {
            adler32(&header)
        };
        if actual != expected {
            return Err(invalid("lzop header checksum mismatch"));
        }
        if flags & F_H_EXTRA_FIELD != 0 {
            let len = self.read_u32()?;
            io::copy(&mut (&mut self.input).take(u64::from(len)), &mut io::sink())?;
            let _checksum = self.read_u32()?;
        }
        Ok(flags)
    }

    fn read_u32(&mut self) -> io::Result<u32> {
        let mut buf = [0u8; 4];
        self.input.read_exact(&mut buf)?;
        Ok(u32::from_be_bytes(buf))
    }

    /// Decodes the next block into `out`; `false` at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        let flags = match self.flags {
            Some(flags) => flags,
            None => {
                let flags = self.read_header()?;
                self.flags = Some(flags);
                flags
            }
        };
        let dst_len = self.read_u32()?;
        if dst_len == 0 {
            // End of this file; another may follow.
            self.flags = None;
            if self.input.fill_buf()?.is_empty() {
                return Ok(false);
            }
            return self.next_block();
        }
        let src_len = self.read_u32()?;
        if dst_len > MAX_BLOCK || src_len > dst_len {
            return Err(invalid(format!(
                "bad lzop block sizes ({src_len} -> {dst_len} bytes)"
            )));
        }
        let d_adler = (flags & F_ADLER32_D != 0)
            .then(|| self.read_u32())
            .transpose()?;
        let d_crc = (flags & F_CRC32_D != 0)
            .then(|| self.read_u32())
            .transpose()?;
        let packed = src_len < dst_len;
        let c_adler = (packed && flags & F_ADLER32_C != 0)
            .then(|| self.read_u32())
            .transpose()?;
        let c_crc = (packed && flags & F_CRC32_C != 0)
            .then(|| self.read_u32())
            .transpose()?;

        self.compressed.resize(src_len as usize, 0);
        self.input.read_exact(&mut self.compressed)?;
        check(c_adler, || adler32(&self.compressed), "compressed Adler-32")?;
        check(c_crc, || crc32(&self.compressed), "compressed CRC-32")?;
        self.out.resize(dst_len as usize, 0);
        if packed {
            let n = lzo::decompress_into(&self.compressed, &mut self.out)
                .map_err(|e| invalid(format!("corrupt LZO1X block: {e:?}")))?;
            if n != dst_len as usize {
                return Err(invalid(format!(
                    "LZO1X block gave {n} bytes, not {dst_len}"
                )));
            }
        } else {
            self.out.copy_from_slice(&self.compressed);
        }
        check(d_adler, || adler32(&self.out), "Adler-32")?;
        check(d_crc, || crc32(&self.out), "CRC-32")?;
        self.pos = 0;
        Ok(true)
    }
}

fn check(expected: Option<u32>, actual: impl FnOnce() -> u32, what: &str) -> io::Result<()> {
    match expected {
        Some(expected) if expected != actual() => {
            Err(invalid(format!("lzop block {what} mismatch")))
        }
        _ => Ok(()),
    }
}

/// An end of input inside a block is a cut file: say so, rather than "failed to fill
/// whole buffer".
fn truncated(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the lzop file is truncated: it ends inside a block",
        )
    } else {
        error
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            if !self.next_block().map_err(truncated)? {
                self.done = true;
                self.out.clear();
                self.pos = 0;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn adler32(data: &[u8]) -> u32 {
    let mut adler = adler2::Adler32::new();
    adler.write_slice(data);
    adler.checksum()
}

fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}
