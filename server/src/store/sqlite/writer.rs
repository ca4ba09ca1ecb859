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

use chat_core::activity::SettingsChange;
use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{Members, NewMessage};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::activity;
use super::writes::{self, ChatCache};
use crate::fanout::Broker;
use crate::metrics::Metrics;
use crate::store::decode::id_to_sql;
use crate::store::{
    AccountSettings, Change, Membership, ReadMove, StoreError, StoredEvent, StoredMessage,
    TokenHash,
};
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
        device: Option<TokenHash>,
        reply: Reply<()>,
    },
    RevokeToken {
        token: TokenHash,
        reply: Reply<()>,
    },
    RevokeTokensOf {
        user: UserId,
        reply: Reply<()>,
    },
    SetPassword {
        user: UserId,
        password_hash: String,
        deactivated_at: Option<i64>,
        reply: Reply<()>,
    },
    CreateChat {
        caller: UserId,
        members: Members,
        new_id: ChatId,
        reply: Reply<(ChatId, Membership)>,
    },
    LeaveChat {
        chat: ChatId,
        user: UserId,
        reply: Reply<Membership>,
    },
    Block {
        blocker: UserId,
        blocked: UserId,
        reply: Reply<()>,
    },
    Unblock {
        blocker: UserId,
        blocked: UserId,
        reply: Reply<()>,
    },
    Append {
        sender: UserId,
        message: NewMessage,
        reply: Reply<StoredMessage>,
    },
    Change {
        user: UserId,
        change: Change,
        reply: Reply<StoredMessage>,
    },
    MarkRead {
        user: UserId,
        chat: ChatId,
        up_to: MessageId,
        reply: Reply<ReadMove>,
    },
    UpdateSettings {
        user: UserId,
        change: SettingsChange,
        reply: Reply<AccountSettings>,
    },
    /// Online (`None`) or offline since the time.
    SetPresence {
        user: UserId,
        offline_since: Option<i64>,
        reply: Reply<bool>,
    },
}

