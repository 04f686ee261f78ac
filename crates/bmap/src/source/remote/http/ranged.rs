//! Random access to an HTTP file by Range requests: the copy says which spans it will
//! read ([`RandomAccess::plan`]), neighbouring spans are merged (gaps under [`GAP`]),
//! and each merged span is one request on a kept-alive connection.

use std::io::{self, Read};

use super::{Body, Http, Stream, answer_is_transient};
use crate::source::RandomAccess;
use crate::source::remote::redact;
use crate::source::remote::retry::Stop;

/// Holes shorter than this are downloaded and dropped rather than skipped with a new
/// request (a request costs a round trip; 1 MiB is a few milliseconds on a LAN).
const GAP: u64 = 1 << 20;

struct Current {
    body: Body,
    pos: u64,
    end: u64,
}

/// Random access over HTTP Range requests.
pub struct Ranged {
    http: Http,
    size: u64,
    /// The file's first bytes, from the probe.
    head: Vec<u8>,
    /// Merged spans the reader will ask for, ascending.
    spans: Vec<(u64, u64)>,
    body: Option<Current>,
}

impl std::fmt::Debug for Ranged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranged")
            .field("url", &redact(&self.http.url))
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Ranged {
    pub(super) fn new(http: Http, size: u64, head: Vec<u8>) -> Ranged {
        Ranged {
            http,
            size,
            head,
            spans: Vec::new(),
            body: None,
        }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's first bytes (up to 512), to recognise its format.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Turns this into a forward stream of the whole file (resuming after drops).
    pub fn into_stream(self) -> impl Read + Send {
        let pos = self.head.len() as u64;
        io::Cursor::new(self.head).chain(Stream {
            http: self.http,
            body: None,
            end: None,
            pos,
        })
    }

    /// End of the merged span holding `offset` (the file's end when none does).
    fn span_end(&self, offset: u64) -> u64 {
        self.spans
            .iter()
            .find(|&&(start, end)| start <= offset && offset < end)
            .map_or(self.size, |&(_, end)| end)
    }
}

impl RandomAccess for Ranged {
    fn plan(&mut self, spans: &[(u64, u64)]) {
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for &(start, len) in spans {
            let end = start + len;
            match merged.last_mut() {
                Some(last) if start <= last.1 + GAP => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.spans = merged;
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if buf.is_empty() || offset >= self.size {
            return Ok(0);
        }
        if let Some(cached) = usize::try_from(offset)
            .ok()
            .and_then(|o| self.head.get(o..))
            && !cached.is_empty()
        {
            let n = cached.len().min(buf.len());
            buf[..n].copy_from_slice(&cached[..n]);
            return Ok(n);
        }
        let mut retry = self.http.retry();
        loop {
            // Keep the current response when the offset lies ahead of it, within reach.
            let usable = self
                .body
                .as_ref()
                .is_some_and(|c| offset >= c.pos && offset < c.end && offset - c.pos <= GAP);
            if !usable {
                // A response read to its last byte: reach its end, so that ureq hands
                // the connection back for the next request (keep-alive).
                if let Some(mut done) = self.body.take()
                    && done.pos == done.end
                {
                    let _ = done.body.read(&mut [0u8; 1]);
                }
                let end = self.span_end(offset);
                match self.http.body_from(offset, Some(end)) {
                    // A server may send less than asked for (and say so): the
                    // next request asks for the rest.
                    Ok((body, pos, sent_end)) => {
                        let end = sent_end.map_or(end, |e| e.min(end));
                        self.body = Some(Current { body, pos, end });
                    }
                    Err(e) => {
                        if !answer_is_transient(&e) {
                            return Err(io::Error::other(e));
                        }
                        match retry.after_failure() {
                            Ok(()) => continue,
                            Err(Stop::Exhausted) => return Err(io::Error::other(e)),
                            Err(stop) => {
                                let (url, attempts) = (&self.http.url, retry.attempts());
                                let error = stop.error(url, attempts, offset, Box::new(e));
                                return Err(io::Error::other(error));
                            }
                        }
                    }
                }
            }
            let current = self.body.as_mut().expect("a response is open");
            let result = io::copy(
                &mut (&mut current.body).take(offset - current.pos),
                &mut io::sink(),
            )
            .and_then(|skipped| {
                current.pos += skipped;
                if current.pos < offset {
                    return Ok(0);
                }
                let want = buf
                    .len()
                    .min(usize::try_from(current.end - offset).unwrap_or(usize::MAX));
                current.body.read(&mut buf[..want])
            });
            match result {
                Ok(n) if n > 0 => {
                    current.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                failure => {
                    let failure = failure.err().unwrap_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the connection closed at byte {}", current.pos),
                        )
                    });
                    let at = current.pos;
                    self.body = None;
                    if let Err(stop) = retry.after_failure() {
                        let error =
                            stop.error(&self.http.url, retry.attempts(), at, Box::new(failure));
                        return Err(io::Error::other(error));
                    }
                }
            }
        }
    }
}
