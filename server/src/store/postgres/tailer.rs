//! The tailer: the one task of each server that publishes committed events (messages and
//! changes to them) to its `Broker`, whichever server stored them, each exactly once and in
//! id order.
//!
//! It keeps `last`, the id of the newest event published, and whenever it is woken reads the
//! messages and changes with ids above `last`, in id order, in bounded pages and publishes
//! them. The writer's
//! transaction (see `writer.rs`) makes ids commit in id order, so what a read sees after
//! `last` is always a gap-free continuation: nothing below a visible id can appear later.
//!
//! What wakes it: a notification from any server's commit (via `listener.rs`), its own
//! writer's commit, the listener reconnecting, and a safety tick every second. Notifications
//! are only hints: a lost one, a dropped listener or a server that was down costs latency,
//! never a message, because the tailer always reads the table itself. Its own writer hands
//! over the messages it committed, and the tailer publishes them without reading them back:
//! its reads end before them, and the listener drops the notifications of its own batches
//! (`Hints::is_own`), so each server reads only the other servers' messages.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::ids::{ChatId, MessageId, UserId};
use deadpool_postgres::Pool;
use prometheus::IntCounter;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::listener;
use super::rows::{
    JOINED_REACTION_COLUMNS, MESSAGE_AND_REACTION_COLUMN_COUNT, MESSAGE_COLUMNS, REACTION_JOIN,
    REPLY_JOIN, message_with_reactions_at,
};
use super::tls::Target;
use crate::fanout::Broker;
use crate::store::decode::{id_from_sql, id_to_sql, stored_chat, stored_user};
use crate::store::token_cache::TokenCache;
use crate::store::{StoreError, StoredEvent};

/// Events read per query.
const TAIL_PAGE: i64 = 256;
/// The safety tick: the longest a message can wait when every notification was lost.
const SAFETY_TICK: Duration = Duration::from_secs(1);
/// The pause after a failed read before the next try.
const RETRY: Duration = Duration::from_millis(200);

/// An event this server committed (a message or a change), with the members to publish it
/// to.
pub struct Committed {
    pub event: Arc<StoredEvent>,
    pub members: Arc<[UserId]>,
}

/// What wakes the tailer, shared with the listener.
#[derive(Default)]
pub struct Hints {
    pub wake: Notify,
    /// The highest id any notification announced.
    pub announced: AtomicU64,
    /// Set when the listener (re)connected: notifications may have been missed before.
    pub reconnected: AtomicBool,
    /// The batch this server's writer committed last.
    own: Mutex<Option<OwnBatch>>,
}

impl Hints {
    /// Whether a notification of `id` sent by the database session `backend` is this
    /// server's writer's own: the writer hands those events over itself, so a read for them
    /// would only read back what the tailer has or is about to have.
    pub fn is_own(&self, backend: i32, id: u64) -> bool {
        self.own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|own| own.backend == backend && own.after < id && id <= own.through)
    }
}

/// A batch the writer commits: the database session that holds the message counter's lock
/// for it and the ids it may take. While that session holds the lock no other can take an
/// id, so a notification from it of an id in that range is the batch's. (A session's number
/// is unique among live sessions only; one reused later would also need an id in the range,
/// and a notification wrongly taken as own costs latency up to the safety tick, never a
/// message.)
#[derive(Clone, Copy)]
pub struct OwnBatch {
    pub backend: i32,
    /// The counter's value when the lock was taken.
    pub after: u64,
    /// The most the batch could reach: `after` plus its number of appends.
    pub through: u64,
}

/// The writer's side of the tailer.
pub struct TailerLink {
    handoff: mpsc::UnboundedSender<Vec<Committed>>,
    published: watch::Receiver<MessageId>,
    hints: Arc<Hints>,
}

impl TailerLink {
    /// Gives the tailer events this server has just committed.
    pub fn hand_off(&self, committed: Vec<Committed>) {
        // An error means the tailer stopped; the writer's wait for publication then fails.
        let _ = self.handoff.send(committed);
    }

    /// The id of the newest event published, updated as the tailer goes.
    pub fn published(&self) -> watch::Receiver<MessageId> {
        self.published.clone()
    }

