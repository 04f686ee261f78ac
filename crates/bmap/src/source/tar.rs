//! The first regular file of a tar archive, as a reader. Reads ustar, GNU and pax
//! headers (long names, pax `size` records, base-256 sizes), checks each header's
//! checksum, expands sparse members (GNU `tar -S`, and pax sparse formats 0.0, 0.1 and
//! 1.0) as `tar -x` would, and after the member's last byte reads the rest of the
//! archive, checking its structure, so that a cut archive is an error and an outer
//! decoder reaches, and checks, its trailer.

use std::io::{self, BufRead, Read};

const BLOCK: u64 = 512;
/// Sparse map entries we accept (a hostile archive could declare billions).
const MAX_REGIONS: usize = 1 << 20;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the tar archive is truncated")
}

/// The image inside a tar archive.
pub struct Member<R> {
    input: R,
    /// The file's real (expanded) size.
    size: u64,
    /// Data regions `(offset, length)` in the file, ascending; the rest is zeros.
    map: Vec<(u64, u64)>,
    /// Index of the current region, position in the file.
    region: usize,
    pos: u64,
    /// Bytes of the member's body (the header's size) still to consume after the data.
    body_left: u64,
    /// The body's size, rounded up to whole blocks, for the padding.
    body_size: u64,
    drained: bool,
}

/// Pax extended header records that matter here.
#[derive(Default)]
struct Pax {
    size: Option<u64>,
    sparse_major: Option<u64>,
    sparse_realsize: Option<u64>,
    sparse_map: Vec<(u64, u64)>,
    pending_offset: Option<u64>,
}

impl Pax {
    fn parse(data: &[u8]) -> io::Result<Pax> {
        let text = std::str::from_utf8(data).map_err(|_| invalid("a pax header is not UTF-8"))?;
        let mut pax = Pax::default();
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| invalid("a bad number in a pax header"))
        };
        for line in text.lines() {
            let Some((_, record)) = line.split_once(' ') else {
                continue;
            };
            let Some((key, value)) = record.split_once('=') else {
                continue;
            };
            match key {
                "size" => pax.size = Some(number(value)?),
                "GNU.sparse.major" => pax.sparse_major = Some(number(value)?),
                "GNU.sparse.size" | "GNU.sparse.realsize" => {
                    pax.sparse_realsize = Some(number(value)?)
                }
                // Format 0.0: offset/numbytes pairs as repeated records.
                "GNU.sparse.offset" => pax.pending_offset = Some(number(value)?),
                "GNU.sparse.numbytes" => {
                    let offset = pax
                        .pending_offset
                        .take()
                        .ok_or_else(|| invalid("a bad pax sparse map"))?;
                    pax.sparse_map.push((offset, number(value)?));
                }
                // Format 0.1: the whole map in one record.
                "GNU.sparse.map" => {
                    let numbers = value
                        .split(',')
                        .map(number)
                        .collect::<io::Result<Vec<_>>>()?;
                    if numbers.len() % 2 != 0 {
                        return Err(invalid("a bad pax sparse map"));
                    }
                    pax.sparse_map
                        .extend(numbers.chunks_exact(2).map(|p| (p[0], p[1])));
                }
                _ => {}
            }
            if pax.sparse_map.len() > MAX_REGIONS {
                return Err(invalid("a pax sparse map with too many regions"));
            }
        }
        Ok(pax)
    }
}

impl<R: BufRead> Member<R> {
    /// Reads headers up to the first regular file.
    pub fn open(mut input: R) -> io::Result<Member<R>> {
        let mut pax = Pax::default();
        loop {
            let mut header = [0u8; BLOCK as usize];
            read_exact_or(
                &mut input,
                &mut header,
                "the tar archive ends before its first file",
            )?;
            if header.iter().all(|&b| b == 0) {
                return Err(invalid("the tar archive holds no regular file"));
            }
            verify_checksum(&header)?;
            let size = match pax.size {
                Some(size) => size,
                None => parse_size(&header[124..136])
                    .ok_or_else(|| invalid("bad size in a tar header"))?,
            };
            match header[156] {
                b'0' | 0 | b'7' => return Member::regular(input, size, pax),
                b'S' => return Member::gnu_sparse(input, &header, size),
                b'x' => {
                    pax = Pax::parse(&read_data(&mut input, size)?)?;
                    skip_exact(&mut input, padding(size)).map_err(|_| truncated())?;
                }
                _ => {
                    // Directories, links, long names, global headers: not the image.
                    pax = Pax::default();
                    skip_exact(&mut input, size + padding(size)).map_err(|_| truncated())?;
                }
            }
        }
    }

