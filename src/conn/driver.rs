//! The one way to drive a connection's output, sans-IO: what happens when a
//! connection's turn ends ([`Host::end_turn`]), when its socket becomes
//! writable ([`Host::handle_writable`]) and when the application queues a
//! frame on it outside its turn ([`Host::enqueue`]).
//!
//! In the spirit of quinn-proto's `handle_*` / `poll_transmit` /
//! `poll_timeout`: the worker feeds a connection input or a timer, then hands
//! the driver a [`Transport`] (the socket, TLS over it, or an in-memory
//! stand-in in tests, fuzzers and benches) and gets back a [`TurnResult`]:
//! whether the socket is still writable, whether to read again, whether to
//! half-close or drop the socket, and the connection's next deadline. The
//! order of the steps (cork, queue, backpressure, TLS records, close_notify,
//! half-close, deadline) is decided here once; the worker only makes the
//! syscalls the result asks for (`shutdown(Write)`, closing the socket, the
//! timer wheel).
//!
//! This module must not touch sockets, `mio` or the clock: it writes only
//! through the [`Transport`] it is handed.

use std::io;

use bytes::Bytes;

use super::{Conn, Host, NEVER};

/// Where a connection's output goes: a socket, TLS over one, or an
/// in-memory stand-in. `write`/`write_vectored` take what fits and say
/// `WouldBlock` when nothing does (never `Ok(0)` for a non-empty write).
pub trait Transport: io::Write {
    /// Writes out bytes the transport holds below the byte stream (the TLS
    /// records rustls has sealed). `Ok(true)`: nothing is left; `Ok(false)`:
    /// the socket is full (a writable event will come). Plain TCP holds
    /// nothing.
    #[inline]
    fn flush_records(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Ends the transport's own stream (TLS close_notify) and writes what it
    /// can of that. Plain TCP has nothing to send.
    #[inline]
    fn close_notify(&mut self) {}
}

impl Transport for crate::stream::KernelSink {}

impl Transport for Vec<u8> {}

impl Transport for io::Sink {}

impl<S: io::Read + io::Write> Transport for crate::tls::TlsIo<'_, S> {
    #[inline]
    fn flush_records(&mut self) -> io::Result<bool> {
        crate::tls::TlsIo::flush_records(self)
    }

    fn close_notify(&mut self) {
        crate::tls::TlsIo::close_notify(self)
    }
}

/// What the caller knows when a connection's turn ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndTurn {
    /// The socket can take more: no write was cut short since the last
    /// writable event.
    pub writable: bool,
    /// Leave the connection's write queue alone this time. A worker sets it
    /// while the connection is on its dirty list: application output queued
    /// this iteration (an ack) must not reach the client before the bus
    /// batch it acknowledges has been sent; the worker ends the turn again,
    /// with `hold_queue` false, after sending that batch. The cork is written
    /// either way (behind the queue when one is waiting).
    pub hold_queue: bool,
}

/// What the caller must do after [`Host::end_turn`] or
/// [`Host::handle_writable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct TurnResult {
    /// The socket can still take more (keep it for the next [`EndTurn`]);
    /// false until the next writable event once a write was cut short.
    pub writable: bool,
    /// Reading was paused by backpressure and may resume: read from the
    /// connection again (no readiness edge will come for bytes already
    /// waiting in the socket).
    pub resume_reading: bool,
    /// Shut down the socket's write side now (`shutdown(Write)`), then keep
    /// reading until EOF so the client reads everything. Everything the
    /// connection had to say, and any TLS close_notify, was written first.
    pub half_close: bool,
    /// Drop the connection and close its socket.
    pub closed: bool,
    /// The tick by which [`Conn::handle_timer`] must run: at least one tick
    /// after now; [`NEVER`] once closed.
    pub deadline: u64,
}

/// What writing the cork found.
struct CorkWrite {
    /// See [`TurnResult::writable`].
    writable: bool,
    /// See [`TurnResult::resume_reading`].
    resume_reading: bool,
}

