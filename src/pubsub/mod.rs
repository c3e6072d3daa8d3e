//! Rooms and pub/sub: the `/ws` application protocol ([`protocol`], sans-IO)
//! and per-worker room membership ([`room`]). The cross-worker message
//! types live here too; the worker moves them through channels plus
//! `mio::Waker`, batched per poll iteration.

pub mod protocol;
pub mod room;

use bytes::Bytes;

use room::RoomName;

/// A message between workers. Sent in batches, one batch per destination per
/// poll iteration.
#[derive(Debug)]
pub enum BusMsg {
    /// To the room's owner: sequence and fan out.
    Publish {
        /// The room.
        room: RoomName,
        /// Publisher connection id (None: the server / HTTP API).
        from: Option<u64>,
        /// The payload.
        payload: Payload,
    },
    /// From the owner: deliver an encoded frame to local members of `room`.
    Deliver {
        /// The room.
        room: RoomName,
        /// The complete frame, shared by every subscriber.
        frame: Bytes,
    },
    /// To the owner: `worker` gained (on) or lost all subscribers of `room`.
    Interest {
        /// The room.
        room: RoomName,
        /// The worker whose interest changed.
        worker: usize,
        /// Gained (true) or lost (false).
        on: bool,
    },
    /// A direct message for connection `to`.
    Direct {
        /// Target connection id.
        to: u64,
        /// The encoded frame.
        frame: Bytes,
        /// Who asked (connection id) and the request id, for the result.
        origin: u64,
        /// Raw JSON request id.
        id: Option<Box<str>>,
    },
    /// The result of a [`BusMsg::Direct`], back to the origin's worker.
    DirectResult {
        /// The requesting connection.
        origin: u64,
        /// Raw JSON request id.
        id: Option<Box<str>>,
        /// Delivered to the target's queue.
        ok: bool,
    },
    /// Asks a worker for its members of `room`.
    PresenceQuery {
        /// The room.
        room: RoomName,
        /// Query id at the origin worker.
        query: u64,
        /// Worker to answer.
        origin_worker: usize,
    },
    /// Asks a worker for a snapshot of its counters (for /metrics).
    StatsQuery {
        /// Query id at the origin worker.
        query: u64,
        /// Worker to answer.
        origin_worker: usize,
    },
    /// A worker's counters.
    StatsReply {
        /// Query id at the origin worker.
        query: u64,
        /// The answering worker.
        worker: usize,
        /// Its snapshot.
        stats: Box<crate::metrics::Stats>,
    },
    /// Graceful shutdown: the sender has processed everything it received
    /// before its shutdown order, and sent everything that caused.
    Barrier,
    /// A worker's members of a room.
    PresenceReply {
        /// Query id at the origin worker.
        query: u64,
        /// Member count on that worker.
        count: usize,
        /// Member ids (up to the configured cap).
        members: Vec<u64>,
    },
}

/// A published payload.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Raw JSON `data` (text protocol).
    Json(Bytes),
    /// Raw bytes (binary protocol).
    Binary(Bytes),
}
