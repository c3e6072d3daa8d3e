//! The per-worker pub/sub broker, sans-IO.
//!
//! A [`Broker`] owns everything pub/sub knows on one worker: which local
//! connections are in which rooms ([`LocalRooms`]), the rooms this worker
//! owns and sequences ([`OwnedRooms`]), the bus messages waiting for other
//! workers, and the presence queries in flight. It takes requests from local
//! connections ([`Broker::handle_request`]) and messages from other workers
//! ([`Broker::handle_bus`]), with time passed in, and returns its output
//! through two doors only:
//!
//! - frames for local connections go to a [`Deliver`] sink the caller passes
//!   in (the worker queues them on the connections' write queues; a test
//!   records them);
//! - messages for other workers are taken with [`Broker::poll_bus`].
//!
//! It never touches a socket, a channel or the clock, and never calls back
//! into the worker: shutdown barriers and metrics queries are the worker's
//! own messages and do not pass through here.
//!
//! # Ordering
//! Every room has one owner worker (a salted hash of its name, see
//! [`RoomHasher`]). A publish goes to the owner, which gives it the room's next
//! offset, encodes the frame once and sends the same bytes to every worker
//! with subscribers ([`BusMsg::Deliver`]). Per room, deliveries therefore
//! leave one place in one order, and each worker-to-worker channel keeps it.
//!
//! # Subscribing, positions and recovery
//! A subscribe is decided by the owner, because the ack carries the room's
//! position (offset, epoch) and a `since` may recover stored messages
//! ([`super::history`]). A subscriber on another worker waits, not yet a
//! member, while [`BusMsg::Subscribe`] goes to the owner; the owner counts
//! its worker as interested and answers ([`BusMsg::Subscribed`]) with the
//! position at that instant and the recovered frames. The answer leaves the
//! owner on the same channel as the deliveries, after every message up to
//! that position and before every later one; the subscriber becomes a
//! member when it arrives, so the ack, then the replay, then the live
//! messages reach it with no gap and no duplicate, however many publishes
//! happen meanwhile. A publish made after the subscriber saw its ack is
//! always delivered to it. See `subscribe.rs`.
//!
//! # Other nodes
//! The owner is the single point where a room's order is decided; it is
//! where the backplane between nodes attaches ([`Sequencer::Cluster`]): Redis
//! sequences, the owner applies what Redis sequenced (see `cluster.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use tungstenite::protocol::frame::coding::Data as OpData;

use super::history::{Evictions, HistorySettings};
use super::protocol::{self as proto, ErrorCode, ProtoError, Request};
use super::room::{LocalRooms, Membership, OwnedRooms, RoomName, Sequenced};
use super::{BusMsg, Payload};
use crate::auth::Identity;
use crate::id::ConnId;
use crate::timer::take_expired;

/// Where room owners come from: a hash of the room name salted once per
/// process, so clients cannot choose names that pile onto one worker. Every
/// worker of a process must share one `RoomHasher` (clones agree).
#[derive(Clone, Debug, Default)]
pub struct RoomHasher(RandomState);

impl RoomHasher {
    /// A hasher with a fresh random salt.
    pub fn new() -> RoomHasher {
        RoomHasher(RandomState::new())
    }

    /// The worker (of `workers`) that owns `room`.
    pub fn owner_of(&self, room: &str, workers: usize) -> usize {
        (self.0.hash_one(room) % workers.max(1) as u64) as usize
    }
}

/// Who decides a room's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sequencer {
    /// The room's owner worker on this node.
    #[default]
    LocalOwner,
    /// The cluster, through Redis (`src/cluster/`): publishes leave as
    /// backplane commands ([`Broker::poll_cluster`]) and come back to the
    /// owner, sequenced, as [`BusMsg::Remote`]; while Redis is away the
    /// owner sequences alone.
    Cluster,
}

/// Limits and identity of one broker.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// This worker's index.
    pub index: usize,
    /// Number of workers in the process.
    pub workers: usize,
    /// Rooms one connection may be in.
    pub max_rooms: usize,
    /// Members of one room on one worker (`None`: no limit).
    pub max_room_members: Option<usize>,
    /// Most member ids in a presence reply.
    pub presence_max_members: usize,
    /// Largest `data` / binary payload of a request, bytes.
    pub max_data_bytes: usize,
    /// A cross-worker query (presence) not answered within this many
    /// milliseconds is answered with an error.
    pub query_timeout_ms: u64,
    /// Room owners.
    pub hasher: RoomHasher,
    /// Who orders rooms.
    pub sequencer: Sequencer,
    /// History kept by the rooms, for the whole node (each broker takes its
    /// share of the byte cap).
    pub history: HistorySettings,
    /// Largest replay of one recovering subscribe, bytes of frames; a
    /// bigger one is not recovered (`recovered: false`).
    pub max_replay_bytes: usize,
}

