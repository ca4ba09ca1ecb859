//! The SQL of each read, run on a reader connection (see `readers.rs`).

use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{HistoryQuery, ListQuery, Members};
use rusqlite::{Connection, OptionalExtension, params};

use chat_core::emoji::Emoji;
use chat_core::search::{self, SearchQuery, SearchTerms};

use super::rows::{
    MESSAGE_COLUMN_COUNT, MESSAGE_COLUMNS, MessageRow, REPLY_JOIN, id_from_sql, id_to_sql,
    stored_chat, stored_user,
};
use crate::store::changes::attach_reactions;
use crate::store::decode::{left_members, member_key, stored};
use crate::store::{
    ChatPage, ChatSummary, HistoryPage, LastMessages, SearchPage, StoreError, StoredEvent,
    StoredMessage, TokenHash, position_after,
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

/// The account `device` was given to, while it keeps it.
pub fn device_owner(conn: &Connection, device: &TokenHash) -> Result<Option<UserId>, StoreError> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT user_id FROM devices WHERE device_hash = ?1")?
        .query_row([device.as_slice()], |row| row.get(0))
        .optional()?;
    owner.map(|id| stored_user(&id)).transpose()
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
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m {REPLY_JOIN}
             WHERE m.chat = ?1 AND m.id < ?2 ORDER BY m.id DESC LIMIT ?3"
        ))?
        .query_map(params![chat, before, query.limit + 1], MessageRow::read)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut messages = rows
        .into_iter()
        .map(|row| row.into_message(query.chat_id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = messages.len() > query.limit as usize;
    messages.truncate(query.limit as usize);
    messages.reverse();
    with_reactions(conn, &mut messages)?;
    Ok(HistoryPage { messages, has_more })
}

/// The message `id` of the chat whose row id is `chat`, with its reactions, whatever its
/// state (deleted included); `None` if the chat has no such message.
pub fn message_in_chat(
    conn: &Connection,
    chat: i64,
    chat_id: &ChatId,
    id: MessageId,
) -> Result<Option<StoredMessage>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m {REPLY_JOIN}
             WHERE m.id = ?1 AND m.chat = ?2"
        ))?
        .query_row(params![id_to_sql(id), chat], MessageRow::read)
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let mut message = [row.into_message(chat_id.clone())?];
    with_reactions(conn, &mut message)?;
    let [message] = message;
    Ok(Some(message))
}

