//! Network settings for remote images, from the environment: the proxy for each URL
//! (`http_proxy`, `https_proxy`, `ftp_proxy`, `no_proxy` and their upper-case forms, as
//! curl and the reference's urllib read them), and `BMAPTOOL_TIMEOUT` and
//! `BMAPTOOL_RETRIES` for very slow or very flaky links. A value that is not what the
//! variable takes is an error naming the variable, its value and what it accepts,
//! before anything is read or written: these variables exist only for this tool, and a
//! typo that silently fell back to the default would hide the setting on exactly the
//! links it was meant for.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use bmap::source::remote;
use url::Url;

/// Seconds a read may wait for data: 1 up to the library's cap (a day).
pub const TIMEOUT_VAR: &str = "BMAPTOOL_TIMEOUT";
/// Reconnections after a drop before giving up.
pub const RETRIES_VAR: &str = "BMAPTOOL_RETRIES";
/// The most reconnections `BMAPTOOL_RETRIES` takes (with backoff capped at 8 s, 100
/// consecutive failures already mean more than 13 minutes of trying).
pub const MAX_RETRIES: u64 = 100;

/// The settings of remote sources.
pub fn remote_options() -> Result<remote::Options> {
    let defaults = remote::Options::default();
    let max_timeout = remote::MAX_TIMEOUT.as_secs();
    let timeout = number(
        TIMEOUT_VAR,
        1..=max_timeout,
        "a whole number of seconds",
        defaults.read_timeout.as_secs(),
    )?;
    let retries = number(
        RETRIES_VAR,
        0..=MAX_RETRIES,
        "a whole number of reconnections",
        u64::from(defaults.retries),
    )?;
    Ok(remote::Options {
        proxy: Arc::new(|url: &Url| env_proxy::for_url(url).to_string()),
        read_timeout: timeout.map_or(defaults.read_timeout, Duration::from_secs),
        retries: retries
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(defaults.retries),
        ..defaults
    })
}

/// The value of `name` when set (an empty value counts as unset), which must be a
/// whole number in `accepted`.
fn number(
    name: &str,
    accepted: std::ops::RangeInclusive<u64>,
    what: &str,
    default: u64,
) -> Result<Option<u64>> {
    let Some(raw) = std::env::var_os(name) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    if text.trim().is_empty() {
        return Ok(None);
    }
    match text.trim().parse::<u64>() {
        Ok(n) if accepted.contains(&n) => Ok(Some(n)),
        _ => bail!(
            "{name}={text:?} is not valid: it takes {what} from {} to {} (default {default}); \
             fix or unset it",
            accepted.start(),
            accepted.end()
        ),
    }
}
