//! Storage behind one trait, so a second backend (PostgreSQL, for several servers) is a sibling
//! module, not an edit everywhere. Only the modules under `store` contain SQL; records leave
//! the store as `chat-core`'s validated types, so nothing above it handles a raw row.
//!
//! The contract every backend keeps is written on [`Store`]; [`open`] is the one place that
//! picks a backend.

mod activity;
pub mod changes;
mod decode;
pub mod migrate;
pub mod postgres;
pub mod roster;
pub mod sqlite;
mod token_cache;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::content::{Subject, Text};
use chat_core::emoji::Emoji;
use chat_core::ids::{ChatId, ClientId, MessageId, UserId};
use chat_core::proto;
use chat_core::requests::{HistoryQuery, ListCursor, ListQuery, Members, NewMessage};
use chat_core::search::SearchQuery;

pub use self::activity::{AccountSettings, ChatReading, Contact, ReadMove, SharedSignals};
pub use self::changes::Change;

use crate::fanout::Broker;
use crate::limits::sign_in;
use crate::metrics::Metrics;

/// A committed message, in its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub sender: UserId,
    pub client_id: ClientId,
    /// `None` once the sender deleted it: subject and text are then gone from storage.
    pub content: Option<Content>,
    /// Unix seconds of the commit.
    pub sent_at: i64,
    /// Unix seconds of the last edit.
    pub edited_at: Option<i64>,
    /// One entry per emoji, in the order each was first used.
    pub reactions: Vec<Reactions>,
    /// The message this one answers, if it is a reply.
    pub reply: Option<ReplyPreview>,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub subject: Subject,
    pub text: Text,
}

/// The reactions of one emoji on a message: who, in the order they reacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions {
    pub emoji: Emoji,
    pub users: Vec<UserId>,
}

/// The quoted original of a reply: as it is now when read from storage (History, replay),
/// as it was when the reply was committed on a live delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPreview {
    pub message_id: MessageId,
    /// `None` only if the original's row is gone, which no write of this server does.
    pub sender: Option<UserId>,
    /// The beginning of its text (`chat_core::content::reply_prefix`); empty once deleted.
    pub text_prefix: String,
    /// A deleted message keeps its row with its text blanked: a stored text is never empty,
    /// so an empty one (or a missing row) is what marks the original deleted.
    pub deleted: bool,
}

impl ReplyPreview {
    /// The preview of the original `message_id` whose row holds `sender` and `text` (both
    /// `None` when there is no such row).
    pub fn of(message_id: MessageId, sender: Option<UserId>, text: Option<&str>) -> Self {
        let text = text.unwrap_or_default();
        Self {
            message_id,
            sender,
            text_prefix: chat_core::content::reply_prefix(text).to_owned(),
            deleted: text.is_empty(),
        }
    }

    fn to_proto(&self) -> proto::ReplyPreview {
        proto::ReplyPreview {
            message_id: self.message_id.to_string(),
            user_id: self
                .sender
                .as_ref()
                .map(|sender| sender.to_string())
                .unwrap_or_default(),
            text_prefix: self.text_prefix.clone(),
            deleted: self.deleted,
        }
    }
}

impl StoredMessage {
    /// A message just stored by Send or Connect; `reply` is the preview of the message it
    /// answers, as it is at this commit.
    pub fn new(
        id: MessageId,
        sender: UserId,
        message: NewMessage,
        sent_at: i64,
        reply: Option<ReplyPreview>,
    ) -> Self {
        Self {
            id,
            chat_id: message.chat_id,
            sender,
            client_id: message.client_id,
            content: Some(Content {
                subject: message.subject,
                text: message.text,
            }),
            sent_at,
            edited_at: None,
            reactions: Vec::new(),
            reply,
        }
    }

    pub fn to_proto(&self) -> proto::Message {
        let (subject, text) = match &self.content {
            Some(content) => (content.subject.as_str(), content.text.as_str()),
            None => ("", ""),
        };
        proto::Message {
            id: self.id.to_string(),
            client_id: self.client_id.as_str().to_owned(),
            chat_id: self.chat_id.to_string(),
            user_id: self.sender.to_string(),
            sent_at: self.sent_at,
            subject: subject.to_owned(),
            text: text.to_owned(),
            edited_at: self.edited_at.unwrap_or(0),
            deleted: self.content.is_none(),
            reactions: self.reactions_proto(),
            reply_to: self.reply.as_ref().map(ReplyPreview::to_proto),
        }
    }

