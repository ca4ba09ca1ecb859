//! The SQL of each read, each on a pooled connection. Reads run in PostgreSQL's default READ
//! COMMITTED isolation: every statement sees what was committed before it began.

use std::collections::HashMap;

use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{HistoryQuery, ListQuery, Members};
use deadpool_postgres::Client;

use super::rows::{MESSAGE_COLUMNS, message, message_at};
use crate::store::decode::{id_to_sql, member_key, stored_chat, stored_user};
use crate::store::{
    ChatPage, ChatSummary, HistoryPage, StoreError, StoredMessage, TokenHash, position_after,
};

pub async fn password_hash(client: &Client, user: &UserId) -> Result<Option<String>, StoreError> {
    let statement = client
        .prepare_cached("SELECT password_hash FROM accounts WHERE user_id = $1")
        .await?;
    let row = client.query_opt(&statement, &[&user.as_str()]).await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The owner of `token`, if it is unexpired at `now` and not revoked.
pub async fn token_owner(
    client: &Client,
    token: &TokenHash,
    now: i64,
) -> Result<Option<UserId>, StoreError> {
    let statement = client
        .prepare_cached("SELECT user_id FROM tokens WHERE token_hash = $1 AND expires_at > $2")
        .await?;
    let row = client
        .query_opt(&statement, &[&token.as_slice(), &now])
        .await?;
    row.map(|row| stored_user(row.try_get(0)?)).transpose()
}

/// The row id of `chat` if `user` is one of its members. A missing chat and a foreign chat
/// look the same from here on.
pub async fn member_chat_row(
    client: &Client,
    chat: &ChatId,
    user: &UserId,
) -> Result<Option<i64>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT c.id FROM chats c JOIN chat_members cm ON cm.chat = c.id
             WHERE c.public_id = $1 AND cm.user_id = $2",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&chat.as_str(), &user.as_str()])
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

async fn chat_row_for(client: &Client, chat: &ChatId, user: &UserId) -> Result<i64, StoreError> {
    member_chat_row(client, chat, user)
        .await?
        .ok_or(StoreError::ChatNotFound)
}

pub async fn history(
    client: &Client,
    user: &UserId,
    query: &HistoryQuery,
) -> Result<HistoryPage, StoreError> {
    let chat = chat_row_for(client, &query.chat_id, user).await?;
    let before = query.before.map_or(i64::MAX, id_to_sql);
    // One row more than asked tells whether older messages remain.
    let statement = client
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.chat = $1 AND m.id < $2 ORDER BY m.id DESC LIMIT $3"
        ))
        .await?;
    let rows = client
        .query(&statement, &[&chat, &before, &(i64::from(query.limit) + 1)])
        .await?;
    let mut messages = rows
        .iter()
        .map(|row| message(row, query.chat_id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = messages.len() > query.limit as usize;
    messages.truncate(query.limit as usize);
    messages.reverse();
    Ok(HistoryPage { messages, has_more })
}

/// Up to `limit` messages after `after`, in id order: of `chat`, or of every chat of `user`.
pub async fn messages_after(
    client: &Client,
    user: &UserId,
    chat: Option<&ChatId>,
    after: MessageId,
    limit: u32,
) -> Result<Vec<StoredMessage>, StoreError> {
    let after = id_to_sql(after);
    let limit = i64::from(limit);
    match chat {
        Some(chat_id) => {
            let chat = chat_row_for(client, chat_id, user).await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m
                     WHERE m.chat = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
                ))
                .await?;
            let rows = client.query(&statement, &[&chat, &after, &limit]).await?;
            rows.iter()
                .map(|row| message(row, chat_id.clone()))
                .collect()
        }
        None => {
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS}, c.public_id
                     FROM messages m JOIN chats c ON c.id = m.chat
                     WHERE m.id > $1
                       AND m.chat IN (SELECT chat FROM chat_members WHERE user_id = $2)
                     ORDER BY m.id LIMIT $3"
                ))
                .await?;
            let rows = client
                .query(&statement, &[&after, &user.as_str(), &limit])
                .await?;
            rows.iter()
                .map(|row| message(row, stored_chat(row.try_get(6)?)?))
                .collect()
        }
    }
}

/// One page of the chats of `user` with their members and last message, in List's order.
/// The page is picked by position (keyset), so the rows after it are never sent.
pub async fn chats_of(
    client: &Client,
    user: &UserId,
    query: &ListQuery,
) -> Result<ChatPage, StoreError> {
    let (activity, last_message, chat_id) = position_after(query.after.as_ref());
    let statement = client
        .prepare_cached(&format!(
            "SELECT c.id, c.public_id, c.created_at, {MESSAGE_COLUMNS}
             FROM chat_members mine
             JOIN chats c ON c.id = mine.chat
             LEFT JOIN messages m ON m.id = (SELECT max(id) FROM messages WHERE chat = c.id)
             WHERE mine.user_id = $1
               AND (coalesce(m.sent_at, c.created_at), coalesce(m.id, 0), c.public_id)
                   < ($2, $3, $4)
             ORDER BY coalesce(m.sent_at, c.created_at) DESC, coalesce(m.id, 0) DESC,
                      c.public_id DESC
             LIMIT $5"
        ))
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &user.as_str(),
                &activity,
                &id_to_sql(MessageId(last_message)),
                &chat_id,
                &i64::from(query.limit + 1),
            ],
        )
        .await?;
    let chats: Vec<i64> = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;

    let statement = client
        .prepare_cached(
            "SELECT chat, user_id FROM chat_members WHERE chat = ANY($1) ORDER BY user_id",
        )
        .await?;
    let mut members: HashMap<i64, Vec<UserId>> = HashMap::new();
    for row in client.query(&statement, &[&chats]).await? {
        members
            .entry(row.try_get(0)?)
            .or_default()
            .push(stored_user(row.try_get(1)?)?);
    }

    let mut readings = super::activity::reading(client, user, &chats).await?;

    let chats = rows
        .iter()
        .map(|row| {
            let chat_id = stored_chat(row.try_get(1)?)?;
            // A chat without messages has NULL in every message column.
            let last_message = match row.try_get::<_, Option<i64>>(3)? {
                None => None,
                Some(_) => Some(message_at(row, 3, chat_id.clone())?),
            };
            let chat: i64 = row.try_get(0)?;
            Ok(ChatSummary {
                members: members.remove(&chat).unwrap_or_default(),
                chat_id,
                last_message,
                created_at: row.try_get(2)?,
                reading: readings.remove(&chat).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(ChatPage::from_rows(chats, query.limit))
}

/// The first of `members` already in `cap` chats, unless the chat of exactly these members
/// exists (New returns that one whatever the quota). Counting stops at `cap`, so a check
/// costs at most `cap` index entries per member.
pub async fn member_at_chat_cap(
    client: &Client,
    members: &Members,
    cap: u32,
) -> Result<Option<UserId>, StoreError> {
    let member_key = member_key(members);
    let exists = client
        .prepare_cached("SELECT 1 FROM chats WHERE member_key = $1")
        .await?;
    if client.query_opt(&exists, &[&member_key]).await?.is_some() {
        return Ok(None);
    }
    let count = client
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM chat_members WHERE user_id = $1 LIMIT $2) AS c",
        )
        .await?;
    let cap = i64::from(cap);
    for member in members.as_slice() {
        let row = client.query_one(&count, &[&member.as_str(), &cap]).await?;
        let chats: i64 = row.try_get(0)?;
        if chats >= cap {
            return Ok(Some(member.clone()));
        }
    }
    Ok(None)
}
