//! The SQL of each write, run by the writer thread inside its batch's transaction, and the
//! writer's cache of the chats it appends to.

use std::collections::HashMap;
use std::sync::Arc;

use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::limits::BLOCKED_MAX;
use chat_core::requests::{Members, NewMessage};
use rusqlite::{Connection, OptionalExtension, params};

use super::reads::message_in_chat;
use super::rows::{
    MESSAGE_COLUMNS, MessageRow, REPLY_JOIN, id_from_sql, id_to_sql, stored_chat, stored_user,
};
use crate::store::changes::{Change, MessageUpdate, plan};
use crate::store::decode::member_key;
use crate::store::{
    DEVICES_PER_ACCOUNT, Membership, ReplyPreview, StoreError, StoredEvent, StoredMessage,
    TokenHash,
};

/// Chats whose row id and members the writer keeps in memory; past this it starts over.
const CHAT_CACHE_MAX: usize = 16_384;

pub fn create_account(
    conn: &Connection,
    user: UserId,
    password_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    let inserted = conn.execute(
        "INSERT INTO accounts (user_id, password_hash, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id) DO NOTHING",
        params![user.as_str(), password_hash, now],
    )?;
    if inserted == 0 {
        return Err(StoreError::AccountExists(user));
    }
    Ok(())
}

pub fn save_token(
    conn: &Connection,
    token: &TokenHash,
    user: &UserId,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    // Expired tokens are useless; dropping them here keeps the table small.
    conn.execute("DELETE FROM tokens WHERE expires_at <= ?1", [now])?;
    conn.execute(
        "INSERT INTO tokens (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
        params![token.as_slice(), user.as_str(), expires_at],
    )?;
    Ok(())
}

/// Gives `user` the device key `device`, forgetting the account's oldest past
/// [`DEVICES_PER_ACCOUNT`].
pub fn save_device(
    conn: &Connection,
    device: &TokenHash,
    user: &UserId,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO devices (device_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![device.as_slice(), user.as_str(), now],
    )?;
    conn.execute(
        "DELETE FROM devices WHERE user_id = ?1 AND device_hash NOT IN (
             SELECT device_hash FROM devices WHERE user_id = ?1
             ORDER BY created_at DESC, rowid DESC LIMIT ?2)",
        params![user.as_str(), DEVICES_PER_ACCOUNT],
    )?;
    Ok(())
}

pub fn revoke_token(conn: &Connection, token: &TokenHash) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM tokens WHERE token_hash = ?1",
        [token.as_slice()],
    )?;
    Ok(())
}

pub fn revoke_tokens_of(conn: &Connection, user: &UserId) -> Result<(), StoreError> {
    conn.execute("DELETE FROM tokens WHERE user_id = ?1", [user.as_str()])?;
    Ok(())
}

/// Replaces `user`'s password hash (and deactivation, see `Store::set_password`) and revokes
/// all of the user's tokens and device keys, so that whoever knew the old password keeps no
/// session and no ladder of their own.
pub fn set_password(
    conn: &Connection,
    user: &UserId,
    password_hash: &str,
    deactivated_at: Option<i64>,
) -> Result<(), StoreError> {
    let changed = conn.execute(
        "UPDATE accounts SET password_hash = ?2, deactivated_at = ?3 WHERE user_id = ?1",
        params![user.as_str(), password_hash, deactivated_at],
    )?;
    if changed == 0 {
        return Err(StoreError::NoSuchAccount(user.clone()));
    }
    conn.execute("DELETE FROM devices WHERE user_id = ?1", [user.as_str()])?;
    revoke_tokens_of(conn, user)
}