    fn new(
        input: R,
        size: u64,
        map: Vec<(u64, u64)>,
        body: u64,
        consumed: u64,
    ) -> io::Result<Member<R>> {
        let mut end = 0u64;
        let mut stored = 0u64;
        for &(offset, len) in &map {
            let region_end = offset
                .checked_add(len)
                .ok_or_else(|| invalid("a bad sparse map"))?;
            if offset < end || region_end > size {
                return Err(invalid(
                    "a sparse map with overlapping or out-of-file regions",
                ));
            }
            end = region_end;
            stored += len;
        }
        if consumed + stored > body {
            return Err(invalid(
                "a sparse member whose data is larger than the member",
            ));
        }
        Ok(Member {
            input,
            size,
            map,
            region: 0,
            pos: 0,
            body_left: body - consumed - stored,
            body_size: body,
            drained: false,
        })
    }

    fn regular(mut input: R, size: u64, pax: Pax) -> io::Result<Member<R>> {
        match (pax.sparse_major, pax.sparse_map.is_empty()) {
            // Format 1.0: the map is at the start of the member's data.
            (Some(1), _) => {
                let realsize = pax
                    .sparse_realsize
                    .ok_or_else(|| invalid("a pax sparse member without its real size"))?;
                let (map, consumed) = read_sparse_map(&mut input)?;
                Member::new(input, realsize, map, size, consumed)
            }
            // Formats 0.0 and 0.1: the map is in the pax header.
            (_, false) => {
                let realsize = pax
                    .sparse_realsize
                    .ok_or_else(|| invalid("a pax sparse member without its real size"))?;
                Member::new(input, realsize, pax.sparse_map, size, 0)
            }
            _ => Member::new(input, size, vec![(0, size)], size, 0),
        }
    }

    /// An old GNU sparse member (type `S`): the map is in the header and extension blocks.
    fn gnu_sparse(mut input: R, header: &[u8], size: u64) -> io::Result<Member<R>> {
        let realsize = parse_size(&header[483..495])
            .ok_or_else(|| invalid("bad real size in a GNU sparse header"))?;
        let mut map = Vec::new();
        push_entries(&mut map, &header[386..482])?;
        let mut extended = header[482] != 0;
        while extended {
            let mut block = [0u8; BLOCK as usize];
            input.read_exact(&mut block).map_err(|_| truncated())?;
            push_entries(&mut map, &block[..504])?;
            extended = block[504] != 0;
            if map.len() > MAX_REGIONS {
                return Err(invalid("a GNU sparse map with too many regions"));
            }
        }
        Member::new(input, realsize, map, size, 0)
    }

