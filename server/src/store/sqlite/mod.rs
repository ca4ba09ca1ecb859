//! The embedded SQLite backend: one file in WAL mode, one writer thread that commits
//! concurrent writes together (group commit) and publishes what it committed, and a small
//! pool of reader connections.
//!
//! - `schema`: the tables, connection settings and schema version check.
//! - `writer`: the group-commit writer thread; `writes`: the SQL of each write.
//! - `readers`: the reader pool; `reads`: the SQL of each read.
//! - `activity`: read positions, settings and last-seen times, written and read.
//! - `rows`: rows to validated records, ids to and from SQLite integers, driver errors.
//! - `backup`: `chat-server backup`, a consistent copy taken while the server writes.
//! - `lock`: the data directory's lock, so that one process at a time writes it.

mod activity;
pub mod backup;
pub mod lock;
mod readers;
mod reads;
mod rows;
mod schema;
mod writer;
mod writes;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chat_core::activity::SettingsChange;
use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{HistoryQuery, ListQuery, Members, NewMessage};
use chat_core::search::SearchQuery;
use tokio::sync::{mpsc, oneshot};

pub(crate) use self::schema::open_source;

use self::readers::ReaderPool;
use self::writer::{WriteRequest, Writer};
use super::{
    AccountSettings, Change, ChatPage, Contact, HistoryPage, Membership, ReadMove, SearchPage,
    Store, StoreError, StoredEvent, StoredMessage, TokenHash,
};
use crate::fanout::Broker;
use crate::metrics::Metrics;
use crate::store::token_cache::TokenCache;
use chat_transport::unix_now;

/// The SQLite [`Store`].
pub struct SqliteStore {
    writes: mpsc::Sender<WriteRequest>,
    readers: Arc<ReaderPool>,
    tokens: TokenCache,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, tells `broker` the newest message
    /// stored, and starts the writer thread, which publishes every message it commits to
    /// `broker` and times its commits in `metrics`.
    pub fn open(
        path: &Path,
        broker: Arc<Broker>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let conn = schema::open_writer(path)?;
        broker.start_after(schema::newest_event(&conn)?);
        // A file the server cannot write yet (a full disk) still serves reads: presence
        // then starts from what was stored.
        if let Err(error) = activity::everyone_offline(&conn, unix_now()) {
            tracing::warn!(%error, "cannot reset presence at start-up");
        }
        Ok(Self {
            writes: Writer::start(conn, broker, metrics)?,
            readers: ReaderPool::new(path.to_owned()),
            tokens: TokenCache::local(),
        })
    }

