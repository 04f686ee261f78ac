//! The first regular file of a tar archive, as a reader. Reads ustar, GNU and pax
//! headers (long names, pax `size` records, base-256 sizes), checks each header's
//! checksum, and after the member's last byte reads the rest of the archive so that an
//! outer decoder reaches, and checks, its trailer.

use std::io::{self, BufRead, Read};

const BLOCK: u64 = 512;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The image inside a tar archive.
pub struct Member<R> {
    input: R,
    size: u64,
    remaining: u64,
    drained: bool,
}

impl<R: BufRead> Member<R> {
    /// Reads headers up to the first regular file.
    pub fn open(mut input: R) -> io::Result<Member<R>> {
        let mut offset = 0u64;
        let mut pax_size: Option<u64> = None;
        loop {
            let mut header = [0u8; BLOCK as usize];
            read_exact_or(
                &mut input,
                &mut header,
                "the tar archive ends before its first file",
            )?;
            offset += BLOCK;
            if header.iter().all(|&b| b == 0) {
                return Err(invalid("the tar archive holds no regular file"));
            }
            verify_checksum(&header, offset - BLOCK)?;
            let size = match pax_size.take() {
                Some(size) => size,
                None => parse_size(&header[124..136]).ok_or_else(|| {
                    invalid(format!(
                        "bad size in the tar header at byte {}",
                        offset - BLOCK
                    ))
                })?,
            };
            match header[156] {
                b'0' | 0 | b'7' => {
                    return Ok(Member {
                        input,
                        size,
                        remaining: size,
                        drained: false,
                    });
                }
                b'S' => return Err(invalid("GNU sparse tar members are not supported")),
                b'x' => {
                    let data = read_data(&mut input, size)?;
                    pax_size = pax_record(&data, "size");
                    skip_padding(&mut input, size)?;
                }
                _ => {
                    // Directories, links, long names, global headers: not the image.
                    io::copy(
                        &mut (&mut input).take(size.div_ceil(BLOCK) * BLOCK),
                        &mut io::sink(),
                    )?;
                }
            }
            offset += size.div_ceil(BLOCK) * BLOCK;
        }
    }

    /// The member's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads the rest of the archive (padding, other members, end blocks), checking
    /// its structure, so that a cut archive is an error and a compressed archive's
    /// trailer is reached and checked.
    fn drain(&mut self) -> io::Result<()> {
        let truncated =
            || io::Error::new(io::ErrorKind::UnexpectedEof, "the tar archive is truncated");
        skip_exact(
            &mut self.input,
            self.size.div_ceil(BLOCK) * BLOCK - self.size,
        )
        .map_err(|_| truncated())?;
        let mut header = [0u8; BLOCK as usize];
        loop {
            self.input
                .read_exact(&mut header)
                .map_err(|_| truncated())?;
            if header.iter().all(|&b| b == 0) {
                break;
            }
            verify_checksum(&header, 0)?;
            let size =
                parse_size(&header[124..136]).ok_or_else(|| invalid("bad size in a tar header"))?;
            skip_exact(&mut self.input, size.div_ceil(BLOCK) * BLOCK).map_err(|_| truncated())?;
        }
        // End of archive: zero blocks, padded with zeros to the record size.
        let mut rest = 0u64;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            if buf.iter().any(|&b| b != 0) {
                return Err(invalid("data after the end of the tar archive"));
            }
            let n = buf.len();
            rest += n as u64;
            self.input.consume(n);
        }
        if !rest.is_multiple_of(BLOCK) {
            return Err(truncated());
        }
        Ok(())
    }
}

fn skip_exact(input: &mut impl Read, count: u64) -> io::Result<()> {
    let copied = io::copy(&mut input.take(count), &mut io::sink())?;
    if copied < count {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"));
    }
    Ok(())
}

impl<R: BufRead> Read for Member<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            if !self.drained {
                self.drain()?;
                self.drained = true;
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar archive ends inside the image",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn read_exact_or(input: &mut impl Read, buf: &mut [u8], what: &str) -> io::Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, what.to_owned())
        } else {
            e
        }
    })
}

fn read_data(input: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    if size > 1 << 20 {
        return Err(invalid("a pax header larger than 1 MiB"));
    }
    let mut data = vec![0u8; size as usize];
    read_exact_or(input, &mut data, "the tar archive ends inside a header")?;
    Ok(data)
}

fn skip_padding(input: &mut impl Read, size: u64) -> io::Result<()> {
    let pad = size.div_ceil(BLOCK) * BLOCK - size;
    io::copy(&mut input.take(pad), &mut io::sink())?;
    Ok(())
}

fn verify_checksum(header: &[u8], at: u64) -> io::Result<()> {
    let stored = parse_octal(&header[148..156]);
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != Some(sum) {
        return Err(invalid(format!(
            "not a tar archive, or a corrupt tar header at byte {at} (checksum mismatch)"
        )));
    }
    Ok(())
}

/// An octal number, or GNU base-256 when the first byte has its high bit set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    parse_octal(field)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The value of a pax record (`LEN KEY=VALUE\n`).
fn pax_record(data: &[u8], key: &str) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    text.lines().find_map(|line| {
        let (_, record) = line.split_once(' ')?;
        let (k, v) = record.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[10] = 2;
        assert_eq!(parse_size(&big), Some(513));
        assert_eq!(
            pax_record(b"20 size=8589934592\n", "size"),
            Some(8_589_934_592)
        );
    }
}
