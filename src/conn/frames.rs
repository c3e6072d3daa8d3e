//! Client frames before tungstenite sees them: the scanner that cuts buffered
//! input into whole frames (keeping a partial one in the connection's
//! `inbuf`) and spots headers tungstenite will reject, and the fast path for
//! whole, small, unfragmented, masked data frames (unmasked straight into
//! the cork or the application's message). Everything else goes on to the
//! connection's tungstenite context. See the module docs of `conn` for why.

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::settings::CTX_READ_BUFFER;
use super::{compress, queue_fits, Conn, Env, Route, State};
use crate::outbox::SHARE_THRESHOLD;

/// Data frames below this size take the fast path ([`Conn::fast_data`]).
/// Larger ones go to tungstenite, which decodes them into a buffer it
/// reuses and hands them over by reference: measured faster from a few KiB
/// up (16 KiB echo: 2.54 vs 2.22 GB/s), while small frames gain most from
/// skipping it. Below this size payloads are copied into the cork anyway.
const FAST_PATH_MAX: usize = SHARE_THRESHOLD;

impl Conn {
    #[inline]
    pub(super) fn ws_input(&mut self, data: &[u8], env: &mut Env) {
        // Work on our partial frame plus the new bytes. The partial frame
        // grows in place (never copied again per read), and the new bytes
        // are not copied at all when there is no partial frame.
        let owned = if self.inbuf.is_empty() {
            None
        } else {
            let mut buf = std::mem::take(&mut self.inbuf);
            buf.extend_from_slice(data);
            Some(buf)
        };
        let work: &[u8] = owned.as_deref().unwrap_or(data);
        let (whole, need) = if self.passthrough {
            (work.len(), 0)
        } else {
            // A compressed frame may be a little larger than the message it
            // holds (incompressible data); its own limit is applied after
            // inflating. Uncompressed frames over the limit still reach
            // tungstenite, which refuses them with 1009.
            let pmd = self.pmd.is_some();
            let max_frame = match pmd {
                true => compress::compressed_bound(env.settings.max_frame_bytes),
                false => env.settings.max_frame_bytes,
            };
            match scan_frames(work, max_frame, pmd) {
                Scan::Whole { whole, need } => (whole, need),
                Scan::Suspect => {
                    self.passthrough = true;
                    (work.len(), 0)
                }
            }
        };
        let consumed = match whole {
            0 => 0,
            _ if self.passthrough => self.feed_ctx(&work[..whole], env),
            _ => self.feed_frames(&work[..whole], env),
        };
        if !matches!(self.state, State::Open { .. } | State::Closing { .. }) {
            return;
        }
        let from = consumed.max(whole);
        let mut rest = match owned {
            Some(mut buf) => {
                buf.drain(..from);
                buf
            }
            None if from < data.len() => data[from..].to_vec(),
            None => Vec::new(),
        };
        if rest.is_empty() {
            return; // nothing kept: an idle connection holds no buffer
        }
        // Room for the whole incomplete frame at once (its header is known)
        // once a good part of it is here, instead of growing by doubling
        // through a large message. Not earlier: a bare header must not make
        // the server allocate the frame's full size for a client that may
        // never send it.
        if need > rest.capacity() && rest.len() >= need / 4 {
            rest.reserve_exact(need - rest.len());
        }
        self.inbuf = rest;
    }

