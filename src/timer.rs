//! Hashed timer wheel for per-worker connection timeouts (idle, handshake,
//! ping/pong, close linger).
//!
//! This module is sans-IO: it owns only the set of pending timers and the
//! wheel's notion of "current tick". It never reads a clock (no
//! `Instant::now()` in here); the caller converts time to ticks (e.g. 100 ms
//! per tick) and drives the wheel with [`TimerWheel::advance`]. It does not
//! touch sockets, connections or the poll loop. What a fired value means is up
//! to the caller.
//!
//! # Design
//!
//! * All timers live in one `Vec` of entries recycled through a free list, so
//!   there is no heap allocation per timer once the vector has grown.
//! * Each wheel slot is the head of an intrusive doubly linked list threaded
//!   through the entries with `u32` indices, which makes insert, cancel and
//!   reschedule O(1).
//! * Every entry stores its absolute deadline. A slot is shared by all
//!   deadlines congruent modulo the slot count, so when a slot is visited only
//!   entries whose deadline has actually arrived fire; entries for a later
//!   turn stay where they are.
//! * Timers whose deadline is already at or before the current tick go to a
//!   separate "overdue" list that is drained (in deadline order) at the start
//!   of the next [`TimerWheel::advance`].
//! * Every entry carries a generation counter that is bumped when the entry is
//!   freed, so a stale [`TimerId`] (cancelled or fired) can never cancel or
//!   move the timer that later reuses its storage.
//!
//! # Invariant
//!
//! Between calls, every pending timer with `deadline > current_tick` is linked
//! into slot `deadline & mask`, and every pending timer with
//! `deadline <= current_tick` is linked into the overdue list.

use std::fmt;

/// Sentinel "no entry" index for the intrusive lists and the free list.
const NIL: u32 = u32::MAX;

/// Upper bound on the slot count (64 MiB of list heads). Larger requests are
/// clamped rather than rejected so that no configuration value can panic.
const MAX_SLOTS: usize = 1 << 24;

/// After a multi-turn jump the sort buffer may have grown to the number of
/// pending timers; shrink it back to this many elements so one long pause does
/// not pin that memory forever.
const SCRATCH_KEEP: usize = 1024;

/// Handle to a scheduled timer.
///
/// Small and `Copy` (storage index plus generation). It stays valid until the
/// timer fires or is cancelled; after that every operation on it is a harmless
/// no-op, even if the storage has been reused by another timer. Ids are only
/// meaningful for the wheel that issued them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// One timer's storage. Kept compact: 24 bytes of bookkeeping plus
/// `Option<T>` (40 bytes in total for `T = usize`).
struct Entry<T> {
    /// Absolute deadline tick.
    deadline: u64,
    /// Bumped every time the entry is freed; must match `TimerId::generation`.
    generation: u32,
    /// Which list the entry is linked into (slot index, or the overdue list
    /// index `slots`). Meaningless while the entry is free.
    list: u32,
    /// Previous entry in the same list, `NIL` at the head.
    prev: u32,
    /// Next entry in the same list; while the entry is free, next free entry.
    next: u32,
    /// `Some` while pending, `None` while on the free list.
    value: Option<T>,
}