impl BrokerSettings {
    /// Settings for worker `index` of `workers`, with defaults for limits.
    pub fn new(index: usize, workers: usize, hasher: RoomHasher) -> BrokerSettings {
        BrokerSettings {
            index,
            workers: workers.max(1),
            max_rooms: 64,
            max_room_members: None,
            presence_max_members: 1000,
            max_data_bytes: 64 * 1024,
            query_timeout_ms: 5_000,
            hasher,
            sequencer: Sequencer::LocalOwner,
            history: HistorySettings::default(),
            max_replay_bytes: 512 * 1024,
        }
    }
}

/// Where the broker puts frames for connections of this worker.
pub trait Deliver {
    /// Queues `frame` on connection `to`, a member of a room or the sender
    /// of a request. Returns false when `to` is gone or refused the frame.
    fn deliver(&mut self, to: ConnId, frame: &Bytes) -> bool;

    /// Queues a direct message on `to` if it is a live `/ws` connection;
    /// returns whether it was queued.
    fn deliver_direct(&mut self, to: ConnId, frame: &Bytes) -> bool;
}

/// What the broker counted, read by the worker for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Frames handed to local members by room fan-out.
    pub deliveries: u64,
    /// Requests answered with an `error`.
    pub requests_refused: u64,
    /// Requests refused for lack of permission.
    pub forbidden: u64,
    /// Cross-worker queries answered with a timeout.
    pub query_timeouts: u64,
    /// Stored frames replayed to recovering subscribers.
    pub replayed: u64,
    /// Bytes held by room history (gauge).
    pub history_bytes: u64,
    /// Messages held by room history (gauge).
    pub history_messages: u64,
    /// Messages evicted from history, by cause.
    pub history_evictions: Evictions,
}

/// Something the worker should know about, taken with [`Broker::poll_event`].
#[derive(Debug, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A connection was refused an action on a room (for the refusal log).
    Forbidden {
        /// The connection.
        conn: ConnId,
        /// Its credential's subject, if any.
        subject: Option<Box<str>>,
        /// True for publish, false for subscribe.
        publish: bool,
        /// The room.
        room: RoomName,
    },
}

/// A request after [`Broker::check_request`].
#[derive(Debug)]
pub enum Checked<'p> {
    /// Valid and allowed.
    Request(Request<'p>),
    /// Answered with this error.
    Refused(ProtoError),
    /// Nothing to do.
    Ignore,
}

struct PendingPresence {
    origin: ConnId,
    id: Option<String>,
    room: RoomName,
    remaining: usize,
    count: usize,
    members: Vec<u64>,
    deadline_ms: u64,
}

/// Bus messages for one worker, not yet taken.
#[derive(Default)]
struct Outgoing {
    msgs: Vec<BusMsg>,
    /// Sum of their [`BusMsg::cost`].
    cost: usize,
}

impl Outgoing {
    fn push(&mut self, msg: BusMsg) {
        self.cost += msg.cost();
        self.msgs.push(msg);
    }
}

/// One worker's pub/sub state. See the module docs.
pub struct Broker {
    settings: BrokerSettings,
    rooms: LocalRooms,
    owned: OwnedRooms,
    /// Memberships of local connections that are in at least one room.
    subs: HashMap<ConnId, Vec<Membership>>,
    outgoing: Vec<Outgoing>,
    presence: HashMap<u64, PendingPresence>,
    next_query: u64,
    events: Vec<BrokerEvent>,
    stats: BrokerStats,
    /// Subscribes sent to remote owners and not answered yet, per room: the
    /// room stays of interest to this worker until they are.
    inflight: HashMap<RoomName, u32>,
    next_token: u32,
    /// The latest time passed in (ms): requests and ticks.
    now_ms: u64,
    /// The backplane side, with [`Sequencer::Cluster`].
    cluster: Option<Box<cluster::ClusterSide>>,
}

