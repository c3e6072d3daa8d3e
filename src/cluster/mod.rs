//! The cluster backplane: several wsedge nodes share rooms, presence and
//! history through Redis.
//!
//! # Who does what
//! - Workers never call Redis. Their brokers hand [`Cmd`]s (publishes,
//!   history and presence requests, membership changes) and [`RoomCmd`]s
//!   (subscribe / unsubscribe a room) to the backplane through bounded
//!   channels ([`Link`]); a byte budget ([`Shared::queued_bytes`]) bounds
//!   what waits, and a publish over it is refused with `overloaded`.
//! - The **command thread** (`command.rs`) owns one Redis connection and
//!   pipelines: every command waiting when it wakes goes in one round trip.
//!   A publish runs the publish script ([`wire::PUBLISH`]): the room's next
//!   offset, the bounded stream (history) and the `PUBLISH` in one atomic
//!   step, so Redis is the one sequencer of every room of the cluster.
//! - The **subscriber thread** (`subscriber.rs`) owns the pub/sub connection
//!   and a second command connection. It subscribes to a room's channel when
//!   the room's owner worker asks (the owner has one subscribe for the node,
//!   however many workers and connections are in the room), then reads the
//!   room's position and stored messages ([`crate::pubsub::Snapshot`]) and
//!   hands both to the owner, then every message Redis publishes
//!   ([`crate::pubsub::RemoteMsg`]), through the same channel as the other
//!   workers' bus messages (`Control::Bus` plus `mio::Waker`), within the
//!   same bus budget.
//! - The owner worker applies them in offset order, encodes each message
//!   once and fans it out like a local one (`pubsub/broker/cluster.rs`).
//!
//! When Redis cannot be reached both threads retry with a backoff (100 ms
//! doubling to 5 s), [`Shared::up`] is false (`/readyz` answers 503, the
//! `wsedge_backplane_up` gauge is 0), and the node serves its own clients
//! alone.

mod command;
mod subscriber;
pub mod wire;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ClusterConfig, Config};
use crate::id::{ConnId, MAX_NODE};
use crate::pubsub::broker::RoomHasher;
use crate::pubsub::history::HistorySettings;
use crate::pubsub::room::RoomName;
use crate::pubsub::{HistoryAsk, Payload};
use crate::worker::{Bus, Peer};

/// What a worker's broker asks of the command thread.
#[derive(Debug)]
pub enum Cmd {
    /// Publish to the cluster (sequenced by Redis).
    Publish {
        /// The room.
        room: RoomName,
        /// Publisher connection id (None: the server / HTTP API).
        from: Option<u64>,
        /// The payload.
        payload: Payload,
    },
    /// A `history` request, answered from the room's Redis stream.
    History(Box<HistoryAsk>),
    /// A `presence` request, answered from the room's members in Redis.
    Presence {
        /// The room.
        room: RoomName,
        /// The asking connection.
        conn: ConnId,
        /// Raw JSON request id.
        id: Option<Box<str>>,
    },
    /// A connection of this node joined (`on`) or left a room.
    Member {
        /// The room.
        room: RoomName,
        /// The connection id.
        conn: u64,
        /// Joined or left.
        on: bool,
    },
}

impl Cmd {
    /// Bytes counted against the channel budget while it waits.
    pub fn cost(&self) -> usize {
        const BASE: usize = 64;
        BASE + match self {
            Cmd::Publish { room, payload, .. } => room.len() + payload.len(),
            Cmd::History(a) => a.room.len(),
            Cmd::Presence { room, .. } | Cmd::Member { room, .. } => room.len(),
        }
    }
}

/// What a room's owner worker asks of the subscriber thread.
#[derive(Debug)]
pub enum RoomCmd {
    /// This node has subscribers of `room`: subscribe, then send the owner
    /// a snapshot tagged with `gen`.
    Subscribe {
        /// The room.
        room: RoomName,
        /// The owner's subscribe generation.
        gen: u64,
    },
    /// No subscriber of `room` is left on this node.
    Unsubscribe {
        /// The room.
        room: RoomName,
    },
}

/// Backplane state shared by its threads and the workers (atomics only).
#[derive(Debug, Default)]
pub struct Shared {
    /// The command connection is up.
    pub commands_up: AtomicBool,
    /// The pub/sub connection is up and every wanted room is subscribed.
    pub subscriber_up: AtomicBool,
    /// Bytes of [`Cmd`]s sent and not yet answered by Redis.
    pub queued_bytes: AtomicUsize,
    /// Publishes Redis sequenced for this node.
    pub published: AtomicU64,
    /// Messages received from Redis.
    pub received: AtomicU64,
    /// Connections (re)made after a loss.
    pub reconnects: AtomicU64,
    /// Publishes Redis did not take, sent back for local delivery.
    pub sent_back: AtomicU64,
}

impl Shared {
    /// True when both connections are up.
    pub fn up(&self) -> bool {
        self.commands_up.load(Ordering::Relaxed) && self.subscriber_up.load(Ordering::Relaxed)
    }
}

