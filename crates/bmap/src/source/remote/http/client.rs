//! One HTTP GET as bmaptool sends it. The proxy is chosen for each URL, redirects
//! included: a plain `http://` URL goes to an HTTP proxy as an absolute-URI request
//! (`GET http://host/path HTTP/1.1`, as curl, wget and Python's urllib send it), an
//! `https://` URL through a `CONNECT` tunnel. Redirects are followed here rather than
//! by ureq, so that each hop gets its own proxy, credentials go only to the origin they
//! were given for, and a download that reached https never continues over plain http.
//!
//! ([`super::forward`] builds the absolute form.)

use ureq::Agent;
use ureq::config::Config;
use ureq::http::{Request, Response, Uri};
use url::Url;

use super::super::{Error, Options, capped, redact};

/// Redirects followed before giving up (as curl's and ureq's default).
const MAX_REDIRECTS: usize = 10;

/// A redirect's own body is read up to this size, so that its connection is reused.
const REDIRECT_BODY: u64 = 64 << 10;

/// Sends GETs; keeps one ureq agent (and so one pool of kept-alive connections) per
/// route.
pub(super) struct Client {
    options: Options,
    agents: Vec<(Route, Agent)>,
}

/// How a request reaches its server (proxies as their configured text).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Direct,
    /// Through an HTTP proxy, in absolute form (plain-http URLs).
    Forward(String),
    /// Through a proxy's tunnel (`CONNECT`, for https URLs).
    Tunnel(String),
}

impl Client {
    pub(super) fn new(options: &Options) -> Client {
        Client {
            options: options.clone(),
            agents: Vec::new(),
        }
    }

    /// The read timeout that applies.
    pub(super) fn read_timeout(&self) -> std::time::Duration {
        capped(self.options.read_timeout)
    }

