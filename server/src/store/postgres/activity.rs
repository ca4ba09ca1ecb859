//! The SQL of read positions, settings and last-seen times on PostgreSQL, and the `NOTIFY`
//! channel that carries events that are not messages between the servers (`PgSignals`).

use std::collections::HashMap;

use async_trait::async_trait;
use chat_core::activity::SettingsChange;
use chat_core::ids::{ChatId, MessageId, UserId};
use deadpool_postgres::{Client, Pool};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::reads::member_chat_row;
use crate::store::decode::{id_from_sql, id_to_sql, stored_user};
use crate::store::{AccountSettings, ChatReading, Contact, ReadMove, SharedSignals, StoreError};

/// The channel of signals, separate from the messages' channel so that the tailer is never
/// woken by them.
pub const SIGNALS_CHANNEL: &str = "chat_signals";

/// Moves `user`'s position in `chat` forward to `up_to` (see `Store::mark_read`). One
/// statement does the move, so marks racing on several servers still only move forward.
pub async fn mark_read(
    client: &Client,
    user: &UserId,
    chat: &ChatId,
    up_to: MessageId,
) -> Result<ReadMove, StoreError> {
    let row = member_chat_row(client, chat, user)
        .await?
        .ok_or(StoreError::ChatNotFound)?;
    let statement = client
        .prepare_cached("SELECT 1 FROM messages WHERE id = $1 AND chat = $2")
        .await?;
    if client
        .query_opt(&statement, &[&id_to_sql(up_to), &row])
        .await?
        .is_none()
    {
        return Err(StoreError::MessageNotInChat(up_to));
    }
    // The WHERE makes an older mark touch no row, so RETURNING gives nothing back.
    let statement = client
        .prepare_cached(
            "INSERT INTO read_positions (chat, user_id, up_to) VALUES ($1, $2, $3)
             ON CONFLICT (chat, user_id) DO UPDATE SET up_to = excluded.up_to
             WHERE excluded.up_to > read_positions.up_to
             RETURNING up_to",
        )
        .await?;
    let moved = client
        .query_opt(&statement, &[&row, &user.as_str(), &id_to_sql(up_to)])
        .await?
        .is_some();
    let statement = client
        .prepare_cached(
            "SELECT r.up_to, coalesce(s.private_receipts, false),
                    array(SELECT user_id FROM chat_members WHERE chat = $1 ORDER BY user_id)
             FROM read_positions r LEFT JOIN account_settings s ON s.user_id = r.user_id
             WHERE r.chat = $1 AND r.user_id = $2",
        )
        .await?;
    let found = client
        .query_one(&statement, &[&row, &user.as_str()])
        .await?;
    let members: Vec<String> = found.try_get(2)?;
    Ok(ReadMove {
        position: MessageId(id_from_sql(found.try_get(0)?)),
        moved,
        members: members
            .iter()
            .map(|id| stored_user(id))
            .collect::<Result<_, _>>()?,
        private: found.try_get(1)?,
    })
}

pub async fn members_of(
    client: &Client,
    chat: &ChatId,
    user: &UserId,
) -> Result<Vec<UserId>, StoreError> {
    let row = member_chat_row(client, chat, user)
        .await?
        .ok_or(StoreError::ChatNotFound)?;
    let statement = client
        .prepare_cached("SELECT user_id FROM chat_members WHERE chat = $1 ORDER BY user_id")
        .await?;
    client
        .query(&statement, &[&row])
        .await?
        .iter()
        .map(|row| stored_user(row.try_get(0)?))
        .collect()
}

/// The members of each of `chats` that `user` is in, in the order of `chats`, in one
/// statement.
pub async fn members_of_chats(
    client: &Client,
    chats: Vec<ChatId>,
    user: &UserId,
) -> Result<Vec<(ChatId, Vec<UserId>)>, StoreError> {
    if chats.is_empty() {
        return Ok(Vec::new());
    }
    let statement = client
        .prepare_cached(
            "SELECT c.public_id, m.user_id FROM chats c
             JOIN chat_members me ON me.chat = c.id AND me.user_id = $2
             JOIN chat_members m ON m.chat = c.id
             WHERE c.public_id = ANY($1)
             ORDER BY c.public_id, m.user_id",
        )
        .await?;
    let ids: Vec<&str> = chats.iter().map(ChatId::as_str).collect();
    let mut by_chat: HashMap<String, Vec<UserId>> = HashMap::new();
    for row in client.query(&statement, &[&ids, &user.as_str()]).await? {
        let chat: String = row.try_get(0)?;
        by_chat
            .entry(chat)
            .or_default()
            .push(stored_user(row.try_get(1)?)?);
    }
    Ok(chats
        .into_iter()
        .filter_map(|chat| {
            let members = by_chat.remove(chat.as_str())?;
            Some((chat, members))
        })
        .collect())
}

pub async fn settings(client: &Client, user: &UserId) -> Result<AccountSettings, StoreError> {
    let statement = client
        .prepare_cached("SELECT private_receipts FROM account_settings WHERE user_id = $1")
        .await?;
    let private: Option<bool> = client
        .query_opt(&statement, &[&user.as_str()])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(AccountSettings {
        private_receipts: private.unwrap_or(false),
    })
}

