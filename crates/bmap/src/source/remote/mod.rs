//! Remote images and bmaps: `http://`, `https://`, `ftp://`, `file://` and `ssh://`
//! URLs. Every remote source is a forward stream that resumes after a dropped
//! connection where the protocol allows; an uncompressed image on an HTTP server that
//! honours Range requests is read with random access instead, so only the mapped
//! ranges cross the network.
//!
//! The library reads no environment: proxies come from the caller through
//! [`Options::proxy`] (the CLI resolves `http_proxy`, `no_proxy` and friends per URL).

mod ftp;
mod http;
mod retry;
mod ssh;

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::Interrupt;

pub use http::Ranged;

/// Resolves the proxy (a URL such as `http://proxy:3128`) to use for a URL, if any.
pub type ProxyFor = Arc<dyn Fn(&Url) -> Option<String> + Send + Sync>;

/// The longest timeout used: longer ones are cut to this (a day), so that no deadline
/// computed from a timeout can overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// A timeout as used: at least a millisecond (zero would mean "fail at once", or be
/// refused by the socket), at most [`MAX_TIMEOUT`].
fn capped(timeout: Duration) -> Duration {
    timeout.clamp(Duration::from_millis(1), MAX_TIMEOUT)
}

/// How remote sources connect.
#[derive(Clone)]
pub struct Options {
    /// Time to establish a connection (used within 1 ms..[`MAX_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Time a read may wait for data before the connection counts as dropped (used
    /// within 1 ms..[`MAX_TIMEOUT`]).
    pub read_timeout: Duration,
    /// Reconnections after a drop before giving up (each resumes where it stopped).
    pub retries: u32,
    /// The proxy for a URL.
    pub proxy: ProxyFor,
    /// Raised to stop: the waits between attempts end at once.
    pub interrupt: Interrupt,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            retries: 5,
            proxy: Arc::new(|_| None),
            interrupt: Interrupt::new(),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// Why a remote source failed. URLs in messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a URL we can read.
    #[error("unsupported URL '{0}': bmaptool reads http, https, ftp, file and ssh URLs")]
    Unsupported(String),
    /// The server says there is no such file.
    #[error("'{0}' was not found")]
    NotFound(String),
    /// Another HTTP error status.
    #[error("'{url}': the server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// Connecting, TLS, DNS, or the transfer failed.
    #[error("cannot read '{url}': {message}")]
    Transfer {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// Reading the answer failed.
    #[error("cannot read '{url}'")]
    Read {
        /// The URL.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped answering for longer than the read timeout.
    #[error("'{url}': no answer for {seconds} s (the timeout); the server or the network stalled")]
    TimedOut {
        /// The URL.
        url: String,
        /// The timeout.
        seconds: u64,
    },
    /// An https download was redirected to plain http.
    #[error(
        "'{url}' redirects to '{to}': refusing to continue an https download over plain \
         http (give the http URL yourself to download it unencrypted)"
    )]
    Downgrade {
        /// The URL asked for.
        url: String,
        /// Where the server sent us.
        to: String,
    },
    /// A redirect that cannot be followed.
    #[error("'{url}': {message}")]
    Redirect {
        /// The URL asked for.
        url: String,
        /// What is wrong with the redirect.
        message: String,
    },
    /// An answer that cannot be trusted (a partial answer that is not the part asked
    /// for, or a file whose size changed); asking again would not help.
    #[error("'{url}': the server's answer cannot be used: {message}")]
    BadAnswer {
        /// The URL.
        url: String,
        /// What is wrong with the answer.
        message: String,
    },
    /// Every attempt to read failed (each reconnection resumed where the last stopped).
    #[error(
        "'{url}': gave up after {attempts} {}",
        if *.attempts == 1 { "attempt" } else { "attempts" }
    )]
    GaveUp {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// Bytes read before the last failure.
        at: u64,
        /// The last failure.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The interrupt flag was raised while waiting to try again.
    #[error("'{0}': interrupted")]
    Interrupted(String),
    /// The `ssh`/`sshpass` program is missing or failed.
    #[error("{0}")]
    Ssh(String),
}

impl Error {
    /// Whether the error means "no such file" (bmap discovery moves on).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }
}

/// A remote file opened for reading.
pub enum Remote {
    /// A forward stream (resuming after drops where possible).
    Stream {
        /// The bytes.
        reader: Box<dyn Read + Send>,
        /// The file's length, when the server says it.
        size: Option<u64>,
    },
    /// Random access by HTTP Range requests.
    Ranged(Box<Ranged>),
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Stream { size, .. } => f.debug_struct("Stream").field("size", size).finish(),
            Remote::Ranged(r) => f.debug_struct("Ranged").field("size", &r.size()).finish(),
        }
    }
}

/// Where an image or bmap named on the command line lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local path (also what a `file://` URL names).
    Local(PathBuf),
    /// A remote URL.
    Url(Url),
}

/// Interprets `name` as the reference does: a local path unless it looks like a URL
/// (`scheme://...`) and no local file has that name. `file://` URLs become paths.
pub fn locate(name: &str) -> Result<Location, Error> {
    let looks_remote = name.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !looks_remote || std::path::Path::new(name).exists() {
        return Ok(Location::Local(PathBuf::from(name)));
    }
    if let Some(rest) = name.strip_prefix("ssh://") {
        return ssh::Target::parse(rest).map(|_| Location::Url(ssh_url(name)));
    }
    let url = Url::parse(name).map_err(|_| Error::Unsupported(redact_str(name)))?;
    match url.scheme() {
        "file" => url
            .to_file_path()
            .map(Location::Local)
            .map_err(|()| Error::Unsupported(redact(&url))),
        "http" | "https" | "ftp" => Ok(Location::Url(url)),
        _ => Err(Error::Unsupported(redact(&url))),
    }
}