impl WriteRequest {
    fn refuse(self, error: StoreError) {
        match self {
            WriteRequest::CreateAccount { reply, .. }
            | WriteRequest::SaveToken { reply, .. }
            | WriteRequest::RevokeToken { reply, .. }
            | WriteRequest::RevokeTokensOf { reply, .. }
            | WriteRequest::SetPassword { reply, .. }
            | WriteRequest::Block { reply, .. }
            | WriteRequest::Unblock { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::SetPresence { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::CreateChat { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::LeaveChat { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::Append { reply, .. } | WriteRequest::Change { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            WriteRequest::MarkRead { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::UpdateSettings { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// A message as an append or a change left it, with the event to publish and to whom when
/// something was stored (`None` for a repeat, or a change that changed nothing). The event is
/// boxed: it holds a whole message, and most writes in a batch are not appends.
type Appended = (StoredMessage, Option<(Arc<StoredEvent>, Arc<[UserId]>)>);

/// A write applied inside the open transaction: its result, held until the commit decides
/// whether the caller gets it. Not boxed: nearly every write is an append (`Message`), and a
/// box would cost each one an allocation to save bytes on the rare others.
#[allow(clippy::large_enum_variant)]
enum Applied {
    Unit(Reply<()>, Result<(), StoreError>),
    Chat(
        Reply<(ChatId, Membership)>,
        Result<(ChatId, Membership), StoreError>,
    ),
    Members(Reply<Membership>, Result<Membership, StoreError>),
    Message(Reply<StoredMessage>, Result<Appended, StoreError>),
    Read(Reply<ReadMove>, Result<ReadMove, StoreError>),
    Settings(Reply<AccountSettings>, Result<AccountSettings, StoreError>),
    Changed(Reply<bool>, Result<bool, StoreError>),
}

impl Applied {
    fn refuse(self, error: StoreError) {
        match self {
            Applied::Unit(reply, _) => drop(reply.send(Err(error))),
            Applied::Chat(reply, _) => drop(reply.send(Err(error))),
            Applied::Members(reply, _) => drop(reply.send(Err(error))),
            Applied::Message(reply, _) => drop(reply.send(Err(error))),
            Applied::Read(reply, _) => drop(reply.send(Err(error))),
            Applied::Settings(reply, _) => drop(reply.send(Err(error))),
            Applied::Changed(reply, _) => drop(reply.send(Err(error))),
        }
    }
}

pub struct Writer {
    conn: Connection,
    broker: Arc<Broker>,
    chats: ChatCache,
    metrics: Arc<Metrics>,
}

impl Writer {
    /// Starts the writer thread on `conn`, publishing every committed message to `broker`;
    /// returns the queue to send it writes. The thread ends when every sender is gone.
    pub fn start(
        conn: Connection,
        broker: Arc<Broker>,
        metrics: Arc<Metrics>,
    ) -> Result<mpsc::Sender<WriteRequest>, StoreError> {
        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer::new(conn, broker, metrics);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start writer thread: {error}"))
            })?;
        Ok(writes)
    }

    fn new(conn: Connection, broker: Arc<Broker>, metrics: Arc<Metrics>) -> Self {
        Self {
            conn,
            broker,
            chats: ChatCache::default(),
            metrics,
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
        let started = std::time::Instant::now();
        self.metrics.commit_batch.observe(batch.len() as f64);
        let mut applied = Vec::with_capacity(batch.len());
        let mut index = SearchIndex::default();
        let outcome = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Taken from the back of the reversed batch, so that the writes not yet applied
            // when something fails stay in it and are refused below.
            batch.reverse();
            while let Some(write) = batch.pop() {
                // An edit or deletion takes its message's old words out of the index.
                if matches!(write, WriteRequest::Change { .. })
                    && let Err(error) = index.catch_up(&tx)
                {
                    batch.push(write);
                    return Err(error);
                }
                applied.push(apply(&tx, &mut self.chats, &mut index, write, now));
            }
            index.catch_up(&tx)?;
            tx.commit()?;
            Ok::<_, StoreError>(())
        })();
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());

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

        // Committed: publish new messages and changes in id order, each before its caller
        // hears back, so a sender's own streams have the echo no later than the reply.
        for item in applied {
            match item {
                Applied::Unit(reply, result) => drop(reply.send(result)),
                Applied::Chat(reply, result) => drop(reply.send(result)),
                Applied::Members(reply, result) => drop(reply.send(result)),
                Applied::Read(reply, result) => drop(reply.send(result)),
                Applied::Settings(reply, result) => drop(reply.send(result)),
                Applied::Changed(reply, result) => drop(reply.send(result)),
                Applied::Message(reply, result) => {
                    let result = result.map(|(message, publish)| {
                        if let Some((event, members)) = publish {
                            self.broker.publish(event, &members);
                        }
                        message
                    });
                    drop(reply.send(result));
                }
            }
        }
    }
}

/// The messages of the open transaction that the search index does not hold yet. New
/// messages enter it together, in one statement per batch ([`SearchIndex::catch_up`]), which
/// costs FTS5 about half as much per message as one statement per row. The index must hold a
/// message before anything edits or deletes it (their triggers take its old words out of the
/// index), so a change catches up first; and it holds every message at each commit, so
/// search never misses one.
#[derive(Default)]
struct SearchIndex {
    /// The lowest id appended since the index last caught up.
    pending_from: Option<MessageId>,
}

impl SearchIndex {
    fn appended(&mut self, id: MessageId) {
        self.pending_from = Some(self.pending_from.map_or(id, |from| from.min(id)));
    }

    /// Adds the pending messages to the index. Only the writer inserts messages, so every row
    /// from the lowest pending id on is one of them.
    fn catch_up(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let Some(from) = self.pending_from.take() else {
            return Ok(());
        };
        tx.prepare_cached(
            "INSERT INTO messages_fts (rowid, subject, text)
             SELECT id, subject, text FROM messages_words WHERE id >= ?1",
        )?
        .execute([id_to_sql(from)])?;
        Ok(())
    }
}

/// Applies one write inside the batch's transaction so that a failing write leaves no trace
/// and does not disturb the others: in a savepoint, or, for an append, as a single statement.
/// A new message is noted in `index`, which the caller brings up to date.
fn apply(
    tx: &Transaction<'_>,
    chats: &mut ChatCache,
    index: &mut SearchIndex,
    write: WriteRequest,
    now: i64,
) -> Applied {
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
            device,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                writes::save_token(conn, &token, &user, expires_at, now)?;
                match device {
                    Some(device) => writes::save_device(conn, &device, &user, now),
                    None => Ok(()),
                }
            });
            Applied::Unit(reply, result)
        }
        WriteRequest::RevokeToken { token, reply } => {
            let result = in_savepoint(tx, |conn| writes::revoke_token(conn, &token));
            Applied::Unit(reply, result)
        }
        WriteRequest::RevokeTokensOf { user, reply } => {
            let result = in_savepoint(tx, |conn| writes::revoke_tokens_of(conn, &user));
            Applied::Unit(reply, result)
        }
        WriteRequest::SetPassword {
            user,
            password_hash,
            deactivated_at,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                writes::set_password(conn, &user, &password_hash, deactivated_at)
            });
            Applied::Unit(reply, result)
        }
        WriteRequest::CreateChat {
            caller,
            members,
            new_id,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                writes::create_chat(conn, &caller, &members, new_id, now)
            });
            // It may have brought the caller back into an existing chat.
            if let Ok((chat, _)) = &result {
                chats.forget(chat);
            }
            Applied::Chat(reply, result)
        }
        WriteRequest::LeaveChat { chat, user, reply } => {
            let result = in_savepoint(tx, |conn| writes::leave_chat(conn, &chat, &user, now));
            chats.forget(&chat);
            Applied::Members(reply, result)
        }
        WriteRequest::Block {
            blocker,
            blocked,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| writes::block(conn, &blocker, &blocked, now));
            Applied::Unit(reply, result)
        }
        WriteRequest::Unblock {
            blocker,
            blocked,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| writes::unblock(conn, &blocker, &blocked));
            Applied::Unit(reply, result)
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
                if is_new {
                    index.appended(stored.id);
                }
                let publish =
                    is_new.then(|| (Arc::new(StoredEvent::arrival(stored.clone())), chat.members));
                Ok((stored, publish))
            })();
            Applied::Message(reply, result)
        }
        WriteRequest::Change {
            user,
            change,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                let chat = chats
                    .get(conn, &change.target().chat_id)?
                    .filter(|chat| chat.members.contains(&user))
                    .ok_or(StoreError::ChatNotFound)?;
                let (message, event) = writes::change(conn, chat.row, &user, &change, now)?;
                Ok((message, event.map(|event| (Arc::new(event), chat.members))))
            });
            Applied::Message(reply, result)
        }
        WriteRequest::MarkRead {
            user,
            chat,
            up_to,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                activity::mark_read(conn, chats, &user, &chat, up_to)
            });
            Applied::Read(reply, result)
        }
        WriteRequest::UpdateSettings {
            user,
            change,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| activity::update_settings(conn, &user, change));
            Applied::Settings(reply, result)
        }
        WriteRequest::SetPresence {
            user,
            offline_since,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| match offline_since {
                None => activity::set_online(conn, &user),
                Some(at) => activity::set_offline(conn, &user, at),
            });
            Applied::Changed(reply, result)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chat_core::content::{Subject, Text};
    use chat_core::ids::{ClientId, MessageId};
    use rusqlite::params;

    use super::*;
    use crate::store::sqlite::schema;

    /// A writer on a fresh database, and the directory that holds it.
    fn writer() -> (tempfile::TempDir, Writer, Arc<Broker>) {
        let dir = tempfile::tempdir().unwrap();
        let conn = schema::open_writer(&dir.path().join("chat.db")).unwrap();
        let broker = Broker::new();
        (
            dir,
            Writer::new(conn, Arc::clone(&broker), Metrics::new()),
            broker,
        )
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    /// A write and where its answer arrives.
    fn queued<T>(
        make: impl FnOnce(Reply<T>) -> WriteRequest,
    ) -> (WriteRequest, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (make(reply), answer)
    }

    fn create_account(id: &str) -> (WriteRequest, oneshot::Receiver<Result<(), StoreError>>) {
        queued(|reply| WriteRequest::CreateAccount {
            user: user(id),
            password_hash: "hash".into(),
            reply,
        })
    }

    fn append(
        sender: &str,
        chat_id: &ChatId,
        client_id: &str,
    ) -> (
        WriteRequest,
        oneshot::Receiver<Result<StoredMessage, StoreError>>,
    ) {
        let message = NewMessage {
            chat_id: chat_id.clone(),
            client_id: ClientId::parse(client_id).unwrap(),
            subject: Subject::default(),
            text: Text::parse(&format!("text of {client_id}")).unwrap(),
            claimed_sender: None,
            reply_to: None,
        };
        queued(|reply| WriteRequest::Append {
            sender: user(sender),
            message,
            reply,
        })
    }

    /// The answer a committed batch gave; it must be there, since callers hear back before
    /// `commit_batch` returns.
    fn answer<T>(mut answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        answer.try_recv().expect("the write was not answered")
    }

    /// Commits one batch of `writes`, in this order.
    fn commit(writer: &mut Writer, writes: Vec<WriteRequest>) {
        let mut batch = writes;
        writer.commit_batch(&mut batch);
        assert!(batch.is_empty(), "writes left in the batch");
    }

    /// Alice and Bob with accounts, a chat of both, and an expired token of Alice's.
    fn alice_and_bob(writer: &mut Writer) -> ChatId {
        let (alice, alice_created) = create_account("alice");
        let (bob, bob_created) = create_account("bob");
        let (chat, chat_created) = queued(|reply| WriteRequest::CreateChat {
            caller: user("alice"),
            members: Members::parse(["alice", "bob"]).unwrap(),
            new_id: ChatId::from_random(7),
            reply,
        });
        let (token, token_saved) = queued(|reply| WriteRequest::SaveToken {
            token: [1; 32],
            user: user("alice"),
            expires_at: 1,
            device: None,
            reply,
        });
        commit(writer, vec![alice, bob, chat, token]);
        answer(alice_created).unwrap();
        answer(bob_created).unwrap();
        answer(token_saved).unwrap();
        answer(chat_created).unwrap().0
    }

    fn count(dir: &tempfile::TempDir, sql: &str) -> i64 {
        let conn = schema::open_reader(&dir.path().join("chat.db")).unwrap();
        conn.query_row(sql, params![], |row| row.get(0)).unwrap()
    }

    #[test]
    fn a_failing_write_leaves_the_rest_of_its_batch_committed_and_answered() {
        let (dir, mut writer, broker) = writer();
        let chat = alice_and_bob(&mut writer);
        let mut bobs_feed = broker.subscribe(&user("bob"));

        let (first, first_stored) = append("alice", &chat, "m1");
        let (taken, taken_refused) = create_account("alice");
        // Deletes the expired token, then fails on its insert (no such account): the
        // savepoint must bring the deleted token back.
        let (orphan, orphan_refused) = queued(|reply| WriteRequest::SaveToken {
            token: [2; 32],
            user: user("nobody"),
            expires_at: i64::MAX,
            device: None,
            reply,
        });
        let (outsider, outsider_refused) = append("carol", &chat, "m2");
        let (second, second_stored) = append("alice", &chat, "m3");
        let (carol, carol_created) = create_account("carol");
        commit(
            &mut writer,
            vec![first, taken, orphan, outsider, second, carol],
        );

        let first = answer(first_stored).unwrap();
        assert!(matches!(
            answer(taken_refused),
            Err(StoreError::AccountExists(user)) if user.as_str() == "alice"
        ));
        assert!(matches!(
            answer(orphan_refused),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            answer(outsider_refused),
            Err(StoreError::ChatNotFound)
        ));
        let second = answer(second_stored).unwrap();
        answer(carol_created).unwrap();

        assert!(first.id < second.id, "ids follow the order of the batch");
        assert_eq!(count(&dir, "SELECT count(*) FROM accounts"), 3);
        assert_eq!(count(&dir, "SELECT count(*) FROM messages"), 2);
        assert_eq!(
            count(&dir, "SELECT count(*) FROM tokens WHERE expires_at = 1"),
            1,
            "the failed write's delete was rolled back"
        );
        assert_eq!(
            bobs_feed
                .receiver
                .try_recv()
                .unwrap()
                .stored()
                .map(|e| &e.message),
            Some(&first)
        );
        assert_eq!(
            bobs_feed
                .receiver
                .try_recv()
                .unwrap()
                .stored()
                .map(|e| &e.message),
            Some(&second)
        );
        assert!(
            bobs_feed.receiver.try_recv().is_err(),
            "published only once"
        );
    }

    #[test]
    fn a_repeated_client_id_is_answered_with_the_stored_message_and_published_once() {
        let (_dir, mut writer, broker) = writer();
        let chat = alice_and_bob(&mut writer);
        let mut alices_feed = broker.subscribe(&user("alice"));

        let (first, first_stored) = append("alice", &chat, "same");
        let (retry, retry_stored) = append("alice", &chat, "same");
        commit(&mut writer, vec![first, retry]);
        let (late_retry, late_retry_stored) = append("alice", &chat, "same");
        commit(&mut writer, vec![late_retry]);

        let stored = answer(first_stored).unwrap();
        assert_eq!(answer(retry_stored).unwrap(), stored);
        assert_eq!(answer(late_retry_stored).unwrap(), stored);
        assert_eq!(
            alices_feed
                .receiver
                .try_recv()
                .unwrap()
                .stored()
                .map(|m| m.id),
            Some(stored.id)
        );
        assert!(alices_feed.receiver.try_recv().is_err());
    }

    #[test]
    fn a_batch_that_cannot_commit_is_refused_whole_and_publishes_nothing() {
        let (dir, mut writer, broker) = writer();
        let chat = alice_and_bob(&mut writer);
        let mut alices_feed = broker.subscribe(&user("alice"));
        // Another connection holds the write lock, so the batch cannot even begin.
        writer.conn.busy_timeout(Duration::from_millis(10)).unwrap();
        let blocker = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

        let (message, message_refused) = append("alice", &chat, "m1");
        let (carol, carol_refused) = create_account("carol");
        commit(&mut writer, vec![message, carol]);

        assert!(matches!(
            answer(message_refused),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            answer(carol_refused),
            Err(StoreError::Unavailable(_))
        ));
        assert!(alices_feed.receiver.try_recv().is_err());
        blocker.execute_batch("ROLLBACK").unwrap();
        assert_eq!(count(&dir, "SELECT count(*) FROM messages"), 0);

        // The writer carries on once the lock is free.
        let (message, message_stored) = append("alice", &chat, "m1");
        commit(&mut writer, vec![message]);
        assert_eq!(
            answer(message_stored).unwrap().id,
            MessageId(1),
            "the refused append left no id behind"
        );
    }

    #[test]
    fn the_search_index_holds_each_message_as_committed_even_if_changed_in_its_own_batch() {
        let (dir, mut writer, _broker) = writer();
        let chat = alice_and_bob(&mut writer);
        let target = |id| chat_core::requests::MessageRef {
            chat_id: chat.clone(),
            message_id: MessageId(id),
        };
        let (first, first_stored) = append("alice", &chat, "m1");
        let (second, second_stored) = append("alice", &chat, "m2");
        // The first two messages of a fresh database are 1 and 2: changed in the same batch
        // that appends them, before the index has caught up with them.
        let (edit, edited) = queued(|reply| WriteRequest::Change {
            user: user("alice"),
            change: Change::Edit(chat_core::requests::Edit {
                target: target(1),
                subject: Subject::default(),
                text: Text::parse("rewritten entirely").unwrap(),
            }),
            reply,
        });
        let (delete, deleted) = queued(|reply| WriteRequest::Change {
            user: user("alice"),
            change: Change::Delete(target(2)),
            reply,
        });
        let (third, third_stored) = append("alice", &chat, "m3");
        commit(&mut writer, vec![first, second, edit, delete, third]);
        assert_eq!(answer(first_stored).unwrap().id, MessageId(1));
        assert_eq!(answer(second_stored).unwrap().id, MessageId(2));
        answer(edited).unwrap();
        answer(deleted).unwrap();
        let third = answer(third_stored).unwrap();

        let found = |query: &str| {
            count(
                &dir,
                &format!(
                    "SELECT coalesce(max(rowid), 0) FROM messages_fts WHERE messages_fts MATCH '{query}'"
                ),
            )
        };
        assert_eq!(found("rewritten"), 1, "the edit's words are found");
        assert_eq!(found("m1"), 0, "the edited message's old words are gone");
        assert_eq!(found("m2"), 0, "the deleted message's words are gone");
        assert_eq!(found("m3"), id_to_sql(third.id), "the last append is found");
        // FTS5 compares its index with the messages table: any word indexed but not in a row
        // (or the other way round) fails it.
        writer
            .conn
            .execute(
                "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
                [],
            )
            .expect("the search index matches the messages");
    }
}
