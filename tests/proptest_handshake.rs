//! Property test: the handshake parser gives the same answer however the
//! request is split across reads. Requests are built from realistic parts
//! (valid upgrades, every refusal case, odd whitespace and case, pipelined
//! frame bytes after the head, heads over the size or header-count limit)
//! plus raw bytes; each is fed as cumulative prefixes at arbitrary cut
//! points, the way the connection accumulates reads.

use proptest::prelude::*;
use wsedge::handshake::{parse_request, validate_upgrade, Limits, Reject, Request};

/// One header line (without CRLF).
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Host: edge.example.com".to_string()),
        Just("Host:".to_string()),
        Just("Upgrade: websocket".to_string()),
        Just("upgrade:  WebSocket ".to_string()),
        Just("Upgrade: h2c".to_string()),
        Just("Connection: Upgrade".to_string()),
        Just("Connection: keep-alive, Upgrade".to_string()),
        Just("connection: close".to_string()),
        Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_string()),
        Just("Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==".to_string()),
        Just("Sec-WebSocket-Key: short".to_string()),
        Just("Sec-WebSocket-Version: 13".to_string()),
        Just("Sec-WebSocket-Version: 8".to_string()),
        Just("Sec-WebSocket-Protocol: chat, superchat".to_string()),
        Just("Origin: https://app.example.com".to_string()),
        Just("Bad Header Line".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,30}".prop_map(|s| s),
        (1usize..3000).prop_map(|n| format!("X-Filler: {}", "a".repeat(n))),
    ]
}

const VALID: [&str; 5] = [
    "Host: edge.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// A whole request: request line, headers, blank line, maybe a tail.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        4 => Just("GET"),
        1 => Just("POST"),
        1 => Just("get"),
    ];
    let version = prop_oneof![4 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0"), 1 => Just("HTTP/2.0")];
    let target = prop_oneof![Just("/echo"), Just("/chat?room=1"), Just("*"), Just("/a b")];
    let newline = prop_oneof![4 => Just("\r\n"), 1 => Just("\n")];
    (
        method,
        target,
        version,
        prop_oneof![
            // The five headers an upgrade needs, shuffled, plus others.
            (
                Just(VALID.map(String::from).to_vec()).prop_shuffle(),
                prop::collection::vec(header(), 0..4),
            )
                .prop_map(|(mut a, b)| {
                    a.extend(b);
                    a
                }),
            prop::collection::vec(header(), 0..12),
        ],
        newline,
        prop::collection::vec(any::<u8>(), 0..32),
        any::<bool>(),
    )
        .prop_map(|(m, t, v, hs, nl, tail, complete)| {
            let mut s = format!("{m} {t} {v}{nl}");
            for h in hs {
                s.push_str(&h);
                s.push_str(nl);
            }
            if complete {
                s.push_str(nl);
            }
            let mut bytes = s.into_bytes();
            bytes.extend_from_slice(&tail);
            bytes
        })
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        3 => Just(Limits::default()),
        1 => (64usize..1024, 1usize..12).prop_map(|(b, h)| Limits {
            max_request_bytes: b,
            max_headers: h,
        }),
    ]
}

type Answer = Result<Option<Request>, Reject>;

/// Feeds `buf` in cumulative prefixes ending at `cuts` (then the whole);
/// returns the first answer that is not "need more bytes".
fn incremental(buf: &[u8], mut cuts: Vec<usize>, limits: &Limits) -> (Answer, Vec<Answer>) {
    cuts.retain(|&c| c < buf.len());
    cuts.sort_unstable();
    cuts.push(buf.len());
    let mut first = Ok(None);
    let mut after = Vec::new();
    for end in cuts {
        let got = parse_request(&buf[..end], limits);
        if first == Ok(None) {
            first = got;
        } else {
            after.push(got);
        }
    }
    (first, after)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn same_answer_however_the_request_is_split(
        buf in request(),
        cuts in prop::collection::vec(0usize..4096, 0..12),
        limits in limits(),
        one_byte_reads in any::<bool>(),
    ) {
        let whole = parse_request(&buf, &limits);
        let cuts = if one_byte_reads && buf.len() <= 512 {
            (1..buf.len()).collect()
        } else {
            cuts.into_iter().map(|c| c % (buf.len() + 1)).collect()
        };
        let (first, after) = incremental(&buf, cuts, &limits);
        prop_assert_eq!(&first, &whole);
        // Once answered, more bytes never change the answer.
        for a in after {
            prop_assert_eq!(&a, &whole);
        }
        if let Ok(Some(req)) = &whole {
            prop_assert!(req.head_len <= buf.len());
            prop_assert!(req.head_len <= limits.max_request_bytes);
            // Validation sees the same request either way.
            let supported = ["chat".to_string()];
            let v = validate_upgrade(req, &supported);
            if let Ok(Some(again)) = &first {
                prop_assert_eq!(validate_upgrade(again, &supported), v);
            }
        }
    }

    #[test]
    fn raw_bytes_split_anywhere_agree_too(
        buf in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(0usize..600, 0..16),
        limits in limits(),
    ) {
        let whole = parse_request(&buf, &limits);
        let (first, after) = incremental(&buf, cuts, &limits);
        prop_assert_eq!(&first, &whole);
        for a in after {
            prop_assert_eq!(&a, &whole);
        }
    }
}
