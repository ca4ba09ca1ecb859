//! Failed sign-ins: who must wait before trying another password, and for how long.
//!
//! An attempt from an address meets two budgets, an attempt with a device key one; each is
//! counted before the password is checked (so parallel attempts cannot all slip through) and
//! given back when it was right:
//!
//! - **A ladder per account and address.** From one address, an account has
//!   `free_failures` failed attempts, then every further attempt from there waits 1 s,
//!   doubling with each failure, up to `max_delay`. This is what one attacker at one address
//!   meets, and it is exactly as slow as guessing was when one ladder covered the whole
//!   account. A right password forgives the ladder of the address it came from only.
//! - **A budget per account, shared by all addresses**: a token bucket holding one more
//!   attempt than a single ladder lets through before its waits reach `max_delay`
//!   (`free_failures` + the doublings below `max_delay` + 1), refilled by one attempt per
//!   `max_delay`. A single address, held to its ladder, can never empty it, so an attacker at
//!   one address cannot keep the owner at another from signing in. Many addresses guessing
//!   together empty it, and then every address waits: together they get at most the
//!   bucket's size at once and one guess per `max_delay` after that, the same rate as the one
//!   ladder of before, plus its one spare attempt and the refill during the ladder's first
//!   doublings (2.7 guesses in all with the defaults).
//!
//! - **A ladder per account and device, and no share of the account's budget,** for an
//!   attempt that carries a device key the account was given at an earlier sign-in (OWASP's
//!   "device cookies"). Many addresses emptying the account's budget then cannot keep the
//!   owner out of a browser they signed in with before: its attempts meet only their own
//!   ladder, as slow for a guesser who stole the key as one address is.
//!
//! The rules (`Policy`) work on plain state with times as durations since an epoch, so the
//! same rules run on this server's memory (`SignIns`, times since the process started) and on
//! rows shared by several servers (`SharedRates::sign_in_attempt`, times on the database's
//! clock).
//!
//! In memory, both live in maps with a hard cap (`TRACKED_MAX` entries each) that evict the entry used
//! least recently, so made-up account names cannot grow memory, and every attempt costs a
//! hash lookup, never a scan. An entry is forgotten once 65,536 others have been used more
//! recently: its ladder or bucket then starts over from its free attempts, which buys an
//! attacker a handful of guesses for 65,536 attempts of their own (30 a minute per address).

use parking_lot::Mutex;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A point in time: how long after the epoch of the clock in use.
pub type At = Duration;

use chat_core::ids::UserId;
use hashlink::LruCache;

use crate::store::TokenHash;

/// How many ladders, and how many account budgets, are kept at most. About 200 bytes an
/// entry: 13 MB each when full.
pub const TRACKED_MAX: usize = 65_536;

/// The first wait after an address's free failures; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_secs(1);

/// A ladder untouched for this long starts over (but never sooner than twice the longest
/// delay), so the owner's own typos from yesterday do not count against them today.
const FAILURES_REMEMBERED: Duration = Duration::from_secs(3600);

/// The budgets of every account, behind one lock so that an attempt checks both and counts
/// both, or neither. Hand-written rather than on `governor`: an attempt must be given back
/// when the password was right (governor cannot return a cell), the two budgets must be
/// checked together before either is charged, and the maps need a hard cap that evicts the
/// least recently used entry (governor's keyed store can only sweep out full budgets).
pub struct SignIns {
    state: Mutex<State>,
    policy: Policy,
    /// The epoch of this server's times.
    started: Instant,
}

struct State {
    ladders: LruCache<(UserId, Source), Ladder>,
    accounts: LruCache<UserId, Bucket>,
}

/// Where a sign-in attempt comes from, which says whose ladder it climbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A browser or app holding a device key of the account (its hash): its own ladder, and
    /// the account's shared budget is not charged.
    Device(TokenHash),
    /// Anyone else, by the client's address (none when it is unknown): the address's ladder
    /// and the account's shared budget.
    Address(Option<IpAddr>),
}