impl Broker {
    /// An empty broker.
    pub fn new(settings: BrokerSettings) -> Broker {
        let workers = settings.workers;
        let history = settings.history.per_worker(workers);
        let cluster = (settings.sequencer == Sequencer::Cluster).then(Box::default);
        Broker {
            settings,
            rooms: LocalRooms::default(),
            owned: OwnedRooms::new(history),
            subs: HashMap::new(),
            outgoing: (0..workers).map(|_| Outgoing::default()).collect(),
            presence: HashMap::new(),
            next_query: 0,
            events: Vec::new(),
            stats: BrokerStats::default(),
            inflight: HashMap::new(),
            next_token: 0,
            now_ms: 0,
            cluster,
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// Counters so far, and the history gauges now.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            history_bytes: self.owned.history_bytes() as u64,
            history_messages: self.owned.history_messages() as u64,
            history_evictions: self.owned.evictions(),
            ..self.stats
        }
    }

    /// Rooms with members on this worker.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Memberships on this worker.
    pub fn subscriptions(&self) -> usize {
        self.rooms.subscriptions()
    }

    /// A `/ws` connection opened: greet it with its id.
    pub fn handle_open(&mut self, conn: ConnId, out: &mut impl Deliver) {
        out.deliver(conn, &proto::welcome(conn.get()));
    }

    /// A connection is gone: it leaves every room it was in.
    pub fn handle_close(&mut self, conn: ConnId) {
        let Some(subs) = self.subs.remove(&conn) else { return };
        for sub in subs {
            self.leave_room(&sub, conn);
        }
    }

    /// One text or binary message from `/ws` connection `conn`, whose
    /// credential is `identity`: [`Broker::check_request`] then
    /// [`Broker::dispatch`].
    pub fn handle_request(
        &mut self,
        conn: ConnId,
        identity: Option<&Identity>,
        op: OpData,
        payload: &Bytes,
        now_ms: u64,
        out: &mut impl Deliver,
    ) {
        let checked = self.check_request(conn, identity, op, payload);
        self.dispatch(conn, checked, payload, now_ms, out);
    }

