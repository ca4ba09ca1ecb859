//! The SQL of read positions, settings and last-seen times on SQLite: the writes run on the
//! writer thread (inside its batch transaction), the reads on a reader connection.

use chat_core::activity::SettingsChange;
use chat_core::ids::{ChatId, MessageId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use super::reads::member_chat_row;
use super::rows::{id_from_sql, id_to_sql, stored_user};
use super::writes::ChatCache;
use crate::store::{AccountSettings, ChatReading, Contact, ReadMove, StoreError};

/// Moves `user`'s position in `chat` forward to `up_to` (see `Store::mark_read`).
pub fn mark_read(
    conn: &Connection,
    chats: &mut ChatCache,
    user: &UserId,
    chat: &ChatId,
    up_to: MessageId,
) -> Result<ReadMove, StoreError> {
    let cached = chats
        .get(conn, chat)?
        .filter(|cached| cached.members.contains(user))
        .ok_or(StoreError::ChatNotFound)?;
    let in_chat = conn
        .prepare_cached("SELECT 1 FROM messages WHERE id = ?1 AND chat = ?2")?
        .exists(params![id_to_sql(up_to), cached.row])?;
    if !in_chat {
        return Err(StoreError::MessageNotInChat(up_to));
    }
    // The WHERE of the upsert keeps positions moving forward only: an older mark changes no
    // row, which is how the caller learns nothing moved.
    let moved = conn
        .prepare_cached(
            "INSERT INTO read_positions (chat, user_id, up_to) VALUES (?1, ?2, ?3)
             ON CONFLICT (chat, user_id) DO UPDATE SET up_to = excluded.up_to
             WHERE excluded.up_to > read_positions.up_to",
        )?
        .execute(params![cached.row, user.as_str(), id_to_sql(up_to)])?
        > 0;
    let position: i64 = conn
        .prepare_cached("SELECT up_to FROM read_positions WHERE chat = ?1 AND user_id = ?2")?
        .query_row(params![cached.row, user.as_str()], |row| row.get(0))?;
    Ok(ReadMove {
        position: MessageId(id_from_sql(position)),
        moved,
        members: cached.members.to_vec(),
        private: settings(conn, user)?.private_receipts,
    })
}

pub fn update_settings(
    conn: &Connection,
    user: &UserId,
    change: SettingsChange,
) -> Result<AccountSettings, StoreError> {
    if let Some(private) = change.private_receipts {
        conn.prepare_cached(
            "INSERT INTO account_settings (user_id, private_receipts) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET private_receipts = excluded.private_receipts",
        )?
        .execute(params![user.as_str(), private])?;
    }
    settings(conn, user)
}

/// Online from now on; true when that is a change.
pub fn set_online(conn: &Connection, user: &UserId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO presence (user_id, online) VALUES (?1, 1)
             ON CONFLICT (user_id) DO UPDATE SET online = 1 WHERE NOT presence.online",
        )?
        .execute([user.as_str()])?
        > 0)
}

/// Marks everyone still recorded online as offline since `now`: at start-up, where no stream
/// is open yet (the one server of this file stopped with theirs open).
pub fn everyone_offline(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE presence SET online = 0, last_seen = ?1 WHERE online",
        [now],
    )?;
    Ok(())
}

/// Offline since `at`; true when that is a change.
pub fn set_offline(conn: &Connection, user: &UserId, at: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE presence SET online = 0, last_seen = ?2 WHERE user_id = ?1 AND online",
        )?
        .execute(params![user.as_str(), at])?
        > 0)
}

pub fn settings(conn: &Connection, user: &UserId) -> Result<AccountSettings, StoreError> {
    let private: Option<bool> = conn
        .prepare_cached("SELECT private_receipts FROM account_settings WHERE user_id = ?1")?
        .query_row([user.as_str()], |row| row.get(0))
        .optional()?;
    Ok(AccountSettings {
        private_receipts: private.unwrap_or(false),
    })
}

pub fn members_of(
    conn: &Connection,
    chat: &ChatId,
    user: &UserId,
) -> Result<Vec<UserId>, StoreError> {
    let row = member_chat_row(conn, chat, user)?.ok_or(StoreError::ChatNotFound)?;
    conn.prepare_cached("SELECT user_id FROM chat_members WHERE chat = ?1 ORDER BY user_id")?
        .query_map([row], |row| row.get::<_, String>(0))?
        .map(|member| stored_user(&member?))
        .collect()
}

/// The members of each of `chats` that `user` is in, in the order of `chats`. One read
/// transaction of the caller's connection, one indexed lookup per chat: a page of search
/// results holds few chats.
pub fn members_of_chats(
    conn: &Connection,
    chats: Vec<ChatId>,
    user: &UserId,
) -> Result<Vec<(ChatId, Vec<UserId>)>, StoreError> {
    let mut named = Vec::with_capacity(chats.len());
    for chat in chats {
        match members_of(conn, &chat, user) {
            Ok(members) => named.push((chat, members)),
            Err(StoreError::ChatNotFound) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(named)
}

pub fn contacts(conn: &Connection, user: &UserId) -> Result<Vec<Contact>, StoreError> {
    conn.prepare_cached(
        "SELECT DISTINCT other.user_id, seen.last_seen
         FROM chat_members mine
         JOIN chat_members other ON other.chat = mine.chat AND other.user_id <> mine.user_id
         LEFT JOIN presence seen ON seen.user_id = other.user_id
         WHERE mine.user_id = ?1
         ORDER BY other.user_id",
    )?
    .query_map([user.as_str()], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
    })?
    .map(|row| {
        let (id, last_seen) = row?;
        Ok(Contact {
            user: stored_user(&id)?,
            last_seen,
            leased: false,
        })
    })
    .collect()
}

/// The read state of the chat with row id `chat` as `user` sees it.
pub fn reading(conn: &Connection, user: &UserId, chat: i64) -> Result<ChatReading, StoreError> {
    let up_to: Option<i64> = conn
        .prepare_cached("SELECT up_to FROM read_positions WHERE chat = ?1 AND user_id = ?2")?
        .query_row(params![chat, user.as_str()], |row| row.get(0))
        .optional()?;
    let unread: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM messages WHERE chat = ?1 AND id > ?2 AND sender <> ?3",
        )?
        .query_row(params![chat, up_to.unwrap_or(0), user.as_str()], |row| {
            row.get(0)
        })?;
    let receipts = conn
        .prepare_cached(
            "SELECT r.user_id, r.up_to FROM read_positions r
             JOIN chat_members now ON now.chat = r.chat AND now.user_id = r.user_id
             LEFT JOIN account_settings s ON s.user_id = r.user_id
             WHERE r.chat = ?1 AND r.user_id <> ?2 AND NOT coalesce(s.private_receipts, 0)
             ORDER BY r.user_id",
        )?
        .query_map(params![chat, user.as_str()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?
        .map(|row| {
            let (id, up_to) = row?;
            Ok((stored_user(&id)?, MessageId(id_from_sql(up_to))))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(ChatReading {
        unread: u64::try_from(unread).unwrap_or(0),
        up_to: up_to.map(|id| MessageId(id_from_sql(id))),
        receipts,
    })
}
