//! Room membership, per worker, without locks.
//!
//! [`LocalRooms`]: which of *this worker's* connections (by id) are in
//! which room. Join and leave are O(1): every member remembers its position in
//! the room's member list, and a leave swaps the last member into the hole.
//! [`OwnedRooms`]: for the rooms this worker *owns* (by salted hash of the name),
//! the per-room sequence number and which workers have subscribers, so a
//! publish is sequenced once and sent only to workers that need it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::id::ConnId;

/// A shared room name.
pub type RoomName = Arc<str>;

/// One membership as the member keeps it: the room and its index there.
#[derive(Clone, Debug)]
pub struct Membership {
    /// The room.
    pub room: RoomName,
    /// Index in the room's member list.
    pub pos: u32,
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
        subs.push(Membership { room: name, pos: list.len() as u32 });
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
#[derive(Debug, Default)]
pub struct OwnedRoom {
    /// Last sequence number given out.
    pub seq: u64,
    /// Workers with at least one subscriber, ascending.
    pub workers: Vec<usize>,
}

/// The rooms this worker owns.
#[derive(Default, Debug)]
pub struct OwnedRooms {
    rooms: HashMap<RoomName, OwnedRoom>,
}

impl OwnedRooms {
    /// Worker `worker` gained (`on`) or lost its subscribers in `room`.
    pub fn interest(&mut self, room: &RoomName, worker: usize, on: bool) {
        if on {
            let r = self.rooms.entry(room.clone()).or_default();
            if let Err(i) = r.workers.binary_search(&worker) {
                r.workers.insert(i, worker);
            }
        } else if let Some(r) = self.rooms.get_mut(room) {
            if let Ok(i) = r.workers.binary_search(&worker) {
                r.workers.remove(i);
            }
            if r.workers.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// Sequences one publish: the new seq and the workers to deliver to
    /// (None when nobody is subscribed anywhere).
    pub fn sequence(&mut self, room: &str) -> Option<(u64, &[usize])> {
        let r = self.rooms.get_mut(room)?;
        r.seq += 1;
        Some((r.seq, &r.workers))
    }

    /// Rooms owned here with subscribers somewhere.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True when no owned room has subscribers.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
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
        let r: RoomName = Arc::from("r");
        assert!(owned.sequence("r").is_none(), "nobody subscribed: nothing to do");
        owned.interest(&r, 2, true);
        owned.interest(&r, 0, true);
        owned.interest(&r, 2, true);
        assert_eq!(owned.sequence("r").unwrap(), (1, &[0usize, 2][..]));
        assert_eq!(owned.sequence("r").unwrap().0, 2);
        owned.interest(&r, 0, false);
        owned.interest(&r, 2, false);
        assert!(owned.is_empty());
    }
}
