//! Subscribing with a position, recovery and `history` requests: the part of
//! the [`Broker`] that asks a room's owner and acts on its answer.
//!
//! On the owner's worker a subscribe is decided at once. Elsewhere the
//! connection keeps a *pending* [`Membership`] (it counts against its room
//! limit but receives nothing) while [`BusMsg::Subscribe`] travels to the
//! owner; the answer makes it a member and carries the ack's position and
//! the replay. Every answer arrives in the owner's channel order, behind the
//! deliveries it already sent, so nothing sent before the position reaches
//! the new member and nothing after it is missed. The worker keeps the room
//! of interest (no `Interest { on: false }`) while an answer is awaited.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::cluster::Deferred;
use super::{Broker, Deliver};
use crate::id::ConnId;
use crate::pubsub::history::Position;
use crate::pubsub::protocol::{self as proto, ErrorCode, ProtoError, Since};
use crate::pubsub::room::{Joined, Membership, RoomName};
use crate::pubsub::{BusMsg, HistoryAsk, SubscribeAnswer, SubscribeAsk};

impl Broker {
    /// A `subscribe`. Answered here (owner on this worker) or when the
    /// owner's answer arrives; `Err(None)` means answered.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        room: &str,
        since: Option<Since>,
        rid: Option<&RawValue>,
        out: &mut impl Deliver,
    ) -> Result<(), Option<ProtoError>> {
        let max_rooms = self.settings.max_rooms;
        let index = self.settings.index;
        let owner = self.owner_of(room);
        let subs = self.subs.entry(conn).or_default();
        let already = subs.iter().any(|m| &*m.room == room);
        let mut joined_here = false;
        let refuse = |subs: &Vec<Membership>, e: ProtoError| (subs.is_empty(), e);
        let refused = if already {
            None
        } else if subs.len() >= max_rooms {
            let msg = format!("already in the maximum of {max_rooms} rooms");
            Some(refuse(subs, ProtoError::new(rid, ErrorCode::TooManyRooms, msg)))
        } else if owner == index {
            match self.rooms.join(room, conn, subs, self.settings.max_room_members) {
                Joined::Full => {
                    Some(refuse(subs, ProtoError::new(rid, ErrorCode::RoomFull, "room is full")))
                }
                Joined::New { .. } => {
                    joined_here = true;
                    None
                }
                Joined::Already => None,
            }
        } else {
            None
        };
        if let Some((empty, e)) = refused {
            if empty {
                self.subs.remove(&conn);
            }
            return Err(Some(e));
        }
        let id = rid.map(|r| Box::<str>::from(r.get()));
        if owner == index {
            if joined_here {
                self.cluster_member(&RoomName::from(room), conn, true);
            }
            let item = Deferred::Local { conn, id, since, joined: !already };
            let Some(Deferred::Local { id, .. }) = self.cluster_defer(room, item) else {
                return Err(None); // answered when the room's snapshot is in
            };
            let now = self.now_ms;
            let pos = if already {
                self.owned.position(room, since, now)
            } else {
                self.owned.subscribe(room, index, since, now, self.settings.max_replay_bytes)
            };
            self.answer(conn, room, id.as_deref(), pos, !already, out);
            return Err(None);
        }
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        let name: RoomName = Arc::from(room);
        if !already {
            subs.push(Membership { room: name.clone(), pos: token, pending: true });
        }
        *self.inflight.entry(name.clone()).or_default() += 1;
        let ask = SubscribeAsk { room: name, conn, token, id, since };
        self.send_to(owner, BusMsg::Subscribe(Box::new(ask)));
        Err(None)
    }

    /// As the owner: a subscribe from another worker. That worker is
    /// interested from now on; it gets the position and the replay.
    pub(super) fn handle_subscribe_ask(&mut self, ask: SubscribeAsk) {
        let worker = ask.conn.worker();
        if worker >= self.outgoing.len() {
            return;
        }
        let room = ask.room.clone();
        let Some(Deferred::Remote(ask)) = self.cluster_defer(&room, Deferred::Remote(ask)) else {
            return; // answered when the room's snapshot is in
        };
        let max_replay = self.settings.max_replay_bytes;
        let pos = self.owned.subscribe(&ask.room, worker, ask.since, self.now_ms, max_replay);
        let answer = SubscribeAnswer {
            room: ask.room,
            conn: ask.conn,
            token: ask.token,
            id: ask.id,
            offset: pos.offset,
            epoch: pos.epoch,
            recovered: pos.recovered,
            replay: pos.replay,
        };
        self.send_to(worker, BusMsg::Subscribed(Box::new(answer)));
    }

    /// The owner answered a subscribe: the connection, if it still waits
    /// for it, becomes a member, then gets its ack and replay.
    pub(super) fn handle_subscribed(&mut self, a: SubscribeAnswer, out: &mut impl Deliver) {
        if let Some(n) = self.inflight.get_mut(&a.room) {
            *n -= 1;
            if *n == 0 {
                self.inflight.remove(&a.room);
            }
        }
        let mut joined = false;
        let mut full = false;
        if let Some(subs) = self.subs.get_mut(&a.conn) {
            let waiting = |m: &Membership| m.pending && m.pos == a.token && m.room == a.room;
            if let Some(i) = subs.iter().position(waiting) {
                subs.swap_remove(i);
                match self.rooms.join(&a.room, a.conn, subs, self.settings.max_room_members) {
                    Joined::New { .. } => joined = true,
                    Joined::Full => full = true,
                    Joined::Already => {}
                }
                if subs.is_empty() {
                    self.subs.remove(&a.conn);
                }
            }
        }
        if joined {
            self.cluster_member(&a.room, a.conn, true);
        }
        if full {
            let rid = raw_id(a.id.as_deref());
            let e = ProtoError::new(rid, ErrorCode::RoomFull, "room is full");
            self.refuse(a.conn, &e, out);
        } else {
            let pos = Position {
                offset: a.offset,
                epoch: a.epoch,
                recovered: a.recovered,
                replay: a.replay,
            };
            self.answer(a.conn, &a.room, a.id.as_deref(), pos, joined, out);
        }
        if self.rooms.members(&a.room).is_empty() && !self.inflight.contains_key(&a.room) {
            self.lose_interest(&a.room);
        }
    }

    /// The ack of a subscribe (when it had an `id` or a `since`), then the
    /// replay if `joined` and recovered.
    pub(super) fn answer(
        &mut self,
        conn: ConnId,
        room: &str,
        id: Option<&str>,
        pos: Position,
        joined: bool,
        out: &mut impl Deliver,
    ) {
        let recovered = pos.recovered.map(|r| r && joined);
        if id.is_some() || recovered.is_some() {
            out.deliver(conn, &proto::subscribed(id, room, pos.offset, pos.epoch, recovered));
        }
        if recovered == Some(true) {
            self.stats.replayed += pos.replay.len() as u64;
            for frame in &pos.replay {
                out.deliver(conn, frame);
            }
        }
    }

    /// A `history` request: answered by the room's owner.
    pub(super) fn history(
        &mut self,
        conn: ConnId,
        room: &str,
        limit: usize,
        since: Option<Since>,
        rid: Option<&RawValue>,
        out: &mut impl Deliver,
    ) {
        let owner = self.owner_of(room);
        let id = rid.map(|r| Box::<str>::from(r.get()));
        if self.cluster.is_some() {
            let ask = HistoryAsk { room: Arc::from(room), conn, id, limit, since };
            return self.cluster_history(ask, out);
        }
        if owner == self.settings.index {
            let frame = self.history_page(room, limit, since, id.as_deref());
            out.deliver(conn, &frame);
        } else {
            let ask = HistoryAsk { room: Arc::from(room), conn, id, limit, since };
            self.send_to(owner, BusMsg::History(Box::new(ask)));
        }
    }

    /// As the owner: a `history` request from another worker's connection.
    pub(super) fn handle_history_ask(&mut self, ask: HistoryAsk, out: &mut impl Deliver) {
        let frame = self.history_page(&ask.room, ask.limit, ask.since, ask.id.as_deref());
        let worker = ask.conn.worker();
        if worker == self.settings.index {
            out.deliver(ask.conn, &frame);
        } else if worker < self.outgoing.len() {
            self.send_to(worker, BusMsg::Reply { to: ask.conn, frame });
        }
    }

    fn history_page(
        &mut self,
        room: &str,
        limit: usize,
        since: Option<Since>,
        id: Option<&str>,
    ) -> Bytes {
        let max = self.settings.max_data_bytes;
        let page = self.owned.read(room, limit, since, max, self.now_ms);
        proto::history(id, room, page.offset, page.epoch, &page.items, page.truncated)
    }
}

/// A raw JSON id carried over the bus, as the error encoder takes it.
pub(super) fn raw_id(id: Option<&str>) -> Option<&RawValue> {
    id.and_then(|s| serde_json::from_str::<&RawValue>(s).ok())
}