/// The chat of exactly `wanted`, made by `caller`: created with `new_id`, or the one that
/// exists, which brings the caller back if they left it. Refused when the caller and another
/// member blocked one another.
pub fn create_chat(
    conn: &Connection,
    caller: &UserId,
    wanted: &Members,
    new_id: ChatId,
    now: i64,
) -> Result<(ChatId, Membership), StoreError> {
    for user in wanted.as_slice() {
        let deactivated: Option<bool> = conn
            .query_row(
                "SELECT deactivated_at IS NOT NULL FROM accounts WHERE user_id = ?1",
                [user.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        match deactivated {
            None => return Err(StoreError::NoSuchAccount(user.clone())),
            Some(true) => return Err(StoreError::AccountDeactivated(user.clone())),
            Some(false) => {}
        }
    }
    check_blocks(conn, caller, wanted)?;
    let member_key = member_key(wanted);
    let inserted = conn.execute(
        "INSERT INTO chats (public_id, member_key, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (member_key) DO NOTHING",
        params![new_id.as_str(), member_key, now],
    )?;
    if inserted == 1 {
        let chat = conn.last_insert_rowid();
        let mut add =
            conn.prepare_cached("INSERT INTO chat_members (chat, user_id) VALUES (?1, ?2)")?;
        for user in wanted.as_slice() {
            add.execute(params![chat, user.as_str()])?;
        }
        let membership = Membership {
            members: wanted.as_slice().to_vec(),
            version: 0,
        };
        return Ok((new_id, membership));
    }
    let (chat, existing): (i64, String) = conn.query_row(
        "SELECT id, public_id FROM chats WHERE member_key = ?1",
        [member_key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    // The caller's own New undoes their own leaving, and nobody else's.
    let returned = conn
        .prepare_cached("DELETE FROM chat_departures WHERE chat = ?1 AND user_id = ?2")?
        .execute(params![chat, caller.as_str()])?;
    if returned == 1 {
        conn.prepare_cached("INSERT INTO chat_members (chat, user_id) VALUES (?1, ?2)")?
            .execute(params![chat, caller.as_str()])?;
    }
    Ok((
        stored_chat(&existing)?,
        membership(conn, chat, returned == 1)?,
    ))
}

/// `chat`'s members now, sorted, and its members' version, which `changed` bumps first.
fn membership(conn: &Connection, chat: i64, changed: bool) -> Result<Membership, StoreError> {
    if changed {
        conn.prepare_cached(
            "UPDATE chats SET members_version = members_version + 1 WHERE id = ?1",
        )?
        .execute([chat])?;
    }
    let version: i64 = conn
        .prepare_cached("SELECT members_version FROM chats WHERE id = ?1")?
        .query_row([chat], |row| row.get(0))?;
    let mut members = members_of(conn, chat)?.to_vec();
    members.sort();
    Ok(Membership {
        members,
        version: u64::try_from(version).unwrap_or(0),
    })
}

/// Refuses a chat of `caller` with anyone they blocked or who blocked them.
fn check_blocks(conn: &Connection, caller: &UserId, wanted: &Members) -> Result<(), StoreError> {
    let mut either = conn.prepare_cached(
        "SELECT blocker FROM blocks
         WHERE (blocker = ?1 AND blocked = ?2) OR (blocker = ?2 AND blocked = ?1)",
    )?;
    for user in wanted.as_slice().iter().filter(|user| *user != caller) {
        let blocker: Option<String> = either
            .query_row([caller.as_str(), user.as_str()], |row| row.get(0))
            .optional()?;
        if let Some(blocker) = blocker {
            return Err(StoreError::Blocked {
                user: user.clone(),
                by_caller: blocker == caller.as_str(),
            });
        }
    }
    Ok(())
}

/// Takes `user` out of `chat` and records the departure, so that only they can come back;
/// returns who is left, with the members' version the departure bumped.
pub fn leave_chat(
    conn: &Connection,
    chat: &ChatId,
    user: &UserId,
    now: i64,
) -> Result<Membership, StoreError> {
    let row = super::reads::member_chat_row(conn, chat, user)?.ok_or(StoreError::ChatNotFound)?;
    conn.prepare_cached("DELETE FROM chat_members WHERE chat = ?1 AND user_id = ?2")?
        .execute(params![row, user.as_str()])?;
    conn.prepare_cached(
        "INSERT INTO chat_departures (chat, user_id, left_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (chat, user_id) DO UPDATE SET left_at = excluded.left_at",
    )?
    .execute(params![row, user.as_str(), now])?;
    membership(conn, row, true)
}

pub fn block(
    conn: &Connection,
    blocker: &UserId,
    blocked: &UserId,
    now: i64,
) -> Result<(), StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM accounts WHERE user_id = ?1")?
        .exists([blocked.as_str()])?;
    if !exists {
        return Err(StoreError::NoSuchAccount(blocked.clone()));
    }
    let already = conn
        .prepare_cached("SELECT 1 FROM blocks WHERE blocker = ?1 AND blocked = ?2")?
        .exists([blocker.as_str(), blocked.as_str()])?;
    if already {
        return Ok(());
    }
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM blocks WHERE blocker = ?1")?
        .query_row([blocker.as_str()], |row| row.get(0))?;
    if count >= BLOCKED_MAX as i64 {
        return Err(StoreError::TooManyBlocked);
    }
    conn.prepare_cached("INSERT INTO blocks (blocker, blocked, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![blocker.as_str(), blocked.as_str(), now])?;
    Ok(())
}

pub fn unblock(conn: &Connection, blocker: &UserId, blocked: &UserId) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2")?
        .execute([blocker.as_str(), blocked.as_str()])?;
    Ok(())
}

/// Inserts the message into the chat whose row id is `chat`, or finds the one stored earlier
/// under the same client id. The bool says whether it is new. Inserting first costs a retry
/// one more statement but spares every new message (nearly all of them) a lookup. A reply's
/// original is checked first, in the same transaction, so it cannot change in between.
pub fn append(
    conn: &Connection,
    chat: i64,
    sender: UserId,
    message: NewMessage,
    now: i64,
) -> Result<(StoredMessage, bool), StoreError> {
    let reply = match message.reply_to {
        None => None,
        Some(original) => match reply_original(conn, chat, original)? {
            Some(preview) => Some(preview),
            // A retry of a reply stored before its original was deleted still gets it back.
            None => {
                return match earlier(conn, chat, &sender, &message)? {
                    Some(stored) => Ok((stored, false)),
                    None => Err(StoreError::ReplyNotFound),
                };
            }
        },
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (chat, sender, client_id, subject, text, sent_at, reply_to)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (chat, sender, client_id) DO NOTHING",
        )?
        .execute(params![
            chat,
            sender.as_str(),
            message.client_id.as_str(),
            message.subject.as_str(),
            message.text.as_str(),
            now,
            message.reply_to.map(id_to_sql),
        ])?;
    if inserted == 1 {
        let id = MessageId(id_from_sql(conn.last_insert_rowid()));
        return Ok((StoredMessage::new(id, sender, message, now, reply), true));
    }
    earlier(conn, chat, &sender, &message)?
        .map(|stored| (stored, false))
        // The insert was skipped because this row exists; not finding it means a damaged file.
        .ok_or_else(|| {
            StoreError::Unavailable("a message conflicts with one that cannot be read".into())
        })
}

/// The message stored earlier under `message`'s client id, as it is now (it may have been
/// edited since), reactions included; `None` if there is none.
fn earlier(
    conn: &Connection,
    chat: i64,
    sender: &UserId,
    message: &NewMessage,
) -> Result<Option<StoredMessage>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m {REPLY_JOIN}
             WHERE m.chat = ?1 AND m.sender = ?2 AND m.client_id = ?3"
        ))?
        .query_row(
            params![chat, sender.as_str(), message.client_id.as_str()],
            MessageRow::read,
        )
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let mut earlier = [row.into_message(message.chat_id.clone())?];
    super::reads::with_reactions(conn, &mut earlier)?;
    let [earlier] = earlier;
    Ok(Some(earlier))
}