    /// [`Self::to_proto`] for a message nobody needs afterwards (Send's reply): the wire
    /// message takes its strings instead of copies.
    pub fn into_proto(self) -> proto::Message {
        let reactions = self.reactions_proto();
        let reply_to = self.reply.as_ref().map(ReplyPreview::to_proto);
        let deleted = self.content.is_none();
        let (subject, text) = match self.content {
            Some(content) => (content.subject.into_string(), content.text.into_string()),
            None => (String::new(), String::new()),
        };
        proto::Message {
            id: self.id.to_string(),
            client_id: self.client_id.into_string(),
            chat_id: self.chat_id.into_string(),
            user_id: self.sender.into_string(),
            sent_at: self.sent_at,
            subject,
            text,
            edited_at: self.edited_at.unwrap_or(0),
            deleted,
            reactions,
            reply_to,
        }
    }

    fn reactions_proto(&self) -> Vec<proto::Reaction> {
        self.reactions
            .iter()
            .map(|reactions| proto::Reaction {
                emoji: reactions.emoji.as_str().to_owned(),
                user_ids: reactions.users.iter().map(ToString::to_string).collect(),
            })
            .collect()
    }
}

/// One place in the commit order: a message's arrival (`id` is the message's own id), or a
/// change to it (an edit, deletion or reaction, with an id of its own from the same
/// sequence). Either way `message` is the message's state, at least as new as the event, so
/// delivering an event twice, or an older event after a newer state, converges on the same
/// state. Streams deliver events; their cursor is the last event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: MessageId,
    pub message: StoredMessage,
}

impl StoredEvent {
    /// The event of a message's arrival.
    pub fn arrival(message: StoredMessage) -> Self {
        Self {
            id: message.id,
            message,
        }
    }

    /// Whether this is a change to a message that arrived earlier.
    pub fn is_change(&self) -> bool {
        self.id != self.message.id
    }
}

/// One chat as List shows it.
#[derive(Debug, Clone)]
pub struct ChatSummary {
    pub chat_id: ChatId,
    pub members: Vec<UserId>,
    /// Those it was created with who have left it since.
    pub left: Vec<UserId>,
    /// The version of `members` (see [`Membership`]).
    pub members_version: u64,
    pub last_message: Option<StoredMessage>,
    pub created_at: i64,
    /// What the caller has read of it, and the receipts of the others.
    pub reading: ChatReading,
}

impl ChatSummary {
    /// Where this chat stands in List's order, as the cursor of the page that ends with it.
    pub fn cursor(&self) -> ListCursor {
        ListCursor {
            activity: self
                .last_message
                .as_ref()
                .map_or(self.created_at, |message| message.sent_at),
            last_message: self.last_message.as_ref().map_or(0, |message| message.id.0),
            chat_id: self.chat_id.clone(),
        }
    }
}

/// The last messages of a List page, lent out of their summaries so that a backend reads
/// what its List query does not (their reactions) onto all of them at once, as for any page
/// of messages.
pub struct LastMessages {
    /// The summary each message belongs to.
    owners: Vec<usize>,
    pub messages: Vec<StoredMessage>,
}

impl LastMessages {
    pub fn take(chats: &mut [ChatSummary]) -> Self {
        let (owners, messages) = chats
            .iter_mut()
            .enumerate()
            .filter_map(|(at, chat)| chat.last_message.take().map(|message| (at, message)))
            .unzip();
        Self { owners, messages }
    }

    pub fn put_back(self, chats: &mut [ChatSummary]) {
        for (at, message) in self.owners.into_iter().zip(self.messages) {
            chats[at].last_message = Some(message);
        }
    }
}

/// One page of a user's chats, most recently active first.
#[derive(Debug, Clone)]
pub struct ChatPage {
    pub chats: Vec<ChatSummary>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<ListCursor>,
}

impl ChatPage {
    /// The page made of the first `limit` of `chats`, which a backend read with one more than
    /// `limit` rows so that the extra row tells whether a next page exists.
    pub fn from_rows(mut chats: Vec<ChatSummary>, limit: u32) -> Self {
        let has_more = chats.len() > limit as usize;
        chats.truncate(limit as usize);
        let next = if has_more {
            chats.last().map(ChatSummary::cursor)
        } else {
            None
        };
        Self { chats, next }
    }
}

