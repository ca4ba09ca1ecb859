//! The PostgreSQL backend, for several servers sharing one database: PostgreSQL is the source
//! of truth, every server's writer orders its commits through one counter row, and every
//! server's tailer publishes what any of them committed.
//!
//! - `schema`: numbered migrations, applied at start-up under an advisory lock.
//! - `writer`: the group-commit writer of appends, and why ids increase in commit order;
//!   `changes`: edits, deletions and reactions, which take their ids the same way.
//! - `tailer`: publishes committed messages and changes to this server's broker, in id order;
//!   `listener`: the `LISTEN` connection that wakes it.
//! - `writes`: accounts, tokens and chats; `reads`: the SQL of each read.
//! - `activity`: read positions, settings, last-seen times, and `PgSignals`, the `NOTIFY`
//!   channel that carries events that are not messages between the servers.
//! - `rows`: rows to validated records, driver errors to [`StoreError`].
//! - `leases`: open streams per user as expiring rows; `rates`: GCRA budgets per key (send
//!   rate, sign-ins per address). The limits that hold across servers keep their state here.
//!
//! Token owners are cached as in the SQLite backend, but a shared [`TokenCache`]: every
//! revocation notifies the other servers, whose listeners make their caches forget, and an
//! entry is trusted for `TOKEN_TRUST_SECS` at most in case a listener hangs unnoticed.

mod activity;
mod changes;
mod leases;
mod listener;
mod rates;
mod reads;
mod rows;
mod schema;
mod tailer;
mod tls;
mod words;
mod writer;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::activity::SettingsChange;
use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{HistoryQuery, ListQuery, Members, NewMessage};
use chat_core::search::SearchQuery;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};

use self::activity::PgSignals;
use self::leases::PgLeases;
use self::rates::PgRates;
#[doc(hidden)]
pub use self::schema::migration_sql;
use self::tailer::TailerLink;
use self::tls::Target;
pub use self::words::vector as search_vector;
use self::writer::{Append, Writer};
use super::decode::id_from_sql;
use super::token_cache::TokenCache;
use super::{
    AccountSettings, Change, ChatPage, Contact, HistoryPage, Membership, ReadMove, SearchPage,
    SharedRates, SharedSignals, Store, StoreError, StoredEvent, StoredMessage, StreamLeases,
    TokenHash,
};
use crate::fanout::Broker;
use crate::metrics::{Metrics, PoolUse};
use chat_transport::unix_now;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free pooled connection before it gets UNAVAILABLE.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long a cached token owner is trusted without reading the token again: the longest a
/// revocation on another server could go unheard here if the listener's connection hung
/// without failing. Otherwise revocations reach this cache within a notification's delay.
const TOKEN_TRUST_SECS: i64 = 30;

/// The PostgreSQL [`Store`].
pub struct PgStore {
    pool: Pool,
    appends: mpsc::Sender<Append>,
    tailer: Arc<TailerLink>,
    leases: Arc<PgLeases>,
    rates: Arc<PgRates>,
    signals: Arc<PgSignals>,
    tokens: Arc<TokenCache>,
}

