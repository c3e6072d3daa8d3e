//! The WebSocket opening handshake, server side, sans I/O.
//!
//! This module owns everything between "bytes arrived on a fresh
//! connection" and "we know what to answer": parsing the HTTP/1.1 request
//! head ([`parse_request`]), validating it as a WebSocket upgrade
//! ([`validate_upgrade`]) and building the bytes of the answer, either the
//! `101 Switching Protocols` ([`upgrade_response`],
//! [`write_upgrade_response`]) or a complete refusal ([`Reject::to_response`],
//! [`http_response`]).
//!
//! It performs no I/O and keeps no state: the caller accumulates received
//! bytes and calls [`parse_request`] again on the whole buffer until it
//! returns a [`Request`]. Bytes past [`Request::head_len`] belong to the next
//! layer (WebSocket frames or an HTTP body) and are left to the caller.
//!
//! Nothing here panics on any input.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID appended to the client's key to form the accept value.
///
/// "concatenating /key/ ... with the string
/// "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"" (RFC 6455)
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Standard alphabet, canonical padding required, non-zero trailing bits
/// tolerated: RFC 6455's own example key "AQIDBAUGBwgJCgsMDQ4PEC==" has them.
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Headers parsed into a stack array; a larger `Limits::max_headers` falls
/// back to a heap array.
const STACK_HEADERS: usize = 64;

/// `base64(sha1(key + GUID))`, the value of `Sec-WebSocket-Accept`
/// (RFC 6455 section 4.2.2).
///
/// `key` is the `Sec-WebSocket-Key` value as sent (not decoded), without
/// leading or trailing whitespace.
pub fn accept_key(key: &[u8]) -> String {
    // "taking the SHA-1 hash of this concatenated value to obtain a 20-byte
    // value and base64-encoding (see Section 4 of [RFC4648]) this 20-byte
    // hash" (RFC 6455)
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Limits for parsing a request head.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request head accepted, in bytes, final blank line included
    /// (default 8192).
    pub max_request_bytes: usize,
    /// Most header fields accepted (default 64).
    pub max_headers: usize,
}

impl Default for Limits {
    /// 8 KiB of head, 64 header fields.
    fn default() -> Self {
        Limits { max_request_bytes: 8192, max_headers: 64 }
    }
}

/// A parsed HTTP request head (owned, small).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`).
    pub method: String,
    /// The request target up to, not including, the first `?`.
    pub path: String,
    /// The raw query string after the first `?`, if there was a `?`.
    pub query: Option<String>,
    /// Minor HTTP version: 0 => HTTP/1.0, 1 => HTTP/1.1.
    pub version: u8,
    /// Every header field in order: name lowercased, value raw.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes consumed by the request head. Bytes after it belong to the
    /// next layer (WebSocket stream or HTTP body) and must not be lost.
    pub head_len: usize,
}

impl Request {
    /// Value of the first header named `name_lowercase`, if any.
    pub fn header(&self, name_lowercase: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name_lowercase).map(|(_, v)| v.as_slice())
    }

    /// True if the comma-separated value lists of ALL headers named
    /// `name_lowercase` contain `token` (ASCII case-insensitive, elements
    /// trimmed of spaces and tabs).
    pub fn header_has_token(&self, name_lowercase: &str, token: &str) -> bool {
        self.list_elements(name_lowercase).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// True if the `Upgrade` header has the `websocket` token.
    pub fn is_upgrade(&self) -> bool {
        self.header_has_token("upgrade", "websocket")
    }

    /// Values of every header named `name`, in order.
    /// Every value of the headers named `name_lowercase`, in order.
    pub fn header_values<'a>(&'a self, name_lowercase: &'a str) -> Vec<&'a [u8]> {
        self.headers_named(name_lowercase).collect()
    }

    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The non-empty, trimmed elements of the comma lists of every header
    /// named `name`, in order.
    fn list_elements<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers_named(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
            .filter(|t| !t.is_empty())
    }
}

/// Strips leading and trailing spaces and tabs (HTTP optional whitespace).
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Why a request is refused before the upgrade; becomes a complete HTTP
/// response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status code.
    pub status: u16,
    /// One line, human readable, e.g. "missing Sec-WebSocket-Key"; the
    /// response body.
    pub reason: &'static str,
    /// Extra response headers, e.g. `("Allow", "GET")` for 405.
    pub headers: Vec<(&'static str, String)>,
}

impl Reject {
    /// A refusal with no extra headers.
    pub fn new(status: u16, reason: &'static str) -> Self {
        Reject { status, reason, headers: Vec::new() }
    }

    /// Adds an extra response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Full HTTP/1.1 response bytes: status line with the standard reason
    /// phrase, `Content-Type: text/plain; charset=utf-8`, `Content-Length`,
    /// `Connection: close`, the extra headers, blank line, and the body
    /// `reason + "\n"`.
    pub fn to_response(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.reason.len() + 1);
        body.extend_from_slice(self.reason.as_bytes());
        body.push(b'\n');
        http_response(self.status, "text/plain; charset=utf-8", &body, &self.headers)
    }
}