/// The position a page starts after, as `(activity, last message id, chat id)`, for the SQL of
/// both backends: the first page starts after a position before every chat (greater activity
/// than any, and every row compares below it).
fn position_after(cursor: Option<&ListCursor>) -> (i64, u64, String) {
    match cursor {
        Some(cursor) => (
            cursor.activity,
            cursor.last_message,
            cursor.chat_id.to_string(),
        ),
        None => (i64::MAX, u64::MAX, String::new()),
    }
}

/// One page of search results, newest first.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub messages: Vec<StoredMessage>,
    /// Whether older matches exist (the next page starts below the last message's id).
    pub has_more: bool,
}

impl SearchPage {
    /// The page made of the first `limit` of `messages`, read with one more than `limit`.
    pub fn from_rows(mut messages: Vec<StoredMessage>, limit: u32) -> Self {
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Self { messages, has_more }
    }
}

/// One page of a chat's history, oldest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<StoredMessage>,
    pub has_more: bool,
}

/// Who is in a chat, sorted, as the transaction that changed (or read) them saw them, and its
/// members' version then: how many times they had changed (a Leave, a rejoin), which orders
/// news of members that may arrive out of order (`Event.members`, List's `members_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub members: Vec<UserId>,
    pub version: u64,
}

/// The SHA-256 of a bearer token or a device key: neither is ever stored itself.
pub type TokenHash = [u8; 32];

/// Device keys kept per account, the newest ones: a new sign-in past this forgets the device
/// that signed in longest ago (it then shares the account's budget again until its next
/// sign-in), so nobody can grow the table by signing in over and over.
pub const DEVICES_PER_ACCOUNT: i64 = 20;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The chat does not exist, or the user is not one of its members.
    #[error("chat not found")]
    ChatNotFound,
    /// No such message in the chat, or (for Edit and React) it was deleted.
    #[error("message not found")]
    MessageNotFound,
    /// A change only the sender may make (Edit, Delete) asked by someone else.
    #[error("{0}")]
    NotYours(&'static str),
    /// A change the message's state does not allow (edit window, reaction limits).
    #[error("{0}")]
    NotAllowed(String),
    /// The message a reply names is not a message of the reply's chat, or was deleted.
    #[error("the message you reply to is not in this chat")]
    ReplyNotFound,
    #[error("no account named {0}")]
    NoSuchAccount(UserId),
    /// New: a member's account was deactivated (`deactivate-account`).
    #[error("the account {0} is deactivated")]
    AccountDeactivated(UserId),
    #[error("account {0} exists")]
    AccountExists(UserId),
    /// New: `user` blocked the caller, or (`by_caller`) the caller blocked `user`.
    #[error("blocked: {user} (by the caller: {by_caller})")]
    Blocked { user: UserId, by_caller: bool },
    /// Block: the caller already blocked as many accounts as one may.
    #[error("too many blocked accounts")]
    TooManyBlocked,
    /// A read mark named a message that is not in the chat.
    #[error("message {0} is not in this chat")]
    MessageNotInChat(MessageId),
    /// The database cannot be used right now (I/O error, disk full, read-only file, a value
    /// that does not read back valid...). The cause is for the operator's log: `error.rs`
    /// logs it and tells the client only that it may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The SQLite data directory is another process's (see `sqlite::lock`); only opening
    /// the store meets it.
    #[error("{0}")]
    InUse(String),
}

/// Where the data lives, which picks the backend.
#[derive(Debug, Clone)]
pub enum Location {
    /// The embedded SQLite file (the default).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by any number of servers, with the pool size.
    Postgres { url: String, pool_size: usize },
}

/// Keeps other processes from writing the data while the caller serves it or runs an
/// operator's task on it, until the returned value is dropped: on SQLite, the data
/// directory's lock (see `sqlite::lock`); on PostgreSQL nothing, since any number of servers
/// share the database by design. Held by the caller rather than by the store: a server's
/// remaining connection tasks may keep its store alive after `run` returns (harmless in a
/// process that then exits; in the tests' in-process restarts, for as long as the old
/// clients keep their connections).
pub fn claim(location: &Location) -> Result<Option<sqlite::lock::DirectoryLock>, StoreError> {
    match location {
        Location::Sqlite(path) => sqlite::lock::take(path).map(Some),
        Location::Postgres { .. } => Ok(None),
    }
}

/// Opens the store at `location`, publishing to `broker` as the [`Store`] contract requires
/// and timing its commits (and, on PostgreSQL, showing its pool) in `metrics`.
pub async fn open(
    location: &Location,
    broker: Arc<Broker>,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match location {
        Location::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path, broker, metrics)?),
        Location::Postgres { url, pool_size } => {
            Arc::new(postgres::PgStore::open(url, *pool_size, broker, metrics).await?)
        }
    })
}

