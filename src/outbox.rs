//! Outbound bytes: the per-worker [`Cork`] and the per-connection [`Outbox`].
//!
//! While a worker handles one connection, everything that connection sends
//! (the 101 response, tungstenite's pongs and close frames, echoed or fanned-out
//! data frames) is appended to the worker's single cork buffer. When the
//! connection's turn ends the worker writes the cork to the socket in one
//! vectored write; only bytes the kernel did not take move into the
//! connection's own [`Outbox`]. An idle connection therefore owns no write
//! buffer at all, and a busy one makes one `writev` per poll pass.
//!
//! This module owns byte accounting only; it never touches a socket except
//! through the `Write` it is handed, and never decides policy (the connection
//! does, from [`Outbox::len`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

/// Payloads at least this large are queued by reference instead of copied.
pub const SHARE_THRESHOLD: usize = 1024;

/// Most slices handed to one `writev` (Linux allows 1024; 64 covers a pass).
const MAX_IOV: usize = 64;

/// The worker's scratch output for the connection being handled.
///
/// Logically one byte string: owned bytes in `buf`, with shared `Bytes`
/// spliced in at recorded offsets (so a large payload or a broadcast frame is
/// never copied).
#[derive(Default, Debug)]
pub struct Cork {
    buf: Vec<u8>,
    /// `(offset in buf, bytes)`: the shared bytes come before `buf[offset..]`.
    shared: Vec<(usize, Bytes)>,
    shared_len: usize,
    /// The first `preamble` bytes of `buf` are not frames but the HTTP
    /// response that must precede them (the 101): see [`Cork::mark_preamble`].
    preamble: usize,
}

impl Cork {
    /// An empty cork with `capacity` bytes reserved for owned output.
    pub fn with_capacity(capacity: usize) -> Self {
        Cork { buf: Vec::with_capacity(capacity), shared: Vec::new(), shared_len: 0, preamble: 0 }
    }

    /// Appends a copy of `bytes`.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends `bytes` by reference (copied when small, where a copy is cheaper
    /// than a reference count and an extra iovec).
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.len() < SHARE_THRESHOLD {
            self.buf.extend_from_slice(&bytes);
        } else {
            self.shared_len += bytes.len();
            self.shared.push((self.buf.len(), bytes));
        }
    }

    /// Marks everything queued so far (the HTTP 101 response, written into
    /// an empty cork before any frame) as the stream's preamble: the client
    /// must receive it before any frame, so when it is spilled into an
    /// outbox it is pinned there and no discard ever drops it, however the
    /// kernel split the write. Only owned bytes may precede the mark.
    pub fn mark_preamble(&mut self) {
        debug_assert!(self.shared.is_empty(), "bug: shared bytes ahead of the preamble");
        self.preamble = self.buf.len();
    }

    /// The owned buffer, for encoders that write straight into it.
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Total bytes queued in the cork.
    pub fn len(&self) -> usize {
        self.buf.len() + self.shared_len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.shared.is_empty()
    }

    /// Forgets everything queued, keeping the owned buffer's capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.shared.clear();
        self.shared_len = 0;
        self.preamble = 0;
    }

    /// Calls `f` with each piece of the cork in order.
    fn for_each_piece<'a>(&'a self, mut f: impl FnMut(&'a [u8])) {
        let mut at = 0;
        for (offset, bytes) in &self.shared {
            if *offset > at {
                f(&self.buf[at..*offset]);
            }
            f(bytes);
            at = *offset;
        }
        if at < self.buf.len() {
            f(&self.buf[at..]);
        }
    }

    /// Writes the cork to `w` with vectored writes until it is empty or `w`
    /// would block. Returns the bytes written; `WouldBlock` is not an error.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<usize> {
        let total = self.len();
        let mut written = 0;
        while written < total {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            let mut skip = written;
            self.for_each_piece(|piece| {
                if n == MAX_IOV {
                    return;
                }
                if skip >= piece.len() {
                    skip -= piece.len();
                    return;
                }
                iov[n] = IoSlice::new(&piece[skip..]);
                skip = 0;
                n += 1;
            });
            // One slice: a plain write (send) is cheaper in the kernel
            // than writev's iovec import.
            let result = if n == 1 { w.write(&iov[0]) } else { w.write_vectored(&iov[..n]) };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => written += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Moves everything after the first `skip` bytes into `outbox`, keeping
    /// track of which queued chunks continue a frame whose start went out (or
    /// queued) earlier, so a later discard never cuts a frame in two, and
    /// pinning what is left of the preamble ([`Cork::mark_preamble`]) as its
    /// own chunk, so a later discard never drops it while the frames behind
    /// it can still go.
    pub fn spill_into(&self, skip: usize, outbox: &mut Outbox) {
        if self.preamble > skip {
            // Everything up to the preamble's end stays queued.
            outbox.pinned = outbox.len() + (self.preamble - skip);
        }
        let mut spill = Spill { skip, first: true, was_empty: outbox.is_empty() };
        let mut at = 0;
        for (offset, bytes) in &self.shared {
            self.spill_owned(at, *offset, outbox, &mut spill);
            // A shared payload always follows its frame header.
            if let Some(rest) = spill.skip_into(bytes.len()) {
                spill.queue(outbox, bytes.slice(rest.from..), rest.cut, true);
            }
            at = *offset;
        }
        self.spill_owned(at, self.buf.len(), outbox, &mut spill);
    }

    /// Spills `buf[from..to]`, the preamble's part (if any) as a chunk of
    /// its own.
    fn spill_owned(&self, from: usize, to: usize, outbox: &mut Outbox, spill: &mut Spill) {
        let cut = self.preamble.clamp(from, to);
        for (a, b) in [(from, cut), (cut, to)] {
            if a < b {
                if let Some(rest) = spill.skip_into(b - a) {
                    let bytes = Bytes::copy_from_slice(&self.buf[a + rest.from..b]);
                    spill.queue(outbox, bytes, rest.cut, false);
                }
            }
        }
    }
}

