//! HTTP and HTTPS with `ureq` (blocking, rustls with the platform's certificate store).
//! Forward streams resume after a dropped connection with a Range request; random
//! access ([`Ranged`]) fetches only the spans the copy asks for. A server's partial
//! answer (206) is used only when its `Content-Range` is exactly what was asked and
//! names the file's size; otherwise the whole file is streamed, so that an image is
//! never taken to be as long as the part a server chose to send.

mod client;
mod forward;
mod ranged;

use std::io::{self, Read};

use ureq::http::Response;
use url::Url;

use super::retry::{Retry, Stop};
use super::{Error, Options, Remote, redact};
use crate::Interrupt;
use client::Client;
pub use ranged::Ranged;

type Body = ureq::BodyReader<'static>;

fn header<'a>(response: &'a Response<ureq::Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The span of a 206 answer: `Content-Range: bytes first-last/total` (`total` is
/// `None` for `*`, "unknown", which RFC 9110 allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: u64,
    last: u64,
    total: Option<u64>,
}

fn content_range(response: &Response<ureq::Body>) -> Option<Span> {
    parse_content_range(header(response, "content-range")?)
}

fn parse_content_range(value: &str) -> Option<Span> {
    let value = value.trim().strip_prefix("bytes ")?;
    let (span, total) = value.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let span = Span {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
        total: match total.trim() {
            "*" => None,
            total => Some(total.parse().ok()?),
        },
    };
    (span.first <= span.last && span.total.is_none_or(|t| span.last < t)).then_some(span)
}

fn content_length(response: &Response<ureq::Body>) -> Option<u64> {
    header(response, "content-length")?.trim().parse().ok()
}

fn is_partial(response: &Response<ureq::Body>) -> bool {
    response.status().as_u16() == 206
}

/// Bytes asked for by the first request of a random-access open: enough to recognise
/// the format; the answer (206 or 200) tells whether the server honours Range.
const PROBE: u64 = crate::source::compression::SNIFF_LEN as u64;

/// Opens `url`: for random access (`random`), with a small Range request that tells
/// whether the server honours Range; otherwise as a plain stream.
pub(super) fn open(url: &Url, options: &Options, random: bool) -> Result<Remote, Error> {
    // A couple of quick retries only: a wrong host name or a refused connection
    // should not keep the user waiting.
    let mut retry = Retry::new(options.retries.min(2), &options.interrupt);
    loop {
        match open_once(url, options, random) {
            Err(e @ (Error::Transfer { .. } | Error::Read { .. })) => match retry.after_failure() {
                Ok(()) => {}
                Err(Stop::Exhausted) => return Err(e),
                Err(Stop::Interrupted) => return Err(Error::Interrupted(redact(url))),
            },
            result => return result,
        }
    }
}

fn open_once(url: &Url, options: &Options, random: bool) -> Result<Remote, Error> {
    let mut http = Http {
        client: Client::new(options),
        url: url.clone(),
        retries: options.retries,
        interrupt: options.interrupt.clone(),
        size: None,
        accepts_ranges: false,
    };
    if random {
        let response = http.client.get(url, Some((0, Some(PROBE - 1))))?;
        match trusted_probe(&response) {
            Some(size) => return http.ranged(response, size),
            // A server that ignores Range: its 200 is the whole file.
            None if !is_partial(&response) => return http.stream(response),
            // A partial answer that is not what was asked, or whose total is unknown:
            // not a base for random access. Ask for the whole file instead.
            None => drop(response),
        }
    }
    let response = http.client.get(url, None)?;
    if is_partial(&response) {
        // Part of the file without asking for part: only a span that is the whole
        // file (with its size) will do.
        match content_range(&response) {
            Some(Span {
                first: 0,
                last,
                total: Some(total),
            }) if last + 1 == total => {}
            span => {
                return Err(
                    http.bad_answer(format!("asked for the whole file, got {}", shown(span)))
                );
            }
        }
    }
    http.stream(response)
}

