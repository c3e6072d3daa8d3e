//! permessage-deflate (RFC 7692), sans-IO: the negotiation in the upgrade
//! ([`negotiate`]) and the codec ([`codec`]). tungstenite 0.30 has no
//! extension support (it refuses RSV1), so compressed messages take a path
//! of their own beside it: see `conn` for where frames with RSV1 go.

pub mod codec;
pub mod negotiate;

pub use codec::{compressed_frame, Deflater, InflateError, Inflater};
pub use negotiate::{agree, parse, Agreed, ClientBits, Policy, SyntaxError};

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// How many connections of the node may keep an inflate context (clients
/// that did not agree `client_no_context_takeover`). Shared by the workers;
/// touched at upgrade and close only, never per message.
#[derive(Debug)]
pub struct Budget {
    in_use: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` contexts.
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget { in_use: AtomicUsize::new(0), max })
    }

    /// Whether one more context fits now (the negotiation's question).
    pub fn available(&self) -> bool {
        self.in_use.load(Ordering::Relaxed) < self.max
    }

    /// Takes one context; it is given back when the guard drops.
    pub fn take(self: &Arc<Budget>) -> Option<BudgetGuard> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| BudgetGuard(Arc::clone(self)))
    }

    /// Contexts in use.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
}

/// One context of a [`Budget`], released on drop.
#[derive(Debug)]
pub struct BudgetGuard(Arc<Budget>);

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one worker keeps for compression, lent to connections through
/// `Env`: a compressor per server window in use, the inflater shared by
/// every client that resets its context after each message, scratch space,
/// and the last fan-out frame it compressed (so a room message is compressed
/// once for all the worker's compressing subscribers).
#[derive(Debug, Default)]
pub struct Shared {
    deflaters: [Option<Deflater>; 7],
    inflater: Option<Inflater>,
    /// The last frame compressed for a fan-out: (original, compressed).
    /// Holding the original keeps its address from being reused, so a
    /// pointer comparison identifies the same message.
    last: Option<(Bytes, Bytes)>,
    /// Messages compressed (a fan-out counts once).
    pub compressed: u64,
    /// Compressed fan-out frames reused for another subscriber.
    pub reused: u64,
}

impl Shared {
    /// The compressor for a window of 2^`bits` (9..=15) at `level`.
    pub fn deflater(&mut self, level: u32, bits: u8) -> &mut Deflater {
        let i = usize::from(bits.clamp(9, 15) - 9);
        self.deflaters[i].get_or_insert_with(|| Deflater::new(level, bits))
    }

    /// The inflater for clients without context takeover (window 15 reads
    /// any window), reset before use.
    pub fn inflater(&mut self) -> &mut Inflater {
        let inf = self.inflater.get_or_insert_with(|| Inflater::new(15));
        inf.reset();
        inf
    }

    /// `frame` (a complete, unfragmented, unmasked server data frame)
    /// compressed with a window of 2^`bits`, or `None` when it is not a data
    /// frame or its payload is under `threshold`. The last result is
    /// remembered, so delivering one frame to many subscribers compresses
    /// it once.
    pub fn compress_frame(
        &mut self,
        frame: &Bytes,
        threshold: usize,
        level: u32,
        bits: u8,
    ) -> Option<Bytes> {
        let (text, payload) = server_data_payload(frame)?;
        if payload.len() < threshold || bits < 9 {
            return None;
        }
        if let Some((orig, z)) = &self.last {
            if bits == 15 && orig.as_ptr() == frame.as_ptr() && orig.len() == frame.len() {
                self.reused += 1;
                return Some(z.clone());
            }
        }
        let mut out = Vec::with_capacity(payload.len() / 2 + 16);
        self.deflater(level, bits).compress(payload, &mut out);
        self.compressed += 1;
        let z = compressed_frame(text, &out);
        if bits == 15 {
            self.last = Some((frame.clone(), z.clone()));
        }
        Some(z)
    }

    /// Forgets the remembered fan-out frame (end of a loop iteration), so
    /// it does not pin the message's memory.
    pub fn forget_last(&mut self) {
        self.last = None;
    }
}

/// (text, payload) of a complete server data frame: FIN, no RSV bits,
/// opcode text or binary, unmasked.
fn server_data_payload(frame: &[u8]) -> Option<(bool, &[u8])> {
    let (&b0, &b1) = (frame.first()?, frame.get(1)?);
    if b0 & 0xf0 != 0x80 || b1 & 0x80 != 0 {
        return None;
    }
    let text = match b0 & 0x0f {
        1 => true,
        2 => false,
        _ => return None,
    };
    let (at, len) = match b1 & 0x7f {
        126 => (4, usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]))),
        127 => (10, usize::try_from(u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?)).ok()?),
        n => (2, usize::from(n)),
    };
    let payload = frame.get(at..)?;
    (payload.len() == len).then_some((text, payload))
}
