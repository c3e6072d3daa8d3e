//! Bounded per-room message history, sans-IO (time is passed in).
//!
//! The owner worker of a room keeps its history, at the point where each
//! message gets its offset and its one encoded frame
//! ([`OwnedRooms::sequence`](super::room::OwnedRooms::sequence)): a
//! [`RoomLog`] stores that same frame (`Bytes`, shared with the fan-out, not
//! copied) for the last `size` messages, each for at most `ttl_ms`.
//!
//! What bounds it:
//! - per room, `size` messages and `ttl_ms` age ([`Retention`], from
//!   `[pubsub] history_size` / `history_ttl_ms` and the first matching
//!   `[[pubsub.history_rooms]]` pattern);
//! - per worker, `max_bytes` (the node's `history_max_bytes` split evenly
//!   over the workers, each owning an even share of rooms): over it, the
//!   oldest stored message (or the oldest idle room) on the worker goes
//!   first, whatever its room.
//!
//! A room with history keeps its position (offset, epoch) while it has
//! subscribers or stored messages, and for `ttl_ms` after it has neither;
//! then it is forgotten and its next position starts a new epoch.
//!
//! How: every stored message also gets a [`Stamp`] in its retention class's
//! queue, in time order (one TTL per class, so the front is the next to
//! expire, and the oldest message overall is the oldest class front). A
//! stamp whose message went already (size eviction) stays until it reaches
//! the front or a compaction drops it; compaction runs when stale stamps
//! outnumber live ones, so the queues stay within twice the messages held.
//!
//! This module must not touch sockets, channels or the clock.

use std::collections::VecDeque;
use std::mem::size_of;

use bytes::Bytes;

use super::protocol::{self as proto, Body, Epoch, Since};
use super::room::{OwnedRoom, OwnedRooms, RoomName};
use crate::config::PubSubConfig;

/// How much of one room's history is kept. History is on when both are
/// above zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Most messages kept.
    pub size: usize,
    /// Longest a message is kept, milliseconds.
    pub ttl_ms: u64,
}

impl Retention {
    /// True when this keeps anything.
    pub fn is_on(&self) -> bool {
        self.size > 0 && self.ttl_ms > 0
    }
}

/// History limits of one worker: the retention of every room (a default and
/// per-pattern overrides) and the byte cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// Class 0 is the default; class `i` > 0 belongs to `patterns[i - 1]`.
    classes: Vec<Retention>,
    /// (text, is a prefix): an exact room name, or a prefix from `name*`.
    patterns: Vec<(Box<str>, bool)>,
    /// Bytes all history may hold (messages, their bookkeeping, idle rooms).
    pub max_bytes: usize,
}

/// Default cap on the bytes of all history on a node: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings::new(Retention::default(), DEFAULT_MAX_BYTES)
    }
}

impl HistorySettings {
    /// `default` for every room, under a cap of `max_bytes`.
    pub fn new(default: Retention, max_bytes: usize) -> HistorySettings {
        HistorySettings { classes: vec![default], patterns: Vec::new(), max_bytes }
    }

    /// Adds an override: rooms matching `pattern` (an exact name, or a
    /// prefix followed by `*`) keep `retention`. The first matching pattern
    /// wins.
    pub fn with_rule(mut self, pattern: &str, retention: Retention) -> HistorySettings {
        let (text, prefix) = match pattern.strip_suffix('*') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        self.patterns.push((text.into(), prefix));
        self.classes.push(retention);
        self
    }

    /// From `[pubsub]` (validated): the limits of the whole node.
    pub fn from_config(c: &PubSubConfig) -> HistorySettings {
        let default = Retention { size: c.history_size, ttl_ms: c.history_ttl_ms };
        let mut s = HistorySettings::new(default, c.history_max_bytes);
        for r in &c.history_rooms {
            s = s.with_rule(&r.pattern, Retention { size: r.size, ttl_ms: r.ttl_ms });
        }
        s
    }

    /// The share of one of `workers` workers: the same retention, an even
    /// share of the byte cap.
    pub fn per_worker(&self, workers: usize) -> HistorySettings {
        HistorySettings { max_bytes: self.max_bytes / workers.max(1), ..self.clone() }
    }

    /// True when no room keeps history.
    pub fn is_off(&self) -> bool {
        !self.classes.iter().any(Retention::is_on)
    }