/// The file's size when `response` answers the probe exactly: a 206 for bytes
/// `0-(PROBE-1)` (fewer for a smaller file) of a file of known size.
fn trusted_probe(response: &Response<ureq::Body>) -> Option<u64> {
    if !is_partial(response) {
        return None;
    }
    let span = content_range(response)?;
    let total = span.total?;
    (span.first == 0 && span.last + 1 == PROBE.min(total)).then_some(total)
}

/// A span for messages.
fn shown(span: Option<Span>) -> String {
    match span {
        None => "a partial answer (206) without a usable Content-Range".into(),
        Some(Span { first, last, total }) => format!(
            "bytes {first}-{last} of {}",
            total.map_or("an unknown size".into(), |t| t.to_string())
        ),
    }
}

/// What every HTTP reader needs to (re)connect.
struct Http {
    client: Client,
    url: Url,
    retries: u32,
    interrupt: Interrupt,
    size: Option<u64>,
    accepts_ranges: bool,
}

impl Http {
    /// The retries of one read.
    fn retry(&self) -> Retry {
        Retry::new(self.retries, &self.interrupt)
    }

    fn bad_answer(&self, message: impl Into<String>) -> Error {
        Error::BadAnswer {
            url: redact(&self.url),
            message: message.into(),
        }
    }

    /// Random access, after a probe answered with the file's first bytes.
    fn ranged(mut self, response: Response<ureq::Body>, size: u64) -> Result<Remote, Error> {
        self.size = Some(size);
        self.accepts_ranges = true;
        let want = PROBE.min(size);
        let mut head = Vec::new();
        // Read to the end of the (short) body, so that the connection can be reused.
        response
            .into_body()
            .into_reader()
            .take(want + 1)
            .read_to_end(&mut head)
            .map_err(|source| Error::Read {
                url: redact(&self.url),
                source,
            })?;
        if head.len() as u64 != want {
            return Err(Error::Transfer {
                url: redact(&self.url),
                message: format!("the server announced {want} bytes and sent {}", head.len()),
            });
        }
        Ok(Remote::Ranged(Box::new(Ranged::new(self, size, head))))
    }

    /// A forward stream of `response` (a 200, or a 206 that is the whole file).
    fn stream(mut self, response: Response<ureq::Body>) -> Result<Remote, Error> {
        self.size = match content_range(&response) {
            Some(span) if is_partial(&response) => span.total,
            _ => content_length(&response),
        };
        self.accepts_ranges = is_partial(&response)
            || header(&response, "accept-ranges").is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
        let size = self.size;
        Ok(Remote::Stream {
            reader: Box::new(Stream {
                http: self,
                body: Some(response.into_body().into_reader()),
                end: size,
                pos: 0,
            }),
            size,
        })
    }

    /// A response body that starts at `from` (dropping bytes a server that ignores
    /// Range sends first), asked to end before `to` when given; and where it ends
    /// (`None`: at the end of the file, or unknown). A partial answer must contain
    /// `from` and agree with the size the file had when it was opened.
    fn body_from(&mut self, from: u64, to: Option<u64>) -> Result<(Body, u64, Option<u64>), Error> {
        let range = (from > 0 || to.is_some()).then_some((from, to.map(|t| t - 1)));
        let response = self.client.get(&self.url, range)?;
        let (start, end) = if is_partial(&response) {
            let span = content_range(&response);
            let same_file = |s: &Span| match (s.total, self.size) {
                (Some(total), Some(size)) => total == size,
                _ => true,
            };
            match span {
                Some(s) if s.first <= from && from <= s.last && same_file(&s) => {
                    (s.first, Some(s.last.saturating_add(1)))
                }
                _ => {
                    let asked = to.map(|t| format!(" to {}", t - 1)).unwrap_or_default();
                    let had = self.size.map(|s| format!(" (the file had {s} bytes)"));
                    return Err(self.bad_answer(format!(
                        "asked for the bytes from {from}{asked}, got {}{}",
                        shown(span),
                        had.unwrap_or_default()
                    )));
                }
            }
        } else {
            (0, self.size)
        };
        let mut body = response.into_body().into_reader();
        // A server without Range support sends everything: skip to where we are.
        io::copy(&mut (&mut body).take(from - start), &mut io::sink()).map_err(|source| {
            Error::Read {
                url: redact(&self.url),
                source,
            }
        })?;
        Ok((body, from, end))
    }
}