impl Source {
    /// Whether the attempt takes from the account's budget shared by every address.
    pub fn shares_the_budget(self) -> bool {
        matches!(self, Source::Address(_))
    }
}

impl SignIns {
    pub fn new(policy: Policy) -> Self {
        Self {
            state: Mutex::new(State {
                ladders: LruCache::new(TRACKED_MAX),
                accounts: LruCache::new(TRACKED_MAX),
            }),
            policy,
            started: Instant::now(),
        }
    }

    fn now(&self) -> At {
        self.started.elapsed()
    }

    /// Refuses, with the wait, while the caller from `source` must wait for `user`'s
    /// account; otherwise counts the attempt as failed on its ladder and, for an address, in
    /// the account's budget.
    pub fn attempt(&self, user: &UserId, source: Source) -> Result<(), Duration> {
        let now = self.now();
        let mut state = self.state.lock();
        let State { ladders, accounts } = &mut *state;
        let ladder = touch(ladders, (user.clone(), source), || Ladder::new(now));
        let budget = if source.shares_the_budget() {
            Some(touch(accounts, user.clone(), || {
                self.policy.full_budget(now)
            }))
        } else {
            None
        };
        self.policy.attempt(ladder, budget, now)
    }

    /// The password was right: the ladder of `source` is forgiven and what the attempt took
    /// from the account's budget goes back.
    pub fn succeeded(&self, user: &UserId, source: Source) {
        let now = self.now();
        let mut state = self.state.lock();
        state.ladders.remove(&(user.clone(), source));
        if source.shares_the_budget()
            && let Some(budget) = state.accounts.get_mut(user)
        {
            self.policy.give_back(budget, now);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.ladders.len(), state.accounts.len())
    }
}

/// Who waits for how long: the settings, and the rules applied to one account's ladder from
/// one address and its account-wide budget.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    free_failures: u32,
    max_delay: Duration,
    /// The account-wide bucket: size and refill.
    budget: Rate,
}

impl Policy {
    pub fn new(free_failures: u32, max_delay: Duration) -> Self {
        let free_failures = free_failures.max(1);
        let max_delay = max_delay.max(FIRST_DELAY);
        let mut doublings = 0u32;
        while FIRST_DELAY * 2u32.saturating_pow(doublings) < max_delay {
            doublings += 1;
        }
        Self {
            free_failures,
            max_delay,
            budget: Rate {
                per_second: 1.0 / max_delay.as_secs_f64(),
                burst: f64::from(free_failures.saturating_add(doublings).saturating_add(1)),
            },
        }
    }

    /// How long a ladder is kept after its last failure once it no longer blocks.
    pub fn forget_after(&self) -> Duration {
        FAILURES_REMEMBERED.max(self.max_delay * 2)
    }

    /// An account budget nobody has touched.
    pub fn full_budget(&self, now: At) -> Bucket {
        Bucket::full(self.budget, now)
    }

    /// Refuses, with the wait, while `ladder` must wait; otherwise takes from `budget` if the
    /// attempt shares the account's (or refuses while it is empty) and counts a failure on
    /// `ladder`.
    pub fn attempt(
        &self,
        ladder: &mut Ladder,
        budget: Option<&mut Bucket>,
        now: At,
    ) -> Result<(), Duration> {
        if ladder.is_forgotten(now, self.forget_after()) {
            *ladder = Ladder::new(now);
        }
        ladder.wait(now)?;
        if let Some(budget) = budget {
            budget.take(self.budget, now)?;
        }
        ladder.fail(now, self.free_failures, self.max_delay);
        Ok(())
    }

    /// A right password: the attempt goes back into the account's budget.
    pub fn give_back(&self, budget: &mut Bucket, now: At) {
        budget.give_back(self.budget, now);
    }

