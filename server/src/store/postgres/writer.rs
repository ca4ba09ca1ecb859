//! The group-commit writer of appends: one task per server takes every append queued at the
//! moment and stores them in one short transaction, which is also what orders message ids
//! across servers.
//!
//! Commit order: the transaction first locks the single row of `message_seq`
//! (`SELECT … FOR UPDATE`), assigns the batch's ids from it, inserts, moves the counter and
//! commits; the row lock is held until commit or rollback. So transactions that assign ids
//! hold the lock one at a time, in id order, and each commits before the next can assign: if
//! a reader sees id `n` committed, every id below `n` is committed and visible already. A
//! rolled-back batch leaves the counter where it was, so ids stay dense. The servers take
//! turns on the lock, so the writer takes it before it forms the batch: whatever arrived
//! while it waited joins. Then one round trip calls `chat_append` (schema.rs, migration 13)
//! and commits: the function reads what the batch depends on and writes it, next to the
//! data, in one statement instead of eight.
//!
//! Membership: members change (Leave, a rejoin), on any server, so the writer reads the
//! members of the batch's chats in every batch, in the transaction, under the lock. An
//! append whose sender is not a member at that read is refused (NOT_FOUND) and takes no id;
//! the others are published to the members read.
//!
//! Idempotency: under the lock no other transaction can insert a message, so a lookup of the
//! batch's (chat, sender, client id) keys sees every message stored by any server; repeats
//! are answered with the stored message and take no id. `UNIQUE (chat, sender, client_id)`
//! backs this up: a duplicate could only fail the batch, never be stored twice.
//!
//! Replies: the originals the batch's replies name are read under the lock, so a Delete,
//! which takes the lock too, cannot come between the check and the commit. A reply whose
//! original is not an undeleted message of its chat is refused with
//! [`StoreError::ReplyNotFound`], unless the transaction finds it stored earlier (a retry).
//!
//! The transaction also sends one `NOTIFY` (per batch, never per message) so that the other
//! servers' tailers look for news. After the commit the writer hands the new messages to its
//! own server's tailer and answers the callers only once the tailer has published them, so a
//! sender's own streams have the echo no later than the reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::{ChatId, ClientId, MessageId, UserId};
use chat_core::requests::NewMessage;
use deadpool_postgres::{Client, Object, Pool};
use tokio::sync::{mpsc, oneshot, watch};

use super::rows::message_at;
use super::tailer::{Committed, OwnBatch, TailerLink};
use crate::metrics::Metrics;
use crate::store::decode::{id_from_sql, id_to_sql, stored_user};
use crate::store::{ReplyPreview, StoreError, StoredEvent, StoredMessage};
use chat_transport::unix_now;

/// How many queued appends one transaction takes at most.
const MAX_BATCH: usize = 256;
/// Appends waiting for the writer; senders wait when it is full.
const QUEUE_DEPTH: usize = 4096;
/// How long a batch's transaction may take before its callers hear UNAVAILABLE. Whether it
/// committed is then unknown, which is why appends are idempotent: a retry finds out.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer waits for the tailer to publish a committed batch.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Chats whose row id the writer keeps in memory; past this it starts over.
const CHAT_CACHE_MAX: usize = 16_384;
/// The channel the tailers of every server listen on.
pub const CHANNEL: &str = "chat_messages";
/// Set in the transactions of changes (`changes.rs`) that take the message counter's lock,
/// before their statements are planned. (The writer's `chat_append` plans its own lookups
/// with sequential scans off instead, one key at a time; see its migration.)
///
/// A prepared statement is planned once per connection and its plan kept until the
/// tables' statistics change. Planned while `messages` is empty or small (a new database,
/// whose first automatic ANALYZE is up to a minute away), the writer's lookup of earlier
/// client ids, a join of the batch's keys with `messages`, became a hash join over a
/// sequential scan of the whole table, and stayed so as the table grew: every batch then read
/// every message, under the counter's lock (1.1 ms a batch at 65,000 messages in `chat-bench
/// cluster`). A plan made for each execution sees the table's current size, and costs a
/// fraction of that. (Forbidding sequential scans and hash joins for such a join was tried:
/// with the statistics of an empty table the planner then picked nested full index scans,
/// which is worse.)
pub const FRESH_PLANS: &str = "SET LOCAL plan_cache_mode = force_custom_plan";

/// An append queued for the writer, with where its result goes.
pub struct Append {
    pub sender: UserId,
    pub message: NewMessage,
    /// The message's search words (`words::vector`), made by the caller's task rather than
    /// by the writer under the counter's lock.
    pub search: String,
    pub reply: oneshot::Sender<Result<StoredMessage, StoreError>>,
}

/// One distinct (chat, sender, client id) of a batch.
struct Candidate {
    chat_row: i64,
    sender: UserId,
    message: NewMessage,
    search: String,
}