/// An ssh URL kept verbatim (its `host:path` form is not a valid URL): the text goes
/// in the path of a placeholder `ssh:` URL so that it travels as a [`Url`].
fn ssh_url(name: &str) -> Url {
    let mut url = Url::parse("ssh:").expect("a valid URL");
    url.set_path(
        &percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    );
    url
}

fn ssh_text(url: &Url) -> String {
    percent_encoding::percent_decode_str(url.path())
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL as it may be shown: without user name and password.
pub fn redact(url: &Url) -> String {
    if url.scheme() == "ssh" {
        return redact_str(&ssh_text(url));
    }
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Removes `user:password@` from a URL-like string.
fn redact_str(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => text.to_owned(),
            }
        }
        None => text.to_owned(),
    }
}

/// The name used to recognise a compressed image: the URL's path (query and fragment
/// ignored), or the ssh path.
pub fn name_for_format(url: &Url) -> String {
    if url.scheme() == "ssh" {
        return ssh::Target::parse(ssh_text(url).trim_start_matches("ssh://"))
            .map(|t| t.path)
            .unwrap_or_default();
    }
    url.path().to_owned()
}

/// Bmap candidates beside an image URL, in the reference's order: only the path
/// changes (`.bmap` appended, then one extension stripped at a time); the query string
/// and fragment are kept.
pub fn bmap_candidates(url: &Url) -> Vec<Url> {
    beside(url, crate::discover::bmap_candidates)
}

/// Detached-signature candidates beside a bmap URL (see
/// [`crate::discover::signature_candidates`]); only the path changes.
pub fn signature_candidates(url: &Url) -> Vec<Url> {
    beside(url, crate::discover::signature_candidates)
}

/// `names` applied to the path of `url` (the whole text of an ssh URL), each result
/// put back in place of the path.
fn beside(url: &Url, names: fn(&str) -> Vec<String>) -> Vec<Url> {
    if url.scheme() == "ssh" {
        return names(&ssh_text(url))
            .iter()
            .map(|text| ssh_url(text))
            .collect();
    }
    names(url.path())
        .into_iter()
        .map(|path| {
            let mut candidate = url.clone();
            candidate.set_path(&path);
            candidate
        })
        .collect()
}

/// Opens a remote file as a stream.
pub fn open(url: &Url, options: &Options) -> Result<Remote, Error> {
    match url.scheme() {
        "http" | "https" => http::open(url, options, false),
        "ftp" => ftp::open(url, options),
        "ssh" => ssh::open(&ssh_text(url), options),
        _ => Err(Error::Unsupported(redact(url))),
    }
}

/// Opens a remote file for random access where the server allows it (HTTP with Range
/// support), or as a stream otherwise.
pub fn open_random(url: &Url, options: &Options) -> Result<Remote, Error> {
    match url.scheme() {
        "http" | "https" => http::open(url, options, true),
        _ => open(url, options),
    }
}

/// Reads a whole remote file (a bmap or a signature) into memory, up to `limit` bytes.
pub fn fetch(url: &Url, options: &Options, limit: u64) -> Result<Vec<u8>, Error> {
    let reader = match open(url, options)? {
        Remote::Stream { reader, .. } => reader,
        Remote::Ranged(ranged) => Box::new(ranged.into_stream()),
    };
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Read {
            url: redact(url),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(Error::Transfer {
            url: redact(url),
            message: format!("larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_shown() {
        let url = Url::parse("http://user:secret@h/x.img?t=1").expect("url");
        assert_eq!(redact(&url), "http://h/x.img?t=1");
        assert_eq!(redact_str("ssh://root:pw@host:img"), "ssh://host:img");
    }

    #[test]
    fn candidates_keep_the_query() {
        let url = Url::parse("http://h/d/img.raw.gz?x=1#f").expect("url");
        let shown: Vec<String> = bmap_candidates(&url).iter().map(Url::to_string).collect();
        assert_eq!(
            shown,
            [
                "http://h/d/img.raw.gz.bmap?x=1#f",
                "http://h/d/img.raw.bmap?x=1#f",
                "http://h/d/img.bmap?x=1#f"
            ]
        );
    }

    #[test]
    fn locations() {
        assert!(matches!(locate("disk.img"), Ok(Location::Local(_))));
        assert!(
            matches!(locate("file:///tmp/x.img"), Ok(Location::Local(p)) if p == std::path::Path::new("/tmp/x.img"))
        );
        assert!(matches!(locate("https://h/x.img"), Ok(Location::Url(_))));
        assert!(matches!(locate("gopher://h/x"), Err(Error::Unsupported(_))));
        let Ok(Location::Url(ssh)) = locate("ssh://u@h:dir/x.img.gz") else {
            panic!("ssh URL")
        };
        assert_eq!(name_for_format(&ssh), "dir/x.img.gz");
        assert_eq!(redact(&ssh), "ssh://h:dir/x.img.gz");
    }
}
