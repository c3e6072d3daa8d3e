//! Tests of the upgrade parser and the response builders.

use super::*;
use proptest::prelude::*;

/// A request as Chrome sends it.
const CHROME: &str = "GET /ws?room=lobby&x=1 HTTP/1.1\r\n\
    Host: edge.example.com\r\n\
    Connection: Upgrade\r\n\
    Pragma: no-cache\r\n\
    Cache-Control: no-cache\r\n\
    User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
    Upgrade: websocket\r\n\
    Origin: https://app.example.com\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Accept-Encoding: gzip, deflate, br, zstd\r\n\
    Accept-Language: en-US,en;q=0.9\r\n\
    Cookie: session=abc123; theme=dark\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
    \r\n";

/// A minimal valid upgrade request with the given extra header lines.
fn request_with(method: &str, version: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{method} /chat {version}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

const BASE: [&str; 5] = [
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// BASE with the header starting with `drop` removed and `add` appended.
fn base_but(drop: &str, add: &[&str]) -> Vec<u8> {
    let mut hs: Vec<&str> =
        BASE.iter().copied().filter(|h| drop.is_empty() || !h.starts_with(drop)).collect();
    hs.extend_from_slice(add);
    request_with("GET", "HTTP/1.1", &hs)
}

fn parse(buf: &[u8]) -> Request {
    parse_request(buf, &Limits::default()).expect("parse error").expect("incomplete")
}

fn validate(buf: &[u8], supported: &[&str]) -> Result<Upgrade, Reject> {
    let supported: Vec<String> = supported.iter().map(|s| s.to_string()).collect();
    validate_upgrade(&parse(buf), &supported)
}

fn refused(buf: &[u8]) -> Reject {
    validate(buf, &[]).expect_err("should be refused")
}

/// Parses `bytes` as an HTTP response the way a client would; returns
/// (status, headers, body) and checks Content-Length against the body.
fn client_reads(bytes: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(bytes).expect("response parses") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("response incomplete"),
    };
    assert_eq!(resp.version, Some(1));
    let status = resp.code.expect("status");
    assert_eq!(resp.reason, Some(status_text(status)));
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_string(), String::from_utf8(h.value.to_vec()).expect("utf8")))
        .collect();
    let body = bytes[n..].to_vec();
    if status != 101 {
        let len = get(&headers, "Content-Length").expect("Content-Length");
        assert_eq!(len.parse::<usize>().expect("number"), body.len());
    }
    (status, headers, body)
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Asserts `r` is `status` and its response, as a client reads it,
/// carries that status, Connection: close and the reason as body.
fn assert_refusal(r: &Reject, status: u16) -> Vec<(String, String)> {
    assert_eq!(r.status, status, "{r:?}");
    let (st, headers, body) = client_reads(&r.to_response());
    assert_eq!(st, status);
    assert_eq!(get(&headers, "Connection"), Some("close"));
    assert_eq!(body, format!("{}\n", r.reason).into_bytes());
    headers
}

