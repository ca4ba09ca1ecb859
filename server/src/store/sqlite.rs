//! The embedded SQLite backend: one file in WAL mode, one writer thread that commits
//! concurrent writes together (group commit), and a small pool of reader connections.
//!
//! Why one writer: SQLite allows a single writer at a time anyway, and doing every write on
//! one thread makes message ids increase in commit order and lets that thread hand committed
//! messages to the broker in exactly that order. Batching many requests into one transaction
//! pays for one fsync instead of one per message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{HistoryQuery, Members, NewMessage};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::{ChatSummary, HistoryPage, Store, StoreError, StoredMessage, TokenHash};
use crate::clock::unix_now;
use crate::fanout::Broker;

/// How many queued writes one transaction takes at most.
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer thread; senders wait when it is full.
const QUEUE_DEPTH: usize = 4096;
/// Idle reader connections kept open.
const IDLE_READERS: usize = 8;
/// Tokens whose owner is kept in memory; past this the cache starts over.
const TOKEN_CACHE_MAX: usize = 65_536;
/// Chats whose row id and members the writer keeps in memory; past this it starts over.
const CHAT_CACHE_MAX: usize = 16_384;

const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES accounts(user_id),
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens(expires_at);
CREATE TABLE IF NOT EXISTS chats (
    id         INTEGER PRIMARY KEY,
    public_id  TEXT NOT NULL UNIQUE,
    -- the sorted member ids joined by spaces: one set of users, one chat
    member_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_members (
    chat    INTEGER NOT NULL REFERENCES chats(id),
    user_id TEXT NOT NULL REFERENCES accounts(user_id),
    PRIMARY KEY (chat, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chat_members_by_user ON chat_members(user_id, chat);
CREATE TABLE IF NOT EXISTS messages (
    -- AUTOINCREMENT: ids are never reused, even if the newest messages are deleted one day
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    chat      INTEGER NOT NULL REFERENCES chats(id),
    sender    TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject   TEXT NOT NULL,
    text      TEXT NOT NULL,
    sent_at   INTEGER NOT NULL,
    UNIQUE (chat, sender, client_id)
);
CREATE INDEX IF NOT EXISTS messages_by_chat ON messages(chat, id);
";

/// The SQLite [`Store`].
pub struct SqliteStore {
    writes: mpsc::Sender<Write>,
    readers: Arc<ReaderPool>,
    tokens: Arc<TokenCache>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread, which
    /// publishes every committed message to `broker`.
    pub fn open(path: &Path, broker: Arc<Broker>) -> Result<Self, StoreError> {
        let conn = open_connection(path)?;
        // Checkpoint every 10,000 pages (40 MB of WAL) rather than SQLite's 1,000: a commit
        // of a batch writes tens of pages, so the default checkpointed (copying pages into
        // the database file and fsyncing it) many times a second under load.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 10000;")
            .map_err(unavailable)?;
        migrate(&conn)?;
        let newest: Option<u64> = conn
            .query_row("SELECT max(id) FROM messages", [], |row| row.get(0))
            .map_err(unavailable)?;
        broker.start_after(MessageId(newest.unwrap_or(0)));

        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                Writer {
                    conn,
                    broker,
                    chats: HashMap::new(),
                }
                .run(queue)
            })
            .map_err(|error| {
                StoreError::Unavailable(format!("cannot start writer thread: {error}"))
            })?;
        let readers = Arc::new(ReaderPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(Self {
            writes,
            readers,
            tokens: Arc::new(TokenCache::default()),
        })
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(query))
            .await
            .map_err(|error| StoreError::Unavailable(format!("reader task failed: {error}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, user: &UserId, password_hash: String) -> Result<(), StoreError> {
        let user = user.clone();
        self.write(|reply| Write::CreateAccount {
            user,
            password_hash,
            reply,
        })
        .await
    }

    async fn password_hash(&self, user: &UserId) -> Result<Option<String>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            conn.query_row(
                "SELECT password_hash FROM accounts WHERE user_id = ?1",
                [user.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn save_token(
        &self,
        token: TokenHash,
        user: &UserId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let owner = user.clone();
        self.write(|reply| Write::SaveToken {
            token,
            user: owner,
            expires_at,
            reply,
        })
        .await?;
        // A token is only handed out after this returns, so nobody can have revoked it yet.
        self.tokens
            .remember(token, user, expires_at, self.tokens.revocations());
        Ok(())
    }

    async fn token_owner(&self, token: TokenHash, now: i64) -> Result<Option<UserId>, StoreError> {
        if let Some(cached) = self.tokens.owner(&token, now) {
            return Ok(cached);
        }
        let revocations = self.tokens.revocations();
        let found = self
            .read(move |conn| {
                let row: Option<(String, i64)> = conn
                    .prepare_cached(
                        "SELECT user_id, expires_at FROM tokens WHERE token_hash = ?1 AND expires_at > ?2",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_row(params![token.as_slice(), now], |row| {
                                Ok((row.get(0)?, row.get(1)?))
                            })
                            .optional()
                    })
                    .map_err(unavailable)?;
                row.map(|(id, expires_at)| Ok((stored_user(&id)?, expires_at)))
                    .transpose()
            })
            .await?;
        Ok(found.map(|(owner, expires_at)| {
            self.tokens.remember(token, &owner, expires_at, revocations);
            owner
        }))
    }

    async fn revoke_token(&self, token: TokenHash) -> Result<(), StoreError> {
        self.write(|reply| Write::RevokeToken { token, reply })
            .await?;
        // Only after the commit: a lookup that starts now reads the revocation from disk.
        self.tokens.forget(&token);
        Ok(())
    }

    async fn create_chat(&self, members: &Members, new_id: ChatId) -> Result<ChatId, StoreError> {
        let members = members.clone();
        self.write(|reply| Write::CreateChat {
            members,
            new_id,
            reply,
        })
        .await
    }

    async fn is_member(&self, chat: &ChatId, user: &UserId) -> Result<bool, StoreError> {
        let (chat, user) = (chat.clone(), user.clone());
        self.read(move |conn| Ok(member_chat_key(conn, &chat, &user)?.is_some()))
            .await
    }

    async fn append(
        &self,
        sender: &UserId,
        message: NewMessage,
    ) -> Result<StoredMessage, StoreError> {
        let sender = sender.clone();
        self.write(|reply| Write::Append {
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
        self.read(move |conn| {
            let chat =
                member_chat_key(conn, &query.chat_id, &user)?.ok_or(StoreError::ChatNotFound)?;
            let before = query.before.map_or(i64::MAX, |id| id_to_sql(id.0));
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, sender, client_id, subject, text, sent_at FROM messages
                     WHERE chat = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            // One row more than asked tells whether older messages remain.
            let mut messages = statement
                .query_map(params![chat, before, query.limit + 1], |row| {
                    message_row(row, &query.chat_id)
                })
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(unavailable)?
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let has_more = messages.len() > query.limit as usize;
            messages.truncate(query.limit as usize);
            messages.reverse();
            Ok(HistoryPage { messages, has_more })
        })
        .await
    }

    async fn messages_after(
        &self,
        user: &UserId,
        chat: Option<&ChatId>,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let (user, chat) = (user.clone(), chat.cloned());
        let after = id_to_sql(after.0);
        self.read(move |conn| match chat {
            Some(chat_id) => {
                let chat = member_chat_key(conn, &chat_id, &user)?.ok_or(StoreError::ChatNotFound)?;
                let mut statement = conn
                    .prepare_cached(
                        "SELECT id, sender, client_id, subject, text, sent_at FROM messages
                         WHERE chat = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                    )
                    .map_err(unavailable)?;
                statement
                    .query_map(params![chat, after, limit], |row| message_row(row, &chat_id))
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(unavailable)?
                    .into_iter()
                    .collect()
            }
            None => {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at, c.public_id
                         FROM messages m JOIN chats c ON c.id = m.chat
                         WHERE m.id > ?1
                           AND m.chat IN (SELECT chat FROM chat_members WHERE user_id = ?2)
                         ORDER BY m.id LIMIT ?3",
                    )
                    .map_err(unavailable)?;
                statement
                    .query_map(params![after, user.as_str(), limit], |row| {
                        let chat_id: String = row.get(6)?;
                        match stored_chat(&chat_id) {
                            Ok(chat_id) => message_row(row, &chat_id),
                            Err(error) => Ok(Err(error)),
                        }
                    })
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(unavailable)?
                    .into_iter()
                    .collect()
            }
        })
        .await
    }

    async fn chats_of(&self, user: &UserId) -> Result<Vec<ChatSummary>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let mut members: HashMap<String, Vec<UserId>> = HashMap::new();
            let mut statement = conn
                .prepare_cached(
                    "SELECT c.public_id, other.user_id
                     FROM chat_members mine
                     JOIN chat_members other ON other.chat = mine.chat
                     JOIN chats c ON c.id = mine.chat
                     WHERE mine.user_id = ?1 ORDER BY other.user_id",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map([user.as_str()], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(unavailable)?;
            for (chat, member) in rows {
                members.entry(chat).or_default().push(stored_user(&member)?);
            }

            let mut statement = conn
                .prepare_cached(
                    "SELECT c.public_id, c.created_at,
                            m.id, m.sender, m.client_id, m.subject, m.text, m.sent_at
                     FROM chat_members mine
                     JOIN chats c ON c.id = mine.chat
                     LEFT JOIN messages m ON m.id = (SELECT max(id) FROM messages WHERE chat = c.id)
                     WHERE mine.user_id = ?1
                     ORDER BY coalesce(m.sent_at, c.created_at) DESC, coalesce(m.id, 0) DESC, c.id DESC",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map([user.as_str()], |row| {
                    let public_id: String = row.get(0)?;
                    let created_at: i64 = row.get(1)?;
                    let last: Option<(i64, String, String, String, String, i64)> = match row.get::<_, Option<i64>>(2)? {
                        None => None,
                        Some(id) => Some((id, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?)),
                    };
                    Ok((public_id, created_at, last))
                })
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(unavailable)?;
            rows.into_iter()
                .map(|(public_id, created_at, last)| {
                    let chat_id = stored_chat(&public_id)?;
                    let last_message = last
                        .map(|(id, sender, client_id, subject, text, sent_at)| {
                            Ok::<_, StoreError>(StoredMessage {
                                id: MessageId(id_from_sql(id)),
                                chat_id: chat_id.clone(),
                                sender: stored_user(&sender)?,
                                client_id,
                                subject,
                                text,
                                sent_at,
                            })
                        })
                        .transpose()?;
                    Ok(ChatSummary {
                        members: members.remove(&public_id).unwrap_or_default(),
                        chat_id,
                        last_message,
                        created_at,
                    })
                })
                .collect()
        })
        .await
    }
}

/// A write for the writer thread, with where to send its result.
enum Write {
    CreateAccount {
        user: UserId,
        password_hash: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    SaveToken {
        token: TokenHash,
        user: UserId,
        expires_at: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    RevokeToken {
        token: TokenHash,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    CreateChat {
        members: Members,
        new_id: ChatId,
        reply: oneshot::Sender<Result<ChatId, StoreError>>,
    },
    Append {
        sender: UserId,
        message: NewMessage,
        reply: oneshot::Sender<Result<StoredMessage, StoreError>>,
    },
}

/// A stored message, with the members to publish it to when it is new (`None` for a repeat).
type Appended = (StoredMessage, Option<Arc<[UserId]>>);

/// A finished write whose caller is told only after the transaction commits.
enum Done {
    Unit(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Chat(
        oneshot::Sender<Result<ChatId, StoreError>>,
        Result<ChatId, StoreError>,
    ),
    /// A new message comes with the members to publish it to; a repeat comes with `None`.
    Message(
        oneshot::Sender<Result<StoredMessage, StoreError>>,
        Result<Appended, StoreError>,
    ),
}

struct Writer {
    conn: Connection,
    broker: Arc<Broker>,
    /// Chat id → its row id and members, so an append needs no lookup. Membership never
    /// changes once a chat exists, so this never goes stale; it is cleared when a
    /// transaction fails, since it may hold a chat that was never committed.
    chats: HashMap<ChatId, CachedChat>,
}

/// A chat as the writer needs it for every append.
#[derive(Clone)]
struct CachedChat {
    key: i64,
    members: Arc<[UserId]>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Write>) {
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

    fn commit_batch(&mut self, batch: &mut Vec<Write>) {
        let now = unix_now();
        let mut done = Vec::with_capacity(batch.len());
        let outcome = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for write in batch.drain(..) {
                done.push(apply(&tx, &mut self.chats, write, now));
            }
            tx.commit()
        })();

        if let Err(error) = outcome {
            tracing::error!(%error, "commit failed; the whole batch is refused");
            self.chats.clear();
            let cause = || StoreError::Unavailable(format!("commit failed: {error}"));
            for write in batch.drain(..) {
                write.refuse(cause());
            }
            for item in done {
                item.refuse(cause());
            }
            return;
        }

        // Committed: publish new messages in id order, each before its caller hears back, so
        // a sender's own streams have the echo no later than the reply.
        for item in done {
            match item {
                Done::Unit(reply, result) => drop(reply.send(result)),
                Done::Chat(reply, result) => drop(reply.send(result)),
                Done::Message(reply, result) => {
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

impl Write {
    fn refuse(self, error: StoreError) {
        match self {
            Write::CreateAccount { reply, .. }
            | Write::SaveToken { reply, .. }
            | Write::RevokeToken { reply, .. } => drop(reply.send(Err(error))),
            Write::CreateChat { reply, .. } => drop(reply.send(Err(error))),
            Write::Append { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

impl Done {
    fn refuse(self, error: StoreError) {
        match self {
            Done::Unit(reply, _) => drop(reply.send(Err(error))),
            Done::Chat(reply, _) => drop(reply.send(Err(error))),
            Done::Message(reply, _) => drop(reply.send(Err(error))),
        }
    }
}

/// Applies one write inside the batch's transaction so that a failing write leaves no trace
/// and does not disturb the others: in a savepoint, or, for an append, as a single statement.
fn apply(
    tx: &Transaction<'_>,
    chats: &mut HashMap<ChatId, CachedChat>,
    write: Write,
    now: i64,
) -> Done {
    fn in_savepoint<T>(
        tx: &Transaction<'_>,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Cached statements: parsing these on every write cost more than the insert itself.
        let run = |sql: &str| {
            tx.prepare_cached(sql)
                .and_then(|mut statement| statement.execute([]))
                .map_err(unavailable)
        };
        run("SAVEPOINT one_write")?;
        let result = work(tx);
        if result.is_err() {
            run("ROLLBACK TO one_write")?;
        }
        run("RELEASE one_write")?;
        result
    }

    match write {
        Write::CreateAccount {
            user,
            password_hash,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                let inserted = conn
                    .execute(
                        "INSERT INTO accounts (user_id, password_hash, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (user_id) DO NOTHING",
                        params![user.as_str(), password_hash, now],
                    )
                    .map_err(unavailable)?;
                if inserted == 0 {
                    Err(StoreError::AccountExists(user))
                } else {
                    Ok(())
                }
            });
            Done::Unit(reply, result)
        }
        Write::SaveToken {
            token,
            user,
            expires_at,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| {
                // Expired tokens are useless; dropping them here keeps the table small.
                conn.execute("DELETE FROM tokens WHERE expires_at <= ?1", [now])
                    .map_err(unavailable)?;
                conn.execute(
                    "INSERT INTO tokens (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
                    params![token.as_slice(), user.as_str(), expires_at],
                )
                .map_err(unavailable)?;
                Ok(())
            });
            Done::Unit(reply, result)
        }
        Write::RevokeToken { token, reply } => {
            let result = in_savepoint(tx, |conn| {
                conn.execute(
                    "DELETE FROM tokens WHERE token_hash = ?1",
                    [token.as_slice()],
                )
                .map_err(unavailable)?;
                Ok(())
            });
            Done::Unit(reply, result)
        }
        Write::CreateChat {
            members: wanted,
            new_id,
            reply,
        } => {
            let result = in_savepoint(tx, |conn| create_chat(conn, &wanted, &new_id, now));
            Done::Chat(reply, result)
        }
        Write::Append {
            sender,
            message,
            reply,
        } => {
            // No savepoint: an append changes the database with one INSERT, which SQLite
            // applies whole or not at all. A savepoint would copy every page the insert
            // touches into a sub-journal first, and appends are nearly all the writes.
            let result = (|| {
                let chat = cached_chat(tx, chats, &message.chat_id)?
                    .filter(|chat| chat.members.contains(&sender))
                    .ok_or(StoreError::ChatNotFound)?;
                let (stored, is_new) = append(tx, chat.key, &sender, message, now)?;
                Ok((stored, is_new.then_some(chat.members)))
            })();
            Done::Message(reply, result)
        }
    }
}

fn create_chat(
    conn: &Connection,
    wanted: &Members,
    new_id: &ChatId,
    now: i64,
) -> Result<ChatId, StoreError> {
    for user in wanted.as_slice() {
        let exists = conn
            .query_row(
                "SELECT 1 FROM accounts WHERE user_id = ?1",
                [user.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map_err(unavailable)?
            .is_some();
        if !exists {
            return Err(StoreError::NoSuchAccount(user.clone()));
        }
    }
    let key = wanted
        .as_slice()
        .iter()
        .map(UserId::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let inserted = conn
        .execute(
            "INSERT INTO chats (public_id, member_key, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (member_key) DO NOTHING",
            params![new_id.as_str(), key, now],
        )
        .map_err(unavailable)?;
    if inserted == 1 {
        let chat = conn.last_insert_rowid();
        let mut add = conn
            .prepare_cached("INSERT INTO chat_members (chat, user_id) VALUES (?1, ?2)")
            .map_err(unavailable)?;
        for user in wanted.as_slice() {
            add.execute(params![chat, user.as_str()])
                .map_err(unavailable)?;
        }
        return Ok(new_id.clone());
    }
    let existing: String = conn
        .query_row(
            "SELECT public_id FROM chats WHERE member_key = ?1",
            [key],
            |row| row.get(0),
        )
        .map_err(unavailable)?;
    stored_chat(&existing)
}

/// Inserts the message, or finds the one stored earlier under the same client id. The bool
/// says whether it is new. Inserting first costs a retry one more statement but spares every
/// new message (nearly all of them) a lookup.
fn append(
    conn: &Connection,
    chat: i64,
    sender: &UserId,
    message: NewMessage,
    now: i64,
) -> Result<(StoredMessage, bool), StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (chat, sender, client_id, subject, text, sent_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (chat, sender, client_id) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                chat,
                sender.as_str(),
                message.client_id.as_str(),
                message.subject.as_str(),
                message.text.as_str(),
                now
            ])
        })
        .map_err(unavailable)?;
    if inserted == 1 {
        let stored = StoredMessage {
            id: MessageId(id_from_sql(conn.last_insert_rowid())),
            chat_id: message.chat_id,
            sender: sender.clone(),
            client_id: message.client_id.as_str().to_owned(),
            subject: message.subject.as_str().to_owned(),
            text: message.text.as_str().to_owned(),
            sent_at: now,
        };
        return Ok((stored, true));
    }
    let earlier = conn
        .prepare_cached(
            "SELECT id, sender, client_id, subject, text, sent_at FROM messages
             WHERE chat = ?1 AND sender = ?2 AND client_id = ?3",
        )
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![chat, sender.as_str(), message.client_id.as_str()],
                    |row| message_row(row, &message.chat_id),
                )
                .optional()
        })
        .map_err(unavailable)?
        .transpose()?;
    // The insert was skipped because this row exists; not finding it means a damaged file.
    let earlier = earlier.ok_or_else(|| {
        StoreError::Unavailable("a message conflicts with one that cannot be read".into())
    })?;
    Ok((earlier, false))
}

/// The chat's row id and members, from the writer's cache or the database; `None` if there
/// is no such chat.
fn cached_chat(
    conn: &Connection,
    chats: &mut HashMap<ChatId, CachedChat>,
    chat_id: &ChatId,
) -> Result<Option<CachedChat>, StoreError> {
    if let Some(cached) = chats.get(chat_id) {
        return Ok(Some(cached.clone()));
    }
    let key: Option<i64> = conn
        .prepare_cached("SELECT id FROM chats WHERE public_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([chat_id.as_str()], |row| row.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    let Some(key) = key else { return Ok(None) };
    let chat = CachedChat {
        key,
        members: load_members(conn, key)?,
    };
    if chats.len() >= CHAT_CACHE_MAX {
        chats.clear();
    }
    chats.insert(chat_id.clone(), chat.clone());
    Ok(Some(chat))
}

fn load_members(conn: &Connection, chat: i64) -> Result<Arc<[UserId]>, StoreError> {
    let mut statement = conn
        .prepare_cached("SELECT user_id FROM chat_members WHERE chat = ?1")
        .map_err(unavailable)?;
    let ids = statement
        .query_map([chat], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(unavailable)?;
    ids.iter().map(|id| stored_user(id)).collect()
}

/// The row id of `chat` if `user` is one of its members. A missing chat and a foreign chat
/// look the same from here on.
fn member_chat_key(
    conn: &Connection,
    chat: &ChatId,
    user: &UserId,
) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached(
        "SELECT c.id FROM chats c JOIN chat_members m ON m.chat = c.id
         WHERE c.public_id = ?1 AND m.user_id = ?2",
    )
    .and_then(|mut statement| {
        statement
            .query_row([chat.as_str(), user.as_str()], |row| row.get(0))
            .optional()
    })
    .map_err(unavailable)
}

/// Reads `id, sender, client_id, subject, text, sent_at` (the first six columns).
fn message_row(
    row: &rusqlite::Row<'_>,
    chat_id: &ChatId,
) -> rusqlite::Result<Result<StoredMessage, StoreError>> {
    let id: i64 = row.get(0)?;
    let sender: String = row.get(1)?;
    let (client_id, subject, text, sent_at) = (row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
    Ok(stored_user(&sender).map(|sender| StoredMessage {
        id: MessageId(id_from_sql(id)),
        chat_id: chat_id.clone(),
        sender,
        client_id,
        subject,
        text,
        sent_at,
    }))
}

/// Values read back from the database were valid when written; if one is not (a damaged or
/// hand-edited file), report storage trouble rather than panic.
fn stored_user(id: &str) -> Result<UserId, StoreError> {
    UserId::parse(id)
        .map_err(|error| StoreError::Unavailable(format!("bad user id in database: {error}")))
}

fn stored_chat(id: &str) -> Result<ChatId, StoreError> {
    ChatId::parse(id)
        .map_err(|error| StoreError::Unavailable(format!("bad chat id in database: {error}")))
}

/// SQLite integers are signed; message ids stay far below 2^63, and any larger client
/// cursor simply means "after everything".
fn id_to_sql(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn id_from_sql(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    // FULL: a commit survives power loss, not only a killed process. Group commit keeps
    // the cost to one fsync per batch.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
    .map_err(unavailable)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(unavailable)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "database schema version {version} is newer than this server understands ({SCHEMA_VERSION}); upgrade the server"
        )));
    }
    conn.execute_batch(SCHEMA).map_err(unavailable)?;
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(unavailable)?;
    Ok(())
}

/// The owners of recently used tokens, so that authenticating a call (every RPC does) needs
/// no database read. Entries carry their expiry and are checked against the clock on every
/// hit; a revocation removes the entry after its commit.
///
/// The race this must not lose: a lookup that read the token from disk just before a
/// revocation committed must not put it back into the cache afterwards. Every revocation
/// bumps a counter, a lookup notes the counter before reading, and an entry is only
/// remembered if no revocation happened in between.
///
/// This works because this server is the only one writing this database. A backend shared
/// by several servers must not cache tokens like this: another server's SignOut would not
/// reach this cache.
#[derive(Default)]
struct TokenCache {
    state: Mutex<TokenCacheState>,
}

#[derive(Default)]
struct TokenCacheState {
    owners: HashMap<TokenHash, (UserId, i64)>,
    revocations: u64,
}

impl TokenCache {
    fn state(&self) -> std::sync::MutexGuard<'_, TokenCacheState> {
        // Every update is a single insert, remove or increment: the state is consistent even
        // if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Some(answer)` when the cache knows it: the owner, or `None` for an expired token.
    fn owner(&self, token: &TokenHash, now: i64) -> Option<Option<UserId>> {
        let mut state = self.state();
        let (owner, expires_at) = state.owners.get(token)?;
        if *expires_at > now {
            return Some(Some(owner.clone()));
        }
        state.owners.remove(token);
        Some(None)
    }

    fn revocations(&self) -> u64 {
        self.state().revocations
    }

    /// Remembers an owner read from disk when `revocations` was current.
    fn remember(&self, token: TokenHash, owner: &UserId, expires_at: i64, revocations: u64) {
        let mut state = self.state();
        if state.revocations != revocations {
            return;
        }
        if state.owners.len() >= TOKEN_CACHE_MAX {
            state.owners.clear();
        }
        state.owners.insert(token, (owner.clone(), expires_at));
    }

    fn forget(&self, token: &TokenHash) {
        let mut state = self.state();
        state.owners.remove(token);
        state.revocations += 1;
    }
}

/// Reader connections, reused across calls. WAL lets them read while the writer commits.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn with<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let reused = self
            .idle
            .lock()
            .map_err(|_| StoreError::Unavailable("reader pool poisoned".into()))?
            .pop();
        let conn = match reused {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .map_err(unavailable)?;
                conn.execute_batch("PRAGMA busy_timeout = 5000;")
                    .map_err(unavailable)?;
                conn
            }
        };
        let result = query(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }
}
