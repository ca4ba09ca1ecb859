//! Accounts and sessions: argon2id password hashes (computed by `password`, a bounded number
//! at once), and bearer tokens that are random, expiring, revocable and stored only as
//! SHA-256 hashes.
//!
//! Every session also carries a device key, random and stored as a hash like a token: the
//! browser keeps it for the account after signing out, and shows it at its next SignIn to
//! get a ladder of failed sign-ins of its own (`limits::sign_in`). It signs nobody in.
//!
//! Tokens are looked up by their hash, never compared as strings, so the time a lookup takes
//! tells an attacker nothing about a valid token.
//!
//! A revoked token must also stop the streams opened with it, which authenticated once, when
//! they opened. Each open stream waits in [`Authenticator::until_revoked`]: it re-reads its
//! token whenever this server revokes one of its user's tokens (an in-process notification
//! naming the user, so SignOut here ends the streams here at once and wakes no other user's),
//! and every `token_recheck` besides, which is what catches a
//! revocation made by another server sharing the database, and expiry.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chat_core::requests::PasswordChange;
use tokio::sync::broadcast;

use chat_core::ids::UserId;
use chat_core::requests::Credentials;
use chat_core::wire;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::error::ApiError;
use crate::password::{self, Hashing, Turn};
use crate::store::{Store, TokenHash};
use chat_transport::unix_now;

/// A signed-in session, as SignUp and SignIn return it.
pub struct Session {
    pub user: UserId,
    pub token: String,
    pub expires_at: i64,
    /// The device key to keep for the next SignIn of this account.
    pub device: String,
}

/// A device key a client showed at SignIn that the account it signs in to holds.
pub struct Device {
    key: String,
    pub hash: TokenHash,
}

/// Revocations a stream may fall behind on before it re-reads its token regardless.
const REVOCATIONS_QUEUED: usize = 256;

pub struct Authenticator {
    store: Arc<dyn Store>,
    hashing: Hashing,
    token_ttl: Duration,
    /// How often an open stream re-reads its token (see [`Authenticator::until_revoked`]).
    token_recheck: Duration,
    /// The user of every revocation this server commits, so that user's open streams
    /// re-read their tokens at once (and nobody else's: a sign-out costs reads in proportion
    /// to the signer's own streams, not to every stream the server holds).
    revocations: broadcast::Sender<UserId>,
    /// Verified against when the account does not exist, so that an unknown user id costs
    /// as much time as a wrong password and sign-in does not reveal which accounts exist.
    decoy_hash: String,
}

impl Authenticator {
    pub fn new(
        store: Arc<dyn Store>,
        hashing: Hashing,
        token_ttl: Duration,
        token_recheck: Duration,
    ) -> Result<Self, ApiError> {
        let decoy_hash = password::hash_now(&hex(&rand::random::<[u8; 16]>()))?;
        Ok(Self {
            store,
            hashing,
            token_ttl,
            token_recheck,
            revocations: broadcast::Sender::new(REVOCATIONS_QUEUED),
            decoy_hash,
        })
    }

    pub async fn sign_up(&self, credentials: Credentials) -> Result<Session, ApiError> {
        let turn = self.hashing.turn().await?;
        let password = credentials.password.expose().to_owned();
        let hash = self.hashing.hash(turn, password).await?;
        self.store
            .create_account(&credentials.user_id, hash)
            .await?;
        tracing::info!(user = %credentials.user_id, "account created");
        self.start_session(credentials.user_id, None).await
    }

    /// A turn at the password hashing, which `sign_in` and `change_password` need: the
    /// caller takes it first, before anything else the attempt costs (a storage read, the
    /// failed sign-in rows), so that an attempt refused for a full queue costs nothing else
    /// and the attempts that go on are only as many as can be hashed.
    pub async fn turn(&self) -> Result<Turn, ApiError> {
        self.hashing.turn().await
    }

    /// The device key `key` (as SignIn carries it: empty for none) if `user`'s account holds
    /// it; `None` for a key of another account or one no longer held, which sign in as if
    /// none were shown.
    pub async fn device_of(&self, key: &str, user: &UserId) -> Result<Option<Device>, ApiError> {
        if key.is_empty() {
            return Ok(None);
        }
        if !is_secret_shaped(key) {
            return Err(ApiError::InvalidRequest(
                "device must be the device key of an earlier session (64 hex digits), or empty"
                    .into(),
            ));
        }
        let hash = token_hash(key);
        let held = self.store.device_owner(hash).await?.as_ref() == Some(user);
        Ok(held.then(|| Device {
            key: key.to_owned(),
            hash,
        }))
    }

