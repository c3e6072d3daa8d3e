//! The client's side of the `/ws` pub/sub protocol (PROTOCOL.md): the rooms
//! it is in, with each room's last seen `{offset, epoch}`; the subscribe
//! and resubscribe requests; and the sorting of what the server sends into
//! deliveries, duplicates, acks of our subscribes, and everything else.
//!
//! Deliveries carry `offset` and `epoch` (servers with history), or `seq`
//! and no epoch (servers without): `seq` is read as the offset. A delivery
//! for a room at an offset at or below the last one seen in the same epoch
//! is a duplicate and never reaches the user. A server without epochs
//! numbers each connection's subscription afresh, so after a reconnect to
//! one the room's position is forgotten and [`AckOutcome::NotRecovered`]
//! is reported.
//!
//! Pure: strings in, strings and decisions out.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::value::RawValue;

/// A message delivered from a room.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The room.
    pub room: String,
    /// The publisher's connection id; `None` when the server published.
    pub from: Option<String>,
    /// The message's position in the room (`offset`, or `seq` from a
    /// server without history).
    pub offset: u64,
    /// The room's history epoch, if the server has history.
    pub epoch: Option<String>,
    /// The published JSON value, exactly as sent.
    pub data: Box<RawValue>,
}

/// What the ack of one of our subscribes means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// A first subscribe was acked at this position.
    Subscribed {
        /// Offset in the ack (the room's current position), if any.
        offset: Option<u64>,
        /// Epoch in the ack, if any.
        epoch: Option<String>,
    },
    /// A resubscribe recovered: the missed messages follow.
    Recovered,
    /// A resubscribe did not recover (epoch changed, history too short, or
    /// a server without history): the application should refetch. The room
    /// continues from the ack's position (`offset`, `epoch`; none from a
    /// server without history).
    NotRecovered {
        /// The room's offset when the subscription took effect.
        offset: Option<u64>,
        /// The room's epoch.
        epoch: Option<String>,
    },
    /// The server refused the subscribe (`code`, `message` from its error).
    Refused {
        /// Error code (PROTOCOL.md).
        code: String,
        /// Error message.
        message: String,
    },
}

/// How one text message from the server was sorted.
#[derive(Debug)]
pub enum Sorted {
    /// A new delivery for the user.
    Delivery(Delivery),
    /// A delivery already seen (same room and epoch, offset not above the
    /// last one): dropped.
    Duplicate,
    /// The answer to one of our subscribes.
    Ack {
        /// The room.
        room: String,
        /// What it means.
        outcome: AckOutcome,
    },
    /// Anything else (welcome, other acks, errors, direct messages,
    /// presence): passed to the user as text.
    Other,
}

#[derive(Clone, Debug, Default)]
struct Room {
    last: Option<u64>,
    epoch: Option<String>,
    /// An ack was received on some connection: a later subscribe is a
    /// resubscribe.
    acked: bool,
}

/// The rooms a client is in, and its outstanding subscribes.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: BTreeMap<String, Room>,
    /// Request id -> (room, is a resubscribe).
    pending: HashMap<String, (String, bool)>,
    next_id: u64,
    duplicates: u64,
}

/// The fields of a server message we read.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Prefix of the ids of our own subscribe requests (the user's requests
/// can use any other id).
pub const ID_PREFIX: &str = "wsedge-client:";

impl Rooms {
    /// Rooms joined (subscribed or about to be), in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// The last offset and epoch seen in `room`.
    pub fn position(&self, room: &str) -> Option<(Option<u64>, Option<&str>)> {
        self.rooms.get(room).map(|r| (r.last, r.epoch.as_deref()))
    }

    /// Duplicates dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Adds `room`; returns false if it was already there.
    pub fn add(&mut self, room: &str) -> bool {
        if self.rooms.contains_key(room) {
            return false;
        }
        self.rooms.insert(room.to_owned(), Room::default());
        true
    }

    /// Removes `room`; returns the unsubscribe request if it was there.
    pub fn remove(&mut self, room: &str) -> Option<String> {
        self.rooms.remove(room)?;
        Some(serde_json::json!({"type": "unsubscribe", "room": room}).to_string())
    }

    /// The subscribe request for `room` (which must have been added): with
    /// `since` when an earlier connection saw the room's epoch.
    pub fn subscribe_request(&mut self, room: &str) -> Option<String> {
        let r = self.rooms.get(room)?;
        self.next_id += 1;
        let id = format!("{ID_PREFIX}{}", self.next_id);
        let mut req = serde_json::json!({"type": "subscribe", "room": room, "id": id});
        if let (true, Some(epoch)) = (r.acked, &r.epoch) {
            req["since"] = serde_json::json!({"offset": r.last.unwrap_or(0), "epoch": epoch});
        }
        self.pending.insert(id, (room.to_owned(), r.acked));
        Some(req.to_string())
    }