/// A forward stream that resumes after a drop.
struct Stream {
    http: Http,
    body: Option<Body>,
    /// Where the open body ends, when known.
    end: Option<u64>,
    pos: u64,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut retry = self.http.retry();
        loop {
            let failure = match self.read_once(buf) {
                Ok(n) => return Ok(n),
                Err(Failure::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(failure) => failure,
            };
            self.body = None;
            let resumable = self.http.accepts_ranges || self.pos == 0;
            let verdict = if resumable && failure.is_transient() {
                retry.after_failure()
            } else {
                Err(Stop::Exhausted)
            };
            if let Err(stop) = verdict {
                let attempts = retry.attempts().max(1);
                let error = stop.error(&self.http.url, attempts, self.pos, failure.into_source());
                return Err(io::Error::other(error));
            }
        }
    }
}

impl Stream {
    /// One read, opening a response from the current position when none is open; an
    /// early end of a body of known length is an error (a dropped connection).
    fn read_once(&mut self, buf: &mut [u8]) -> Result<usize, Failure> {
        loop {
            if self.body.is_none() {
                let (body, _, end) = self.http.body_from(self.pos, None)?;
                self.body = Some(body);
                self.end = end;
            }
            let body = self.body.as_mut().expect("opened above");
            let n = body.read(buf)?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
            let size = self.http.size;
            if size.is_none_or(|size| self.pos >= size) {
                return Ok(0);
            }
            if self.end != Some(self.pos) {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the connection closed at byte {}", self.pos),
                )));
            }
            // The server sent a shorter part than asked for, all of it: ask for more.
            self.body = None;
        }
    }
}

/// Why one attempt to read failed: the server's answer (or the request), or the
/// connection while the body was read.
#[derive(Debug)]
enum Failure {
    /// The request failed or its answer cannot be used.
    Answer(Error),
    /// Reading the body failed.
    Io(io::Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Answer(error)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Io(error)
    }
}

impl Failure {
    /// Whether reconnecting may help.
    fn is_transient(&self) -> bool {
        match self {
            // A stall already cost a whole timeout: give up rather than wait again.
            Failure::Io(e) => e.kind() != io::ErrorKind::TimedOut,
            Failure::Answer(e) => answer_is_transient(e),
        }
    }

    /// The failure as the cause of a [`Error::GaveUp`].
    fn into_source(self) -> Box<dyn std::error::Error + Send + Sync> {
        match self {
            Failure::Answer(e) => Box::new(e),
            Failure::Io(e) => Box::new(e),
        }
    }
}

/// Whether asking again may help: not after a 404 or another status the server
/// chose, an answer that cannot be used, or a stall that already cost a timeout.
fn answer_is_transient(error: &Error) -> bool {
    matches!(error, Error::Transfer { .. } | Error::Read { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_read_strictly() {
        let span = |first, last, total| Some(Span { first, last, total });
        assert_eq!(
            parse_content_range("bytes 0-511/821752"),
            span(0, 511, Some(821752))
        );
        assert_eq!(parse_content_range(" bytes 10-19/* "), span(10, 19, None));
        for bad in [
            "bytes */821752",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes 0-1/x",
            "items 0-1/2",
            "bytes 0-18446744073709551616/*",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
        // The largest span of unknown total has an end that does not overflow.
        let last = parse_content_range("bytes 0-18446744073709551615/*").expect("a span");
        assert_eq!(last.last.saturating_add(1), u64::MAX);
    }
}
