//! The writes other than appends: accounts, tokens and chats. Each runs on its own pooled
//! connection and commits on its own; their races (two sign-ups of one name, two `New` calls
//! for one member set, on any servers) are settled by unique constraints, not by this server.

use chat_core::ids::{ChatId, UserId};
use chat_core::requests::Members;
use deadpool_postgres::Client;

use crate::store::decode::{member_key, stored_chat};
use crate::store::{StoreError, TokenHash};

pub async fn create_account(
    client: &Client,
    user: &UserId,
    password_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO accounts (user_id, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .await?;
    let inserted = client
        .execute(&statement, &[&user.as_str(), &password_hash, &now])
        .await?;
    if inserted == 0 {
        return Err(StoreError::AccountExists(user.clone()));
    }
    Ok(())
}

pub async fn save_token(
    client: &Client,
    token: &TokenHash,
    user: &UserId,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    // Expired tokens are useless; dropping them here keeps the table small.
    let expired = client
        .prepare_cached("DELETE FROM tokens WHERE expires_at <= $1")
        .await?;
    client.execute(&expired, &[&now]).await?;
    let insert = client
        .prepare_cached("INSERT INTO tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
        .await?;
    client
        .execute(&insert, &[&token.as_slice(), &user.as_str(), &expires_at])
        .await?;
    Ok(())
}

pub async fn revoke_token(client: &Client, token: &TokenHash) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("DELETE FROM tokens WHERE token_hash = $1")
        .await?;
    client.execute(&statement, &[&token.as_slice()]).await?;
    Ok(())
}

pub async fn revoke_tokens_of(client: &Client, user: &UserId) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("DELETE FROM tokens WHERE user_id = $1")
        .await?;
    client.execute(&statement, &[&user.as_str()]).await?;
    Ok(())
}

/// Replaces `user`'s password hash and revokes all of the user's tokens in one transaction,
/// so that whoever knew the old password keeps no session.
pub async fn set_password(
    client: &mut Client,
    user: &UserId,
    password_hash: &str,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let changed = tx
        .execute(
            "UPDATE accounts SET password_hash = $2 WHERE user_id = $1",
            &[&user.as_str(), &password_hash],
        )
        .await?;
    if changed == 0 {
        return Err(StoreError::NoSuchAccount(user.clone()));
    }
    tx.execute("DELETE FROM tokens WHERE user_id = $1", &[&user.as_str()])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The chat of exactly `wanted`: created with `new_id`, or the one that exists. When two
/// servers create the same chat at once, the second `INSERT` waits on the unique `member_key`
/// until the first commits, then does nothing and reads the first's chat back.
pub async fn create_chat(
    client: &mut Client,
    wanted: &Members,
    new_id: ChatId,
    now: i64,
) -> Result<ChatId, StoreError> {
    let users: Vec<&str> = wanted.as_slice().iter().map(UserId::as_str).collect();
    let known = client
        .prepare_cached("SELECT user_id FROM accounts WHERE user_id = ANY($1)")
        .await?;
    let existing: Vec<String> = client
        .query(&known, &[&users])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if let Some(missing) = wanted
        .as_slice()
        .iter()
        .find(|user| !existing.iter().any(|found| found == user.as_str()))
    {
        return Err(StoreError::NoSuchAccount(missing.clone()));
    }
    let member_key = member_key(wanted);

    let tx = client.transaction().await?;
    let created = tx
        .query_opt(
            "INSERT INTO chats (public_id, member_key, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (member_key) DO NOTHING RETURNING id",
            &[&new_id.as_str(), &member_key, &now],
        )
        .await?;
    if let Some(row) = created {
        let chat: i64 = row.try_get(0)?;
        tx.execute(
            "INSERT INTO chat_members (chat, user_id) SELECT $1, unnest($2::text[])",
            &[&chat, &users],
        )
        .await?;
        tx.commit().await?;
        return Ok(new_id);
    }
    tx.commit().await?;
    let existing = client
        .prepare_cached("SELECT public_id FROM chats WHERE member_key = $1")
        .await?;
    let public_id: String = client
        .query_one(&existing, &[&member_key])
        .await?
        .try_get(0)?;
    stored_chat(&public_id)
}
