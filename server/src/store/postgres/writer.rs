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
//! while it waited joins. Then, under the lock, one round trip reads what the batch depends
//! on and one writes and commits.
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
//! Replies: the originals the batch's replies name are read under the lock (one query, only
//! for a batch that has replies), so a Delete, which takes the lock too, cannot come between
//! the check and the commit. A reply whose original is not an undeleted message of its chat
//! is refused with [`StoreError::ReplyNotFound`], unless the transaction finds it stored
//! earlier (a retry).
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
use tokio::sync::{mpsc, oneshot};

use super::rows::{MESSAGE_COLUMNS, REPLY_JOIN, message_at};
use super::tailer::{Committed, TailerLink};
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
/// Set in every transaction that takes the message counter's lock, before its statements
/// are planned.
///
/// A prepared statement is planned once per connection and its plan kept until the
/// tables' statistics change. Planned while `messages` is empty or small (a new database,
/// whose first automatic ANALYZE is up to a minute away), the lookup of earlier client ids
/// becomes a hash join over a sequential scan of the whole table, and stays so as the table
/// grows: every batch then read every message, under the counter's lock (1.1 ms a batch at
/// 65,000 messages in `chat-bench cluster`, the largest single cost of a batch); the
/// originals of replies likewise. A plan made for each execution sees the table's current
/// size, and costs a fraction of that. (Forbidding sequential scans and hash joins instead
/// was tried: with the statistics of an empty table the planner then picked nested full
/// index scans, which is worse.)
pub const FRESH_PLANS: &str = "SET LOCAL plan_cache_mode = force_custom_plan";

/// An append queued for the writer, with where its result goes.
pub struct Append {
    pub sender: UserId,
    pub message: NewMessage,
    pub reply: oneshot::Sender<Result<StoredMessage, StoreError>>,
}