/// Where [`Cork::spill_into`] stands: bytes still to skip (the kernel took
/// them) and whether the next queued chunk is the first left over.
struct Spill {
    skip: usize,
    first: bool,
    was_empty: bool,
}

/// The untaken rest of one cork piece: where it starts, and whether a
/// partial write cut the piece there (so it is mid-frame).
struct Rest {
    from: usize,
    cut: bool,
}

impl Spill {
    /// For a piece of `len` bytes: None if the kernel took all of it.
    fn skip_into(&mut self, len: usize) -> Option<Rest> {
        if self.skip >= len {
            self.skip -= len;
            return None;
        }
        let from = std::mem::take(&mut self.skip);
        Some(Rest { from, cut: from > 0 })
    }

    /// Queues a piece's rest; `continues` when it continues the frame of
    /// the chunk before it.
    fn queue(&mut self, outbox: &mut Outbox, rest: Bytes, cut: bool, continues: bool) {
        // The first piece left over, cut inside by a partial write, is
        // mid-frame: it must go out whole.
        let mid_frame = self.first && cut && self.was_empty;
        self.first = false;
        outbox.push_chunk(rest, continues || mid_frame);
        if mid_frame {
            outbox.head_written = true;
        }
    }
}

/// A connection's queue of bytes the kernel has not taken yet.
///
/// Chunks are whole frames (or the unwritten tail of one), so dropping every
/// chunk but a partially written head never corrupts the stream.
#[derive(Default, Debug)]
pub struct Outbox {
    /// Chunks, each flagged when it continues the frame of the chunk before
    /// it (a header and its shared payload are two chunks).
    chunks: VecDeque<(Bytes, bool)>,
    len: usize,
    /// Part of the head chunk's frame is already on the wire.
    head_written: bool,
    /// The first `pinned` bytes are never discarded: they end with what is
    /// left of the HTTP response that precedes every frame
    /// ([`Cork::mark_preamble`]).
    pinned: usize,
}

impl Outbox {
    /// Queues whole frames at the back.
    pub fn push(&mut self, bytes: Bytes) {
        self.push_chunk(bytes, false);
    }