    /// When `ladder` may be forgotten: it starts over from then on anyway.
    pub fn ladder_forgotten_at(&self, ladder: &Ladder) -> At {
        (ladder.last + self.forget_after()).max(ladder.blocked_until.unwrap_or_default())
    }

    /// When `budget` is full again: from then on it is the same as a fresh one.
    pub fn budget_full_at(&self, budget: &Bucket) -> At {
        let missing = (self.budget.burst - budget.tokens).max(0.0);
        budget.updated + Duration::from_secs_f64(missing / self.budget.per_second)
    }
}

/// `key`'s entry, made fresh if there is none, marked as the most recently used. When the
/// cache is full, the least recently used entry makes room first, so it never exceeds its
/// capacity.
fn touch<K: Hash + Eq, V>(cache: &mut LruCache<K, V>, key: K, fresh: impl FnOnce() -> V) -> &mut V {
    if cache.len() >= cache.capacity() && !cache.contains_key(&key) {
        cache.remove_lru();
    }
    match cache.entry(key) {
        hashlink::lru_cache::Entry::Occupied(mut entry) => {
            entry.to_back();
            entry.into_mut()
        }
        hashlink::lru_cache::Entry::Vacant(entry) => entry.insert(fresh()),
    }
}

/// One account's recent failed sign-ins from one address.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    pub count: u32,
    pub blocked_until: Option<At>,
    pub last: At,
}

impl Ladder {
    pub fn new(now: At) -> Self {
        Self {
            count: 0,
            blocked_until: None,
            last: now,
        }
    }

    fn is_forgotten(&self, now: At, after: Duration) -> bool {
        now.saturating_sub(self.last) > after && self.blocked_until.is_none_or(|until| until <= now)
    }

    /// How long until another attempt may be made, if it must wait.
    fn wait(&self, now: At) -> Result<(), Duration> {
        match self.blocked_until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure and, past the free ones, blocks the next attempts for a delay that
    /// doubles with each failure.
    fn fail(&mut self, now: At, free: u32, max_delay: Duration) {
        self.count = self.count.saturating_add(1);
        self.last = now;
        if self.count >= free {
            let doublings = self.count - free;
            let delay = FIRST_DELAY
                .checked_mul(2u32.checked_pow(doublings).unwrap_or(u32::MAX))
                .unwrap_or(max_delay)
                .min(max_delay);
            self.blocked_until = Some(now + delay);
        }
    }
}

/// A token bucket's refill: `per_second` tokens a second, up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

/// One account's budget of attempts, shared by every address.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub updated: At,
}