    /// Subscribe requests for every room, for a new connection.
    pub fn resubscribe_all(&mut self) -> Vec<String> {
        let names: Vec<String> = self.rooms.keys().cloned().collect();
        names.iter().filter_map(|n| self.subscribe_request(n)).collect()
    }

    /// The connection ended: outstanding subscribes will never be acked.
    pub fn disconnected(&mut self) {
        self.pending.clear();
    }

    /// The publish request for `data` (JSON) to `room`, with `id` if the
    /// caller wants an ack.
    pub fn publish_request(room: &str, data: &RawValue, id: Option<&str>) -> String {
        // A room is a JSON string; `data` is already JSON.
        let room = serde_json::Value::from(room).to_string();
        match id {
            None => format!(r#"{{"type":"publish","room":{room},"data":{}}}"#, data.get()),
            Some(id) => {
                let id = serde_json::Value::from(id).to_string();
                format!(r#"{{"type":"publish","room":{room},"data":{},"id":{id}}}"#, data.get())
            }
        }
    }

    /// Sorts one text message from the server.
    pub fn handle_text(&mut self, text: &str) -> Sorted {
        let Ok(w) = serde_json::from_str::<Wire>(text) else {
            return Sorted::Other;
        };
        match &*w.kind {
            "message" => self.delivery(w),
            "ack" | "error" => {
                let Some(id) = w.id.as_ref().and_then(|v| v.as_str()) else {
                    return Sorted::Other;
                };
                let Some((room, resub)) = self.pending.remove(id) else {
                    return Sorted::Other;
                };
                let outcome = if w.kind == "error" {
                    self.rooms.remove(&room);
                    AckOutcome::Refused {
                        code: w.code.unwrap_or_default(),
                        message: w.message.unwrap_or_default(),
                    }
                } else {
                    self.ack(&room, resub, w.offset, w.epoch, w.recovered)
                };
                Sorted::Ack { room, outcome }
            }
            _ => Sorted::Other,
        }
    }

    fn ack(
        &mut self,
        room: &str,
        resub: bool,
        offset: Option<u64>,
        epoch: Option<String>,
        recovered: Option<bool>,
    ) -> AckOutcome {
        let Some(r) = self.rooms.get_mut(room) else {
            // Unsubscribed meanwhile.
            return AckOutcome::NotRecovered { offset, epoch };
        };
        r.acked = true;
        if resub && recovered == Some(true) && epoch.is_some() && epoch == r.epoch {
            // The missed messages follow, above `r.last`.
            return AckOutcome::Recovered;
        }
        // A new position: the ack's, in its epoch (none from a server
        // without history, which numbers each subscription afresh).
        r.last = if epoch.is_some() { offset } else { None };
        r.epoch = epoch.clone();
        if resub {
            AckOutcome::NotRecovered { offset: r.last, epoch }
        } else {
            AckOutcome::Subscribed { offset, epoch }
        }
    }

    fn delivery(&mut self, w: Wire) -> Sorted {
        let (Some(room), Some(offset)) = (w.room, w.offset.or(w.seq)) else {
            return Sorted::Other;
        };
        if let Some(r) = self.rooms.get_mut(&room) {
            if w.epoch.is_some() && w.epoch != r.epoch {
                // The room's history restarted: a new numbering.
                r.epoch = w.epoch.clone();
                r.last = None;
            }
            if r.last.is_some_and(|last| offset <= last) {
                self.duplicates += 1;
                return Sorted::Duplicate;
            }
            r.last = Some(offset);
        }
        let data = w.data.unwrap_or_else(|| {
            RawValue::from_string("null".to_owned()).expect("bug: null is JSON")
        });
        Sorted::Delivery(Delivery { room, from: w.from, offset, epoch: w.epoch, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(req: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(req).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    fn deliver(rooms: &mut Rooms, text: &str) -> Option<u64> {
        match rooms.handle_text(text) {
            Sorted::Delivery(d) => Some(d.offset),
            Sorted::Duplicate => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn history_server_resubscribe_recovers_and_drops_duplicates() {
        let mut rooms = Rooms::default();
        rooms.add("chat");
        let req = rooms.subscribe_request("chat").unwrap();
        assert!(!req.contains("since"), "{req}");
        let ack = format!(
            r#"{{"type":"ack","id":"{}","room":"chat","offset":10,"epoch":"e1"}}"#,
            id_of(&req)
        );
        assert!(matches!(
            rooms.handle_text(&ack),
            Sorted::Ack { outcome: AckOutcome::Subscribed { offset: Some(10), .. }, .. }
        ));
        let msg = |o: u64| {
            format!(
                r#"{{"type":"message","room":"chat","from":"1","offset":{o},"epoch":"e1","data":{{"n":{o}}}}}"#
            )
        };
        assert_eq!(deliver(&mut rooms, &msg(10)), None, "at the ack's position: already seen");
        assert_eq!(deliver(&mut rooms, &msg(11)), Some(11));
        assert_eq!(deliver(&mut rooms, &msg(12)), Some(12));

        // Reconnect: the resubscribe carries the position.
        rooms.disconnected();
        let req = rooms.resubscribe_all().pop().unwrap();
        let v: serde_json::Value = serde_json::from_str(&req).unwrap();
        assert_eq!(v["since"], serde_json::json!({"offset": 12, "epoch": "e1"}));
        let ack = format!(
            r#"{{"type":"ack","id":"{}","room":"chat","offset":15,"epoch":"e1","recovered":true}}"#,
            id_of(&req)
        );
        assert!(matches!(
            rooms.handle_text(&ack),
            Sorted::Ack { outcome: AckOutcome::Recovered, .. }
        ));
        // Replay, with an overlap the user must not see twice.
        let got: Vec<_> =
            [12, 13, 14, 14, 15, 16].iter().filter_map(|&o| deliver(&mut rooms, &msg(o))).collect();
        assert_eq!(got, [13, 14, 15, 16]);
        assert_eq!(rooms.duplicates(), 3);
    }

    #[test]
    fn epoch_change_is_not_recovered_and_renumbers() {
        let mut rooms = Rooms::default();
        rooms.add("r");
        let req = rooms.subscribe_request("r").unwrap();
        rooms.handle_text(&format!(
            r#"{{"type":"ack","id":"{}","offset":5,"epoch":"a"}}"#,
            id_of(&req)
        ));
        rooms.disconnected();
        let req = rooms.resubscribe_all().pop().unwrap();
        let ack = format!(
            r#"{{"type":"ack","id":"{}","offset":2,"epoch":"b","recovered":false}}"#,
            id_of(&req)
        );
        assert!(matches!(
            rooms.handle_text(&ack),
            Sorted::Ack { outcome: AckOutcome::NotRecovered { .. }, .. }
        ));
        let m = r#"{"type":"message","room":"r","offset":3,"epoch":"b","data":1}"#;
        assert_eq!(deliver(&mut rooms, m), Some(3));
        assert_eq!(rooms.position("r"), Some((Some(3), Some("b"))));
    }

    #[test]
    fn server_without_history_restarts_numbering_on_each_connection() {
        let mut rooms = Rooms::default();
        rooms.add("r");
        let req = rooms.subscribe_request("r").unwrap();
        rooms.handle_text(&format!(r#"{{"type":"ack","id":"{}"}}"#, id_of(&req)));
        let m =
            |s: u64| format!(r#"{{"type":"message","room":"r","from":"3","seq":{s},"data":"x"}}"#);
        assert_eq!(deliver(&mut rooms, &m(1)), Some(1));
        assert_eq!(deliver(&mut rooms, &m(2)), Some(2));
        assert_eq!(deliver(&mut rooms, &m(2)), None);
        rooms.disconnected();
        let req = rooms.resubscribe_all().pop().unwrap();
        assert!(!req.contains("since"), "no epoch known: {req}");
        let ack = format!(r#"{{"type":"ack","id":"{}"}}"#, id_of(&req));
        assert!(matches!(
            rooms.handle_text(&ack),
            Sorted::Ack { outcome: AckOutcome::NotRecovered { .. }, .. }
        ));
        // The restarted server's seq 1 is a new message, not a duplicate.
        assert_eq!(deliver(&mut rooms, &m(1)), Some(1));
    }

    #[test]
    fn refusals_and_foreign_messages() {
        let mut rooms = Rooms::default();
        rooms.add("secret");
        let req = rooms.subscribe_request("secret").unwrap();
        let err = format!(
            r#"{{"type":"error","id":"{}","code":"forbidden","message":"no"}}"#,
            id_of(&req)
        );
        assert!(matches!(
            rooms.handle_text(&err),
            Sorted::Ack { outcome: AckOutcome::Refused { .. }, .. }
        ));
        assert_eq!(rooms.names().count(), 0);
        assert!(matches!(rooms.handle_text(r#"{"type":"welcome","conn_id":"3"}"#), Sorted::Other));
        assert!(matches!(rooms.handle_text(r#"{"type":"ack","id":7}"#), Sorted::Other));
        assert!(matches!(rooms.handle_text("not json"), Sorted::Other));
        let data = RawValue::from_string(r#"{"a":[1,2]}"#.into()).unwrap();
        assert_eq!(
            Rooms::publish_request("q\"r", &data, None),
            r#"{"type":"publish","room":"q\"r","data":{"a":[1,2]}}"#
        );
        assert_eq!(
            Rooms::publish_request("r", &data, Some("p1")),
            r#"{"type":"publish","room":"r","data":{"a":[1,2]},"id":"p1"}"#
        );
    }
}