/// A hashed timer wheel holding values of type `T` until their deadline tick.
///
/// See the [module documentation](self) for the design. All operations are
/// O(1) except [`advance`](TimerWheel::advance), which is proportional to the
/// number of slots walked (at most one full turn) plus the entries in them.
pub struct TimerWheel<T> {
    /// Entry storage; indices are stable for as long as a timer is pending.
    entries: Vec<Entry<T>>,
    /// List heads: `slots` wheel slots followed by the overdue list.
    heads: Box<[u32]>,
    /// `slots - 1`; `slots` is a power of two so `tick & mask` is the slot.
    mask: u64,
    /// The tick the wheel has been advanced to.
    current: u64,
    /// Number of pending timers.
    len: usize,
    /// Head of the free list threaded through `Entry::next`.
    free_head: u32,
    /// Reused buffer of `(deadline, index)` for the paths that must sort
    /// (overdue list, multi-turn jumps). Reusing it keeps those paths
    /// allocation-free in the steady state.
    scratch: Vec<(u64, u32)>,
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose current tick is `now_tick`.
    ///
    /// `slots` is rounded up to a power of two (0 becomes 1) and clamped to
    /// 2^24. One turn of the wheel covers `slots` ticks, e.g. 512 slots x
    /// 100 ms per tick = 51.2 s; longer deadlines are fine, they are just
    /// skipped over on each turn until due.
    pub fn new(slots: usize, now_tick: u64) -> Self {
        // MAX_SLOTS is itself a power of two, so clamping first means the
        // rounding can never overflow.
        let slots = slots.clamp(1, MAX_SLOTS).next_power_of_two();
        TimerWheel {
            entries: Vec::new(),
            heads: vec![NIL; slots + 1].into_boxed_slice(),
            mask: slots as u64 - 1,
            current: now_tick,
            len: 0,
            free_head: NIL,
            scratch: Vec::new(),
        }
    }

