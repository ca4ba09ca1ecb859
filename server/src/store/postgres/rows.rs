//! Between PostgreSQL rows and the store's types: message rows become [`StoredMessage`]s of
//! validated values, and driver and pool errors become [`StoreError::Unavailable`].

use chat_core::emoji::Emoji;
use chat_core::ids::{ChatId, MessageId};
use deadpool_postgres::{Client, Transaction};
use tokio_postgres::Row;

use crate::store::changes::attach_reactions;
use crate::store::decode::{
    StoredColumns, id_from_sql, id_to_sql, stored, stored_message, stored_user,
};
use crate::store::{ReplyPreview, StoreError, StoredMessage};

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(format!("no database connection: {error}"))
    }
}

/// The columns every message query selects, in this order, from `messages m` joined with
/// [`REPLY_JOIN`]: the message's own, then its reply's original (id, sender and the beginning
/// of its text; NULL when it is not a reply). The writer's `chat_append` (migration 13)
/// returns a message stored earlier in the same columns, from its fifth on.
pub const MESSAGE_COLUMNS: &str = "m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, \
     m.edited_at, m.deleted, m.reply_to, r.sender, left(r.text, 100)";

// The `left(r.text, 100)` above reads what a preview shows, no more.
const _: () = assert!(chat_core::limits::REPLY_PREFIX_CHARS == 100);

/// How many columns [`MESSAGE_COLUMNS`] selects.
pub const MESSAGE_COLUMN_COUNT: usize = 11;

/// The join that finds a message's reply original, for [`MESSAGE_COLUMNS`].
pub const REPLY_JOIN: &str = "LEFT JOIN messages r ON r.id = m.reply_to";

/// The message of `chat_id` held by the [`MESSAGE_COLUMNS`] of `row`, starting at `first`,
/// without its reactions (see [`with_reactions`]).
pub fn message_at(row: &Row, first: usize, chat_id: ChatId) -> Result<StoredMessage, StoreError> {
    let id: i64 = row.try_get(first)?;
    stored_message(StoredColumns {
        id: MessageId(id_from_sql(id)),
        chat_id,
        sender: row.try_get(first + 1)?,
        client_id: row.try_get(first + 2)?,
        subject: row.try_get(first + 3)?,
        text: row.try_get(first + 4)?,
        sent_at: row.try_get(first + 5)?,
        edited_at: row.try_get(first + 6)?,
        deleted: row.try_get(first + 7)?,
        reply: match row.try_get::<_, Option<i64>>(first + 8)? {
            None => None,
            Some(original) => Some(ReplyPreview::of(
                MessageId(id_from_sql(original)),
                row.try_get::<_, Option<&str>>(first + 9)?
                    .map(stored_user)
                    .transpose()?,
                row.try_get(first + 10)?,
            )),
        },
    })
}

/// Two columns for a message `m` of a query: the emoji and the people of its reactions, in
/// the order they were added (element `i` of each is one reaction). Reads of events select
/// them with the message, so a page of events is one statement (`reactions_at`); each is a
/// probe of the reactions' unique index, which finds nothing for most messages.
pub const REACTION_COLUMNS: &str = "ARRAY(SELECT emoji FROM reactions WHERE message = m.id ORDER BY id), \
     ARRAY(SELECT user_id FROM reactions WHERE message = m.id ORDER BY id)";

/// How many columns [`REACTION_COLUMNS`] selects.
pub const REACTION_COLUMN_COUNT: usize = 2;

/// Puts the reactions held by the [`REACTION_COLUMNS`] of `row`, starting at `first`, onto
/// `message`.
pub fn reactions_at(
    row: &Row,
    first: usize,
    message: &mut StoredMessage,
) -> Result<(), StoreError> {
    let emoji: Vec<&str> = row.try_get(first)?;
    let users: Vec<&str> = row.try_get(first + 1)?;
    if emoji.len() != users.len() {
        return Err(StoreError::Unavailable(
            "a message's reactions came back uneven".into(),
        ));
    }
    let mut reactions = Vec::with_capacity(emoji.len());
    for (emoji, user) in emoji.into_iter().zip(users) {
        reactions.push((
            message.id,
            stored("emoji", Emoji::parse(emoji))?,
            stored_user(user)?,
        ));
    }
    attach_reactions(std::slice::from_mut(message), reactions);
    Ok(())
}

/// The reactions of the messages whose ids are `$1`, in the order they were added.
const REACTIONS: &str =
    "SELECT message, emoji, user_id FROM reactions WHERE message = ANY($1) ORDER BY id";

/// The distinct ids of `messages` (a page of events may hold one message several times).
fn ids_of(messages: &[StoredMessage]) -> Vec<i64> {
    let mut ids: Vec<i64> = messages
        .iter()
        .map(|message| id_to_sql(message.id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Reads the reactions of `messages` onto them, in one query.
pub async fn with_reactions(
    client: &Client,
    messages: &mut [StoredMessage],
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let statement = client.prepare_cached(REACTIONS).await?;
    let rows = client.query(&statement, &[&ids_of(messages)]).await?;
    attach(messages, rows)
}

/// [`with_reactions`] inside a transaction.
pub async fn with_reactions_in(
    tx: &Transaction<'_>,
    messages: &mut [StoredMessage],
) -> Result<(), StoreError> {
    let statement = tx.prepare_cached(REACTIONS).await?;
    let rows = tx.query(&statement, &[&ids_of(messages)]).await?;
    attach(messages, rows)
}

fn attach(messages: &mut [StoredMessage], found: Vec<Row>) -> Result<(), StoreError> {
    let mut rows = Vec::with_capacity(found.len());
    for row in found {
        let message: i64 = row.try_get(0)?;
        rows.push((
            MessageId(id_from_sql(message)),
            stored("emoji", Emoji::parse(row.try_get(1)?))?,
            stored_user(row.try_get(2)?)?,
        ));
    }
    attach_reactions(messages, rows);
    Ok(())
}

/// The message held by the first columns of `row`.
pub fn message(row: &Row, chat_id: ChatId) -> Result<StoredMessage, StoreError> {
    message_at(row, 0, chat_id)
}