/// Parse the request head from `buf` (everything received so far).
///
/// Re-parses from the start of `buf` on every call; the caller accumulates
/// bytes.
///
/// - `Ok(Some(req))`: a complete head; `req.head_len <= buf.len()`.
/// - `Ok(None)`: incomplete, need more bytes (and `buf.len()` is under
///   `max_request_bytes`).
/// - `Err` 431 "request head too large": no complete head within
///   `max_request_bytes` (a head ending exactly at the limit is accepted).
/// - `Err` 431 "too many headers": more than `max_headers` header fields.
/// - `Err` 400 "malformed HTTP request": anything httparse refuses.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<Request>, Reject> {
    // Only the first `max_request_bytes` may hold the head; bytes beyond it
    // (pipelined frames) are fine once the head is complete inside.
    let window = &buf[..buf.len().min(limits.max_request_bytes)];

    // Each header line takes at least 3 bytes ("a:\n"), so a slot count
    // above window/2 + 1 can never be reached; clamping it bounds the heap
    // fallback without changing any answer.
    let slots = limits.max_headers.min(limits.max_request_bytes / 2 + 1);
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let headers: &mut [httparse::Header<'_>] = if slots <= STACK_HEADERS {
        &mut stack[..slots]
    } else {
        heap = vec![httparse::EMPTY_HEADER; slots];
        &mut heap
    };

    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if window.len() >= limits.max_request_bytes {
                Err(Reject::new(431, "request head too large"))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::new(431, "too many headers"));
        }
        Err(_) => return Err(malformed()),
    };

    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(malformed());
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers =
        req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();

    Ok(Some(Request { method: method.to_owned(), path, query, version, headers, head_len }))
}

fn malformed() -> Reject {
    Reject::new(400, "malformed HTTP request")
}

/// The accepted upgrade: what the server answers with 101.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The chosen subprotocol, sent as `Sec-WebSocket-Protocol`; `None`
    /// sends no such header.
    pub protocol: Option<String>,
}

/// Validate a parsed request as a WebSocket upgrade (RFC 6455 section
/// 4.2.1), checking in this order:
///
/// 1. method `GET`, else 405 with `Allow: GET`;
/// 2. HTTP/1.1, else 400 "HTTP/1.1 required";
/// 3. exactly one non-empty `Host`, else 400;
/// 4. `Upgrade` has the token `websocket` (case-insensitive), else 400;
/// 5. `Connection` has the token `upgrade` (comma list, case-insensitive),
///    else 400;
/// 6. exactly one `Sec-WebSocket-Version`, value exactly `13`, else 426
///    with `Sec-WebSocket-Version: 13` (and `Upgrade: websocket`);
/// 7. exactly one `Sec-WebSocket-Key`, base64 (standard alphabet, with
///    padding) of exactly 16 bytes, else 400;
/// 8. subprotocol: the FIRST protocol offered by the client (all
///    `Sec-WebSocket-Protocol` headers, comma lists) that is in
///    `supported_protocols` (exact, case-sensitive match); none => `None`,
///    not an error.
///
/// Path/route checking (404), Origin and authentication are the caller's
/// job.
pub fn validate_upgrade(req: &Request, supported_protocols: &[String]) -> Result<Upgrade, Reject> {
    // "An HTTP/1.1 or higher GET request" (RFC 6455)
    if req.method != "GET" {
        return Err(Reject::new(405, "WebSocket upgrade requires GET").with_header("Allow", "GET"));
    }
    if req.version != 1 {
        return Err(Reject::new(400, "HTTP/1.1 required"));
    }

    // "A |Host| header field containing the server's authority." (RFC 6455)
    let mut hosts = req.headers_named("host");
    match (hosts.next(), hosts.next()) {
        (None, _) => return Err(Reject::new(400, "missing Host header")),
        (Some(_), Some(_)) => return Err(Reject::new(400, "duplicate Host header")),
        (Some(h), None) if trim(h).is_empty() => {
            return Err(Reject::new(400, "empty Host header"));
        }
        (Some(_), None) => {}
    }

    // "An |Upgrade| header field containing the value "websocket", treated
    // as an ASCII case-insensitive value." (RFC 6455)
    if !req.is_upgrade() {
        return Err(Reject::new(400, "missing or invalid Upgrade: websocket header"));
    }

    // "A |Connection| header field that includes the token "Upgrade",
    // treated as an ASCII case-insensitive value." (RFC 6455)
    if !req.header_has_token("connection", "upgrade") {
        return Err(Reject::new(400, "missing Connection: Upgrade header"));
    }

    // "If this version does not match a version understood by the server,
    // the server MUST abort the WebSocket handshake described in this
    // section and instead send an appropriate HTTP error code (such as 426
    // Upgrade Required) and a |Sec-WebSocket-Version| header field
    // indicating the version(s) the server is capable of understanding."
    // (RFC 6455)
    // "The |Sec-WebSocket-Version| header field MUST NOT appear more than
    // once in an HTTP request." (RFC 6455)
    let mut versions = req.headers_named("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if trim(v) == b"13" => {}
        _ => {
            // A 426 names the protocol(s) to upgrade to (RFC 9110 15.5.22).
            return Err(Reject::new(426, "unsupported Sec-WebSocket-Version (13 required)")
                .with_header("Sec-WebSocket-Version", "13")
                .with_header("Upgrade", "websocket"));
        }
    }

    // "A |Sec-WebSocket-Key| header field with a base64-encoded (see
    // Section 4 of [RFC4648]) value that, when decoded, is 16 bytes in
    // length." (RFC 6455)
    // "The |Sec-WebSocket-Key| header field MUST NOT appear more than once
    // in an HTTP request." (RFC 6455)
    let mut keys = req.headers_named("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(Reject::new(400, "missing Sec-WebSocket-Key")),
        (Some(_), Some(_)) => return Err(Reject::new(400, "duplicate Sec-WebSocket-Key")),
        (Some(k), None) => trim(k),
    };
    // 16 bytes encode to exactly 24 characters, "==" included; checking the
    // length first keeps decoding bounded.
    let key_ok =
        key.len() == 24 && matches!(KEY_ENGINE.decode(key), Ok(decoded) if decoded.len() == 16);
    if !key_ok {
        return Err(Reject::new(400, "invalid Sec-WebSocket-Key (must be base64 of 16 bytes)"));
    }

    // "The value chosen MUST be derived from the client's handshake,
    // specifically by selecting one of the values from the
    // |Sec-WebSocket-Protocol| field that the server is willing to use for
    // this connection (if any)." (RFC 6455)
    let protocol = req
        .list_elements("sec-websocket-protocol")
        .find_map(|offered| {
            supported_protocols.iter().find(|s| !s.is_empty() && s.as_bytes() == offered)
        })
        .cloned();

    // "the server has to take the value (as present in the header field,
    // e.g., the base64-encoded [RFC4648] version minus any leading and
    // trailing whitespace)" (RFC 6455)
    Ok(Upgrade { accept: accept_key(key), protocol })
}

