//! A clearsigned bmap split into its parts in one linear pass: the signed text (as the
//! signatures cover it, and as gpg writes the bmap back) and the armored signatures.
//! rPGP's own cleartext parser searches the whole text read so far after every line,
//! which took 15 s for a bmap of 60,000 ranges (and hours for a million).

use pgp::composed::{Deserializable, DetachedSignature};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature;

use super::{CLEARSIGN_HEADER, Error, MAX_SIGNATURES};

const SIGNATURE_HEADER: &str = "-----BEGIN PGP SIGNATURE-----";

/// The parts of a clearsigned message.
pub(super) struct Clearsigned {
    /// The signatures of the armored block after the text.
    pub signatures: Vec<Signature>,
    /// What the signatures cover (RFC 4880, 7.1): each line dash-unescaped, without
    /// trailing spaces and tabs, lines joined by CRLF, no line ending after the last.
    pub signed: Vec<u8>,
    /// The bmap as gpg writes it back, made of the signed bytes only: each line
    /// dash-unescaped, without trailing spaces and tabs, with its own line ending
    /// (`\r\n` stays), the last with the one before the signature's armor.
    pub text: Vec<u8>,
}

/// Splits a clearsigned message.
pub(super) fn parse(bytes: &[u8]) -> Result<Clearsigned, Error> {
    let malformed = |what: &str| Error::Malformed(format!("a clearsigned bmap {what}"));
    let input = std::str::from_utf8(bytes).map_err(|_| malformed("that is not UTF-8 text"))?;
    let input = input.trim_start();
    let header = std::str::from_utf8(CLEARSIGN_HEADER).expect("ASCII");
    let after_header = input
        .strip_prefix(header)
        .and_then(|rest| {
            rest.strip_prefix("\r\n")
                .or_else(|| rest.strip_prefix('\n'))
        })
        .ok_or_else(|| malformed("without its header line"))?;
    let body_start = skip_armor_headers(after_header)?;
    let body_and_rest = &after_header[body_start..];
    // The text ends at the first line that starts with dashes: the text's own such
    // lines are dash-escaped ("- -----").
    let (body, last_ending, rest) = if body_and_rest.starts_with("-----") {
        ("", "\n", body_and_rest)
    } else {
        let at = body_and_rest
            .find("\n-----")
            .ok_or_else(|| malformed("without a signature after its text"))?;
        let (body, ending) = match body_and_rest[..at].strip_suffix('\r') {
            Some(body) => (body, "\r\n"),
            None => (&body_and_rest[..at], "\n"),
        };
        (body, ending, &body_and_rest[at + 1..])
    };
    if !rest.starts_with(SIGNATURE_HEADER) {
        return Err(malformed(
            "whose text is followed by something else than a signature",
        ));
    }
    let signatures = DetachedSignature::from_armor_many(rest.as_bytes())
        .map_err(|e| Error::Malformed(super::pgp_message(&e)))?
        .0
        .take(MAX_SIGNATURES + 1)
        .map(|s| s.map(|s| s.signature))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Malformed(super::pgp_message(&e)))?;
    let mut signed = Vec::with_capacity(body.len() + body.len() / 32);
    let mut text = Vec::with_capacity(body.len() + 2);
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            signed.extend_from_slice(b"\r\n");
            text.push(b'\n');
        }
        let undashed = line.strip_prefix("- ").unwrap_or(line);
        let (content, cr) = match undashed.strip_suffix('\r') {
            Some(content) => (content, true),
            None => (undashed, false),
        };
        let content = content.trim_end_matches([' ', '\t']).as_bytes();
        signed.extend_from_slice(content);
        text.extend_from_slice(content);
        if cr {
            text.push(b'\r');
        }
    }
    text.extend_from_slice(last_ending.as_bytes());
    Ok(Clearsigned {
        signatures,
        signed,
        text,
    })
}

/// The offset of the text after the armor headers (`Hash: SHA256`) and the blank line
/// that ends them; each header must name hash algorithms OpenPGP knows.
fn skip_armor_headers(after_header: &str) -> Result<usize, Error> {
    let mut at = 0;
    loop {
        let end = after_header[at..]
            .find('\n')
            .map(|i| at + i)
            .ok_or_else(|| Error::Malformed("a clearsigned bmap without text".into()))?;
        let line = after_header[at..end].trim_end_matches(['\r', ' ', '\t']);
        at = end + 1;
        if line.is_empty() {
            return Ok(at);
        }
        let values = line.strip_prefix("Hash:").ok_or_else(|| {
            Error::Malformed(format!("a clearsigned bmap with the header '{line}'"))
        })?;
        for value in values.split(',') {
            value.trim().parse::<HashAlgorithm>().map_err(|_| {
                Error::Malformed(format!(
                    "a clearsigned bmap with the unknown hash algorithm '{}'",
                    value.trim()
                ))
            })?;
        }
    }
}