/// One distinct (chat, sender, client id) of a batch.
struct Candidate {
    chat_row: i64,
    sender: UserId,
    message: NewMessage,
}

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
    /// Starts the writer task; returns the queue to send it appends. The task ends when every
    /// sender is gone, which in turn ends the tailer.
    pub fn start(
        pool: Pool,
        tailer: Arc<TailerLink>,
        metrics: Arc<Metrics>,
    ) -> mpsc::Sender<Append> {
        let (appends, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            pool,
            chats: ChatCache::default(),
            tailer,
            metrics,
        };
        tokio::spawn(writer.run(queue));
        appends
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Append>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.commit_batch(std::mem::take(&mut batch), &mut queue)
                .await;
        }
        tracing::debug!("postgres writer stopped");
    }

    /// Commits `batch` and whatever else `queue` holds once the counter's lock is taken.
    ///
    /// The lock comes first: the servers take turns on it, and the appends that arrive while
    /// this one waits for its turn join the batch instead of waiting for the next. A batch's
    /// fixed costs (its statements, their planning, the commit) are then shared by more
    /// messages: 14.4 a batch on average instead of 8.3 in `chat-bench cluster`.
    async fn commit_batch(&mut self, mut batch: Vec<Append>, queue: &mut mpsc::Receiver<Append>) {
        let client = match self.pool.get().await {
            Ok(client) => client,
            Err(error) => return refuse(batch, &StoreError::from(error)),
        };
        let last = match tokio::time::timeout(COMMIT_TIMEOUT, lock_counter(&client)).await {
            Ok(Ok(last)) => last,
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

        self.metrics.commit_batch.observe(candidates.len() as f64);
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(
            COMMIT_TIMEOUT,
            store_batch(&client, &candidates, now, last),
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
        let outcome = match outcome {
            Ok(stored) => self.publish(stored).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(stored) => {
                for (reply, index) in waiting {
                    let _ = reply.send(stored[index].clone());
                }
            }
            Err(error) => {
                tracing::error!(%error, "append batch failed; its callers may retry");
                for (reply, _) in waiting {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Hands the batch's new messages to the tailer and waits until it has published every
    /// message of the batch (a repeat's original included), so the callers' streams have them.
    async fn publish(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<Result<StoredMessage, StoreError>>, StoreError> {
        let newest = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .map(|(message, _, _)| message.id)
            .max()
            .unwrap_or(MessageId(0));
        let fresh = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .filter(|(_, is_new, _)| *is_new)
            .map(|(message, _, members)| Committed {
                event: Arc::new(StoredEvent::arrival(message.clone())),
                members: Arc::clone(members),
            })
            .collect::<Vec<_>>();
        let not_delivered =
            || StoreError::Unavailable("stored, but not yet delivered to streams".into());
        if !fresh.is_empty() {
            self.tailer.hand_off(fresh);
        }
        let mut published = self.tailer.published();
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            published.wait_for(|published| *published >= newest),
        )
        .await
        {
            Ok(Ok(_)) => Ok(outcomes
                .into_iter()
                .map(|outcome| outcome.map(|(message, _, _)| message))
                .collect()),
            Ok(Err(_)) | Err(_) => Err(not_delivered()),
        }
    }
}

fn refuse(batch: Vec<Append>, error: &StoreError) {
    tracing::error!(%error, "append batch refused; its callers may retry");
    for append in batch {
        let _ = append.reply.send(Err(error.clone()));
    }
}

/// The ids of the messages that the candidates' replies name.
fn reply_ids(candidates: &[Candidate]) -> Vec<i64> {
    candidates
        .iter()
        .filter_map(|candidate| candidate.message.reply_to.map(id_to_sql))
        .collect()
}

/// The originals that the candidates' replies name and that are undeleted messages, from the
/// rows of `ORIGINALS`: id → (chat row, preview). Read under the `message_seq` lock, which a
/// Delete takes too, so an original cannot be deleted between this check and the reply's
/// commit.
fn reply_originals(
    rows: &[tokio_postgres::Row],
) -> Result<HashMap<i64, (i64, ReplyPreview)>, StoreError> {
    let mut found = HashMap::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let preview = ReplyPreview::of(
            MessageId(id_from_sql(id)),
            Some(stored_user(row.try_get(2)?)?),
            Some(row.try_get(3)?),
        );
        found.insert(id, (row.try_get(1)?, preview));
    }
    Ok(found)
}

/// Opens the batch's transaction and takes the message counter's lock, in one round trip;
/// returns the counter. The transaction is opened by a statement pipelined with the lock
/// rather than by a `Transaction` (which would cost a round trip), so on an error the caller
/// must not hand the connection back to the pool.
async fn lock_counter(client: &Client) -> Result<i64, StoreError> {
    let lock = client
        .prepare_cached("SELECT last FROM message_seq FOR UPDATE")
        .await?;
    let (_, locked) = futures::future::try_join(
        client.batch_execute(&format!("BEGIN; {FRESH_PLANS}")),
        client.query_one(&lock, &[]),
    )
    .await?;
    Ok(locked.try_get(0)?)
}

/// Stores the candidates whose sender is a member in one transaction, in their order; returns
/// each one's outcome (whether it is new: false when stored earlier, by any server).
///
/// Runs inside the transaction [`lock_counter`] opened, whose lock it holds, with the
/// counter's value `last`: two round trips, the reads, then the writes and `COMMIT`. The
/// transaction is committed by a statement pipelined with the writes rather than by a
/// `Transaction` (which would cost a round trip), so on an error the caller must not hand
/// the connection back to the pool: it may still be inside the transaction.
async fn store_batch(
    client: &Client,
    candidates: &[Candidate],
    now: i64,
    last: i64,
) -> Result<Vec<Outcome>, StoreError> {
    let chats: Vec<i64> = candidates.iter().map(|c| c.chat_row).collect();
    let senders: Vec<&str> = candidates.iter().map(|c| c.sender.as_str()).collect();
    let client_ids: Vec<&str> = candidates
        .iter()
        .map(|c| c.message.client_id.as_str())
        .collect();

    let mut distinct_chats = chats.clone();
    distinct_chats.sort_unstable();
    distinct_chats.dedup();

    let reply_ids = reply_ids(candidates);

    // Prepared once per connection; the first batch on a connection pays the round trips.
    let members_of = client
        .prepare_cached("SELECT chat, user_id FROM chat_members WHERE chat = ANY($1)")
        .await?;
    let earlier = client
        .prepare_cached(&format!(
            "SELECT m.chat, {MESSAGE_COLUMNS} FROM messages m {REPLY_JOIN}
             JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS k(chat, sender, client_id)
               ON m.chat = k.chat AND m.sender = k.sender AND m.client_id = k.client_id"
        ))
        .await?;
    let originals = client
        .prepare_cached(
            "SELECT id, chat, sender, left(text, 100) FROM messages
             WHERE id = ANY($1) AND NOT deleted",
        )
        .await?;
    // Pipelined, in one round trip. The lock is ours, so each read (read committed: a
    // snapshot per statement) sees every message and membership committed by any server
    // before this batch.
    let (member_rows, earlier_rows, original_rows) = futures::future::try_join3(
        client.query(&members_of, &[&distinct_chats]),
        client.query(&earlier, &[&chats, &senders, &client_ids]),
        // Only a batch with replies asks; the others send nothing.
        async {
            if reply_ids.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&originals, &[&reply_ids]).await
            }
        },
    )
    .await?;
    let mut found: HashMap<i64, Vec<UserId>> = HashMap::new();
    for row in &member_rows {
        found
            .entry(row.try_get(0)?)
            .or_default()
            .push(stored_user(row.try_get(1)?)?);
    }
    let members: HashMap<i64, Arc<[UserId]>> = found
        .into_iter()
        .map(|(chat, users)| (chat, users.into()))
        .collect();
    let originals = reply_originals(&original_rows)?;
    let mut stored_earlier = HashMap::new();
    for row in earlier_rows {
        let chat: i64 = row.try_get(0)?;
        let sender: &str = row.try_get(2)?;
        let client_id: &str = row.try_get(3)?;
        stored_earlier.insert((chat, sender.to_owned(), client_id.to_owned()), row);
    }

    let mut results = Vec::with_capacity(candidates.len());
    let mut fresh = FreshRows::default();
    let mut next = last;
    for candidate in candidates {
        let Some(chat_members) = members
            .get(&candidate.chat_row)
            .filter(|members| members.contains(&candidate.sender))
        else {
            results.push(Err(StoreError::ChatNotFound));
            continue;
        };
        let key = (
            candidate.chat_row,
            candidate.sender.as_str().to_owned(),
            candidate.message.client_id.as_str().to_owned(),
        );
        if let Some(row) = stored_earlier.get(&key) {
            let message = message_at(row, 1, candidate.message.chat_id.clone())?;
            results.push(Ok((message, false, Arc::clone(chat_members))));
            continue;
        }
        let reply = match candidate.message.reply_to {
            None => None,
            Some(original) => match originals.get(&id_to_sql(original)) {
                Some((chat, preview)) if *chat == candidate.chat_row => Some(preview.clone()),
                // Not a message of this chat, or deleted: another chat's message looks like
                // no message at all.
                _ => {
                    results.push(Err(StoreError::ReplyNotFound));
                    continue;
                }
            },
        };
        next += 1;
        fresh.push(next, candidate, now);
        results.push(Ok((
            StoredMessage::new(
                MessageId(id_from_sql(next)),
                candidate.sender.clone(),
                candidate.message.clone(),
                now,
                reply,
            ),
            true,
            Arc::clone(chat_members),
        )));
    }

    if next > last {
        let insert = client
            .prepare_cached(
                "INSERT INTO messages (id, chat, sender, client_id, subject, text, sent_at,
                                       reply_to)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                      $5::text[], $6::text[], $7::bigint[], $8::bigint[])",
            )
            .await?;
        let bump = client
            .prepare_cached("UPDATE message_seq SET last = $1")
            .await?;
        let notify = client.prepare_cached("SELECT pg_notify($1, $2)").await?;
        let announced = next.to_string();
        // Sent together with COMMIT (tokio-postgres pipelines concurrent queries on one
        // connection), so the lock is held for one round trip here, not four. If a write
        // fails, the transaction is aborted and PostgreSQL turns the COMMIT into a ROLLBACK.
        futures::future::try_join4(
            client.execute(
                &insert,
                &[
                    &fresh.ids,
                    &fresh.chats,
                    &fresh.senders,
                    &fresh.client_ids,
                    &fresh.subjects,
                    &fresh.texts,
                    &fresh.sent_at,
                    &fresh.reply_to,
                ],
            ),
            client.execute(&bump, &[&next]),
            client.execute(&notify, &[&CHANNEL, &announced]),
            client.batch_execute("COMMIT"),
        )
        .await?;
    } else {
        // Only repeats and refusals: nothing to write, and the lock goes with the end.
        client.batch_execute("COMMIT").await?;
    }
    Ok(results)
}

/// The new messages of a batch as the columns of one multi-row `INSERT`.
#[derive(Default)]
struct FreshRows {
    ids: Vec<i64>,
    chats: Vec<i64>,
    senders: Vec<String>,
    client_ids: Vec<String>,
    subjects: Vec<String>,
    texts: Vec<String>,
    sent_at: Vec<i64>,
    reply_to: Vec<Option<i64>>,
}

impl FreshRows {
    fn push(&mut self, id: i64, candidate: &Candidate, now: i64) {
        self.ids.push(id);
        self.chats.push(candidate.chat_row);
        self.senders.push(candidate.sender.as_str().to_owned());
        self.client_ids
            .push(candidate.message.client_id.as_str().to_owned());
        self.subjects
            .push(candidate.message.subject.as_str().to_owned());
        self.texts.push(candidate.message.text.as_str().to_owned());
        self.sent_at.push(now);
        self.reply_to
            .push(candidate.message.reply_to.map(id_to_sql));
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
