//! Rate limits, sans I/O: time is passed in, nothing here reads a clock.
//!
//! - [`TokenBucket`]: one per connection and limit (messages/s, bytes/s),
//!   16 bytes, integer arithmetic in micro-tokens. The rate and burst are
//!   passed to every call so the bucket need not store them.
//! - [`IpLimiter`]: per-IP concurrent connections and handshakes per second,
//!   shared by every worker through a fixed table of atomics indexed by a
//!   keyed hash of the address. No lock, no allocation after start-up; two
//!   addresses that land in the same slot share its counters, which only
//!   makes their limits stricter.
//!
//! # What "an IP" is
//!
//! An IPv4 address; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
//! dual-stack socket reports) counts as that IPv4 address; any other IPv6
//! address counts as its `/64` network, because a single client commonly
//! holds a whole `/64` and could otherwise pick a fresh address per
//! connection.
//!
//! # Memory
//!
//! 12 bytes per slot: an `AtomicU32` connection count and an `AtomicU64`
//! handshake window, in two arrays. 65,536 slots take 768 KiB
//! ([`IpLimiter::table_bytes`]). The slot count is rounded up to a power of
//! two.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Micro-tokens per token.
const MICRO: i64 = 1_000_000;

/// A token bucket in integer micro-tokens, time in milliseconds.
///
/// Starts full (`burst` tokens) and refills at `rate_per_sec` tokens per
/// second up to `burst`. A take of more than `burst` tokens at once (a
/// message larger than the bytes/s burst) is allowed only when the bucket is
/// full, and leaves it in debt: nothing more passes until the debt is
/// repaid at `rate_per_sec`, so the long-run rate still holds and a large
/// message is never refused forever.
///
/// `rate_per_sec == 0` means unlimited (every take succeeds). A clock that
/// goes backwards refills nothing.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Available micro-tokens; negative while in debt.
    micro: i64,
    /// Time of the last refill.
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate_per_sec: u32, burst: u32, now_ms: u64) -> Self {
        let _ = rate_per_sec;
        TokenBucket { micro: burst as i64 * MICRO, last_ms: now_ms }
    }

    /// Takes `amount` tokens at `now_ms` if they are there; true when the
    /// caller may go ahead. Refused takes take nothing.
    pub fn try_take(&mut self, amount: u32, now_ms: u64, rate_per_sec: u32, burst: u32) -> bool {
        if rate_per_sec == 0 || amount == 0 {
            return true;
        }
        let cap = burst as i64 * MICRO;
        self.refill(now_ms, rate_per_sec, cap);
        let need = amount as i64 * MICRO;
        if self.micro >= need || (need > cap && self.micro >= cap) {
            self.micro -= need;
            true
        } else {
            false
        }
    }

    /// Milliseconds from `now_ms` until a take of `amount` would succeed
    /// (0 if it would now); for `Retry-After`-style hints and tests. Does
    /// not change the bucket.
    pub fn wait_ms(&self, amount: u32, now_ms: u64, rate_per_sec: u32, burst: u32) -> u64 {
        if rate_per_sec == 0 || amount == 0 {
            return 0;
        }
        let cap = burst as i64 * MICRO;
        let mut b = self.clone();
        b.refill(now_ms, rate_per_sec, cap);
        let target = (amount as i64 * MICRO).min(cap);
        if b.micro >= target {
            return 0;
        }
        let per_ms = rate_per_sec as u64 * 1000;
        ((target - b.micro) as u64).div_ceil(per_ms)
    }

    fn refill(&mut self, now_ms: u64, rate_per_sec: u32, cap: i64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
        }
        // rate tokens/s = rate * 1000 micro-tokens/ms: exact, no rounding.
        let add = (elapsed as u128 * rate_per_sec as u128 * 1000).min(i64::MAX as u128) as i64;
        self.micro = self.micro.saturating_add(add).min(cap);
    }
}

/// Why [`IpLimiter::admit_detailed`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRefusal {
    /// The address already holds `max_conns_per_ip` connections.
    TooManyConnections,
    /// The address used its handshakes for this second.
    HandshakeRate,
}

