use super::*;

fn offers(h: &str) -> Vec<negotiate::Offer> {
    parse(&[h.as_bytes()]).expect("valid syntax")
}

const POLICY: Policy = Policy { client_max_window_bits: 12, allow_context_takeover: true };

fn agree_str(h: &str, policy: Policy) -> Option<String> {
    agree(&offers(h), policy).map(|(a, bits)| a.response(bits))
}

#[test]
fn chromium_offer_is_agreed_with_a_bounded_client_window() {
    // What Chromium sends on every WebSocket.
    let got = agree_str("permessage-deflate; client_max_window_bits", POLICY);
    assert_eq!(
        got.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=12")
    );
}

#[test]
fn firefox_and_python_offers() {
    assert_eq!(
        agree_str("permessage-deflate", POLICY).as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    assert_eq!(
        agree_str(
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
            POLICY
        )
        .as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10")
    );
}

#[test]
fn without_budget_for_a_context_only_no_takeover_offers_are_taken() {
    let tight = Policy { allow_context_takeover: false, ..POLICY };
    assert_eq!(agree_str("permessage-deflate; client_max_window_bits", tight), None);
    // The second offer is acceptable: the first declined, the next tried.
    let got = agree_str(
        "permessage-deflate; client_max_window_bits, permessage-deflate; client_no_context_takeover",
        tight,
    );
    assert_eq!(
        got.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

#[test]
fn bad_offers_are_declined_and_the_next_one_is_tried() {
    for bad in [
        "permessage-deflate; server_max_window_bits", // value required
        "permessage-deflate; server_max_window_bits=16", // out of range
        "permessage-deflate; server_max_window_bits=7", // out of range
        "permessage-deflate; server_max_window_bits=010", // leading zero
        "permessage-deflate; client_max_window_bits=8", // below what zlib reads
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; mystery",
    ] {
        assert_eq!(agree_str(bad, POLICY), None, "{bad}");
        let with_fallback = format!("{bad}, permessage-deflate");
        assert_eq!(
            agree_str(&with_fallback, POLICY).as_deref(),
            Some("permessage-deflate; server_no_context_takeover"),
            "{with_fallback}"
        );
    }
}

#[test]
fn server_window_and_quoted_values() {
    let got = agree_str("permessage-deflate; server_max_window_bits=\"10\"", POLICY);
    assert_eq!(
        got.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
    );
}

#[test]
fn other_extensions_are_ignored_and_several_header_lines_join() {
    let all =
        parse(&[b"x-webkit-deflate-frame".as_slice(), b"foo; a=1, permessage-deflate"]).unwrap();
    assert_eq!(all.len(), 3);
    let (a, _) = agree(&all, POLICY).expect("agreed");
    assert!(a.keeps_context());
}

#[test]
fn syntax_errors_are_refused() {
    for bad in ["permessage-deflate;", "; x", "a b", "a; b=\"c d\"", "a; b=", "a;;b", "a; b=\"\""] {
        assert!(parse(&[bad.as_bytes()]).is_err(), "{bad}");
    }
    assert!(parse(&[b"a, , b".as_slice()]).is_ok(), "empty elements are allowed");
}

#[test]
fn rfc_7692_hello_inflates() {
    // RFC 7692 section 7.2.3.1: "Hello" compressed, tail removed.
    let mut inf = Inflater::new(15);
    let mut out = Vec::new();
    inf.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut out, 1024).unwrap();
    assert_eq!(out, b"Hello");
    // Fragmented (7.2.3.1, second example): the same in two frames.
    let mut out = Vec::new();
    inf.reset();
    inf.inflate(&[0xf2, 0x48, 0xcd], false, &mut out, 1024).unwrap();
    inf.inflate(&[0xc9, 0xc9, 0x07, 0x00], true, &mut out, 1024).unwrap();
    assert_eq!(out, b"Hello");
}

#[test]
fn context_takeover_reuses_the_window() {
    // RFC 7692 7.2.3.2: the second "Hello" refers back into the first.
    let mut inf = Inflater::new(15);
    let mut out = Vec::new();
    inf.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut out, 1024).unwrap();
    out.clear();
    inf.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 1024).unwrap();
    assert_eq!(out, b"Hello");
}

#[test]
fn round_trip_through_the_deflater() {
    let mut def = Deflater::new(1, 15);
    let mut inf = Inflater::new(15);
    let msg: Vec<u8> = br#"{"type":"message","room":"chat:lobby","data":{"text":"hi"}}"#.repeat(40);
    let mut z = Vec::new();
    def.compress(&msg, &mut z);
    assert!(z.len() < msg.len() / 5, "{} -> {}", msg.len(), z.len());
    let mut out = Vec::new();
    inf.inflate(&z, true, &mut out, msg.len()).unwrap();
    assert_eq!(out, msg);
    // The deflater reset: the same message compresses to the same bytes,
    // readable by a fresh inflater (no context carried over).
    let mut z2 = Vec::new();
    def.compress(&msg, &mut z2);
    assert_eq!(z, z2);
    let mut out = Vec::new();
    Inflater::new(15).inflate(&z2, true, &mut out, msg.len()).unwrap();
    assert_eq!(out, msg);
    // An empty message.
    let mut z = Vec::new();
    def.compress(b"", &mut z);
    let mut out = Vec::new();
    Inflater::new(15).inflate(&z, true, &mut out, 0).unwrap();
    assert!(out.is_empty());
}

#[test]
fn a_bomb_stops_at_the_cap_without_allocating_it() {
    let zeros = vec![0u8; 50 << 20];
    let mut z = Vec::new();
    Deflater::new(9, 15).compress(&zeros, &mut z);
    assert!(z.len() < 100 << 10, "50 MiB of zeros compress to {} bytes", z.len());
    let mut out = Vec::new();
    let cap = 1 << 20;
    let err = Inflater::new(15).inflate(&z, true, &mut out, cap).unwrap_err();
    assert_eq!(err, InflateError::TooBig);
    assert!(out.capacity() <= cap + 1, "held {} bytes for a {cap} cap", out.capacity());
    // Exactly at the cap is fine.
    let mut z = Vec::new();
    Deflater::new(1, 15).compress(&zeros[..cap], &mut z);
    let mut out = Vec::new();
    Inflater::new(15).inflate(&z, true, &mut out, cap).unwrap();
    assert_eq!(out.len(), cap);
}

#[test]
fn garbage_is_corrupt_not_a_panic() {
    let mut out = Vec::new();
    let err = Inflater::new(15).inflate(&[0xff; 64], true, &mut out, 1 << 20).unwrap_err();
    assert_eq!(err, InflateError::Corrupt);
}

#[test]
fn compressed_frames_carry_rsv1() {
    let f = compressed_frame(true, &[1, 2, 3]);
    assert_eq!(&f[..], &[0xC1, 3, 1, 2, 3]);
    let f = compressed_frame(false, &[0; 300]);
    assert_eq!(&f[..4], &[0xC2, 126, 1, 44]);
}
