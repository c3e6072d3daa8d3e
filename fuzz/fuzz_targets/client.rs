//! `client`: arbitrary server bytes against the client's side of the wire:
//! `wsedge::client::handshake::parse_response` and a `ClientConn` (101 check,
//! then tungstenite frames in the client role), fed in arbitrary pieces on
//! a fake clock.
//!
//! Input: byte 0 is the control byte: bit 7 puts a valid 101 for the key
//! in front of the rest (so the fuzzer reaches frame parsing at once), bits
//! 0-2 choose the largest piece, bits 3-4 when the client sends a message
//! or starts closing, bit 5 an EOF at the end (else the timers run out);
//! the rest is what the server sends.
//!
//! Checks: no panic; `parse_response` gives the same first answer however
//! the bytes are split, and `head_len` lies within them; the connection
//! reports `Open` at most once and before any message, nothing after
//! `Closed`, and `Closed` exactly once by the end; everything the client
//! writes after its request is whole, masked frames (RFC 6455 section 5.3)
//! with valid opcodes, nothing after a close frame; a close frame it sends
//! carries a code a client may send.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wsedge::client::conn::{ClientConn, ConnEvent, ConnSettings};
use wsedge::client::handshake::parse_response;
use wsedge::client::WsUrl;
use wsedge::handshake::accept_key;
use wsedge_fuzz::Rng;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const PIECES: [u64; 8] = [1, 2, 3, 7, 16, 64, 512, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if ctl & 0x80 != 0 {
        input.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(KEY.as_bytes())
            )
            .as_bytes(),
        );
    }
    input.extend_from_slice(rest);
    let mut rng = Rng::new(u64::from(ctl));
    let max_piece = PIECES[usize::from(ctl & 7)];
    let min_piece = input.len() / 256;

    // 1. The response parser alone: every prefix agrees with the whole.
    let whole = parse_response(&input, KEY, false);
    if let Ok(Some(a)) = &whole {
        assert!(a.head_len <= input.len());
    }
    let mut end = 0;
    let mut first = None;
    while end < input.len() && first.is_none() {
        end = (end + (1 + rng.below(max_piece) as usize).max(min_piece)).min(input.len());
        match parse_response(&input[..end], KEY, false) {
            Ok(None) => {}
            answer => first = Some(answer),
        }
    }
    // A refusal may wait for its body; everything else is final at once.
    if let Some(Ok(Some(a))) = &first {
        assert_eq!(&whole, &Ok(Some(a.clone())), "split vs whole");
    }

    // 2. The connection.
    let t0 = Instant::now();
    let settings = ConnSettings {
        handshake_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(10),
        liveness_margin: Duration::from_secs(5),
        close_timeout: Duration::from_secs(1),
        max_message_bytes: 1 << 16,
    };
    let url = WsUrl::parse("ws://edge.example.com/ws").expect("valid URL");
    let mut c = ClientConn::new(&url, KEY.to_owned(), &[], settings, t0);
    let request_len = c.pending_output().len();
    c.consume_output(request_len);
    let mut wire = Wire::default();
    let mut state = Seen::default();
    let mut now = t0;
    let mut pos = 0;
    while pos < input.len() {
        let n = (1 + rng.below(max_piece) as usize).max(min_piece).min(input.len() - pos);
        now += Duration::from_millis(rng.below(3000));
        c.handle_timeout(now);
        state.drain(&mut c);
        c.handle_input(&input[pos..pos + n], now);
        pos += n;
        state.drain(&mut c);
        match (ctl >> 3) & 3 {
            1 if rng.below(4) == 0 => {
                let _ = c.send_text("from the client");
            }
            2 if rng.below(8) == 0 => c.close(4000, "done", now),
            _ => {}
        }
        state.drain(&mut c);
        wire.check(&mut c);
    }
    if ctl & 0x20 != 0 {
        c.handle_eof(now);
    } else {
        // Every deadline passes: handshake, liveness, close.
        for _ in 0..3 {
            now += Duration::from_secs(60);
            c.handle_timeout(now);
        }
        c.handle_eof(now);
    }
    state.drain(&mut c);
    wire.check(&mut c);
    assert!(state.closed, "the connection ends by EOF at the latest");
    assert!(c.is_closed());
});

#[derive(Default)]
struct Seen {
    open: bool,
    closed: bool,
}

impl Seen {
    fn drain(&mut self, c: &mut ClientConn) {
        while let Some(ev) = c.poll_event() {
            assert!(!self.closed, "event after Closed: {ev:?}");
            match ev {
                ConnEvent::Open => {
                    assert!(!self.open, "Open twice");
                    self.open = true;
                }
                ConnEvent::Message(_) => assert!(self.open, "message before Open"),
                ConnEvent::Closed(_) => self.closed = true,
            }
        }
    }
}

/// What the client wrote after its request, checked as a server reads it.
#[derive(Default)]
struct Wire {
    buf: Vec<u8>,
    closed: bool,
}

impl Wire {
    fn check(&mut self, c: &mut ClientConn) {
        let out = c.pending_output().to_vec();
        c.consume_output(out.len());
        self.buf.extend_from_slice(&out);
        loop {
            if self.buf.len() < 2 {
                return;
            }
            let (b0, b1) = (self.buf[0], self.buf[1]);
            assert_eq!(b0 & 0x70, 0, "RSV bits set");
            assert_ne!(b1 & 0x80, 0, "client frames are masked");
            let (hlen, len) = match b1 & 0x7f {
                126 if self.buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]))),
                127 if self.buf.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    (10, usize::try_from(u64::from_be_bytes(b)).expect("length fits"))
                }
                126 | 127 => return,
                n => (2, usize::from(n)),
            };
            if self.buf.len() < hlen + 4 + len {
                return;
            }
            assert!(!self.closed, "a frame after the close frame");
            let opcode = b0 & 0x0f;
            assert!(matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10), "opcode {opcode}");
            if opcode == 8 {
                self.closed = true;
                let mask = [self.buf[hlen], self.buf[hlen + 1], self.buf[hlen + 2], self.buf[hlen + 3]];
                let payload: Vec<u8> =
                    self.buf[hlen + 4..hlen + 4 + len].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
                if payload.len() >= 2 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    assert!(
                        matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999),
                        "close code {code}"
                    );
                }
            }
            self.buf.drain(..hlen + 4 + len);
        }
    }
}
