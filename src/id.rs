//! Connection ids: the one place that knows their bit layout.
//!
//! An id names a connection for its whole life and is never reused while an
//! old one might still be referred to: it packs the node id (unique in a
//! cluster, 0 for a single node), the worker index, the slab key and the
//! slot's generation (bumped on every reuse of the key). Events, deliveries
//! and replies carry ids, and a stale id (old generation) finds nothing.

use std::fmt;

/// Bits of a connection id holding the slab key (4 Mi connections per worker).
pub const KEY_BITS: u32 = 22;
/// Bits of a connection id holding the slot generation (a slot is reused
/// 2^20 times before an id repeats).
pub const GEN_BITS: u32 = 20;
/// Bits holding the worker index (up to 1024 workers).
pub const WORKER_BITS: u32 = 10;
/// Bits holding the node id (a cluster of up to 4095 nodes; 0 is a single
/// node).
pub const NODE_BITS: u32 = 12;
/// Largest slab key an id can hold.
pub const MAX_KEY: usize = (1 << KEY_BITS) - 1;
/// Largest node id.
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;

const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
const WORKER_SHIFT: u32 = KEY_BITS + GEN_BITS;
const NODE_SHIFT: u32 = WORKER_SHIFT + WORKER_BITS;

/// A connection id: `node | worker | generation | key`, most significant
/// first (12, 10, 20 and 22 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The id of slab key `key`, generation `gen` (its low [`GEN_BITS`]),
    /// on worker `worker` of node 0; see [`ConnId::on_node`].
    pub fn from_parts(worker: usize, key: usize, gen: u32) -> ConnId {
        debug_assert!(key <= MAX_KEY, "bug: slab key {key} over the id layout");
        debug_assert!(worker < 1 << WORKER_BITS, "bug: worker {worker} over the id layout");
        ConnId(
            ((worker as u64) << WORKER_SHIFT) | ((gen as u64 & GEN_MASK) << KEY_BITS) | key as u64,
        )
    }

    /// The same connection on node `node` (its low [`NODE_BITS`]).
    pub fn on_node(self, node: u16) -> ConnId {
        let node = u64::from(node) & u64::from(MAX_NODE);
        ConnId((self.0 & ((1 << NODE_SHIFT) - 1)) | (node << NODE_SHIFT))
    }

    /// The node that holds the connection (0 for a single node).
    pub fn node(self) -> u16 {
        (self.0 >> NODE_SHIFT) as u16
    }

    /// An id from its wire form (no check: a made-up id simply finds nothing).
    pub fn new(raw: u64) -> ConnId {
        ConnId(raw)
    }

    /// The wire form.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The worker that holds the connection, on its node.
    pub fn worker(self) -> usize {
        ((self.0 >> WORKER_SHIFT) & ((1 << WORKER_BITS) - 1)) as usize
    }

    /// Its slab key on that worker.
    pub fn key(self) -> usize {
        (self.0 & MAX_KEY as u64) as usize
    }

    /// The id without its node and worker (key and generation): what the
    /// worker registers with its poll as the token, so an event for a
    /// connection whose slot was freed and reused in the same turn finds
    /// nothing. Below 2^42, so never one of the worker's own reserved tokens.
    pub fn local(self) -> u64 {
        self.0 & ((1 << WORKER_SHIFT) - 1)
    }

    /// The id on `worker` (of node 0) whose [`ConnId::local`] part is `local`.
    pub fn from_local(worker: usize, local: u64) -> ConnId {
        ConnId(((worker as u64) << WORKER_SHIFT) | (local & ((1 << WORKER_SHIFT) - 1)))
    }

    /// The generation of the slot when the connection was accepted (its low
    /// [`GEN_BITS`]).
    pub fn generation(self) -> u32 {
        ((self.0 >> KEY_BITS) & GEN_MASK) as u32
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_differ_by_generation() {
        let id = ConnId::from_parts(5, 123_456, 7);
        assert_eq!((id.worker(), id.key(), id.generation()), (5, 123_456, 7));
        assert_ne!(ConnId::from_parts(5, 123_456, 8), id);
        let max = ConnId::from_parts(1023, MAX_KEY, u32::MAX);
        assert_eq!((max.worker(), max.key(), max.generation()), (1023, MAX_KEY, GEN_MASK as u32));
        assert_eq!(ConnId::new(id.get()), id);
    }

    #[test]
    fn the_node_is_kept_apart_from_worker_key_and_generation() {
        let id = ConnId::from_parts(1023, MAX_KEY, u32::MAX).on_node(MAX_NODE);
        assert_eq!((id.node(), id.worker(), id.key()), (MAX_NODE, 1023, MAX_KEY));
        assert_eq!(id.generation(), GEN_MASK as u32);
        let other = ConnId::from_parts(1023, MAX_KEY, u32::MAX).on_node(7);
        assert_ne!(id, other, "two nodes never give the same id");
        assert_eq!(other.node(), 7);
        assert_eq!(id.local(), other.local());
        assert_eq!(ConnId::from_parts(3, 5, 9).node(), 0);
    }

    #[test]
    fn the_local_part_names_key_and_generation_and_stays_below_reserved_tokens() {
        let id = ConnId::from_parts(1023, MAX_KEY, u32::MAX);
        assert_eq!(ConnId::from_local(1023, id.local()), id);
        assert!(id.local() < 1 << 42);
        let reused = ConnId::from_parts(1023, MAX_KEY, 7);
        assert_ne!(reused.local(), ConnId::from_parts(1023, MAX_KEY, 8).local());
    }
}