/// A caller of a batch: where its answer goes, and which candidate is its message.
type Waiting = (oneshot::Sender<Result<StoredMessage, StoreError>>, usize);

/// What the transaction made of one candidate: the stored message, whether it is new, and
/// the chat's members at the commit; or why it was refused.
type Outcome = Result<(StoredMessage, bool, Arc<[UserId]>), StoreError>;

pub struct Writer {
    pool: Pool,
    chats: ChatCache,
    tailer: Arc<TailerLink>,
    metrics: Arc<Metrics>,
}

impl Writer {
    /// Starts the writer on a thread of its own; returns the queue to send it appends. The
    /// writer ends when every sender is gone, which in turn ends the tailer.
    ///
    /// Its own thread, with its own runtime, and its own pool (`pool`, whose connections are
    /// made, and their tasks spawned, on that runtime): while a batch holds the counter's
    /// lock, the answer to the lock and the batch's call cross this process, and on the
    /// server's runtime they waited behind whatever else was queued there (hundreds of calls'
    /// tasks under load) while every other server waited for the lock. Sampled in
    /// `chat-bench cluster`, a batch's transaction spent a quarter of its hold waiting so
    /// (BENCHMARKS.md).
    pub fn start(
        pool: Pool,
        tailer: Arc<TailerLink>,
        metrics: Arc<Metrics>,
    ) -> Result<mpsc::Sender<Append>, StoreError> {
        let (appends, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            pool,
            chats: ChatCache::default(),
            tailer,
            metrics,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start the writer's runtime: {error}"))
            })?;
        std::thread::Builder::new()
            .name("pg-writer".into())
            .spawn(move || runtime.block_on(writer.run(queue)))
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start the writer's thread: {error}"))
            })?;
        Ok(appends)
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Append>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.commit_batch(std::mem::take(&mut batch), &mut queue)
                .await;
        }
        tracing::debug!("postgres writer stopped");
    }

    /// Commits `batch` and whatever else `queue` holds once the counter's lock is taken, in
    /// one call of `chat_append`.
    ///
    /// The lock comes first: the servers take turns on it, and the appends that arrive while
    /// this one waits for its turn join the batch instead of waiting for the next. A batch's
    /// fixed costs (its round trips, the call, the commit) are then shared by more messages:
    /// 14.4 a batch on average instead of 8.3 in `chat-bench cluster`.
    async fn commit_batch(&mut self, mut batch: Vec<Append>, queue: &mut mpsc::Receiver<Append>) {
        let client = match self.pool.get().await {
            Ok(client) => client,
            Err(error) => return refuse(batch, &StoreError::from(error)),
        };
        let (counter, backend) =
            match tokio::time::timeout(COMMIT_TIMEOUT, lock_counter(&client)).await {
                Ok(Ok(locked)) => locked,
                // The connection may be inside the transaction: never hand it back to the pool.
                Ok(Err(error)) => {
                    drop(Object::take(client));
                    return refuse(batch, &error);
                }
                Err(_) => {
                    drop(Object::take(client));
                    return refuse(
                        batch,
                        &StoreError::Unavailable("the database did not lock in time".into()),
                    );
                }
            };
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        let now = unix_now();
        if let Err(error) = self.chats.load(&client, &batch).await {
            drop(Object::take(client));
            return refuse(batch, &error);
        }

        // Repeats within the batch (a retry racing its original) share one candidate.
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut by_key: HashMap<(i64, UserId, ClientId), usize> = HashMap::new();
        let mut waiting = Vec::with_capacity(batch.len());
        for append in batch {
            let Some(chat_row) = self.chats.get(&append.message.chat_id) else {
                let _ = append.reply.send(Err(StoreError::ChatNotFound));
                continue;
            };
            let key = (
                chat_row,
                append.sender.clone(),
                append.message.client_id.clone(),
            );
            let index = *by_key.entry(key).or_insert_with(|| {
                candidates.push(Candidate {
                    chat_row,
                    sender: append.sender,
                    message: append.message,
                    search: append.search,
                });
                candidates.len() - 1
            });
            waiting.push((append.reply, index));
        }
        if candidates.is_empty() {
            // Nothing to store: end the transaction, and with it the lock.
            if client.batch_execute("ROLLBACK").await.is_err() {
                drop(Object::take(client));
            }
            return;
        }

        self.tailer.committing(OwnBatch {
            backend,
            after: counter,
            through: counter + candidates.len() as u64,
        });
        self.metrics.commit_batch.observe(candidates.len() as f64);
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(
            COMMIT_TIMEOUT,
            store_batch(&client, &candidates, now),
        )
        .await
        {
            Ok(Ok(stored)) => Ok(stored),
            // The connection may be mid-transaction: never hand it back to the pool.
            Ok(Err(error)) => {
                drop(Object::take(client));
                Err(error)
            }
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(
                    "the database did not commit in time".into(),
                ))
            }
        };
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            // The callers hear once the tailer has published the batch; meanwhile the writer
            // goes on to the next one, whose turn on the lock need not wait for that.
            Ok(stored) => {
                let newest = self.hand_off(&stored);
                tokio::spawn(answer_when_published(
                    self.tailer.published(),
                    newest,
                    stored,
                    waiting,
                ));
            }
            Err(error) => answer_all(waiting, &error),
        }
    }

    /// Hands the batch's new messages to the tailer; returns the newest id of the batch (a
    /// repeat's original included), which the tailer must have published before the callers
    /// hear.
    fn hand_off(&self, outcomes: &[Outcome]) -> MessageId {
        let fresh = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .filter(|(_, is_new, _)| *is_new)
            .map(|(message, _, members)| Committed {
                event: Arc::new(StoredEvent::arrival(message.clone())),
                members: Arc::clone(members),
            })
            .collect::<Vec<_>>();
        if !fresh.is_empty() {
            self.tailer.hand_off(fresh);
        }
        outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .map(|(message, _, _)| message.id)
            .max()
            .unwrap_or(MessageId(0))
    }
}