    /// The retention class of `room`, or `None` when it keeps no history.
    pub fn class_of(&self, room: &str) -> Option<u16> {
        let i = self
            .patterns
            .iter()
            .position(|(t, prefix)| if *prefix { room.starts_with(&**t) } else { room == &**t })
            .map_or(0, |i| i + 1);
        self.classes[i].is_on().then_some(i as u16)
    }

    fn retention(&self, class: u16) -> Retention {
        self.classes[class as usize]
    }

    /// What `room` keeps (zero when it keeps no history).
    pub fn retention_of(&self, room: &str) -> Retention {
        self.class_of(room).map(|c| self.retention(c)).unwrap_or_default()
    }
}

/// One stored message: the delivery frame every subscriber got.
#[derive(Debug)]
struct Stored {
    frame: Bytes,
    /// Publisher connection id, 0 for the server.
    from: u64,
    /// Where the payload starts in `frame` (JSON `data`, or binary payload).
    data_at: u32,
    binary: bool,
}

impl Stored {
    fn body(&self) -> Body<'_> {
        let at = self.data_at as usize;
        if self.binary {
            Body::Binary(&self.frame[at..])
        } else {
            // The frame is `...,"data":<data>}`: the data ends before the
            // last byte, and was valid UTF-8 when encoded.
            Body::Json(std::str::from_utf8(&self.frame[at..self.frame.len() - 1]).unwrap_or("null"))
        }
    }

    fn data_len(&self) -> usize {
        self.frame.len() - self.data_at as usize - usize::from(!self.binary)
    }
}

/// A stored message in its class's time-ordered queue.
struct Stamp {
    room: RoomName,
    epoch: Epoch,
    offset: u64,
    at_ms: u64,
}

/// A room that had neither subscribers nor stored messages at `since_ms`.
struct IdleMark {
    room: RoomName,
    epoch: Epoch,
    since_ms: u64,
}

/// What one stored message costs against the byte cap besides its frame.
pub const ENTRY_OVERHEAD: usize = size_of::<Stored>() + size_of::<Stamp>();

/// What one room with history costs against the byte cap besides its name
/// (the room, its log, a hash table slot, an idle mark).
pub const ROOM_OVERHEAD: usize =
    size_of::<OwnedRoom>() + size_of::<RoomLog>() + size_of::<IdleMark>() + 64;

/// The stored messages of one room: offsets `first ..= first + len - 1`,
/// contiguous (every message of the room is stored, the oldest leave
/// first).
#[derive(Debug)]
pub struct RoomLog {
    name: RoomName,
    class: u16,
    first: u64,
    entries: VecDeque<Stored>,
    /// Since when the room has had neither subscribers nor messages.
    idle_since_ms: Option<u64>,
    /// An [`IdleMark`] for this room is queued.
    marked: bool,
}

impl RoomLog {
    pub(super) fn new(name: RoomName, class: u16) -> RoomLog {
        RoomLog {
            name,
            class,
            first: 1,
            entries: VecDeque::new(),
            idle_since_ms: None,
            marked: false,
        }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no message is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Offset of the oldest message held (meaningless when empty).
    pub fn first(&self) -> u64 {
        self.first
    }

    pub(super) fn busy(&mut self) {
        self.idle_since_ms = None;
    }

    /// The frames after `offset` (which must be at least `first - 1`).
    fn after(&self, offset: u64) -> impl Iterator<Item = &Stored> {
        let skip = offset.saturating_add(1).saturating_sub(self.first) as usize;
        self.entries.range(skip.min(self.entries.len())..)
    }
}

/// Messages evicted from history, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Over the room's `size`.
    pub size: u64,
    /// Older than the room's `ttl_ms`.
    pub ttl: u64,
    /// Over the byte cap (the oldest on the worker).
    pub bytes: u64,
}

/// The bookkeeping of all history on one worker (the logs themselves are in
/// their rooms).
pub struct History {
    pub(super) settings: HistorySettings,
    /// Per class, stored messages in time order.
    stamps: Vec<VecDeque<Stamp>>,
    /// Per class, rooms that went idle, in time order.
    idle: Vec<VecDeque<IdleMark>>,
    /// Bytes held, counted as in [`ENTRY_OVERHEAD`] and [`ROOM_OVERHEAD`].
    pub(super) bytes: usize,
    /// Messages held.
    live: usize,
    /// Stamps queued (live or stale).
    queued: usize,
    /// Messages evicted so far.
    pub(super) evictions: Evictions,
}

impl History {
    pub(super) fn new(settings: HistorySettings) -> History {
        let n = settings.classes.len();
        History {
            settings,
            stamps: (0..n).map(|_| VecDeque::new()).collect(),
            idle: (0..n).map(|_| VecDeque::new()).collect(),
            bytes: 0,
            live: 0,
            queued: 0,
            evictions: Evictions::default(),
        }
    }

