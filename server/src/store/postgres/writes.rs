//! The writes other than appends: accounts, tokens, chats, leaving and blocks. Each runs on its own pooled
//! connection and commits on its own; their races (two sign-ups of one name, two `New` calls
//! for one member set, on any servers) are settled by unique constraints, not by this server.

use chat_core::ids::{ChatId, UserId};
use chat_core::limits::BLOCKED_MAX;
use chat_core::requests::Members;
use deadpool_postgres::{Client, GenericClient};

use crate::store::decode::{member_key, stored_chat, stored_user};
use crate::store::{DEVICES_PER_ACCOUNT, Membership, StoreError, TokenHash};

/// The channel every revocation of tokens notifies, with the user id whose tokens went.
pub const TOKENS_CHANNEL: &str = "chat_tokens";

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

/// Gives `user` the device key `device`, forgetting the account's oldest past
/// [`DEVICES_PER_ACCOUNT`], in one statement (whose `DELETE` sees the table as it was before
/// the `INSERT`, so it keeps one fewer of the others).
pub async fn save_device(
    client: &Client,
    device: &TokenHash,
    user: &UserId,
    now: i64,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "WITH added AS (
                 INSERT INTO devices (device_hash, user_id, created_at) VALUES ($1, $2, $3))
             DELETE FROM devices WHERE user_id = $2 AND id NOT IN (
                 SELECT id FROM devices WHERE user_id = $2 ORDER BY id DESC LIMIT $4)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &device.as_slice(),
                &user.as_str(),
                &now,
                &(DEVICES_PER_ACCOUNT - 1),
            ],
        )
        .await?;
    Ok(())
}

// Every revocation notifies `TOKENS_CHANNEL` with the owner's user id, in the statement that
// deletes, so that the other servers' token caches forget that user's tokens once it commits.

pub async fn revoke_token(client: &Client, token: &TokenHash) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "WITH gone AS (DELETE FROM tokens WHERE token_hash = $1 RETURNING user_id)
             SELECT pg_notify('{TOKENS_CHANNEL}', user_id) FROM gone"
        ))
        .await?;
    client.execute(&statement, &[&token.as_slice()]).await?;
    Ok(())
}

pub async fn revoke_tokens_of(client: &Client, user: &UserId) -> Result<(), StoreError> {
    client
        .execute(&revoke_all_statement(client).await?, &[&user.as_str()])
        .await?;
    Ok(())
}

/// Deletes every token of the user `$1` and tells the other servers.
async fn revoke_all_statement(
    client: &impl GenericClient,
) -> Result<tokio_postgres::Statement, StoreError> {
    Ok(client
        .prepare_cached(&format!(
            "WITH gone AS (DELETE FROM tokens WHERE user_id = $1)
             SELECT pg_notify('{TOKENS_CHANNEL}', $1)"
        ))
        .await?)
}

/// Replaces `user`'s password hash (and deactivation, see `Store::set_password`) and revokes
/// all of the user's tokens and device keys in one transaction, so that whoever knew the old
/// password keeps no session and no ladder of their own.
pub async fn set_password(
    client: &mut Client,
    user: &UserId,
    password_hash: &str,
    deactivated_at: Option<i64>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let changed = tx
        .execute(
            "UPDATE accounts SET password_hash = $2, deactivated_at = $3 WHERE user_id = $1",
            &[&user.as_str(), &password_hash, &deactivated_at],
        )
        .await?;
    if changed == 0 {
        return Err(StoreError::NoSuchAccount(user.clone()));
    }
    tx.execute("DELETE FROM devices WHERE user_id = $1", &[&user.as_str()])
        .await?;
    tx.execute(&revoke_all_statement(&tx).await?, &[&user.as_str()])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The chat of exactly `wanted`, made by `caller`: created with `new_id`, or the one that
/// exists, which brings the caller back if they left it. Refused when the caller and another
/// member blocked one another. When two servers create the same chat at once, the second
/// `INSERT` waits on the unique `member_key` until the first commits, then does nothing and
/// reads the first's chat back.
pub async fn create_chat(
    client: &mut Client,
    caller: &UserId,
    wanted: &Members,
    new_id: ChatId,
    now: i64,
) -> Result<(ChatId, Membership), StoreError> {
    let users: Vec<&str> = wanted.as_slice().iter().map(UserId::as_str).collect();
    let tx = client.transaction().await?;
    // Under a share lock: `deactivate-account` (an update of one of these rows) then waits
    // for this chat to commit and finds it among the person's chats to leave, or this New
    // waits for the deactivation and sees it.
    let known = tx
        .prepare_cached(
            "SELECT user_id, deactivated_at IS NOT NULL FROM accounts WHERE user_id = ANY($1)
             FOR SHARE",
        )
        .await?;
    let existing: Vec<(String, bool)> = tx
        .query(&known, &[&users])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    for user in wanted.as_slice() {
        match existing.iter().find(|(found, _)| found == user.as_str()) {
            None => return Err(StoreError::NoSuchAccount(user.clone())),
            Some((_, true)) => return Err(StoreError::AccountDeactivated(user.clone())),
            Some((_, false)) => {}
        }
    }
    check_blocks(&tx, caller, &users).await?;
    let member_key = member_key(wanted);

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
        let membership = Membership {
            members: wanted.as_slice().to_vec(),
            version: 0,
        };
        return Ok((new_id, membership));
    }
    let row = tx
        .query_one(
            "SELECT id, public_id FROM chats WHERE member_key = $1",
            &[&member_key],
        )
        .await?;
    let chat: i64 = row.try_get(0)?;
    let public_id: String = row.try_get(1)?;
    // The caller's own New undoes their own leaving, and nobody else's.
    let returned = tx
        .execute(
            "DELETE FROM chat_departures WHERE chat = $1 AND user_id = $2",
            &[&chat, &caller.as_str()],
        )
        .await?;
    if returned == 1 {
        tx.execute(
            "INSERT INTO chat_members (chat, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&chat, &caller.as_str()],
        )
        .await?;
    }
    let membership = membership(&tx, chat, returned == 1).await?;
    tx.commit().await?;
    Ok((stored_chat(&public_id)?, membership))
}