/// Accounts, tokens, chats and messages. Besides what each method promises, every backend
/// keeps this contract, which live delivery and the clients' cursors stand on:
///
/// - **Commit order.** Message ids, and the ids of changes to messages (edits, deletions,
///   reactions), come from one sequence and increase in commit order across everything the
///   backend stores, so one id is a cursor over every chat: a reader that has seen id `n`
///   committed never later sees an id below `n` commit.
/// - **Publishing.** A backend is opened with the [`Broker`] of the server. Before it serves
///   a call it tells the broker the newest message id already stored
///   ([`Broker::start_after`]); from then on it hands the broker every message it commits
///   ([`Broker::publish`], with the chat's members), and every change as an event, each
///   exactly once, only after its commit, in id order, and before `append` or `change`
///   answers the caller that stored it (so a sender's own streams have the echo no later
///   than the reply). A repeat of a stored message (same client id), or a change that
///   changes nothing, is not published. Nothing else publishes messages.
/// - **Idempotency.** Appends are idempotent by (chat, sender, client id), chats by their
///   member set, changes by the state they ask for, also when the calls race.
/// - **Membership.** Members change (Leave, and a rejoin by New). A message is published to
///   the chat's members as the database holds them when the message commits (a cache of
///   members must stay true across every server's Leave), and an append whose sender is not
///   a member then is refused.
/// - **Durability.** A call returns only once its write is durable; a call that fails has
///   changed nothing.
/// - **Errors.** Anything the backend cannot do right now is [`StoreError::Unavailable`];
///   callers may retry it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the store can serve now: the database answers a query (and, on SQLite, the
    /// writer thread runs). For the server's readiness (`readiness.rs`), never for a call.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_account(&self, user: &UserId, password_hash: String) -> Result<(), StoreError>;

    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError>;

    /// Stores a new session's token and, with it, a new device key of `user` (see
    /// `limits::sign_in`), keeping the newest [`DEVICES_PER_ACCOUNT`].
    async fn save_token(
        &self,
        token: TokenHash,
        user: &UserId,
        expires_at: i64,
        device: Option<TokenHash>,
    ) -> Result<(), StoreError>;

    /// The owner of an unexpired, unrevoked token.
    async fn token_owner(&self, token: TokenHash, now: i64) -> Result<Option<UserId>, StoreError>;

    /// The account a device key was given to, unless that account's password has changed
    /// since or the key is no longer among its newest.
    async fn device_owner(&self, device: TokenHash) -> Result<Option<UserId>, StoreError>;

    async fn revoke_token(&self, token: TokenHash) -> Result<(), StoreError>;

    /// Revokes every token of `user` ("sign out everywhere").
    async fn revoke_tokens_of(&self, user: &UserId) -> Result<(), StoreError>;

    /// Replaces `user`'s password hash and revokes every token and device key of the user,
    /// atomically, and sets when the account was deactivated: `Some(now)` by
    /// `deactivate-account`, `None` (active) by every other change of password, so
    /// `set-password` lets a deactivated person in again.
    async fn set_password(
        &self,
        user: &UserId,
        password_hash: String,
        deactivated_at: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Returns the chat of exactly these members (its member set when it was created), made by
    /// `caller`, creating it with `new_id` if there is none. If the caller left that chat,
    /// brings the caller (and nobody else who left) back into it. Fails with
    /// [`StoreError::NoSuchAccount`] naming the first member without an account,
    /// [`StoreError::AccountDeactivated`] naming the first whose account is deactivated, and with
    /// [`StoreError::Blocked`] when a member blocked the caller or the caller blocked a member.
    /// Returns the chat and who is in it after the call (a rejoin bumps its members'
    /// version; a new chat starts at 0).
    async fn create_chat(
        &self,
        caller: &UserId,
        members: &Members,
        new_id: ChatId,
    ) -> Result<(ChatId, Membership), StoreError>;

    /// Takes `user` out of `chat` and remembers that they left, so that only they can bring
    /// themselves back (see [`Store::create_chat`]). [`StoreError::ChatNotFound`] when `user`
    /// is not a member. From the commit on, no message of the chat is published to `user`.
    /// Returns the members the chat has after it, as the same transaction saw them, with
    /// its members' version, which the leave bumped.
    async fn leave_chat(&self, chat: &ChatId, user: &UserId) -> Result<Membership, StoreError>;

    /// Records that `blocker` blocks `blocked` (an existing account, else
    /// [`StoreError::NoSuchAccount`]); nothing changes when it is already so. At most
    /// [`chat_core::limits::BLOCKED_MAX`] per blocker ([`StoreError::TooManyBlocked`]).
    async fn block(&self, blocker: &UserId, blocked: &UserId) -> Result<(), StoreError>;

    /// Removes `blocker`'s block of `blocked`, if there is one.
    async fn unblock(&self, blocker: &UserId, blocked: &UserId) -> Result<(), StoreError>;

    /// Everyone `blocker` blocked, sorted.
    async fn blocked_by(&self, blocker: &UserId) -> Result<Vec<UserId>, StoreError>;

    /// The first of `members` who already belongs to `cap` chats, unless the chat of exactly
    /// these members exists; when it exists, `caller` if `caller`'s New would bring them back
    /// into it (they left it) while they belong to `cap` chats, so that leaving and coming
    /// back is no way past the cap. A quota check before [`Store::create_chat`], not part of
    /// it: News racing for one user may together take it a few chats past the cap.
    async fn member_at_chat_cap(
        &self,
        caller: &UserId,
        members: &Members,
        cap: u32,
    ) -> Result<Option<UserId>, StoreError>;

    async fn is_member(&self, chat: &ChatId, user: &UserId) -> Result<bool, StoreError>;

    /// Stores a message from `sender` (who must be a member) and publishes it, or returns the
    /// message stored earlier with the same client id, unchanged and not published again.
    /// A reply's original must be an undeleted message of the same chat
    /// ([`StoreError::ReplyNotFound`] otherwise, unless the message was stored earlier: a
    /// retry gets it back even if the original has been deleted since); the stored message
    /// carries its preview. `sender` by value: the message keeps it, and a Send has no use
    /// for it afterwards.
    async fn append(
        &self,
        sender: UserId,
        message: NewMessage,
    ) -> Result<StoredMessage, StoreError>;

    /// A page of history for a member of the chat.
    async fn history(&self, user: &UserId, query: &HistoryQuery)
    -> Result<HistoryPage, StoreError>;

    /// Applies `change` by `user` (a member of its chat) as [`changes::plan`] rules, and
    /// publishes it as an event with the next id, like a new message; returns the message's
    /// state after it. A change that changes nothing (a retry) is not stored or published
    /// and returns the state as it is.
    async fn change(&self, user: &UserId, change: Change) -> Result<StoredMessage, StoreError>;

    /// Up to `limit` events (messages and changes) with ids greater than `after`, in id
    /// order, from one chat or from every chat `user` belongs to, each with its message's
    /// current state. Streams replay and catch up with this.
    async fn events_after(
        &self,
        user: &UserId,
        chat: Option<&ChatId>,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The messages of `user`'s chats (or of `query.chat_id`, [`StoreError::ChatNotFound`]
    /// unless `user` is a member) whose current subject or text hold every word of
    /// `query.terms`, newest first, below `query.before`. Backed by the engine's full-text
    /// index, which follows the `subject` and `text` columns by itself (triggers on SQLite, a
    /// generated column on PostgreSQL), so an edit or a delete that rewrites them needs no
    /// search code.
    async fn search(&self, user: &UserId, query: &SearchQuery) -> Result<SearchPage, StoreError>;

    /// A page of the user's chats, most recently active first (the order [`ListCursor`]
    /// defines): the first `query.limit` chats after `query.after`. A backend reads only the
    /// page's chats' members and last messages, so a page costs the same however many chats
    /// the user is in, apart from ordering them.
    async fn chats_of(&self, user: &UserId, query: &ListQuery) -> Result<ChatPage, StoreError>;

    /// Whether other servers share this store (PostgreSQL), so a change made by one of them
    /// (a Leave) can only be seen by reading the database again.
    fn is_shared(&self) -> bool {
        false
    }

    /// Moves `user`'s read position in `chat` forward to `up_to`, a message of the chat
    /// ([`StoreError::MessageNotInChat`] otherwise; [`StoreError::ChatNotFound`] for a
    /// non-member). An older id changes nothing. Returns the position after the call, whether
    /// it moved, the chat's members and whether the user keeps receipts private, which is
    /// what the caller needs to tell the right people.
    async fn mark_read(
        &self,
        user: &UserId,
        chat: &ChatId,
        up_to: MessageId,
    ) -> Result<ReadMove, StoreError>;

    /// The members of `chat`, for a member ([`StoreError::ChatNotFound`] otherwise).
    async fn members_of(&self, chat: &ChatId, user: &UserId) -> Result<Vec<UserId>, StoreError>;

    /// The members of each of `chats` that `user` is a member of, in the order of `chats`
    /// (the others are left out), in one read: what a page of search results needs to name
    /// its chats.
    async fn members_of_chats(
        &self,
        chats: Vec<ChatId>,
        user: &UserId,
    ) -> Result<Vec<(ChatId, Vec<UserId>)>, StoreError>;

    async fn settings(&self, user: &UserId) -> Result<AccountSettings, StoreError>;

    /// Changes the settings that `change` sets; returns all of them.
    async fn update_settings(
        &self,
        user: &UserId,
        change: chat_core::activity::SettingsChange,
    ) -> Result<AccountSettings, StoreError>;

    /// Everyone who shares a chat with `user` (not `user`), sorted, with when each was last
    /// seen and whether a shared backend holds a stream lease of theirs.
    async fn contacts(&self, user: &UserId) -> Result<Vec<Contact>, StoreError>;

    /// Records `user` as online; true when they were not (so the change is news), which one
    /// caller alone learns however many servers race.
    async fn set_online(&self, user: &UserId) -> Result<bool, StoreError>;

    /// Records `user` as offline since `at` (unix seconds, their last stream's close); true
    /// when they were online.
    async fn set_offline(&self, user: &UserId, at: i64) -> Result<bool, StoreError>;

    /// How many stream leases of `user`'s the servers sharing the database hold; always 0 for
    /// a backend only one server uses.
    async fn leases_of(&self, _user: &UserId) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Records offline the people still recorded online whose streams were all on a server
    /// sharing the database that died, and returns who changed and since when (unix
    /// seconds); always empty for a backend only one server uses, which resets presence at
    /// start-up instead.
    async fn sweep_presence(&self) -> Result<Vec<(UserId, i64)>, StoreError> {
        Ok(Vec::new())
    }

    /// The channel that carries events that are not messages to every server sharing the
    /// database; `None`: only this server, which hands them to its broker directly.
    fn shared_signals(&self) -> Option<Arc<dyn SharedSignals>> {
        None
    }

    /// Stream slots shared with the other servers on the same database, when the backend is
    /// shared (PostgreSQL); `None` for a backend only one server uses, whose limits then
    /// count in memory.
    fn stream_leases(&self) -> Option<Arc<dyn StreamLeases>> {
        None
    }

    /// Rate budgets shared with the other servers on the same database, when the backend is
    /// shared (PostgreSQL); `None`: rates count in memory.
    fn shared_rates(&self) -> Option<Arc<dyn SharedRates>> {
        None
    }
}

/// Limits counted across every server of a shared database: keyed rate budgets (GCRA), and
/// the failed sign-ins of `limits::sign_in` as rows.
#[async_trait]
pub trait SharedRates: Send + Sync + 'static {
    /// Takes one cell of `key`'s budget (`burst` cells, one more every `interval`), or says
    /// how long until one is there.
    async fn take(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Result<(), Duration>, StoreError>;

    /// `Policy::attempt` on the stored ladder of (`user`, `source`) and, when the source
    /// shares it, the budget of `user` (fresh ones when none is stored), held for the
    /// decision so that attempts on several servers at once are counted one after the other.
    async fn sign_in_attempt(
        &self,
        user: &UserId,
        source: sign_in::Source,
        policy: &sign_in::Policy,
    ) -> Result<Result<(), Duration>, StoreError>;

    /// A right password: forgets the ladder of (`user`, `source`) and gives the attempt back
    /// to `user`'s budget if it took from it.
    async fn sign_in_succeeded(
        &self,
        user: &UserId,
        source: sign_in::Source,
        policy: &sign_in::Policy,
    ) -> Result<(), StoreError>;
}

/// Open streams per user counted across every server of a shared database: each open stream
/// holds a lease its server keeps renewing, so a server that dies gives its slots back once
/// its leases lapse.
#[async_trait]
pub trait StreamLeases: Send + Sync + 'static {
    /// Takes one of `user`'s slots when fewer than `max` are held (by any server), returning
    /// the lease; `None` when all are held.
    async fn take(&self, user: &UserId, max: usize) -> Result<Option<i64>, StoreError>;

    /// Gives `lease` back (its stream ended).
    async fn give_back(&self, lease: i64) -> Result<(), StoreError>;
}
