//! Property test of the timer wheel's public API against a reference model
//! (a sorted map): any long sequence of insert / cancel / reschedule /
//! advance, with small steps and big jumps (many turns of the wheel at once,
//! deadlines in the past, ticks near `u64::MAX`), fires exactly the timers
//! the model says are due, each once, in non-decreasing deadline order, with
//! the id `insert` returned; stale ids never touch anything.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use wsedge::timer::{TimerId, TimerWheel};

#[derive(Clone, Debug)]
enum Op {
    /// Insert at `current + offset` (negative: in the past).
    Insert(i64),
    /// Cancel the n-th id ever issued (modulo; often stale).
    Cancel(usize),
    /// Reschedule the n-th id ever issued to `current + offset`.
    Reschedule(usize, i64),
    /// Advance by `delta` ticks (negative: backwards, a no-op).
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![-8i64..64, -8i64..5000, Just(i64::MAX)].prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Cancel),
        2 => (any::<usize>(), prop_oneof![-8i64..64, -100i64..5000])
            .prop_map(|(i, o)| Op::Reschedule(i, o)),
        4 => (0i64..3).prop_map(Op::Advance),
        2 => (-5i64..300).prop_map(Op::Advance),
        // Jumps of many turns at once.
        1 => (300i64..200_000).prop_map(Op::Advance),
    ]
}

fn at(current: u64, off: i64) -> u64 {
    current.saturating_add_signed(off)
}

/// The reference: pending timers ordered by (deadline, sequence number).
#[derive(Default)]
struct Model {
    due: BTreeSet<(u64, u64)>,
    pending: HashMap<u64, u64>,
}

impl Model {
    fn insert(&mut self, seq: u64, deadline: u64) {
        self.due.insert((deadline, seq));
        self.pending.insert(seq, deadline);
    }

    fn remove(&mut self, seq: u64) -> Option<u64> {
        let d = self.pending.remove(&seq)?;
        self.due.remove(&(d, seq));
        Some(d)
    }

    /// Removes and returns everything due by `now`, in deadline order.
    fn fire(&mut self, now: u64) -> Vec<(u64, u64)> {
        let fired: Vec<(u64, u64)> = self.due.range(..=(now, u64::MAX)).copied().collect();
        for &(_, seq) in &fired {
            self.remove(seq);
        }
        fired
    }
}

fn run(slots: usize, start: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut wheel = TimerWheel::new(slots, start);
    let mut model = Model::default();
    let mut current = start;
    let mut issued: Vec<(TimerId, u64)> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Insert(off) => {
                let d = at(current, off);
                let seq = issued.len() as u64;
                let id = wheel.insert(d, seq);
                prop_assert_eq!(wheel.deadline(id), Some(d));
                issued.push((id, seq));
                model.insert(seq, d);
            }
            Op::Cancel(n) if !issued.is_empty() => {
                let (id, seq) = issued[n % issued.len()];
                let expected = model.remove(seq).map(|_| seq);
                prop_assert_eq!(wheel.cancel(id), expected);
                prop_assert_eq!(wheel.deadline(id), None);
            }
            Op::Reschedule(n, off) if !issued.is_empty() => {
                let (id, seq) = issued[n % issued.len()];
                let d = at(current, off);
                let live = model.remove(seq).is_some();
                if live {
                    model.insert(seq, d);
                }
                prop_assert_eq!(wheel.reschedule(id, d), live);
                prop_assert_eq!(wheel.deadline(id), live.then_some(d));
            }
            Op::Cancel(_) | Op::Reschedule(..) => {}
            Op::Advance(delta) => {
                let now = at(current, delta);
                let mut fired: Vec<(TimerId, u64)> = Vec::new();
                let n = wheel.advance(now, |id, seq| fired.push((id, seq)));
                prop_assert_eq!(n, fired.len());
                let expected = if now >= current {
                    current = now;
                    model.fire(now)
                } else {
                    Vec::new()
                };
                // Deadline order; ties in any order.
                let got_deadlines: Vec<u64> = fired
                    .iter()
                    .map(|&(_, seq)| expected.iter().find(|e| e.1 == seq).map_or(0, |e| e.0))
                    .collect();
                let want_deadlines: Vec<u64> = expected.iter().map(|e| e.0).collect();
                let mut got_seqs: Vec<u64> = fired.iter().map(|f| f.1).collect();
                let mut want_seqs: Vec<u64> = expected.iter().map(|e| e.1).collect();
                got_seqs.sort_unstable();
                want_seqs.sort_unstable();
                prop_assert_eq!(got_seqs, want_seqs, "step {}: fired set", step);
                prop_assert_eq!(got_deadlines, want_deadlines, "step {}: order", step);
                for (id, seq) in fired {
                    prop_assert_eq!(issued[seq as usize].0, id, "fired with another id");
                    prop_assert_eq!(wheel.deadline(id), None, "fired id still pending");
                }
            }
        }
        prop_assert_eq!(wheel.len(), model.pending.len());
        prop_assert_eq!(wheel.is_empty(), model.pending.is_empty());
        prop_assert_eq!(wheel.current_tick(), current);
        if step % 64 == 0 {
            for &(id, seq) in &issued {
                prop_assert_eq!(wheel.deadline(id), model.pending.get(&seq).copied());
            }
        }
    }
    // Everything still pending fires eventually, exactly once.
    let mut rest = Vec::new();
    wheel.advance(u64::MAX, |_, seq| rest.push(seq));
    let mut want: Vec<u64> = model.fire(u64::MAX).into_iter().map(|e| e.1).collect();
    rest.sort_unstable();
    want.sort_unstable();
    prop_assert_eq!(rest, want);
    prop_assert!(wheel.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn timer_wheel_agrees_with_a_sorted_map(
        slots in prop_oneof![Just(1usize), Just(4), Just(64), Just(1024)],
        start in prop_oneof![Just(0u64), 0u64..1_000_000, Just(u64::MAX - 300_000)],
        ops in prop::collection::vec(op(), 1..1000),
    ) {
        run(slots, start, ops)?;
    }
}
