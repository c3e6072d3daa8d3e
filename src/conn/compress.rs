//! permessage-deflate on a connection (RFC 7692): the agreement made at the
//! upgrade, compressed messages coming in (frames with RSV1 are collected
//! here, beside tungstenite, which refuses RSV1, then inflated with a cap
//! and handed on like any other message) and going out (messages over the
//! threshold compressed with the worker's compressor; a fan-out frame
//! compressed once per worker, see `deflate::Shared::compress_frame`).
//!
//! Control frames and uncompressed messages keep their usual paths. An
//! idle connection with compression holds one small box: no inflater unless
//! its client keeps its context, and that only within the node's budget.

use bytes::Bytes;
use tungstenite::protocol::frame::coding::Data as OpData;

use super::frames::unmask_into;
use super::{CloseCause, Conn, Env, State};
use crate::deflate::{compressed_frame, Agreed, BudgetGuard, InflateError, Inflater};

/// What one connection agreed, and its compressed message in progress.
#[derive(Debug)]
pub(super) struct Pmd {
    agreed: Agreed,
    /// The client keeps its context: this connection's own inflater
    /// (created with the first compressed message) and its budget slot.
    kept: Option<(Option<Inflater>, BudgetGuard)>,
    /// A compressed message being received: text?, compressed bytes so far.
    partial: Option<(bool, Vec<u8>)>,
}

impl Pmd {
    pub(super) fn new(agreed: Agreed, guard: Option<BudgetGuard>) -> Pmd {
        Pmd { agreed, kept: guard.map(|g| (None, g)), partial: None }
    }

    /// A compressed message is being received (its continuation frames
    /// belong here, not to tungstenite).
    pub(super) fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// The compressed bytes of a message in progress (the inflater of a
    /// kept context is not counted: it is bounded by the node's budget).
    pub(super) fn retained_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |(_, z)| z.capacity())
    }
}

/// The most compressed bytes a message of `limit` bytes can take: DEFLATE
/// output exceeds its input by a few bytes per block when the data does not
/// compress, so anything far over this cannot inflate under the limit.
pub(super) fn compressed_bound(limit: usize) -> usize {
    limit.saturating_add(limit / 64).saturating_add(1024)
}

impl Conn {
    /// Whether a frame with this first byte's RSV1 and `opcode` belongs to
    /// the compressed path: the first frame of a compressed message, or a
    /// continuation of one.
    #[inline]
    pub(super) fn is_compressed_frame(&self, rsv1: bool, opcode: u8) -> bool {
        match &self.pmd {
            Some(p) if p.in_message() => opcode == 0 || matches!(opcode, 1 | 2),
            Some(_) => rsv1 && matches!(opcode, 1 | 2) && !self.in_fragment,
            None => false,
        }
    }

    /// One frame of a compressed message (`masked` is its payload). A new
    /// data frame inside a compressed message is a protocol error; the
    /// final frame inflates the message (capped at the message size limit)
    /// and delivers it.
    pub(super) fn compressed_input(
        &mut self,
        fin: bool,
        opcode: u8,
        mask: [u8; 4],
        masked: &[u8],
        env: &mut Env,
    ) {
        let max_message = env.settings.ws_config.max_message_size.unwrap_or(usize::MAX);
        let Some(pmd) = self.pmd.as_mut() else { return };
        if opcode != 0 {
            if pmd.partial.is_some() {
                // "a new data frame while a fragmented message is open"
                return self.fail(CloseCause::ProtocolError, env);
            }
            pmd.partial = Some((opcode == 1, Vec::new()));
        }
        let Some((text, z)) = pmd.partial.as_mut() else { return };
        let text = *text;
        if z.len().saturating_add(masked.len()) > compressed_bound(max_message) {
            pmd.partial = None;
            return self.fail(CloseCause::MessageTooBig, env);
        }
        unmask_into(z, masked, mask);
        self.last_recv = env.now;
        if !fin {
            return;
        }
        let Some((_, z)) = pmd.partial.take() else { return };
        let mut out = Vec::new();
        let inflated = match &mut pmd.kept {
            Some((inflater, _)) => inflater
                .get_or_insert_with(|| Inflater::new(pmd.agreed.client_max_window_bits))
                .inflate(&z, true, &mut out, max_message),
            None => env.deflate.inflater().inflate(&z, true, &mut out, max_message),
        };
        drop(z);
        match inflated {
            Ok(()) => {}
            Err(InflateError::TooBig) => return self.fail(CloseCause::MessageTooBig, env),
            Err(InflateError::Corrupt) => return self.fail(CloseCause::BadCompressedData, env),
        }
        if text && std::str::from_utf8(&out).is_err() {
            return self.fail(CloseCause::InvalidUtf8, env);
        }
        if !matches!(self.state, State::Open { .. }) {
            return; // closing: data is no longer delivered
        }
        let len = out.len();
        self.count_in(len, env);
        if self.within_rate(len, true, env) {
            let op = if text { OpData::Text } else { OpData::Binary };
            self.deliver(op, Bytes::from(out), env);
        }
    }

    /// The message of `payload` as one compressed frame, when this
    /// connection compresses and it is over the threshold.
    #[inline]
    pub(super) fn compress_payload(
        &self,
        op: OpData,
        payload: &[u8],
        env: &mut Env,
    ) -> Option<Bytes> {
        let pmd = self.pmd.as_ref()?;
        let ds = env.settings.deflate.as_ref()?;
        let bits = pmd.agreed.server_max_window_bits;
        if payload.len() < ds.threshold || bits < 9 {
            return None;
        }
        let mut out = Vec::with_capacity(payload.len() / 2 + 16);
        env.deflate.deflater(ds.level, bits).compress(payload, &mut out);
        env.deflate.compressed += 1;
        Some(compressed_frame(op == OpData::Text, &out))
    }

    /// `frame` (an encoded server frame: a delivery or a reply) as this
    /// connection should receive it: compressed when it compresses and the
    /// payload is over the threshold, the same compressed bytes for every
    /// subscriber of a fan-out.
    #[inline]
    pub(super) fn outgoing_frame(&self, frame: Bytes, env: &mut Env) -> Bytes {
        let (Some(pmd), Some(ds)) = (self.pmd.as_ref(), env.settings.deflate.as_ref()) else {
            return frame;
        };
        let bits = pmd.agreed.server_max_window_bits;
        env.deflate.compress_frame(&frame, ds.threshold, ds.level, bits).unwrap_or(frame)
    }

    /// Whether the echo fast path may write this payload as is (not when it
    /// should be compressed).
    #[inline]
    pub(super) fn sends_plain(&self, len: usize, env: &Env) -> bool {
        match (&self.pmd, &env.settings.deflate) {
            (Some(_), Some(ds)) => len < ds.threshold,
            _ => true,
        }
    }

    /// permessage-deflate was agreed on this connection.
    pub fn compresses(&self) -> bool {
        self.pmd.is_some()
    }
}
