//! The group-commit writer: one thread owns the only writing connection and commits every
//! write queued at the moment together, in one transaction, then answers the callers.
//!
//! Why one writer: SQLite allows a single writer at a time anyway, and doing every write on
//! one thread makes message ids increase in commit order and lets that thread hand committed
//! messages to the broker in exactly that order. Batching many requests into one transaction
//! pays for one fsync instead of one per message.
//!
//! What a batch guarantees: each write is applied so that if it fails it leaves no trace and
//! does not disturb the others (in a savepoint, or, for an append, as a single statement);
//! its caller hears back only after the commit, with its own result. If the commit itself
//! fails, every caller of the batch hears so and nothing of it is published.

use std::sync::Arc;

use chat_core::ids::{ChatId, UserId};
use chat_core::requests::{Members, NewMessage};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::writes::{self, ChatCache};
use crate::fanout::Broker;
use crate::store::{StoreError, StoredMessage, TokenHash};
use chat_transport::unix_now;

/// How many queued writes one transaction takes at most.
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer thread; senders wait when it is full.
const QUEUE_DEPTH: usize = 4096;

/// Where a write's result goes.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write queued for the writer thread, with where to send its result.
pub enum WriteRequest {
    CreateAccount {
        user: UserId,
        password_hash: String,
        reply: Reply<()>,
    },
    SaveToken {
        token: TokenHash,
        user: UserId,
        expires_at: i64,
        reply: Reply<()>,
    },
    RevokeToken {
        token: TokenHash,
        reply: Reply<()>,
    },
    CreateChat {
        members: Members,
        new_id: ChatId,
        reply: Reply<ChatId>,
    },
    Append {
        sender: UserId,
        message: NewMessage,
        reply: Reply<StoredMessage>,
    },
}

impl WriteRequest {
    fn refuse(self, error: StoreError) {
        match self {
            WriteRequest::CreateAccount { reply, .. }
            | WriteRequest::SaveToken { reply, .. }
            | WriteRequest::RevokeToken { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::CreateChat { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::Append { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// A stored message, with the members to publish it to when it is new (`None` for a repeat).
type Appended = (StoredMessage, Option<Arc<[UserId]>>);

/// A write applied inside the open transaction: its result, held until the commit decides
/// whether the caller gets it.
enum Applied {
    Unit(Reply<()>, Result<(), StoreError>),
    Chat(Reply<ChatId>, Result<ChatId, StoreError>),
    Message(Reply<StoredMessage>, Result<Appended, StoreError>),
}

impl Applied {
    fn refuse(self, error: StoreError) {
        match self {
            Applied::Unit(reply, _) => drop(reply.send(Err(error))),
            Applied::Chat(reply, _) => drop(reply.send(Err(error))),
            Applied::Message(reply, _) => drop(reply.send(Err(error))),
        }
    }
}

pub struct Writer {
    conn: Connection,
    broker: Arc<Broker>,
    chats: ChatCache,
}

impl Writer {
    /// Starts the writer thread on `conn`, publishing every committed message to `broker`;
    /// returns the queue to send it writes. The thread ends when every sender is gone.
    pub fn start(
        conn: Connection,
        broker: Arc<Broker>,
    ) -> Result<mpsc::Sender<WriteRequest>, StoreError> {
        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer::new(conn, broker);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start writer thread: {error}"))
            })?;
        Ok(writes)
    }

    fn new(conn: Connection, broker: Arc<Broker>) -> Self {
        Self {
            conn,
            broker,
            chats: ChatCache::default(),
        }
    }

    fn run(mut self, mut queue: mpsc::Receiver<WriteRequest>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
        tracing::debug!("sqlite writer stopped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<WriteRequest>) {
        let now = unix_now();
        let mut applied = Vec::with_capacity(batch.len());
        let outcome = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for write in batch.drain(..) {
                applied.push(apply(&tx, &mut self.chats, write, now));
            }
            tx.commit()
        })();

        if let Err(error) = outcome {
            tracing::error!(%error, "commit failed; the whole batch is refused");
            // The cache may hold a chat whose creation was never committed.
            self.chats.clear();
            let cause = || StoreError::Unavailable(format!("commit failed: {error}"));
            for write in batch.drain(..) {
                write.refuse(cause());
            }
            for item in applied {
                item.refuse(cause());
            }
            return;
        }

        // Committed: publish new messages in id order, each before its caller hears back, so
        // a sender's own streams have the echo no later than the reply.
        for item in applied {
            match item {
                Applied::Unit(reply, result) => drop(reply.send(result)),
                Applied::Chat(reply, result) => drop(reply.send(result)),
                Applied::Message(reply, result) => {
                    let result = result.map(|(message, publish_to)| {
                        if let Some(members) = publish_to {
                            self.broker.publish(Arc::new(message.clone()), &members);
                        }
                        message
                    });
                    drop(reply.send(result));
                }
            }
        }
    }
}

/// Applies one write inside the batch's transaction so that a failing write leaves no trace
/// and does not disturb the others: in a savepoint, or, for an append, as a single statement.
fn apply(tx: &Transaction<'_>, chats: &mut ChatCache, write: WriteRequest, now: i64) -> Applied {
    match write {
        WriteRequest::CreateAccount {
            user,
            password_hash,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                writes::create_account(conn, user, &password_hash, now)
            });
            Applied::Unit(reply, result)
        }
        WriteRequest::SaveToken {
            token,
            user,
            expires_at,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                writes::save_token(conn, &token, &user, expires_at, now)
            });
            Applied::Unit(reply, result)
        }
        WriteRequest::RevokeToken { token, reply } => {
            let result = in_savepoint(tx, |conn| writes::revoke_token(conn, &token));
            Applied::Unit(reply, result)
        }
        WriteRequest::CreateChat {
            members,
            new_id,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| writes::create_chat(conn, &members, new_id, now));
            Applied::Chat(reply, result)
        }
        WriteRequest::Append {
            sender,
            message,
            reply,
        } => {
            // No savepoint: an append changes the database with one INSERT, which SQLite
            // applies whole or not at all. A savepoint would copy every page the insert
            // touches into a sub-journal first, and appends are nearly all the writes.
            let result = (|| {
                let chat = chats
                    .get(tx, &message.chat_id)?
                    .filter(|chat| chat.members.contains(&sender))
                    .ok_or(StoreError::ChatNotFound)?;
                let (stored, is_new) = writes::append(tx, chat.row, sender, message, now)?;
                Ok((stored, is_new.then_some(chat.members)))
            })();
            Applied::Message(reply, result)
        }
    }
}

fn in_savepoint<T>(
    tx: &Transaction<'_>,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: parsing these on every write cost more than the insert itself.
    let run = |sql: &str| -> Result<(), StoreError> {
        tx.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    run("SAVEPOINT one_write")?;
    let result = work(tx);
    if result.is_err() {
        run("ROLLBACK TO one_write")?;
    }
    run("RELEASE one_write")?;
    result
}
