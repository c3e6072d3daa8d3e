//! `handshake`: arbitrary bytes as an upgrade request, received in arbitrary
//! pieces, through `parse_request` then `validate_upgrade`.
//!
//! Input: byte 0 chooses the limits (bit 7: small 256-byte / 8-header limits,
//! else the defaults) and seeds the split points (low bits: the largest
//! piece; at most ~256 pieces per input); the rest is the request.
//!
//! Checks: no panic; `Ok(None)` until the first answer, and that answer is
//! the answer for the whole buffer (however it was split); `head_len` within
//! the buffer and the limit; a refusal has a status in {400, 405, 426, 431}
//! and its response is a complete HTTP/1.1 response a client parses, with the
//! right reason phrase, Content-Length and headers; an accepted upgrade
//! satisfies RFC 6455 section 4.2.1 (checked independently here) and its 101
//! response carries the right accept key (computed independently here).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};
use wsedge::handshake::{
    parse_request, status_text, upgrade_response, validate_upgrade, Limits, Reject, Request,
};
use wsedge_fuzz::Rng;

const PIECES: [u64; 8] = [1, 2, 3, 7, 16, 64, 512, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, buf)) = data.split_first() else {
        return;
    };
    let limits = if ctl & 0x80 != 0 {
        Limits { max_request_bytes: 256, max_headers: 8 }
    } else {
        Limits::default()
    };
    let whole = parse_request(buf, &limits);

    // Incremental: cumulative prefixes, as the connection receives them.
    let mut rng = Rng::new(ctl as u64);
    let max_piece = PIECES[(ctl & 7) as usize];
    // At most ~256 reads per input, so big heads stay fast (every read
    // re-parses the whole prefix, as the connection does).
    let min_piece = buf.len() / 256;
    let mut end = 0;
    let mut first = None;
    while end < buf.len() {
        let piece = (1 + rng.below(max_piece) as usize).max(min_piece);
        end = (end + piece).min(buf.len());
        let got = parse_request(&buf[..end], &limits);
        match &first {
            // The connection stops at the first answer; every longer prefix
            // must give the same one (it only depends on the head).
            Some(answer) => assert_eq!(&got, answer, "prefix of {end} bytes"),
            None if got != Ok(None) => first = Some(got),
            None => {}
        }
    }
    assert_eq!(first.unwrap_or(Ok(None)), whole, "split vs whole");

    match whole {
        Ok(None) => assert!(buf.len() < limits.max_request_bytes),
        Ok(Some(req)) => {
            assert!(req.head_len <= buf.len());
            assert!(req.head_len <= limits.max_request_bytes);
            assert!(req.headers.len() <= limits.max_headers);
            // Unchanged by any tail: the tail belongs to the WebSocket stream.
            let again = parse_request(&buf[..req.head_len], &limits);
            assert_eq!(again.as_ref(), Ok(&Some(req.clone())));
            let supported = ["chat".to_string(), "superchat".to_string()];
            match validate_upgrade(&req, &supported) {
                Ok(up) => check_accepted(&req, &up, &supported),
                Err(reject) => check_refusal(&reject),
            }
        }
        Err(reject) => {
            assert!(matches!(reject.status, 400 | 431), "{reject:?}");
            check_refusal(&reject);
        }
    }
});

/// Values of every header named `name` (lowercase).
fn all<'a>(req: &'a Request, name: &'a str) -> Vec<&'a [u8]> {
    req.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_slice()).collect()
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let e = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (s, e) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

fn has_token(req: &Request, name: &str, token: &str) -> bool {
    all(req, name)
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// RFC 6455 section 4.2.1, checked without the crate's helpers.
fn check_accepted(req: &Request, up: &wsedge::handshake::Upgrade, supported: &[String]) {
    assert_eq!(req.method, "GET");
    assert_eq!(req.version, 1);
    let hosts = all(req, "host");
    assert!(hosts.len() == 1 && !trim(hosts[0]).is_empty());
    assert!(has_token(req, "upgrade", "websocket"));
    assert!(has_token(req, "connection", "upgrade"));
    let versions = all(req, "sec-websocket-version");
    assert!(versions.len() == 1 && trim(versions[0]) == b"13");
    let keys = all(req, "sec-websocket-key");
    assert_eq!(keys.len(), 1);
    let key = trim(keys[0]);
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let decoded = engine.decode(key).expect("accepted key is base64");
    assert_eq!(decoded.len(), 16, "accepted key of {} bytes", decoded.len());

    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    assert_eq!(up.accept, accept);

    if let Some(p) = &up.protocol {
        assert!(supported.contains(p));
        let offered = all(req, "sec-websocket-protocol")
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim(t) == p.as_bytes());
        assert!(offered, "selected {p} was not offered");
    }

    let bytes = upgrade_response(up);
    let (status, headers, body) = client_reads(&bytes);
    assert_eq!(status, 101);
    assert!(body.is_empty(), "a 101 has no body");
    assert_eq!(get(&headers, "upgrade"), Some(&b"websocket"[..]));
    assert_eq!(get(&headers, "connection"), Some(&b"Upgrade"[..]));
    assert_eq!(get(&headers, "sec-websocket-accept"), Some(accept.as_bytes()));
    assert_eq!(get(&headers, "sec-websocket-protocol"), up.protocol.as_deref().map(str::as_bytes));
}

fn check_refusal(reject: &Reject) {
    assert!(matches!(reject.status, 400 | 405 | 426 | 431), "status {}", reject.status);
    assert!(!reject.reason.is_empty() && !reject.reason.contains('\n'));
    let bytes = reject.to_response();
    let (status, headers, body) = client_reads(&bytes);
    assert_eq!(status, reject.status);
    assert_eq!(body, format!("{}\n", reject.reason).as_bytes());
    assert_eq!(get(&headers, "connection"), Some(&b"close"[..]));
    match reject.status {
        405 => assert_eq!(get(&headers, "allow"), Some(&b"GET"[..])),
        426 => assert_eq!(get(&headers, "sec-websocket-version"), Some(&b"13"[..])),
        _ => {}
    }
}

/// Response headers: lowercased name, raw value.
type Headers = Vec<(String, Vec<u8>)>;

/// Reads `bytes` as a client: a complete HTTP/1.1 response whose
/// Content-Length (required unless 101) matches the body exactly.
fn client_reads(bytes: &[u8]) -> (u16, Headers, Vec<u8>) {
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(bytes).expect("response parses") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("response incomplete"),
    };
    assert_eq!(resp.version, Some(1));
    let status = resp.code.expect("status");
    assert_eq!(resp.reason, Some(status_text(status)));
    let headers: Vec<(String, Vec<u8>)> =
        resp.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
    let body = bytes[n..].to_vec();
    if status != 101 {
        let len = get(&headers, "content-length").expect("Content-Length");
        let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
        assert_eq!(len, body.len(), "Content-Length vs body");
    }
    (status, headers, body)
}

fn get<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    let mut found = headers.iter().filter(|(n, _)| n == name);
    let first = found.next().map(|(_, v)| v.as_slice());
    assert!(found.next().is_none(), "header {name} sent twice");
    first
}