/// A worker's way to the backplane.
#[derive(Clone, Debug)]
pub struct Link {
    cmds: SyncSender<Cmd>,
    rooms: SyncSender<RoomCmd>,
    /// State and counters.
    pub shared: Arc<Shared>,
    /// [`ClusterConfig::channel_budget_bytes`].
    pub budget_bytes: usize,
    /// This node's id.
    pub node: u16,
}

impl Link {
    /// Bytes the broker may still queue for the command thread.
    pub fn credit(&self) -> usize {
        self.budget_bytes.saturating_sub(self.shared.queued_bytes.load(Ordering::Relaxed))
    }

    /// Sends `cmd`; gives it back when the channel is full or gone.
    pub fn send(&self, cmd: Cmd) -> Result<(), Cmd> {
        let cost = cmd.cost();
        self.shared.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        match self.cmds.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => {
                self.shared.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
                Err(c)
            }
        }
    }

    /// Sends `cmd`; gives it back when the channel is full or gone.
    pub fn send_room(&self, cmd: RoomCmd) -> Result<(), RoomCmd> {
        self.rooms.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }
}

/// What both threads need to know.
#[derive(Clone)]
pub(crate) struct Env {
    pub url: String,
    pub node: u16,
    pub prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub presence_ttl_ms: u64,
    pub history: HistorySettings,
    pub max_data_bytes: usize,
    pub presence_max_members: usize,
    pub peers: Vec<Peer>,
    pub hasher: RoomHasher,
    pub bus: Bus,
    pub shared: Arc<Shared>,
}

impl Env {
    /// Sends `msgs` to worker `w` as one bus batch and wakes it.
    pub fn to_worker(&self, w: usize, msgs: Vec<crate::pubsub::BusMsg>) {
        if msgs.is_empty() || w >= self.peers.len() {
            return;
        }
        let cost = msgs.iter().map(|m| m.cost()).sum();
        self.bus.sent(w, cost);
        let peer = &self.peers[w];
        if peer.tx.send(crate::worker::Control::Bus { msgs, cost }).is_ok() {
            let _ = peer.waker.wake();
        } else {
            self.bus.handled(w, cost);
        }
    }

    /// The owner worker of `room` on this node.
    pub fn owner_of(&self, room: &str) -> usize {
        self.hasher.owner_of(room, self.peers.len())
    }

    /// How long a room's position lasts in Redis without a refresh: its
    /// history TTL, and at least the presence TTL.
    pub fn position_ttl_ms(&self, room: &str) -> u64 {
        self.history.retention_of(room).ttl_ms.max(self.presence_ttl_ms)
    }
}

/// The node id to use: the configured one, or one derived from the host
/// name, the listen address and the process id (never 0).
pub fn node_id(config: &Config) -> u16 {
    if config.cluster.node_id != 0 {
        return config.cluster.node_id;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut h = DefaultHasher::new();
    (host.trim(), config.server.listen, std::process::id()).hash(&mut h);
    (h.finish() % u64::from(MAX_NODE)) as u16 + 1
}

/// Starts the backplane threads of a node with `workers` workers. The
/// threads end when every [`Link`] is dropped (the workers exited).
pub(crate) fn start(
    config: &Config,
    node: u16,
    peers: Vec<Peer>,
    hasher: RoomHasher,
    bus: Bus,
) -> std::io::Result<Link> {
    let c: &ClusterConfig = &config.cluster;
    let shared = Arc::new(Shared::default());
    let env = Env {
        url: c.redis_url.clone(),
        node,
        prefix: c.key_prefix.clone(),
        connect_timeout: Duration::from_millis(c.connect_timeout_ms),
        command_timeout: Duration::from_millis(c.command_timeout_ms),
        presence_ttl_ms: c.presence_ttl_ms,
        history: HistorySettings::from_config(&config.pubsub),
        max_data_bytes: config.pubsub.max_data_bytes,
        presence_max_members: config.pubsub.presence_max_members,
        peers,
        hasher,
        bus,
        shared: shared.clone(),
    };
    // The byte budget is the real bound; the count only backs it up (every
    // command costs at least 64 bytes).
    let (cmd_tx, cmd_rx) = mpsc::sync_channel(c.channel_budget_bytes / 64 + 1024);
    let (room_tx, room_rx): (_, Receiver<RoomCmd>) = mpsc::sync_channel(1 << 16);
    let e = env.clone();
    std::thread::Builder::new()
        .name("wsedge-redis-cmd".into())
        .spawn(move || command::run(e, cmd_rx))?;
    std::thread::Builder::new()
        .name("wsedge-redis-sub".into())
        .spawn(move || subscriber::run(env, room_rx))?;
    Ok(Link { cmds: cmd_tx, rooms: room_tx, shared, budget_bytes: c.channel_budget_bytes, node })
}

/// Backoff between connection attempts: 100 ms doubling to 5 s.
pub(crate) fn next_backoff(prev: Duration) -> Duration {
    (prev * 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
}