    /// The file's size in bytes (expanded, for a sparse member).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads the rest of the archive (padding, other members, end blocks), checking
    /// its structure.
    fn drain(&mut self) -> io::Result<()> {
        skip_exact(&mut self.input, self.body_left + padding(self.body_size))
            .map_err(|_| truncated())?;
        let mut header = [0u8; BLOCK as usize];
        let mut pax_size = None;
        loop {
            self.input
                .read_exact(&mut header)
                .map_err(|_| truncated())?;
            if header.iter().all(|&b| b == 0) {
                break;
            }
            verify_checksum(&header)?;
            let size = match pax_size.take() {
                Some(size) => size,
                None => parse_size(&header[124..136])
                    .ok_or_else(|| invalid("bad size in a tar header"))?,
            };
            if header[156] == b'x' {
                pax_size = Pax::parse(&read_data(&mut self.input, size)?)?.size;
                skip_exact(&mut self.input, padding(size)).map_err(|_| truncated())?;
            } else {
                skip_exact(&mut self.input, size + padding(size)).map_err(|_| truncated())?;
            }
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

impl<R: BufRead> Read for Member<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos == self.size {
            if !self.drained {
                self.drain()?;
                self.drained = true;
            }
            return Ok(0);
        }
        let limit = |n: u64| buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        // Past the current region: move on.
        while let Some(&(offset, len)) = self.map.get(self.region)
            && self.pos >= offset + len
        {
            self.region += 1;
        }
        match self.map.get(self.region) {
            Some(&(offset, len)) if self.pos >= offset => {
                let want = limit(offset + len - self.pos);
                let n = self.input.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the tar archive ends inside the image",
                    ));
                }
                self.pos += n as u64;
                Ok(n)
            }
            // A hole before the next region, or after the last one.
            next => {
                let hole_end = next.map_or(self.size, |&(offset, _)| offset);
                let n = limit(hole_end - self.pos);
                buf[..n].fill(0);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

/// GNU sparse entries (12-byte octal offset and length pairs) until an empty one.
fn push_entries(map: &mut Vec<(u64, u64)>, area: &[u8]) -> io::Result<()> {
    for entry in area.chunks_exact(24) {
        if entry[0] == 0 {
            break;
        }
        let offset = parse_size(&entry[..12]).ok_or_else(|| invalid("a bad GNU sparse entry"))?;
        let len = parse_size(&entry[12..]).ok_or_else(|| invalid("a bad GNU sparse entry"))?;
        map.push((offset, len));
    }
    Ok(())
}

/// The pax 1.0 sparse map at the start of a member's data: decimal numbers, one per
/// line (count, then offset and length pairs), padded to a whole block. Returns the
/// map and the bytes it took.
fn read_sparse_map(input: &mut impl BufRead) -> io::Result<(Vec<(u64, u64)>, u64)> {
    let mut consumed = 0u64;
    let mut next_number = |input: &mut dyn BufRead| -> io::Result<u64> {
        let mut line = Vec::new();
        let n = input.take(32).read_until(b'\n', &mut line)?;
        consumed += n as u64;
        let text = std::str::from_utf8(&line).map_err(|_| invalid("a bad pax sparse map"))?;
        text.trim_end_matches('\n')
            .parse()
            .map_err(|_| invalid("a bad pax sparse map"))
    };
    let count = next_number(input)?;
    if count > MAX_REGIONS as u64 {
        return Err(invalid("a pax sparse map with too many regions"));
    }
    let mut map = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let offset = next_number(input)?;
        let len = next_number(input)?;
        map.push((offset, len));
    }
    let pad = padding(consumed);
    skip_exact(input, pad).map_err(|_| truncated())?;
    Ok((map, consumed + pad))
}

fn padding(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK - size
}

fn skip_exact(input: &mut impl Read, count: u64) -> io::Result<()> {
    let copied = io::copy(&mut input.take(count), &mut io::sink())?;
    if copied < count {
        return Err(truncated());
    }
    Ok(())
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

fn verify_checksum(header: &[u8]) -> io::Result<()> {
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
        return Err(invalid(
            "not a tar archive, or a corrupt tar header (checksum mismatch)",
        ));
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
        let pax = Pax::parse(b"20 size=8589934592\n").expect("pax");
        assert_eq!(pax.size, Some(8_589_934_592));
        let pax = Pax::parse(b"30 GNU.sparse.map=0,10,20,5\n").expect("pax");
        assert_eq!(pax.sparse_map, [(0, 10), (20, 5)]);
    }

    #[test]
    fn pax_one_zero_map() {
        let mut data = b"2\n0\n4\n100\n3\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcdxyz");
        let (map, consumed) = read_sparse_map(&mut &data[..]).expect("map");
        assert_eq!(map, [(0, 4), (100, 3)]);
        assert_eq!(consumed, 512);
    }
}