/// The preview of `original` if it is an undeleted message of the chat whose row id is
/// `chat`; `None` for anything else, so another chat's message looks like no message.
fn reply_original(
    conn: &Connection,
    chat: i64,
    original: MessageId,
) -> Result<Option<ReplyPreview>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT sender, substr(text, 1, 100) FROM messages
             WHERE id = ?1 AND chat = ?2 AND NOT deleted",
        )?
        .query_row(params![id_to_sql(original), chat], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    row.map(|(sender, text)| {
        Ok(ReplyPreview::of(
            original,
            Some(stored_user(&sender)?),
            Some(&text),
        ))
    })
    .transpose()
}

/// Applies `change` by `user` to a message of the chat whose row id is `chat`, as
/// [`plan`] decides; returns the message after it and, unless it changed nothing, the event
/// to publish. The change takes the next id of the messages' AUTOINCREMENT sequence
/// (`sqlite_sequence`, which SQLite lets programs update and which the next message's id
/// then follows), so changes and messages share one commit order: the writer thread is the
/// only one to assign either.
pub fn change(
    conn: &Connection,
    chat: i64,
    user: &UserId,
    change: &Change,
    now: i64,
) -> Result<(StoredMessage, Option<StoredEvent>), StoreError> {
    let target = change.target();
    let current = message_in_chat(conn, chat, &target.chat_id, target.message_id)?
        .ok_or(StoreError::MessageNotFound)?;
    let Some((write, after)) = plan(&current, user, change, now)? else {
        return Ok((current, None));
    };
    let message = id_to_sql(current.id);
    let id: i64 = conn
        .prepare_cached(
            "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'messages' RETURNING seq",
        )?
        .query_row([], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO message_changes (id, message, chat, kind, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, message, chat, change.kind(), now])?;
    match write {
        MessageUpdate::Edit { content, at } => conn
            .prepare_cached(
                "UPDATE messages SET subject = ?2, text = ?3, edited_at = ?4 WHERE id = ?1",
            )?
            .execute(params![
                message,
                content.subject.as_str(),
                content.text.as_str(),
                at
            ])?,
        MessageUpdate::Erase => {
            conn.prepare_cached("DELETE FROM reactions WHERE message = ?1")?
                .execute([message])?;
            conn.prepare_cached(
                "UPDATE messages SET subject = '', text = '', deleted = 1 WHERE id = ?1",
            )?
            .execute([message])?
        }
        MessageUpdate::AddReaction(emoji) => conn
            .prepare_cached("INSERT INTO reactions (message, emoji, user_id) VALUES (?1, ?2, ?3)")?
            .execute(params![message, emoji.as_str(), user.as_str()])?,
        MessageUpdate::RemoveReaction(emoji) => conn
            .prepare_cached(
                "DELETE FROM reactions WHERE message = ?1 AND emoji = ?2 AND user_id = ?3",
            )?
            .execute(params![message, emoji.as_str(), user.as_str()])?,
    };
    let event = StoredEvent {
        id: MessageId(id_from_sql(id)),
        message: after.clone(),
    };
    Ok((after, Some(event)))
}

