//! The client's half of the opening handshake (RFC 6455 section 4.1): the
//! upgrade request it writes, and the server's response parsed with
//! httparse and checked (`101`, `Upgrade: websocket`, `Connection: Upgrade`,
//! the `Sec-WebSocket-Accept` that matches our key, no extension we did not
//! offer).
//!
//! Pure: bytes in, a decision out. Incomplete input is `Ok(None)`.

use base64::Engine as _;

use super::url::WsUrl;
use crate::handshake::accept_key;

/// Largest response head accepted, bytes.
pub const MAX_RESPONSE_HEAD: usize = 16 << 10;
/// Largest refusal body kept for the error message, bytes.
pub const MAX_REFUSAL_BODY: usize = 4 << 10;
/// Response headers parsed at most.
const MAX_HEADERS: usize = 64;

/// Why the server's answer is not a WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not a parseable HTTP/1.1 response.
    #[error("bad HTTP response: {0}")]
    Malformed(String),
    /// The head is larger than [`MAX_RESPONSE_HEAD`] or has too many headers.
    #[error("HTTP response head too large")]
    TooLarge,
    /// The server answered with a status other than 101 (`body` is its
    /// first line, trimmed, at most [`MAX_REFUSAL_BODY`] bytes).
    #[error("server refused the upgrade: {status} {reason}{}", if body.is_empty() { String::new() } else { format!(" ({body})") })]
    Refused {
        /// HTTP status.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// The body's first line, if any.
        body: String,
    },
    /// A 101 without `Upgrade: websocket` or `Connection: Upgrade`.
    #[error("101 response without {0}")]
    NotWebSocket(&'static str),
    /// `Sec-WebSocket-Accept` missing or not the value for our key.
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    BadAccept,
    /// The server selected an extension or subprotocol we did not offer.
    #[error("server selected {0}, which was not offered")]
    NotOffered(&'static str),
}

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Bytes of the response head; what follows is WebSocket frames.
    pub head_len: usize,
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (24 characters).
pub fn new_key(random: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(random)
}

/// Writes the upgrade request for `url` with `key` and the extra header
/// lines `headers` (name, value) into `out`.
pub fn write_request(url: &WsUrl, key: &str, headers: &[(String, String)], out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        url.target,
        url.host_header()
    );
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether `name: value` can go on the wire as a header line: a token name
/// and a value without CR, LF or NUL.
pub fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Parses the server's response to a request sent with `key`.
///
/// `Ok(None)`: incomplete, read more. A refusal (status other than 101)
/// waits for its `Content-Length` body (up to [`MAX_REFUSAL_BODY`]) so the
/// error can say why; `eof` means no more bytes will come, so what is there
/// is the answer.
pub fn parse_response(buf: &[u8], key: &str, eof: bool) -> Result<Option<Accepted>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_RESPONSE_HEAD {
                return Err(ResponseError::TooLarge);
            }
            if eof {
                return Err(ResponseError::Malformed(if buf.is_empty() {
                    "connection closed before a response".into()
                } else {
                    "connection closed inside the response head".into()
                }));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    if head_len > MAX_RESPONSE_HEAD {
        return Err(ResponseError::TooLarge);
    }
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    if status != 101 {
        let body = &buf[head_len..];
        let want = header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(|n| n.min(MAX_REFUSAL_BODY));
        if let Some(n) = want {
            if body.len() < n && !eof {
                return Ok(None);
            }
        }
        let body = &body[..body.len().min(want.unwrap_or(MAX_REFUSAL_BODY))];
        let first = String::from_utf8_lossy(body);
        let first = first.lines().next().unwrap_or("").trim().to_owned();
        return Err(ResponseError::Refused {
            status,
            reason: resp.reason.unwrap_or("").to_owned(),
            body: first,
        });
    }
    if resp.version != Some(1) {
        return Err(ResponseError::Malformed("101 is not HTTP/1.1".into()));
    }
    // "If the response lacks an |Upgrade| header field or the |Upgrade|
    // header field contains a value that is not an ASCII case-insensitive
    // match for the value "websocket", the client MUST _Fail the WebSocket
    // Connection_." (RFC 6455)
    let has_token = |name: &str, token: &str| {
        resp.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).any(|h| {
            h.value.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") {
        return Err(ResponseError::NotWebSocket("Upgrade: websocket"));
    }
    if !has_token("connection", "upgrade") {
        return Err(ResponseError::NotWebSocket("Connection: Upgrade"));
    }
    let expected = accept_key(key.as_bytes());
    match header("sec-websocket-accept") {
        Some(v) if trim(v) == expected.as_bytes() => {}
        _ => return Err(ResponseError::BadAccept),
    }
    // "If the response includes a |Sec-WebSocket-Extensions| header field
    // and this header field indicates the use of an extension that was not
    // present in the client's handshake ..., the client MUST _Fail the
    // WebSocket Connection_." (RFC 6455) We offer none, nor a subprotocol.
    if header("sec-websocket-extensions").is_some_and(|v| !trim(v).is_empty()) {
        return Err(ResponseError::NotOffered("an extension"));
    }
    if header("sec-websocket-protocol").is_some_and(|v| !trim(v).is_empty()) {
        return Err(ResponseError::NotOffered("a subprotocol"));
    }
    Ok(Some(Accepted { head_len }))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    // The RFC 6455 section 1.3 example.
    const OK: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[test]
    fn the_rfc_example_is_accepted_byte_by_byte() {
        for end in 0..OK.len() {
            assert_eq!(parse_response(&OK[..end], KEY, false), Ok(None), "prefix {end}");
        }
        let mut buf = OK.to_vec();
        buf.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(parse_response(&buf, KEY, false), Ok(Some(Accepted { head_len: OK.len() })));
    }

    #[test]
    fn wrong_accept_and_missing_headers_fail() {
        assert_eq!(
            parse_response(OK, "AQIDBAUGBwgJCgsMDQ4PEA==", false),
            Err(ResponseError::BadAccept)
        );
        let no_upgrade = String::from_utf8_lossy(OK).replace("Upgrade: websocket\r\n", "");
        assert!(matches!(
            parse_response(no_upgrade.as_bytes(), KEY, false),
            Err(ResponseError::NotWebSocket(_))
        ));
        let ext = String::from_utf8_lossy(OK)
            .replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        assert!(matches!(
            parse_response(ext.as_bytes(), KEY, false),
            Err(ResponseError::NotOffered(_))
        ));
    }

    #[test]
    fn refusals_wait_for_their_body_and_say_why() {
        let r = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 14\r\n\r\nbad token\nmore";
        assert_eq!(parse_response(&r[..r.len() - 6], KEY, false), Ok(None));
        let err = parse_response(r, KEY, false).unwrap_err();
        assert_eq!(
            err,
            ResponseError::Refused {
                status: 401,
                reason: "Unauthorized".into(),
                body: "bad token".into()
            }
        );
        assert!(err.to_string().contains("401 Unauthorized (bad token)"), "{err}");
        // At EOF a short body is what there is.
        assert!(matches!(
            parse_response(&r[..r.len() - 6], KEY, true),
            Err(ResponseError::Refused { .. })
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 1", KEY, true),
            Err(ResponseError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(b"garbage\r\n\r\n", KEY, false),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn request_carries_the_key_and_the_extra_headers() {
        let url = WsUrl::parse("ws://127.0.0.1:9/ws?x=1").unwrap();
        let mut out = Vec::new();
        write_request(&url, KEY, &[("Origin".into(), "https://a.example".into())], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"), "{text}");
        assert!(text.contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")));
        assert!(text.ends_with("Origin: https://a.example\r\n\r\n"));
        assert!(valid_header("X-Api-Key", "v"));
        assert!(!valid_header("Bad Name", "v"));
        assert!(!valid_header("X", "a\r\nInjected: 1"));
    }
}