    /// Queues a write for the writer thread and waits until it is committed (or refused).
    async fn write<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteRequest,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("writer thread stopped".into());
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(request(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        if self.writes.is_closed() {
            return Err(StoreError::Unavailable("writer thread stopped".into()));
        }
        self.readers
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn create_account(&self, user: &UserId, password_hash: String) -> Result<(), StoreError> {
        let user = user.clone();
        self.write(|reply| WriteRequest::CreateAccount {
            user,
            password_hash,
            reply,
        })
        .await
    }

    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError> {
        let user = user.clone();
        self.readers
            .read(move |conn| reads::password_hash(conn, &user))
            .await
    }

    async fn save_token(
        &self,
        token: TokenHash,
        user: &UserId,
        expires_at: i64,
        device: Option<TokenHash>,
    ) -> Result<(), StoreError> {
        let owner = user.clone();
        self.write(|reply| WriteRequest::SaveToken {
            token,
            user: owner,
            expires_at,
            device,
            reply,
        })
        .await?;
        // A token is only handed out after this returns, so nobody can have revoked it yet.
        let revocations = self.tokens.revocations();
        self.tokens
            .remember(token, user, expires_at, unix_now(), revocations);
        Ok(())
    }

    async fn token_owner(&self, token: TokenHash, now: i64) -> Result<Option<UserId>, StoreError> {
        if let Some(owner) = self.tokens.owner(&token, now) {
            return Ok(Some(owner));
        }
        let revocations = self.tokens.revocations();
        let found = self
            .readers
            .read(move |conn| reads::token_owner(conn, &token, now))
            .await?;
        Ok(found.map(|(owner, expires_at)| {
            self.tokens
                .remember(token, &owner, expires_at, now, revocations);
            owner
        }))
    }

    async fn device_owner(&self, device: TokenHash) -> Result<Option<UserId>, StoreError> {
        self.readers
            .read(move |conn| reads::device_owner(conn, &device))
            .await
    }

    async fn revoke_token(&self, token: TokenHash) -> Result<(), StoreError> {
        self.write(|reply| WriteRequest::RevokeToken { token, reply })
            .await?;
        // Only after the commit: a lookup that starts now reads the revocation from disk.
        self.tokens.forget(&token);
        Ok(())
    }

    async fn revoke_tokens_of(&self, user: &UserId) -> Result<(), StoreError> {
        let owner = user.clone();
        self.write(|reply| WriteRequest::RevokeTokensOf { user: owner, reply })
            .await?;
        self.tokens.forget_user(user);
        Ok(())
    }

    async fn set_password(
        &self,
        user: &UserId,
        password_hash: String,
        deactivated_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let owner = user.clone();
        self.write(|reply| WriteRequest::SetPassword {
            user: owner,
            password_hash,
            deactivated_at,
            reply,
        })
        .await?;
        self.tokens.forget_user(user);
        Ok(())
    }

    async fn create_chat(
        &self,
        caller: &UserId,
        members: &Members,
        new_id: ChatId,
    ) -> Result<(ChatId, Membership), StoreError> {
        let (caller, members) = (caller.clone(), members.clone());
        self.write(|reply| WriteRequest::CreateChat {
            caller,
            members,
            new_id,
            reply,
        })
        .await
    }

    async fn leave_chat(&self, chat: &ChatId, user: &UserId) -> Result<Membership, StoreError> {
        let (chat, user) = (chat.clone(), user.clone());
        self.write(|reply| WriteRequest::LeaveChat { chat, user, reply })
            .await
    }

    async fn block(&self, blocker: &UserId, blocked: &UserId) -> Result<(), StoreError> {
        let (blocker, blocked) = (blocker.clone(), blocked.clone());
        self.write(|reply| WriteRequest::Block {
            blocker,
            blocked,
            reply,
        })
        .await
    }

    async fn unblock(&self, blocker: &UserId, blocked: &UserId) -> Result<(), StoreError> {
        let (blocker, blocked) = (blocker.clone(), blocked.clone());
        self.write(|reply| WriteRequest::Unblock {
            blocker,
            blocked,
            reply,
        })
        .await
    }

    async fn blocked_by(&self, blocker: &UserId) -> Result<Vec<UserId>, StoreError> {
        let blocker = blocker.clone();
        self.readers
            .read(move |conn| reads::blocked_by(conn, &blocker))
            .await
    }

    async fn member_at_chat_cap(
        &self,
        caller: &UserId,
        members: &Members,
        cap: u32,
    ) -> Result<Option<UserId>, StoreError> {
        let (caller, members) = (caller.clone(), members.clone());
        self.readers
            .read(move |conn| reads::member_at_chat_cap(conn, &caller, &members, cap))
            .await
    }

    async fn is_member(&self, chat: &ChatId, user: &UserId) -> Result<bool, StoreError> {
        let (chat, user) = (chat.clone(), user.clone());
        self.readers
            .read(move |conn| Ok(reads::member_chat_row(conn, &chat, &user)?.is_some()))
            .await
    }

    async fn append(
        &self,
        sender: UserId,
        message: NewMessage,
    ) -> Result<StoredMessage, StoreError> {
        self.write(|reply| WriteRequest::Append {
            sender,
            message,
            reply,
        })
        .await
    }

    async fn history(
        &self,
        user: &UserId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let (user, query) = (user.clone(), query.clone());
        self.readers
            .read(move |conn| reads::history(conn, &user, &query))
            .await
    }

    async fn change(&self, user: &UserId, change: Change) -> Result<StoredMessage, StoreError> {
        let user = user.clone();
        self.write(|reply| WriteRequest::Change {
            user,
            change,
            reply,
        })
        .await
    }

    async fn events_after(
        &self,
        user: &UserId,
        chat: Option<&ChatId>,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (user, chat) = (user.clone(), chat.cloned());
        self.readers
            .read(move |conn| reads::events_after(conn, &user, chat.as_ref(), after, limit))
            .await
    }

    async fn chats_of(&self, user: &UserId, query: &ListQuery) -> Result<ChatPage, StoreError> {
        let (user, query) = (user.clone(), query.clone());
        self.readers
            .read(move |conn| reads::chats_of(conn, &user, &query))
            .await
    }

    async fn search(&self, user: &UserId, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        let (user, query) = (user.clone(), query.clone());
        self.readers
            .read(move |conn| reads::search(conn, &user, &query))
            .await
    }

    async fn mark_read(
        &self,
        user: &UserId,
        chat: &ChatId,
        up_to: MessageId,
    ) -> Result<ReadMove, StoreError> {
        let (user, chat) = (user.clone(), chat.clone());
        self.write(|reply| WriteRequest::MarkRead {
            user,
            chat,
            up_to,
            reply,
        })
        .await
    }

    async fn members_of(&self, chat: &ChatId, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let (chat, user) = (chat.clone(), user.clone());
        self.readers
            .read(move |conn| activity::members_of(conn, &chat, &user))
            .await
    }

    async fn members_of_chats(
        &self,
        chats: Vec<ChatId>,
        user: &UserId,
    ) -> Result<Vec<(ChatId, Vec<UserId>)>, StoreError> {
        let user = user.clone();
        self.readers
            .read(move |conn| activity::members_of_chats(conn, chats, &user))
            .await
    }

    async fn settings(&self, user: &UserId) -> Result<AccountSettings, StoreError> {
        let user = user.clone();
        self.readers
            .read(move |conn| activity::settings(conn, &user))
            .await
    }

    async fn update_settings(
        &self,
        user: &UserId,
        change: SettingsChange,
    ) -> Result<AccountSettings, StoreError> {
        let user = user.clone();
        self.write(|reply| WriteRequest::UpdateSettings {
            user,
            change,
            reply,
        })
        .await
    }

    async fn contacts(&self, user: &UserId) -> Result<Vec<Contact>, StoreError> {
        let user = user.clone();
        self.readers
            .read(move |conn| activity::contacts(conn, &user))
            .await
    }

    async fn set_online(&self, user: &UserId) -> Result<bool, StoreError> {
        let user = user.clone();
        self.write(|reply| WriteRequest::SetPresence {
            user,
            offline_since: None,
            reply,
        })
        .await
    }

    async fn set_offline(&self, user: &UserId, at: i64) -> Result<bool, StoreError> {
        let user = user.clone();
        self.write(|reply| WriteRequest::SetPresence {
            user,
            offline_since: Some(at),
            reply,
        })
        .await
    }
}
