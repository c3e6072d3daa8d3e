//! Room membership, per worker, without locks.
//!
//! [`LocalRooms`]: which of *this worker's* connections (by id) are in
//! which room. Join and leave are O(1): every member remembers its position in
//! the room's member list, and a leave swaps the last member into the hole.
//! [`OwnedRooms`]: for the rooms this worker *owns* (by salted hash of the name),
//! the per-room position (offset and epoch) and which workers have
//! subscribers, so a publish is sequenced once and sent only to workers that
//! need it; with history on, also the stored messages ([`super::history`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::history::{History, HistorySettings, RoomLog};
use super::protocol::Epoch;
use crate::id::ConnId;

/// A shared room name.
pub type RoomName = Arc<str>;

/// One membership as the member keeps it: the room and its index there.
#[derive(Clone, Debug)]
pub struct Membership {
    /// The room.
    pub room: RoomName,
    /// Index in the room's member list; while `pending`, the token of the
    /// subscribe waiting for the room's owner.
    pub pos: u32,
    /// Not a member yet: the owner has not answered the subscribe.
    pub pending: bool,
}

/// Result of a join.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// Joined; `first` when the room was empty on this worker before.
    New {
        /// The room was just created on this worker.
        first: bool,
    },
    /// Already a member: nothing changed.
    Already,
    /// The room is at its member limit on this worker.
    Full,
}

/// This worker's rooms: name -> member connection ids.
#[derive(Default, Debug)]
pub struct LocalRooms {
    rooms: HashMap<RoomName, Vec<ConnId>>,
}

impl LocalRooms {
    /// Members of `room` on this worker.
    pub fn members(&self, room: &str) -> &[ConnId] {
        self.rooms.get(room).map_or(&[], |m| m.as_slice())
    }

    /// Rooms with at least one member here.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True when no room has members here.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Total memberships here.
    pub fn subscriptions(&self) -> usize {
        self.rooms.values().map(|m| m.len()).sum()
    }

    /// Adds connection `key` (whose memberships are `subs`) to `room`.
    pub fn join(
        &mut self,
        room: &str,
        key: ConnId,
        subs: &mut Vec<Membership>,
        max_members: Option<usize>,
    ) -> Joined {
        if subs.iter().any(|m| &*m.room == room) {
            return Joined::Already;
        }
        let (name, first) = match self.rooms.get_key_value(room) {
            Some((name, members)) => {
                if max_members.is_some_and(|max| members.len() >= max) {
                    return Joined::Full;
                }
                (name.clone(), false)
            }
            None => {
                let name: RoomName = Arc::from(room);
                self.rooms.insert(name.clone(), Vec::new());
                (name, true)
            }
        };
        let list = self.rooms.get_mut(&name).expect("bug: room just looked up");
        subs.push(Membership { room: name, pos: list.len() as u32, pending: false });
        list.push(key);
        Joined::New { first }
    }

    /// Removes membership `subs[index]` of connection `key`. `fix` is called
    /// with the key of the member that moved into the freed position, so the
    /// caller can update that member's stored position for this room. Returns
    /// true when the room became empty here (and was dropped).
    pub fn leave(
        &mut self,
        sub: &Membership,
        key: ConnId,
        mut fix: impl FnMut(ConnId, &RoomName, u32),
    ) -> bool {
        let Some(list) = self.rooms.get_mut(&sub.room) else {
            return false;
        };
        let pos = sub.pos as usize;
        if list.get(pos) != Some(&key) {
            debug_assert!(false, "bug: membership position out of date");
            return false;
        }
        list.swap_remove(pos);
        if let Some(&moved) = list.get(pos) {
            fix(moved, &sub.room, pos as u32);
        }
        if list.is_empty() {
            self.rooms.remove(&sub.room);
            if self.rooms.capacity() > 64 && self.rooms.len() < self.rooms.capacity() / 4 {
                self.rooms.shrink_to(self.rooms.len() * 2);
            }
            return true;
        }
        if list.capacity() > 16 && list.len() < list.capacity() / 4 {
            list.shrink_to(list.len() * 2);
        }
        false
    }
}

