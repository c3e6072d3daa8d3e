//! The broker's side of the cluster backplane (`src/cluster/`), sans-IO.
//!
//! With `Sequencer::Cluster`, Redis sequences every room: a publish leaves
//! this worker as a [`Cmd::Publish`] and comes back, from the subscriber
//! thread to the room's owner worker, as [`BusMsg::Remote`] with its offset
//! and epoch; the owner encodes it once and fans it out like a local one
//! (`sequence_and_fan_out`). A publish is thus delivered once on every
//! node, its own included, in the cluster's order.
//!
//! Per room the owner keeps one [`CRoom`]: `Joining` while the subscriber
//! thread subscribes and reads the room's snapshot (subscribes wait, as
//! deferred asks), `Live` once the snapshot is applied (the local history
//! log mirrors the Redis stream from then on, so acks, recovery and replay
//! work as on one node), `Local` while Redis cannot be reached (the owner
//! sequences alone, in an epoch of its own). Whenever the position jumps
//! (a lost message, a new epoch, a resynchronisation that cannot be
//! filled) the room's subscribers get a `gap` frame: never a silent gap.

use std::collections::HashMap;

use bytes::Bytes;

use super::{Broker, Deliver};
use crate::cluster::{Cmd, RoomCmd};
use crate::id::ConnId;
use crate::pubsub::protocol::{self as proto, Epoch, ErrorCode, ProtoError, Since};
use crate::pubsub::room::RoomName;
use crate::pubsub::{BusMsg, HistoryAsk, Payload, RemoteEntry, RemoteMsg, Snapshot, SubscribeAsk};

/// A subscribe waiting for the room's snapshot.
#[derive(Debug)]
pub(super) enum Deferred {
    /// A connection of this (the owner's) worker; `joined` when it became a
    /// member with this subscribe.
    Local { conn: ConnId, id: Option<Box<str>>, since: Option<Since>, joined: bool },
    /// A connection of another worker.
    Remote(SubscribeAsk),
}

#[derive(Debug)]
enum CState {
    Joining(Vec<Deferred>),
    Live,
    Local,
}

/// The cluster state of a room this worker owns.
#[derive(Debug)]
struct CRoom {
    gen: u64,
    state: CState,
}

/// What a worker's broker keeps for the backplane.
#[derive(Debug, Default)]
pub(super) struct ClusterSide {
    /// Redis is reachable (set by the worker every iteration).
    up: bool,
    /// Bytes of commands the broker may still queue.
    credit: usize,
    cmds: Vec<Cmd>,
    room_cmds: Vec<RoomCmd>,
    rooms: HashMap<RoomName, CRoom>,
    next_gen: u64,
    /// Gaps told to subscribers.
    pub gaps: u64,
    /// Publishes refused with `overloaded`.
    pub overloaded: u64,
}

impl Broker {
    fn side(&mut self) -> Option<&mut ClusterSide> {
        self.cluster.as_deref_mut()
    }

    /// Cluster mode: whether Redis is reachable, and the bytes of commands
    /// the broker may queue for it. Call it before handling events.
    pub fn set_backplane(&mut self, up: bool, credit: usize) {
        if let Some(c) = self.side() {
            c.up = up;
            c.credit = credit;
        }
    }

