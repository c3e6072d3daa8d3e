//! The client side of the wire: the opening handshake key, masked frames out,
//! server frame heads in, the hex / little-endian timestamps payloads carry,
//! and the random numbers behind keys and masks. Pure functions over bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// RFC 6455 section 1.3: the GUID appended to the key for `Sec-WebSocket-Accept`.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest server frame (and reassembled message) accepted, bytes.
pub const MAX_FRAME: usize = 64 << 20;

/// RFC 6455 opcodes.
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// xorshift64* seeded from the clock, the pid and a salt.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the clock, the pid and `salt`.
    pub fn seeded(salt: u64) -> Rng {
        let t =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let pid = u64::from(std::process::id());
        // splitmix64 of the mixed inputs, so nearby seeds diverge at once.
        let mut z = t ^ pid.rotate_left(32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    #[inline]
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The first 8 bytes of `b`; callers have checked that there are 8.
#[inline]
fn first8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// The first 8 bytes of `b` as a little-endian `u64` (binary timestamps).
#[inline]
pub fn load_u64_le(b: &[u8]) -> u64 {
    u64::from_le_bytes(first8(b))
}

/// XOR `buf` with the 4-byte mask, 8 bytes at a time.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(first8(c)) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Byte -> its two lowercase hex digits.
const HEX2: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// ASCII -> hex digit value, 0xff for anything but [0-9a-f].
const UNHEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Write `v` as 16 lowercase hex digits into `out[..16]`.
#[inline]
pub fn hex16(v: u64, out: &mut [u8]) {
    for (pair, b) in out[..16].chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair.copy_from_slice(&HEX2[usize::from(b)]);
    }
}

#[inline]
/// 16 lowercase hex digits back to their value; `None` if not that.
pub fn unhex16(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut bad = 0u8;
    for &c in b.get(..16)? {
        let d = UNHEX[usize::from(c)];
        bad |= d;
        v = (v << 4) | u64::from(d & 0x0f);
    }
    if bad & 0xf0 != 0 {
        return None;
    }
    Some(v)
}

/// Append a client frame header (FIN set, MASK set) with its mask key.
#[inline]
pub fn push_header(w: &mut Vec<u8>, op: u8, len: usize, mask: [u8; 4]) {
    let mut h = [0u8; 14];
    h[0] = 0x80 | op;
    let n = if len < 126 {
        h[1] = 0x80 | len as u8;
        2
    } else if len <= 0xffff {
        h[1] = 0x80 | 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 0x80 | 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    h[n..n + 4].copy_from_slice(&mask);
    w.extend_from_slice(&h[..n + 4]);
}

/// Append a masked frame carrying `payload`.
pub fn push_frame(w: &mut Vec<u8>, op: u8, payload: &[u8], mask: u32) {
    let mask = mask.to_ne_bytes();
    push_header(w, op, payload.len(), mask);
    let p0 = w.len();
    w.extend_from_slice(payload);
    apply_mask(&mut w[p0..], mask);
}

/// Append a masked data frame: `template` with the timestamp written in front.
#[inline]
pub fn push_msg(w: &mut Vec<u8>, op: u8, template: &[u8], ts: u64, mask: u32) {
    let mask = mask.to_ne_bytes();
    push_header(w, op, template.len(), mask);
    let p0 = w.len();
    w.extend_from_slice(template);
    if op == OP_TEXT {
        hex16(ts, &mut w[p0..p0 + 16]);
    } else {
        w[p0..p0 + 8].copy_from_slice(&ts.to_le_bytes());
    }
    apply_mask(&mut w[p0..], mask);
}

/// Append a masked close frame, with `code` or empty.
pub fn push_close(w: &mut Vec<u8>, code: Option<u16>, mask: u32) {
    match code {
        Some(c) => push_frame(w, OP_CLOSE, &c.to_be_bytes(), mask),
        None => push_frame(w, OP_CLOSE, &[], mask),
    }
}

/// What [`parse_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameHead {
    /// Need at least this many bytes (counted from the frame start).
    Need(usize),
    Ok {
        fin: bool,
        op: u8,
        hlen: usize,
        plen: usize,
    },
    Bad(&'static str),
}

/// Parse the head of a server (unmasked) frame.
pub fn parse_frame(b: &[u8]) -> FrameHead {
    if b.len() < 2 {
        return FrameHead::Need(2);
    }
    let b0 = b[0];
    let b1 = b[1];
    if b0 & 0x70 != 0 {
        return FrameHead::Bad("reserved bits set (no extension was negotiated)");
    }
    if b1 & 0x80 != 0 {
        return FrameHead::Bad("server frame is masked");
    }
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0f;
    let (hlen, plen) = match b1 & 0x7f {
        126 => {
            if b.len() < 4 {
                return FrameHead::Need(4);
            }
            (4, usize::from(u16::from_be_bytes([b[2], b[3]])))
        }
        127 => {
            if b.len() < 10 {
                return FrameHead::Need(10);
            }
            let l = u64::from_be_bytes(first8(&b[2..]));
            if l > MAX_FRAME as u64 {
                return FrameHead::Bad("frame larger than 64 MiB");
            }
            (10, l as usize)
        }
        n => (2, usize::from(n)),
    };
    match op {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return FrameHead::Bad("fragmented control frame");
            }
            if plen > 125 {
                return FrameHead::Bad("control frame payload over 125 bytes");
            }
        }
        _ => return FrameHead::Bad("unknown opcode"),
    }
    if b.len() < hlen + plen {
        return FrameHead::Need(hlen + plen);
    }
    FrameHead::Ok { fin, op, hlen, plen }
}