    /// Tells the listener which batch the writer is committing, before it commits.
    pub fn committing(&self, batch: OwnBatch) {
        *self
            .hints
            .own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(batch);
    }
}

/// Starts the tailer (and its listener) publishing every message after `newest` to `broker`;
/// the listener forwards signals' payloads to `signals`.
/// Both end once the returned link is dropped.
pub fn start(
    pool: Pool,
    database: Target,
    broker: Arc<Broker>,
    newest: MessageId,
    signals: mpsc::UnboundedSender<String>,
    tokens: Arc<TokenCache>,
    reads: IntCounter,
) -> TailerLink {
    broker.start_after(newest);
    let (handoff, handed) = mpsc::unbounded_channel();
    let (published, watching) = watch::channel(newest);
    let hints = Arc::new(Hints::default());
    let (alive, tailer_gone) = watch::channel(());
    tokio::spawn(listener::run(
        database,
        Arc::clone(&hints),
        signals,
        tokens,
        tailer_gone,
    ));
    let tailer = Tailer {
        pool,
        broker,
        last: newest,
        published,
        hints: Arc::clone(&hints),
        handed,
        local: BTreeMap::new(),
        reads,
        _alive: alive,
    };
    tokio::spawn(tailer.run());
    TailerLink {
        handoff,
        published: watching,
        hints,
    }
}

struct Tailer {
    pool: Pool,
    broker: Arc<Broker>,
    last: MessageId,
    published: watch::Sender<MessageId>,
    hints: Arc<Hints>,
    handed: mpsc::UnboundedReceiver<Vec<Committed>>,
    /// Events handed over that are not published yet, by id.
    local: BTreeMap<MessageId, Committed>,
    /// Counts the events read from the table.
    reads: IntCounter,
    /// Dropped with the tailer, which tells the listener to stop.
    _alive: watch::Sender<()>,
}

