//! The group-commit writer of appends: one task per server takes every append queued at the
//! moment and stores them in one short transaction, which is also what orders message ids
//! across servers.
//!
//! Commit order: the transaction first locks the single row of `message_seq`
//! (`SELECT … FOR UPDATE`), assigns the batch's ids from it, inserts, moves the counter and
//! commits; the row lock is held until commit or rollback. So transactions that assign ids
//! hold the lock one at a time, in id order, and each commits before the next can assign: if
//! a reader sees id `n` committed, every id below `n` is committed and visible already. A
//! rolled-back batch leaves the counter where it was, so ids stay dense. Everything that
//! does not need the lock (finding the chats and their members, dropping repeats within the
//! batch) happens before `BEGIN`, to keep the lock short.
//!
//! Idempotency: under the lock no other transaction can insert a message, so a lookup of the
//! batch's (chat, sender, client id) keys sees every message stored by any server; repeats
//! are answered with the stored message and take no id. `UNIQUE (chat, sender, client_id)`
//! backs this up: a duplicate could only fail the batch, never be stored twice.
//!
//! Replies: the originals the batch's replies name are read before `BEGIN` too (one query);
//! a reply whose original is not an undeleted message of its chat is refused with
//! [`StoreError::ReplyNotFound`], unless the transaction finds it stored earlier (a retry).
//! A delete that commits between that read and the batch's commit leaves a reply to a
//! deleted message, which readers then show like any reply whose original was deleted later.
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
use crate::store::{ReplyPreview, StoreError, StoredMessage};
use chat_transport::unix_now;

/// How many queued appends one transaction takes at most.
const MAX_BATCH: usize = 256;
/// Appends waiting for the writer; senders wait when it is full.
const QUEUE_DEPTH: usize = 4096;
/// How long a batch's transaction may take before its callers hear UNAVAILABLE. Whether it
/// committed is then unknown, which is why appends are idempotent: a retry finds out.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer waits for the tailer to publish a committed batch.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Chats whose row id and members the writer keeps in memory; past this it starts over.
const CHAT_CACHE_MAX: usize = 16_384;
/// The channel the tailers of every server listen on.
pub const CHANNEL: &str = "chat_messages";

/// An append queued for the writer, with where its result goes.
pub struct Append {
    pub sender: UserId,
    pub message: NewMessage,
    pub reply: oneshot::Sender<Result<StoredMessage, StoreError>>,
}

/// One distinct (chat, sender, client id) of a batch.
struct Candidate {
    chat_row: i64,
    members: Arc<[UserId]>,
    sender: UserId,
    message: NewMessage,
    /// The preview of the original a reply names, `Err` when it is not an undeleted
    /// message of the chat.
    reply: Result<Option<ReplyPreview>, StoreError>,
}

/// A candidate's outcome: its message and whether it is new, or why it was refused.
type Outcome = Result<(StoredMessage, bool), StoreError>;

pub struct Writer {
    pool: Pool,
    chats: ChatCache,
    tailer: TailerLink,
    metrics: Arc<Metrics>,
}

