//! Between SQLite values and the store's types: message rows become [`StoredMessage`]s of
//! validated values, ids cross between `u64` and SQLite's signed integers, and driver errors
//! become [`StoreError::Unavailable`].
//!
//! Values read back were valid when they were written; one that is not (a damaged or
//! hand-edited file) is reported as storage trouble, never a panic.

use chat_core::content::{Subject, Text};
use chat_core::ids::{ChatId, ClientId, MessageId};

use chat_core::limits::REPLY_PREFIX_CHARS;

use crate::store::decode::stored;
pub use crate::store::decode::{id_from_sql, id_to_sql, stored_chat, stored_user};
use crate::store::{ReplyPreview, StoreError, StoredMessage};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// The columns every message query selects, in [`MessageRow`]'s order, from `messages m`
/// joined with [`reply_join`]: the message's own, then its reply's original (id, sender
/// and the beginning of its text, NULL when it is not a reply).
pub fn message_columns() -> String {
    format!(
        "m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, \
         m.reply_to, r.sender, substr(r.text, 1, {REPLY_PREFIX_CHARS})"
    )
}

/// How many columns [`message_columns`] selects.
pub const MESSAGE_COLUMN_COUNT: usize = 9;

/// The join that finds a message's reply original, for [`message_columns`].
pub const REPLY_JOIN: &str = "LEFT JOIN messages r ON r.id = m.reply_to";

/// A message as its row holds it, before its values are checked (see [`message_columns`]).
pub struct MessageRow {
    id: i64,
    sender: String,
    client_id: String,
    subject: String,
    text: String,
    sent_at: i64,
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
            reply_to: row.get(first + 6)?,
            reply_sender: row.get(first + 7)?,
            reply_text: row.get(first + 8)?,
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
