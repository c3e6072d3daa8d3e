//! History on one owner, with the clock in the test's hands.

use super::*;

fn on(size: usize, ttl_ms: u64) -> HistorySettings {
    HistorySettings::new(Retention { size, ttl_ms }, DEFAULT_MAX_BYTES)
}

/// Publishes `n` JSON messages `{"n":i}` to `room` at `now`, as the broker
/// does: sequence, encode, store. Returns the last offset.
fn publish(owned: &mut OwnedRooms, room: &str, n: usize, now: u64) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let Some(s) = owned.sequence(room) else { return last };
        let (offset, epoch, keep) = (s.offset, s.epoch, s.keep);
        let data = format!(r#"{{"n":{i}}}"#);
        let frame = proto::message(room, Some(0xab), offset, epoch, &data);
        if keep {
            owned.store(room, &frame, Some(0xab), data.len(), false, now);
        }
        last = offset;
    }
    last
}

fn frame_offset(frame: &Bytes) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&frame[2..]).expect("json");
    v["offset"].as_u64().expect("offset")
}

fn since(owned: &mut OwnedRooms, room: &str, offset: u64) -> Since {
    let epoch = owned.position(room, None, 0).epoch;
    Since { offset, epoch }
}

#[test]
fn patterns_pick_the_retention_first_match_wins() {
    let s = on(5, 1000)
        .with_rule("chat:*", Retention { size: 100, ttl_ms: 300_000 })
        .with_rule("chat:quiet", Retention { size: 1, ttl_ms: 1 })
        .with_rule("ticks:*", Retention::default());
    assert_eq!(s.class_of("chat:lobby"), Some(1));
    assert_eq!(s.class_of("chat:quiet"), Some(1), "the first match wins");
    assert_eq!(s.class_of("ticks:eur"), None, "an override turns history off");
    assert_eq!(s.class_of("other"), Some(0));
    assert!(HistorySettings::default().is_off());
    let only = HistorySettings::default().with_rule("a", Retention { size: 1, ttl_ms: 1 });
    assert!(!only.is_off());
    assert_eq!((only.class_of("a"), only.class_of("ab")), (Some(1), None), "exact name");
}

#[test]
fn a_room_with_history_keeps_its_position_without_subscribers() {
    let mut owned = OwnedRooms::new(on(10, 1000));
    owned.interest("r", 1, true, 0);
    let last = publish(&mut owned, "r", 3, 0);
    let pos = owned.subscribe("r", 2, None, 0, usize::MAX);
    owned.interest("r", 1, false, 0);
    owned.interest("r", 2, false, 0);
    // Nobody subscribed: still sequenced and stored.
    assert_eq!(publish(&mut owned, "r", 2, 10), 5);
    let again =
        owned.subscribe("r", 1, Some(Since { offset: last, epoch: pos.epoch }), 20, 1 << 20);
    assert_eq!((again.offset, again.epoch, again.recovered), (5, pos.epoch, Some(true)));
    assert_eq!(again.replay.iter().map(frame_offset).collect::<Vec<_>>(), vec![4, 5]);
}

#[test]
fn recovery_needs_the_same_epoch_and_every_message_after_since() {
    let mut owned = OwnedRooms::new(on(5, 1000));
    owned.interest("r", 0, true, 0);
    publish(&mut owned, "r", 8, 0); // keeps 4..=8
    let s = since(&mut owned, "r", 0);
    let recovered = |owned: &mut OwnedRooms, offset: u64, epoch: Epoch| {
        let p = owned.subscribe("r", 0, Some(Since { offset, epoch }), 0, usize::MAX);
        (p.recovered, p.replay.iter().map(frame_offset).collect::<Vec<_>>())
    };
    assert_eq!(recovered(&mut owned, 3, s.epoch), (Some(true), vec![4, 5, 6, 7, 8]));
    assert_eq!(recovered(&mut owned, 7, s.epoch), (Some(true), vec![8]));
    assert_eq!(recovered(&mut owned, 8, s.epoch), (Some(true), vec![]), "nothing missed");
    assert_eq!(recovered(&mut owned, 2, s.epoch), (Some(false), vec![]), "3 was evicted");
    assert_eq!(recovered(&mut owned, 9, s.epoch), (Some(false), vec![]), "in the future");
    let other = Epoch(s.epoch.0 ^ 1);
    assert_eq!(recovered(&mut owned, 7, other), (Some(false), vec![]), "another epoch");
    // Too big to replay in one go: not recovered.
    let p = owned.subscribe("r", 0, Some(Since { offset: 3, epoch: s.epoch }), 0, 100);
    assert_eq!((p.recovered, p.replay.len()), (Some(false), 0));
    // A room without history recovers only when nothing was missed.
    let mut plain = OwnedRooms::default();
    plain.interest("p", 0, true, 0);
    publish(&mut plain, "p", 2, 0);
    let e = plain.position("p", None, 0).epoch;
    let p = plain.subscribe("p", 1, Some(Since { offset: 2, epoch: e }), 0, usize::MAX);
    assert_eq!(p.recovered, Some(true));
    let p = plain.subscribe("p", 1, Some(Since { offset: 1, epoch: e }), 0, usize::MAX);
    assert_eq!(p.recovered, Some(false));
}

