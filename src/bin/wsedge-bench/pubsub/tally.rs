//! Per-subscriber accounting of a room's sequence numbers, and the run's
//! verdict from them (pure).
//!
//! A subscriber remembers the highest `seq` seen. The next one is in order;
//! a jump counts the gap; `seq` equal to the last is a duplicate; a smaller
//! one arrived out of order (an older duplicate cannot be told from a late
//! message without remembering every `seq`: it counts as out of order).
//! At the end, what a subscriber should have had is every `seq` the room
//! handed out while it was subscribed: from the room's first `seq` (the
//! smallest first `seq` any of its subscribers saw; 1 on a fresh server) for
//! as many messages as the load tester published to the room. The missing
//! are those expected and not received (distinct).

/// One subscriber's view of its room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubTally {
    pub room: u32,
    /// Deliveries received, every one.
    pub received: u64,
    /// First and highest `seq` seen (0: none yet).
    pub first: u64,
    pub last: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl SubTally {
    pub fn new(room: u32) -> SubTally {
        SubTally { room, ..SubTally::default() }
    }

    /// One delivery with sequence number `seq`.
    #[inline]
    pub fn on_seq(&mut self, seq: u64) {
        self.received += 1;
        if self.last == 0 {
            self.first = seq;
            self.last = seq;
        } else if seq > self.last {
            self.last = seq;
        } else if seq == self.last {
            self.duplicates += 1;
        } else {
            self.out_of_order += 1;
        }
    }

    /// Distinct deliveries (late ones included, repeats of the last not).
    fn distinct(&self) -> u64 {
        self.received - self.duplicates
    }
}

/// What the subscribers saw, against what was published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Deliveries that should have arrived: messages published to a room
    /// times its subscribers.
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Deliveries beyond what was published (another client publishing to
    /// the room, or a server inventing messages).
    pub unexpected: u64,
    /// Rooms where at least one subscriber missed a message.
    pub rooms_with_loss: u64,
}

/// Judges every subscriber against `published[room]`: messages the load
/// tester published to each room and the server accepted.
pub fn verdict(subs: &[SubTally], published: &[u64]) -> Verdict {
    let mut base = vec![u64::MAX; published.len()];
    for s in subs {
        if s.first > 0 {
            let b = &mut base[s.room as usize];
            *b = (*b).min(s.first);
        }
    }
    let mut v = Verdict::default();
    let mut lossy = vec![false; published.len()];
    for s in subs {
        let r = s.room as usize;
        let want = published[r];
        v.expected += want;
        v.received += s.received;
        v.duplicates += s.duplicates;
        v.out_of_order += s.out_of_order;
        // Sequence numbers past the room's base + published are not ours.
        let top = base[r].saturating_add(want).saturating_sub(1);
        let beyond = if base[r] == u64::MAX { 0 } else { s.last.saturating_sub(top) };
        let ours = s.distinct().saturating_sub(beyond);
        v.unexpected += beyond + ours.saturating_sub(want);
        let miss = want.saturating_sub(ours);
        v.missing += miss;
        lossy[r] |= miss > 0;
    }
    v.rooms_with_loss = lossy.iter().filter(|&&l| l).count() as u64;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(room: u32, seqs: &[u64]) -> SubTally {
        let mut t = SubTally::new(room);
        for &s in seqs {
            t.on_seq(s);
        }
        t
    }

    #[test]
    fn a_clean_run_has_nothing_missing() {
        let subs = [sub(0, &[1, 2, 3]), sub(0, &[1, 2, 3]), sub(1, &[1, 2])];
        let v = verdict(&subs, &[3, 2]);
        assert_eq!(v, Verdict { expected: 8, received: 8, ..Verdict::default() });
    }

    #[test]
    fn gaps_duplicates_and_late_messages_are_counted() {
        // 2 lost, 4 duplicated, 3 late (after 5).
        let s = sub(0, &[1, 4, 4, 5, 3, 6]);
        assert_eq!((s.duplicates, s.out_of_order), (1, 1));
        let v = verdict(&[s, sub(0, &[1, 2, 3, 4, 5, 6])], &[6]);
        assert_eq!(v.missing, 1, "seq 2 never came");
        assert_eq!((v.duplicates, v.out_of_order, v.rooms_with_loss), (1, 1, 1));
        assert_eq!(v.unexpected, 0);
    }

    #[test]
    fn the_tail_and_a_silent_subscriber_count_as_missing() {
        let v = verdict(&[sub(0, &[1, 2]), sub(0, &[])], &[4]);
        assert_eq!((v.expected, v.received, v.missing), (8, 2, 6));
    }

    #[test]
    fn a_room_that_did_not_start_at_one_is_judged_from_its_first_seq() {
        // A server whose room already had 100 messages.
        let v = verdict(&[sub(0, &[101, 102]), sub(0, &[102])], &[2]);
        assert_eq!((v.missing, v.unexpected), (1, 0));
    }

    #[test]
    fn messages_nobody_published_are_unexpected() {
        let v = verdict(&[sub(0, &[1, 2, 3, 4])], &[2]);
        assert_eq!((v.missing, v.unexpected), (0, 2));
    }
}
