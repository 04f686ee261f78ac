//! Sizes a compressed stream declares before it is decoded, so that a destination too
//! small for the image is refused before anything is written: the exact size from the
//! indexes at the end of an xz file (when the file can be read at offsets), and the
//! content size in a zstd frame header (a lower bound: more frames may follow).
//!
//! Nothing here refuses a stream: a malformed index or header only means that no size
//! is declared, and the decoder reports what is wrong when it gets there.

use std::io;

use super::RandomAccess;

/// xz stream header and footer size.
const XZ_EDGE: u64 = 12;
const XZ_HEADER_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];
/// Largest index we read (a 4 GiB image made by `xz -T0` has a few hundred records).
const XZ_MAX_INDEX: u64 = 16 << 20;
/// Largest stream padding we look through between or after streams.
const XZ_MAX_PADDING: u64 = 1 << 20;

/// The decoded size of the xz file `source` of `len` bytes: the sum of the uncompressed
/// sizes in the index of every stream, walked backwards from the last footer. `None`
/// when anything does not add up.
pub fn xz_size(source: &mut dyn RandomAccess, len: u64) -> Option<u64> {
    let mut end = len;
    let mut total = 0u64;
    while end > 0 {
        end = skip_padding(source, end)?;
        let (start, size) = xz_stream(source, end)?;
        total = total.checked_add(size)?;
        end = start;
    }
    (len > 0).then_some(total)
}

/// The end of the stream before the zero padding that ends at `end` (read a block at
/// a time: a remote source answers each read with a request).
fn skip_padding(source: &mut dyn RandomAccess, mut end: u64) -> Option<u64> {
    let limit = end.saturating_sub(XZ_MAX_PADDING);
    let mut block = vec![0u8; 4096];
    loop {
        let len = end.min(block.len() as u64) & !3;
        if len == 0 {
            return Some(end);
        }
        let block = &mut block[..len as usize];
        if !read_exact_at(source, block, end - len).ok()? {
            return None;
        }
        let zeros = block.rchunks(4).take_while(|w| w == &[0; 4]).count() as u64 * 4;
        end -= zeros;
        if zeros < len {
            return Some(end);
        }
        if end < limit {
            return None;
        }
    }
}

/// The stream that ends at `end`: its start and decoded size.
fn xz_stream(source: &mut dyn RandomAccess, end: u64) -> Option<(u64, u64)> {
    let mut footer = [0u8; XZ_EDGE as usize];
    if end < 2 * XZ_EDGE || !read_exact_at(source, &mut footer, end - XZ_EDGE).ok()? {
        return None;
    }
    let crc = u32::from_le_bytes(footer[..4].try_into().ok()?);
    if &footer[10..] != b"YZ" || crc32fast::hash(&footer[4..10]) != crc {
        return None;
    }
    let backward = u64::from(u32::from_le_bytes(footer[4..8].try_into().ok()?));
    let index_len = (backward + 1) * 4;
    if index_len > XZ_MAX_INDEX {
        return None;
    }
    let index_start = (end - XZ_EDGE).checked_sub(index_len)?;
    let mut index = vec![0u8; usize::try_from(index_len).ok()?];
    if !read_exact_at(source, &mut index, index_start).ok()? {
        return None;
    }
    let (blocks, size) = parse_index(&index)?;
    let start = index_start.checked_sub(blocks)?.checked_sub(XZ_EDGE)?;
    let mut header = [0u8; XZ_EDGE as usize];
    if !read_exact_at(source, &mut header, start).ok()?
        || header[..6] != XZ_HEADER_MAGIC
        || header[6..8] != footer[8..10]
    {
        return None;
    }
    Some((start, size))
}

/// An xz index: the bytes its blocks take (each padded to four bytes) and their
/// decoded size.
fn parse_index(index: &[u8]) -> Option<(u64, u64)> {
    let (body, crc) = index.split_at(index.len().checked_sub(4)?);
    if body.first() != Some(&0) || crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?)
    {
        return None;
    }
    let mut rest = &body[1..];
    let records = varint(&mut rest)?;
    let (mut blocks, mut size) = (0u64, 0u64);
    for _ in 0..records {
        let unpadded = varint(&mut rest)?;
        let uncompressed = varint(&mut rest)?;
        blocks = blocks.checked_add(unpadded.checked_add(3)? & !3)?;
        size = size.checked_add(uncompressed)?;
    }
    // Only the index padding (zeros, to a multiple of four) may remain.
    (rest.len() < 4 && rest.iter().all(|&b| b == 0)).then_some((blocks, size))
}

