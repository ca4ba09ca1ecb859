//! Abuse limits, each configurable (see `config`): how fast one user may send, how many streams
//! one user may hold open, and how often sign-in may be tried per account and per address.
//! (Sizes of a message and of a chat are validation, in `chat_core::limits`; the size of a
//! whole request is the transport's, set in `lib.rs`.)
//!
//! All of this lives in memory and starts afresh with the process: limits slow abuse down,
//! they are not records. Every refusal says when to try again (`ApiError::RateLimited`).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chat_core::ids::UserId;

use crate::error::{ApiError, Limit};

/// The knobs, as `config::Settings` reads them.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Messages per second one user may send, sustained; `None`: no limit.
    pub send_rate: Option<u32>,
    /// Messages one user may send at once before the rate applies.
    pub send_burst: u32,
    pub max_streams_per_user: usize,
    /// Failed sign-ins an account may have before each further attempt must wait.
    pub sign_in_free_failures: u32,
    /// The longest that wait grows to.
    pub sign_in_max_delay: Duration,
    /// Sign-in and sign-up attempts per minute from one address; `None`: no limit.
    pub sign_in_per_address_per_minute: Option<u32>,
}

/// When maps of per-key state reach this size, idle entries are dropped, so that a flood of
/// distinct keys (made-up account names, many addresses) cannot grow memory without bound.
const PRUNE_AT: usize = 10_000;

/// The first wait after an account's free failures; each further failure doubles it.
const FIRST_SIGN_IN_DELAY: Duration = Duration::from_secs(1);

/// Failed sign-ins older than this are forgotten (but never sooner than twice the longest
/// delay), so the owner's own typos from yesterday do not count against them today.
const FAILURES_REMEMBERED: Duration = Duration::from_secs(3600);

pub struct Limits {
    sends: KeyedBuckets<UserId>,
    sign_in_addresses: KeyedBuckets<IpAddr>,
    sign_in_accounts: Mutex<HashMap<UserId, Failures>>,
    free_failures: u32,
    max_delay: Duration,
    streams: Arc<Mutex<HashMap<UserId, usize>>>,
    max_streams: usize,
    send_rate: Option<u32>,
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            sends: KeyedBuckets::new(settings.send_rate.map(|per_second| Rate {
                per_second: f64::from(per_second),
                burst: f64::from(settings.send_burst.max(1)),
            })),
            sign_in_addresses: KeyedBuckets::new(settings.sign_in_per_address_per_minute.map(
                |per_minute| Rate {
                    per_second: f64::from(per_minute) / 60.0,
                    burst: f64::from(per_minute),
                },
            )),
            sign_in_accounts: Mutex::new(HashMap::new()),
            free_failures: settings.sign_in_free_failures.max(1),
            max_delay: settings.sign_in_max_delay,
            streams: Arc::new(Mutex::new(HashMap::new())),
            max_streams: settings.max_streams_per_user,
            send_rate: settings.send_rate,
        }
    }

    /// Takes one message from `user`'s sending budget, or says how long until there is one.
    pub fn send(&self, user: &UserId) -> Result<(), ApiError> {
        self.sends
            .take(user, Instant::now())
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::SendRate(self.send_rate.unwrap_or_default()),
                retry_after,
            })
    }

    /// Waits until `user` may send one more message. Connect uses this instead of refusing:
    /// a bidirectional stream has no per-message error, so a fast client is slowed down (its
    /// stream's flow control pushes back) rather than cut off.
    pub async fn send_when_allowed(&self, user: &UserId) {
        while let Err(wait) = self.sends.take(user, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds one of `user`'s stream slots until the returned guard is dropped.
    pub fn open_stream(&self, user: &UserId) -> Result<StreamSlot, ApiError> {
        let mut streams = lock(&self.streams);
        let open = streams.entry(user.clone()).or_default();
        if *open >= self.max_streams {
            return Err(ApiError::TooManyStreams(self.max_streams));
        }
        *open += 1;
        Ok(StreamSlot {
            streams: Arc::clone(&self.streams),
            user: user.clone(),
        })
    }

    /// Called before a sign-in or sign-up is tried: counts the attempt against the address it
    /// comes from. Without an address (not TCP), only the account limit applies.
    pub fn sign_in_from(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(address) = address else {
            return Ok(());
        };
        self.sign_in_addresses
            .take(&address_key(address), Instant::now())
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::AddressSignIns,
                retry_after,
            })
    }

    /// Called before a password is checked: refuses while the account must wait, and counts
    /// the attempt as a failure until [`Limits::signed_in`] says otherwise. Counting before
    /// the check means many attempts in parallel cannot all slip through.
    pub fn sign_in_attempt(&self, user: &UserId) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut accounts = lock(&self.sign_in_accounts);
        let forget_after = FAILURES_REMEMBERED.max(self.max_delay * 2);
        if accounts.len() >= PRUNE_AT {
            accounts.retain(|_, failures| !failures.is_forgotten(now, forget_after));
        }
        let failures = accounts.entry(user.clone()).or_insert(Failures {
            count: 0,
            blocked_until: None,
            last: now,
        });
        if failures.is_forgotten(now, forget_after) {
            *failures = Failures {
                count: 0,
                blocked_until: None,
                last: now,
            };
        }
        failures
            .attempt(now, self.free_failures, self.max_delay)
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::AccountSignIns,
                retry_after,
            })
    }

    /// The password was right: the account's failures are forgiven.
    pub fn signed_in(&self, user: &UserId) {
        lock(&self.sign_in_accounts).remove(user);
    }
}

/// One open stream of a user; the slot is free again when this is dropped.
pub struct StreamSlot {
    streams: Arc<Mutex<HashMap<UserId, usize>>>,
    user: UserId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = lock(&self.streams);
        if let Some(open) = streams.get_mut(&self.user) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.user);
            }
        }
    }
}

