//! Token owners kept in memory, so that authenticating a call (every RPC does) reads nothing.

use chat_core::ids::UserId;
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;

use crate::store::TokenHash;

/// Tokens whose owner is kept in memory; past this the cache starts over.
const TOKEN_CACHE_MAX: usize = 65_536;

/// The owners of recently used tokens. Entries carry the time until which they may be
/// trusted (at most the token's expiry) and are checked against the clock on every hit; a
/// revocation removes the entry after its commit.
///
/// The race this must not lose: a lookup that read the token from the database just before a
/// revocation committed must not put it back into the cache afterwards. Every revocation
/// bumps a counter, a lookup notes the counter before reading, and an entry is only
/// remembered if no revocation happened in between.
///
/// A cache is only as good as the revocations it hears of:
/// - [`TokenCache::local`]: the SQLite backend, whose server is the only one writing the
///   database, so every revocation is its own.
/// - [`TokenCache::shared`]: the PostgreSQL backend, where another server's SignOut reaches
///   this one as a notification on the listener's connection. While that connection is down
///   notifications are lost, so the cache is [`suspend`](TokenCache::suspend)ed (emptied and
///   bypassed) until the listener [`resume`](TokenCache::resume)s it. A connection that hangs
///   without failing would go unnoticed, so entries are trusted for `max_age` at most: that
///   bounds how long a revocation elsewhere can be missed, whatever happens to the listener.
pub struct TokenCache {
    state: Mutex<TokenCacheState>,
    /// How long an entry is trusted after its read; `None`: until the token expires.
    max_age: Option<i64>,
}

struct TokenCacheState {
    owners: HashMap<TokenHash, (UserId, i64)>,
    revocations: u64,
    /// Whether revocations are heard: entries are neither used nor kept while this is false.
    hearing: bool,
}

impl TokenCache {
    /// A cache for a database this server alone writes: every revocation is heard.
    pub fn local() -> Self {
        Self::new(None, true)
    }

    /// A cache for a database shared with other servers: off until [`TokenCache::resume`],
    /// entries trusted for `max_age_secs` at most.
    pub fn shared(max_age_secs: i64) -> Self {
        Self::new(Some(max_age_secs), false)
    }

    fn new(max_age: Option<i64>, hearing: bool) -> Self {
        Self {
            state: Mutex::new(TokenCacheState {
                owners: HashMap::new(),
                revocations: 0,
                hearing,
            }),
            max_age,
        }
    }

    fn state(&self) -> MutexGuard<'_, TokenCacheState> {
        self.state.lock()
    }

    /// The owner of `token` if the cache knows it and may still trust it at `now`; else the
    /// database must say.
    pub fn owner(&self, token: &TokenHash, now: i64) -> Option<UserId> {
        let mut state = self.state();
        let (owner, trusted_until) = state.owners.get(token)?;
        if *trusted_until > now {
            return Some(owner.clone());
        }
        // Expired, or only too old to trust: the database says which.
        state.owners.remove(token);
        None
    }

    pub fn revocations(&self) -> u64 {
        self.state().revocations
    }

    /// Remembers an owner read at `now` from the database when `revocations` was current.
    pub fn remember(
        &self,
        token: TokenHash,
        owner: &UserId,
        expires_at: i64,
        now: i64,
        revocations: u64,
    ) {
        let mut state = self.state();
        if !state.hearing || state.revocations != revocations {
            return;
        }
        if state.owners.len() >= TOKEN_CACHE_MAX {
            state.owners.clear();
        }
        let trusted_until = self
            .max_age
            .map_or(expires_at, |max_age| expires_at.min(now + max_age));
        state.owners.insert(token, (owner.clone(), trusted_until));
    }

    /// Forgets every token of `user`, after their revocation committed.
    pub fn forget_user(&self, user: &UserId) {
        let mut state = self.state();
        state.owners.retain(|_, (owner, _)| owner != user);
        state.revocations += 1;
    }

    pub fn forget(&self, token: &TokenHash) {
        let mut state = self.state();
        state.owners.remove(token);
        state.revocations += 1;
    }

    /// Forgets every token, as if each had been revoked.
    pub fn forget_all(&self) {
        let mut state = self.state();
        state.owners.clear();
        state.revocations += 1;
    }

    /// Revocations may go unheard from now on: forget everything and remember nothing.
    pub fn suspend(&self) {
        self.forget_all();
        self.state().hearing = false;
    }

    /// Revocations are heard again. A lookup that read the database while they were not
    /// may have read a token revoked since, so it must not be remembered: the counter moves.
    pub fn resume(&self) {
        let mut state = self.state();
        state.revocations += 1;
        state.hearing = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("a valid user id")
    }

    #[test]
    fn a_lookup_that_raced_a_revocation_is_not_remembered() {
        let cache = TokenCache::local();
        let token = [1; 32];
        let before = cache.revocations();
        cache.forget_user(&user("ada"));
        cache.remember(token, &user("ada"), 100, 0, before);
        assert_eq!(cache.owner(&token, 1), None);
        cache.remember(token, &user("ada"), 100, 0, cache.revocations());
        assert_eq!(cache.owner(&token, 1), Some(user("ada")));
    }

    #[test]
    fn a_shared_cache_trusts_nothing_until_it_hears_revocations_and_entries_age_out() {
        let cache = TokenCache::shared(30);
        let token = [2; 32];
        cache.remember(token, &user("ada"), 1_000, 0, cache.revocations());
        assert_eq!(cache.owner(&token, 1), None, "remembered while not hearing");

        cache.resume();
        cache.remember(token, &user("ada"), 1_000, 0, cache.revocations());
        assert_eq!(cache.owner(&token, 29), Some(user("ada")));
        assert_eq!(cache.owner(&token, 30), None, "trusted past max_age");

        let before = cache.revocations();
        cache.remember(token, &user("ada"), 1_000, 40, before);
        cache.suspend();
        assert_eq!(cache.owner(&token, 41), None, "kept across a suspension");
        cache.resume();
        cache.remember(token, &user("ada"), 1_000, 40, before);
        assert_eq!(cache.owner(&token, 41), None, "read before the resumption");
    }
}