pub async fn update_settings(
    client: &Client,
    user: &UserId,
    change: SettingsChange,
) -> Result<AccountSettings, StoreError> {
    if let Some(private) = change.private_receipts {
        let statement = client
            .prepare_cached(
                "INSERT INTO account_settings (user_id, private_receipts) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET private_receipts = excluded.private_receipts",
            )
            .await?;
        client
            .execute(&statement, &[&user.as_str(), &private])
            .await?;
    }
    settings(client, user).await
}

/// Online from now on; true when that is a change. One statement, so of several servers
/// racing to say so exactly one sees the change.
pub async fn set_online(client: &Client, user: &UserId) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO presence (user_id, online) VALUES ($1, TRUE)
             ON CONFLICT (user_id) DO UPDATE SET online = TRUE WHERE NOT presence.online",
        )
        .await?;
    Ok(client.execute(&statement, &[&user.as_str()]).await? > 0)
}

/// Offline since `at`; true when that is a change.
pub async fn set_offline(client: &Client, user: &UserId, at: i64) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE presence SET online = FALSE, last_seen = $2 WHERE user_id = $1 AND online",
        )
        .await?;
    Ok(client.execute(&statement, &[&user.as_str(), &at]).await? > 0)
}

/// Everyone who shares a chat with `user`, with their last-seen time and whether any server
/// holds an unexpired stream lease of theirs.
pub async fn contacts(client: &Client, user: &UserId) -> Result<Vec<Contact>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT o.user_id, seen.last_seen,
                    EXISTS (SELECT 1 FROM stream_leases l
                            WHERE l.user_id = o.user_id AND l.expires_at > now())
             FROM (SELECT DISTINCT other.user_id
                   FROM chat_members mine
                   JOIN chat_members other
                     ON other.chat = mine.chat AND other.user_id <> mine.user_id
                   WHERE mine.user_id = $1) o
             LEFT JOIN presence seen ON seen.user_id = o.user_id
             ORDER BY o.user_id",
        )
        .await?;
    client
        .query(&statement, &[&user.as_str()])
        .await?
        .iter()
        .map(|row| {
            Ok(Contact {
                user: stored_user(row.try_get(0)?)?,
                last_seen: row.try_get(1)?,
                leased: row.try_get(2)?,
            })
        })
        .collect()
}

pub async fn leases_of(client: &Client, user: &UserId) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT count(*) FROM stream_leases WHERE user_id = $1 AND expires_at > now()",
        )
        .await?;
    let count: i64 = client
        .query_one(&statement, &[&user.as_str()])
        .await?
        .try_get(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The read state of each of `chats` (row ids) as `user` sees it, in two statements for the
/// whole page.
pub async fn reading(
    client: &Client,
    user: &UserId,
    chats: &[i64],
) -> Result<HashMap<i64, ChatReading>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT c.id, r.up_to,
                    (SELECT count(*) FROM messages m
                     WHERE m.chat = c.id AND m.id > coalesce(r.up_to, 0) AND m.sender <> $2)
             FROM unnest($1::bigint[]) AS c(id)
             LEFT JOIN read_positions r ON r.chat = c.id AND r.user_id = $2",
        )
        .await?;
    let mut readings = HashMap::with_capacity(chats.len());
    for row in client.query(&statement, &[&chats, &user.as_str()]).await? {
        let up_to: Option<i64> = row.try_get(1)?;
        let unread: i64 = row.try_get(2)?;
        readings.insert(
            row.try_get::<_, i64>(0)?,
            ChatReading {
                unread: u64::try_from(unread).unwrap_or(0),
                up_to: up_to.map(|id| MessageId(id_from_sql(id))),
                receipts: Vec::new(),
            },
        );
    }
    let statement = client
        .prepare_cached(
            "SELECT r.chat, r.user_id, r.up_to FROM read_positions r
             JOIN chat_members now ON now.chat = r.chat AND now.user_id = r.user_id
             LEFT JOIN account_settings s ON s.user_id = r.user_id
             WHERE r.chat = ANY($1) AND r.user_id <> $2
               AND NOT coalesce(s.private_receipts, false)
             ORDER BY r.user_id",
        )
        .await?;
    for row in client.query(&statement, &[&chats, &user.as_str()]).await? {
        if let Some(reading) = readings.get_mut(&row.try_get::<_, i64>(0)?) {
            reading.receipts.push((
                stored_user(row.try_get(1)?)?,
                MessageId(id_from_sql(row.try_get(2)?)),
            ));
        }
    }
    Ok(readings)
}

/// Signals between servers as `NOTIFY chat_signals` payloads; the listener (`listener.rs`)
/// hands what it hears on that channel to `heard`.
pub struct PgSignals {
    pool: Pool,
    heard: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl PgSignals {
    pub fn new(pool: Pool, heard: mpsc::UnboundedReceiver<String>) -> Self {
        Self {
            pool,
            heard: Mutex::new(Some(heard)),
        }
    }
}

#[async_trait]
impl SharedSignals for PgSignals {
    async fn send(&self, payload: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(&format!("SELECT pg_notify('{SIGNALS_CHANNEL}', $1)"))
            .await?;
        client.execute(&statement, &[&payload]).await?;
        Ok(())
    }

    fn receive(&self) -> mpsc::UnboundedReceiver<String> {
        // Called once at start-up; a second caller gets a receiver that never yields.
        self.heard
            .lock()
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1)
    }
}
