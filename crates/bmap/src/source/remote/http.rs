//! HTTP and HTTPS with `ureq` (blocking, rustls with the platform's certificate store).
//! Forward streams resume after a dropped connection with a Range request; random
//! access fetches only the spans the copy asks for, merging gaps under [`GAP`] so that
//! one request covers neighbouring ranges on a kept-alive connection.

use std::io::{self, Read};

use ureq::Agent;
use ureq::http::Response;
use url::Url;

use super::{Error, Options, Remote, backoff, redact};
use crate::source::RandomAccess;

/// Holes shorter than this are downloaded and dropped rather than skipped with a new
/// request (a request costs a round trip; 1 MiB is a few milliseconds on a LAN).
const GAP: u64 = 1 << 20;

type Body = ureq::BodyReader<'static>;

fn agent(url: &Url, options: &Options) -> Result<Agent, Error> {
    let proxy = match (options.proxy)(url) {
        Some(proxy) => Some(ureq::Proxy::new(&proxy).map_err(|e| Error::Transfer {
            url: redact(url),
            message: format!("bad proxy '{}': {e}", super::redact_str(&proxy)),
        })?),
        None => None,
    };
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.connect_timeout + options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .proxy(proxy)
        .tls_config(tls)
        .user_agent(concat!("bmaptool/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.into())
}

/// A GET, with `Range: bytes=from-[to]` when `from` is given. Status errors become
/// [`Error`]s; 200 and 206 come back.
fn get(
    agent: &Agent,
    url: &Url,
    range: Option<(u64, Option<u64>)>,
) -> Result<Response<ureq::Body>, Error> {
    let timeout = agent.config().timeout_per_read().unwrap_or_default();
    let mut request = agent.get(url.as_str());
    if let Some((from, to)) = range {
        let to = to.map(|t| t.to_string()).unwrap_or_default();
        request = request.header("Range", format!("bytes={from}-{to}"));
    }
    let response = request.call().map_err(|e| match e {
        ureq::Error::Timeout(_) => Error::TimedOut {
            url: redact(url),
            seconds: timeout.as_secs(),
        },
        e => Error::Transfer {
            url: redact(url),
            message: e.to_string(),
        },
    })?;
    match response.status().as_u16() {
        200 | 206 => Ok(response),
        404 | 410 => Err(Error::NotFound(redact(url))),
        status => Err(Error::Status {
            url: redact(url),
            status,
        }),
    }
}

fn header<'a>(response: &'a Response<ureq::Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `(first byte, total size)` of a 206 response's `Content-Range: bytes a-b/total`.
fn content_range(response: &Response<ureq::Body>) -> Option<(u64, Option<u64>)> {
    let value = header(response, "content-range")?.strip_prefix("bytes ")?;
    let (span, total) = value.split_once('/')?;
    let (first, _) = span.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().parse().ok()))
}

fn content_length(response: &Response<ureq::Body>) -> Option<u64> {
    header(response, "content-length")?.trim().parse().ok()
}

/// Bytes asked for by the first request of a random-access open: enough to recognise
/// the format; the answer (206 or 200) tells whether the server honours Range.
const PROBE: u64 = crate::source::compression::SNIFF_LEN as u64;

/// Opens `url`: for random access (`random`), with a small Range request that tells
/// whether the server honours Range; otherwise as a plain stream.
pub(super) fn open(url: &Url, options: &Options, random: bool) -> Result<Remote, Error> {
    let mut attempt = 0;
    loop {
        match open_once(url, options, random) {
            // A couple of quick retries only: a wrong host name or a refused
            // connection should not keep the user waiting.
            Err(Error::Transfer { .. }) if attempt < options.retries.min(2) => {
                attempt += 1;
                std::thread::sleep(backoff(attempt));
            }
            result => return result,
        }
    }
}

