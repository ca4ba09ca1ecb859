//! The SQL of each read, run on a reader connection (see `readers.rs`).

use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{HistoryQuery, ListQuery, Members};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{MessageRow, id_to_sql, stored_chat, stored_user};
use crate::store::decode::member_key;
use crate::store::{
    ChatPage, ChatSummary, HistoryPage, StoreError, StoredMessage, TokenHash, position_after,
};

pub fn password_hash(conn: &Connection, user: &UserId) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT password_hash FROM accounts WHERE user_id = ?1",
            [user.as_str()],
            |row| row.get(0),
        )
        .optional()?)
}

/// The owner of `token` and when it expires, if it is unexpired at `now` and not revoked.
pub fn token_owner(
    conn: &Connection,
    token: &TokenHash,
    now: i64,
) -> Result<Option<(UserId, i64)>, StoreError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT user_id, expires_at FROM tokens WHERE token_hash = ?1 AND expires_at > ?2",
        )?
        .query_row(params![token.as_slice(), now], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    row.map(|(id, expires_at)| Ok((stored_user(&id)?, expires_at)))
        .transpose()
}

/// The row id of `chat` if `user` is one of its members. A missing chat and a foreign chat
/// look the same from here on.
pub fn member_chat_row(
    conn: &Connection,
    chat: &ChatId,
    user: &UserId,
) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT c.id FROM chats c JOIN chat_members m ON m.chat = c.id
             WHERE c.public_id = ?1 AND m.user_id = ?2",
        )?
        .query_row([chat.as_str(), user.as_str()], |row| row.get(0))
        .optional()?)
}

/// The row id of `chat` for a member, or [`StoreError::ChatNotFound`].
fn chat_row_for(conn: &Connection, chat: &ChatId, user: &UserId) -> Result<i64, StoreError> {
    member_chat_row(conn, chat, user)?.ok_or(StoreError::ChatNotFound)
}

pub fn history(
    conn: &Connection,
    user: &UserId,
    query: &HistoryQuery,
) -> Result<HistoryPage, StoreError> {
    let chat = chat_row_for(conn, &query.chat_id, user)?;
    let before = query.before.map_or(i64::MAX, id_to_sql);
    // One row more than asked tells whether older messages remain.
    let rows = conn
        .prepare_cached(
            "SELECT id, sender, client_id, subject, text, sent_at FROM messages
             WHERE chat = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?
        .query_map(params![chat, before, query.limit + 1], MessageRow::read)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut messages = rows
        .into_iter()
        .map(|row| row.into_message(query.chat_id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = messages.len() > query.limit as usize;
    messages.truncate(query.limit as usize);
    messages.reverse();
    Ok(HistoryPage { messages, has_more })
}

/// Up to `limit` messages after `after`, in id order: of `chat`, or of every chat of `user`.
pub fn messages_after(
    conn: &Connection,
    user: &UserId,
    chat: Option<&ChatId>,
    after: MessageId,
    limit: u32,
) -> Result<Vec<StoredMessage>, StoreError> {
    let after = id_to_sql(after);
    match chat {
        Some(chat_id) => {
            let chat = chat_row_for(conn, chat_id, user)?;
            let rows = conn
                .prepare_cached(
                    "SELECT id, sender, client_id, subject, text, sent_at FROM messages
                     WHERE chat = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                )?
                .query_map(params![chat, after, limit], MessageRow::read)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|row| row.into_message(chat_id.clone()))
                .collect()
        }
        None => {
            let rows = conn
                .prepare_cached(
                    "SELECT m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, c.public_id
                     FROM messages m JOIN chats c ON c.id = m.chat
                     WHERE m.id > ?1
                       AND m.chat IN (SELECT chat FROM chat_members WHERE user_id = ?2)
                     ORDER BY m.id LIMIT ?3",
                )?
                .query_map(params![after, user.as_str(), limit], |row| {
                    Ok((MessageRow::read(row)?, row.get::<_, String>(6)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(row, chat_id)| row.into_message(stored_chat(&chat_id)?))
                .collect()
        }
    }
}

/// The chats of `user` with their members and last message, most recently active first.
/// One page of the chats of `user` with their members and last message, in List's order.
/// The page is picked by position (keyset), so the rows after it are never read into memory.
pub fn chats_of(
    conn: &Connection,
    user: &UserId,
    query: &ListQuery,
) -> Result<ChatPage, StoreError> {
    let (activity, last_message, chat_id) = position_after(query.after.as_ref());
    let rows = conn
        .prepare_cached(
            "SELECT chat, public_id, created_at, id, sender, client_id, subject, text, sent_at
             FROM (SELECT c.id AS chat, c.public_id, c.created_at,
                          m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at,
                          coalesce(m.sent_at, c.created_at) AS activity,
                          coalesce(m.id, 0) AS last_id
                   FROM chat_members mine
                   JOIN chats c ON c.id = mine.chat
                   LEFT JOIN messages m ON m.id = (SELECT max(id) FROM messages WHERE chat = c.id)
                   WHERE mine.user_id = ?1)
             WHERE (activity, last_id, public_id) < (?2, ?3, ?4)
             ORDER BY activity DESC, last_id DESC, public_id DESC
             LIMIT ?5",
        )?
        .query_map(
            params![
                user.as_str(),
                activity,
                id_to_sql(MessageId(last_message)),
                chat_id,
                query.limit + 1
            ],
            |row| {
                let chat: i64 = row.get(0)?;
                let public_id: String = row.get(1)?;
                let created_at: i64 = row.get(2)?;
                // A chat without messages has NULL in every message column.
                let last = match row.get::<_, Option<i64>>(3)? {
                    None => None,
                    Some(_) => Some(MessageRow::read_at(row, 3)?),
                };
                Ok((chat, public_id, created_at, last))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut members =
        conn.prepare_cached("SELECT user_id FROM chat_members WHERE chat = ?1 ORDER BY user_id")?;
    let chats = rows
        .into_iter()
        .map(|(chat, public_id, created_at, last)| {
            let chat_id = stored_chat(&public_id)?;
            let last_message = last
                .map(|row| row.into_message(chat_id.clone()))
                .transpose()?;
            let members = members
                .query_map([chat], |row| row.get::<_, String>(0))?
                .map(|member| stored_user(&member?))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ChatSummary {
                members,
                chat_id,
                last_message,
                created_at,
                reading: super::activity::reading(conn, user, chat)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(ChatPage::from_rows(chats, query.limit))
}

/// The first of `members` already in `cap` chats, unless the chat of exactly these members
/// exists (New returns that one whatever the quota). Counting stops at `cap`, so a check
/// costs at most `cap` index entries per member.
pub fn member_at_chat_cap(
    conn: &Connection,
    members: &Members,
    cap: u32,
) -> Result<Option<UserId>, StoreError> {
    let member_key = member_key(members);
    let exists = conn
        .prepare_cached("SELECT 1 FROM chats WHERE member_key = ?1")?
        .exists([&member_key])?;
    if exists {
        return Ok(None);
    }
    let mut count = conn.prepare_cached(
        "SELECT count(*) FROM (SELECT 1 FROM chat_members WHERE user_id = ?1 LIMIT ?2)",
    )?;
    for member in members.as_slice() {
        let chats: i64 = count.query_row(params![member.as_str(), cap], |row| row.get(0))?;
        if chats >= i64::from(cap) {
            return Ok(Some(member.clone()));
        }
    }
    Ok(None)
}
