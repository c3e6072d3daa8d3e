//! Property test of reassembly through the sans-IO connection: any message
//! (text or binary, 0 to 100 KiB), cut into a first frame and continuation
//! frames at any points (empty fragments and cuts inside a UTF-8 character
//! included), with pings of any payload between the fragments, masked with
//! any keys and read in any chunking, is echoed exactly once, unchanged, and
//! every ping is answered with a pong carrying its payload, in order. After
//! the message the connection holds no buffers.

mod common;

use bytes::Bytes;
use common::frame_into;
use proptest::prelude::*;
use wsedge::conn::{Conn, Host, Phase, Settings};
use wsedge::Config;

const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A connection and what its worker would hand it.
struct Harness {
    host: Host,
    conn: Conn,
}

impl Harness {
    fn open() -> Harness {
        let host = Host::new(Settings::from_config(&Config::default(), 100));
        let conn = Conn::new(0, &host.settings);
        let mut h = Harness { host, conn };
        let out = h.input(REQUEST);
        assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        assert_eq!(h.conn.phase(), Phase::Open);
        h
    }

    /// One read; returns everything the connection sent in response.
    fn input(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.conn.handle_input(bytes, &mut self.host.env());
        self.host.take_output()
    }
}

/// xorshift64*, to make large payloads cheaply from one seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `len` bytes: random, or (text) random characters of 1 to 4 bytes.
fn payload(text: bool, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    if !text {
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    const CHARS: [char; 10] = ['a', 'z', ' ', '~', 'é', 'ß', '€', '\u{ffff}', '𝄞', '😀'];
    let mut s = String::with_capacity(len + 4);
    while s.len() < len {
        s.push(CHARS[(rng.next() % CHARS.len() as u64) as usize]);
    }
    s.into_bytes()
}

/// Parses unmasked server frames into (opcode, payload); every one final.
fn server_frames(mut wire: &[u8]) -> Vec<(u8, Bytes)> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        assert!(wire.len() >= 2 && wire[0] & 0xf0 == 0x80 && wire[1] & 0x80 == 0);
        let (hdr, len) = match wire[1] & 0x7f {
            126 => (4, u16::from_be_bytes([wire[2], wire[3]]) as usize),
            127 => (10, u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize),
            n => (2, n as usize),
        };
        assert!(wire.len() >= hdr + len, "a frame cut short");
        frames.push((wire[0] & 0x0f, Bytes::copy_from_slice(&wire[hdr..hdr + len])));
        wire = &wire[hdr + len..];
    }
    frames
}

#[derive(Debug, Clone)]
struct Case {
    text: bool,
    len: usize,
    seed: u64,
    /// Fragment boundaries (any order, repeats give empty fragments).
    cuts: Vec<usize>,
    /// Pings before fragment i (index modulo fragments + 1; the last slot is
    /// after the message).
    pings: Vec<(usize, Vec<u8>)>,
    /// Read sizes, cycled.
    reads: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        prop_oneof![3 => 0usize..200, 2 => 0usize..8192, 1 => 0usize..=100 * 1024],
        any::<u64>(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        prop::collection::vec((any::<usize>(), prop::collection::vec(any::<u8>(), 0..=125)), 0..6),
        prop::collection::vec(prop_oneof![1usize..8, 1usize..600, 1usize..70_000], 1..6),
    )
        .prop_map(|(text, len, seed, cuts, pings, reads)| Case {
            text,
            len,
            seed,
            cuts: cuts.iter().map(|i| i.index(len + 1)).collect(),
            pings,
            reads,
        })
}

fn run(c: Case) -> Result<(), TestCaseError> {
    let message = payload(c.text, c.len, c.seed);
    let mut cuts = c.cuts.clone();
    cuts.sort_unstable();
    let mut bounds = vec![0];
    bounds.extend(cuts);
    bounds.push(message.len());
    let fragments: Vec<&[u8]> = bounds.windows(2).map(|w| &message[w[0]..w[1]]).collect();

    // Pings go before fragment `slot` (slot == fragments.len(): after all).
    let mut pings_at: Vec<Vec<&[u8]>> = vec![Vec::new(); fragments.len() + 1];
    for (slot, p) in &c.pings {
        pings_at[slot % (fragments.len() + 1)].push(p);
    }

    let mut rng = Rng(c.seed.rotate_left(17) | 1);
    let mut mask = || (rng.next() as u32).to_be_bytes();
    let mut stream = Vec::new();
    let mut expected: Vec<(u8, Bytes)> = Vec::new();
    let opcode = if c.text { 1 } else { 2 };
    for (i, fragment) in fragments.iter().enumerate() {
        for p in &pings_at[i] {
            frame_into(&mut stream, true, 9, p, mask());
            expected.push((10, Bytes::copy_from_slice(p)));
        }
        let last = i + 1 == fragments.len();
        frame_into(&mut stream, last, if i == 0 { opcode } else { 0 }, fragment, mask());
    }
    expected.push((opcode, Bytes::from(message.clone())));
    for p in &pings_at[fragments.len()] {
        frame_into(&mut stream, true, 9, p, mask());
        expected.push((10, Bytes::copy_from_slice(p)));
    }

    let mut h = Harness::open();
    let mut out = Vec::new();
    let mut pos = 0;
    for &n in c.reads.iter().cycle() {
        if pos == stream.len() {
            break;
        }
        let n = n.min(stream.len() - pos);
        out.extend(h.input(&stream[pos..pos + n]));
        pos += n;
    }
    let got = server_frames(&out);
    prop_assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        prop_assert_eq!(g.0, e.0, "frame {} opcode", i);
        prop_assert!(
            g.1 == e.1,
            "frame {} payload differs ({} vs {} bytes)",
            i,
            g.1.len(),
            e.1.len()
        );
    }
    prop_assert_eq!(h.conn.phase(), Phase::Open);
    prop_assert_eq!(h.host.stats.msgs_in, 1);
    prop_assert_eq!(h.host.stats.msgs_out, 1);
    prop_assert_eq!(h.conn.retained_bytes(), 0, "idle after the message");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_fragmentation_with_pings_is_echoed_exactly_once(c in case()) {
        run(c)?;
    }
}
