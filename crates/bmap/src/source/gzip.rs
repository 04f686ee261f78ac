//! gzip: members one after another (pigz, `cat a.gz b.gz`), each with its CRC and
//! length checked, then possibly zero bytes to the end (a tape or `dd` pads a file to
//! its block size), which `gzip -d` ignores: so do we, with a notice. Anything else
//! after the last member is an error.

use std::io::{self, BufRead, Read};

use flate2::bufread::GzDecoder;

use super::compression::Codec;
use super::decode::{Later, Notice};

/// The gzip members of a stream, and the zero padding after them.
pub struct Decoder<R: BufRead> {
    /// The member being read; `None` once the stream has ended.
    member: Option<GzDecoder<R>>,
    later: Later,
}

impl<R: BufRead> Decoder<R> {
    /// Decodes `input`; a notice about padding goes to `later`.
    pub fn new(input: R, later: Later) -> Decoder<R> {
        Decoder {
            member: Some(GzDecoder::new(input)),
            later,
        }
    }

    /// After a member: another one, zero padding to the end, or the end.
    fn next_member(&mut self, mut input: R) -> io::Result<()> {
        let next = fill(&mut input)?;
        match next.first() {
            None => {}
            Some(0) => {
                let zeros = skip_zeros(&mut input)?;
                self.later.push(Notice::Padding {
                    codec: Codec::Gzip,
                    bytes: zeros,
                });
            }
            Some(0x1f) => self.member = Some(GzDecoder::new(input)),
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data that is not gzip follows the last gzip member",
                ));
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = self.member.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let input = self.member.take().expect("checked above").into_inner();
            self.next_member(input)?;
        }
    }
}

fn fill<R: BufRead>(input: &mut R) -> io::Result<&[u8]> {
    loop {
        match input.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Re-borrow: the loop above cannot return the borrow it took.
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    input.fill_buf()
}

/// Reads zero bytes to the end of the input; how many there were. A non-zero byte is
/// an error: gzip itself only warns about such "trailing garbage".
fn skip_zeros<R: BufRead>(input: &mut R) -> io::Result<u64> {
    let mut zeros = 0u64;
    loop {
        let available = fill(input)?;
        if available.is_empty() {
            return Ok(zeros);
        }
        let run = available.iter().take_while(|&&b| b == 0).count();
        let all = run == available.len();
        input.consume(run);
        zeros += run as u64;
        if !all {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the last gzip member is followed by {zeros} zero bytes and then data \
                     that is not gzip"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("compress")
    }

    fn decode(input: &[u8]) -> (io::Result<Vec<u8>>, Vec<Notice>) {
        let later = Later::default();
        let mut decoder = Decoder::new(io::BufReader::with_capacity(7, input), later.clone());
        let mut out = Vec::new();
        let result = decoder.read_to_end(&mut out).map(|_| out);
        (result, later.take())
    }

    #[test]
    fn members_then_zero_padding_decode_with_a_notice() {
        let input = [gzip(b"hello "), gzip(b"world"), vec![0u8; 1000]].concat();
        let (out, notices) = decode(&input);
        assert_eq!(out.expect("decodes"), b"hello world");
        assert_eq!(
            notices,
            [Notice::Padding {
                codec: Codec::Gzip,
                bytes: 1000
            }]
        );
    }

    #[test]
    fn data_after_the_padding_or_the_last_member_is_an_error() {
        for tail in [&b"\0\0\0\0x"[..], b"x", b"\0\0\x1f\x8b"] {
            let input = [gzip(b"hello"), tail.to_vec()].concat();
            let (out, _) = decode(&input);
            assert!(out.is_err(), "tail {tail:?} accepted");
        }
    }
}