    /// The commands and room commands for the backplane, oldest first.
    pub fn poll_cluster(&mut self) -> (Vec<Cmd>, Vec<RoomCmd>) {
        match self.side() {
            Some(c) => (std::mem::take(&mut c.cmds), std::mem::take(&mut c.room_cmds)),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Gives back room commands the backplane's channel could not take
    /// (tried again with the next [`Broker::poll_cluster`]).
    pub fn unsent_room_cmds(&mut self, mut cmds: Vec<RoomCmd>) {
        if let Some(c) = self.side() {
            cmds.append(&mut c.room_cmds);
            c.room_cmds = cmds;
        }
    }

    /// A command the backplane's channel could not take: a publish is
    /// delivered on this node alone, a request is answered `unavailable`.
    pub fn backplane_refused(&mut self, cmd: Cmd, out: &mut impl Deliver) {
        let (conn, id) = match cmd {
            Cmd::Publish { room, from, payload } => {
                if let Some(c) = self.side() {
                    c.overloaded += 1;
                }
                return self.local_publish(&room, from, payload, out);
            }
            Cmd::History(a) => (a.conn, a.id),
            Cmd::Presence { conn, id, .. } => (conn, id),
            Cmd::Member { .. } => return,
        };
        let rid = super::subscribe::raw_id(id.as_deref());
        let e = ProtoError::new(rid, ErrorCode::Unavailable, "the cluster backplane is overloaded");
        self.refuse(conn, &e, out);
    }

    /// True when commands wait for the backplane.
    pub fn has_cluster_output(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| !c.cmds.is_empty() || !c.room_cmds.is_empty())
    }

    /// (gaps told, publishes refused as overloaded)
    pub fn cluster_counts(&self) -> (u64, u64) {
        self.cluster.as_ref().map_or((0, 0), |c| (c.gaps, c.overloaded))
    }

    /// A publish in cluster mode, from this worker. `Err` when refused.
    pub(super) fn cluster_publish(
        &mut self,
        room: &str,
        from: Option<u64>,
        payload: Payload,
        rid: Option<&serde_json::value::RawValue>,
        out: &mut impl Deliver,
    ) -> Result<(), Option<ProtoError>> {
        let Some(c) = self.cluster.as_deref_mut() else { return Ok(()) };
        if !c.up {
            // Redis is away: the owner delivers on this node alone.
            self.local_publish(room, from, payload, out);
            return Ok(());
        }
        let cmd = Cmd::Publish { room: RoomName::from(room), from, payload };
        let cost = cmd.cost();
        if cost > c.credit {
            c.overloaded += 1;
            let msg = "the cluster backplane is overloaded; publish again later";
            return Err(Some(ProtoError::new(rid, ErrorCode::Overloaded, msg)));
        }
        c.credit -= cost;
        c.cmds.push(cmd);
        Ok(())
    }

    /// A publish delivered on this node only (Redis is away): to the owner.
    fn local_publish(
        &mut self,
        room: &str,
        from: Option<u64>,
        payload: Payload,
        out: &mut impl Deliver,
    ) {
        let owner = self.owner_of(room);
        if owner == self.settings.index {
            self.cluster_fallback(room, from, payload, out);
        } else {
            self.send_to(owner, BusMsg::Publish { room: RoomName::from(room), from, payload });
        }
    }

    /// As the owner: a publish Redis did not take. Rooms with subscribers
    /// here switch to an epoch of this node's own (their subscribers are
    /// told) and the message is sequenced here.
    pub(super) fn cluster_fallback(
        &mut self,
        room: &str,
        from: Option<u64>,
        payload: Payload,
        out: &mut impl Deliver,
    ) {
        let state = self.cluster.as_ref().and_then(|c| c.rooms.get(room)).map(|r| &r.state);
        match state {
            None => return, // nobody here: nothing to deliver on this node
            Some(CState::Local) => {}
            Some(CState::Joining(_)) => self.go_local(room, out),
            Some(CState::Live) => {
                let epoch = self.owned.mint_epoch();
                self.owned.reset_position(room, epoch, 0);
                self.set_state(room, CState::Local);
                self.tell_gap(room, out);
            }
        }
        self.sequence_and_fan_out(room, from, payload, out);
    }

    /// A `history` request in cluster mode: answered from Redis.
    pub(super) fn cluster_history(&mut self, ask: HistoryAsk, out: &mut impl Deliver) {
        let Some(c) = self.cluster.as_deref_mut() else { return };
        if c.up {
            c.cmds.push(Cmd::History(Box::new(ask)));
        } else {
            let rid = super::subscribe::raw_id(ask.id.as_deref());
            let e = ProtoError::new(
                rid,
                ErrorCode::Unavailable,
                "the cluster backplane (Redis) cannot be reached",
            );
            self.refuse(ask.conn, &e, out);
        }
    }

    /// A `presence` request in cluster mode: answered from Redis when it
    /// is reachable (false: answer it on this node).
    pub(super) fn cluster_presence(
        &mut self,
        conn: ConnId,
        room: &str,
        id: Option<Box<str>>,
    ) -> bool {
        match self.cluster.as_deref_mut() {
            Some(c) if c.up => {
                c.cmds.push(Cmd::Presence { room: RoomName::from(room), conn, id });
                true
            }
            _ => false,
        }
    }

    /// A connection joined or left a room on this worker.
    pub(super) fn cluster_member(&mut self, room: &RoomName, conn: ConnId, on: bool) {
        if let Some(c) = self.side() {
            c.cmds.push(Cmd::Member { room: room.clone(), conn: conn.get(), on });
        }
    }

    /// As the owner, before answering a subscribe: true when it must wait
    /// for the room's snapshot (then `item` is kept and answered later).
    pub(super) fn cluster_defer(&mut self, room: &str, item: Deferred) -> Option<Deferred> {
        let Some(c) = self.cluster.as_deref_mut() else { return Some(item) };
        if let Some(r) = c.rooms.get_mut(room) {
            return match &mut r.state {
                CState::Joining(waiting) => {
                    waiting.push(item);
                    None
                }
                CState::Live | CState::Local => Some(item),
            };
        }
        c.next_gen += 1;
        let gen = c.next_gen;
        let name = RoomName::from(room);
        // Subscribe in Redis even while it is away: the backplane keeps the
        // wish and acts on it when Redis is back.
        c.room_cmds.push(RoomCmd::Subscribe { room: name.clone(), gen });
        if c.up {
            c.rooms.insert(name, CRoom { gen, state: CState::Joining(vec![item]) });
            None
        } else {
            c.rooms.insert(name, CRoom { gen, state: CState::Local });
            Some(item)
        }
    }

    /// As the owner: after an interest change, a room nobody on this node
    /// watches any more is unsubscribed and forgotten.
    pub(super) fn cluster_unwatched(&mut self, room: &str) {
        let Some(c) = self.cluster.as_deref_mut() else { return };
        let joining = matches!(c.rooms.get(room).map(|r| &r.state), Some(CState::Joining(_)));
        if joining || !self.owned.unwatched(room) {
            return;
        }
        if let Some((name, _)) = c.rooms.remove_entry(room) {
            c.room_cmds.push(RoomCmd::Unsubscribe { room: name });
        }
        self.owned.drop_room(room);
    }

    /// As the owner: a message Redis sequenced.
    pub(super) fn handle_remote(&mut self, m: RemoteMsg, out: &mut impl Deliver) {
        let live = self
            .cluster
            .as_ref()
            .and_then(|c| c.rooms.get(&m.room))
            .is_some_and(|r| matches!(r.state, CState::Live));
        if !live {
            return; // the snapshot on its way holds it, or nobody here wants it
        }
        self.apply(&m.room, m.epoch, m.entry, out);
    }

    /// Applies one sequenced message to a live room: in order it is fanned
    /// out; one already held is dropped; past a gap (or in a new epoch) the
    /// subscribers are told, then it is fanned out.
    fn apply(&mut self, room: &str, epoch: Epoch, e: RemoteEntry, out: &mut impl Deliver) {
        let Some((offset, current)) = self.owned.position_of(room) else { return };
        if epoch == current && e.offset <= offset {
            return;
        }
        if epoch != current || e.offset != offset + 1 {
            self.owned.reset_position(room, epoch, e.offset.saturating_sub(1));
            self.tell_gap(room, out);
        }
        self.sequence_and_fan_out(room, e.from, e.payload, out);
    }

    /// As the owner: the room's snapshot, after a subscribe or a reconnect.
    pub(super) fn handle_live(&mut self, snap: Snapshot, out: &mut impl Deliver) {
        let Some(c) = self.cluster.as_deref_mut() else { return };
        let Some(r) = c.rooms.get_mut(&snap.room).filter(|r| r.gen == snap.gen) else {
            return; // unsubscribed since
        };
        let state = std::mem::replace(&mut r.state, CState::Live);
        match state {
            CState::Joining(waiting) => {
                self.install(&snap);
                self.answer_deferred(&snap.room, waiting, out);
            }
            CState::Live | CState::Local => self.resync(snap, out),
        }
    }

    /// Redis is away: rooms waiting for a snapshot are served locally.
    pub(super) fn handle_cluster_down(&mut self, out: &mut impl Deliver) {
        let Some(c) = self.cluster.as_deref() else { return };
        let joining: Vec<RoomName> = c
            .rooms
            .iter()
            .filter(|(_, r)| matches!(r.state, CState::Joining(_)))
            .map(|(n, _)| n.clone())
            .collect();
        for room in joining {
            self.go_local(&room, out);
        }
    }

    /// A joining room starts on this node alone; its waiting subscribes are
    /// answered with a local position.
    fn go_local(&mut self, room: &str, out: &mut impl Deliver) {
        let Some(r) = self.side().and_then(|c| c.rooms.get_mut(room)) else { return };
        let CState::Joining(waiting) = std::mem::replace(&mut r.state, CState::Local) else {
            return;
        };
        let epoch = self.owned.mint_epoch();
        self.owned.reset_position(room, epoch, 0);
        self.answer_deferred(&RoomName::from(room), waiting, out);
    }

    fn set_state(&mut self, room: &str, state: CState) {
        if let Some(r) = self.side().and_then(|c| c.rooms.get_mut(room)) {
            r.state = state;
        }
    }

    /// The room's position and stored messages become the snapshot's.
    fn install(&mut self, snap: &Snapshot) {
        let room = &*snap.room;
        let contiguous = snap.entries.last().is_some_and(|e| e.offset == snap.offset)
            && snap.entries.windows(2).all(|w| w[1].offset == w[0].offset + 1);
        let keeps = self.owned.history.settings.class_of(room).is_some();
        if !(contiguous && keeps) {
            self.owned.reset_position(room, snap.epoch, snap.offset);
        } else {
            let first = snap.entries[0].offset;
            self.owned.reset_position(room, snap.epoch, first - 1);
            for e in &snap.entries {
                if let Some(s) = self.owned.sequence(room) {
                    let (frame, len) = encode(room, e.from, s.offset, s.epoch, &e.payload);
                    let binary = matches!(e.payload, Payload::Binary(_));
                    self.owned.store(room, &frame, e.from, len, binary, self.now_ms);
                }
            }
        }
    }

    /// A snapshot for a room already served: what was missed is delivered
    /// if the snapshot holds all of it, else the subscribers are told.
    fn resync(&mut self, snap: Snapshot, out: &mut impl Deliver) {
        let room = snap.room.clone();
        let Some((offset, epoch)) = self.owned.position_of(&room) else {
            return self.install(&snap);
        };
        if snap.epoch == epoch && snap.offset == offset {
            return;
        }
        let fills = snap.epoch == epoch
            && snap.offset > offset
            && snap.entries.first().is_some_and(|e| e.offset <= offset + 1)
            && snap.entries.last().is_some_and(|e| e.offset == snap.offset);
        if fills {
            for e in snap.entries.into_iter().filter(|e| e.offset > offset) {
                self.apply(&room, snap.epoch, e, out);
            }
        } else {
            self.install(&snap);
            self.tell_gap(&room, out);
        }
    }

    fn answer_deferred(&mut self, room: &RoomName, waiting: Vec<Deferred>, out: &mut impl Deliver) {
        let index = self.settings.index;
        let max_replay = self.settings.max_replay_bytes;
        for item in waiting {
            match item {
                Deferred::Remote(ask) => self.handle_subscribe_ask(ask),
                Deferred::Local { conn, id, since, joined } => {
                    let now = self.now_ms;
                    let pos = if joined {
                        self.owned.subscribe(room, index, since, now, max_replay)
                    } else {
                        self.owned.position(room, since, now)
                    };
                    self.answer(conn, room, id.as_deref(), pos, joined, out);
                }
            }
        }
        if self.rooms.members(room).is_empty() {
            self.owner_interest(room, index, false);
        }
    }

    /// Every subscriber of the room on this node gets a `gap` frame with the
    /// room's position now.
    fn tell_gap(&mut self, room: &str, out: &mut impl Deliver) {
        let Some((offset, epoch)) = self.owned.position_of(room) else { return };
        let frame = proto::gap(room, offset, epoch);
        if let Some(c) = self.side() {
            c.gaps += 1;
        }
        let index = self.settings.index;
        let workers = self.owned.rooms.get(room).map(|r| r.workers.clone()).unwrap_or_default();
        let name = RoomName::from(room);
        for w in workers {
            if w == index {
                self.deliver_local(room, &frame, out);
            } else {
                self.send_to(w, BusMsg::Deliver { room: name.clone(), frame: frame.clone() });
            }
        }
    }
}

/// The delivery frame of one message and the length of its payload.
pub(super) fn encode(
    room: &str,
    from: Option<u64>,
    offset: u64,
    epoch: Epoch,
    payload: &Payload,
) -> (Bytes, usize) {
    match payload {
        Payload::Json(data) => {
            let data = std::str::from_utf8(data).unwrap_or("null");
            (proto::message(room, from, offset, epoch, data), data.len())
        }
        Payload::Binary(data) => (proto::message_binary(room, from, offset, data), data.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BrokerSettings, RoomHasher, Sequencer};
    use super::*;
    use serde_json::Value;

    #[derive(Default)]
    struct Sink(Vec<Value>);

    impl Deliver for Sink {
        fn deliver(&mut self, _to: ConnId, frame: &Bytes) -> bool {
            // Small text frames: a 2-byte header.
            self.0.push(serde_json::from_slice(&frame[2..]).expect("JSON"));
            true
        }
        fn deliver_direct(&mut self, to: ConnId, frame: &Bytes) -> bool {
            self.deliver(to, frame)
        }
    }

    fn broker() -> Broker {
        let settings = BrokerSettings {
            sequencer: Sequencer::Cluster,
            ..BrokerSettings::new(0, 1, RoomHasher::new())
        };
        let mut b = Broker::new(settings);
        b.set_backplane(true, 1 << 20);
        b
    }

    fn request(b: &mut Broker, c: ConnId, text: &str, out: &mut Sink) {
        let payload = Bytes::copy_from_slice(text.as_bytes());
        let identity = crate::auth::Identity::anonymous_all();
        b.handle_request(c, Some(&identity), OpData::Text, &payload, 0, out);
    }

    fn remote(room: &str, epoch: Epoch, offset: u64, data: &str) -> BusMsg {
        let payload = Payload::Json(Bytes::copy_from_slice(data.as_bytes()));
        let entry = RemoteEntry { offset, from: None, payload };
        BusMsg::Remote(Box::new(RemoteMsg { room: RoomName::from(room), epoch, entry }))
    }

    use tungstenite::protocol::frame::coding::Data as OpData;

    #[test]
    fn a_subscribe_waits_for_the_snapshot_then_messages_apply_in_offset_order() {
        let (mut b, mut out) = (broker(), Sink::default());
        let c = ConnId::from_parts(0, 1, 1);
        request(&mut b, c, r#"{"type":"subscribe","room":"r","id":1}"#, &mut out);
        assert!(out.0.is_empty(), "no ack before the room's position is known");
        let (cmds, rooms) = b.poll_cluster();
        assert!(matches!(&cmds[..], [Cmd::Member { on: true, .. }]));
        let [RoomCmd::Subscribe { gen, .. }] = &rooms[..] else { panic!("{rooms:?}") };
        let e = Epoch(0xabc);
        let snap = Snapshot { room: "r".into(), gen: *gen, epoch: e, offset: 5, entries: vec![] };
        b.handle_bus(BusMsg::Live(Box::new(snap)), &mut out);
        assert_eq!(out.0.remove(0)["offset"], 5, "the ack carries the cluster's position");
        b.handle_bus(remote("r", e, 5, "0"), &mut out);
        b.handle_bus(remote("r", e, 6, "6"), &mut out);
        b.handle_bus(remote("r", e, 6, "6"), &mut out);
        assert_eq!(out.0.len(), 1, "held offsets are dropped: {:?}", out.0);
        assert_eq!(
            (out.0[0]["offset"].as_u64(), out.0[0]["epoch"].as_str()),
            (Some(6), Some("00000abc"))
        );
        // A jump: the subscriber is told, then gets the message.
        b.handle_bus(remote("r", e, 9, "9"), &mut out);
        assert_eq!(
            (out.0[1]["type"].as_str(), out.0[1]["offset"].as_u64()),
            (Some("gap"), Some(8))
        );
        assert_eq!(out.0[2]["offset"], 9);
        // A new epoch: told too.
        b.handle_bus(remote("r", Epoch(7), 1, "1"), &mut out);
        assert_eq!(
            (out.0[3]["type"].as_str(), out.0[3]["epoch"].as_str()),
            (Some("gap"), Some("00000007"))
        );
        assert_eq!(out.0[4]["offset"], 1);
    }

    #[test]
    fn publishes_leave_for_redis_within_the_budget_and_come_back_only_from_it() {
        let (mut b, mut out) = (broker(), Sink::default());
        let c = ConnId::from_parts(0, 1, 1);
        request(&mut b, c, r#"{"type":"publish","room":"r","data":1,"id":1}"#, &mut out);
        assert_eq!(out.0.remove(0)["type"], "ack");
        let (cmds, _) = b.poll_cluster();
        assert!(
            matches!(&cmds[..], [Cmd::Publish { .. }]),
            "not delivered locally: Redis sequences it"
        );
        b.set_backplane(true, 10);
        request(&mut b, c, r#"{"type":"publish","room":"r","data":2,"id":2}"#, &mut out);
        assert_eq!(
            (out.0[0]["type"].as_str(), out.0[0]["code"].as_str()),
            (Some("error"), Some("overloaded"))
        );
        assert!(b.poll_cluster().0.is_empty());
        assert_eq!(b.cluster_counts().1, 1);
    }

    #[test]
    fn the_last_subscriber_leaving_unsubscribes_the_node() {
        let (mut b, mut out) = (broker(), Sink::default());
        let c = ConnId::from_parts(0, 1, 1);
        request(&mut b, c, r#"{"type":"subscribe","room":"r"}"#, &mut out);
        let (_, rooms) = b.poll_cluster();
        let [RoomCmd::Subscribe { gen, .. }] = &rooms[..] else { panic!() };
        let snap =
            Snapshot { room: "r".into(), gen: *gen, epoch: Epoch(1), offset: 0, entries: vec![] };
        b.handle_bus(BusMsg::Live(Box::new(snap)), &mut out);
        b.handle_close(c);
        let (cmds, rooms) = b.poll_cluster();
        assert!(matches!(&cmds[..], [Cmd::Member { on: false, .. }]));
        assert!(matches!(&rooms[..], [RoomCmd::Unsubscribe { .. }]), "{rooms:?}");
    }
}