impl IpRefusal {
    /// A stable label for the refusal counter.
    pub fn metric_label(self) -> &'static str {
        match self {
            IpRefusal::TooManyConnections => "ip_connections",
            IpRefusal::HandshakeRate => "ip_handshake_rate",
        }
    }

    /// The `Retry-After` value, in seconds.
    pub fn retry_after_s(self) -> u32 {
        match self {
            IpRefusal::TooManyConnections => CONNECTIONS_RETRY_AFTER_S,
            IpRefusal::HandshakeRate => 1,
        }
    }
}

/// `Retry-After` for a refusal by the connection cap: a guess (nothing says
/// when one of the address's connections will close), long enough to damp
/// a reconnect loop.
pub const CONNECTIONS_RETRY_AFTER_S: u32 = 5;

/// Per-IP limits shared by all workers, lock-free.
pub struct IpLimiter {
    /// Live connections per slot.
    conns: Box<[AtomicU32]>,
    /// Handshake window per slot: `(unix second as u32) << 32 | count`.
    windows: Box<[AtomicU64]>,
    mask: usize,
    max_conns: u32,
    handshakes_per_sec: u32,
    /// Random keys, chosen at start-up: an attacker cannot pick addresses
    /// that share a victim's slot.
    hasher: RandomState,
}

impl std::fmt::Debug for IpLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpLimiter")
            .field("slots", &self.slots())
            .field("max_conns_per_ip", &self.max_conns)
            .field("handshakes_per_sec_per_ip", &self.handshakes_per_sec)
            .finish_non_exhaustive()
    }
}

impl IpLimiter {
    /// `slots` is rounded up to a power of two (at least 1);
    /// `max_conns_per_ip` and `handshakes_per_sec_per_ip` of 0 turn that
    /// limit off (connections are still counted).
    pub fn new(slots: usize, max_conns_per_ip: u32, handshakes_per_sec_per_ip: u32) -> Self {
        let n = slots.max(1).next_power_of_two();
        IpLimiter {
            conns: (0..n).map(|_| AtomicU32::new(0)).collect(),
            windows: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            max_conns: max_conns_per_ip,
            handshakes_per_sec: handshakes_per_sec_per_ip,
            hasher: RandomState::new(),
        }
    }

    /// At accept/handshake: `Ok` if `ip` is under both limits at `now_ms`
    /// (ms since the epoch), and then the connection counts against `ip`
    /// until [`IpLimiter::release`]; `Err(retry_after_secs)` otherwise, and
    /// nothing is held.
    pub fn admit(&self, ip: IpAddr, now_ms: u64) -> Result<(), u32> {
        self.admit_detailed(ip, now_ms).map_err(IpRefusal::retry_after_s)
    }

