//! Between SQLite values and the store's types: message rows become [`StoredMessage`]s of
//! validated values, ids cross between `u64` and SQLite's signed integers, and driver errors
//! become [`StoreError::Unavailable`].
//!
//! Values read back were valid when they were written; one that is not (a damaged or
//! hand-edited file) is reported as storage trouble, never a panic.

use chat_core::ids::{ChatId, MessageId};

use crate::store::decode::{StoredColumns, stored_message};
pub use crate::store::decode::{id_from_sql, id_to_sql, stored_chat, stored_user};
use crate::store::{StoreError, StoredMessage};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// The columns of a message, in the order [`MessageRow`] reads them, for a query that names
/// the messages table `m`.
pub const MESSAGE_COLUMNS: &str =
    "m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, m.edited_at, m.deleted";

/// A message as its row holds it, before its values are checked. Queries select its columns
/// in the order of [`MESSAGE_COLUMNS`].
pub struct MessageRow {
    id: i64,
    sender: String,
    client_id: String,
    subject: String,
    text: String,
    sent_at: i64,
    edited_at: Option<i64>,
    deleted: bool,
}

impl MessageRow {
    /// Reads the message's eight columns starting at column `first`.
    pub fn read_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(first)?,
            sender: row.get(first + 1)?,
            client_id: row.get(first + 2)?,
            subject: row.get(first + 3)?,
            text: row.get(first + 4)?,
            sent_at: row.get(first + 5)?,
            edited_at: row.get(first + 6)?,
            deleted: row.get(first + 7)?,
        })
    }

    /// Reads the message's columns from a query that selects them first.
    pub fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Self::read_at(row, 0)
    }

    /// The message of `chat_id` this row holds, without its reactions (see
    /// `reads::with_reactions`).
    pub fn into_message(self, chat_id: ChatId) -> Result<StoredMessage, StoreError> {
        stored_message(StoredColumns {
            id: MessageId(id_from_sql(self.id)),
            chat_id,
            sender: &self.sender,
            client_id: &self.client_id,
            subject: &self.subject,
            text: &self.text,
            sent_at: self.sent_at,
            edited_at: self.edited_at,
            deleted: self.deleted,
        })
    }
}