/// A fresh `Sec-WebSocket-Key` and the `Sec-WebSocket-Accept` it calls for.
pub fn ws_key(rng: &mut Rng) -> ([u8; 24], [u8; 28]) {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&rng.next().to_ne_bytes());
    raw[8..].copy_from_slice(&rng.next().to_ne_bytes());
    let mut key = [0u8; 24];
    let n = base64::engine::general_purpose::STANDARD.encode_slice(raw, &mut key).unwrap_or(0);
    debug_assert_eq!(n, 24);
    (key, accept_for(&key))
}

/// RFC 6455 section 4.2.2: base64(SHA-1(key + GUID)).
pub fn accept_for(key: &[u8]) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID);
    let digest = h.finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut out).unwrap_or(0);
    debug_assert_eq!(n, 28);
    out
}

/// The first line of `b` (at most `max` bytes), for error messages.
pub fn first_line_lossy(b: &[u8], max: usize) -> String {
    let end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let line = &b[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut s = String::from_utf8_lossy(&line[..line.len().min(max)]).into_owned();
    if line.len() > max {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        let a = accept_for(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&a, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn mask_roundtrip_all_lengths() {
        let mut rng = Rng::seeded(7);
        for len in 0..40 {
            let orig: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let mut b = orig.clone();
            let m = (rng.next() as u32).to_ne_bytes();
            apply_mask(&mut b, m);
            for (i, (x, y)) in b.iter().zip(&orig).enumerate() {
                assert_eq!(*x, y ^ m[i % 4]);
            }
            apply_mask(&mut b, m);
            assert_eq!(b, orig);
        }
    }

    #[test]
    fn hex_roundtrip() {
        for v in [0u64, 1, 0xdead_beef, u64::MAX, 1_234_567_890_123] {
            let mut b = [0u8; 16];
            hex16(v, &mut b);
            assert_eq!(unhex16(&b), Some(v));
        }
        assert_eq!(unhex16(b"xyz"), None);
        assert_eq!(unhex16(b"000000000000000G"), None);
    }

    #[test]
    fn frame_building_and_parsing() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            let mut w = Vec::new();
            push_frame(&mut w, OP_BINARY, &payload, 0x0102_0304);
            // Unmask to look like a server frame.
            let mask_at = w.len() - len - 4;
            let mut m = [0u8; 4];
            m.copy_from_slice(&w[mask_at..mask_at + 4]);
            let mut server = w[..mask_at].to_vec();
            server[1] &= 0x7f;
            let mut p = w[mask_at + 4..].to_vec();
            apply_mask(&mut p, m);
            assert_eq!(p, payload);
            server.extend_from_slice(&p);
            match parse_frame(&server) {
                FrameHead::Ok { fin, op, hlen, plen } => {
                    assert!(fin);
                    assert_eq!(op, OP_BINARY);
                    assert_eq!(plen, len);
                    assert_eq!(hlen + plen, server.len());
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(
                matches!(parse_frame(&server[..server.len() - 1]), FrameHead::Need(_)) || len == 0
            );
        }
        assert_eq!(parse_frame(&[0x81]), FrameHead::Need(2));
        assert!(matches!(parse_frame(&[0x81, 0x85]), FrameHead::Bad(_)));
        assert!(matches!(parse_frame(&[0x09, 0x00]), FrameHead::Bad(_)));
        assert!(matches!(parse_frame(&[0x83, 0x00]), FrameHead::Bad(_)));
        assert!(matches!(parse_frame(&[0xC1, 0x00]), FrameHead::Bad(_)));
    }

    #[test]
    fn text_message_is_valid_utf8_with_timestamp() {
        let template = vec![b'x'; 20];
        let mut w = Vec::new();
        push_msg(&mut w, OP_TEXT, &template, 0xabc, 0);
        let p = &w[w.len() - 20..];
        assert!(std::str::from_utf8(p).is_ok());
        assert_eq!(unhex16(p), Some(0xabc));
    }
}
