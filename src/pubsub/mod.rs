//! Rooms and pub/sub, sans-IO: the `/ws` application protocol
//! ([`protocol`]), per-worker room membership and ownership ([`room`]), and
//! the per-worker [`broker::Broker`] that ties them together. The messages
//! brokers exchange ([`BusMsg`]) live here; the worker moves them through
//! channels plus `mio::Waker`, batched per poll iteration, within a byte
//! budget per destination worker (`worker::Bus`).

pub mod broker;
pub mod history;
pub mod protocol;
pub mod room;

use bytes::Bytes;

use crate::id::ConnId;
use protocol::{Epoch, Since};
use room::RoomName;

/// A pub/sub message between the brokers of two workers. Sent in batches, one batch per destination per
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
    /// To the owner: connection `conn` (of worker `conn.worker()`) subscribes
    /// to `room`; the owner counts that worker as interested and answers
    /// with [`BusMsg::Subscribed`].
    Subscribe(Box<SubscribeAsk>),
    /// From the owner: the room's position when the subscribe took effect,
    /// and what it recovers.
    Subscribed(Box<SubscribeAnswer>),
    /// To the owner: a `history` request of connection `conn`; answered
    /// with a [`BusMsg::Reply`].
    History(Box<HistoryAsk>),
    /// A frame for connection `to` (a reply made by another worker).
    Reply {
        /// Target connection.
        to: ConnId,
        /// The encoded frame.
        frame: Bytes,
    },
    /// A direct message for connection `to`.
    Direct {
        /// Target connection.
        to: ConnId,
        /// The encoded frame.
        frame: Bytes,
        /// Who asked, for the result.
        origin: ConnId,
        /// Raw JSON request id.
        id: Option<Box<str>>,
    },
    /// The result of a [`BusMsg::Direct`], back to the origin's worker.
    DirectResult {
        /// The requesting connection.
        origin: ConnId,
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
    /// From the backplane to the room's owner: a message another node (or
    /// this one) published, sequenced by Redis.
    Remote(Box<RemoteMsg>),
    /// From the backplane to the room's owner: this node is subscribed to
    /// the room in Redis; its position and stored messages at that instant.
    Live(Box<Snapshot>),
    /// From the backplane to every worker: the connection to Redis is lost;
    /// rooms waiting for it are served locally until it is back.
    ClusterDown,
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

impl BusMsg {
    /// Roughly the bytes this message holds, for the bus budget: payloads
    /// and frames by length, everything else as a small constant.
    pub fn cost(&self) -> usize {
        const BASE: usize = 64;
        BASE + match self {
            BusMsg::Publish { room, payload, .. } => room.len() + payload.len(),
            BusMsg::Deliver { frame, .. } => frame.len(),
            BusMsg::Direct { frame, .. } => frame.len(),
            BusMsg::PresenceReply { members, .. } => members.len() * 8,
            BusMsg::Subscribed(a) => a.replay.iter().map(Bytes::len).sum::<usize>(),
            BusMsg::Reply { frame, .. } => frame.len(),
            BusMsg::Remote(m) => m.room.len() + m.entry.payload.len(),
            BusMsg::Live(s) => s.entries.iter().map(|e| e.payload.len() + 32).sum::<usize>(),
            BusMsg::ClusterDown => 0,
            BusMsg::Subscribe(_) | BusMsg::History(_) => 0,
            BusMsg::Interest { .. }
            | BusMsg::DirectResult { .. }
            | BusMsg::PresenceQuery { .. } => 0,
        }
    }
}

/// A subscribe on its way to the room's owner.
#[derive(Debug)]
pub struct SubscribeAsk {
    /// The room.
    pub room: RoomName,
    /// The subscribing connection.
    pub conn: ConnId,
    /// Matches the answer to the subscription waiting for it.
    pub token: u32,
    /// Raw JSON request id.
    pub id: Option<Box<str>>,
    /// The client's position, to recover from.
    pub since: Option<Since>,
}

/// The owner's answer to a [`SubscribeAsk`].
#[derive(Debug)]
pub struct SubscribeAnswer {
    /// The room.
    pub room: RoomName,
    /// The subscribing connection.
    pub conn: ConnId,
    /// As in the ask.
    pub token: u32,
    /// Raw JSON request id.
    pub id: Option<Box<str>>,
    /// The room's last offset: the position after the replay.
    pub offset: u64,
    /// The room's epoch.
    pub epoch: Epoch,
    /// With a `since`: whether the messages after it are in `replay`.
    pub recovered: Option<bool>,
    /// Recovered frames, oldest first.
    pub replay: Vec<Bytes>,
}

/// A `history` request on its way to the room's owner.
#[derive(Debug)]
pub struct HistoryAsk {
    /// The room.
    pub room: RoomName,
    /// The asking connection.
    pub conn: ConnId,
    /// Raw JSON request id.
    pub id: Option<Box<str>>,
    /// Most messages.
    pub limit: usize,
    /// Only messages after this position.
    pub since: Option<Since>,
}

/// One message of a room as Redis sequenced it.
#[derive(Debug)]
pub struct RemoteEntry {
    /// Its offset in the room's epoch.
    pub offset: u64,
    /// Publisher connection id (None: the server / HTTP API).
    pub from: Option<u64>,
    /// The payload.
    pub payload: Payload,
}

/// A message from Redis for the room's owner worker.
#[derive(Debug)]
pub struct RemoteMsg {
    /// The room.
    pub room: RoomName,
    /// The room's epoch in the cluster.
    pub epoch: Epoch,
    /// The message.
    pub entry: RemoteEntry,
}

/// A room's state in Redis, read right after this node subscribed to it.
#[derive(Debug)]
pub struct Snapshot {
    /// The room.
    pub room: RoomName,
    /// The owner's subscribe generation this answers (older ones are stale).
    pub gen: u64,
    /// The room's epoch.
    pub epoch: Epoch,
    /// The room's last offset.
    pub offset: u64,
    /// The stored messages (up to the history size), oldest first, ending at
    /// `offset` unless the stream lost them.
    pub entries: Vec<RemoteEntry>,
}

/// A published payload.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Raw JSON `data` (text protocol).
    Json(Bytes),
    /// Raw bytes (binary protocol).
    Binary(Bytes),
}

impl Payload {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Json(b) | Payload::Binary(b) => b.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_messages_do_not_grow_the_bus_message() {
        // Every Deliver in a batch is one BusMsg: the subscribe and history
        // variants are boxed so they do not make each of them bigger.
        assert!(std::mem::size_of::<BusMsg>() <= 72, "{}", std::mem::size_of::<BusMsg>());
    }
}
