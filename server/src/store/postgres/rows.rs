//! Between PostgreSQL rows and the store's types: message rows become [`StoredMessage`]s of
//! validated values, and driver and pool errors become [`StoreError::Unavailable`].

use chat_core::content::{Subject, Text};
use chat_core::ids::{ChatId, ClientId, MessageId};
use tokio_postgres::Row;

use chat_core::limits::REPLY_PREFIX_CHARS;

use crate::store::decode::{id_from_sql, stored, stored_user};
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
/// of its text; NULL when it is not a reply).
pub const MESSAGE_COLUMNS: &str = "m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, \
     m.reply_to, r.sender, left(r.text, 100)";

// The `left(r.text, 100)` above reads what a preview shows, no more.
const _: () = assert!(REPLY_PREFIX_CHARS == 100);

/// How many columns [`MESSAGE_COLUMNS`] selects.
pub const MESSAGE_COLUMN_COUNT: usize = 9;

/// The join that finds a message's reply original, for [`MESSAGE_COLUMNS`].
pub const REPLY_JOIN: &str = "LEFT JOIN messages r ON r.id = m.reply_to";

/// The message of `chat_id` held by the [`MESSAGE_COLUMNS`] of `row`, starting at `first`.
pub fn message_at(row: &Row, first: usize, chat_id: ChatId) -> Result<StoredMessage, StoreError> {
    let id: i64 = row.try_get(first)?;
    let sender: &str = row.try_get(first + 1)?;
    let client_id: &str = row.try_get(first + 2)?;
    let subject: &str = row.try_get(first + 3)?;
    let text: &str = row.try_get(first + 4)?;
    Ok(StoredMessage {
        id: MessageId(id_from_sql(id)),
        chat_id,
        sender: stored_user(sender)?,
        client_id: stored("client id", ClientId::parse(client_id))?,
        subject: stored("subject", Subject::parse(subject))?,
        text: stored("text", Text::parse(text))?,
        sent_at: row.try_get(first + 5)?,
        reply: match row.try_get::<_, Option<i64>>(first + 6)? {
            None => None,
            Some(original) => Some(ReplyPreview::of(
                MessageId(id_from_sql(original)),
                row.try_get::<_, Option<&str>>(first + 7)?
                    .map(stored_user)
                    .transpose()?,
                row.try_get(first + 8)?,
            )),
        },
    })
}

/// The message held by the first columns of `row`.
pub fn message(row: &Row, chat_id: ChatId) -> Result<StoredMessage, StoreError> {
    message_at(row, 0, chat_id)
}
