//! The records of read state, settings and presence that the store keeps, for both backends,
//! and the trait of the channel that carries events that are not messages between servers.

use async_trait::async_trait;
use chat_core::ids::{MessageId, UserId};
use chat_core::proto;

use super::StoreError;

/// One chat's read state as one member sees it in List.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatReading {
    /// Messages from the other members after the member's position.
    pub unread: u64,
    /// The member's position; `None` while nothing is read.
    pub up_to: Option<MessageId>,
    /// The other members' positions, sorted by user, without those who keep theirs private.
    pub receipts: Vec<(UserId, MessageId)>,
}

impl ChatReading {
    /// The receipts as List sends them.
    pub fn receipts_to_proto(&self, chat_id: &str) -> Vec<proto::ReadPosition> {
        self.receipts
            .iter()
            .map(|(user, up_to)| proto::ReadPosition {
                chat_id: chat_id.to_owned(),
                user_id: user.to_string(),
                up_to_id: up_to.to_string(),
            })
            .collect()
    }
}

/// The outcome of a read mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMove {
    /// The position after the mark: the greater of the old one and the one asked for.
    pub position: MessageId,
    /// False when the mark was at or below the old position (nothing changed).
    pub moved: bool,
    /// The chat's members, the marker included.
    pub members: Vec<UserId>,
    /// The marker keeps receipts private: only their own devices hear of the move.
    pub private: bool,
}

/// Per-account settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountSettings {
    pub private_receipts: bool,
}

impl AccountSettings {
    pub fn to_proto(self) -> proto::Settings {
        proto::Settings {
            private_receipts: Some(self.private_receipts),
        }
    }
}

/// Someone who shares a chat with a user, as presence needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub user: UserId,
    /// When their last stream closed (unix seconds); `None`: never seen.
    pub last_seen: Option<i64>,
    /// A shared backend holds a stream lease of theirs (some server has a stream of theirs
    /// open); always false on a backend only one server uses.
    pub leased: bool,
}

/// A channel every server sharing the database listens on (PostgreSQL's `NOTIFY`): what one
/// server sends, every server (itself included) hands to its broker. Payloads are short text
/// (see `signals.rs` for their format); delivery is best effort, like the events it carries.
#[async_trait]
pub trait SharedSignals: Send + Sync + 'static {
    async fn send(&self, payload: &str) -> Result<(), StoreError>;

    /// Payloads received from any server, this one included, for as long as the store lives.
    /// Called once, by the server at start-up.
    fn receive(&self) -> tokio::sync::mpsc::UnboundedReceiver<String>;
}