    /// Parses a request and checks that `identity` may do it. Split from
    /// [`Broker::dispatch`] so a caller can lend the identity from the
    /// same place it delivers to.
    pub fn check_request<'p>(
        &mut self,
        conn: ConnId,
        identity: Option<&Identity>,
        op: OpData,
        payload: &'p Bytes,
    ) -> Checked<'p> {
        let max_data = self.settings.max_data_bytes;
        let parsed = match op {
            OpData::Text => match std::str::from_utf8(payload) {
                Ok(text) => proto::parse_text(text, max_data),
                // The connection checked UTF-8 already.
                Err(_) => return Checked::Ignore,
            },
            _ => proto::parse_binary(payload, max_data),
        };
        let req = match parsed {
            Ok(req) => req,
            Err(e) => return Checked::Refused(e),
        };
        let target = match &req {
            Request::Subscribe { room, .. } | Request::History { room, .. } => {
                Some((room.as_ref(), false))
            }
            Request::Publish { room, .. } => Some((room.as_ref(), true)),
            Request::PublishBinary { room, .. } => Some((*room, true)),
            _ => None,
        };
        if let Some((room, publish)) = target {
            if !self.authorized(conn, identity, room, publish) {
                let e = ProtoError::new(
                    req.id(),
                    ErrorCode::Forbidden,
                    "not allowed for this credential",
                );
                return Checked::Refused(e);
            }
        }
        Checked::Request(req)
    }

    /// Carries out a checked request from `conn`; `payload` is the message
    /// it was parsed from.
    pub fn dispatch(
        &mut self,
        conn: ConnId,
        checked: Checked<'_>,
        payload: &Bytes,
        now_ms: u64,
        out: &mut impl Deliver,
    ) {
        let req = match checked {
            Checked::Request(req) => req,
            Checked::Refused(e) => return self.refuse(conn, &e, out),
            Checked::Ignore => return,
        };
        self.now_ms = self.now_ms.max(now_ms);
        let rid = req.id();
        let result = match &req {
            Request::Subscribe { room, since, .. } => self.subscribe(conn, room, *since, rid, out),
            Request::History { room, limit, since, .. } => {
                self.history(conn, room, *limit, *since, rid, out);
                return;
            }
            Request::Unsubscribe { room, .. } => self.unsubscribe(conn, room, rid),
            Request::Publish { room, data, .. } => {
                let data = Bytes::copy_from_slice(data.as_bytes());
                self.publish_as(room, Some(conn.get()), Payload::Json(data), rid, out)
            }
            Request::PublishBinary { room, payload: body } => {
                let body = payload.slice_ref(body);
                self.publish_as(room, Some(conn.get()), Payload::Binary(body), rid, out)
            }
            Request::Send { to, data, .. } => {
                let frame = proto::direct(Some(conn.get()), data);
                self.send_direct(conn, ConnId::new(*to), frame, rid, out)
            }
            Request::Presence { room, .. } => {
                self.presence(conn, room, rid, now_ms, out);
                return;
            }
        };
        match result {
            Ok(()) => {
                if let Some(rid) = rid {
                    out.deliver(conn, &proto::ack(rid));
                }
            }
            Err(Some(e)) => self.refuse(conn, &e, out),
            Err(None) => {} // answered later, by another worker
        }
    }

    /// A publish from outside any connection (`POST /api/publish`). In
    /// cluster mode one over the backplane's budget is dropped (counted).
    pub fn publish(
        &mut self,
        room: &str,
        from: Option<u64>,
        payload: Payload,
        out: &mut impl Deliver,
    ) {
        let _ = self.publish_as(room, from, payload, None, out);
    }

    /// A publish; `Err` when refused (cluster backplane over budget).
    fn publish_as(
        &mut self,
        room: &str,
        from: Option<u64>,
        payload: Payload,
        rid: Option<&RawValue>,
        out: &mut impl Deliver,
    ) -> Result<(), Option<ProtoError>> {
        if self.cluster.is_some() {
            return self.cluster_publish(room, from, payload, rid, out);
        }
        let owner = self.owner_of(room);
        if owner == self.settings.index {
            self.sequence_and_fan_out(room, from, payload, out);
        } else {
            self.send_to(owner, BusMsg::Publish { room: Arc::from(room), from, payload });
        }
        Ok(())
    }

    /// A message from another worker.
    pub fn handle_bus(&mut self, msg: BusMsg, out: &mut impl Deliver) {
        match msg {
            BusMsg::Publish { room, from, payload } if self.cluster.is_some() => {
                self.cluster_fallback(&room, from, payload, out)
            }
            BusMsg::Publish { room, from, payload } => {
                self.sequence_and_fan_out(&room, from, payload, out)
            }
            BusMsg::Remote(m) => self.handle_remote(*m, out),
            BusMsg::Live(snap) => self.handle_live(*snap, out),
            BusMsg::ClusterDown => self.handle_cluster_down(out),
            BusMsg::Deliver { room, frame } => self.deliver_local(&room, &frame, out),
            BusMsg::Interest { room, worker, on } => self.owner_interest(&room, worker, on),
            BusMsg::Subscribe(ask) => self.handle_subscribe_ask(*ask),
            BusMsg::Subscribed(answer) => self.handle_subscribed(*answer, out),
            BusMsg::History(ask) => self.handle_history_ask(*ask, out),
            BusMsg::Reply { to, frame } => {
                out.deliver(to, &frame);
            }
            BusMsg::Direct { to, frame, origin, id } => {
                let ok = out.deliver_direct(to, &frame);
                let w = origin.worker();
                if w < self.outgoing.len() {
                    self.send_to(w, BusMsg::DirectResult { origin, id, ok });
                }
            }
            BusMsg::DirectResult { origin, id, ok } => {
                let rid = id.as_deref().and_then(|s| serde_json::from_str::<&RawValue>(s).ok());
                if ok {
                    if let Some(rid) = rid {
                        out.deliver(origin, &proto::ack(rid));
                    }
                } else {
                    let e = ProtoError::new(rid, ErrorCode::NotFound, "no such connection");
                    self.refuse(origin, &e, out);
                }
            }
            BusMsg::PresenceQuery { room, query, origin_worker } => {
                let (count, members) = self.local_presence(&room);
                if origin_worker < self.outgoing.len() {
                    self.send_to(origin_worker, BusMsg::PresenceReply { query, count, members });
                }
            }
            BusMsg::PresenceReply { query, count, members } => {
                let Some(p) = self.presence.get_mut(&query) else {
                    return; // answered already (timed out)
                };
                p.count += count;
                p.members.extend(members);
                p.remaining -= 1;
                if p.remaining == 0 {
                    if let Some(p) = self.presence.remove(&query) {
                        self.answer_presence(p, out);
                    }
                }
            }
        }
    }

    /// Answers queries whose deadline passed with a `timeout` error, and
    /// evicts history past its TTL. Call it every tick.
    pub fn handle_timeout(&mut self, now_ms: u64, out: &mut impl Deliver) {
        self.now_ms = self.now_ms.max(now_ms);
        self.owned.expire(now_ms);
        if self.presence.is_empty() {
            return;
        }
        for p in take_expired(&mut self.presence, now_ms, |p| p.deadline_ms) {
            self.stats.query_timeouts += 1;
            let rid = p.id.as_deref().and_then(|s| serde_json::from_str::<&RawValue>(s).ok());
            let e = ProtoError::new(rid, ErrorCode::Timeout, "presence query timed out");
            self.refuse(p.origin, &e, out);
        }
    }

    /// The earliest deadline of a query in flight (ms), if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.presence.values().map(|p| p.deadline_ms).min()
    }

    /// The messages waiting for worker `dest`, oldest first (empty if none),
    /// and their cost in bytes ([`BusMsg::cost`]). The caller sends them as
    /// one batch, in this order.
    pub fn poll_bus(&mut self, dest: usize) -> (Vec<BusMsg>, usize) {
        match self.outgoing.get_mut(dest) {
            Some(o) => (std::mem::take(&mut o.msgs), std::mem::take(&mut o.cost)),
            None => (Vec::new(), 0),
        }
    }

    /// Bytes waiting for worker `dest` (not yet taken by [`Broker::poll_bus`]).
    pub fn pending_bytes(&self, dest: usize) -> usize {
        self.outgoing.get(dest).map_or(0, |o| o.cost)
    }

    /// True when some worker has messages waiting.
    pub fn has_bus_output(&self) -> bool {
        self.outgoing.iter().any(|o| !o.msgs.is_empty())
    }

    /// The next thing for the worker to know, if any.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop()
    }

    // ---- internals ----

    fn send_to(&mut self, dest: usize, msg: BusMsg) {
        self.outgoing[dest].push(msg);
    }

    fn owner_of(&self, room: &str) -> usize {
        self.settings.hasher.owner_of(room, self.settings.workers)
    }

    fn refuse(&mut self, conn: ConnId, e: &ProtoError, out: &mut impl Deliver) {
        self.stats.requests_refused += 1;
        out.deliver(conn, &proto::error(e));
    }

    fn authorized(
        &mut self,
        conn: ConnId,
        identity: Option<&Identity>,
        room: &str,
        publish: bool,
    ) -> bool {
        let ok = identity.is_some_and(|id| {
            if publish {
                id.can_publish(room)
            } else {
                id.can_subscribe(room)
            }
        });
        if !ok {
            self.stats.forbidden += 1;
            self.events.push(BrokerEvent::Forbidden {
                conn,
                subject: identity.and_then(|id| id.subject.clone()),
                publish,
                room: Arc::from(room),
            });
        }
        ok
    }

    fn unsubscribe(
        &mut self,
        conn: ConnId,
        room: &str,
        rid: Option<&RawValue>,
    ) -> Result<(), Option<ProtoError>> {
        let not_subscribed =
            || Err(Some(ProtoError::new(rid, ErrorCode::NotSubscribed, "not subscribed")));
        let Some(subs) = self.subs.get_mut(&conn) else { return not_subscribed() };
        let Some(i) = subs.iter().position(|m| &*m.room == room) else {
            return not_subscribed();
        };
        let sub = subs.swap_remove(i);
        if subs.is_empty() {
            self.subs.remove(&conn);
        }
        self.leave_room(&sub, conn);
        Ok(())
    }

    fn leave_room(&mut self, sub: &Membership, conn: ConnId) {
        if sub.pending {
            // Not a member yet: the owner's answer finds it gone.
            return;
        }
        self.cluster_member(&sub.room, conn, false);
        let subs = &mut self.subs;
        let last = self.rooms.leave(sub, conn, |moved, room, pos| {
            if let Some(m) = subs.get_mut(&moved) {
                if let Some(s) = m.iter_mut().find(|s| Arc::ptr_eq(&s.room, room)) {
                    s.pos = pos;
                }
            }
        });
        if last && !self.inflight.contains_key(&sub.room) {
            self.lose_interest(&sub.room);
        }
    }

    /// This worker has no subscriber of `room` left: tell the owner.
    fn lose_interest(&mut self, room: &RoomName) {
        let owner = self.owner_of(room);
        let index = self.settings.index;
        if owner == index {
            self.owner_interest(room, index, false);
        } else {
            self.send_to(owner, BusMsg::Interest { room: room.clone(), worker: index, on: false });
        }
    }

    /// As the room's owner: `worker` gained or lost its subscribers of
    /// `room`; in cluster mode a room nobody here watches is unsubscribed.
    fn owner_interest(&mut self, room: &str, worker: usize, on: bool) {
        self.owned.interest(room, worker, on, self.now_ms);
        if !on {
            self.cluster_unwatched(room);
        }
    }

    /// As the room's owner: give the message its offset, encode it once,
    /// send the same bytes to every worker with subscribers, and keep them
    /// in the room's history if it has one.
    fn sequence_and_fan_out(
        &mut self,
        room: &str,
        from: Option<u64>,
        payload: Payload,
        out: &mut impl Deliver,
    ) {
        let Some(Sequenced { offset, epoch, workers, keep }) = self.owned.sequence(room) else {
            return;
        };
        let (frame, data_len) = cluster::encode(room, from, offset, epoch, &payload);
        let mut local = false;
        let mut shared: Option<RoomName> = None;
        for &w in workers {
            if w == self.settings.index {
                local = true;
            } else {
                let name = shared.get_or_insert_with(|| Arc::from(room)).clone();
                self.outgoing[w].push(BusMsg::Deliver { room: name, frame: frame.clone() });
            }
        }
        if local {
            self.deliver_local(room, &frame, out);
        }
        if keep {
            let binary = matches!(payload, Payload::Binary(_));
            self.owned.store(room, &frame, from, data_len, binary, self.now_ms);
        }
    }

    fn deliver_local(&mut self, room: &str, frame: &Bytes, out: &mut impl Deliver) {
        let members = self.rooms.members(room);
        self.stats.deliveries += members.len() as u64;
        for &member in members {
            out.deliver(member, frame);
        }
    }

    fn send_direct(
        &mut self,
        origin: ConnId,
        to: ConnId,
        frame: Bytes,
        rid: Option<&RawValue>,
        out: &mut impl Deliver,
    ) -> Result<(), Option<ProtoError>> {
        let worker = to.worker();
        let not_found = || Some(ProtoError::new(rid, ErrorCode::NotFound, "no such connection"));
        if worker == self.settings.index {
            return if out.deliver_direct(to, &frame) { Ok(()) } else { Err(not_found()) };
        }
        if worker >= self.settings.workers {
            return Err(not_found());
        }
        let id = rid.map(|r| Box::from(r.get()));
        self.send_to(worker, BusMsg::Direct { to, frame, origin, id });
        Err(None)
    }

    fn presence(
        &mut self,
        origin: ConnId,
        room: &str,
        rid: Option<&RawValue>,
        now_ms: u64,
        out: &mut impl Deliver,
    ) {
        if self.cluster_presence(origin, room, rid.map(|r| Box::from(r.get()))) {
            return;
        }
        let (count, members) = self.local_presence(room);
        let pending = PendingPresence {
            origin,
            id: rid.map(|r| r.get().to_string()),
            room: Arc::from(room),
            remaining: self.settings.workers - 1,
            count,
            members,
            deadline_ms: now_ms.saturating_add(self.settings.query_timeout_ms),
        };
        if pending.remaining == 0 {
            return self.answer_presence(pending, out);
        }
        self.next_query += 1;
        let query = self.next_query;
        let origin_worker = self.settings.index;
        for (w, o) in self.outgoing.iter_mut().enumerate() {
            if w != origin_worker {
                o.push(BusMsg::PresenceQuery { room: pending.room.clone(), query, origin_worker });
            }
        }
        self.presence.insert(query, pending);
    }

    /// This worker's member count of `room` and up to the presence cap of
    /// their ids.
    fn local_presence(&self, room: &str) -> (usize, Vec<u64>) {
        let max = self.settings.presence_max_members;
        let local = self.rooms.members(room);
        (local.len(), local.iter().take(max).map(|c| c.get()).collect())
    }

    fn answer_presence(&mut self, p: PendingPresence, out: &mut impl Deliver) {
        let max = self.settings.presence_max_members;
        let shown = p.members.len().min(max);
        let truncated = p.count > shown;
        let frame =
            proto::presence(p.id.as_deref(), &p.room, p.count, &p.members[..shown], truncated);
        out.deliver(p.origin, &frame);
    }
}

mod cluster;
mod subscribe;

#[cfg(test)]
mod tests;
