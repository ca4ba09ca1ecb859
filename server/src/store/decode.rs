//! Values read back from any backend become validated types here. They were valid when they
//! were written; one that is not (a damaged or hand-edited database) is reported as storage
//! trouble, never a panic.

use chat_core::ValidationError;
use chat_core::content::{Subject, Text};
use chat_core::ids::{ChatId, ClientId, MessageId, UserId};
use chat_core::requests::Members;

use super::{Content, ReplyPreview, StoreError, StoredMessage};

/// A message's columns as either backend reads them.
pub struct StoredColumns<'a> {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub sender: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub sent_at: i64,
    pub edited_at: Option<i64>,
    pub deleted: bool,
    pub reply: Option<ReplyPreview>,
}

/// The message a row holds, without reactions (each backend reads those separately). A
/// deleted message's subject and text are '' in storage and no content here.
pub fn stored_message(columns: StoredColumns<'_>) -> Result<StoredMessage, StoreError> {
    let content = if columns.deleted {
        None
    } else {
        Some(Content {
            subject: stored("subject", Subject::parse(columns.subject))?,
            text: stored("text", Text::parse(columns.text))?,
        })
    };
    Ok(StoredMessage {
        id: columns.id,
        chat_id: columns.chat_id,
        sender: stored_user(columns.sender)?,
        client_id: stored("client id", ClientId::parse(columns.client_id))?,
        content,
        sent_at: columns.sent_at,
        edited_at: columns.edited_at,
        reactions: Vec::new(),
        reply: columns.reply,
    })
}

pub fn stored_user(id: &str) -> Result<UserId, StoreError> {
    stored("user id", UserId::parse(id))
}

pub fn stored_chat(id: &str) -> Result<ChatId, StoreError> {
    stored("chat id", ChatId::parse(id))
}

pub fn stored<T>(what: &str, parsed: Result<T, ValidationError>) -> Result<T, StoreError> {
    parsed.map_err(|error| StoreError::Unavailable(format!("bad {what} in database: {error}")))
}

/// Database integers are signed; message ids stay far below 2^63, and any larger client
/// cursor simply means "after everything".
pub fn id_to_sql(id: chat_core::ids::MessageId) -> i64 {
    i64::try_from(id.0).unwrap_or(i64::MAX)
}

pub fn id_from_sql(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

/// The column that makes a chat unique by its member set, in both backends: the member ids,
/// sorted as `Members` keeps them, joined by spaces (ids never contain one). Its `UNIQUE`
/// constraint is what keeps New idempotent, also across servers.
pub fn member_key(members: &Members) -> String {
    members
        .as_slice()
        .iter()
        .map(UserId::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who of the members a chat was created with (its `member_key`) has left it since (Leave, a
/// deactivated account), in the key's order: what names a chat after everyone else
/// has left. `members` are the chat's members now.
pub fn left_members(member_key: &str, members: &[UserId]) -> Result<Vec<UserId>, StoreError> {
    member_key
        .split(' ')
        .filter(|id| members.iter().all(|member| member.as_str() != *id))
        .map(stored_user)
        .collect()
}