#[test]
fn rfc6455_accept_example() {
    assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn chrome_request_is_accepted_and_answered_with_101() {
    let req = parse(CHROME.as_bytes());
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/ws");
    assert_eq!(req.query.as_deref(), Some("room=lobby&x=1"));
    assert_eq!(req.version, 1);
    assert_eq!(req.head_len, CHROME.len());
    assert!(req.is_upgrade());
    assert_eq!(req.header("origin"), Some(&b"https://app.example.com"[..]));
    assert_eq!(req.header("cookie"), Some(&b"session=abc123; theme=dark"[..]));
    assert_eq!(req.headers.len(), 13);

    let up = validate_upgrade(&req, &[]).expect("accepted");
    assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(up.protocol, None);

    let bytes = upgrade_response(&up);
    assert_eq!(
        bytes,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    let (status, headers, body) = client_reads(&bytes);
    assert_eq!(status, 101);
    assert!(body.is_empty());
    assert_eq!(get(&headers, "Sec-WebSocket-Protocol"), None);
}

#[test]
fn firefox_connection_keep_alive_upgrade_is_accepted() {
    let buf = base_but("Connection", &["Connection: keep-alive, Upgrade"]);
    assert!(validate(&buf, &[]).is_ok());
}

#[test]
fn token_matching_is_case_insensitive() {
    let buf = base_but("Upgrade", &["Upgrade: WebSocket"]);
    assert!(validate(&buf, &[]).is_ok());
    let buf = base_but("Connection", &["connection: UPGRADE"]);
    assert!(validate(&buf, &[]).is_ok());
    let buf = base_but("Host", &["HOST: server.example.com"]);
    assert!(validate(&buf, &[]).is_ok());
}

#[test]
fn tokens_are_found_across_repeated_headers() {
    let buf = base_but("Connection", &["Connection: keep-alive", "Connection: upgrade"]);
    assert!(validate(&buf, &[]).is_ok());
}

#[test]
fn rfc_example_key_with_trailing_bits_is_accepted() {
    // RFC 6455 section 4.1 gives "AQIDBAUGBwgJCgsMDQ4PEC==" as a key.
    let buf = base_but("Sec-WebSocket-Key", &["Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC=="]);
    let up = validate(&buf, &[]).expect("accepted");
    assert_eq!(up.accept, accept_key(b"AQIDBAUGBwgJCgsMDQ4PEC=="));
}

#[test]
fn post_is_refused_with_405_and_allow() {
    let mut hs = BASE.to_vec();
    hs.push("Content-Length: 0");
    let r = refused(&request_with("POST", "HTTP/1.1", &hs));
    let headers = assert_refusal(&r, 405);
    assert_eq!(get(&headers, "Allow"), Some("GET"));
    assert_eq!(client_reads(&r.to_response()).0, 405);
}

#[test]
fn http_1_0_is_refused_with_400() {
    let r = refused(&request_with("GET", "HTTP/1.0", &BASE));
    assert_refusal(&r, 400);
    assert_eq!(r.reason, "HTTP/1.1 required");
}

#[test]
fn missing_or_duplicate_or_empty_host_is_400() {
    assert_refusal(&refused(&base_but("Host", &[])), 400);
    let dup = base_but("", &["Host: evil.example.com"]);
    assert_refusal(&refused(&dup), 400);
    let empty = base_but("Host", &["Host: "]);
    assert_refusal(&refused(&empty), 400);
}

#[test]
fn missing_or_wrong_upgrade_is_400_naming_the_header() {
    for buf in [
        base_but("Upgrade", &[]),
        base_but("Upgrade", &["Upgrade: h2c"]),
        base_but("Upgrade", &["Upgrade: websockets"]),
    ] {
        let r = refused(&buf);
        assert_refusal(&r, 400);
        assert!(r.reason.contains("Upgrade"), "{}", r.reason);
    }
}

#[test]
fn missing_connection_upgrade_is_400() {
    for buf in [
        base_but("Connection", &[]),
        base_but("Connection", &["Connection: keep-alive"]),
        base_but("Connection", &["Connection: upgrades"]),
    ] {
        let r = refused(&buf);
        assert_refusal(&r, 400);
        assert!(r.reason.contains("Connection"), "{}", r.reason);
    }
}

#[test]
fn wrong_version_is_426_with_version_13() {
    for buf in [
        base_but("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]),
        base_but("Sec-WebSocket-Version", &[]),
        base_but("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 13, 8"]),
        base_but("", &["Sec-WebSocket-Version: 13"]),
    ] {
        let r = refused(&buf);
        let headers = assert_refusal(&r, 426);
        assert_eq!(get(&headers, "Sec-WebSocket-Version"), Some("13"));
        assert_eq!(get(&headers, "Upgrade"), Some("websocket"));
    }
}

#[test]
fn bad_keys_are_400() {
    let cases: [&[&str]; 6] = [
        &[],
        &["Sec-WebSocket-Key: not base64 at all!!!!!!"],
        &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"],
        // base64 of 15 bytes
        &["Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0O"],
        // 24 characters but 17 bytes
        &["Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODxA="],
        &[
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==",
        ],
    ];
    for add in cases {
        let r = refused(&base_but("Sec-WebSocket-Key", add));
        assert_refusal(&r, 400);
        assert!(r.reason.contains("Sec-WebSocket-Key"), "{}", r.reason);
    }
}

#[test]
fn key_of_15_bytes_is_refused() {
    let key15 = base64::engine::general_purpose::STANDARD.encode([7u8; 15]);
    let line = format!("Sec-WebSocket-Key: {key15}");
    let r = refused(&base_but("Sec-WebSocket-Key", &[&line]));
    assert_refusal(&r, 400);
}

#[test]
fn refusal_order_follows_the_doc() {
    // POST with nothing else: method is checked first.
    let r = refused(&request_with("POST", "HTTP/1.0", &[]));
    assert_eq!(r.status, 405);
    // GET/1.1 with no headers: Host is next.
    let r = refused(&request_with("GET", "HTTP/1.1", &[]));
    assert_eq!(r.reason, "missing Host header");
    // Version before key.
    let buf =
        request_with("GET", "HTTP/1.1", &["Host: h", "Upgrade: websocket", "Connection: Upgrade"]);
    assert_eq!(refused(&buf).status, 426);
}

#[test]
fn head_over_8k_is_431() {
    let big = format!("X-Filler: {}", "a".repeat(9000));
    let buf = base_but("", &[&big]);
    let r = parse_request(&buf, &Limits::default()).expect_err("too large");
    assert_refusal(&r, 431);
    // Also while incomplete: 8 KiB of head with no end in sight.
    let partial = &buf[..8192];
    let r = parse_request(partial, &Limits::default()).expect_err("too large");
    assert_eq!(r, Reject::new(431, "request head too large"));
    // Just under the limit and incomplete: keep reading.
    assert_eq!(parse_request(&buf[..8191], &Limits::default()), Ok(None));
}

#[test]
fn head_ending_exactly_at_the_limit_is_accepted() {
    let buf = base_but("", &[]);
    let limits = Limits { max_request_bytes: buf.len(), ..Limits::default() };
    let req = parse_request(&buf, &limits).expect("ok").expect("complete");
    assert_eq!(req.head_len, buf.len());
    // One byte less of limit: refused.
    let limits = Limits { max_request_bytes: buf.len() - 1, ..Limits::default() };
    assert_eq!(parse_request(&buf, &limits).map_err(|r| r.status), Err(431));
}

#[test]
fn too_many_headers_is_431() {
    let extra: Vec<String> = (0..60).map(|i| format!("X-H{i}: v")).collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let buf = base_but("", &extra); // 65 headers
    let r = parse_request(&buf, &Limits::default()).expect_err("too many");
    assert_refusal(&r, 431);
    assert_eq!(r.reason, "too many headers");
    // Exactly 64 is fine.
    let buf = base_but("", &extra[..59]);
    assert_eq!(parse(&buf).headers.len(), 64);
    // A configured limit above the stack array is honoured.
    let limits = Limits { max_headers: 100, ..Limits::default() };
    let buf = base_but("", &extra);
    let req = parse_request(&buf, &limits).expect("ok").expect("complete");
    assert_eq!(req.headers.len(), 65);
    // And one below the default too.
    let limits = Limits { max_headers: 4, ..Limits::default() };
    let r = parse_request(&base_but("", &[]), &limits).expect_err("too many");
    assert_eq!(r.status, 431);
}

#[test]
fn garbage_is_400() {
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // TLS ClientHello
        b"GET /\0 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"hello world\r\n\r\n",
    ] {
        let r = parse_request(junk, &Limits::default()).expect_err("garbage");
        assert_refusal(&r, 400);
        assert_eq!(r.reason, "malformed HTTP request");
    }
}

#[test]
fn one_byte_at_a_time_is_incomplete_until_the_last() {
    let buf = CHROME.as_bytes();
    let whole = parse(buf);
    for end in 0..buf.len() {
        assert_eq!(parse_request(&buf[..end], &Limits::default()), Ok(None), "{end}");
    }
    assert_eq!(parse(buf), whole);
}

#[test]
fn pipelined_frame_bytes_stay_after_head_len() {
    // A masked text frame "Hello" (RFC 6455 section 5.7), sent right
    // behind the request.
    let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let mut buf = CHROME.as_bytes().to_vec();
    buf.extend_from_slice(&frame);
    let req = parse(&buf);
    assert_eq!(req.head_len, CHROME.len());
    assert_eq!(&buf[req.head_len..], &frame);
    assert!(validate_upgrade(&req, &[]).is_ok());
    // Frame bytes past the size limit do not matter once the head is in.
    let mut big = buf.clone();
    big.resize(20_000, 0x82);
    assert_eq!(parse(&big).head_len, CHROME.len());
}

#[test]
fn subprotocol_selection() {
    let offer = base_but("", &["Sec-WebSocket-Protocol: chat, superchat"]);
    let up = validate(&offer, &["superchat"]).expect("ok");
    assert_eq!(up.protocol.as_deref(), Some("superchat"));
    let (_, headers, _) = client_reads(&upgrade_response(&up));
    assert_eq!(get(&headers, "Sec-WebSocket-Protocol"), Some("superchat"));

    // The client's preference wins, not the server's list order.
    let up = validate(&offer, &["superchat", "chat"]).expect("ok");
    assert_eq!(up.protocol.as_deref(), Some("chat"));

    // Across several headers.
    let split =
        base_but("", &["Sec-WebSocket-Protocol: v1.mqtt", "Sec-WebSocket-Protocol: graphql-ws"]);
    let up = validate(&split, &["graphql-ws"]).expect("ok");
    assert_eq!(up.protocol.as_deref(), Some("graphql-ws"));

    // None matching: accepted, no header in the 101.
    let up = validate(&offer, &["mqtt"]).expect("ok");
    assert_eq!(up.protocol, None);
    let (status, headers, _) = client_reads(&upgrade_response(&up));
    assert_eq!(status, 101);
    assert_eq!(get(&headers, "Sec-WebSocket-Protocol"), None);

    // Exact match: no case folding, no prefix matching.
    let up = validate(&offer, &["Chat", "super"]).expect("ok");
    assert_eq!(up.protocol, None);
}

#[test]
fn write_upgrade_response_appends() {
    let up =
        Upgrade { accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(), protocol: Some("chat".into()) };
    let mut out = b"prefix".to_vec();
    write_upgrade_response(&up, &mut out);
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(&out[6..], upgrade_response(&up).as_slice());
    assert!(out.ends_with(b"Sec-WebSocket-Protocol: chat\r\n\r\n"));
}

#[test]
fn query_is_split_from_path() {
    let q = |target: &str| {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = parse(buf.as_bytes());
        (r.path, r.query)
    };
    assert_eq!(q("/chat"), ("/chat".into(), None));
    assert_eq!(q("/chat?"), ("/chat".into(), Some(String::new())));
    assert_eq!(
        q("/chat?token=a%20b&room=1?x"),
        ("/chat".into(), Some("token=a%20b&room=1?x".into()))
    );
}

#[test]
fn http_response_for_plain_routes() {
    let bytes = http_response(
        404,
        "text/plain",
        b"no such route\n",
        &[("Cache-Control", "no-store".to_string())],
    );
    let (status, headers, body) = client_reads(&bytes);
    assert_eq!(status, 404);
    assert_eq!(get(&headers, "Content-Type"), Some("text/plain"));
    assert_eq!(get(&headers, "Cache-Control"), Some("no-store"));
    assert_eq!(get(&headers, "Connection"), Some("close"));
    assert_eq!(body, b"no such route\n");

    // A CR/LF in a value cannot inject a header.
    let bytes = http_response(429, "", b"", &[("Retry-After", "1\r\nSet-Cookie: x=1".to_string())]);
    let (status, headers, _) = client_reads(&bytes);
    assert_eq!(status, 429);
    assert_eq!(get(&headers, "Set-Cookie"), None);
    assert_eq!(get(&headers, "Content-Type"), None);
}

#[test]
fn status_texts() {
    assert_eq!(status_text(101), "Switching Protocols");
    assert_eq!(status_text(404), "Not Found");
    assert_eq!(status_text(426), "Upgrade Required");
    assert_eq!(status_text(429), "Too Many Requests");
    assert_eq!(status_text(431), "Request Header Fields Too Large");
    assert_eq!(status_text(799), "Unknown");
}

#[test]
fn header_helpers() {
    let req = parse(b"GET / HTTP/1.1\r\nX-A: one\r\nx-a: two\r\nX-List: a ,\tB,, c \r\n\r\n");
    assert_eq!(req.header("x-a"), Some(&b"one"[..]));
    assert_eq!(req.header("x-missing"), None);
    assert!(req.header_has_token("x-list", "b"));
    assert!(req.header_has_token("x-list", "C"));
    assert!(!req.header_has_token("x-list", ""));
    assert!(!req.header_has_token("x-a", "on"));
    assert!(req.header_has_token("x-a", "two"));
    assert!(!req.is_upgrade());
}

proptest! {
    #[test]
    fn any_split_points_give_the_same_request(
        mut cuts in proptest::collection::vec(0usize..CHROME.len(), 0..8)
    ) {
        let buf = CHROME.as_bytes();
        let whole = parse(buf);
        cuts.sort_unstable();
        let mut received = Vec::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([buf.len()]) {
            received.extend_from_slice(&buf[at..cut.max(at)]);
            at = cut.max(at);
            let got = parse_request(&received, &Limits::default());
            if received.len() < buf.len() {
                prop_assert_eq!(got, Ok(None));
            } else {
                prop_assert_eq!(got, Ok(Some(whole.clone())));
            }
        }
    }

    #[test]
    fn trailing_bytes_never_move_head_len(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = CHROME.as_bytes().to_vec();
        buf.extend_from_slice(&tail);
        let req = parse(&buf);
        prop_assert_eq!(req.head_len, CHROME.len());
        prop_assert_eq!(&buf[req.head_len..], &tail[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let limits = Limits { max_request_bytes: 256, max_headers: 8 };
        if let Ok(Some(req)) = parse_request(&bytes, &limits) {
            prop_assert!(req.head_len <= bytes.len());
            let _ = validate_upgrade(&req, &["chat".to_string()]);
        }
    }

    #[test]
    fn arbitrary_header_values_never_panic_validation(
        values in proptest::collection::vec("[ -~]{0,40}", 6)
    ) {
        let names = [
            "Host", "Upgrade", "Connection", "Sec-WebSocket-Key",
            "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
        ];
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for (n, v) in names.iter().zip(&values) {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str("\r\n");
        if let Ok(Some(req)) = parse_request(s.as_bytes(), &Limits::default()) {
            match validate_upgrade(&req, &["chat".to_string()]) {
                Ok(up) => prop_assert_eq!(client_reads(&upgrade_response(&up)).0, 101),
                Err(r) => prop_assert_eq!(client_reads(&r.to_response()).0, r.status),
            }
        }
    }
}