/// A chat as the writer needs it for every append.
#[derive(Clone)]
pub struct CachedChat {
    /// The chat's row id.
    pub row: i64,
    pub members: Arc<[UserId]>,
}

/// Chat id → its row id and members, so an append needs no lookup. Members change only by
/// writes of this same thread (Leave, and New bringing someone back), which drop the chat's
/// entry as they apply, so an append never sees members that are no longer true, not even
/// one later in the same batch. The writer clears the cache when a transaction fails, since
/// it may then hold a chat, or members, that were never committed.
#[derive(Default)]
pub struct ChatCache(HashMap<ChatId, CachedChat>);

impl ChatCache {
    /// The chat's row id and members, from the cache or the database; `None` if there is no
    /// such chat.
    pub fn get(
        &mut self,
        conn: &Connection,
        chat_id: &ChatId,
    ) -> Result<Option<CachedChat>, StoreError> {
        if let Some(cached) = self.0.get(chat_id) {
            return Ok(Some(cached.clone()));
        }
        let row: Option<i64> = conn
            .prepare_cached("SELECT id FROM chats WHERE public_id = ?1")?
            .query_row([chat_id.as_str()], |row| row.get(0))
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let chat = CachedChat {
            row,
            members: members_of(conn, row)?,
        };
        if self.0.len() >= CHAT_CACHE_MAX {
            self.0.clear();
        }
        self.0.insert(chat_id.clone(), chat.clone());
        Ok(Some(chat))
    }

    /// Drops `chat`'s entry: its members just changed.
    pub fn forget(&mut self, chat: &ChatId) {
        self.0.remove(chat);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

fn members_of(conn: &Connection, chat: i64) -> Result<Arc<[UserId]>, StoreError> {
    let ids = conn
        .prepare_cached("SELECT user_id FROM chat_members WHERE chat = ?1")?
        .query_map([chat], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    ids.iter().map(|id| stored_user(id)).collect()
}
