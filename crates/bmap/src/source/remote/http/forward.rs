//! Plain-http requests through an HTTP proxy, in absolute form (`GET http://host/path
//! HTTP/1.1`, RFC 9112 section 3.2.2), as curl, wget and Python's urllib send them.
//!
//! Why this exists: ureq 3 sends every request through an HTTP proxy inside a `CONNECT`
//! tunnel and has no setting for the absolute form (ureq 2 had it, algesten/ureq#587);
//! Squid's default configuration refuses `CONNECT` to any port but 443, so plain-http
//! images behind the most common proxy could not be read. The fix plugs into ureq's
//! connector API (its `unversioned` module, stable across patch releases, hence the
//! `~3.5` requirement): an agent whose resolver answers with the proxy's address, so
//! that the connection goes to the proxy and the origin's name is resolved by the proxy
//! alone, and whose transport inserts `http://host:port` before the path of each
//! request line. Everything else (headers, `Host`, bodies, keep-alive, timeouts) stays
//! ureq's. Only GETs without a body go through it, so each request's head starts
//! where the previous one ended.

use std::fmt;
use std::io;

use ureq::Agent;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, NextTimeout, TcpConnector, Transport,
};

/// An agent that sends each request to `proxy` (an `http://` proxy) in absolute form.
pub(super) fn agent(config: Config, proxy: Uri) -> Agent {
    let connector = ().chain(TcpConnector::default()).chain(AbsoluteForm);
    Agent::with_parts(
        config,
        connector,
        ProxyResolver {
            proxy,
            inner: DefaultResolver::default(),
        },
    )
}

/// Resolves the proxy's name, whatever the request's URL.
struct ProxyResolver {
    proxy: Uri,
    inner: DefaultResolver,
}

impl fmt::Debug for ProxyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyResolver")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Resolver for ProxyResolver {
    fn resolve(
        &self,
        _uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        self.inner.resolve(&self.proxy, config, timeout)
    }
}

/// Wraps the connection to the proxy in [`Forwarding`].
#[derive(Debug)]
struct AbsoluteForm;

impl<In: Transport> Connector<In> for AbsoluteForm {
    type Out = Forwarding<In>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let (Some(scheme), Some(authority)) = (details.uri.scheme(), details.uri.authority())
        else {
            return Err(ureq::Error::BadUri(format!(
                "no scheme or host in '{}'",
                details.uri
            )));
        };
        // The pool keys connections by scheme and authority: a connection made for
        // this origin only ever carries requests for it.
        let origin = format!("{scheme}://{}", authority.as_str()).into_bytes();
        Ok(chained.map(|inner| Forwarding {
            inner,
            origin,
            at_request_start: true,
            tail: Vec::new(),
        }))
    }
}

/// A connection to the proxy whose request lines name the whole URL.
struct Forwarding<T> {
    inner: T,
    /// `http://host[:port]` of the origin.
    origin: Vec<u8>,
    /// Whether the next bytes sent start a request.
    at_request_start: bool,
    /// The last bytes sent (to see a head's end across writes).
    tail: Vec<u8>,
}

impl<T: fmt::Debug> fmt::Debug for Forwarding<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarding")
            .field("inner", &self.inner)
            .field("origin", &String::from_utf8_lossy(&self.origin))
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Transport for Forwarding<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let output = self.inner.buffers().output();
        let amount = if self.at_request_start && amount > 0 {
            to_absolute_form(output, amount, &self.origin).map_err(ureq::Error::Io)?
        } else {
            amount
        };
        // A head ends with an empty line; no body follows (GETs only), so the next
        // bytes start the next request on this connection.
        self.tail.extend_from_slice(&output[..amount]);
        self.at_request_start = self.tail.ends_with(b"\r\n\r\n");
        let keep = self.tail.len().saturating_sub(3);
        self.tail.drain(..keep);
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// Turns the origin-form request line at the start of `buf[..len]` (`GET /path
/// HTTP/1.1`) into absolute form by putting `origin` before the path; returns the new
/// length.
fn to_absolute_form(buf: &mut [u8], len: usize, origin: &[u8]) -> io::Result<usize> {
    let line_end = buf[..len].iter().position(|&b| b == b'\n').unwrap_or(len);
    let Some(space) = buf[..line_end].iter().position(|&b| b == b' ') else {
        return Err(io::Error::other("no request line to send to the proxy"));
    };
    let target = space + 1;
    if buf.get(target) != Some(&b'/') {
        return Err(io::Error::other(
            "the request target is not a path: cannot send it to the proxy",
        ));
    }
    let new_len = len + origin.len();
    if new_len > buf.len() {
        return Err(io::Error::other("the request is too long for the proxy"));
    }
    buf.copy_within(target..len, target + origin.len());
    buf[target..target + origin.len()].copy_from_slice(origin);
    Ok(new_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_becomes_absolute() {
        let request = b"GET /d/x.img?t=1 HTTP/1.1\r\nhost: h:8080\r\n\r\n";
        let mut buf = vec![0u8; 200];
        buf[..request.len()].copy_from_slice(request);
        let len = to_absolute_form(&mut buf, request.len(), b"http://h:8080").expect("rewritten");
        assert_eq!(
            &buf[..len],
            b"GET http://h:8080/d/x.img?t=1 HTTP/1.1\r\nhost: h:8080\r\n\r\n"
        );
    }

    #[test]
    fn anything_but_an_origin_form_line_is_refused() {
        for bad in [&b"GET\r\n\r\n"[..], b"CONNECT h:80 HTTP/1.1\r\n\r\n"] {
            let mut buf = vec![0u8; 100];
            buf[..bad.len()].copy_from_slice(bad);
            assert!(to_absolute_form(&mut buf, bad.len(), b"http://h").is_err());
        }
        let line = b"GET / HTTP/1.1\r\n\r\n";
        let mut tight = line.to_vec();
        assert!(
            to_absolute_form(&mut tight, line.len(), b"http://h").is_err(),
            "no room in the buffer"
        );
    }
}