/// A room this worker owns.
#[derive(Debug)]
pub struct OwnedRoom {
    /// Last offset given out (0: none yet).
    pub offset: u64,
    /// The name of this run of offsets.
    pub epoch: Epoch,
    /// Workers with at least one subscriber, ascending.
    pub workers: Vec<usize>,
    /// Stored messages, when the room keeps history.
    pub(super) log: Option<Box<RoomLog>>,
}

/// What [`OwnedRooms::sequence`] decided for one publish.
#[derive(Debug, PartialEq, Eq)]
pub struct Sequenced<'a> {
    /// The message's offset.
    pub offset: u64,
    /// The room's epoch.
    pub epoch: Epoch,
    /// Workers to deliver to.
    pub workers: &'a [usize],
    /// Store the frame ([`OwnedRooms::store`]): the room keeps history.
    pub keep: bool,
}

/// The rooms this worker owns: their positions, the workers with
/// subscribers and (see [`super::history`]) their stored messages.
pub struct OwnedRooms {
    pub(super) rooms: HashMap<RoomName, OwnedRoom>,
    pub(super) history: History,
    /// No room keeps history: the hot path skips every history check.
    pub(super) history_off: bool,
    epochs: RandomState,
    minted: u64,
}

impl Default for OwnedRooms {
    fn default() -> Self {
        OwnedRooms::new(HistorySettings::default())
    }
}

impl std::fmt::Debug for OwnedRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedRooms").field("rooms", &self.rooms.len()).finish_non_exhaustive()
    }
}

impl OwnedRooms {
    /// No rooms yet; history kept as `history` says (one worker's share).
    pub fn new(history: HistorySettings) -> OwnedRooms {
        OwnedRooms {
            rooms: HashMap::new(),
            history_off: history.is_off(),
            history: History::new(history),
            epochs: RandomState::new(),
            minted: 0,
        }
    }

    /// Worker `worker` gained (`on`) or lost its subscribers in `room`.
    pub fn interest(&mut self, room: &str, worker: usize, on: bool, now_ms: u64) {
        self.interest_in(room, worker, on, now_ms);
    }

    pub(super) fn interest_in(&mut self, room: &str, worker: usize, on: bool, now_ms: u64) {
        if on {
            if !self.rooms.contains_key(room) {
                self.create(room);
            }
            let Some(r) = self.rooms.get_mut(room) else { return };
            if let Err(i) = r.workers.binary_search(&worker) {
                r.workers.insert(i, worker);
            }
            if let Some(log) = r.log.as_deref_mut() {
                log.busy();
            }
        } else if let Some(r) = self.rooms.get_mut(room) {
            if let Ok(i) = r.workers.binary_search(&worker) {
                r.workers.remove(i);
            }
            if r.workers.is_empty() {
                match r.log.as_deref() {
                    None => self.forget(room),
                    Some(log) if log.is_empty() => self.mark_idle(room, now_ms),
                    Some(_) => {}
                }
            }
        }
    }