#[test]
fn size_and_ttl_evict_and_are_counted() {
    let mut owned = OwnedRooms::new(on(3, 1000));
    owned.interest("r", 0, true, 0);
    publish(&mut owned, "r", 5, 0);
    assert_eq!(owned.history_messages(), 3);
    assert_eq!(owned.evictions().size, 2);
    publish(&mut owned, "r", 1, 600);
    owned.expire(999);
    assert_eq!(owned.history_messages(), 3, "not yet 1000 ms old");
    owned.expire(1000);
    assert_eq!(owned.history_messages(), 1, "the two stored at 0 expired");
    assert_eq!(owned.evictions().ttl, 2);
    let page = owned.read("r", 10, None, usize::MAX, 1000);
    assert_eq!((page.offset, page.items.len()), (6, 1));
    owned.expire(1600);
    assert_eq!((owned.history_messages(), owned.evictions().ttl), (0, 3));
    // The position stays while the room has a subscriber.
    assert_eq!(owned.position("r", None, 1600).offset, 6);
}

#[test]
fn a_room_is_forgotten_a_ttl_after_it_has_neither_subscribers_nor_messages() {
    let mut owned = OwnedRooms::new(on(10, 1000));
    owned.interest("r", 0, true, 0);
    publish(&mut owned, "r", 2, 0);
    let epoch = owned.position("r", None, 0).epoch;
    owned.interest("r", 0, false, 500);
    owned.expire(1000); // the messages expire: the room is idle from now
    assert_eq!(owned.len(), 1);
    owned.expire(1999);
    let p = owned.position("r", None, 1999);
    assert_eq!((p.offset, p.epoch), (2, epoch), "kept for a TTL");
    owned.expire(2000);
    assert!(owned.is_empty(), "forgotten");
    assert_eq!(owned.history_bytes(), 0);
    // Next time: a new run of offsets, a new epoch.
    owned.interest("r", 0, true, 2000);
    let s = owned.sequence("r").expect("subscribed");
    assert_eq!(s.offset, 1);
    assert_ne!(s.epoch, epoch);
}

#[test]
fn a_subscriber_back_in_time_keeps_the_room() {
    let mut owned = OwnedRooms::new(on(10, 1000));
    owned.interest("r", 0, true, 0);
    owned.interest("r", 0, false, 0); // idle from 0
    owned.interest("r", 0, true, 500);
    owned.expire(1000);
    owned.interest("r", 0, false, 1200); // idle again from 1200
    owned.expire(2000);
    assert_eq!(owned.len(), 1, "idle for 800 ms only");
    owned.expire(2200);
    assert!(owned.is_empty());
}

