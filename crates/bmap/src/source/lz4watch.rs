//! Watches the structure of an LZ4 stream as a decoder reads it, to tell a complete
//! stream from a truncated one: `lz4_flex` takes the end of input at a block boundary
//! for the end of the frame even when the frame's end mark and checksum are missing.
//! The watcher follows frame headers, block sizes, end marks, checksums, skippable
//! frames and legacy blocks over the compressed bytes, and turns an end of input
//! anywhere but between frames (or between legacy blocks) into an error. It also hides
//! the magic number of a legacy stream that follows another, which `lz4 -d` reads on,
//! and ends a legacy stream where a frame of the current format starts (`lz4 -d` reads
//! that frame on; the caller starts a new frame decoder).

use std::io::{self, BufRead, Read};

const FRAME: u32 = 0x184D_2204;
const LEGACY: u32 = 0x184C_2102;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a magic number (between frames).
    Magic,
    /// Expecting FLG and BD.
    Descriptor,
    /// Expecting the rest of the descriptor (content size, dictionary id, HC).
    DescriptorRest {
        block_checksum: bool,
        content_checksum: bool,
    },
    /// Expecting a block size.
    BlockSize {
        block_checksum: bool,
        content_checksum: bool,
    },
    /// Expecting a skippable frame's size.
    SkippableSize,
    /// Expecting a legacy block size (or the next frame's magic).
    LegacyBlockSize,
    /// Skipping block data, then going to `next`.
    Skip { next: Next },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Block {
        block_checksum: bool,
        content_checksum: bool,
    },
    Magic,
    Legacy,
}

/// A reader that passes bytes through while following the LZ4 stream structure.
pub struct Watch<R> {
    inner: R,
    state: State,
    /// Header bytes gathered for the current state.
    acc: Vec<u8>,
    /// Bytes the current state still needs (header) or skips (data).
    need: u64,
    /// Bytes taken from `inner` to look at, not yet passed on.
    peeked: Vec<u8>,
}

impl<R: BufRead> Watch<R> {
    /// Watches `inner`.
    pub fn new(inner: R) -> Watch<R> {
        Watch {
            inner,
            state: State::Magic,
            acc: Vec::with_capacity(16),
            need: 4,
            peeked: Vec::with_capacity(4),
        }
    }

    /// Whether the input has no more bytes.
    pub fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.peeked.is_empty() && self.inner.fill_buf()?.is_empty())
    }

    /// The next four bytes (fewer at the end of the input), without passing them on.
    fn peek_word(&mut self) -> io::Result<Option<u32>> {
        while self.peeked.len() < 4 {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                return Ok(None);
            }
            let n = available.len().min(4 - self.peeked.len());
            self.peeked.extend_from_slice(&available[..n]);
            self.inner.consume(n);
        }
        let word = &self.peeked[..4];
        Ok(Some(u32::from_le_bytes([
            word[0], word[1], word[2], word[3],
        ])))
    }

    fn at_boundary(&self) -> bool {
        self.acc.is_empty() && matches!(self.state, State::Magic | State::LegacyBlockSize)
    }

    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if let State::Skip { next } = self.state {
                let n = (bytes.len() as u64).min(self.need);
                bytes = &bytes[n as usize..];
                self.need -= n;
                if self.need == 0 {
                    self.enter_next(next);
                }
                continue;
            }
            let n = (bytes.len()).min(self.need as usize);
            self.acc.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.need -= n as u64;
            if self.need == 0 {
                self.complete()?;
            }
        }
        Ok(())
    }

    fn enter_next(&mut self, next: Next) {
        self.acc.clear();
        (self.state, self.need) = match next {
            Next::Block {
                block_checksum,
                content_checksum,
            } => (
                State::BlockSize {
                    block_checksum,
                    content_checksum,
                },
                4,
            ),
            Next::Magic => (State::Magic, 4),
            Next::Legacy => (State::LegacyBlockSize, 4),
        };
    }

    fn skip(&mut self, count: u64, next: Next) {
        self.acc.clear();
        if count == 0 {
            self.enter_next(next);
        } else {
            self.state = State::Skip { next };
            self.need = count;
        }
    }

    /// The current state's header bytes are complete.
    fn complete(&mut self) -> io::Result<()> {
        let word = |acc: &[u8]| u32::from_le_bytes([acc[0], acc[1], acc[2], acc[3]]);
        match self.state {
            State::Magic | State::LegacyBlockSize => {
                let value = word(&self.acc);
                let legacy = self.state == State::LegacyBlockSize;
                self.acc.clear();
                if value == FRAME {
                    self.state = State::Descriptor;
                    self.need = 2;
                } else if value == LEGACY {
                    self.state = State::LegacyBlockSize;
                    self.need = 4;
                } else if value & 0xFFFF_FFF0 == 0x184D_2A50 {
                    self.state = State::SkippableSize;
                    self.need = 4;
                } else if legacy && value == 0 {
                    // `lz4 -d` calls an empty legacy block corrupt (zero padding).
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt lz4 legacy stream: a block of size 0",
                    ));
                } else if legacy {
                    self.skip(u64::from(value), Next::Legacy);
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "not an LZ4 frame (bad magic number)",
                    ));
                }
            }
            State::Descriptor => {
                let flg = self.acc[0];
                let block_checksum = flg & 0x10 != 0;
                let content_checksum = flg & 0x04 != 0;
                let extra =
                    1 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
                self.acc.clear();
                self.state = State::DescriptorRest {
                    block_checksum,
                    content_checksum,
                };
                self.need = extra;
            }
            State::DescriptorRest {
                block_checksum,
                content_checksum,
            } => self.enter_next(Next::Block {
                block_checksum,
                content_checksum,
            }),
            State::BlockSize {
                block_checksum,
                content_checksum,
            } => {
                let size = word(&self.acc);
                if size == 0 {
                    // End mark, then the content checksum.
                    self.skip(if content_checksum { 4 } else { 0 }, Next::Magic);
                } else {
                    let data = u64::from(size & 0x7FFF_FFFF) + if block_checksum { 4 } else { 0 };
                    self.skip(
                        data,
                        Next::Block {
                            block_checksum,
                            content_checksum,
                        },
                    );
                }
            }
            State::SkippableSize => {
                let size = word(&self.acc);
                self.skip(u64::from(size), Next::Magic);
            }
            State::Skip { .. } => unreachable!("skipping is handled in feed"),
        }
        Ok(())
    }
}

