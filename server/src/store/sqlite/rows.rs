//! Between SQLite values and the store's types: message rows become [`StoredMessage`]s of
//! validated values, ids cross between `u64` and SQLite's signed integers, and driver errors
//! become [`StoreError::Unavailable`].
//!
//! Values read back were valid when they were written; one that is not (a damaged or
//! hand-edited file) is reported as storage trouble, never a panic.

use chat_core::content::{Subject, Text};
use chat_core::ids::{ChatId, ClientId, MessageId};

use crate::store::decode::stored;
pub use crate::store::decode::{id_from_sql, id_to_sql, stored_chat, stored_user};
use crate::store::{StoreError, StoredMessage};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// A message as its row holds it, before its values are checked. Queries select its columns
/// in this order: `id, sender, client_id, subject, text, sent_at`.
pub struct MessageRow {
    id: i64,
    sender: String,
    client_id: String,
    subject: String,
    text: String,
    sent_at: i64,
}

impl MessageRow {
    /// Reads the message's six columns starting at column `first`.
    pub fn read_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(first)?,
            sender: row.get(first + 1)?,
            client_id: row.get(first + 2)?,
            subject: row.get(first + 3)?,
            text: row.get(first + 4)?,
            sent_at: row.get(first + 5)?,
        })
    }

    /// Reads the message's columns from a query that selects them first.
    pub fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Self::read_at(row, 0)
    }

    /// The message of `chat_id` this row holds.
    pub fn into_message(self, chat_id: ChatId) -> Result<StoredMessage, StoreError> {
        Ok(StoredMessage {
            id: MessageId(id_from_sql(self.id)),
            chat_id,
            sender: stored_user(&self.sender)?,
            client_id: stored("client id", ClientId::parse(&self.client_id))?,
            subject: stored("subject", Subject::parse(&self.subject))?,
            text: stored("text", Text::parse(&self.text))?,
            sent_at: self.sent_at,
        })
    }
}
