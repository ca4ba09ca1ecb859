//! The database file: its tables, the settings every connection gets, and the check that this
//! server understands the schema it finds.

use std::path::Path;

use chat_core::ids::MessageId;
use chat_core::search;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};

use super::rows::id_from_sql;
use crate::store::StoreError;

/// The migrations, in order; migration `n` (from 1) is `MIGRATIONS[n - 1]`, and `PRAGMA
/// user_version` holds how many a file has had. Never edit one that has shipped: add the
/// next. A file with a newer version than `MIGRATIONS.len()` is refused, not misread.
///
/// The first one says `IF NOT EXISTS` because files made before versioning (version 0)
/// already have its tables.
const MIGRATIONS: &[&str] = &[
    "
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
",
    "
-- Leave and Block. A chat keeps the member set it was created with (member_key) as its
-- identity; chat_members holds who is in it now, chat_departures who left and may come back.
CREATE TABLE chat_departures (
    chat    INTEGER NOT NULL REFERENCES chats(id),
    user_id TEXT NOT NULL REFERENCES accounts(user_id),
    left_at INTEGER NOT NULL,
    PRIMARY KEY (chat, user_id)
) WITHOUT ROWID;
CREATE TABLE blocks (
    blocker    TEXT NOT NULL REFERENCES accounts(user_id),
    blocked    TEXT NOT NULL REFERENCES accounts(user_id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
",
    "
-- Edits and deletions change a message's row in place: it always holds the current version.
-- A deleted message keeps its row (its place in the chat) with subject and text erased.
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
-- One row per change to a message (edit, deletion, reaction added or taken back). Its id is
-- the next id of the messages' AUTOINCREMENT sequence (see `writes::change`), so messages and
-- changes share one commit order and one stream cursor.
CREATE TABLE message_changes (
    id      INTEGER PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages(id),
    chat    INTEGER NOT NULL REFERENCES chats(id),
    kind    TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX message_changes_by_chat ON message_changes(chat, id);
-- One row per (message, emoji, person); the row id keeps the order reactions were added.
CREATE TABLE reactions (
    id      INTEGER PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages(id),
    emoji   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    UNIQUE (message, emoji, user_id)
);
",
    "
-- Replies: the id of the message answered (same chat, checked by the writer), or NULL.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
-- Search: an external-content FTS5 index of the messages' current subject and text. The
-- triggers keep it equal to those columns whatever writes them (send, edit, delete), so a
-- deleted message (text and subject blanked) is not found and an edited one is found by
-- its new words. unicode61 splits at anything that is not a letter, digit or mark (as
-- chat_core::search::words does) and, with remove_diacritics 2, ignores case and accents.
-- The prefix indexes make a typed-ahead last word (hel*) an index lookup.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, text,
    content = 'messages', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
-- secure-delete: a deleted or edited message's old words are removed from the index's
-- pages, not only marked deleted, so erased text does not linger in the file.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, subject, text) VALUES (new.id, new.subject, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
        VALUES ('delete', old.id, old.subject, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
        VALUES ('delete', old.id, old.subject, old.text);
    INSERT INTO messages_fts (rowid, subject, text) VALUES (new.id, new.subject, new.text);
END;
",
    "
-- How far each member has read each chat: every message with an id at or below up_to.
CREATE TABLE read_positions (
    chat    INTEGER NOT NULL REFERENCES chats(id),
    user_id TEXT NOT NULL REFERENCES accounts(user_id),
    up_to   INTEGER NOT NULL,
    PRIMARY KEY (chat, user_id)
) WITHOUT ROWID;
CREATE TABLE account_settings (
    user_id          TEXT PRIMARY KEY REFERENCES accounts(user_id),
    private_receipts INTEGER NOT NULL DEFAULT 0
);
-- Whether each person is online, as last announced, and when their last stream closed.
CREATE TABLE presence (
    user_id   TEXT PRIMARY KEY REFERENCES accounts(user_id),
    online    INTEGER NOT NULL,
    last_seen INTEGER
);
",
    "
-- New messages enter the search index once per group commit, in one statement run by the
-- writer (writer.rs, `SearchIndex`), instead of one trigger statement per row: FTS5 costs
-- about half as much per message that way. Edits and deletions keep their triggers.
DROP TRIGGER messages_fts_insert;
",
    "
-- FTS5 writes each commit's words as a new segment and merges segments as they pile up:
-- with its default (automerge 4) the merges were three quarters of the index's cost on the
-- writer thread. Merging 16 segments at once rewrites each entry half as often.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 16);
",
    "
-- The index takes each text as chat_core::search::index_text makes it, through `chat_words`,
-- a function the server defines on its connections (`define_functions`): its tokens, folded,
-- one space between each. So a character of a script written without spaces between words
-- (chat_core::search::is_unspaced: Chinese, Japanese, Thai...) is a token of its own, which
-- a query of several finds as a phrase, and ß and ligatures fold as on PostgreSQL. The view gives FTS5 the messages in that form for 'rebuild' and
-- for the writer's catch-up; the triggers take old words out in the same form.
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
DROP TABLE messages_fts;
CREATE VIEW messages_words AS
    SELECT id, chat_words(subject) AS subject, chat_words(text) AS text FROM messages;
CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, text,
    content = 'messages_words', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 16);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
        VALUES ('delete', old.id, chat_words(old.subject), chat_words(old.text));
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
        VALUES ('delete', old.id, chat_words(old.subject), chat_words(old.text));
    INSERT INTO messages_fts (rowid, subject, text)
        VALUES (new.id, chat_words(new.subject), chat_words(new.text));
END;
",
    "
-- When `deactivate-account` deactivated the account (seconds since the epoch), NULL while it
-- is active: New refuses a chat with it, `accounts` says so, `set-password` clears it.
ALTER TABLE accounts ADD COLUMN deactivated_at INTEGER;
",
    "
-- Device keys (SHA-256 of each): given with a session, shown at the next sign-in to climb a
-- failed-sign-in ladder of their own instead of sharing the account's budget with every
-- address (limits::sign_in). Forgotten when the password changes.
CREATE TABLE devices (
    device_hash BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES accounts(user_id),
    created_at  INTEGER NOT NULL
);
CREATE INDEX devices_by_user ON devices(user_id, created_at);
",
    "
-- How many times each chat's members have changed (a Leave, a rejoin): news of members may
-- arrive out of order (Event.members), and the version says which is newer.
ALTER TABLE chats ADD COLUMN members_version INTEGER NOT NULL DEFAULT 0;
",
];

/// The schema version this server reads and writes: the number of migrations.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for a lock held by another before it reports the database busy.
const BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000;";

/// The writer's connection to the database at `path` (created if missing), with the schema
/// in place.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // FULL: a commit survives power loss, not only a killed process. Group commit keeps
    // the cost to one fsync per batch.
    // secure_delete: the space an erased message's text leaves is zeroed, so a deleted
    // message's text is gone from the file (and, once checkpointed, from the WAL), not merely
    // unreferenced.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;",
    )?;
    conn.execute_batch(BUSY_TIMEOUT)?;
    // Checkpoint every 10,000 pages (40 MB of WAL) rather than SQLite's 1,000: a commit of a
    // batch writes tens of pages, so the default would checkpoint (copy pages into the
    // database file and fsync it) many times a second under load.
    conn.execute_batch("PRAGMA wal_autocheckpoint = 10000;")?;
    define_functions(&conn)?;
    migrate(&conn)?;
    Ok(conn)
}