/// An xz variable-length integer (seven bits a byte, at most nine bytes).
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Fills `buf` from `offset`; `Ok(false)` when the source ends first.
fn read_exact_at(source: &mut dyn RandomAccess, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match source.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The Frame_Content_Size of the first zstd frame in `head` (after any skippable
/// frames, as pzstd writes first), when its header declares one. More frames may
/// follow: the image holds at least this many bytes.
pub fn zstd_content_size(head: &[u8]) -> Option<u64> {
    frame_content_size(first_zstd_frame(head)?)
}

/// The header of the first zstd frame in `head` (from its Frame_Header_Descriptor,
/// past the magic number), after any skippable frames; `None` when `head` is not
/// zstd or too short.
pub(super) fn first_zstd_frame(head: &[u8]) -> Option<&[u8]> {
    let mut at = 0usize;
    loop {
        let magic = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
        if magic & 0xffff_fff0 == 0x184d_2a50 {
            let len = u32::from_le_bytes(head.get(at + 4..at + 8)?.try_into().ok()?);
            at = at.checked_add(8)?.checked_add(usize::try_from(len).ok()?)?;
            continue;
        }
        return (magic == 0xfd2f_b528).then(|| head.get(at + 4..)).flatten();
    }
}

/// The content size in a frame header (from its descriptor byte on).
pub(super) fn frame_content_size(header: &[u8]) -> Option<u64> {
    let descriptor = *header.first()?;
    let single_segment = descriptor & 0x20 != 0;
    let fcs_len = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => return None,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let window_len = usize::from(!single_segment);
    let dictionary_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let start = 1 + window_len + dictionary_len;
    let field = header.get(start..start + fcs_len)?;
    let mut bytes = [0u8; 8];
    bytes[..fcs_len].copy_from_slice(field);
    let value = u64::from_le_bytes(bytes);
    Some(if fcs_len == 2 { value + 256 } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("compress")
    }

    fn size_of(mut file: Vec<u8>) -> Option<u64> {
        let len = file.len() as u64;
        let mut source = Bytes(std::mem::take(&mut file));
        xz_size(&mut source, len)
    }

    struct Bytes(Vec<u8>);

    impl RandomAccess for Bytes {
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(self.0.len());
            let n = buf.len().min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            Ok(n)
        }
    }

    #[test]
    fn the_xz_index_of_every_stream_gives_the_decoded_size() {
        let one = xz(&[7u8; 100_000]);
        assert_eq!(size_of(one.clone()), Some(100_000));
        let two = [one.clone(), vec![0; 8], xz(b"hello"), vec![0; 4]].concat();
        assert_eq!(size_of(two), Some(100_005));
    }

    #[test]
    fn a_cut_or_damaged_xz_file_declares_nothing() {
        let one = xz(&[7u8; 100_000]);
        assert_eq!(size_of(one[..one.len() - 1].to_vec()), None);
        let mut damaged = one.clone();
        let at = damaged.len() - 20;
        damaged[at] ^= 1;
        assert_eq!(size_of(damaged), None);
        assert_eq!(size_of([one, vec![0; 3]].concat()), None);
        assert_eq!(size_of(Vec::new()), None);
    }

    #[test]
    fn the_zstd_frame_header_gives_a_lower_bound() {
        let frame = zstd::bulk::compress(&[1u8; 70_000], 3).expect("compress");
        assert_eq!(zstd_content_size(&frame), Some(70_000));
        let skippable = [
            &0x184d_2a50u32.to_le_bytes()[..],
            &4u32.to_le_bytes(),
            &[0; 4],
        ]
        .concat();
        assert_eq!(
            zstd_content_size(&[skippable, frame].concat()),
            Some(70_000)
        );
        assert_eq!(zstd_content_size(b"not zstd"), None);
    }
}
