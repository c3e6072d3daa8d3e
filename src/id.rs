//! Connection ids: the one place that knows their bit layout.
//!
//! An id names a connection for its whole life and is never reused while an
//! old one might still be referred to: it packs the worker index, the slab
//! key and the slot's generation (bumped on every reuse of the key). Events,
//! deliveries and replies carry ids, and a stale id (old generation) finds
//! nothing.

use std::fmt;

/// Bits of a connection id holding the slab key (4 Mi connections per worker).
pub const KEY_BITS: u32 = 22;
/// Bits of a connection id holding the slot generation.
pub const GEN_BITS: u32 = 32;
/// Largest slab key an id can hold.
pub const MAX_KEY: usize = (1 << KEY_BITS) - 1;

/// A connection id: `worker | generation | key`, most significant first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The id of slab key `key`, generation `gen`, on worker `worker`.
    pub fn from_parts(worker: usize, key: usize, gen: u32) -> ConnId {
        debug_assert!(key <= MAX_KEY, "bug: slab key {key} over the id layout");
        ConnId(((worker as u64) << (KEY_BITS + GEN_BITS)) | ((gen as u64) << KEY_BITS) | key as u64)
    }

    /// An id from its wire form (no check: a made-up id simply finds nothing).
    pub fn new(raw: u64) -> ConnId {
        ConnId(raw)
    }

    /// The wire form.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The worker that holds the connection.
    pub fn worker(self) -> usize {
        (self.0 >> (KEY_BITS + GEN_BITS)) as usize
    }

    /// Its slab key on that worker.
    pub fn key(self) -> usize {
        (self.0 & MAX_KEY as u64) as usize
    }

    /// The id without its worker (key and generation): what the worker
    /// registers with its poll as the token, so an event for a connection
    /// whose slot was freed and reused in the same turn finds nothing.
    /// Below 2^54, so never one of the worker's own reserved tokens.
    pub fn local(self) -> u64 {
        self.0 & ((1 << (KEY_BITS + GEN_BITS)) - 1)
    }

    /// The id on `worker` whose [`ConnId::local`] part is `local`.
    pub fn from_local(worker: usize, local: u64) -> ConnId {
        ConnId(
            ((worker as u64) << (KEY_BITS + GEN_BITS))
                | (local & ((1 << (KEY_BITS + GEN_BITS)) - 1)),
        )
    }

    /// The generation of the slot when the connection was accepted.
    pub fn generation(self) -> u32 {
        ((self.0 >> KEY_BITS) & ((1 << GEN_BITS) - 1)) as u32
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
        assert_eq!((max.worker(), max.key(), max.generation()), (1023, MAX_KEY, u32::MAX));
        assert_eq!(ConnId::new(id.get()), id);
    }

    #[test]
    fn the_local_part_names_key_and_generation_and_stays_below_reserved_tokens() {
        let id = ConnId::from_parts(1023, MAX_KEY, u32::MAX);
        assert_eq!(ConnId::from_local(1023, id.local()), id);
        assert!(id.local() < 1 << 54);
        let reused = ConnId::from_parts(1023, MAX_KEY, 7);
        assert_ne!(reused.local(), ConnId::from_parts(1023, MAX_KEY, 8).local());
    }
}
