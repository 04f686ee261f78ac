//! The limits on what a compressed or archived image may ask of the decoders, in one
//! place: the decoding window a zstd frame or an xz/lzma stream declares in its header
//! (the memory the decoder must hold), and the caps on tar and zip headers.
//! docs/limits.md tables them with their errors.

use std::fmt;
use std::io;

use super::compression::Codec;
use crate::format::human_size;

/// The largest decoding window (zstd) or dictionary (xz, lzma) accepted by default:
/// 128 MiB, the most `zstd -d` accepts without `--long`/`--memory` (`--long=27`), and
/// twice the 64 MiB dictionary of `xz -9`/`-9e`, the largest xz preset. A header asking
/// for more (up to 2 GiB for zstd `--ultra --long=31`, 1.5 GiB for xz, 4 GiB for lzma)
/// is refused before the decoder allocates it, unless [`Limits::max_window`] is raised.
pub const DEFAULT_MAX_WINDOW: u64 = 128 << 20;

/// What the decoders may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest zstd window or xz/lzma dictionary accepted, in bytes.
    pub max_window: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_window: DEFAULT_MAX_WINDOW,
        }
    }
}

impl Limits {
    /// The `window_log_max` given to the zstd decoder, for frames after the first (the
    /// first is checked exactly from its header): the limit rounded up to a power of two.
    pub(super) fn zstd_window_log(&self) -> u32 {
        let log = 64 - self.max_window.saturating_sub(1).leading_zeros();
        log.clamp(10, 31)
    }

    /// The memory limit given to liblzma, for blocks and streams after the first: the
    /// dictionary plus the decoder's own few hundred KiB and its buffers.
    pub(super) fn xz_memlimit(&self) -> u64 {
        self.max_window.saturating_add(16 << 20)
    }

    /// Refuses a stream whose first bytes `head` declare a window over the limit.
    pub(super) fn check(&self, codec: Codec, head: &[u8]) -> io::Result<()> {
        let window = match codec {
            Codec::Zstd => zstd_window(head),
            Codec::Xz => xz_dictionary(head),
            Codec::Lzma => lzma_dictionary(head),
            _ => None,
        };
        match window {
            Some(window) if window > self.max_window => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                WindowTooLarge {
                    codec,
                    window,
                    limit: self.max_window,
                },
            )),
            _ => Ok(()),
        }
    }
}

/// A compressed stream whose header asks for more decoding memory than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowTooLarge {
    /// The format.
    pub codec: Codec,
    /// The window or dictionary the header declares, in bytes.
    pub window: u64,
    /// The limit, in bytes.
    pub limit: u64,
}

impl fmt::Display for WindowTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.codec {
            Codec::Zstd => "window",
            _ => "dictionary",
        };
        write!(
            f,
            "its header asks for a {} {what} ({} bytes) to decode, more than the limit of {}",
            human_size(self.window),
            self.window,
            human_size(self.limit)
        )
    }
}

impl std::error::Error for WindowTooLarge {}

/// The window of the first zstd frame (after any skippable frames) in `head`.
fn zstd_window(head: &[u8]) -> Option<u64> {
    let frame = super::declared::first_zstd_frame(head)?;
    let descriptor = *frame.first()?;
    if descriptor & 0x20 != 0 {
        // Single segment: the window is the content size (the frame is decoded
        // straight into its output, as large as the content).
        return super::declared::frame_content_size(frame);
    }
    let byte = *frame.get(1)?;
    let base = 1u64 << (10 + (byte >> 3));
    Some(base + (base / 8) * u64::from(byte & 7))
}

/// The LZMA2 dictionary of the first block of an xz stream in `head`.
fn xz_dictionary(head: &[u8]) -> Option<u64> {
    // Stream header (12 bytes), then the block header: its size, its flags, the
    // optional sizes, then the filter flags (the last filter is LZMA2).
    let block = head.get(12..)?;
    let flags = *block.get(1)?;
    let mut at = 2usize;
    for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
        if present {
            at += varint(block.get(at..)?)?.1;
        }
    }
    for _ in 0..=(flags & 3) {
        let (id, len) = varint(block.get(at..)?)?;
        at += len;
        let (size, len) = varint(block.get(at..)?)?;
        at += len;
        if id == 0x21 && size == 1 {
            let bits = u32::from(*block.get(at)? & 0x3f);
            return match bits {
                0..=39 => Some(u64::from(2 | (bits & 1)) << (bits / 2 + 11)),
                _ => Some(u64::from(u32::MAX)),
            };
        }
        at += usize::try_from(size).ok()?;
    }
    None
}

/// The dictionary a `.lzma` header declares (bytes 1-4, little-endian).
fn lzma_dictionary(head: &[u8]) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(
        head.get(1..5)?.try_into().ok()?,
    )))
}

/// An xz variable-length integer and its length in bytes.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(9).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zstd_window_log_rounds_the_limit_up() {
        let log = |max_window| Limits { max_window }.zstd_window_log();
        assert_eq!(log(128 << 20), 27);
        assert_eq!(log((128 << 20) + 1), 28);
        assert_eq!(log(1), 10);
        assert_eq!(log(u64::MAX), 31);
    }

    #[test]
    fn headers_give_their_windows() {
        // zstd, window descriptor 0x88: 2^(10+17) + 0 = 128 MiB.
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x88, 0, 0];
        assert_eq!(zstd_window(&zstd), Some(128 << 20));
        // lzma, dictionary 8 MiB.
        let lzma = [0x5d, 0, 0, 0x80, 0, 0xff, 0xff];
        assert_eq!(lzma_dictionary(&lzma), Some(8 << 20));
        // xz: a block with no sizes and one filter, LZMA2 props 0x16: 2 << 22, 8 MiB.
        let mut xz = vec![0xfd, b'7', b'z', b'X', b'Z', 0, 0, 1, 0, 0, 0, 0];
        xz.extend([0x02, 0x00, 0x21, 0x01, 0x16]);
        assert_eq!(xz_dictionary(&xz), Some(8 << 20));
        xz[16] = 40;
        assert_eq!(xz_dictionary(&xz), Some(u64::from(u32::MAX)));
    }
}
