//! The token cache of the SQLite backend: who owns a recently used token, without a read.

use chat_core::ids::UserId;
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;

use crate::store::TokenHash;

/// Tokens whose owner is kept in memory; past this the cache starts over.
const TOKEN_CACHE_MAX: usize = 65_536;

/// The owners of recently used tokens, so that authenticating a call (every RPC does) needs
/// no database read. Entries carry their expiry and are checked against the clock on every
/// hit; a revocation removes the entry after its commit.
///
/// The race this must not lose: a lookup that read the token from disk just before a
/// revocation committed must not put it back into the cache afterwards. Every revocation
/// bumps a counter, a lookup notes the counter before reading, and an entry is only
/// remembered if no revocation happened in between.
///
/// This works because this server is the only one writing this database. A backend shared
/// by several servers must not cache tokens like this: another server's SignOut would not
/// reach this cache.
#[derive(Default)]
pub struct TokenCache {
    state: Mutex<TokenCacheState>,
}

#[derive(Default)]
struct TokenCacheState {
    owners: HashMap<TokenHash, (UserId, i64)>,
    revocations: u64,
}

impl TokenCache {
    fn state(&self) -> MutexGuard<'_, TokenCacheState> {
        self.state.lock()
    }

    /// `Some(answer)` when the cache knows it: the owner, or `None` for an expired token.
    pub fn owner(&self, token: &TokenHash, now: i64) -> Option<Option<UserId>> {
        let mut state = self.state();
        let (owner, expires_at) = state.owners.get(token)?;
        if *expires_at > now {
            return Some(Some(owner.clone()));
        }
        state.owners.remove(token);
        Some(None)
    }

    pub fn revocations(&self) -> u64 {
        self.state().revocations
    }

    /// Remembers an owner read from disk when `revocations` was current.
    pub fn remember(&self, token: TokenHash, owner: &UserId, expires_at: i64, revocations: u64) {
        let mut state = self.state();
        if state.revocations != revocations {
            return;
        }
        if state.owners.len() >= TOKEN_CACHE_MAX {
            state.owners.clear();
        }
        state.owners.insert(token, (owner.clone(), expires_at));
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
}