    /// Checks the password and starts a session, which keeps `device` (a device key the
    /// account holds) or gives the account a new one.
    pub async fn sign_in(
        &self,
        turn: Turn,
        credentials: Credentials,
        device: Option<Device>,
    ) -> Result<Session, ApiError> {
        let stored = self.store.password_hash(&credentials.user_id).await?;
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.clone());
        let password = credentials.password.expose().to_owned();
        let matches = self.hashing.verify(turn, password, hash).await?;
        if !(known && matches) {
            tracing::info!(user = %credentials.user_id, "sign-in refused");
            return Err(ApiError::WrongCredentials);
        }
        self.start_session(credentials.user_id, device).await
    }

    /// Revokes the token the call carries. Signing out twice is not an error, and a token that
    /// is unknown, expired or already revoked costs a lookup (a cached one on SQLite) but no
    /// write: the single writer is not anybody's to keep busy.
    pub async fn sign_out(&self, metadata: &MetadataMap) -> Result<(), ApiError> {
        let token = token_hash(bearer_token(metadata)?);
        let Some(owner) = self.store.token_owner(token, unix_now()).await? else {
            return Ok(());
        };
        self.store.revoke_token(token).await?;
        self.revoked(owner);
        Ok(())
    }

    /// Revokes every token of the caller, the one the call carries included.
    pub async fn sign_out_everywhere(&self, metadata: &MetadataMap) -> Result<(), ApiError> {
        let user = self.caller(metadata).await?;
        self.store.revoke_tokens_of(&user).await?;
        self.revoked(user.clone());
        tracing::info!(%user, "signed out everywhere");
        Ok(())
    }

    /// Checks the caller's old password, sets the new one and revokes every token of the
    /// caller (whoever learnt the old password keeps no session), then starts a fresh session
    /// for the caller.
    pub async fn change_password(
        &self,
        turn: Turn,
        user: UserId,
        change: PasswordChange,
    ) -> Result<Session, ApiError> {
        let stored = self
            .store
            .password_hash(&user)
            .await?
            .ok_or(ApiError::WrongCredentials)?;
        let old = change.old_password.expose().to_owned();
        if !self.hashing.verify(turn, old, stored).await? {
            tracing::info!(%user, "password change refused: wrong old password");
            return Err(ApiError::WrongCredentials);
        }
        let turn = self.hashing.turn().await?;
        let new = change.new_password.expose().to_owned();
        let hash = self.hashing.hash(turn, new).await?;
        self.store.set_password(&user, hash, None).await?;
        self.revoked(user.clone());
        tracing::info!(%user, "password changed; every other session signed out");
        self.start_session(user, None).await
    }

    /// Resolves with UNAUTHENTICATED once `token` no longer lets its owner in (revoked here
    /// or on another server, or expired); never resolves while it does. A store that cannot
    /// answer right now does not end the stream: the next check tries again.
    ///
    /// It listens for this server's revocations from the moment it is called, not from its
    /// first poll, so a revocation in between is not left to the timer.
    pub fn until_revoked(
        self: &Arc<Self>,
        user: UserId,
        token: TokenHash,
    ) -> impl Future<Output = ApiError> + Send + 'static {
        let mut revocations = self.revocations.subscribe();
        let this = Arc::clone(self);
        async move {
            let mut recheck = tokio::time::interval(this.token_recheck);
            recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            recheck.tick().await;
            loop {
                tokio::select! {
                    _ = recheck.tick() => {}
                    revoked = revocations.recv() => match revoked {
                        Ok(whose) if whose != user => continue,
                        // A lagging receiver may have missed its user's revocation: look.
                        // (Closed cannot happen while `this` holds the sender.)
                        Ok(_) | Err(_) => {}
                    },
                }
                if let Ok(None) = this.store.token_owner(token, unix_now()).await {
                    return ApiError::Unauthenticated(
                        "your token was signed out or expired while this call was open: sign in \
                         again",
                    );
                }
            }
        }
    }

    /// Whether `token` still lets its owner in; for checks on the way of a write.
    pub async fn still_valid(&self, token: TokenHash) -> Result<bool, ApiError> {
        Ok(self.store.token_owner(token, unix_now()).await?.is_some())
    }

    fn revoked(&self, user: UserId) {
        // No receiver (no open stream) is not an error.
        let _ = self.revocations.send(user);
    }

    /// The user a call is made by, from its bearer token. When the call also carries
    /// `user-id` metadata, it must name that same user.
    pub async fn caller(&self, metadata: &MetadataMap) -> Result<UserId, ApiError> {
        Ok(self.session(metadata).await?.0)
    }

    /// Like [`Self::caller`], with the hash of the token, for calls that stay open and must
    /// end when it is revoked.
    pub async fn session(&self, metadata: &MetadataMap) -> Result<(UserId, TokenHash), ApiError> {
        let token = token_hash(bearer_token(metadata)?);
        let user =
            self.store
                .token_owner(token, unix_now())
                .await?
                .ok_or(ApiError::Unauthenticated(
                    "the token is invalid, expired or signed out: sign in again",
                ))?;
        let claimed = match metadata.get(wire::USER_ID).map(|value| value.to_str()) {
            None => None,
            Some(Ok(value)) => UserId::parse_optional(value)?,
            Some(Err(_)) => {
                return Err(ApiError::InvalidRequest(
                    "user-id metadata must be ASCII".into(),
                ));
            }
        };
        check_claim(&user, claimed.as_ref(), "user-id metadata")?;
        Ok((user, token))
    }

    /// Issues a token, and with it a new device key unless the caller showed one `user`
    /// holds.
    async fn start_session(
        &self,
        user: UserId,
        device: Option<Device>,
    ) -> Result<Session, ApiError> {
        let token = hex(&rand::random::<[u8; TOKEN_BYTES]>());
        let ttl = i64::try_from(self.token_ttl.as_secs()).unwrap_or(i64::MAX);
        let expires_at = unix_now().saturating_add(ttl);
        let (device, new_device) = match device {
            Some(held) => (held.key, None),
            None => {
                let key = hex(&rand::random::<[u8; TOKEN_BYTES]>());
                let hash = token_hash(&key);
                (key, Some(hash))
            }
        };
        self.store
            .save_token(token_hash(&token), &user, expires_at, new_device)
            .await?;
        Ok(Session {
            user,
            token,
            expires_at,
            device,
        })
    }
}