impl PgStore {
    /// Connects to the database at `url` with up to `pool_size` connections, brings its
    /// schema up to date, tells `broker` the newest message stored, and starts the writer and
    /// the tailer, which publishes every message committed from then on (by any server). The
    /// writer's commits and the pool's use show in `metrics`.
    pub async fn open(
        url: &str,
        pool_size: usize,
        broker: Arc<Broker>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let mut target = Target::parse(url)?;
        target
            .config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("chat-server");
        let pool = build_pool(&target, pool_size, Some(POOL_WAIT))?;
        // The writer's own connection, which only its thread uses (see `Writer::start`).
        let mut writer_target = target.clone();
        writer_target.config.application_name("chat-server writer");
        let writer_pool = build_pool(&writer_target, 1, Some(POOL_WAIT))?;
        let mut client = pool.get().await?;
        schema::migrate(&mut client).await?;
        let newest: i64 = client
            .query_one(
                "SELECT greatest(coalesce((SELECT max(id) FROM messages), 0),
                                 coalesce((SELECT max(id) FROM message_changes), 0))",
                &[],
            )
            .await?
            .try_get(0)?;
        drop(client);
        let (heard, signals) = mpsc::unbounded_channel();
        let tokens = Arc::new(TokenCache::shared(TOKEN_TRUST_SECS));
        let tailer = Arc::new(tailer::start(
            pool.clone(),
            target,
            broker,
            MessageId(id_from_sql(newest)),
            heard,
            Arc::clone(&tokens),
            metrics.tailer_reads.clone(),
        ));
        let probed = pool.clone();
        metrics.watch_pool(move || {
            let status = probed.status();
            PoolUse {
                max: status.max_size,
                open: status.size,
                idle: status.available,
                waiting: status.waiting,
            }
        });
        Ok(Self {
            appends: Writer::start(writer_pool, Arc::clone(&tailer), metrics)?,
            tailer,
            leases: Arc::new(PgLeases::start(pool.clone())),
            rates: Arc::new(PgRates::new(pool.clone())),
            signals: Arc::new(PgSignals::new(pool.clone(), signals)),
            tokens,
            pool,
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

/// A pool of up to `size` connections to `target`; `wait`: how long a caller may wait for one
/// (`None`: as long as it takes).
fn build_pool(target: &Target, size: usize, wait: Option<Duration>) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        target.config.clone(),
        target.tls.clone(),
        ManagerConfig {
            // A connection that broke is seen as closed; checking each one with a query
            // before every use would cost a round trip per call.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(wait)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|error| StoreError::Unavailable(format!("cannot build the pool: {error}")))
}

/// One connection to the database at `url`, its schema brought up to date, for the offline
/// tools (the migration from SQLite) that write the tables without serving calls.
pub async fn connect_for_tools(url: &str) -> Result<Object, StoreError> {
    let mut client = connect_for_reading(url).await?;
    schema::migrate(&mut client).await?;
    Ok(client)
}

/// One connection to the database at `url` as it is, for a tool that only reads (`chat-server
/// accounts`): a wrong URL must not leave an empty database with the schema in it.
pub async fn connect_for_reading(url: &str) -> Result<Object, StoreError> {
    let mut target = Target::parse(url)?;
    target
        .config
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("chat-server tools");
    let pool = build_pool(&target, 1, None)?;
    Ok(pool.get().await?)
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn create_account(&self, user: &UserId, password_hash: String) -> Result<(), StoreError> {
        writes::create_account(&self.client().await?, user, &password_hash, unix_now()).await
    }

    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError> {
        reads::password_hash(&self.client().await?, user).await
    }

    async fn save_token(
        &self,
        token: TokenHash,
        user: &UserId,
        expires_at: i64,
        device: Option<TokenHash>,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let client = self.client().await?;
        writes::save_token(&client, &token, user, expires_at, now).await?;
        if let Some(device) = device {
            writes::save_device(&client, &device, user, now).await?;
        }
        // A token is only handed out after this returns, so nobody can have revoked it yet.
        let revocations = self.tokens.revocations();
        self.tokens
            .remember(token, user, expires_at, now, revocations);
        Ok(())
    }

    async fn token_owner(&self, token: TokenHash, now: i64) -> Result<Option<UserId>, StoreError> {
        if let Some(owner) = self.tokens.owner(&token, now) {
            return Ok(Some(owner));
        }
        let revocations = self.tokens.revocations();
        let found = reads::token_owner(&self.client().await?, &token, now).await?;
        Ok(found.map(|(owner, expires_at)| {
            self.tokens
                .remember(token, &owner, expires_at, now, revocations);
            owner
        }))
    }

    async fn device_owner(&self, device: TokenHash) -> Result<Option<UserId>, StoreError> {
        reads::device_owner(&self.client().await?, &device).await
    }

    // Each revocation is forgotten here once it has committed; the other servers forget it
    // when they hear its notification.

    async fn revoke_token(&self, token: TokenHash) -> Result<(), StoreError> {
        writes::revoke_token(&self.client().await?, &token).await?;
        self.tokens.forget(&token);
        Ok(())
    }

    async fn revoke_tokens_of(&self, user: &UserId) -> Result<(), StoreError> {
        writes::revoke_tokens_of(&self.client().await?, user).await?;
        self.tokens.forget_user(user);
        Ok(())
    }

    async fn set_password(
        &self,
        user: &UserId,
        password_hash: String,
        deactivated_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        writes::set_password(&mut client, user, &password_hash, deactivated_at).await?;
        self.tokens.forget_user(user);
        Ok(())
    }

    async fn create_chat(
        &self,
        caller: &UserId,
        members: &Members,
        new_id: ChatId,
    ) -> Result<(ChatId, Membership), StoreError> {
        let mut client = self.client().await?;
        writes::create_chat(&mut client, caller, members, new_id, unix_now()).await
    }

    async fn leave_chat(&self, chat: &ChatId, user: &UserId) -> Result<Membership, StoreError> {
        let mut client = self.client().await?;
        writes::leave_chat(&mut client, chat, user, unix_now()).await
    }

    async fn block(&self, blocker: &UserId, blocked: &UserId) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        writes::block(&mut client, blocker, blocked, unix_now()).await
    }

    async fn unblock(&self, blocker: &UserId, blocked: &UserId) -> Result<(), StoreError> {
        writes::unblock(&self.client().await?, blocker, blocked).await
    }

    async fn blocked_by(&self, blocker: &UserId) -> Result<Vec<UserId>, StoreError> {
        reads::blocked_by(&self.client().await?, blocker).await
    }

    async fn member_at_chat_cap(
        &self,
        caller: &UserId,
        members: &Members,
        cap: u32,
    ) -> Result<Option<UserId>, StoreError> {
        reads::member_at_chat_cap(&self.client().await?, caller, members, cap).await
    }

    async fn is_member(&self, chat: &ChatId, user: &UserId) -> Result<bool, StoreError> {
        Ok(reads::member_chat_row(&self.client().await?, chat, user)
            .await?
            .is_some())
    }

    async fn append(
        &self,
        sender: UserId,
        message: NewMessage,
    ) -> Result<StoredMessage, StoreError> {
        let stopped = || StoreError::Unavailable("writer task stopped".into());
        let (reply, answer) = oneshot::channel();
        self.appends
            .send(Append {
                search: words::vector(message.subject.as_str(), message.text.as_str()),
                sender,
                message,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn history(
        &self,
        user: &UserId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        reads::history(&self.client().await?, user, query).await
    }

    async fn change(&self, user: &UserId, change: Change) -> Result<StoredMessage, StoreError> {
        changes::apply(&self.pool, &self.tailer, user, &change).await
    }

    async fn events_after(
        &self,
        user: &UserId,
        chat: Option<&ChatId>,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        reads::events_after(&self.client().await?, user, chat, after, limit).await
    }

    async fn chats_of(&self, user: &UserId, query: &ListQuery) -> Result<ChatPage, StoreError> {
        reads::chats_of(&self.client().await?, user, query).await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn search(&self, user: &UserId, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        reads::search(&self.client().await?, user, query).await
    }

    async fn mark_read(
        &self,
        user: &UserId,
        chat: &ChatId,
        up_to: MessageId,
    ) -> Result<ReadMove, StoreError> {
        activity::mark_read(&self.client().await?, user, chat, up_to).await
    }

    async fn members_of(&self, chat: &ChatId, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        activity::members_of(&self.client().await?, chat, user).await
    }

    async fn members_of_chats(
        &self,
        chats: Vec<ChatId>,
        user: &UserId,
    ) -> Result<Vec<(ChatId, Vec<UserId>)>, StoreError> {
        activity::members_of_chats(&self.client().await?, chats, user).await
    }

    async fn settings(&self, user: &UserId) -> Result<AccountSettings, StoreError> {
        activity::settings(&self.client().await?, user).await
    }

    async fn update_settings(
        &self,
        user: &UserId,
        change: SettingsChange,
    ) -> Result<AccountSettings, StoreError> {
        activity::update_settings(&self.client().await?, user, change).await
    }

    async fn contacts(&self, user: &UserId) -> Result<Vec<Contact>, StoreError> {
        activity::contacts(&self.client().await?, user).await
    }

    async fn set_online(&self, user: &UserId) -> Result<bool, StoreError> {
        activity::set_online(&self.client().await?, user).await
    }

    async fn set_offline(&self, user: &UserId, at: i64) -> Result<bool, StoreError> {
        activity::set_offline(&self.client().await?, user, at).await
    }

    async fn leases_of(&self, user: &UserId) -> Result<u64, StoreError> {
        activity::leases_of(&self.client().await?, user).await
    }

    async fn sweep_presence(&self) -> Result<Vec<(UserId, i64)>, StoreError> {
        leases::sweep_lapsed(&mut self.client().await?).await
    }

    fn shared_signals(&self) -> Option<Arc<dyn SharedSignals>> {
        Some(Arc::clone(&self.signals) as Arc<dyn SharedSignals>)
    }

    fn stream_leases(&self) -> Option<Arc<dyn StreamLeases>> {
        Some(Arc::clone(&self.leases) as Arc<dyn StreamLeases>)
    }

    fn shared_rates(&self) -> Option<Arc<dyn SharedRates>> {
        Some(Arc::clone(&self.rates) as Arc<dyn SharedRates>)
    }
}
