//! Between PostgreSQL rows and the store's types: message rows become [`StoredMessage`]s of
//! validated values, and driver and pool errors become [`StoreError::Unavailable`].

use chat_core::emoji::Emoji;
use chat_core::ids::{ChatId, MessageId};
use tokio_postgres::Row;

use crate::store::changes::attach_reactions;
use crate::store::decode::{StoredColumns, id_from_sql, stored, stored_message, stored_user};
use crate::store::{ReplyPreview, StoreError, StoredMessage};

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The driver writes an error the database sent as "db error" alone; what the database
        // said ("relation \"accounts\" does not exist") is what an operator can act on.
        match error.as_db_error() {
            Some(said) => StoreError::Unavailable(format!("the database says: {}", said.message())),
            None => StoreError::Unavailable(described(&error)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(format!("no database connection: {}", described(&error)))
    }
}

/// `error` with its causes: the driver's own text is only the kind of failure ("error
/// performing TLS handshake", "error connecting to server"); the why ("connection refused",
/// a refused certificate) is in its source.
pub fn described(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
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
/// without its reactions (see [`message_with_reactions_at`]).
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

/// Two columns for a message `m` of a query, selected right after its [`MESSAGE_COLUMNS`]:
/// the emoji and the people of its reactions, in the order they were added (element `i` of
/// each is one reaction). So every read of messages is one statement, which on PostgreSQL
/// saves a round trip per read; each is a probe of the reactions' unique index, which finds
/// nothing for most messages, and a sort of what it finds. That costs PostgreSQL more time
/// than executing the separate query did (BENCHMARKS, "The tailer's page in one
/// statement"); what it saves is that query's round trip. (A `LEFT JOIN` that found no
/// message gives two empty arrays.)
pub const REACTION_COLUMNS: &str = "ARRAY(SELECT emoji FROM reactions WHERE message = m.id ORDER BY id), \
     ARRAY(SELECT user_id FROM reactions WHERE message = m.id ORDER BY id)";

/// The same two columns from one probe instead of two, for the reads that run on every
/// message (the tailer's): a lateral join, [`REACTION_JOIN`], gathers both arrays at once.
/// (`array_agg` of no rows is NULL, hence the `coalesce`.)
pub const JOINED_REACTION_COLUMNS: &str = "coalesce(x.emoji, '{}'), coalesce(x.users, '{}')";

/// The join that [`JOINED_REACTION_COLUMNS`] read, for a message `m`.
pub const REACTION_JOIN: &str = "LEFT JOIN LATERAL (SELECT array_agg(emoji ORDER BY id) AS emoji, \
     array_agg(user_id ORDER BY id) AS users FROM reactions WHERE message = m.id) x ON TRUE";

/// How many columns [`MESSAGE_COLUMNS`] and [`REACTION_COLUMNS`] (or
/// [`JOINED_REACTION_COLUMNS`]) select together.
pub const MESSAGE_AND_REACTION_COLUMN_COUNT: usize = MESSAGE_COLUMN_COUNT + 2;

/// The message of `chat_id` with its reactions, held by the [`MESSAGE_COLUMNS`] of `row`
/// starting at `first` and the [`REACTION_COLUMNS`] that follow them.
pub fn message_with_reactions_at(
    row: &Row,
    first: usize,
    chat_id: ChatId,
) -> Result<StoredMessage, StoreError> {
    let mut message = message_at(row, first, chat_id)?;
    let emoji: Vec<&str> = row.try_get(first + MESSAGE_COLUMN_COUNT)?;
    let users: Vec<&str> = row.try_get(first + MESSAGE_COLUMN_COUNT + 1)?;
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
    attach_reactions(std::slice::from_mut(&mut message), reactions);
    Ok(message)
}
