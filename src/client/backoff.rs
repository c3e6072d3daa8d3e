//! Reconnect delays: exponential backoff with full jitter, and the small
//! random generator behind them (and behind handshake keys).
//!
//! `delay = random(0, min(max, min_delay * 2^attempt))` ("full jitter",
//! as in AWS's "Exponential Backoff And Jitter"): clients dropped at the
//! same moment come back spread over the whole window instead of in waves.
//! Pure: the caller says which attempt it is and owns the generator.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The reconnect policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Window of the first retry (default 500 ms).
    pub min_delay: Duration,
    /// Largest window (default 20 s).
    pub max_delay: Duration,
    /// Give up after this many consecutive failed attempts; `None` (the
    /// default) never gives up.
    pub max_attempts: Option<u32>,
    /// A connection that stayed open this long (default 10 s) resets the
    /// attempt count: the next drop retries within `min_delay` again.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_attempts: None,
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The window for `attempt` (0 = first retry): `min(max, min * 2^attempt)`.
    pub fn window(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A delay drawn uniformly from `[0, window(attempt))`.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let window = self.window(attempt).as_nanos() as u64;
        if window == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.below(window))
    }
}

/// xorshift64* (not cryptographic): jitter and handshake keys, which RFC
/// 6455 asks to be random but not secret.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from std's per-process random keys, the clock and
    /// a counter: two generators made in one process differ.
    pub fn from_entropy() -> Rng {
        let mut h = RandomState::new().build_hasher();
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        h.write_u128(t);
        Rng::new(h.finish())
    }

    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        // splitmix64, so nearby seeds diverge at once.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)`; `n` > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// 16 random bytes (a handshake key).
    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_up_to_the_cap() {
        let b = Backoff {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Backoff::default()
        };
        let w: Vec<u128> = (0..6).map(|a| b.window(a).as_millis()).collect();
        assert_eq!(w, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.window(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn delays_cover_the_window_evenly() {
        let b = Backoff { min_delay: Duration::from_secs(1), ..Backoff::default() };
        let mut rng = Rng::new(7);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let d = b.delay(0, &mut rng);
            assert!(d < Duration::from_secs(1));
            buckets[(d.as_millis() / 100) as usize] += 1;
        }
        // Uniform: 1,000 per bucket, sigma ~30.
        assert!(buckets.iter().all(|&n| (850..1150).contains(&n)), "{buckets:?}");
    }

    #[test]
    fn generators_made_together_differ() {
        let a = Rng::from_entropy().next_u64();
        let b = Rng::from_entropy().next_u64();
        assert_ne!(a, b);
    }
}