/// Answers a committed batch's callers once the tailer has published up to `newest`, so the
/// callers' streams have their messages no later than the reply.
async fn answer_when_published(
    mut published: watch::Receiver<MessageId>,
    newest: MessageId,
    outcomes: Vec<Outcome>,
    waiting: Vec<Waiting>,
) {
    match tokio::time::timeout(
        PUBLISH_TIMEOUT,
        published.wait_for(|published| *published >= newest),
    )
    .await
    {
        Ok(Ok(_)) => {
            for (reply, index) in waiting {
                let outcome = outcomes[index].clone().map(|(message, _, _)| message);
                let _ = reply.send(outcome);
            }
        }
        Ok(Err(_)) | Err(_) => answer_all(
            waiting,
            &StoreError::Unavailable("stored, but not yet delivered to streams".into()),
        ),
    }
}

/// Answers every caller of a batch that failed with `error`.
fn answer_all(waiting: Vec<Waiting>, error: &StoreError) {
    tracing::error!(%error, "append batch failed; its callers may retry");
    for (reply, _) in waiting {
        let _ = reply.send(Err(error.clone()));
    }
}

fn refuse(batch: Vec<Append>, error: &StoreError) {
    tracing::error!(%error, "append batch refused; its callers may retry");
    for append in batch {
        let _ = append.reply.send(Err(error.clone()));
    }
}

/// Opens the batch's transaction and takes the message counter's lock, in one round trip;
/// returns the counter's value and the database session's number (which its notification
/// will carry). The transaction is opened by a statement pipelined with the lock rather
/// than by a `Transaction` (which would cost a round trip), so on an error the caller must
/// not hand the connection back to the pool.
async fn lock_counter(client: &Client) -> Result<(u64, i32), StoreError> {
    let lock = client
        .prepare_cached("SELECT last, pg_backend_pid() FROM message_seq FOR UPDATE")
        .await?;
    let ((), row) =
        futures::future::try_join(client.batch_execute("BEGIN"), client.query_one(&lock, &[]))
            .await?;
    Ok((id_from_sql(row.try_get(0)?), row.try_get(1)?))
}