    /// Handles `input`, which is whole frames (checked by [`scan_frames`]),
    /// one frame at a time: a whole unfragmented data frame takes the fast
    /// path ([`Conn::fast_data`]); every other frame (control frames,
    /// fragments, anything the fast path declines) goes to tungstenite alone,
    /// so its buffers never hold bytes past the frame it was given. Returns
    /// the bytes handled.
    #[inline]
    fn feed_frames(&mut self, input: &[u8], env: &mut Env) -> usize {
        let max_message = env.settings.ws_config.max_message_size.unwrap_or(usize::MAX);
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let Some(head) = FrameHead::parse(rest) else {
                break; // cannot happen: the scanner vouched for whole frames
            };
            let total = head.total().min(rest.len());
            if self.is_compressed_frame(head.rsv1, head.opcode) {
                let payload = &rest[head.header_len..total];
                self.compressed_input(head.fin, head.opcode, head.mask, payload, env);
                pos += total;
                if !matches!(self.state, State::Open { .. } | State::Closing { .. }) {
                    return pos;
                }
                continue;
            }
            let fast = matches!(self.state, State::Open { .. })
                && !self.in_fragment
                && head.fin
                && head.masked
                && !head.reserved_bits
                && matches!(head.opcode, 1 | 2)
                && head.len < FAST_PATH_MAX as u64
                && head.len <= max_message as u64;
            if fast && self.fast_data(&head, &rest[head.header_len..total], env) {
                pos += total;
            } else {
                if head.opcode == 0 && head.fin {
                    self.in_fragment = false;
                } else if matches!(head.opcode, 1 | 2) {
                    self.in_fragment = !head.fin;
                }
                // A context that decodes a large frame grows its buffers:
                // drop it afterwards rather than pool it.
                self.large_frame |= head.len > CTX_READ_BUFFER as u64;
                let took = self.feed_ctx(&rest[..total], env);
                pos += took;
                if took < total {
                    return pos;
                }
            }
            if !matches!(self.state, State::Open { .. } | State::Closing { .. }) {
                return pos;
            }
        }
        pos
    }

    /// The fast path for one whole, final, unfragmented, masked text or
    /// binary frame under [`FAST_PATH_MAX`] while the connection is open: unmasks the payload
    /// straight into its destination (the echo frame in the cork, or the
    /// message handed to the application) without a tungstenite context.
    /// Equivalent to tungstenite decoding the frame: same checks, same
    /// counters, same limits. Returns false, having changed nothing, when
    /// the frame must go to tungstenite instead (text that is not valid
    /// UTF-8, so that tungstenite reports the error).
    #[inline]
    fn fast_data(&mut self, head: &FrameHead, masked: &[u8], env: &mut Env) -> bool {
        let text = head.opcode == 1;
        let op = if text { OpData::Text } else { OpData::Binary };
        let len = masked.len();
        if self.route == Some(Route::Echo) && self.sends_plain(len, env) {
            // Speculatively write the echo frame into the cork: header, then
            // the payload unmasked in place of the copy.
            let header = FrameHeader { opcode: OpCode::Data(op), ..FrameHeader::default() };
            let frame_len = header.len(len as u64) + len;
            let queued_before = self.outbox.len() + env.cork.len();
            let buf = env.cork.buf_mut();
            let start = buf.len();
            header.format(len as u64, buf).expect("bug: formatting into a Vec cannot fail");
            let at = buf.len();
            let ascii = unmask_into(buf, masked, head.mask);
            if text && !valid_text(&buf[at..], ascii) {
                buf.truncate(start);
                return false;
            }
            self.count_in(len, env);
            if !self.take_tokens(len, env) {
                env.cork.buf_mut().truncate(start);
                self.rate_violation(true, env);
                return true;
            }
            if !queue_fits(queued_before, frame_len, env.settings) {
                env.cork.buf_mut().truncate(start);
                self.admit(frame_len, env); // applies the slow-consumer policy
                return true;
            }
            env.stats.msgs_out += 1;
            env.stats.bytes_out += len as u64;
            return true;
        }
        let mut payload = Vec::with_capacity(len);
        let ascii = unmask_into(&mut payload, masked, head.mask);
        if text && !valid_text(&payload, ascii) {
            return false;
        }
        self.count_in(len, env);
        if self.within_rate(len, true, env) {
            self.deliver(op, Bytes::from(payload), env);
        }
        true
    }
}

/// Result of scanning buffered input for whole frames.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The first `whole` bytes are whole frames; `need` is the full size of
    /// the incomplete frame that follows, when its header is already there
    /// (else 0).
    Whole {
        /// Bytes of whole frames.
        whole: usize,
        /// Size of the next, incomplete frame, if known.
        need: usize,
    },
    /// A header is invalid or over the size limit; tungstenite must see it.
    Suspect,
}