/// A token bucket's refill: `per_second` tokens a second, up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// Takes a token, or returns how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second,
            ))
        }
    }
}

/// One token bucket per key, all with the same rate; no rate means no limit.
struct KeyedBuckets<K> {
    rate: Option<Rate>,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    fn new(rate: Option<Rate>) -> Self {
        Self {
            rate: rate.filter(|rate| rate.per_second > 0.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= PRUNE_AT {
            // A full bucket is the same as no bucket.
            buckets.retain(|_, bucket| {
                bucket.refill(rate, now);
                bucket.tokens < rate.burst
            });
        }
        buckets
            .entry(key.clone())
            .or_insert(Bucket {
                tokens: rate.burst,
                updated: now,
            })
            .take(rate, now)
    }
}

/// One account's recent failed sign-ins.
#[derive(Debug)]
struct Failures {
    count: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

impl Failures {
    fn is_forgotten(&self, now: Instant, after: Duration) -> bool {
        now.saturating_duration_since(self.last) > after
            && self.blocked_until.is_none_or(|until| until <= now)
    }

    /// Refuses while blocked; otherwise counts the attempt as failed and, past the free
    /// failures, blocks the next attempts for a delay that doubles with each failure.
    fn attempt(&mut self, now: Instant, free: u32, max_delay: Duration) -> Result<(), Duration> {
        if let Some(until) = self.blocked_until
            && until > now
        {
            return Err(until - now);
        }
        self.count = self.count.saturating_add(1);
        self.last = now;
        if self.count >= free {
            let doublings = self.count - free;
            let delay = FIRST_SIGN_IN_DELAY
                .checked_mul(2u32.checked_pow(doublings).unwrap_or(u32::MAX))
                .unwrap_or(max_delay)
                .min(max_delay);
            self.blocked_until = Some(now + delay);
        }
        Ok(())
    }
}

/// The unit one address limit covers: an IPv4 address, or an IPv6 /64 (one host usually
/// holds a whole /64, so counting single IPv6 addresses would let it rotate at will).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert, remove or assignment: the state stays consistent even
    // if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate {
            per_second: 2.0,
            burst: 3.0,
        };
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: rate.burst,
            updated: start,
        };
        for _ in 0..3 {
            assert_eq!(bucket.take(rate, start), Ok(()));
        }
        assert_eq!(bucket.take(rate, start), Err(seconds(0.5)));
        assert_eq!(bucket.take(rate, start + seconds(0.25)), Err(seconds(0.25)));
        assert_eq!(bucket.take(rate, start + seconds(0.5)), Ok(()));
        // Idle for long, it holds no more than its burst.
        let later = start + seconds(60.0);
        for _ in 0..3 {
            assert_eq!(bucket.take(rate, later), Ok(()));
        }
        assert!(bucket.take(rate, later).is_err());
    }

    #[test]
    fn sign_in_failures_past_the_free_ones_wait_longer_each_time_up_to_the_cap() {
        let start = Instant::now();
        let mut failures = Failures {
            count: 0,
            blocked_until: None,
            last: start,
        };
        let max = Duration::from_secs(4);
        // Free failures: no wait.
        assert_eq!(failures.attempt(start, 3, max), Ok(()));
        assert_eq!(failures.attempt(start, 3, max), Ok(()));
        // The third counts too, and blocks what follows for 1 s, then 2 s, then 4 s, capped.
        assert_eq!(failures.attempt(start, 3, max), Ok(()));
        assert_eq!(failures.attempt(start, 3, max), Err(seconds(1.0)));
        let mut now = start + seconds(1.0);
        for expected_wait in [2.0, 4.0, 4.0, 4.0] {
            assert_eq!(failures.attempt(now, 3, max), Ok(()));
            assert_eq!(failures.attempt(now, 3, max), Err(seconds(expected_wait)));
            now += seconds(expected_wait);
        }
    }

    #[test]
    fn a_right_password_forgives_and_old_failures_are_forgotten() {
        let limits = Limits::new(&LimitSettings {
            send_rate: None,
            send_burst: 1,
            max_streams_per_user: 1,
            sign_in_free_failures: 1,
            sign_in_max_delay: Duration::from_secs(60),
            sign_in_per_address_per_minute: None,
        });
        let alice = UserId::parse("alice").unwrap();
        assert!(limits.sign_in_attempt(&alice).is_ok());
        assert!(
            limits.sign_in_attempt(&alice).is_err(),
            "blocked after one failure"
        );
        limits.signed_in(&alice);
        assert!(limits.sign_in_attempt(&alice).is_ok(), "forgiven");

        let now = Instant::now();
        let old = Failures {
            count: 50,
            blocked_until: Some(now),
            last: now,
        };
        assert!(!old.is_forgotten(now + seconds(10.0), FAILURES_REMEMBERED));
        assert!(old.is_forgotten(now + FAILURES_REMEMBERED * 2, FAILURES_REMEMBERED));
    }

    #[test]
    fn stream_slots_are_counted_per_user_and_freed_on_drop() {
        let limits = Limits::new(&LimitSettings {
            send_rate: None,
            send_burst: 1,
            max_streams_per_user: 2,
            sign_in_free_failures: 1,
            sign_in_max_delay: Duration::from_secs(1),
            sign_in_per_address_per_minute: None,
        });
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let first = limits.open_stream(&alice).unwrap();
        let _second = limits.open_stream(&alice).unwrap();
        assert!(matches!(
            limits.open_stream(&alice),
            Err(ApiError::TooManyStreams(2))
        ));
        let _bobs = limits.open_stream(&bob).unwrap();
        drop(first);
        assert!(limits.open_stream(&alice).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