impl Host {
    /// Ends a connection's turn (after its input, its timer, or the
    /// application's output): writes the cork (to `w` if nothing is queued
    /// ahead of it and the socket is writable; whatever the kernel does not
    /// take moves into the connection's queue), writes the queue unless
    /// [`EndTurn::hold_queue`], pauses reading above the high-water mark,
    /// writes out the transport's own records, and once everything is
    /// flushed in `Linger` sends close_notify and asks for the half-close.
    /// A write error closes the connection. The cork is empty afterwards.
    #[inline]
    pub fn end_turn<T: Transport + ?Sized>(
        &mut self,
        conn: &mut Conn,
        w: &mut T,
        turn: EndTurn,
    ) -> TurnResult {
        let mut writable = turn.writable;
        let mut resume_reading = false;
        if !self.cork.is_empty() {
            let done = self.write_cork(conn, w, writable);
            writable = done.writable;
            resume_reading = done.resume_reading;
        }
        // What was queued before (the cork's spill, earlier output) goes now
        // if the socket can take it, unless the caller holds the queue.
        if !turn.hold_queue && writable && conn.has_queued() {
            let done = self.write_queue(conn, w);
            writable = done.writable;
            resume_reading |= done.resume_reading;
        }
        conn.update_backpressure(&self.settings);
        if writable {
            match w.flush_records() {
                Ok(done) => writable = done,
                Err(_) => conn.handle_io_error(),
            }
        }
        let mut half_close = false;
        if conn.wants_shutdown() {
            // close_notify goes behind the last record, before the FIN
            // (sealed once; later calls only write out what is left).
            w.close_notify();
            match w.flush_records() {
                Ok(true) => {
                    // When the peer already finished its side of the close
                    // handshake the socket is simply closed (`closed` below).
                    half_close = !conn.close_when_flushed();
                    conn.shutdown_done();
                }
                // The socket is full: the FIN waits for the rest of the
                // close_notify record (a FIN sent now would cut it short
                // and the client would see a truncated stream: found by the
                // `tls` fuzz target). The next writable event comes back here.
                Ok(false) => writable = false,
                Err(_) => conn.handle_io_error(),
            }
        }
        let closed = conn.is_closed();
        let deadline = if closed { NEVER } else { conn.deadline(&self.settings).max(self.now + 1) };
        TurnResult { writable, resume_reading, half_close, closed, deadline }
    }

    /// The socket became writable: writes out the transport's own records,
    /// then the connection's queue. End the turn with [`Host::end_turn`]
    /// afterwards (after any reading), passing on `writable`; only
    /// `writable` and `resume_reading` of the result mean anything here.
    #[inline]
    pub fn handle_writable<T: Transport + ?Sized>(
        &mut self,
        conn: &mut Conn,
        w: &mut T,
    ) -> TurnResult {
        let mut done = CorkWrite { writable: true, resume_reading: false };
        match w.flush_records() {
            Ok(flushed) => done.writable = flushed,
            Err(_) => conn.handle_io_error(),
        }
        if done.writable && conn.has_queued() && !conn.is_closed() {
            done = self.write_queue(conn, w);
        }
        TurnResult {
            writable: done.writable,
            resume_reading: done.resume_reading,
            half_close: false,
            closed: conn.is_closed(),
            deadline: NEVER,
        }
    }

    /// Queues an encoded frame on `conn` outside its turn (a fan-out
    /// delivery, a reply): the connection's queue policy applies, and a close
    /// frame the slow-consumer policy writes goes behind what is queued. The
    /// caller ends the connection's turn later (a worker marks it dirty).
    /// Returns whether the frame was queued.
    #[inline]
    pub fn enqueue(&mut self, conn: &mut Conn, frame: Bytes) -> bool {
        let queued = conn.enqueue(frame, &mut self.env());
        if !self.cork.is_empty() {
            conn.queue_cork(&self.cork, 0);
            self.cork.clear();
        }
        queued
    }

    /// Writes the cork to `w` unless output is already queued ahead of it or
    /// the socket is not `writable`, moves what the kernel did not take into
    /// the connection's queue, and empties the cork. A write error closes the
    /// connection.
    #[inline]
    fn write_cork<T: Transport + ?Sized>(
        &mut self,
        conn: &mut Conn,
        w: &mut T,
        writable: bool,
    ) -> CorkWrite {
        let mut done = CorkWrite { writable, resume_reading: false };
        // Behind a queue the cork waits its turn; only a write the kernel cut
        // short means the socket is full (and a writable edge will come).
        let attempted = !conn.has_queued() && writable;
        let written = if attempted {
            self.cork.write_to(w).unwrap_or_else(|_| {
                conn.handle_io_error();
                0
            })
        } else {
            0
        };
        if written < self.cork.len() && !conn.is_closed() {
            conn.queue_cork(&self.cork, written);
            if attempted {
                done.writable = false;
            }
        }
        self.cork.clear();
        done.resume_reading = conn.handle_written(written, self.now, &self.settings);
        done
    }

    /// Writes the connection's queue to `w` (which was writable) until it
    /// is empty or `w` would block. A write error closes the connection.
    #[inline]
    fn write_queue<T: Transport + ?Sized>(&mut self, conn: &mut Conn, w: &mut T) -> CorkWrite {
        match conn.write_queued(w) {
            Ok(n) => CorkWrite {
                writable: !conn.has_queued(),
                resume_reading: conn.handle_written(n, self.now, &self.settings),
            },
            Err(_) => {
                conn.handle_io_error();
                CorkWrite { writable: true, resume_reading: false }
            }
        }
    }
}