impl Bucket {
    fn full(rate: Rate, now: At) -> Self {
        Self {
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: At) {
        let elapsed = now.saturating_sub(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// Takes a token, or returns how long until one is there.
    fn take(&mut self, rate: Rate, now: At) -> Result<(), Duration> {
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

    fn give_back(&mut self, rate: Rate, now: At) {
        self.refill(rate, now);
        self.tokens = (self.tokens + 1.0).min(rate.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn address(text: &str) -> Source {
        Source::Address(Some(text.parse().unwrap()))
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate {
            per_second: 2.0,
            burst: 3.0,
        };
        let start = Duration::ZERO;
        let mut bucket = Bucket::full(rate, start);
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
    fn failures_past_the_free_ones_wait_longer_each_time_up_to_the_cap() {
        let start = Duration::ZERO;
        let mut ladder = Ladder::new(start);
        let max = Duration::from_secs(4);
        let attempt = |ladder: &mut Ladder, now| {
            ladder.wait(now)?;
            ladder.fail(now, 3, max);
            Ok::<(), Duration>(())
        };
        // Free failures: no wait.
        assert_eq!(attempt(&mut ladder, start), Ok(()));
        assert_eq!(attempt(&mut ladder, start), Ok(()));
        // The third counts too, and blocks what follows for 1 s, then 2 s, then 4 s, capped.
        assert_eq!(attempt(&mut ladder, start), Ok(()));
        assert_eq!(attempt(&mut ladder, start), Err(seconds(1.0)));
        let mut now = start + seconds(1.0);
        for expected_wait in [2.0, 4.0, 4.0, 4.0] {
            assert_eq!(attempt(&mut ladder, now), Ok(()));
            assert_eq!(attempt(&mut ladder, now), Err(seconds(expected_wait)));
            now += seconds(expected_wait);
        }
    }

    #[test]
    fn one_address_waits_for_its_own_failures_and_no_other_does() {
        let sign_ins = SignIns::new(Policy::new(1, Duration::from_secs(60)));
        let (alice, attacker, owner) = (user("alice"), address("192.0.2.1"), address("192.0.2.2"));
        assert!(sign_ins.attempt(&alice, attacker).is_ok());
        assert!(
            sign_ins.attempt(&alice, attacker).is_err(),
            "blocked after one"
        );
        assert!(
            sign_ins.attempt(&alice, owner).is_ok(),
            "another address is not"
        );
        sign_ins.succeeded(&alice, owner);
        assert!(
            sign_ins.attempt(&alice, attacker).is_err(),
            "the owner's success forgives nothing of the attacker's"
        );
        assert!(sign_ins.attempt(&alice, owner).is_ok());
    }

    #[test]
    fn a_right_password_forgives_and_old_failures_are_forgotten() {
        let sign_ins = SignIns::new(Policy::new(1, Duration::from_secs(60)));
        let (alice, here) = (user("alice"), address("192.0.2.1"));
        assert!(sign_ins.attempt(&alice, here).is_ok());
        assert!(sign_ins.attempt(&alice, here).is_err(), "blocked after one");
        sign_ins.succeeded(&alice, here);
        assert!(sign_ins.attempt(&alice, here).is_ok(), "forgiven");

        let now = Duration::ZERO;
        let old = Ladder {
            count: 50,
            blocked_until: Some(now),
            last: now,
        };
        assert!(!old.is_forgotten(now + seconds(10.0), FAILURES_REMEMBERED));
        assert!(old.is_forgotten(now + FAILURES_REMEMBERED * 2, FAILURES_REMEMBERED));
    }

    /// Plays one address guessing as fast as its ladder allows for `span`, checking every
    /// attempt against the account-wide budget as the server does; returns the guesses that
    /// the account budget refused.
    fn refusals_of_a_lone_attacker(free: u32, max_delay: Duration, span: Duration) -> usize {
        let sign_ins = SignIns::new(Policy::new(free, max_delay));
        let start = Duration::ZERO;
        let (mut state, alice) = (sign_ins.state.lock(), user("alice"));
        let State { ladders, accounts } = &mut *state;
        let ladder = touch(ladders, (alice.clone(), address("192.0.2.1")), || {
            Ladder::new(start)
        });
        let budget = touch(accounts, alice, || {
            Bucket::full(sign_ins.policy.budget, start)
        });
        let (mut now, mut refused) = (start, 0);
        while now < start + span {
            match ladder.wait(now) {
                Err(wait) => now += wait,
                Ok(()) => {
                    if budget.take(sign_ins.policy.budget, now).is_err() {
                        refused += 1;
                    }
                    ladder.fail(now, free, max_delay);
                }
            }
        }
        refused
    }

    #[test]
    fn one_address_alone_never_empties_the_account_budget() {
        let day = Duration::from_secs(24 * 3600);
        for (free, max_delay) in [(5, 300), (1, 1), (2, 2), (3, 7), (10, 3600), (1, 1000)] {
            let max_delay = Duration::from_secs(max_delay);
            assert_eq!(
                refusals_of_a_lone_attacker(free, max_delay, day),
                0,
                "free {free}, longest wait {max_delay:?}"
            );
        }
    }

    #[test]
    fn many_addresses_together_empty_the_account_budget_and_then_everyone_waits() {
        let sign_ins = SignIns::new(Policy::new(5, Duration::from_secs(300)));
        let alice = user("alice");
        // 5 free + 9 doublings below 300 s (1 s to 256 s) + 1 spare: 15 at once.
        let mut allowed = 0;
        for n in 0..100u8 {
            if sign_ins
                .attempt(
                    &alice,
                    Source::Address(Some(IpAddr::from([198, 51, 100, n]))),
                )
                .is_ok()
            {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 15);
        let wait = sign_ins
            .attempt(&alice, address("203.0.113.9"))
            .unwrap_err();
        assert!(wait > Duration::from_secs(290), "{wait:?}");
        // Another account is not affected.
        assert!(
            sign_ins
                .attempt(&user("bob"), address("203.0.113.9"))
                .is_ok()
        );
    }

    #[test]
    fn a_device_of_the_account_climbs_its_own_ladder_beside_an_emptied_budget() {
        let sign_ins = SignIns::new(Policy::new(2, Duration::from_secs(300)));
        let alice = user("alice");
        for n in 0..100u8 {
            let _ = sign_ins.attempt(
                &alice,
                Source::Address(Some(IpAddr::from([198, 51, 100, n]))),
            );
        }
        assert!(
            sign_ins.attempt(&alice, address("203.0.113.9")).is_err(),
            "budget empty"
        );
        let (laptop, phone) = (Source::Device([1; 32]), Source::Device([2; 32]));
        // Two free failures, then the laptop's own ladder makes it wait; the phone's does not.
        assert!(sign_ins.attempt(&alice, laptop).is_ok());
        assert!(sign_ins.attempt(&alice, laptop).is_ok());
        // (The ladder's 1 s less the moments since, not the budget's 300 s.)
        let wait = sign_ins.attempt(&alice, laptop).unwrap_err();
        assert!(wait > seconds(0.5) && wait <= seconds(1.0), "{wait:?}");
        assert!(sign_ins.attempt(&alice, phone).is_ok());
        // A right password on the phone forgives the phone, not the laptop, and gives nothing
        // to the addresses (the phone took nothing from their budget).
        sign_ins.succeeded(&alice, phone);
        assert!(sign_ins.attempt(&alice, laptop).is_err());
        assert!(sign_ins.attempt(&alice, address("203.0.113.9")).is_err());
        assert!(sign_ins.attempt(&alice, phone).is_ok());
    }

    #[test]
    fn made_up_account_names_keep_sign_in_state_bounded_and_every_attempt_cheap() {
        let sign_ins = SignIns::new(Policy::new(5, Duration::from_secs(300)));
        let here = address("192.0.2.1");
        // 100,000 names nobody has, in batches of 10,000: no batch may take much longer than
        // the first (a scan of the whole map per attempt makes later batches thousands of
        // times slower), and neither map ever holds more than its cap.
        let mut first_batch = None;
        for batch in 0..10 {
            let started = Instant::now();
            for n in 0..10_000 {
                let user = user(&format!("made-up-{batch}-{n}"));
                assert!(sign_ins.attempt(&user, here).is_ok());
            }
            let took = started.elapsed();
            let first = *first_batch.get_or_insert(took);
            assert!(
                took <= first * 10 + Duration::from_millis(200),
                "batch {batch} of 10,000 attempts took {took:?}, the first {first:?}"
            );
            let (ladders, accounts) = sign_ins.tracked();
            assert!(ladders <= TRACKED_MAX && accounts <= TRACKED_MAX);
        }
        assert_eq!(sign_ins.tracked(), (TRACKED_MAX, TRACKED_MAX));
        // The newest names are still tracked; the oldest made room for them.
        let newest = user("made-up-9-9999");
        assert!(sign_ins.attempt(&newest, here).is_ok());
        assert_eq!(sign_ins.tracked(), (TRACKED_MAX, TRACKED_MAX));
    }
}
