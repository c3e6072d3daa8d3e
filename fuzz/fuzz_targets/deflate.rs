//! `deflate`: the permessage-deflate parts a client controls: the
//! `Sec-WebSocket-Extensions` header and the compressed bytes.
//!
//! Input: byte 0 picks the mode and the split.
//! - even: the rest is one or two header values (split at the first `\n`):
//!   `parse` and `agree` must not panic; an agreement's response must parse
//!   back to one permessage-deflate extension with only RFC 7692 parameters
//!   and window bits in 8..=15, and `client_max_window_bits` only if offered.
//! - odd: the rest is a compressed message in up to 8 frames: inflating it
//!   must not panic, must stop at the cap (never holding more than cap + 1
//!   bytes), and an independent flate2 round trip (compress the rest, inflate
//!   through the codec) must give the rest back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsedge::deflate::{agree, parse, Deflater, InflateError, Inflater, Policy};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    if ctl & 1 == 0 {
        header(ctl, rest);
    } else {
        inflate(ctl, rest);
    }
});

fn header(ctl: u8, rest: &[u8]) {
    let values: Vec<&[u8]> = rest.splitn(2, |&b| b == b'\n').collect();
    let Ok(offers) = parse(&values) else { return };
    let policy = Policy {
        client_max_window_bits: 9 + (ctl >> 1) % 7,
        allow_context_takeover: ctl & 0x80 != 0,
    };
    let Some((agreed, bits)) = agree(&offers, policy) else { return };
    let response = agreed.response(bits);
    let back = parse(&[response.as_bytes()]).expect("our response parses");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].name, "permessage-deflate");
    for (name, value) in &back[0].params {
        match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => assert!(value.is_none()),
            "server_max_window_bits" | "client_max_window_bits" => {
                let v: u8 = value.as_deref().expect("a value").parse().expect("digits");
                assert!((8..=15).contains(&v), "{response}");
            }
            other => panic!("unexpected parameter {other} in {response}"),
        }
    }
    let offered_client_bits = offers
        .iter()
        .filter(|o| o.name == "permessage-deflate")
        .any(|o| o.params.iter().any(|(n, _)| n == "client_max_window_bits"));
    if response.contains("client_max_window_bits") {
        assert!(offered_client_bits, "{response}");
    }
    assert!(agreed.keeps_context() <= policy.allow_context_takeover);
}

fn inflate(ctl: u8, rest: &[u8]) {
    let cap = [0usize, 1, 100, 4096, 1 << 16][usize::from(ctl >> 1) % 5];
    let pieces = 1 + usize::from(ctl >> 4) % 8;
    let mut inf = Inflater::new(15);
    let mut out = Vec::new();
    let chunk = rest.len() / pieces + 1;
    let mut result = Ok(());
    let parts: Vec<&[u8]> = rest.chunks(chunk).collect();
    for (i, part) in parts.iter().enumerate() {
        result = inf.inflate(part, i + 1 == parts.len(), &mut out, cap);
        if result.is_err() {
            break;
        }
    }
    match result {
        Ok(()) => assert!(out.len() <= cap),
        Err(InflateError::TooBig) => assert!(out.capacity() <= cap + 1 + 16 * 1024),
        Err(InflateError::Corrupt) => {}
    }
    // Round trip: what the server's compressor writes, its inflater reads.
    let mut z = Vec::new();
    Deflater::new(u32::from(ctl >> 5), 9 + (ctl >> 1) % 7).compress(rest, &mut z);
    let mut back = Vec::new();
    Inflater::new(15).inflate(&z, true, &mut back, rest.len()).expect("round trip");
    assert_eq!(back, rest);
}