    /// Sequences one publish: the next offset and the workers to deliver to.
    /// `None` when nobody is subscribed anywhere and the room keeps no
    /// history (the message goes nowhere).
    pub fn sequence(&mut self, room: &str) -> Option<Sequenced<'_>> {
        if !self.history_off && !self.rooms.contains_key(room) {
            self.history.settings.class_of(room)?;
            self.create(room);
        }
        let r = self.rooms.get_mut(room)?;
        r.offset += 1;
        Some(Sequenced {
            offset: r.offset,
            epoch: r.epoch,
            workers: &r.workers,
            keep: r.log.is_some(),
        })
    }

    /// Rooms owned here with subscribers somewhere or a kept position.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True when no room is owned here.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// A new epoch: 32 bits from a per-process random key and a counter.
    pub(super) fn mint_epoch(&mut self) -> Epoch {
        self.minted += 1;
        Epoch(self.epochs.hash_one(self.minted) as u32)
    }

    /// A new room at offset 0 with a new epoch, with a log if it keeps
    /// history.
    pub(super) fn create(&mut self, room: &str) -> &mut OwnedRoom {
        let epoch = self.mint_epoch();
        let name: RoomName = Arc::from(room);
        let log = self.history.settings.class_of(room).map(|class| {
            self.history.bytes += History::room_cost(room);
            Box::new(RoomLog::new(name.clone(), class))
        });
        let r = OwnedRoom { offset: 0, epoch, workers: Vec::new(), log };
        self.rooms.entry(name).or_insert(r)
    }

    /// Drops a room's state; its next position starts a new epoch.
    pub(super) fn forget(&mut self, room: &str) {
        let Some(r) = self.rooms.remove(room) else { return };
        if let Some(log) = r.log {
            self.history.bytes -= History::room_cost(room);
            debug_assert!(log.is_empty(), "bug: forgetting a room with stored messages");
        }
        if self.rooms.capacity() > 64 && self.rooms.len() < self.rooms.capacity() / 4 {
            self.rooms.shrink_to(self.rooms.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: usize) -> ConnId {
        ConnId::from_parts(0, key, 1)
    }

    #[test]
    fn join_leave_keeps_positions_right_and_drops_empty_rooms() {
        let mut rooms = LocalRooms::default();
        let mut subs: Vec<Vec<Membership>> = vec![Vec::new(); 5];
        for (key, sub) in subs.iter_mut().enumerate() {
            let first = key == 0;
            assert_eq!(rooms.join("a", c(key), sub, None), Joined::New { first });
        }
        assert_eq!(rooms.join("a", c(2), &mut subs[2], None), Joined::Already);
        // Leave from the middle: the last member moves into the hole.
        let sub = subs[1].remove(0);
        let mut moved = Vec::new();
        assert!(!rooms.leave(&sub, c(1), |k, _, pos| moved.push((k.key(), pos))));
        assert_eq!(moved, vec![(4, 1)]);
        subs[4][0].pos = 1;
        assert_eq!(rooms.members("a"), &[c(0), c(4), c(2), c(3)]);
        for key in [0, 4, 2, 3] {
            let sub = subs[key].remove(0);
            let last = rooms.leave(&sub, c(key), |k, _, pos| subs_fix(&mut subs, k.key(), pos));
            assert_eq!(last, key == 3);
        }
        assert!(rooms.is_empty());

        fn subs_fix(subs: &mut [Vec<Membership>], k: usize, pos: u32) {
            subs[k][0].pos = pos;
        }
    }

    #[test]
    fn member_limit_is_enforced() {
        let mut rooms = LocalRooms::default();
        let mut a = Vec::new();
        let mut b = Vec::new();
        assert_eq!(rooms.join("r", c(0), &mut a, Some(1)), Joined::New { first: true });
        assert_eq!(rooms.join("r", c(1), &mut b, Some(1)), Joined::Full);
    }

    #[test]
    fn owned_rooms_sequence_per_room_and_track_workers() {
        let mut owned = OwnedRooms::default();
        assert!(owned.sequence("r").is_none(), "nobody subscribed: nothing to do");
        owned.interest("r", 2, true, 0);
        owned.interest("r", 0, true, 0);
        owned.interest("r", 2, true, 0);
        let s = owned.sequence("r").unwrap();
        assert_eq!((s.offset, s.workers, s.keep), (1, &[0usize, 2][..], false));
        let epoch = s.epoch;
        assert_eq!(owned.sequence("r").unwrap().offset, 2);
        owned.interest("r", 0, false, 0);
        owned.interest("r", 2, false, 0);
        assert!(owned.is_empty());
        // Without history the position is not kept: a new run, a new epoch.
        owned.interest("r", 1, true, 0);
        let s = owned.sequence("r").unwrap();
        assert_eq!(s.offset, 1);
        assert_ne!(s.epoch, epoch);
    }
}
