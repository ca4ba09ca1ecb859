//! Accounts and sessions: argon2id password hashes (computed by `password`, a bounded number
//! at once), and bearer tokens that are random, expiring, revocable and stored only as
//! SHA-256 hashes.
//!
//! Tokens are looked up by their hash, never compared as strings, so the time a lookup takes
//! tells an attacker nothing about a valid token.

use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::UserId;
use chat_core::requests::Credentials;
use chat_core::wire;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::error::ApiError;
use crate::password::{self, Hashing};
use crate::store::{Store, TokenHash};
use chat_transport::unix_now;

/// A signed-in session, as SignUp and SignIn return it.
pub struct Session {
    pub user: UserId,
    pub token: String,
    pub expires_at: i64,
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    hashing: Hashing,
    token_ttl: Duration,
    /// Verified against when the account does not exist, so that an unknown user id costs
    /// as much time as a wrong password and sign-in does not reveal which accounts exist.
    decoy_hash: String,
}

impl Authenticator {
    pub fn new(
        store: Arc<dyn Store>,
        hashing: Hashing,
        token_ttl: Duration,
    ) -> Result<Self, ApiError> {
        let decoy_hash = password::hash_now(&hex(&rand::random::<[u8; 16]>()))?;
        Ok(Self {
            store,
            hashing,
            token_ttl,
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
        self.start_session(credentials.user_id).await
    }

    pub async fn sign_in(&self, credentials: Credentials) -> Result<Session, ApiError> {
        // The turn first: an attempt refused for a full queue costs no storage read.
        let turn = self.hashing.turn().await?;
        let stored = self.store.password_hash(&credentials.user_id).await?;
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.clone());
        let password = credentials.password.expose().to_owned();
        let matches = self.hashing.verify(turn, password, hash).await?;
        if !(known && matches) {
            tracing::info!(user = %credentials.user_id, "sign-in refused");
            return Err(ApiError::WrongCredentials);
        }
        self.start_session(credentials.user_id).await
    }

    /// Revokes the token the call carries. Signing out twice is not an error.
    pub async fn sign_out(&self, metadata: &MetadataMap) -> Result<(), ApiError> {
        let token = bearer_token(metadata)?;
        self.store.revoke_token(token_hash(token)).await?;
        Ok(())
    }

    /// The user a call is made by, from its bearer token. When the call also carries
    /// `user-id` metadata, it must name that same user.
    pub async fn caller(&self, metadata: &MetadataMap) -> Result<UserId, ApiError> {
        let token = bearer_token(metadata)?;
        let user = self
            .store
            .token_owner(token_hash(token), unix_now())
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
        Ok(user)
    }

    async fn start_session(&self, user: UserId) -> Result<Session, ApiError> {
        let token = hex(&rand::random::<[u8; TOKEN_BYTES]>());
        let ttl = i64::try_from(self.token_ttl.as_secs()).unwrap_or(i64::MAX);
        let expires_at = unix_now().saturating_add(ttl);
        self.store
            .save_token(token_hash(&token), &user, expires_at)
            .await?;
        Ok(Session {
            user,
            token,
            expires_at,
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
    let well_formed = scheme.eq_ignore_ascii_case(wire::BEARER)
        && token.len() == 2 * TOKEN_BYTES
        && token.bytes().all(|b| b.is_ascii_hexdigit());
    if well_formed {
        Ok(token)
    } else {
        Err(malformed())
    }
}

fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.to_ascii_lowercase().as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
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
}