impl<R: BufRead> Watch<R> {
    /// Consumes the skippable frames that start here, if any.
    fn skip_skippable_frames(&mut self) -> io::Result<()> {
        let truncated = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the lz4 stream is truncated: it ends inside a skippable frame",
            )
        };
        while let Some(word) = self.peek_word()? {
            if word & 0xFFFF_FFF0 != 0x184D_2A50 {
                break;
            }
            self.peeked.clear();
            let mut left = u64::from(self.peek_word()?.ok_or_else(truncated)?);
            if self.peeked.len() < 4 {
                return Err(truncated());
            }
            self.peeked.clear();
            while left > 0 {
                let available = self.inner.fill_buf()?;
                if available.is_empty() {
                    return Err(truncated());
                }
                let n = available
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                self.inner.consume(n);
                left -= n as u64;
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // After a legacy block, lz4_flex would take the next stream's magic number for a
        // block size. Legacy streams one after another (`cat a.lz4 b.lz4`): pass over
        // it, the blocks go on. A frame of the current format (or a skippable one): end
        // the legacy stream here, the caller starts a new frame decoder.
        if self.state == State::LegacyBlockSize && self.acc.is_empty() && !buf.is_empty() {
            loop {
                match self.peek_word()? {
                    Some(LEGACY) => self.peeked.clear(),
                    Some(word) if word == FRAME || word & 0xFFFF_FFF0 == 0x184D_2A50 => {
                        self.state = State::Magic;
                        return Ok(0);
                    }
                    _ => break,
                }
            }
        }
        // Skippable frames between frames (`lz4 -d` passes over them; lz4_flex's frame
        // decoder calls them an error): hidden from the decoder.
        if self.state == State::Magic && self.acc.is_empty() && !buf.is_empty() {
            self.skip_skippable_frames()?;
        }
        let n = if self.peeked.is_empty() {
            self.inner.read(buf)?
        } else {
            let n = buf.len().min(self.peeked.len());
            buf[..n].copy_from_slice(&self.peeked[..n]);
            self.peeked.drain(..n);
            n
        };
        if n == 0 && !buf.is_empty() && !self.at_boundary() {
            // Not UnexpectedEof: lz4_flex takes that, at a block boundary, for the end.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the lz4 stream is truncated: it ends inside a frame (its end mark or \
                 checksum is missing)",
            ));
        }
        self.feed(&buf[..n])?;
        Ok(n)
    }
}