/// A read-only connection, for the reader pool. WAL lets it read while the writer commits.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.execute_batch(BUSY_TIMEOUT)?;
    // Search reads only the index's rowids today; a read of its columns (a snippet, say)
    // would go through the view, which needs the function.
    define_functions(&conn)?;
    Ok(conn)
}

/// Defines the schema's own SQL function on `conn`: `chat_words(text)`, a text as the search
/// index takes it ([`search::index_text`]), which the search index's view and triggers call.
/// It is the server's, not SQLite's: a tool that edits or deletes messages (the `sqlite3`
/// shell) without it fails with "no such function: chat_words" and changes nothing, rather
/// than leave the index behind the messages.
///
/// FTS5 takes a changed or deleted message's words out of the index only when it is given
/// the very words it was given for it: so `index_text` must never change without a migration
/// that rebuilds the index (`INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')`).
/// The test `index_text_is_what_the_newest_rebuild_used` fails when it changes.
pub fn define_functions(conn: &Connection) -> Result<(), StoreError> {
    conn.create_scalar_function(
        "chat_words",
        1,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        |context| {
            let text = context
                .get_raw(0)
                .as_str_or_null()
                .map_err(|error| rusqlite::Error::UserFunctionError(Box::new(error)))?;
            Ok(text.map(search::index_text))
        },
    )?;
    Ok(())
}