    /// [`IpLimiter::admit`], saying which limit refused.
    ///
    /// The handshake rate is checked (and, if under, counted) first: an
    /// attempt refused by the connection cap still uses one of the second's
    /// handshakes, an attempt refused by the rate uses nothing.
    pub fn admit_detailed(&self, ip: IpAddr, now_ms: u64) -> Result<(), IpRefusal> {
        let slot = self.slot(ip);
        if self.handshakes_per_sec > 0 {
            self.count_handshake(slot, now_ms)?;
        }
        let max = if self.max_conns == 0 { u32::MAX } else { self.max_conns };
        // Relaxed: each counter stands alone, it publishes no other data.
        self.conns[slot]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| (c < max).then_some(c + 1))
            .map(|_| ())
            .map_err(|_| IpRefusal::TooManyConnections)
    }

    /// One connection admitted for `ip` is gone. Call exactly once per `Ok`
    /// from [`IpLimiter::admit`]; an extra call is ignored at zero.
    pub fn release(&self, ip: IpAddr) {
        let slot = self.slot(ip);
        let _ = self.conns[slot]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
    }

    /// Connections counted for `ip`'s slot (with any address sharing it).
    pub fn connections(&self, ip: IpAddr) -> u32 {
        self.conns[self.slot(ip)].load(Ordering::Relaxed)
    }

    /// Number of slots (a power of two).
    pub fn slots(&self) -> usize {
        self.mask + 1
    }

    /// Bytes held by the table: 12 per slot.
    pub fn table_bytes(&self) -> usize {
        self.slots() * (std::mem::size_of::<AtomicU32>() + std::mem::size_of::<AtomicU64>())
    }

    /// A fixed one-second window per slot, updated by compare-exchange.
    fn count_handshake(&self, slot: usize, now_ms: u64) -> Result<(), IpRefusal> {
        let second = (now_ms / 1000) as u32;
        let w = &self.windows[slot];
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            let (cur_second, count) = ((cur >> 32) as u32, cur as u32);
            // A later second (or the first use) opens a new window. A thread
            // whose `now_ms` is a little behind another's counts against the
            // current window rather than resetting it (seconds compare with
            // wrap-around).
            let later = cur == 0 || (second.wrapping_sub(cur_second) as i32) > 0;
            let next = if later {
                ((second as u64) << 32) | 1
            } else if count >= self.handshakes_per_sec {
                return Err(IpRefusal::HandshakeRate);
            } else {
                cur + 1
            };
            match w.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// The slot of `ip`: a keyed hash of the address (IPv4, or IPv6 `/64`).
    fn slot(&self, ip: IpAddr) -> usize {
        let key: (u8, u64) = match ip {
            IpAddr::V4(v4) => (4, u32::from(v4) as u64),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (4, u32::from(v4) as u64),
                None => (6, (u128::from(v6) >> 64) as u64),
            },
        };
        self.hasher.hash_one(key) as usize & self.mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    #[test]
    fn bucket_is_small() {
        assert_eq!(std::mem::size_of::<TokenBucket>(), 16);
    }

    #[test]
    fn bucket_starts_full_and_refills() {
        let (rate, burst) = (10, 5);
        let mut b = TokenBucket::new(rate, burst, 1_000);
        for _ in 0..5 {
            assert!(b.try_take(1, 1_000, rate, burst));
        }
        assert!(!b.try_take(1, 1_000, rate, burst));
        assert_eq!(b.wait_ms(1, 1_000, rate, burst), 100);
        // 10/s: one token per 100 ms, exactly.
        assert!(!b.try_take(1, 1_099, rate, burst));
        assert!(b.try_take(1, 1_100, rate, burst));
        assert!(!b.try_take(1, 1_100, rate, burst));
        // Refill stops at the burst.
        assert!(b.try_take(5, 60_000, rate, burst));
        assert!(!b.try_take(1, 60_000, rate, burst));
    }

    #[test]
    fn bucket_refused_take_takes_nothing() {
        let mut b = TokenBucket::new(1, 10, 0);
        assert!(b.try_take(6, 0, 1, 10));
        assert!(!b.try_take(5, 0, 1, 10));
        assert!(b.try_take(4, 0, 1, 10));
        assert!(!b.try_take(1, 0, 1, 10));
    }

    #[test]
    fn bucket_sub_token_rates_accumulate() {
        // 1 token/s: 999 ms is not enough, 1000 ms is; partial time adds up.
        let mut b = TokenBucket::new(1, 1, 0);
        assert!(b.try_take(1, 0, 1, 1));
        for t in (100..1000).step_by(100) {
            assert!(!b.try_take(1, t, 1, 1), "{t}");
        }
        assert!(b.try_take(1, 1000, 1, 1));
    }

    #[test]
    fn bucket_long_run_rate() {
        // A client sending as fast as possible for 10 s at 100/s with burst
        // 20 gets 20 + 100 * 10 messages.
        let (rate, burst) = (100, 20);
        let mut b = TokenBucket::new(rate, burst, 0);
        let passed =
            (0..=10_000u64).flat_map(|t| [t; 5]).filter(|&t| b.try_take(1, t, rate, burst)).count();
        assert_eq!(passed, 20 + 1000);
    }

    #[test]
    fn bucket_oversized_take_goes_into_debt() {
        // bytes/s: 1000/s, burst 1000; a 3000-byte message passes on a full
        // bucket and leaves 2000 of debt: nothing more for 2 s.
        let (rate, burst) = (1000, 1000);
        let mut b = TokenBucket::new(rate, burst, 0);
        assert!(b.try_take(3000, 0, rate, burst));
        assert!(!b.try_take(1, 0, rate, burst));
        assert!(!b.try_take(1, 1_999, rate, burst));
        assert_eq!(b.wait_ms(1, 1_999, rate, burst), 2);
        assert!(!b.try_take(1, 2_000, rate, burst));
        assert!(b.try_take(1, 2_001, rate, burst));
        // Only on a full bucket.
        let mut b = TokenBucket::new(rate, burst, 0);
        assert!(b.try_take(1, 0, rate, burst));
        assert!(!b.try_take(3000, 0, rate, burst));
        assert!(b.try_take(3000, 1, rate, burst));
        // Extremes do not overflow.
        let mut b = TokenBucket::new(u32::MAX, u32::MAX, 0);
        assert!(b.try_take(u32::MAX, u64::MAX, u32::MAX, u32::MAX));
        let mut b = TokenBucket::new(1, 0, 0);
        assert!(b.try_take(u32::MAX, 0, 1, 0));
        assert!(!b.try_take(1, u32::MAX as u64 * 1000 - 1, 1, 0));
        assert!(b.try_take(1, u32::MAX as u64 * 1000, 1, 0));
    }

    #[test]
    fn bucket_zero_rate_is_unlimited_and_clock_may_go_back() {
        let mut b = TokenBucket::new(0, 0, 0);
        for _ in 0..1000 {
            assert!(b.try_take(1_000_000, 0, 0, 0));
        }
        let mut b = TokenBucket::new(1, 1, 10_000);
        assert!(b.try_take(1, 10_000, 1, 1));
        assert!(!b.try_take(1, 5_000, 1, 1), "time going back refills nothing");
        assert!(!b.try_take(1, 10_999, 1, 1));
        assert!(b.try_take(1, 11_000, 1, 1));
        assert!(b.try_take(0, 11_000, 1, 1));
    }

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
    }

    #[test]
    fn connection_cap_per_ip() {
        let l = IpLimiter::new(65536, 3, 0);
        for _ in 0..3 {
            assert_eq!(l.admit(v4(1), 0), Ok(()));
        }
        assert_eq!(l.admit(v4(1), 0), Err(CONNECTIONS_RETRY_AFTER_S));
        assert_eq!(l.admit_detailed(v4(1), 0), Err(IpRefusal::TooManyConnections));
        assert_eq!(l.connections(v4(1)), 3);
        // Another address is unaffected (unless it shares the slot; with
        // 65536 slots and random keys, try a few to find a free one).
        let other = (2..50).map(v4).find(|&ip| l.connections(ip) == 0).unwrap();
        assert_eq!(l.admit(other, 0), Ok(()));
        l.release(v4(1));
        assert_eq!(l.connections(v4(1)), 2);
        assert_eq!(l.admit(v4(1), 0), Ok(()));
        for _ in 0..10 {
            l.release(v4(1));
        }
        assert_eq!(l.connections(v4(1)), 0, "extra releases stop at zero");
    }

    #[test]
    fn cap_off_still_counts() {
        let l = IpLimiter::new(16, 0, 0);
        for _ in 0..1000 {
            assert!(l.admit(v4(1), 0).is_ok());
        }
        assert_eq!(l.connections(v4(1)), 1000);
    }

    #[test]
    fn handshake_rate_fixed_window() {
        let l = IpLimiter::new(1024, 0, 2);
        assert_eq!(l.admit(v4(1), 5_000), Ok(()));
        assert_eq!(l.admit(v4(1), 5_500), Ok(()));
        assert_eq!(l.admit(v4(1), 5_999), Err(1));
        assert_eq!(l.admit_detailed(v4(1), 5_999), Err(IpRefusal::HandshakeRate));
        // Refused handshakes hold no connection.
        assert_eq!(l.connections(v4(1)), 2);
        // The next second opens a new window.
        assert_eq!(l.admit(v4(1), 6_000), Ok(()));
        assert_eq!(l.admit(v4(1), 6_999), Ok(()));
        assert_eq!(l.admit(v4(1), 6_999), Err(1));
        assert_eq!(l.admit(v4(1), 60_000), Ok(()));
        // A caller whose clock is a little behind counts against the current
        // window instead of resetting it.
        assert_eq!(l.admit(v4(1), 59_999), Ok(()));
        assert_eq!(l.admit(v4(1), 59_000), Err(1));
        assert_eq!(l.admit(v4(1), 60_500), Err(1));
        // Epoch seconds past 2038 (over i32::MAX) work from a fresh slot.
        let late = (i32::MAX as u64 + 100) * 1000;
        let l = IpLimiter::new(1, 0, 1);
        assert_eq!(l.admit(v4(1), late), Ok(()));
        assert_eq!(l.admit(v4(1), late), Err(1));
        assert_eq!(l.admit(v4(1), late + 1000), Ok(()));
        assert!(format!("{l:?}").contains("slots: 1"));
    }

    #[test]
    fn both_limits() {
        let l = IpLimiter::new(64, 1, 3);
        assert_eq!(l.admit(v4(1), 0), Ok(()));
        assert_eq!(l.admit_detailed(v4(1), 0), Err(IpRefusal::TooManyConnections));
        l.release(v4(1));
        assert_eq!(l.admit(v4(1), 0), Ok(()));
        l.release(v4(1));
        // Three handshakes used this second (the refused one counted).
        assert_eq!(l.admit_detailed(v4(1), 0), Err(IpRefusal::HandshakeRate));
        assert_eq!(l.connections(v4(1)), 0);
        assert_eq!(IpRefusal::HandshakeRate.metric_label(), "ip_handshake_rate");
        assert_eq!(IpRefusal::TooManyConnections.metric_label(), "ip_connections");
    }

    #[test]
    fn collisions_only_make_limits_stricter() {
        // One slot: every address shares it.
        let l = IpLimiter::new(1, 2, 0);
        assert_eq!(l.slots(), 1);
        assert!(l.admit(v4(1), 0).is_ok());
        assert!(l.admit(v4(2), 0).is_ok());
        assert!(l.admit(v4(3), 0).is_err());
        assert_eq!(l.connections(v4(9)), 2);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let l = IpLimiter::new(65536, 2, 0);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(l.admit(a, 0).is_ok());
        assert!(l.admit(b, 0).is_ok());
        assert!(l.admit(a, 0).is_err(), "same /64");
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped());
        let plain = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        assert!(l.admit(mapped, 0).is_ok());
        assert_eq!(l.connections(plain), 1);
        l.release(plain);
        assert_eq!(l.connections(mapped), 0);
        assert_eq!(l.connections(IpAddr::V6(Ipv6Addr::LOCALHOST)), 0);
    }

    #[test]
    fn table_memory() {
        let l = IpLimiter::new(65536, 0, 0);
        println!("IpLimiter table: {} slots, {} bytes", l.slots(), l.table_bytes());
        assert_eq!(l.table_bytes(), 65536 * 12);
        assert_eq!(IpLimiter::new(1000, 0, 0).slots(), 1024);
        assert_eq!(IpLimiter::new(0, 0, 0).slots(), 1);
    }

    #[test]
    fn concurrent_connection_cap_is_exact() {
        let l = Arc::new(IpLimiter::new(4096, 100, 0));
        let ip = v4(1);
        let admitted: u32 = (0..8)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    (0..1000).filter(|_| l.admit(ip, 0).is_ok()).count() as u32
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted, 100);
        assert_eq!(l.connections(ip), 100);
        // Admit/release churn from many threads ends balanced.
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    let other = v4(2);
                    for _ in 0..10_000 {
                        if l.admit(other, 0).is_ok() {
                            l.release(other);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let shares_slot = l.slot(v4(2)) == l.slot(ip);
        assert_eq!(l.connections(v4(2)), if shares_slot { 100 } else { 0 });
        for _ in 0..100 {
            l.release(ip);
        }
        assert_eq!(l.connections(ip), 0);
    }

    #[test]
    fn concurrent_handshake_rate_is_exact() {
        let l = Arc::new(IpLimiter::new(4096, 0, 50));
        let ip = v4(1);
        let run = |now_ms: u64| -> u32 {
            (0..8)
                .map(|_| {
                    let l = Arc::clone(&l);
                    std::thread::spawn(move || {
                        (0..500).filter(|_| l.admit(ip, now_ms).is_ok()).count() as u32
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum()
        };
        assert_eq!(run(1_000), 50);
        assert_eq!(run(1_999), 0);
        assert_eq!(run(2_000), 50);
    }

    #[test]
    fn limiter_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<IpLimiter>();
    }
}