    /// Schedules `value` to fire at the absolute tick `deadline_tick`. O(1).
    ///
    /// A deadline at or before the current tick fires on the next call to
    /// [`advance`](Self::advance) (even one that does not move the tick).
    ///
    /// # Panics
    ///
    /// Only if more than `u32::MAX - 1` timers are pending at once (hundreds
    /// of GiB of entries; not reachable in practice).
    pub fn insert(&mut self, deadline_tick: u64, value: T) -> TimerId {
        let list = self.list_for(deadline_tick);
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.next;
            entry.deadline = deadline_tick;
            entry.value = Some(value);
            index
        } else {
            // NIL is reserved as the list terminator, so the last usable
            // index is NIL - 1.
            let index = match u32::try_from(self.entries.len()) {
                Ok(i) if i != NIL => i,
                _ => panic!("TimerWheel: more than u32::MAX - 1 pending timers"),
            };
            self.entries.push(Entry {
                deadline: deadline_tick,
                generation: 0,
                list: NIL,
                prev: NIL,
                next: NIL,
                value: Some(value),
            });
            index
        };
        self.link(index, list);
        self.len += 1;
        TimerId { index, generation: self.entries[index as usize].generation }
    }

    /// Cancels a timer, returning its value if it was still pending. O(1).
    ///
    /// Returns `None` for an id that already fired or was cancelled; such an
    /// id never affects any other timer, even one reusing its storage.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let index = self.pending_index(id)?;
        Some(self.remove(index).1)
    }

    /// Moves a pending timer to `deadline_tick`, keeping `id` valid. O(1).
    ///
    /// The same rules as [`insert`](Self::insert) apply to the new deadline.
    /// Returns `false` (and does nothing) if `id` is stale.
    pub fn reschedule(&mut self, id: TimerId, deadline_tick: u64) -> bool {
        let Some(index) = self.pending_index(id) else {
            return false;
        };
        self.unlink(index);
        self.entries[index as usize].deadline = deadline_tick;
        let list = self.list_for(deadline_tick);
        self.link(index, list);
        true
    }

    /// Deadline tick of a pending timer, or `None` if `id` is stale.
    pub fn deadline(&self, id: TimerId) -> Option<u64> {
        self.pending_index(id).map(|index| self.entries[index as usize].deadline)
    }

    /// Advances the wheel to `now_tick` and fires every timer whose deadline
    /// is `<= now_tick`, calling `fire(id, value)` for each in non-decreasing
    /// deadline order (ties in any order). Returns the number fired.
    ///
    /// Time is monotonic: a `now_tick` below [`current_tick`](Self::current_tick)
    /// is a no-op returning 0. A `now_tick` equal to it fires only the timers
    /// inserted or rescheduled with a deadline at or before the current tick.
    ///
    /// Cost: the slots between the previous tick and `now_tick` plus the
    /// entries in them. A jump of a full turn or more visits every slot once
    /// (never loops over the skipped ticks) and sorts the due entries; the
    /// common per-tick path does not allocate.
    ///
    /// The wheel stays consistent if `fire` panics: the timer being fired is
    /// gone, and the remaining due timers fire on the next advance.
    pub fn advance(&mut self, now_tick: u64, mut fire: impl FnMut(TimerId, T)) -> usize {
        if now_tick < self.current {
            return 0;
        }
        let overdue = self.overdue_list();
        let mut fired = 0;
        if now_tick - self.current >= self.slots() as u64 {
            // Jump of a full turn or more: every slot (and the overdue list)
            // may hold due entries from different turns, so slot order is not
            // deadline order. Collect everything due and sort.
            self.scratch.clear();
            for list in 0..=overdue {
                self.collect_due(list, now_tick);
            }
            fired += self.fire_scratch(&mut fire);
            self.scratch.shrink_to(SCRATCH_KEEP);
        } else {
            // Overdue entries all have deadlines <= current < any slot entry
            // due in this walk, so they go first; they may have distinct
            // deadlines, hence the sort (usually of 0 or 1 element).
            if self.heads[overdue as usize] != NIL {
                self.scratch.clear();
                self.collect_due(overdue, now_tick);
                fired += self.fire_scratch(&mut fire);
            }
            // Less than one turn: each tick maps to a distinct slot, and by
            // the invariant the only entries due in slot(t) have deadline
            // exactly t. Walking ticks in order therefore fires in deadline
            // order without sorting or allocating.
            // Iterates ticks current+1..=now; written as `(current..now)`
            // plus one so `current == u64::MAX` cannot overflow.
            for tick in (self.current..now_tick).map(|t| t + 1) {
                let mut index = self.heads[(tick & self.mask) as usize];
                while index != NIL {
                    let entry = &self.entries[index as usize];
                    // Read the link before `remove` recycles the entry.
                    let next = entry.next;
                    if entry.deadline <= tick {
                        debug_assert_eq!(entry.deadline, tick, "bug: entry in wrong slot");
                        // Keep the invariant true while user code runs, so a
                        // panicking `fire` leaves a wheel that still works.
                        self.current = tick - 1;
                        let (id, value) = self.remove(index);
                        fire(id, value);
                        fired += 1;
                    }
                    index = next;
                }
            }
        }
        self.current = now_tick;
        fired
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if no timers are pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick the wheel was created at or last advanced to.
    pub fn current_tick(&self) -> u64 {
        self.current
    }

    /// Number of slots (ticks per turn) after rounding.
    pub fn slots(&self) -> usize {
        self.heads.len() - 1
    }

    /// Approximate heap bytes per timer: the size of one entry (40 for
    /// `T = usize`). Freed entries are recycled, not returned to the
    /// allocator, so memory tracks the peak number of pending timers. The
    /// per-wheel cost on top is 4 bytes per slot.
    pub fn entry_size() -> usize {
        std::mem::size_of::<Entry<T>>()
    }

    /// Index of the overdue list in `heads`.
    fn overdue_list(&self) -> u32 {
        // heads.len() <= MAX_SLOTS + 1, which fits in u32.
        (self.heads.len() - 1) as u32
    }

    /// The list a timer with `deadline` belongs in right now (see the module
    /// invariant).
    fn list_for(&self, deadline: u64) -> u32 {
        if deadline <= self.current {
            self.overdue_list()
        } else {
            (deadline & self.mask) as u32
        }
    }

    /// Storage index of `id` if it still names a pending timer.
    fn pending_index(&self, id: TimerId) -> Option<u32> {
        let entry = self.entries.get(id.index as usize)?;
        (entry.generation == id.generation && entry.value.is_some()).then_some(id.index)
    }

    /// Pushes `index` at the front of `list`.
    fn link(&mut self, index: u32, list: u32) {
        let head = self.heads[list as usize];
        let entry = &mut self.entries[index as usize];
        entry.list = list;
        entry.prev = NIL;
        entry.next = head;
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[list as usize] = index;
    }

    /// Removes `index` from whatever list it is in.
    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (prev, next, list) = (entry.prev, entry.next, entry.list);
        if prev == NIL {
            self.heads[list as usize] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Unlinks and frees a pending entry, returning its id and value.
    fn remove(&mut self, index: u32) -> (TimerId, T) {
        self.unlink(index);
        let free_head = self.free_head;
        let entry = &mut self.entries[index as usize];
        let value = entry.value.take().expect("bug: removing a free timer entry");
        let id = TimerId { index, generation: entry.generation };
        // Bumping the generation is what invalidates every copy of `id`.
        entry.generation = entry.generation.wrapping_add(1);
        entry.list = NIL;
        entry.prev = NIL;
        entry.next = free_head;
        self.free_head = index;
        self.len -= 1;
        (id, value)
    }

    /// Appends `(deadline, index)` of every entry in `list` due by `now` to
    /// the scratch buffer, without unlinking anything.
    fn collect_due(&mut self, list: u32, now: u64) {
        let mut index = self.heads[list as usize];
        while index != NIL {
            let entry = &self.entries[index as usize];
            if entry.deadline <= now {
                self.scratch.push((entry.deadline, index));
            }
            index = entry.next;
        }
    }

    /// Sorts the scratch buffer by deadline and fires its entries in order.
    fn fire_scratch(&mut self, fire: &mut impl FnMut(TimerId, T)) -> usize {
        self.scratch.sort_unstable();
        let count = self.scratch.len();
        // Indexed loop: `remove` needs `&mut self` while we read the buffer.
        // Entries stay linked until their own turn, so if `fire` panics the
        // unfired ones are still valid, pending timers.
        for k in 0..count {
            let (deadline, index) = self.scratch[k];
            // Everything earlier has fired; raise `current` to just below this
            // deadline so the invariant holds for the entries still linked.
            if deadline > self.current {
                self.current = deadline - 1;
            }
            let (id, value) = self.remove(index);
            fire(id, value);
        }
        self.scratch.clear();
        count
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("slots", &self.slots())
            .field("current_tick", &self.current)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Removes and returns the entries of `pending` whose deadline
/// (`deadline_of`) is at or before `now`: for queries answered late, which
/// are few and short-lived, so a scan beats a wheel entry each.
pub fn take_expired<T>(
    pending: &mut std::collections::HashMap<u64, T>,
    now: u64,
    deadline_of: impl Fn(&T) -> u64,
) -> Vec<T> {
    let expired: Vec<u64> =
        pending.iter().filter(|(_, p)| deadline_of(p) <= now).map(|(&q, _)| q).collect();
    expired.into_iter().filter_map(|q| pending.remove(&q)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    /// Advances and returns the fired values in firing order.
    fn advance_collect<T>(wheel: &mut TimerWheel<T>, now: u64) -> Vec<T> {
        let mut out = Vec::new();
        let n = wheel.advance(now, |_, v| out.push(v));
        assert_eq!(n, out.len(), "advance must return the number fired");
        out
    }

    #[test]
    fn fires_in_deadline_order_across_slots() {
        let mut wheel = TimerWheel::new(8, 0);
        for d in [5u64, 1, 3, 7, 2] {
            wheel.insert(d, d);
        }
        assert_eq!(advance_collect(&mut wheel, 7), vec![1, 2, 3, 5, 7]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn each_timer_fires_exactly_at_its_tick_never_early() {
        let mut wheel = TimerWheel::new(8, 0);
        for d in [6u64, 2, 4, 3] {
            wheel.insert(d, d);
        }
        for tick in 1..=10 {
            let fired = advance_collect(&mut wheel, tick);
            let expected: Vec<u64> = [2u64, 3, 4, 6].into_iter().filter(|&d| d == tick).collect();
            assert_eq!(fired, expected, "at tick {tick}");
        }
    }

    #[test]
    fn deadline_at_or_before_current_tick_fires_on_next_advance() {
        let mut wheel = TimerWheel::new(8, 100);
        wheel.insert(100, "now");
        wheel.insert(40, "past");
        wheel.insert(101, "next");
        wheel.insert(102, "later");
        assert_eq!(advance_collect(&mut wheel, 101), vec!["past", "now", "next"]);
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn advance_to_same_tick_fires_only_overdue() {
        let mut wheel = TimerWheel::new(8, 10);
        wheel.insert(10, 'a');
        wheel.insert(11, 'b');
        assert_eq!(advance_collect(&mut wheel, 10), vec!['a']);
        assert_eq!(wheel.current_tick(), 10);
        assert_eq!(advance_collect(&mut wheel, 11), vec!['b']);
    }

    #[test]
    fn going_backwards_is_a_no_op() {
        let mut wheel = TimerWheel::new(8, 50);
        wheel.insert(10, ());
        assert_eq!(wheel.advance(49, |_, _| panic!("must not fire")), 0);
        assert_eq!(wheel.current_tick(), 50);
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn cancel_returns_value_and_it_never_fires() {
        let mut wheel = TimerWheel::new(8, 0);
        let a = wheel.insert(3, "a");
        let b = wheel.insert(3, "b");
        assert_eq!(wheel.cancel(a), Some("a"));
        assert_eq!(wheel.cancel(a), None, "second cancel is stale");
        assert_eq!(wheel.deadline(a), None);
        assert_eq!(advance_collect(&mut wheel, 20), vec!["b"]);
        assert_eq!(wheel.cancel(b), None, "fired id is stale");
        assert!(!wheel.reschedule(b, 30));
        assert_eq!(wheel.deadline(b), None);
    }

    #[test]
    fn stale_id_after_reuse_does_not_touch_new_timer() {
        let mut wheel = TimerWheel::new(8, 0);
        let old = wheel.insert(5, 1);
        assert_eq!(wheel.cancel(old), Some(1));
        let new = wheel.insert(6, 2);
        assert_ne!(old, new);
        assert_eq!(wheel.cancel(old), None);
        assert!(!wheel.reschedule(old, 1));
        assert_eq!(wheel.deadline(old), None);
        assert_eq!(wheel.deadline(new), Some(6));
        assert_eq!(advance_collect(&mut wheel, 6), vec![2]);
    }

    #[test]
    fn unknown_index_is_stale_not_a_panic() {
        let mut wheel: TimerWheel<u8> = TimerWheel::new(8, 0);
        let foreign = TimerWheel::new(8, 0).insert(1, 0u8);
        assert_eq!(wheel.cancel(foreign), None);
        assert!(!wheel.reschedule(foreign, 3));
        assert_eq!(wheel.deadline(foreign), None);
    }

    #[test]
    fn reschedule_earlier_and_later() {
        let mut wheel = TimerWheel::new(8, 0);
        let early = wheel.insert(6, "early");
        let late = wheel.insert(2, "late");
        assert!(wheel.reschedule(early, 1));
        assert!(wheel.reschedule(late, 20));
        assert_eq!(wheel.deadline(early), Some(1));
        assert_eq!(wheel.deadline(late), Some(20));
        assert_eq!(advance_collect(&mut wheel, 1), vec!["early"]);
        assert_eq!(advance_collect(&mut wheel, 19), Vec::<&str>::new());
        // Moving into the past makes it fire on the next advance.
        assert!(wheel.reschedule(late, 3));
        assert_eq!(advance_collect(&mut wheel, 19), vec!["late"]);
    }

    #[test]
    fn deadlines_turns_ahead_fire_at_the_right_tick() {
        let mut wheel = TimerWheel::new(8, 0);
        // Same slot (5), turns 0 and 3.
        wheel.insert(5, 5u64);
        wheel.insert(3 * 8 + 5, 29);
        wheel.insert(2 * 8 + 7, 23);
        for tick in 1..=40 {
            let fired = advance_collect(&mut wheel, tick);
            let expected: Vec<u64> = [5u64, 23, 29].into_iter().filter(|&d| d == tick).collect();
            assert_eq!(fired, expected, "at tick {tick}");
        }
    }

    #[test]
    fn jump_of_many_turns_fires_everything_due_in_order() {
        let mut wheel = TimerWheel::new(8, 0);
        // Deterministic scatter over ~125 turns, inserted out of order.
        let deadlines: Vec<u64> = (0..500u64).map(|i| (i * 7919) % 1000 + 1).collect();
        for &d in &deadlines {
            wheel.insert(d, d);
        }
        let fired = advance_collect(&mut wheel, 600);
        let mut expected: Vec<u64> = deadlines.iter().copied().filter(|&d| d <= 600).collect();
        expected.sort_unstable();
        assert_eq!(fired, expected);
        // What was not due stays pending and fires later at its own tick.
        let rest = advance_collect(&mut wheel, 2000);
        assert!(rest.iter().all(|&d| d > 600));
        assert!(rest.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(fired.len() + rest.len(), deadlines.len());
    }

    #[test]
    fn extreme_ticks_do_not_overflow() {
        let mut wheel = TimerWheel::new(4, u64::MAX - 10);
        wheel.insert(u64::MAX, 'z');
        wheel.insert(0, 'a');
        assert_eq!(advance_collect(&mut wheel, u64::MAX - 1), vec!['a']);
        assert_eq!(advance_collect(&mut wheel, u64::MAX), vec!['z']);
        assert_eq!(advance_collect(&mut wheel, u64::MAX), Vec::<char>::new());
    }

    #[test]
    fn slot_count_is_rounded_to_power_of_two() {
        assert_eq!(TimerWheel::<()>::new(500, 0).slots(), 512);
        assert_eq!(TimerWheel::<()>::new(512, 0).slots(), 512);
        assert_eq!(TimerWheel::<()>::new(0, 0).slots(), 1);
        // A one-slot wheel still works (every advance is a "full turn").
        let mut wheel = TimerWheel::new(0, 0);
        wheel.insert(3, 3);
        wheel.insert(1, 1);
        assert_eq!(advance_collect(&mut wheel, 2), vec![1]);
        assert_eq!(advance_collect(&mut wheel, 3), vec![3]);
    }

    #[test]
    fn len_tracks_pending_timers() {
        let mut wheel = TimerWheel::new(8, 0);
        assert!(wheel.is_empty());
        let a = wheel.insert(1, ());
        wheel.insert(2, ());
        assert_eq!(wheel.len(), 2);
        wheel.cancel(a);
        assert_eq!(wheel.len(), 1);
        wheel.advance(2, |_, _| {});
        assert!(wheel.is_empty());
    }

    #[test]
    fn fire_receives_the_id_returned_by_insert() {
        let mut wheel = TimerWheel::new(8, 0);
        let a = wheel.insert(2, "a");
        let b = wheel.insert(1, "b");
        let mut got = Vec::new();
        wheel.advance(2, |id, v| got.push((id, v)));
        assert_eq!(got, vec![(b, "b"), (a, "a")]);
    }

    #[test]
    fn entry_is_compact() {
        assert!(TimerWheel::<usize>::entry_size() <= 40);
        assert!(TimerWheel::<u32>::entry_size() <= 32);
    }

    #[test]
    fn panicking_callback_leaves_wheel_usable() {
        for (slots, jump) in [(8usize, 5u64), (2, 5)] {
            let mut wheel = TimerWheel::new(slots, 0);
            for d in 1..=4u64 {
                wheel.insert(d, d);
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wheel.advance(jump, |_, v| assert_ne!(v, 2));
            }));
            assert!(result.is_err());
            // 1 fired, 2 was consumed by the panicking call; 3 and 4 remain.
            assert_eq!(wheel.len(), 2);
            assert_eq!(advance_collect(&mut wheel, jump), vec![3, 4]);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Insert at `current + offset` (may be in the past).
        Insert(i64),
        /// Cancel the n-th id ever issued (modulo count; may be stale).
        Cancel(usize),
        /// Reschedule the n-th id ever issued to `current + offset`.
        Reschedule(usize, i64),
        /// Advance to `current + delta` (negative = backwards no-op).
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (-4i64..45).prop_map(Op::Insert),
            1 => any::<usize>().prop_map(Op::Cancel),
            1 => (any::<usize>(), -4i64..45).prop_map(|(i, o)| Op::Reschedule(i, o)),
            3 => (0i64..4).prop_map(Op::Advance),
            1 => (-3i64..60).prop_map(Op::Advance),
        ]
    }

    fn offset(current: u64, off: i64) -> u64 {
        current.saturating_add_signed(off)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn agrees_with_reference_model(
            slots in prop_oneof![Just(1usize), Just(2), Just(8), Just(16)],
            start in prop_oneof![Just(0u64), Just(1000), Just(u64::MAX - 200)],
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let mut wheel = TimerWheel::new(slots, start);
            let mut current = start;
            // Reference: due order by (deadline, seq); seq -> deadline for lookups.
            let mut model: BTreeMap<(u64, u64), ()> = BTreeMap::new();
            let mut pending: HashMap<u64, u64> = HashMap::new();
            let mut issued: Vec<(TimerId, u64)> = Vec::new();
            let mut next_seq = 0u64;

            for op in ops {
                match op {
                    Op::Insert(off) => {
                        let d = offset(current, off);
                        let seq = next_seq;
                        next_seq += 1;
                        let id = wheel.insert(d, seq);
                        prop_assert!(issued.iter().all(|&(other, s)| other != id || !pending.contains_key(&s)));
                        issued.push((id, seq));
                        model.insert((d, seq), ());
                        pending.insert(seq, d);
                    }
                    Op::Cancel(n) => {
                        if issued.is_empty() { continue; }
                        let (id, seq) = issued[n % issued.len()];
                        let expected = pending.remove(&seq).map(|d| {
                            model.remove(&(d, seq));
                            seq
                        });
                        prop_assert_eq!(wheel.cancel(id), expected);
                    }
                    Op::Reschedule(n, off) => {
                        if issued.is_empty() { continue; }
                        let (id, seq) = issued[n % issued.len()];
                        let d = offset(current, off);
                        let expected = if let Some(old) = pending.get_mut(&seq) {
                            model.remove(&(*old, seq));
                            model.insert((d, seq), ());
                            *old = d;
                            true
                        } else {
                            false
                        };
                        prop_assert_eq!(wheel.reschedule(id, d), expected);
                    }
                    Op::Advance(delta) => {
                        let now = offset(current, delta);
                        let mut fired: Vec<(TimerId, u64)> = Vec::new();
                        let n = wheel.advance(now, |id, v| fired.push((id, v)));
                        prop_assert_eq!(n, fired.len());
                        // Every fired value was pending, came with the id insert
                        // returned for it, and deadlines are non-decreasing.
                        let mut last = 0u64;
                        for &(id, seq) in &fired {
                            let d = pending.get(&seq).copied();
                            prop_assert!(d.is_some(), "fired a timer that was not pending");
                            let d = d.unwrap_or_default();
                            prop_assert!(d >= last, "fired out of deadline order");
                            last = d;
                            prop_assert!(issued.iter().any(|&(i, s)| i == id && s == seq));
                        }
                        let mut expected: Vec<u64> = Vec::new();
                        if now >= current {
                            let due: Vec<(u64, u64)> =
                                model.range(..=(now, u64::MAX)).map(|(&k, _)| k).collect();
                            for (d, seq) in due {
                                model.remove(&(d, seq));
                                pending.remove(&seq);
                                expected.push(seq);
                            }
                            current = now;
                        }
                        let mut got: Vec<u64> = fired.iter().map(|&(_, v)| v).collect();
                        got.sort_unstable();
                        expected.sort_unstable();
                        prop_assert_eq!(got, expected);
                    }
                }
                prop_assert_eq!(wheel.len(), pending.len());
                prop_assert_eq!(wheel.is_empty(), pending.is_empty());
                prop_assert_eq!(wheel.current_tick(), current);
                for &(id, seq) in &issued {
                    prop_assert_eq!(wheel.deadline(id), pending.get(&seq).copied());
                }
            }
        }
    }
}