    /// GETs `url`, following redirects, with `Range: bytes=from-[to]` when `range` is
    /// given. Status errors become [`Error`]s (naming `url`); 200 and 206 come back.
    pub(super) fn get(
        &mut self,
        url: &Url,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<Response<ureq::Body>, Error> {
        let mut current = url.clone();
        let mut credentials = Credentials::of(url);
        let mut secure = url.scheme() == "https";
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send(url, &current, range, credentials.for_url(&current))?;
            let status = response.status().as_u16();
            match status {
                200 | 206 => return Ok(response),
                301 | 302 | 303 | 307 | 308 => {}
                404 | 410 => return Err(Error::NotFound(redact(url))),
                status => {
                    return Err(Error::Status {
                        url: redact(url),
                        status,
                    });
                }
            }
            let next = location(url, &current, &response)?;
            finish(response);
            if secure && next.scheme() == "http" {
                return Err(Error::Downgrade {
                    url: redact(url),
                    to: redact(&next),
                });
            }
            secure |= next.scheme() == "https";
            if !next.username().is_empty() {
                credentials = Credentials::of(&next);
            }
            current = next;
        }
        Err(Error::Redirect {
            url: redact(url),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// One request for `target` (`url` is what errors name).
    fn send(
        &mut self,
        url: &Url,
        target: &Url,
        range: Option<(u64, Option<u64>)>,
        authorization: Option<String>,
    ) -> Result<Response<ureq::Body>, Error> {
        let transfer = |message: String| Error::Transfer {
            url: redact(url),
            message,
        };
        let mut request = Request::get(without_credentials(target).as_str());
        let mut route = (Route::Direct, None);
        if let Some(text) = (self.options.proxy)(target) {
            let proxy = ureq::Proxy::new(&text).map_err(|e| {
                transfer(format!(
                    "bad proxy '{}': {e}",
                    super::super::redact_str(&text)
                ))
            })?;
            if target.scheme() == "http" && proxy.protocol() == ureq::ProxyProtocol::Http {
                if let Some(value) = proxy_authorization(&proxy) {
                    request = request.header("Proxy-Authorization", value);
                }
                route = (Route::Forward(text), Some(proxy));
            } else {
                route = (Route::Tunnel(text), Some(proxy));
            }
        }
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        if let Some((from, to)) = range {
            let to = to.map(|t| t.to_string()).unwrap_or_default();
            request = request.header("Range", format!("bytes={from}-{to}"));
        }
        let request = request
            .body(())
            .map_err(|e| transfer(format!("cannot make the request: {e}")))?;
        let seconds = self.read_timeout().as_secs();
        let agent = self.agent(route.0, route.1).map_err(transfer)?;
        agent.run(request).map_err(|e| match e {
            ureq::Error::Timeout(_) => Error::TimedOut {
                url: redact(url),
                seconds,
            },
            e => transfer(e.to_string()),
        })
    }

    /// The agent for `route` (through `proxy`), made on first use.
    fn agent(&mut self, route: Route, proxy: Option<ureq::Proxy>) -> Result<&Agent, String> {
        if let Some(index) = self.agents.iter().position(|(r, _)| *r == route) {
            return Ok(&self.agents[index].1);
        }
        let agent = match (&route, proxy) {
            (Route::Forward(_), Some(proxy)) => {
                let address: Uri = format!("http://{}:{}", proxy.host(), proxy.port())
                    .parse()
                    .map_err(|e| format!("bad proxy address '{}': {e}", proxy.host()))?;
                super::forward::agent(config(&self.options, None), address)
            }
            (Route::Tunnel(_), proxy) => config(&self.options, proxy).into(),
            _ => config(&self.options, None).into(),
        };
        self.agents.push((route, agent));
        Ok(&self.agents[self.agents.len() - 1].1)
    }
}

/// The settings of every agent: statuses and redirects are handled here; proxies only
/// as given (`None`: ureq would otherwise read them from the environment).
fn config(options: &Options, proxy: Option<ureq::Proxy>) -> Config {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let connect = capped(options.connect_timeout);
    let read = capped(options.read_timeout);
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(connect.saturating_add(read)))
        .timeout_per_read(Some(read))
        .proxy(proxy)
        .tls_config(tls)
        .user_agent(concat!("bmaptool/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn proxy_authorization(proxy: &ureq::Proxy) -> Option<String> {
    if proxy.username().is_none() && proxy.password().is_none() {
        return None;
    }
    let user = proxy.username().unwrap_or_default();
    let password = proxy.password().unwrap_or_default();
    Some(basic(user, password))
}

/// `Basic` credentials for an `Authorization` header.
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648, section 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The user name and password of a URL, and the origin they may be sent to.
struct Credentials {
    origin: Option<(String, Option<String>, Option<u16>)>,
    header: Option<String>,
}

impl Credentials {
    fn of(url: &Url) -> Credentials {
        if url.username().is_empty() && url.password().is_none() {
            return Credentials {
                origin: None,
                header: None,
            };
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Credentials {
            origin: Some(origin(url)),
            header: Some(basic(
                &decode(url.username()),
                &decode(url.password().unwrap_or_default()),
            )),
        }
    }

    /// The `Authorization` header for `url`: only on the origin the credentials came
    /// with (a redirect elsewhere does not get them, as curl does it).
    fn for_url(&self, url: &Url) -> Option<String> {
        (self.origin.as_ref() == Some(&origin(url)))
            .then(|| self.header.clone())
            .flatten()
    }
}

fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_owned),
        url.port_or_known_default(),
    )
}

fn without_credentials(url: &Url) -> Url {
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare.set_fragment(None);
    bare
}

/// Where a redirect from `current` points (`url` is what errors name).
fn location(url: &Url, current: &Url, response: &Response<ureq::Body>) -> Result<Url, Error> {
    let redirect = |message: String| Error::Redirect {
        url: redact(url),
        message,
    };
    let status = response.status().as_u16();
    let value = super::header(response, "location")
        .ok_or_else(|| redirect(format!("the server answered {status} without a Location")))?;
    let next = current.join(value.trim()).map_err(|e| {
        redirect(format!(
            "the server redirects to '{value}', not a URL ({e})"
        ))
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(redirect(format!(
            "the server redirects to '{}', which is not an http or https URL",
            redact(&next)
        )));
    }
    Ok(next)
}

/// Reads a redirect's (short) body to its end, so that the connection is reused.
fn finish(response: Response<ureq::Body>) {
    let mut reader = response.into_body().into_reader();
    let _ = std::io::copy(
        &mut std::io::Read::take(&mut reader, REDIRECT_BODY),
        &mut std::io::sink(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn credentials_go_only_to_their_origin() {
        let url = Url::parse("http://us%40er:p%3Aw@h:8080/x").expect("url");
        let credentials = Credentials::of(&url);
        assert_eq!(
            credentials.for_url(&Url::parse("http://h:8080/other").expect("url")),
            Some(basic("us@er", "p:w"))
        );
        for elsewhere in ["http://h:8081/x", "https://h:8080/x", "http://g:8080/x"] {
            let other = Url::parse(elsewhere).expect("url");
            assert_eq!(credentials.for_url(&other), None, "{elsewhere}");
        }
    }

    #[test]
    fn proxy_credentials_are_its_own() {
        let proxy = ureq::Proxy::new("http://user:pw@proxy.example:3128").expect("proxy");
        assert_eq!(proxy_authorization(&proxy), Some(basic("user", "pw")));
        let open = ureq::Proxy::new("http://proxy.example:3128").expect("proxy");
        assert_eq!(proxy_authorization(&open), None);
    }
}