/// Stores the candidates in one call of `chat_append` (schema.rs, migration 13) and commits,
/// inside the transaction [`lock_counter`] opened; returns each one's outcome (whether it is
/// new: false when stored earlier, by any server), in order.
///
/// The call and `COMMIT` go together (tokio-postgres pipelines concurrent queries on one
/// connection): one round trip. If the call fails, the transaction is aborted and
/// PostgreSQL turns the `COMMIT` into a `ROLLBACK`; on an error the caller must not hand the
/// connection back to the pool, as it may still be inside the transaction.
async fn store_batch(
    client: &Client,
    candidates: &[Candidate],
    now: i64,
) -> Result<Vec<Outcome>, StoreError> {
    let columns = Columns::of(candidates);
    let append = client
        .prepare_cached(
            "SELECT * FROM chat_append($1::bigint[], $2::text[], $3::text[], $4::text[],
                                       $5::text[], $6::bigint[], $7::text[], $8::bigint,
                                       $9::text)",
        )
        .await?;
    let (rows, ()) = futures::future::try_join(
        client.query(
            &append,
            &[
                &columns.chats,
                &columns.senders,
                &columns.client_ids,
                &columns.subjects,
                &columns.texts,
                &columns.reply_to,
                &columns.search,
                &now,
                &CHANNEL,
            ],
        ),
        client.batch_execute("COMMIT"),
    )
    .await?;

    // The members' rows come first, one per chat of the batch that has members.
    let mut members: HashMap<i64, Arc<[UserId]>> = HashMap::new();
    for row in &rows {
        if row.try_get::<_, &str>(1)? == "members" {
            let users = row
                .try_get::<_, Vec<&str>>(3)?
                .into_iter()
                .map(stored_user)
                .collect::<Result<Vec<_>, _>>()?;
            members.insert(row.try_get(2)?, users.into());
        }
    }
    let mut results: Vec<Option<Outcome>> = vec![None; candidates.len()];
    for row in &rows {
        let n: i32 = row.try_get(0)?;
        let status: &str = row.try_get(1)?;
        let chat: i64 = row.try_get(2)?;
        if status == "members" {
            continue;
        }
        let index = usize::try_from(n - 1)
            .ok()
            .filter(|&index| index < candidates.len())
            .ok_or_else(|| StoreError::Unavailable(format!("chat_append answered for {n}")))?;
        let candidate = &candidates[index];
        let chat_members = || {
            members.get(&chat).cloned().ok_or_else(|| {
                StoreError::Unavailable(format!("chat_append gave no members of chat {chat}"))
            })
        };
        results[index] = Some(match status {
            "new" => {
                let id: i64 = row.try_get(4)?;
                let reply = match row.try_get::<_, Option<i64>>(12)? {
                    None => None,
                    Some(original) => Some(ReplyPreview::of(
                        MessageId(id_from_sql(original)),
                        row.try_get::<_, Option<&str>>(13)?
                            .map(stored_user)
                            .transpose()?,
                        row.try_get(14)?,
                    )),
                };
                let message = StoredMessage::new(
                    MessageId(id_from_sql(id)),
                    candidate.sender.clone(),
                    candidate.message.clone(),
                    now,
                    reply,
                );
                Ok((message, true, chat_members()?))
            }
            "earlier" => {
                let message = message_at(row, 4, candidate.message.chat_id.clone())?;
                Ok((message, false, chat_members()?))
            }
            "not member" => Err(StoreError::ChatNotFound),
            "no original" => Err(StoreError::ReplyNotFound),
            other => {
                return Err(StoreError::Unavailable(format!(
                    "chat_append answered {other:?}"
                )));
            }
        });
    }
    results
        .into_iter()
        .map(|outcome| {
            outcome.ok_or_else(|| {
                StoreError::Unavailable("chat_append left a candidate unanswered".into())
            })
        })
        .collect()
}

/// The candidates as the array arguments of `chat_append`, one element each.
struct Columns<'a> {
    chats: Vec<i64>,
    senders: Vec<&'a str>,
    client_ids: Vec<&'a str>,
    subjects: Vec<&'a str>,
    texts: Vec<&'a str>,
    reply_to: Vec<Option<i64>>,
    /// The `tsvector` literal of each one's words.
    search: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(candidates: &'a [Candidate]) -> Self {
        Self {
            chats: candidates.iter().map(|c| c.chat_row).collect(),
            senders: candidates.iter().map(|c| c.sender.as_str()).collect(),
            client_ids: candidates
                .iter()
                .map(|c| c.message.client_id.as_str())
                .collect(),
            subjects: candidates
                .iter()
                .map(|c| c.message.subject.as_str())
                .collect(),
            texts: candidates.iter().map(|c| c.message.text.as_str()).collect(),
            reply_to: candidates
                .iter()
                .map(|c| c.message.reply_to.map(id_to_sql))
                .collect(),
            search: candidates.iter().map(|c| c.search.as_str()).collect(),
        }
    }
}

/// Chat id → its row id, so an append needs no lookup of it. A chat's row never changes once
/// it exists and only committed chats are read, so an entry never goes stale. (Members are
/// not cached: they change, see the module's comment.)
#[derive(Default)]
struct ChatCache(HashMap<ChatId, i64>);

impl ChatCache {
    fn get(&self, chat: &ChatId) -> Option<i64> {
        self.0.get(chat).copied()
    }

    /// Reads the chats of `batch` that are not cached yet, in one query.
    async fn load(&mut self, client: &Client, batch: &[Append]) -> Result<(), StoreError> {
        let mut missing: Vec<&str> = batch
            .iter()
            .map(|append| &append.message.chat_id)
            .filter(|chat| !self.0.contains_key(chat))
            .map(ChatId::as_str)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let statement = client
            .prepare_cached("SELECT public_id, id FROM chats WHERE public_id = ANY($1)")
            .await?;
        let rows = client.query(&statement, &[&missing]).await?;
        if self.0.len() + rows.len() > CHAT_CACHE_MAX {
            self.0.clear();
        }
        for row in rows {
            let chat = crate::store::decode::stored_chat(row.try_get(0)?)?;
            self.0.insert(chat, row.try_get(1)?);
        }
        Ok(())
    }
}
