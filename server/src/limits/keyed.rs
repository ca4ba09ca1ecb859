//! A rate limit per key (a user, an address) on `governor`'s GCRA, with its memory kept in
//! check: keys whose budget is full again are dropped once the map reaches a size, and the
//! next sweep waits until the map has doubled, so a sweep costs O(1) per call on average.

use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// When the map holds this many keys, full ones are swept out (a full budget is the same as
/// none). Active keys are never dropped, so they cannot reset their budget by crowding.
const SWEEP_AT: usize = 10_000;

pub struct KeyedLimit<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
    sweep_at: AtomicUsize,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    pub fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            sweep_at: AtomicUsize::new(SWEEP_AT),
        }
    }

    /// Takes one cell of `key`'s budget, or says how long until one is there (governor's
    /// wait, which becomes the client's retry hint).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let outcome = self
            .limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()));
        if self.limiter.len() >= self.sweep_at.load(Ordering::Relaxed) {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            let left = self.limiter.len();
            self.sweep_at
                .store(SWEEP_AT.max(left.saturating_mul(2)), Ordering::Relaxed);
        }
        outcome
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::num::NonZeroU32;

    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_a_wait_and_others_are_not_affected() {
        let limit = KeyedLimit::new(Quota::per_minute(NonZeroU32::new(3).unwrap()));
        let (a, b) = ("a", "b");
        for _ in 0..3 {
            assert_eq!(limit.check(&a), Ok(()));
        }
        let wait = limit.check(&a).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(limit.check(&b), Ok(()));
    }

    #[test]
    fn a_hundred_thousand_addresses_leave_the_map_bounded() {
        // One attempt each from 100,000 addresses, at a budget that is full again a
        // millisecond later: each sweep finds the old ones full and drops them.
        let limit = KeyedLimit::new(Quota::per_second(NonZeroU32::new(1000).unwrap()));
        let mut largest = 0;
        for n in 0..100_000u32 {
            assert_eq!(limit.check(&IpAddr::V4(Ipv4Addr::from(n))), Ok(()));
            largest = largest.max(limit.len());
            if n % 5_000 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert!(largest <= SWEEP_AT, "{largest} keys held at once");
    }
}
