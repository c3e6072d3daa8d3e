//! The in-memory stream tungstenite runs over.
//!
//! Reads come from bytes the worker already took off the socket; when they
//! run out the stream says `WouldBlock` (to tungstenite, `Ok(0)` would mean
//! the peer closed). Writes append to the worker's [`Cork`] and always
//! succeed, so tungstenite's own write buffer is empty after every call and
//! never blocks. This module must not touch sockets.

use std::io::{self, Read, Write};

use crate::outbox::Cork;

/// A tungstenite stream over a byte slice (input) and the worker's cork (output).
pub struct MemStream<'a> {
    input: &'a [u8],
    consumed: usize,
    out: &'a mut Cork,
}

impl<'a> MemStream<'a> {
    /// A stream reading from `input` and writing into `out`.
    pub fn new(input: &'a [u8], out: &'a mut Cork) -> Self {
        MemStream { input, consumed: 0, out }
    }

    /// Input bytes tungstenite has read so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

impl Read for MemStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.consumed..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.consumed += n;
        Ok(n)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An emulated socket for sans-IO drivers (tests, fuzzers): its send buffer
/// takes at most `budget` more bytes, then the write would block. `wire` is
/// everything that reached the peer.
#[derive(Debug, Default)]
pub struct KernelSink {
    /// Bytes written so far, in order.
    pub wire: Vec<u8>,
    /// Bytes the next writes may still take.
    pub budget: usize,
}

impl Write for KernelSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.wire.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_input_is_would_block_not_eof() {
        let mut cork = Cork::default();
        let mut s = MemStream::new(b"abc", &mut cork);
        let mut buf = [0u8; 2];
        assert_eq!(s.read(&mut buf).unwrap(), 2);
        assert_eq!(s.read(&mut buf).unwrap(), 1);
        assert_eq!(s.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(s.consumed(), 3);
        s.write_all(b"xyz").unwrap();
        assert_eq!(cork.len(), 3);
    }
}
