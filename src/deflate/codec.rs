//! The DEFLATE side of permessage-deflate (RFC 7692 section 7.2), on
//! `flate2` (pure-Rust zlib-rs backend): raw deflate streams, the 4-byte
//! `00 00 ff ff` tail removed after a sync flush and put back before
//! inflating, a cap on inflated size that stops a decompression bomb before
//! it is allocated, and frames with RSV1 set. Pure: bytes in, bytes out.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What ends every sync-flushed message, removed on the wire (7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output grows by at most this much per step, so a bomb's cap is met
/// after a bounded allocation.
const STEP: usize = 16 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// Inflated, it would exceed the message size limit (close 1009).
    TooBig,
    /// Not a valid DEFLATE stream (close 1007: invalid payload data).
    Corrupt,
}

/// A raw-deflate decompressor for the messages of one client (context
/// takeover) or for every client of a worker that agreed
/// `client_no_context_takeover` (reset after each message).
pub struct Inflater {
    d: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("total_in", &self.d.total_in()).finish()
    }
}

impl Inflater {
    /// For messages compressed with a window of at most 2^`window_bits`
    /// (9..=15).
    pub fn new(window_bits: u8) -> Inflater {
        Inflater { d: Decompress::new_with_window_bits(false, window_bits.clamp(9, 15)) }
    }

    /// Inflates `input` (one frame's payload of a compressed message) onto
    /// `out`; `last` for the message's final frame. Fails once `out` would
    /// pass `cap` bytes; never holds more than `cap` + one step.
    pub fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        cap: usize,
    ) -> Result<(), InflateError> {
        self.feed(input, out, cap)?;
        if last {
            self.feed(&TAIL, out, cap)?;
        }
        Ok(())
    }

    /// Forgets the window (after a message, when the client resets its own).
    pub fn reset(&mut self) {
        self.d.reset(false);
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        cap: usize,
    ) -> Result<(), InflateError> {
        loop {
            if out.len() == out.capacity() {
                if out.len() > cap {
                    return Err(InflateError::TooBig);
                }
                // At most one byte past the cap, to tell "exactly cap" from
                // "more than cap".
                let room = (cap + 1 - out.len()).min(STEP);
                out.reserve_exact(room);
            }
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let spare = out.capacity() - out.len();
            let status = self
                .d
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (self.d.total_in() - in0) as usize;
            let produced = (self.d.total_out() - out0) as usize;
            input = &input[consumed..];
            if out.len() > cap {
                return Err(InflateError::TooBig);
            }
            match status {
                // A final block (BFINAL) ends the stream: what follows it in
                // this message is not DEFLATE data.
                Status::StreamEnd => {
                    self.d.reset(false);
                    return if input.is_empty() || input == &TAIL[..input.len().min(4)] {
                        Ok(())
                    } else {
                        Err(InflateError::Corrupt)
                    };
                }
                Status::Ok | Status::BufError => {}
            }
            if input.is_empty() && produced < spare {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && spare > 0 {
                // No progress with room to write: the input is stuck.
                return if input.is_empty() { Ok(()) } else { Err(InflateError::Corrupt) };
            }
        }
    }
}

/// A raw-deflate compressor that resets after every message (the server
/// always agrees `server_no_context_takeover`), so the same compressed
/// bytes are valid for every connection that agreed the same window.
pub struct Deflater {
    c: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("total_in", &self.c.total_in()).finish()
    }
}

impl Deflater {
    /// Level 0..=9 and a window of 2^`window_bits` (9..=15).
    pub fn new(level: u32, window_bits: u8) -> Deflater {
        Deflater {
            c: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits.clamp(9, 15),
            ),
        }
    }

    /// `payload` compressed as one message (no tail), appended to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.c.reset();
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(payload.len() / 2 + 64);
            }
            let in0 = self.c.total_in();
            let spare = out.capacity() - out.len();
            let before = out.len();
            if self.c.compress_vec(input, out, FlushCompress::Sync).is_err() {
                // Cannot happen with a valid state; send it stored instead.
                out.truncate(before);
                out.extend_from_slice(&stored(payload));
                return;
            }
            input = &input[(self.c.total_in() - in0) as usize..];
            if input.is_empty() && out.len() - before < spare {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
    }
}

/// `payload` as stored (uncompressed) DEFLATE blocks, no tail: the
/// fallback that is valid for every window.
fn stored(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5 * (payload.len() / 65535 + 1));
    for chunk in payload.chunks(65535) {
        let n = chunk.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// One unfragmented server frame (unmasked) with RSV1 set: a compressed
/// text (`text`) or binary message.
pub fn compressed_frame(text: bool, compressed: &[u8]) -> Bytes {
    let n = compressed.len();
    let mut b = BytesMut::with_capacity(n + 10);
    b.put_u8(0x80 | 0x40 | if text { 0x1 } else { 0x2 });
    if n < 126 {
        b.put_u8(n as u8);
    } else if n <= 0xffff {
        b.put_u8(126);
        b.put_u16(n as u16);
    } else {
        b.put_u8(127);
        b.put_u64(n as u64);
    }
    b.extend_from_slice(compressed);
    b.freeze()
}