/// A `user_id` a client put in a request must be the caller's own; empty means the caller.
pub fn check_claim(caller: &UserId, claimed: Option<&UserId>, what: &str) -> Result<(), ApiError> {
    match claimed {
        Some(claimed) if claimed != caller => Err(ApiError::PermissionDenied(format!(
            "{what} is \"{claimed}\" but you are signed in as \"{caller}\""
        ))),
        _ => Ok(()),
    }
}

const TOKEN_BYTES: usize = 32;
const MALFORMED_AUTHORIZATION: &str =
    "malformed authorization metadata: expected \"Bearer <token>\" with a token from SignIn";

fn bearer_token(metadata: &MetadataMap) -> Result<&str, ApiError> {
    let value = metadata.get(wire::AUTHORIZATION).ok_or(ApiError::Unauthenticated(
        "missing authorization metadata: send \"authorization: Bearer <token>\" with a token from SignIn",
    ))?;
    let malformed = || ApiError::Unauthenticated(MALFORMED_AUTHORIZATION);
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if scheme.eq_ignore_ascii_case(wire::BEARER) && is_secret_shaped(token) {
        Ok(token)
    } else {
        Err(malformed())
    }
}

/// Whether `text` looks like a token or a device key: 64 hex digits (of either case).
fn is_secret_shaped(text: &str) -> bool {
    text.len() == 2 * TOKEN_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 of the lower-cased token (or device key). Every call hashes its token, so it is
/// lower-cased a block at a time on the stack rather than into a new string.
fn token_hash(token: &str) -> TokenHash {
    let mut hasher = Sha256::new();
    let mut block = [0u8; 64];
    for chunk in token.as_bytes().chunks(block.len()) {
        let lower = &mut block[..chunk.len()];
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        hasher.update(&*lower);
    }
    hasher.finalize().into()
}

/// `bytes` in lower-case hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(authorization: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", authorization.parse().unwrap());
        metadata
    }

    #[test]
    fn bearer_tokens_must_be_well_formed() {
        let token = "ab".repeat(TOKEN_BYTES);
        assert_eq!(
            bearer_token(&metadata(&format!("Bearer {token}"))).unwrap(),
            token
        );
        assert_eq!(
            bearer_token(&metadata(&format!("bearer {token}"))).unwrap(),
            token
        );
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic abc",
            &format!("Bearer {token}x"),
            &format!("Token {token}"),
        ] {
            assert!(bearer_token(&metadata(bad)).is_err(), "{bad:?}");
        }
        assert!(bearer_token(&MetadataMap::new()).is_err());
    }

    #[test]
    fn a_token_hashes_as_its_lower_case_whatever_its_length() {
        for length in [0, 1, 63, 64, 65, 2 * TOKEN_BYTES, 200] {
            let token: String = "aB3f".chars().cycle().take(length).collect();
            let expected: TokenHash = Sha256::digest(token.to_ascii_lowercase()).into();
            assert_eq!(token_hash(&token), expected, "length {length}");
            assert_eq!(
                token_hash(&token),
                token_hash(&token.to_ascii_uppercase()),
                "length {length}"
            );
        }
    }
}