/// `chat`'s members now, sorted, and its members' version, which `changed` bumps first. The
/// bump locks the chat's row until commit, so changes of one chat's members take their
/// versions one after the other, in commit order, and each reads the members (in a statement
/// of its own, after the lock) with every earlier change committed.
async fn membership(
    client: &impl GenericClient,
    chat: i64,
    changed: bool,
) -> Result<Membership, StoreError> {
    let version: i64 = if changed {
        client
            .query_one(
                "UPDATE chats SET members_version = members_version + 1 WHERE id = $1
                 RETURNING members_version",
                &[&chat],
            )
            .await?
    } else {
        client
            .query_one("SELECT members_version FROM chats WHERE id = $1", &[&chat])
            .await?
    }
    .try_get(0)?;
    let members = client
        .query(
            "SELECT user_id FROM chat_members WHERE chat = $1 ORDER BY user_id",
            &[&chat],
        )
        .await?
        .iter()
        .map(|row| stored_user(row.try_get(0)?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Membership {
        members,
        version: u64::try_from(version).unwrap_or(0),
    })
}

/// Refuses a chat of `caller` with anyone they blocked or who blocked them.
async fn check_blocks(
    client: &impl GenericClient,
    caller: &UserId,
    users: &[&str],
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT blocker, blocked FROM blocks
             WHERE (blocker = $1 AND blocked = ANY($2)) OR (blocked = $1 AND blocker = ANY($2))
             ORDER BY blocker <> $1, blocker, blocked LIMIT 1",
        )
        .await?;
    let Some(row) = client
        .query_opt(&statement, &[&caller.as_str(), &users])
        .await?
    else {
        return Ok(());
    };
    let blocker: &str = row.try_get(0)?;
    let blocked: &str = row.try_get(1)?;
    let by_caller = blocker == caller.as_str();
    Err(StoreError::Blocked {
        user: stored_user(if by_caller { blocked } else { blocker })?,
        by_caller,
    })
}

/// Takes `user` out of `chat` and records the departure, so that only they can come back;
/// returns who is left, with the members' version the departure bumped.
pub async fn leave_chat(
    client: &mut Client,
    chat: &ChatId,
    user: &UserId,
    now: i64,
) -> Result<Membership, StoreError> {
    let tx = client.transaction().await?;
    let left = tx
        .query_opt(
            "DELETE FROM chat_members
             WHERE chat = (SELECT id FROM chats WHERE public_id = $1) AND user_id = $2
             RETURNING chat",
            &[&chat.as_str(), &user.as_str()],
        )
        .await?
        .ok_or(StoreError::ChatNotFound)?;
    let row: i64 = left.try_get(0)?;
    tx.execute(
        "INSERT INTO chat_departures (chat, user_id, left_at) VALUES ($1, $2, $3)
         ON CONFLICT (chat, user_id) DO UPDATE SET left_at = excluded.left_at",
        &[&row, &user.as_str(), &now],
    )
    .await?;
    let membership = membership(&tx, row, true).await?;
    tx.commit().await?;
    Ok(membership)
}

/// Records the block in a transaction that first locks the blocker's account row, so that two
/// Blocks at once cannot both pass the cap.
pub async fn block(
    client: &mut Client,
    blocker: &UserId,
    blocked: &UserId,
    now: i64,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT 1 FROM accounts WHERE user_id = $1 FOR UPDATE",
        &[&blocker.as_str()],
    )
    .await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM accounts WHERE user_id = $1",
            &[&blocked.as_str()],
        )
        .await?
        .is_some();
    if !exists {
        return Err(StoreError::NoSuchAccount(blocked.clone()));
    }
    let row = tx
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE blocked = $2) FROM blocks WHERE blocker = $1",
            &[&blocker.as_str(), &blocked.as_str()],
        )
        .await?;
    let (count, already): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    if already > 0 {
        return Ok(());
    }
    if count >= BLOCKED_MAX as i64 {
        return Err(StoreError::TooManyBlocked);
    }
    tx.execute(
        "INSERT INTO blocks (blocker, blocked, created_at) VALUES ($1, $2, $3)",
        &[&blocker.as_str(), &blocked.as_str(), &now],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn unblock(
    client: &Client,
    blocker: &UserId,
    blocked: &UserId,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("DELETE FROM blocks WHERE blocker = $1 AND blocked = $2")
        .await?;
    client
        .execute(&statement, &[&blocker.as_str(), &blocked.as_str()])
        .await?;
    Ok(())
}