/// A client frame header, as far as the scanner and the fast path need it.
#[derive(Debug, Clone, Copy)]
struct FrameHead {
    fin: bool,
    /// RSV1-3 set.
    reserved_bits: bool,
    /// RSV1 set (a compressed message's first frame, with permessage-deflate).
    rsv1: bool,
    opcode: u8,
    masked: bool,
    mask: [u8; 4],
    /// Bytes of header (including the mask).
    header_len: usize,
    /// Payload length.
    len: u64,
}

impl FrameHead {
    /// Decodes the header at the start of `buf`; None until all of it is there.
    #[inline]
    fn parse(buf: &[u8]) -> Option<FrameHead> {
        let (&b0, &b1) = (buf.first()?, buf.get(1)?);
        let masked = b1 & 0x80 != 0;
        let (len_bytes, len) = match b1 & 0x7f {
            126 => (2, u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as u64),
            127 => (8, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
            n => (0, n as u64),
        };
        let mask_at = 2 + len_bytes;
        let mask: [u8; 4] =
            if masked { buf.get(mask_at..mask_at + 4)?.try_into().ok()? } else { [0; 4] };
        Some(FrameHead {
            fin: b0 & 0x80 != 0,
            reserved_bits: b0 & 0x70 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            masked,
            mask,
            header_len: mask_at + if masked { 4 } else { 0 },
            len,
        })
    }

    /// Header plus payload, saturating (a huge length is refused before use).
    #[inline]
    fn total(&self) -> usize {
        usize::try_from(self.len).unwrap_or(usize::MAX).saturating_add(self.header_len)
    }
}

/// Appends `masked` to `out`, unmasked with `mask` (RFC 6455 section 5.3),
/// eight bytes at a time. Returns true when the payload is all ASCII (and
/// so valid UTF-8 without a further check).
#[inline]
pub(super) fn unmask_into(out: &mut Vec<u8>, masked: &[u8], mask: [u8; 4]) -> bool {
    let start = out.len();
    out.extend_from_slice(masked);
    let payload = &mut out[start..];
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut high = 0u64;
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(b) ^ word;
        high |= v;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // Chunks start at multiples of 8, so the tail starts at mask byte 0.
    let mut tail = 0u8;
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
        tail |= *byte;
    }
    high & 0x8080_8080_8080_8080 == 0 && tail & 0x80 == 0
}

/// True when `text` is valid UTF-8; `ascii` says it is known to be ASCII.
#[inline]
fn valid_text(text: &[u8], ascii: bool) -> bool {
    ascii || std::str::from_utf8(text).is_ok()
}

/// Finds how many leading bytes of `buf` form whole client frames.
/// Validation proper is tungstenite's job; this only spots headers it will
/// reject so they reach it without waiting for a payload that may never come.
///
/// With permessage-deflate (`rsv1_ok`), RSV1 is expected on the first frame
/// of a data message; anywhere else (control, continuation), or without the
/// extension, it goes to tungstenite, which closes with 1002.
#[inline]
fn scan_frames(buf: &[u8], max_frame: usize, rsv1_ok: bool) -> Scan {
    let mut pos = 0;
    let mut need = 0;
    while buf.len() - pos >= 2 {
        let (b0, b1) = (buf[pos], buf[pos + 1]);
        let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
        let is_control = opcode >= 8;
        let reserved_op = matches!(opcode, 3..=7 | 11..=15);
        // Judged from the first two bytes, before the rest of the header:
        // "The server MUST close the connection upon receiving a frame that is
        // not masked." (RFC 6455); control frames: "MUST have a payload length
        // of 125 bytes or less and MUST NOT be fragmented." (RFC 6455)
        let bad_rsv = b0 & 0x30 != 0 || (b0 & 0x40 != 0 && !(rsv1_ok && matches!(opcode, 1 | 2)));
        if bad_rsv || reserved_op || !masked || (is_control && !fin) {
            return Scan::Suspect;
        }
        let Some(head) = FrameHead::parse(&buf[pos..]) else {
            break;
        };
        // Control frames are judged by their real length (a short length in
        // the 16-bit form is accepted by tungstenite, so it is whole here).
        if head.len > max_frame as u64 || (is_control && head.len > 125) {
            return Scan::Suspect;
        }
        let total = head.total();
        if buf.len() - pos < total {
            need = total;
            break;
        }
        pos += total;
    }
    Scan::Whole { whole: pos, need }
}
