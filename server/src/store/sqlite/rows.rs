//! Between SQLite values and the store's types: message rows become [`StoredMessage`]s of
//! validated values, ids cross between `u64` and SQLite's signed integers, and driver errors
//! become [`StoreError::Unavailable`].
//!
//! Values read back were valid when they were written; one that is not (a damaged or
//! hand-edited file) is reported as storage trouble, never a panic.

use chat_core::ids::{ChatId, MessageId};

use crate::store::decode::{StoredColumns, stored_message};
pub use crate::store::decode::{id_from_sql, id_to_sql, stored_chat, stored_user};
use crate::store::{ReplyPreview, StoreError, StoredMessage};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// The columns every message query selects, in [`MessageRow`]'s order, from `messages m`
/// joined with [`REPLY_JOIN`]: the message's own, then its reply's original (id, sender and
/// the beginning of its text; NULL when it is not a reply).
pub const MESSAGE_COLUMNS: &str = "m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, \
     m.edited_at, m.deleted, m.reply_to, r.sender, substr(r.text, 1, 100)";

// The `substr(r.text, 1, 100)` above reads what a preview shows, no more.
const _: () = assert!(chat_core::limits::REPLY_PREFIX_CHARS == 100);

/// How many columns [`MESSAGE_COLUMNS`] selects.
pub const MESSAGE_COLUMN_COUNT: usize = 11;

/// The join that finds a message's reply original, for [`MESSAGE_COLUMNS`].
pub const REPLY_JOIN: &str = "LEFT JOIN messages r ON r.id = m.reply_to";

/// A message as its row holds it, before its values are checked (see [`MESSAGE_COLUMNS`]).
pub struct MessageRow {
    id: i64,
    sender: String,
    client_id: String,
    subject: String,
    text: String,
    sent_at: i64,
    edited_at: Option<i64>,
    deleted: bool,
    reply_to: Option<i64>,
    reply_sender: Option<String>,
    reply_text: Option<String>,
}

impl MessageRow {
    /// Reads the message's [`MESSAGE_COLUMN_COUNT`] columns starting at column `first`.
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
            reply_to: row.get(first + 8)?,
            reply_sender: row.get(first + 9)?,
            reply_text: row.get(first + 10)?,
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
            reply: match self.reply_to {
                None => None,
                Some(original) => Some(ReplyPreview::of(
                    MessageId(id_from_sql(original)),
                    self.reply_sender.as_deref().map(stored_user).transpose()?,
                    self.reply_text.as_deref(),
                )),
            },
        })
    }
}