    fn push_chunk(&mut self, bytes: Bytes, continues: bool) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.chunks.push_back((bytes, continues));
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every queued frame that has not started going out; the rest of
    /// a frame already partly written (its head chunk and the chunks that
    /// continue it) stays, so the peer still sees whole frames.
    /// Returns the bytes dropped.
    /// Pinned bytes (the HTTP response ahead of every frame) always stay.
    pub fn discard_unstarted(&mut self) -> usize {
        let mut keep = 0;
        let mut pinned = 0;
        while pinned < self.pinned {
            let Some((chunk, _)) = self.chunks.get(keep) else { break };
            pinned += chunk.len();
            keep += 1;
        }
        if keep == 0 && self.chunks.front().is_some_and(|(_, cont)| self.head_written || *cont) {
            keep = 1;
        }
        if keep > 0 {
            while self.chunks.get(keep).is_some_and(|(_, cont)| *cont) {
                keep += 1;
            }
        }
        let mut dropped = 0;
        while self.chunks.len() > keep {
            if let Some((c, _)) = self.chunks.pop_back() {
                dropped += c.len();
            }
        }
        self.len -= dropped;
        if self.chunks.is_empty() {
            self.release();
        }
        dropped
    }

    /// Writes queued chunks to `w` with vectored writes until empty or `w`
    /// would block. Returns the bytes written; `WouldBlock` is not an error.
    pub fn write_to<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut written = 0;
        while !self.chunks.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = self.chunks.len().min(MAX_IOV);
            for (slot, (chunk, _)) in iov.iter_mut().zip(self.chunks.iter()) {
                *slot = IoSlice::new(chunk);
            }
            // One slice: a plain write (send) is cheaper in the kernel
            // than writev's iovec import.
            let result = if n == 1 { w.write(&iov[0]) } else { w.write_vectored(&iov[..n]) };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    written += k;
                    self.consume(k);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.chunks.is_empty() {
            self.release();
        }
        Ok(written)
    }

    fn consume(&mut self, mut k: usize) {
        self.len -= k;
        self.pinned = self.pinned.saturating_sub(k);
        while k > 0 {
            let Some((head, _)) = self.chunks.front_mut() else { break };
            if k >= head.len() {
                k -= head.len();
                self.chunks.pop_front();
                // The next chunk, if it continues this frame, is mid-frame.
                self.head_written = self.chunks.front().is_some_and(|(_, cont)| *cont);
            } else {
                bytes::Buf::advance(head, k);
                self.head_written = true;
                k = 0;
            }
        }
    }

    /// Frees the queue's memory once it is empty, so an idle connection holds
    /// no write buffer.
    fn release(&mut self) {
        self.head_written = false;
        self.pinned = 0;
        if self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::KernelSink;

    fn sample_cork() -> (Cork, Vec<u8>) {
        let mut cork = Cork::default();
        let mut expect = Vec::new();
        cork.extend(b"head");
        expect.extend_from_slice(b"head");
        let big = Bytes::from(vec![7u8; 3000]);
        cork.push_shared(big.clone());
        expect.extend_from_slice(&big);
        cork.extend(b"mid");
        expect.extend_from_slice(b"mid");
        let big2 = Bytes::from(vec![9u8; 2000]);
        cork.push_shared(big2.clone());
        expect.extend_from_slice(&big2);
        cork.push_shared(Bytes::from_static(b"small"));
        expect.extend_from_slice(b"small");
        (cork, expect)
    }

    #[test]
    fn cork_writes_in_order_whole() {
        let (cork, expect) = sample_cork();
        assert_eq!(cork.len(), expect.len());
        let mut w = KernelSink { wire: Vec::new(), budget: usize::MAX };
        assert_eq!(cork.write_to(&mut w).unwrap(), expect.len());
        assert_eq!(w.wire, expect);
    }

    #[test]
    fn partial_write_spills_exact_remainder_into_outbox() {
        let (cork, expect) = sample_cork();
        for budget in [0, 1, 4, 5, 3004, 3005, 3007, 5006, expect.len() - 1] {
            let mut w = KernelSink { wire: Vec::new(), budget };
            let n = cork.write_to(&mut w).unwrap();
            assert_eq!(n, budget);
            let mut outbox = Outbox::default();
            cork.spill_into(n, &mut outbox);
            assert_eq!(outbox.len(), expect.len() - n);
            w.budget = usize::MAX;
            outbox.write_to(&mut w).unwrap();
            assert_eq!(w.wire, expect, "budget {budget}");
            assert!(outbox.is_empty());
        }
    }

    #[test]
    fn discard_never_cuts_a_frame_whose_header_went_out() {
        // Frame A: header in the owned buffer, payload shared; then frame B.
        let mut cork = Cork::default();
        cork.extend(b"HDR-A");
        cork.push_shared(Bytes::from(vec![1u8; 2000]));
        cork.extend(b"FRAME-B");
        for budget in [3, 5, 6, 2004, 2005] {
            let mut w = KernelSink { wire: Vec::new(), budget };
            let n = cork.write_to(&mut w).unwrap();
            let mut outbox = Outbox::default();
            cork.spill_into(n, &mut outbox);
            outbox.discard_unstarted();
            w.budget = usize::MAX;
            outbox.write_to(&mut w).unwrap();
            // Frame A always completes; frame B is dropped unless started.
            let a_len = 5 + 2000;
            assert!(w.wire.len() >= a_len, "budget {budget}: frame A cut");
            assert!(w.wire.len() == a_len || w.wire.len() == a_len + 7, "budget {budget}");
        }
    }

    #[test]
    fn discard_keeps_the_preamble_under_every_write_split() {
        // The 101, then two small frames and a frame with a shared payload.
        let mut cork = Cork::default();
        cork.extend(b"HTTP/1.1 101\r\n\r\n");
        cork.mark_preamble();
        cork.extend(b"FRAME-A");
        cork.extend(b"HDR-B");
        cork.push_shared(Bytes::from(vec![2u8; 1500]));
        let head = 16;
        for budget in 0..=head + 8 {
            let mut w = KernelSink { wire: Vec::new(), budget };
            let n = cork.write_to(&mut w).unwrap_or(0);
            // Another write may take part of the queue before the discard.
            for first in [0, 1, head.saturating_sub(n)] {
                let mut outbox = Outbox::default();
                cork.spill_into(n, &mut outbox);
                let mut w = KernelSink { wire: w.wire.clone(), budget: first };
                let _ = outbox.write_to(&mut w);
                outbox.discard_unstarted();
                w.budget = usize::MAX;
                outbox.write_to(&mut w).unwrap();
                assert!(
                    w.wire.starts_with(b"HTTP/1.1 101\r\n\r\n"),
                    "budget {budget}: {:?}",
                    w.wire
                );
                // Whole frames only: those written into one owned chunk
                // together go or stay together; a started one completes.
                let frames = &w.wire[head..];
                let all = [&b"FRAME-AHDR-B"[..], &[2u8; 1500]].concat();
                assert!(
                    frames.is_empty() || frames == b"FRAME-A" || frames == all,
                    "budget {budget}, then {first}: {frames:?}"
                );
            }
        }
    }

    #[test]
    fn outbox_resumes_after_would_block_and_discard_keeps_started_head() {
        let mut outbox = Outbox::default();
        outbox.push(Bytes::from_static(b"frame-one"));
        outbox.push(Bytes::from_static(b"frame-two"));
        outbox.push(Bytes::from_static(b"frame-three"));
        let mut w = KernelSink { wire: Vec::new(), budget: 4 };
        assert_eq!(outbox.write_to(&mut w).unwrap(), 4);
        assert_eq!(outbox.len(), 9 + 9 + 11 - 4);
        // The head is half written: it survives a discard, the rest does not.
        assert_eq!(outbox.discard_unstarted(), 20);
        w.budget = usize::MAX;
        outbox.write_to(&mut w).unwrap();
        assert_eq!(w.wire, b"frame-one");
        assert!(outbox.is_empty());
    }
}