/// The id of the newest event (message or change) stored, or 0 in an empty database.
pub fn newest_event(conn: &Connection) -> Result<MessageId, StoreError> {
    // Two-argument max() is NULL if either is: hence the coalesce.
    let newest: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM messages), 0),
                    coalesce((SELECT max(id) FROM message_changes), 0))",
        [],
        |row| row.get(0),
    )?;
    Ok(MessageId(id_from_sql(newest)))
}

/// A read-only connection to an existing database for the offline tools (backup, migration
/// to PostgreSQL), which must neither create a missing file nor misread a newer schema.
pub fn open_source(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|error| StoreError::Unavailable(format!("{}: {error}", path.display())))?;
    conn.execute_batch(BUSY_TIMEOUT)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "{} has schema version {version}; this server reads version {SCHEMA_VERSION}",
            path.display()
        )));
    }
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "database schema version {version} is newer than this server understands ({SCHEMA_VERSION}); upgrade the server"
        )));
    }
    // Each step and its version number commit together: a crash between steps leaves a file
    // that the next start carries on from.
    for (version, sql) in (1..=SCHEMA_VERSION)
        .zip(MIGRATIONS)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tracing::info!(version, "applying database migration");
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;

    /// A file made by the server before the index took `chat_words` (schema version 7), with
    /// messages in it, is indexed anew when a newer server opens it.
    #[test]
    fn an_older_file_is_indexed_anew_with_a_token_for_each_unspaced_character() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let texts = ["我住在东京", "Grüße aus der Straße", "plain words"];
        {
            let conn = Connection::open(&path).unwrap();
            for (version, sql) in (1..=7).zip(MIGRATIONS) {
                conn.execute_batch(&format!("{sql}; PRAGMA user_version = {version};"))
                    .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO accounts VALUES ('bob', 'x', 0);
                 INSERT INTO chats VALUES (1, 'c1', 'bob', 0);
                 INSERT INTO chat_members VALUES (1, 'bob');",
            )
            .unwrap();
            for (n, text) in (1..).zip(texts) {
                conn.execute(
                    "INSERT INTO messages (id, chat, sender, client_id, subject, text, sent_at)
                     VALUES (?1, 1, 'bob', ?1, '', ?2, 0)",
                    params![n, text],
                )
                .unwrap();
            }
            conn.execute_batch("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
                .unwrap();
        }

        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let found = |query: &str| -> Vec<i64> {
            conn.prepare(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 ORDER BY rowid",
            )
            .unwrap()
            .query_map([query], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        assert_eq!(found(r#""东 京""#), [1]);
        assert_eq!(found(r#""strasse""#), [2]);
        assert_eq!(found(r#""words""#), [3]);
        conn.execute_batch(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
        )
        .unwrap();

        // Messages indexed by the rebuild are edited and deleted as the writer does it: the
        // triggers take out exactly the words the rebuild put in.
        conn.execute_batch(
            "UPDATE messages SET text = '会议改到星期三' WHERE id = 1;
             UPDATE messages SET subject = '', text = '', deleted = 1 WHERE id = 2;",
        )
        .unwrap();
        assert_eq!(found(r#""东 京""#), Vec::<i64>::new());
        assert_eq!(found(r#""星 期 三""#), [1]);
        assert_eq!(found(r#""strasse""#), Vec::<i64>::new());
        conn.execute_batch(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
        )
        .unwrap();
    }

    /// `index_text` of every code point, each between two letters and alone, hashed
    /// (FNV-1a): what the newest migration that rebuilt the search index (version 8) used.
    /// If this fails, `index_text` changed (in `chat_core::search`, or in the Unicode tables of
    /// a newer Rust's `char::is_alphanumeric` and `to_lowercase`): an index built before no
    /// longer matches it, and FTS5 cannot take old words out of it. Add a migration that
    /// rebuilds the index (see `define_functions`), and a PostgreSQL one that computes the
    /// `search` column anew (as its migration 13 does: `postgres/words.rs`), then put the new
    /// hash here.
    #[test]
    fn index_text_is_what_the_newest_rebuild_used() {
        let mut text = String::new();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            text.push('a');
            text.push(c);
            text.push('b');
            text.push(' ');
            text.push(c);
            text.push(' ');
        }
        let hash = search::index_text(&text)
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        assert_eq!(
            hash, 14_440_579_238_388_022_111,
            "index_text changed: rebuild the index in a migration"
        );
    }
}