    pub(super) fn room_cost(name: &str) -> usize {
        ROOM_OVERHEAD + name.len()
    }
}

/// The position a subscribe gets, and what it recovers.
#[derive(Debug)]
pub struct Position {
    /// The room's last offset (the position after any replay).
    pub offset: u64,
    /// The room's epoch.
    pub epoch: Epoch,
    /// With a `since`: whether the messages after it follow.
    pub recovered: Option<bool>,
    /// The recovered frames, oldest first (empty unless recovered).
    pub replay: Vec<Bytes>,
}

/// A `history` reply's content.
#[derive(Debug)]
pub struct Page {
    /// The room's last offset.
    pub offset: u64,
    /// The room's epoch.
    pub epoch: Epoch,
    /// Entries written by [`proto::history_item`], oldest first.
    pub items: Vec<String>,
    /// Some matching messages were left out (by `limit` or the byte bound).
    pub truncated: bool,
}

fn cost(frame: &Bytes) -> usize {
    frame.len() + ENTRY_OVERHEAD
}

impl OwnedRooms {
    /// Stores the frame of the message just sequenced in `room` (its last
    /// offset), published by `from`; `data_len` is the length of the payload
    /// (JSON `data` or binary) that ends the frame.
    pub fn store(
        &mut self,
        room: &str,
        frame: &Bytes,
        from: Option<u64>,
        data_len: usize,
        binary: bool,
        now_ms: u64,
    ) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let offset = r.offset;
        let Some(log) = r.log.as_deref_mut() else { return };
        if log.entries.is_empty() {
            log.first = offset;
        }
        debug_assert_eq!(log.first + log.entries.len() as u64, offset, "bug: history gap");
        let data_at = frame.len() - data_len - usize::from(!binary);
        log.entries.push_back(Stored {
            frame: frame.clone(),
            from: from.unwrap_or(0),
            data_at: data_at as u32,
            binary,
        });
        log.busy();
        let h = &mut self.history;
        h.bytes += cost(frame);
        h.live += 1;
        h.queued += 1;
        let stamp = Stamp { room: log.name.clone(), epoch: r.epoch, offset, at_ms: now_ms };
        h.stamps[log.class as usize].push_back(stamp);
        if log.entries.len() > h.settings.retention(log.class).size {
            if let Some(old) = log.entries.pop_front() {
                log.first += 1;
                h.bytes -= cost(&old.frame);
                h.live -= 1;
                h.evictions.size += 1;
            }
        }
        self.evict_over_cap(now_ms);
        if self.history.queued > 2 * self.history.live + 1024 {
            self.compact();
        }
    }

    /// Subscribes `worker` to `room` (it gains interest) and returns the
    /// room's position; with `since`, whether the messages after it are
    /// kept (and their frames, unless they sum to more than `max_replay`
    /// bytes, then nothing is recovered).
    pub fn subscribe(
        &mut self,
        room: &str,
        worker: usize,
        since: Option<Since>,
        now_ms: u64,
        max_replay: usize,
    ) -> Position {
        self.interest_in(room, worker, true, now_ms);
        let r = self.rooms.get(room).expect("bug: interest creates the room");
        let replay = since.and_then(|s| recover(r, s, max_replay));
        Position {
            offset: r.offset,
            epoch: r.epoch,
            recovered: since.map(|_| replay.is_some()),
            replay: replay.unwrap_or_default(),
        }
    }

    /// The room's position without subscribing, for an ack to a connection
    /// already in the room: nothing is recovered.
    pub fn position(&mut self, room: &str, since: Option<Since>, now_ms: u64) -> Position {
        let (offset, epoch) = self.peek(room, now_ms);
        Position { offset, epoch, recovered: since.map(|_| false), replay: Vec::new() }
    }

    /// Up to `limit` stored messages of `room`: the newest ones, or with
    /// `since` the first ones after it (none if its epoch is not the room's).
    /// Their entries sum to at most `max_bytes`, except that one message is
    /// always given when any matches.
    pub fn read(
        &mut self,
        room: &str,
        limit: usize,
        since: Option<Since>,
        max_bytes: usize,
        now_ms: u64,
    ) -> Page {
        let (offset, epoch) = self.peek(room, now_ms);
        let mut page = Page { offset, epoch, items: Vec::new(), truncated: false };
        let Some(log) = self.rooms.get(room).and_then(|r| r.log.as_deref()) else {
            return page;
        };
        let mut total = 0;
        let mut take = |page: &mut Page, off: u64, s: &Stored| {
            if page.items.len() == limit {
                return false;
            }
            let mut item = String::with_capacity(48 + s.data_len() * 4 / 3);
            let from = (s.from != 0).then_some(s.from);
            proto::history_item(&mut item, off, from, s.body());
            if total + item.len() > max_bytes && !page.items.is_empty() {
                return false;
            }
            total += item.len();
            page.items.push(item);
            true
        };
        match since {
            Some(s) if s.epoch != epoch || s.offset >= offset => {}
            Some(s) => {
                let start = s.offset.max(log.first - 1);
                for (i, stored) in log.after(start).enumerate() {
                    if !take(&mut page, start + 1 + i as u64, stored) {
                        page.truncated = true;
                        break;
                    }
                }
            }
            None => {
                for (i, stored) in log.entries.iter().enumerate().rev() {
                    if !take(&mut page, log.first + i as u64, stored) {
                        page.truncated = true;
                        break;
                    }
                }
                page.items.reverse();
            }
        }
        page
    }

    /// Evicts what is past its TTL and forgets rooms idle for longer than
    /// their TTL. Call it every tick.
    pub fn expire(&mut self, now_ms: u64) {
        if self.history_off {
            return;
        }
        for class in 0..self.history.stamps.len() {
            let ttl = self.history.settings.classes[class].ttl_ms;
            while let Some(front) = self.history.stamps[class].front() {
                if front.at_ms.saturating_add(ttl) > now_ms {
                    break;
                }
                if let Some(stamp) = self.history.stamps[class].pop_front() {
                    self.history.queued -= 1;
                    if self.evict(&stamp, now_ms) {
                        self.history.evictions.ttl += 1;
                    }
                }
            }
            while let Some(front) = self.history.idle[class].front() {
                if front.since_ms.saturating_add(ttl) > now_ms {
                    break;
                }
                if let Some(mark) = self.history.idle[class].pop_front() {
                    self.expire_idle(mark, ttl, now_ms);
                }
            }
        }
    }

    /// Cluster: the room's position becomes `(offset, epoch)` as the
    /// backplane says, creating the room (with a log if it keeps history)
    /// and dropping every message it stored: what follows comes from the
    /// backplane.
    pub fn reset_position(&mut self, room: &str, epoch: Epoch, offset: u64) {
        if !self.rooms.contains_key(room) {
            self.create(room);
        }
        let Some(r) = self.rooms.get_mut(room) else { return };
        r.epoch = epoch;
        r.offset = offset;
        if let Some(log) = r.log.as_deref_mut() {
            for old in log.entries.drain(..) {
                self.history.bytes -= cost(&old.frame);
                self.history.live -= 1;
            }
            log.first = offset + 1;
        }
    }

    /// Cluster: the room's position, if it has state here.
    pub fn position_of(&self, room: &str) -> Option<(u64, Epoch)> {
        self.rooms.get(room).map(|r| (r.offset, r.epoch))
    }

    /// Cluster: true when no worker of this node has a subscriber of `room`.
    pub fn unwatched(&self, room: &str) -> bool {
        self.rooms.get(room).is_none_or(|r| r.workers.is_empty())
    }

    /// Cluster: forgets the room and what it stored (the backplane keeps
    /// the cluster's copy).
    pub fn drop_room(&mut self, room: &str) {
        if let Some((_, epoch)) = self.position_of(room) {
            self.reset_position(room, epoch, 0);
            self.forget(room);
        }
    }

    /// Bytes held by history on this worker.
    pub fn history_bytes(&self) -> usize {
        self.history.bytes
    }

    /// Messages stored on this worker now.
    pub fn history_messages(&self) -> usize {
        self.history.live
    }

    /// Messages evicted so far, by cause.
    pub fn evictions(&self) -> Evictions {
        self.history.evictions
    }

    /// The room's position; a room with history and no state yet gets one
    /// (idle from now); a room without either gets a fresh epoch that is not
    /// kept.
    fn peek(&mut self, room: &str, now_ms: u64) -> (u64, Epoch) {
        if let Some(r) = self.rooms.get(room) {
            return (r.offset, r.epoch);
        }
        if self.history.settings.class_of(room).is_none() {
            return (0, self.mint_epoch());
        }
        let r = self.create(room);
        let epoch = r.epoch;
        self.mark_idle(room, now_ms);
        self.evict_over_cap(now_ms);
        (0, epoch)
    }

    /// The room has neither subscribers nor messages since `now_ms`.
    pub(super) fn mark_idle(&mut self, room: &str, now_ms: u64) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let Some(log) = r.log.as_deref_mut() else { return };
        log.idle_since_ms = Some(now_ms);
        if !log.marked {
            log.marked = true;
            let mark = IdleMark { room: log.name.clone(), epoch: r.epoch, since_ms: now_ms };
            self.history.idle[log.class as usize].push_back(mark);
        }
    }

    fn expire_idle(&mut self, mark: IdleMark, ttl: u64, now_ms: u64) {
        let Some(r) = self.rooms.get_mut(&mark.room).filter(|r| r.epoch == mark.epoch) else {
            return;
        };
        let Some(log) = r.log.as_deref_mut() else { return };
        match log.idle_since_ms {
            None => log.marked = false,
            Some(since) if since.saturating_add(ttl) <= now_ms => self.forget(&mark.room),
            Some(since) => {
                let mark = IdleMark { since_ms: since, ..mark };
                self.history.idle[log.class as usize].push_back(mark);
            }
        }
    }

    /// Drops the oldest stored message if `stamp` is it; true if so. A room
    /// left with neither messages nor subscribers goes idle.
    fn evict(&mut self, stamp: &Stamp, now_ms: u64) -> bool {
        let Some(r) = self.rooms.get_mut(&stamp.room).filter(|r| r.epoch == stamp.epoch) else {
            return false;
        };
        let Some(log) = r.log.as_deref_mut() else { return false };
        if log.entries.is_empty() || log.first != stamp.offset {
            return false; // stale: evicted by size already
        }
        if let Some(old) = log.entries.pop_front() {
            log.first += 1;
            self.history.bytes -= cost(&old.frame);
            self.history.live -= 1;
        }
        if log.entries.is_empty() && r.workers.is_empty() {
            self.mark_idle(&stamp.room, now_ms);
        }
        true
    }

    /// Over the byte cap: drops the oldest stored message, or forgets the
    /// room idle the longest, whichever is older, until under it.
    fn evict_over_cap(&mut self, now_ms: u64) {
        while self.history.bytes > self.history.settings.max_bytes {
            let h = &self.history;
            let oldest_stamp =
                (0..h.stamps.len()).filter_map(|c| h.stamps[c].front().map(|s| (s.at_ms, c))).min();
            let oldest_idle =
                (0..h.idle.len()).filter_map(|c| h.idle[c].front().map(|m| (m.since_ms, c))).min();
            let stamp_first = match (oldest_stamp, oldest_idle) {
                (Some((at, _)), Some((since, _))) => at <= since,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if let (true, Some((_, c))) = (stamp_first, oldest_stamp) {
                if let Some(stamp) = self.history.stamps[c].pop_front() {
                    self.history.queued -= 1;
                    if self.evict(&stamp, now_ms) {
                        self.history.evictions.bytes += 1;
                    }
                }
            } else if let Some((_, c)) = oldest_idle {
                let Some(mark) = self.history.idle[c].pop_front() else { break };
                self.expire_idle(mark, 0, u64::MAX);
            }
        }
    }

    /// Drops the stamps of messages that are gone.
    fn compact(&mut self) {
        let rooms = &self.rooms;
        let mut queued = 0;
        for q in &mut self.history.stamps {
            q.retain(|s| {
                rooms.get(&s.room).is_some_and(|r| {
                    r.epoch == s.epoch
                        && r.log.as_deref().is_some_and(|l| !l.is_empty() && l.first <= s.offset)
                })
            });
            queued += q.len();
        }
        self.history.queued = queued;
    }
}

/// The frames after `since` if the room still holds all of them (and they
/// fit `max_replay` bytes).
fn recover(r: &OwnedRoom, since: Since, max_replay: usize) -> Option<Vec<Bytes>> {
    if since.epoch != r.epoch || since.offset > r.offset {
        return None;
    }
    if since.offset == r.offset {
        return Some(Vec::new());
    }
    let log = r.log.as_deref()?;
    if log.entries.is_empty() || log.first > since.offset + 1 {
        return None;
    }
    let mut total = 0;
    let mut out = Vec::with_capacity((r.offset - since.offset) as usize);
    for s in log.after(since.offset) {
        total += s.frame.len();
        if total > max_replay {
            return None;
        }
        out.push(s.frame.clone());
    }
    Some(out)
}

#[cfg(test)]
#[path = "history/tests.rs"]
mod tests;