#[test]
fn the_byte_cap_evicts_the_oldest_across_rooms() {
    let cap = 2 << 20;
    let mut owned =
        OwnedRooms::new(HistorySettings::new(Retention { size: 100, ttl_ms: 60_000 }, cap));
    // 2,000 rooms x 20 messages, far more than the cap holds.
    for round in 0..20u64 {
        for r in 0..2000 {
            publish(&mut owned, &format!("room-{r}"), 1, round * 10 + r / 1000);
        }
        assert!(owned.history_bytes() <= cap, "{} over the cap", owned.history_bytes());
    }
    assert!(owned.evictions().bytes > 0);
    assert_eq!(owned.evictions().size, 0);
    // The newest round is all there; the oldest is gone.
    let newest = owned.read("room-1999", 100, None, usize::MAX, 200);
    assert_eq!(newest.offset, 20);
    assert!(newest.items.last().is_some_and(|i| i.starts_with(r#"{"offset":20,"#)));
    let oldest = owned.read("room-0", 100, None, usize::MAX, 200);
    assert!(!oldest.items.iter().any(|i| i.starts_with(r#"{"offset":1,"#)));
    // The bookkeeping stays proportional to what is held.
    assert!(owned.history.queued <= 2 * owned.history.live + 1024 + 1);
}

#[test]
fn stale_stamps_are_compacted_under_size_eviction() {
    let mut owned = OwnedRooms::new(on(2, 3_600_000));
    owned.interest("r", 0, true, 0);
    publish(&mut owned, "r", 100_000, 0);
    assert_eq!(owned.history_messages(), 2);
    assert!(owned.history.queued <= 2 * 2 + 1024 + 1, "{}", owned.history.queued);
    assert_eq!(owned.history_bytes(), {
        let frames: usize = owned.rooms["r"]
            .log
            .as_deref()
            .map_or(0, |l| l.entries.iter().map(|s| s.frame.len() + ENTRY_OVERHEAD).sum());
        frames + History::room_cost("r")
    });
}

#[test]
fn history_pages_are_bounded_and_say_when_truncated() {
    let mut owned = OwnedRooms::new(on(50, 60_000));
    owned.interest("r", 0, true, 0);
    publish(&mut owned, "r", 30, 0);
    let offsets = |p: &Page| -> Vec<u64> {
        p.items
            .iter()
            .map(|i| {
                let v: serde_json::Value = serde_json::from_str(i).expect("json");
                assert_eq!(v["from"], "ab");
                v["offset"].as_u64().expect("offset")
            })
            .collect()
    };
    let p = owned.read("r", 5, None, usize::MAX, 0);
    assert_eq!((offsets(&p), p.truncated), ((26..=30).collect(), true), "the newest 5");
    let p = owned.read("r", 100, None, usize::MAX, 0);
    assert_eq!((offsets(&p).len(), p.truncated), (30, false));
    let s = since(&mut owned, "r", 10);
    let p = owned.read("r", 5, Some(s), usize::MAX, 0);
    assert_eq!((offsets(&p), p.truncated), ((11..=15).collect(), true), "the first 5 after 10");
    let p = owned.read("r", 100, Some(Since { offset: 28, ..s }), usize::MAX, 0);
    assert_eq!((offsets(&p), p.truncated), (vec![29, 30], false));
    let p = owned.read("r", 100, Some(Since { offset: 28, epoch: Epoch(s.epoch.0 ^ 1) }), 1, 0);
    assert!(p.items.is_empty(), "another epoch: nothing");
    // Bytes: one entry is ~40 bytes; 100 bytes hold two, the newest.
    let p = owned.read("r", 100, None, 100, 0);
    assert_eq!((offsets(&p), p.truncated), (vec![29, 30], true));
    let p = owned.read("r", 100, None, 1, 0);
    assert_eq!(offsets(&p), vec![30], "one message always fits");
    // A room without history or state: offset 0, nothing.
    let mut plain = OwnedRooms::default();
    let p = plain.read("nowhere", 10, None, usize::MAX, 0);
    assert_eq!((p.offset, p.items.len()), (0, 0));
    assert!(plain.is_empty(), "asking does not create state");
}

#[test]
fn binary_messages_come_back_as_base64() {
    let mut owned = OwnedRooms::new(on(5, 60_000));
    let s = owned.sequence("b").expect("history creates the room");
    let offset = s.offset;
    let frame = proto::message_binary("b", None, offset, &[0, 255, 7]);
    owned.store("b", &frame, None, 3, true, 0);
    let p = owned.read("b", 5, None, usize::MAX, 0);
    assert_eq!(p.items, vec![r#"{"offset":1,"from":null,"binary":"AP8H"}"#.to_string()]);
}
