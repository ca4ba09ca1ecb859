//! Storage behind one trait, so a second backend (PostgreSQL, for several servers) is a new
//! module, not an edit everywhere. Only the modules under `store` contain SQL.
//!
//! Contract every backend keeps:
//! - message ids increase in commit order across the whole server, and every committed
//!   message is handed to the [`crate::fanout::Broker`] in that same order, after its commit;
//! - appends are idempotent by (chat, sender, client_id), chats by their member set, also
//!   under concurrent calls;
//! - a call returns only after its write is durable.

pub mod sqlite;

use async_trait::async_trait;
use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::proto;
use chat_core::requests::{HistoryQuery, Members, NewMessage};

/// A committed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub sender: UserId,
    pub client_id: String,
    pub subject: String,
    pub text: String,
    pub sent_at: i64,
}

impl StoredMessage {
    pub fn to_proto(&self) -> proto::Message {
        proto::Message {
            id: self.id.to_string(),
            client_id: self.client_id.clone(),
            chat_id: self.chat_id.to_string(),
            user_id: self.sender.to_string(),
            sent_at: self.sent_at,
            subject: self.subject.clone(),
            text: self.text.clone(),
        }
    }
}

/// One chat as List shows it.
#[derive(Debug, Clone)]
pub struct ChatSummary {
    pub chat_id: ChatId,
    pub members: Vec<UserId>,
    pub last_message: Option<StoredMessage>,
    pub created_at: i64,
}

/// One page of a chat's history, oldest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<StoredMessage>,
    pub has_more: bool,
}

/// The SHA-256 of a bearer token: tokens themselves are never stored.
pub type TokenHash = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The chat does not exist, or the user is not one of its members.
    #[error("chat not found")]
    ChatNotFound,
    #[error("no account named {0}")]
    NoSuchAccount(UserId),
    #[error("account {0} exists")]
    AccountExists(UserId),
    /// The database cannot be used right now (I/O error, disk full, read-only file...).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_account(&self, user: &UserId, password_hash: String) -> Result<(), StoreError>;

    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError>;

    async fn save_token(
        &self,
        token: TokenHash,
        user: &UserId,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// The owner of an unexpired, unrevoked token.
    async fn token_owner(&self, token: TokenHash, now: i64) -> Result<Option<UserId>, StoreError>;

    async fn revoke_token(&self, token: TokenHash) -> Result<(), StoreError>;

    /// Returns the chat of exactly these members, creating it with `new_id` if there is none.
    /// Fails with [`StoreError::NoSuchAccount`] naming the first member without an account.
    async fn create_chat(&self, members: &Members, new_id: ChatId) -> Result<ChatId, StoreError>;

    async fn is_member(&self, chat: &ChatId, user: &UserId) -> Result<bool, StoreError>;

    /// Stores a message from `sender` (who must be a member) and publishes it, or returns the
    /// message stored earlier with the same client id, unchanged and not published again.
    async fn append(
        &self,
        sender: &UserId,
        message: NewMessage,
    ) -> Result<StoredMessage, StoreError>;

    /// A page of history for a member of the chat.
    async fn history(&self, user: &UserId, query: &HistoryQuery)
    -> Result<HistoryPage, StoreError>;

    /// Up to `limit` messages with ids greater than `after`, in id order, from one chat or from
    /// every chat `user` belongs to. Streams replay and catch up with this.
    async fn messages_after(
        &self,
        user: &UserId,
        chat: Option<&ChatId>,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// The user's chats, most recently active first.
    async fn chats_of(&self, user: &UserId) -> Result<Vec<ChatSummary>, StoreError>;
}