impl Writer {
    /// Starts the writer task; returns the queue to send it appends. The task ends when every
    /// sender is gone, which in turn ends the tailer.
    pub fn start(pool: Pool, tailer: TailerLink, metrics: Arc<Metrics>) -> mpsc::Sender<Append> {
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
            self.commit_batch(std::mem::take(&mut batch)).await;
        }
        tracing::debug!("postgres writer stopped");
    }

    async fn commit_batch(&mut self, batch: Vec<Append>) {
        let now = unix_now();
        let mut client = match self.pool.get().await {
            Ok(client) => client,
            Err(error) => return refuse(batch, &StoreError::from(error)),
        };
        if let Err(error) = self.chats.load(&client, &batch).await {
            return refuse(batch, &error);
        }
        let originals = match reply_originals(&client, &batch).await {
            Ok(originals) => originals,
            Err(error) => return refuse(batch, &error),
        };

        // Repeats within the batch (a retry racing its original) share one candidate.
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut by_key: HashMap<(i64, UserId, ClientId), usize> = HashMap::new();
        let mut waiting = Vec::with_capacity(batch.len());
        for append in batch {
            let Some(chat) = self
                .chats
                .get(&append.message.chat_id)
                .filter(|chat| chat.members.contains(&append.sender))
            else {
                let _ = append.reply.send(Err(StoreError::ChatNotFound));
                continue;
            };
            let key = (
                chat.row,
                append.sender.clone(),
                append.message.client_id.clone(),
            );
            let index = *by_key.entry(key).or_insert_with(|| {
                let reply = match append.message.reply_to {
                    None => Ok(None),
                    Some(original) => originals
                        .get(&id_to_sql(original))
                        .filter(|(chat_row, _)| *chat_row == chat.row)
                        .map(|(_, preview)| Some(preview.clone()))
                        .ok_or(StoreError::ReplyNotFound),
                };
                candidates.push(Candidate {
                    chat_row: chat.row,
                    members: Arc::clone(&chat.members),
                    sender: append.sender,
                    message: append.message,
                    reply,
                });
                candidates.len() - 1
            });
            waiting.push((append.reply, index));
        }
        if candidates.is_empty() {
            return;
        }

        self.metrics.commit_batch.observe(candidates.len() as f64);
        let started = std::time::Instant::now();
        let outcome =
            match tokio::time::timeout(COMMIT_TIMEOUT, store_batch(&mut client, &candidates, now))
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The connection may be mid-transaction: never hand it back to the pool.
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
            Ok(stored) => self.publish(stored, &candidates).await,
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
        stored: Vec<Outcome>,
        candidates: &[Candidate],
    ) -> Result<Vec<Result<StoredMessage, StoreError>>, StoreError> {
        let newest = stored
            .iter()
            .flatten()
            .map(|(message, _)| message.id)
            .max()
            .unwrap_or(MessageId(0));
        let fresh = stored
            .iter()
            .zip(candidates)
            .filter_map(|(outcome, candidate)| match outcome {
                Ok((message, true)) => Some((message, candidate)),
                _ => None,
            })
            .map(|(message, candidate)| Committed {
                message: Arc::new(message.clone()),
                members: Arc::clone(&candidate.members),
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
            Ok(Ok(_)) => Ok(stored
                .into_iter()
                .map(|outcome| outcome.map(|(message, _)| message))
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

/// The originals the batch's replies name that are undeleted messages: id → (chat row,
/// preview). Read outside the transaction: an original is committed before anyone can
/// reply to it.
async fn reply_originals(
    client: &Client,
    batch: &[Append],
) -> Result<HashMap<i64, (i64, ReplyPreview)>, StoreError> {
    let ids: Vec<i64> = batch
        .iter()
        .filter_map(|append| append.message.reply_to.map(id_to_sql))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let statement = client
        .prepare_cached(
            "SELECT id, chat, sender, left(text, 100) FROM messages
             WHERE id = ANY($1) AND text <> ''",
        )
        .await?;
    let mut found = HashMap::new();
    for row in client.query(&statement, &[&ids]).await? {
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

/// Stores the candidates in one transaction, in their order; returns each one's message and
/// whether it is new (false: stored earlier, by any server), or why it was refused.
async fn store_batch(
    client: &mut Client,
    candidates: &[Candidate],
    now: i64,
) -> Result<Vec<Outcome>, StoreError> {
    let chats: Vec<i64> = candidates.iter().map(|c| c.chat_row).collect();
    let senders: Vec<&str> = candidates.iter().map(|c| c.sender.as_str()).collect();
    let client_ids: Vec<&str> = candidates
        .iter()
        .map(|c| c.message.client_id.as_str())
        .collect();

    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT last FROM message_seq FOR UPDATE")
        .await?;
    let last: i64 = tx.query_one(&lock, &[]).await?.try_get(0)?;
    // Read after the lock is ours, so it sees every message committed by any server.
    let earlier = tx
        .prepare_cached(&format!(
            "SELECT m.chat, {MESSAGE_COLUMNS} FROM messages m {REPLY_JOIN}
             JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS k(chat, sender, client_id)
               ON m.chat = k.chat AND m.sender = k.sender AND m.client_id = k.client_id"
        ))
        .await?;
    let mut stored_earlier = HashMap::new();
    for row in tx.query(&earlier, &[&chats, &senders, &client_ids]).await? {
        let chat: i64 = row.try_get(0)?;
        let sender: &str = row.try_get(2)?;
        let client_id: &str = row.try_get(3)?;
        stored_earlier.insert((chat, sender.to_owned(), client_id.to_owned()), row);
    }

    let mut results = Vec::with_capacity(candidates.len());
    let mut fresh = FreshRows::default();
    let mut next = last;
    for candidate in candidates {
        let key = (
            candidate.chat_row,
            candidate.sender.as_str().to_owned(),
            candidate.message.client_id.as_str().to_owned(),
        );
        if let Some(row) = stored_earlier.get(&key) {
            let message = message_at(row, 1, candidate.message.chat_id.clone())?;
            results.push(Ok((message, false)));
            continue;
        }
        let reply = match &candidate.reply {
            Ok(reply) => reply.clone(),
            Err(error) => {
                results.push(Err(error.clone()));
                continue;
            }
        };
        next += 1;
        fresh.push(next, candidate, now);
        results.push(Ok((
            StoredMessage {
                id: MessageId(id_from_sql(next)),
                chat_id: candidate.message.chat_id.clone(),
                sender: candidate.sender.clone(),
                client_id: candidate.message.client_id.clone(),
                subject: candidate.message.subject.clone(),
                text: candidate.message.text.clone(),
                sent_at: now,
                reply,
            },
            true,
        )));
    }

    if next > last {
        let insert = tx
            .prepare_cached(
                "INSERT INTO messages (id, chat, sender, client_id, subject, text, sent_at,
                                       reply_to)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                      $5::text[], $6::text[], $7::bigint[], $8::bigint[])",
            )
            .await?;
        let bump = tx
            .prepare_cached("UPDATE message_seq SET last = $1")
            .await?;
        let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
        let announced = next.to_string();
        // Sent together (tokio-postgres pipelines concurrent queries on one connection), so
        // the lock is held for one round trip here, not three.
        futures::future::try_join3(
            tx.execute(
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
            tx.execute(&bump, &[&next]),
            tx.execute(&notify, &[&CHANNEL, &announced]),
        )
        .await?;
    }
    tx.commit().await?;
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

/// A chat as the writer needs it for every append.
#[derive(Clone)]
pub struct CachedChat {
    pub row: i64,
    pub members: Arc<[UserId]>,
}

/// Chat id → its row id and members, so an append needs no lookup. Membership never changes
/// once a chat exists and only committed chats are read, so an entry never goes stale.
#[derive(Default)]
struct ChatCache(HashMap<ChatId, CachedChat>);

impl ChatCache {
    fn get(&self, chat: &ChatId) -> Option<CachedChat> {
        self.0.get(chat).cloned()
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
            .prepare_cached(
                "SELECT c.public_id, c.id, cm.user_id FROM chats c
                 JOIN chat_members cm ON cm.chat = c.id WHERE c.public_id = ANY($1)",
            )
            .await?;
        let mut found: HashMap<String, (i64, Vec<UserId>)> = HashMap::new();
        for row in client.query(&statement, &[&missing]).await? {
            let entry = found
                .entry(row.try_get(0)?)
                .or_insert_with(|| (0, Vec::new()));
            entry.0 = row.try_get(1)?;
            entry.1.push(stored_user(row.try_get(2)?)?);
        }
        if self.0.len() + found.len() > CHAT_CACHE_MAX {
            self.0.clear();
        }
        for (public_id, (row, members)) in found {
            let chat = crate::store::decode::stored_chat(&public_id)?;
            self.0.insert(
                chat,
                CachedChat {
                    row,
                    members: members.into(),
                },
            );
        }
        Ok(())
    }
}