/// The 101 response bytes:
/// `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ...\r\n[Sec-WebSocket-Protocol: p\r\n]\r\n`.
pub fn upgrade_response(up: &Upgrade) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    write_upgrade_response(up, &mut out);
    out
}

/// Appends the 101 response (the bytes of [`upgrade_response`]) to `out`
/// without allocating a new Vec.
pub fn write_upgrade_response(up: &Upgrade, out: &mut Vec<u8>) {
    write_upgrade_response_with(up, None, out);
}

/// [`write_upgrade_response`] plus the agreed `Sec-WebSocket-Extensions`
/// value, if any.
pub fn write_upgrade_response_with(up: &Upgrade, extensions: Option<&str>, out: &mut Vec<u8>) {
    // "A Status-Line with a 101 response code as per RFC 2616 [RFC2616].
    // Such a response could look like "HTTP/1.1 101 Switching Protocols"."
    // (RFC 6455)
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    push_header(out, "Sec-WebSocket-Accept", up.accept.as_bytes());
    // "if the server does not wish to agree to one of the suggested
    // subprotocols, it MUST NOT send back a |Sec-WebSocket-Protocol| header
    // field in its response" (RFC 6455)
    if let Some(p) = &up.protocol {
        push_header(out, "Sec-WebSocket-Protocol", p.as_bytes());
    }
    if let Some(e) = extensions {
        push_header(out, "Sec-WebSocket-Extensions", e.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A plain HTTP/1.1 response for non-upgrade routes: status line with the
/// standard reason phrase, `Content-Type` (omitted when `content_type` is
/// empty), `Content-Length`, `Connection: close`, `extra_headers`, blank
/// line, `body`.
///
/// CR and LF inside header names or values are written as spaces, so a
/// value can never split the response.
pub fn http_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, String)],
) -> Vec<u8> {
    let extra: usize = extra_headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(128 + content_type.len() + extra + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status_text(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        push_header(&mut out, "Content-Type", content_type.as_bytes());
    }
    push_header(&mut out, "Content-Length", body.len().to_string().as_bytes());
    out.extend_from_slice(b"Connection: close\r\n");
    for (name, value) in extra_headers {
        push_header(&mut out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes `name: value\r\n`, with CR/LF in either written as spaces.
fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let clean = |b: &u8| if matches!(b, b'\r' | b'\n') { b' ' } else { *b };
    out.extend(name.as_bytes().iter().map(clean));
    out.extend_from_slice(b": ");
    out.extend(value.iter().map(clean));
    out.extend_from_slice(b"\r\n");
}

/// Standard reason phrase for a status code (RFC 9110 names); unknown
/// codes => "Unknown".
pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests;