fn open_once(url: &Url, options: &Options, random: bool) -> Result<Remote, Error> {
    let agent = agent(url, options)?;
    let response = get(&agent, url, random.then_some((0, Some(PROBE - 1))))?;
    let partial = response.status().as_u16() == 206;
    let size = if partial {
        content_range(&response).and_then(|(_, total)| total)
    } else {
        content_length(&response)
    };
    let accepts_ranges = partial
        || header(&response, "accept-ranges").is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
    let mut body = response.into_body().into_reader();
    let http = Http {
        agent,
        url: url.clone(),
        options: options.clone(),
        size,
        accepts_ranges,
    };
    match (partial, size) {
        (true, Some(size)) => {
            let mut head = Vec::new();
            // Read to the end of the (short) body, so that the connection can be reused.
            (&mut body)
                .take(PROBE + 1)
                .read_to_end(&mut head)
                .map_err(|e| Error::Transfer {
                    url: redact(url),
                    message: e.to_string(),
                })?;
            if (head.len() as u64) < PROBE.min(size) || head.len() as u64 > PROBE {
                return Err(Error::Transfer {
                    url: redact(url),
                    message: "the server sent less than it announced".into(),
                });
            }
            Ok(Remote::Ranged(Box::new(Ranged {
                http,
                size,
                head,
                spans: Vec::new(),
                body: None,
            })))
        }
        _ => Ok(Remote::Stream {
            reader: Box::new(Stream {
                http,
                body: Some(body),
                pos: 0,
            }),
            size,
        }),
    }
}

/// What every HTTP reader needs to (re)connect.
struct Http {
    agent: Agent,
    url: Url,
    options: Options,
    size: Option<u64>,
    accepts_ranges: bool,
}

impl Http {
    fn transfer_error(&self, message: impl Into<String>) -> io::Error {
        io::Error::other(Error::Transfer {
            url: redact(&self.url),
            message: message.into(),
        })
    }

    /// A response body that starts at `from` (dropping bytes a server that ignores
    /// Range sends first), ending before `to` when given.
    fn body_from(&self, from: u64, to: Option<u64>) -> io::Result<(Body, u64)> {
        let range = (from > 0 || to.is_some()).then_some((from, to.map(|t| t - 1)));
        let response = get(&self.agent, &self.url, range).map_err(io::Error::other)?;
        let start = if response.status().as_u16() == 206 {
            content_range(&response).map_or(from, |(first, _)| first)
        } else {
            0
        };
        let mut body = response.into_body().into_reader();
        if start > from {
            return Err(self.transfer_error(format!("asked for byte {from}, got {start}")));
        }
        // A server without Range support sends everything: skip to where we are.
        io::copy(&mut (&mut body).take(from - start), &mut io::sink())?;
        Ok((body, from))
    }
}

/// A forward stream that resumes after a drop.
struct Stream {
    http: Http,
    body: Option<Body>,
    pos: u64,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut attempt = 0;
        loop {
            let failure = match self.read_once(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            self.body = None;
            attempt += 1;
            let resumable = self.http.accepts_ranges || self.pos == 0;
            if !resumable || attempt > self.http.options.retries || !is_transient(&failure) {
                return Err(self.http.transfer_error(format!(
                    "{failure} (after {attempt} attempts, at byte {})",
                    self.pos
                )));
            }
            std::thread::sleep(backoff(attempt));
        }
    }
}

impl Stream {
    /// One read, opening a response from the current position when none is open; an
    /// early end of a body of known length is an error (a dropped connection).
    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.body.is_none() {
            self.body = Some(self.http.body_from(self.pos, None)?.0);
        }
        let body = self.body.as_mut().expect("opened above");
        let n = body.read(buf)?;
        if n == 0 && self.http.size.is_some_and(|size| self.pos < size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the connection closed at byte {}", self.pos),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

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
        let mut attempt = 0;
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
                    Ok((body, pos)) => self.body = Some(Current { body, pos, end }),
                    Err(e) => {
                        attempt += 1;
                        if attempt > self.http.options.retries || !is_transient(&e) {
                            return Err(e);
                        }
                        std::thread::sleep(backoff(attempt));
                        continue;
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
                    let message = match failure {
                        Err(e) => e.to_string(),
                        _ => format!("the connection closed at byte {}", current.pos),
                    };
                    self.body = None;
                    attempt += 1;
                    if attempt > self.http.options.retries {
                        return Err(self.http.transfer_error(format!(
                            "{message} (gave up after {attempt} attempts)"
                        )));
                    }
                    std::thread::sleep(backoff(attempt));
                }
            }
        }
    }
}

/// Whether reconnecting may help (not a 404 or another status the server chose).
fn is_transient(e: &io::Error) -> bool {
    // A stall already cost a whole timeout: give up rather than wait again and again.
    if e.kind() == io::ErrorKind::TimedOut {
        return false;
    }
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::Transfer { .. }) => true,
        Some(_) => false,
        None => true,
    }
}