/// Reads the reactions of `messages` onto them: one indexed lookup per message.
pub fn with_reactions(conn: &Connection, messages: &mut [StoredMessage]) -> Result<(), StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT emoji, user_id FROM reactions WHERE message = ?1 ORDER BY id")?;
    let mut ids: Vec<MessageId> = messages.iter().map(|message| message.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut rows = Vec::new();
    for id in ids {
        let found = statement
            .query_map([id_to_sql(id)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (emoji, user) in found {
            rows.push((
                id,
                stored("emoji", Emoji::parse(&emoji))?,
                stored_user(&user)?,
            ));
        }
    }
    attach_reactions(messages, rows);
    Ok(())
}

/// Up to `limit` events after `after`, in id order: of `chat`, or of every chat of `user`.
/// Messages and changes come from their own tables, each side cut at `limit` before they
/// are merged, so a page reads at most `2 * limit` index entries; each event carries its
/// message's current state.
pub fn events_after(
    conn: &Connection,
    user: &UserId,
    chat: Option<&ChatId>,
    after: MessageId,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let after = id_to_sql(after);
    let read = |row: &rusqlite::Row<'_>| {
        Ok((
            row.get::<_, i64>(0)?,
            MessageRow::read_at(row, 1)?,
            row.get::<_, String>(1 + MESSAGE_COLUMN_COUNT)?,
        ))
    };
    let rows = match chat {
        Some(chat_id) => {
            let chat = chat_row_for(conn, chat_id, user)?;
            conn.prepare_cached(&format!(
                "SELECT e.id, {MESSAGE_COLUMNS}, ?4
                 FROM (SELECT * FROM (SELECT id, id AS message FROM messages
                                      WHERE chat = ?1 AND id > ?2 ORDER BY id LIMIT ?3)
                       UNION ALL
                       SELECT * FROM (SELECT id, message FROM message_changes
                                      WHERE chat = ?1 AND id > ?2 ORDER BY id LIMIT ?3)) e
                 JOIN messages m ON m.id = e.message
                 {REPLY_JOIN}
                 ORDER BY e.id LIMIT ?3"
            ))?
            .query_map(params![chat, after, limit, chat_id.as_str()], read)?
            .collect::<Result<Vec<_>, _>>()?
        }
        None => conn
            .prepare_cached(&format!(
                "SELECT e.id, {MESSAGE_COLUMNS}, c.public_id
                 FROM (SELECT * FROM (SELECT id, id AS message FROM messages
                                      WHERE id > ?1 AND chat IN
                                        (SELECT chat FROM chat_members WHERE user_id = ?2)
                                      ORDER BY id LIMIT ?3)
                       UNION ALL
                       SELECT * FROM (SELECT id, message FROM message_changes
                                      WHERE id > ?1 AND chat IN
                                        (SELECT chat FROM chat_members WHERE user_id = ?2)
                                      ORDER BY id LIMIT ?3)) e
                 JOIN messages m ON m.id = e.message
                 JOIN chats c ON c.id = m.chat
                 {REPLY_JOIN}
                 ORDER BY e.id LIMIT ?3"
            ))?
            .query_map(params![after, user.as_str(), limit], read)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut messages = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for (id, row, chat_id) in rows {
        ids.push(MessageId(id_from_sql(id)));
        messages.push(row.into_message(stored_chat(&chat_id)?)?);
    }
    with_reactions(conn, &mut messages)?;
    Ok(ids
        .into_iter()
        .zip(messages)
        .map(|(id, message)| StoredEvent { id, message })
        .collect())
}

/// One page of the chats of `user` with their members and last message, in List's order.
/// The page is picked by position (keyset), so the rows after it are never read into memory.
/// Last messages come without their reactions: a chat list shows none.
pub fn chats_of(
    conn: &Connection,
    user: &UserId,
    query: &ListQuery,
) -> Result<ChatPage, StoreError> {
    let (activity, last_message, chat_id) = position_after(query.after.as_ref());
    let rows = conn
        .prepare_cached(&format!(
            "SELECT chat, public_id, created_at,
                    id, sender, client_id, subject, text, sent_at, edited_at, deleted,
                    reply_to, reply_sender, reply_text, member_key, members_version
             FROM (SELECT c.id AS chat, c.public_id, c.created_at, c.member_key,
                          c.members_version,
                          m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at,
                          m.edited_at, m.deleted,
                          m.reply_to, r.sender AS reply_sender,
                          substr(r.text, 1, 100) AS reply_text,
                          coalesce(m.sent_at, c.created_at) AS activity,
                          coalesce(m.id, 0) AS last_id
                   FROM chat_members mine
                   JOIN chats c ON c.id = mine.chat
                   LEFT JOIN messages m ON m.id = (SELECT max(id) FROM messages WHERE chat = c.id)
                   {REPLY_JOIN}
                   WHERE mine.user_id = ?1)
             WHERE (activity, last_id, public_id) < (?2, ?3, ?4)
             ORDER BY activity DESC, last_id DESC, public_id DESC
             LIMIT ?5"
        ))?
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
                let member_key: String = row.get(14)?;
                let members_version: i64 = row.get(15)?;
                Ok((
                    chat,
                    public_id,
                    created_at,
                    last,
                    member_key,
                    members_version,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut members =
        conn.prepare_cached("SELECT user_id FROM chat_members WHERE chat = ?1 ORDER BY user_id")?;
    let mut chats = rows
        .into_iter()
        .map(
            |(chat, public_id, created_at, last, member_key, members_version)| {
                let chat_id = stored_chat(&public_id)?;
                let last_message = last
                    .map(|row| row.into_message(chat_id.clone()))
                    .transpose()?;
                let members = members
                    .query_map([chat], |row| row.get::<_, String>(0))?
                    .map(|member| stored_user(&member?))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ChatSummary {
                    left: left_members(&member_key, &members)?,
                    members,
                    members_version: u64::try_from(members_version).unwrap_or(0),
                    chat_id,
                    last_message,
                    created_at,
                    reading: super::activity::reading(conn, user, chat)?,
                })
            },
        )
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut last = LastMessages::take(&mut chats);
    with_reactions(conn, &mut last.messages)?;
    last.put_back(&mut chats);
    Ok(ChatPage::from_rows(chats, query.limit))
}

/// A page of the messages of `user`'s chats (or of one) that hold every query word, newest
/// first. The index is walked from the newest match down (`ORDER BY rowid DESC` is served
/// by FTS5 itself), so a page stops after `limit + 1` matches in the user's chats. `CROSS
/// JOIN` keeps the index the outer loop: SQLite never reorders it, so the planner cannot
/// choose to walk the user's messages and probe the index once per message instead.
pub fn search(
    conn: &Connection,
    user: &UserId,
    query: &SearchQuery,
) -> Result<SearchPage, StoreError> {
    let chat = query
        .chat_id
        .as_ref()
        .map(|chat| chat_row_for(conn, chat, user))
        .transpose()?;
    let in_chats = match chat {
        Some(_) => "m.chat = ?3",
        None => "m.chat IN (SELECT chat FROM chat_members WHERE user_id = ?3)",
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, c.public_id
         FROM messages_fts f
         CROSS JOIN messages m ON m.id = f.rowid
         JOIN chats c ON c.id = m.chat
         {REPLY_JOIN}
         WHERE messages_fts MATCH ?1 AND f.rowid < ?2 AND {in_chats}
         ORDER BY f.rowid DESC LIMIT ?4"
    );
    let before = query.before.map_or(i64::MAX, id_to_sql);
    let in_chats: rusqlite::types::Value = match chat {
        Some(row) => row.into(),
        None => user.as_str().to_owned().into(),
    };
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![fts5_match(&query.terms), before, in_chats, query.limit + 1],
            |row| {
                Ok((
                    MessageRow::read(row)?,
                    row.get::<_, String>(MESSAGE_COLUMN_COUNT)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut messages = rows
        .into_iter()
        .map(|(row, chat_id)| row.into_message(stored_chat(&chat_id)?))
        .collect::<Result<Vec<_>, StoreError>>()?;
    with_reactions(conn, &mut messages)?;
    Ok(SearchPage::from_rows(messages, query.limit))
}

/// The FTS5 query of `terms`: each word as the index takes text ([`search::index_text`]),
/// a quoted string (so nothing a person types is FTS5 syntax: `"` is doubled inside, though
/// words never hold one), which FTS5 reads as a phrase when it holds several tokens (the
/// characters of "东京"); all required (FTS5's implicit AND), the last one a prefix query
/// when the person may still be typing it.
fn fts5_match(terms: &SearchTerms) -> String {
    let words = terms.words();
    let mut expression = String::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            expression.push(' ');
        }
        expression.push('"');
        expression.push_str(&search::index_text(word).replace('"', "\"\""));
        expression.push('"');
        if i + 1 == words.len() && terms.last_is_prefix() {
            expression.push('*');
        }
    }
    expression
}

/// The first of `members` already in `cap` chats, unless the chat of exactly these members
/// exists (New returns that one whatever the quota). Counting stops at `cap`, so a check
/// costs at most `cap` index entries per member.
pub fn member_at_chat_cap(
    conn: &Connection,
    caller: &UserId,
    members: &Members,
    cap: u32,
) -> Result<Option<UserId>, StoreError> {
    let member_key = member_key(members);
    let existing: Option<i64> = conn
        .prepare_cached("SELECT id FROM chats WHERE member_key = ?1")?
        .query_row([&member_key], |row| row.get(0))
        .optional()?;
    let mut count = conn.prepare_cached(
        "SELECT count(*) FROM (SELECT 1 FROM chat_members WHERE user_id = ?1 LIMIT ?2)",
    )?;
    if let Some(chat) = existing {
        // Only the caller can come back into an existing chat (a rejoin after leaving it).
        let rejoins = conn
            .prepare_cached("SELECT 1 FROM chat_departures WHERE chat = ?1 AND user_id = ?2")?
            .exists(params![chat, caller.as_str()])?;
        let chats: i64 = count.query_row(params![caller.as_str(), cap], |row| row.get(0))?;
        return Ok((rejoins && chats >= i64::from(cap)).then(|| caller.clone()));
    }
    for member in members.as_slice() {
        let chats: i64 = count.query_row(params![member.as_str(), cap], |row| row.get(0))?;
        if chats >= i64::from(cap) {
            return Ok(Some(member.clone()));
        }
    }
    Ok(None)
}

/// Everyone `blocker` blocked, sorted.
pub fn blocked_by(conn: &Connection, blocker: &UserId) -> Result<Vec<UserId>, StoreError> {
    conn.prepare_cached("SELECT blocked FROM blocks WHERE blocker = ?1 ORDER BY blocked")?
        .query_map([blocker.as_str()], |row| row.get::<_, String>(0))?
        .map(|blocked| stored_user(&blocked?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts5_queries_quote_every_word() {
        let terms = |query| SearchTerms::parse(query).unwrap();
        assert_eq!(fts5_match(&terms("Hello wor")), r#""hello" "wor"*"#);
        assert_eq!(fts5_match(&terms("\"a\" OR b* ")), r#""a" "or" "b""#);
        assert_eq!(fts5_match(&terms("NEAR(x y)")), r#""near" "x" "y""#);
        assert_eq!(fts5_match(&terms("東京 Straße")), r#""東 京" "strasse"*"#);
    }
}