impl Tailer {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(SAFETY_TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let mut must_read = false;
            tokio::select! {
                handed = self.handed.recv() => match handed {
                    Some(committed) => self.take(committed),
                    None => break,
                },
                _ = self.hints.wake.notified() => {}
                _ = tick.tick() => must_read = true,
            }
            while let Ok(committed) = self.handed.try_recv() {
                self.take(committed);
            }
            if self.hints.reconnected.swap(false, Ordering::AcqRel)
                || self.hints.announced.load(Ordering::Acquire) > self.last.0
            {
                must_read = true;
            }
            self.catch_up(must_read).await;
        }
        tracing::debug!("postgres tailer stopped");
    }

    fn take(&mut self, committed: Vec<Committed>) {
        for entry in committed {
            self.local.insert(entry.event.id, entry);
        }
    }

    /// Publishes what the writer handed over while it continues `last`, and reads the table
    /// when asked to or when a handed-over message is not next (another server's messages
    /// come before it).
    async fn catch_up(&mut self, mut must_read: bool) {
        loop {
            self.publish_local();
            if !must_read && self.local.is_empty() {
                return;
            }
            match self.read_page().await {
                Ok(0) => {
                    // Nothing visible after `last`: a handed-over message cannot be ahead of
                    // an invisible one, so this only happens if ids were skipped; the
                    // handed-over messages then wait for the next read.
                    if let Some(first) = self.local.keys().next() {
                        tracing::warn!(last = %self.last, next = %first, "handed-over message not visible after the last published");
                    }
                    return;
                }
                // A read stops short of what was handed over: another server may have
                // committed after it.
                Ok(read) => {
                    must_read = read == TAIL_PAGE as usize
                        || self.hints.announced.load(Ordering::Acquire) > self.last.0;
                }
                Err(error) => {
                    tracing::warn!(%error, "tailer cannot read new messages; retrying");
                    if self.handed.is_closed() {
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                    must_read = true;
                }
            }
        }
    }

    fn publish_local(&mut self) {
        while let Some(entry) = self.local.first_entry() {
            let id = *entry.key();
            if id <= self.last {
                entry.remove();
                continue;
            }
            if id.0 != self.last.0 + 1 {
                break;
            }
            let committed = entry.remove();
            self.publish(committed.event, &committed.members);
        }
        self.published.send_replace(self.last);
    }

    fn publish(&mut self, event: Arc<StoredEvent>, members: &[UserId]) {
        self.last = event.id;
        self.broker.publish(event, members);
    }

    /// Reads and publishes one page after `last`, in one statement; returns how many events
    /// it read. The page ends before the first event handed over by this server's writer,
    /// which is published from memory, not read back.
    ///
    /// The statement runs for every message on every other server, so it reads each row
    /// once: the page is cut first (`MATERIALIZED`), from the messages' own rows and the
    /// changes joined with theirs, and only its rows are then joined with their reply's
    /// original and their reactions (one probe, [`REACTION_JOIN`]). The chat's public id and
    /// its members, as they are now (members change: Leave, a rejoin, on any server, so they
    /// are not cached), come on the first row of each chat only: a chat of a thousand members
    /// sends its list once a page, not once a message. (Numbered over the join itself, the
    /// window would have to see every joined row before the `LIMIT`, and with a generic
    /// plan's guess of the page's size PostgreSQL then merge-joined the whole `messages`
    /// table: 11 ms a read in `chat-bench cluster`.)
    async fn read_page(&mut self) -> Result<usize, StoreError> {
        const PAGE_COLUMNS: &str = "m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, \
             m.edited_at, m.deleted, m.reply_to, m.chat";
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "WITH page AS MATERIALIZED (
                     (SELECT m.id AS event, {PAGE_COLUMNS} FROM messages m
                      WHERE m.id > $1 AND m.id < $3 ORDER BY m.id LIMIT $2)
                     UNION ALL
                     (SELECT e.id, {PAGE_COLUMNS}
                      FROM message_changes e JOIN messages m ON m.id = e.message
                      WHERE e.id > $1 AND e.id < $3 ORDER BY e.id LIMIT $2)
                     ORDER BY event LIMIT $2),
                 numbered AS (
                     SELECT *,
                            row_number() OVER (PARTITION BY chat ORDER BY event) = 1 AS opens_chat
                     FROM page)
                 SELECT m.event, {MESSAGE_COLUMNS}, {JOINED_REACTION_COLUMNS}, m.chat,
                        CASE WHEN m.opens_chat
                             THEN (SELECT public_id FROM chats WHERE id = m.chat)
                        END,
                        CASE WHEN m.opens_chat
                             THEN ARRAY(SELECT user_id FROM chat_members WHERE chat = m.chat)
                        END
                 FROM numbered m {REPLY_JOIN} {REACTION_JOIN}
                 ORDER BY m.event"
            ))
            .await?;
        // What this server committed itself is already here: read only up to it.
        let before = self
            .local
            .keys()
            .next()
            .map_or(i64::MAX, |&first| id_to_sql(first));
        let rows = client
            .query(&statement, &[&id_to_sql(self.last), &TAIL_PAGE, &before])
            .await?;
        self.reads.inc_by(rows.len() as u64);
        // Decode the whole page first, so a bad row publishes nothing after it out of turn.
        let chat_column = 1 + MESSAGE_AND_REACTION_COLUMN_COUNT;
        let mut chats: HashMap<i64, (ChatId, Arc<[UserId]>)> = HashMap::new();
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let chat: i64 = row.try_get(chat_column)?;
            if let Some(public_id) = row.try_get::<_, Option<&str>>(chat_column + 1)? {
                let users: Vec<&str> = row.try_get(chat_column + 2)?;
                let users = users
                    .into_iter()
                    .map(stored_user)
                    .collect::<Result<Vec<_>, _>>()?;
                chats.insert(chat, (stored_chat(public_id)?, users.into()));
            }
            let id = MessageId(id_from_sql(row.try_get(0)?));
            // A chat's first row of the page carries its public id; none means its row is
            // gone from `chats`, which nothing deletes.
            let Some((chat_id, members)) = chats.get(&chat) else {
                return Err(StoreError::Unavailable(format!(
                    "event {id} belongs to chat row {chat}, which the chats table does not hold"
                )));
            };
            let message = message_with_reactions_at(row, 1, chat_id.clone())?;
            page.push((StoredEvent { id, message }, Arc::clone(members)));
        }
        for (event, members) in page {
            self.publish(Arc::new(event), &members);
        }
        self.publish_local();
        Ok(rows.len())
    }
}
