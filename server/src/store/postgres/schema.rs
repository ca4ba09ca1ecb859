//! The tables, as numbered migrations applied at start-up. Several servers may start at
//! once: each runs the migrations in one transaction that first takes a transaction-level
//! advisory lock, so one migrates while the others wait for it and then find nothing to do.
//! A database whose schema is newer than this server knows is refused, not misread.

use deadpool_postgres::Client;

use crate::store::StoreError;

/// The advisory lock key that serialises migrations (any constant unlikely to collide with an
/// application sharing the database: the bytes of "chatmigr").
const MIGRATION_LOCK: i64 = 0x6368_6174_6d69_6772;

/// The migrations, in order; migration `n` (from 1) is `MIGRATIONS[n - 1]`. Never edit one
/// that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE accounts (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE TABLE tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES accounts(user_id),
    expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_by_expiry ON tokens(expires_at);
CREATE TABLE chats (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id  TEXT NOT NULL UNIQUE,
    -- the sorted member ids joined by spaces: one set of users, one chat
    member_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE chat_members (
    chat    BIGINT NOT NULL REFERENCES chats(id),
    user_id TEXT NOT NULL REFERENCES accounts(user_id),
    PRIMARY KEY (chat, user_id)
);
CREATE INDEX chat_members_by_user ON chat_members(user_id, chat);
-- Message ids come from `message_seq`, not from a sequence: see `writer.rs`.
CREATE TABLE messages (
    id        BIGINT PRIMARY KEY,
    chat      BIGINT NOT NULL REFERENCES chats(id),
    sender    TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject   TEXT NOT NULL,
    text      TEXT NOT NULL,
    sent_at   BIGINT NOT NULL,
    UNIQUE (chat, sender, client_id)
);
CREATE INDEX messages_by_chat ON messages(chat, id);
-- One row: the last message id assigned. Its row lock orders message commits.
CREATE TABLE message_seq (
    single BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (single),
    last   BIGINT NOT NULL
);
INSERT INTO message_seq (single, last) VALUES (TRUE, 0);
",
    "
CREATE TABLE stream_leases (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT NOT NULL,
    server     BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX stream_leases_by_user ON stream_leases(user_id);
CREATE INDEX stream_leases_by_server ON stream_leases(server);
CREATE TABLE rate_budgets (
    key TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL
);
",
    "
-- Failed sign-ins (limits/sign_in.rs), shared by every server. Times are seconds since the
-- unix epoch on the database's clock. `forget_at`: when the row may be deleted (the ladder
-- forgotten, the budget full again), so made-up account names cannot grow the tables.
CREATE TABLE sign_in_ladders (
    user_id       TEXT NOT NULL,
    address       TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    blocked_until DOUBLE PRECISION,
    last_at       DOUBLE PRECISION NOT NULL,
    forget_at     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, address)
);
CREATE INDEX sign_in_ladders_by_forget_at ON sign_in_ladders(forget_at);
CREATE TABLE sign_in_budgets (
    user_id    TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    forget_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX sign_in_budgets_by_forget_at ON sign_in_budgets(forget_at);
",
    "
-- Leave and Block. A chat keeps the member set it was created with (member_key) as its
-- identity; chat_members holds who is in it now, chat_departures who left and may come back.
CREATE TABLE chat_departures (
    chat    BIGINT NOT NULL REFERENCES chats(id),
    user_id TEXT NOT NULL REFERENCES accounts(user_id),
    left_at BIGINT NOT NULL,
    PRIMARY KEY (chat, user_id)
);
CREATE TABLE blocks (
    blocker    TEXT NOT NULL REFERENCES accounts(user_id),
    blocked    TEXT NOT NULL REFERENCES accounts(user_id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
",
    "
-- Edits and deletions change a message's row in place: it always holds the current version.
-- A deleted message keeps its row (its place in the chat) with subject and text erased.
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
-- One row per change to a message (edit, deletion, reaction added or taken back). Its id is
-- the next one of `message_seq`, taken under its row lock like a message's (see
-- `changes.rs`), so messages and changes share one commit order and one stream cursor.
CREATE TABLE message_changes (
    id      BIGINT PRIMARY KEY,
    message BIGINT NOT NULL REFERENCES messages(id),
    chat    BIGINT NOT NULL REFERENCES chats(id),
    kind    TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX message_changes_by_chat ON message_changes(chat, id);
-- One row per (message, emoji, person); the id keeps the order reactions were added.
CREATE TABLE reactions (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message BIGINT NOT NULL REFERENCES messages(id),
    emoji   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    UNIQUE (message, emoji, user_id)
);
",
    "
-- Replies: the id of the message answered (same chat, checked by the writer), or NULL.
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
-- Search: the words of the current subject and text, generated from the columns, so an edit
-- or a delete (text and subject blanked) updates it with no code of its own. Words are split
-- at anything that is not a letter or digit first (regexp_replace), as
-- chat_core::search::words splits them: PostgreSQL's own parser would otherwise keep
-- `user@example.com` or `v2.0` as one token. 'simple': lower-cased words, no stemming and
-- no stop words, the same for every language. [[:alnum:]] and lower-casing follow the
-- database's LC_CTYPE, which must be a UTF-8 locale for letters beyond ASCII (initdb's
-- default on a UTF-8 system).
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(subject || ' ' || text, '[^[:alnum:]]+', ' ', 'g'))
) STORED;
-- fastupdate off: each message's words go into the index as it is committed. With it on,
-- new entries wait in a pending list that every search reads through in full until a vacuum
-- merges it, which made a search at 100,000 fresh messages take 60 to 80 ms.
CREATE INDEX messages_search ON messages USING gin (search) WITH (fastupdate = off);
",
    "
-- How far each member has read each chat: every message with an id at or below up_to.
CREATE TABLE read_positions (
    chat    BIGINT NOT NULL REFERENCES chats(id),
    user_id TEXT NOT NULL REFERENCES accounts(user_id),
    up_to   BIGINT NOT NULL,
    PRIMARY KEY (chat, user_id)
);
CREATE TABLE account_settings (
    user_id          TEXT PRIMARY KEY REFERENCES accounts(user_id),
    private_receipts BOOLEAN NOT NULL DEFAULT FALSE
);
-- Whether each person is online, as last announced, and when their last stream closed.
CREATE TABLE presence (
    user_id   TEXT PRIMARY KEY REFERENCES accounts(user_id),
    online    BOOLEAN NOT NULL,
    last_seen BIGINT
);
",
    "
-- Rate budgets are charged on every Send: unlogged, a charge writes no WAL and its commit
-- waits for no flush to disk. A crash of the database empties the table, which gives every
-- budget back in full, as a restart does to one server's budgets in memory.
ALTER TABLE rate_budgets SET UNLOGGED;
",
    "
-- Charges of many keys go in one statement (rates.rs), and a key may be charged several cells
-- at once: `granted` is how many the last charge took, which RETURNING reports.
ALTER TABLE rate_budgets ADD COLUMN granted INTEGER NOT NULL DEFAULT 0;
",
    "
-- The search index's words wait in a pending list of at most 64 kB (the least PostgreSQL
-- allows) before they are merged into the index, many messages' at a time. Merged one message
-- at a time (fastupdate off), each word of every new message descends its own posting tree
-- under the message counter's lock, the largest part of a batch's work; a search reads the
-- pending list through, which at 64 kB (a few hundred messages) costs little, unlike the
-- default 4 MB that made searches slow (see migration 6).
ALTER INDEX messages_search SET (fastupdate = on, gin_pending_list_limit = 64);
",
    "
-- Search words as chat_core::search::words makes them, and without accents, as SQLite's
-- index has them: `chat_words` is the one definition of a text's words for the column and
-- for every query (reads.rs). Accents go first (`unaccent`, PostgreSQL's trusted extension,
-- which also turns letters such as ʻ in Hawaiʻi into quotes), then everything but letters,
-- digits and combining marks becomes a space. The marks are the ranges of
-- chat_core::search::is_combining_mark, which a test holds equal to this list: with
-- [[:alnum:]] alone a Hindi word such as नमस्ते was split at its virama, and no search for
-- it found it. The body is parsed here (RETURN), so the dictionary and functions it names are
-- fixed now, whatever a later session's search_path (pg_restore's included); IMMUTABLE
-- because a generated column needs it, which holds while unaccent's rules stay the same.
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE FUNCTION chat_words(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN regexp_replace(unaccent('unaccent'::regdictionary, $1), '[^[:alnum:]\\u0300-\\u036F\\u0483-\\u0489\\u0591-\\u05BD\\u05BF-\\u05C7\\u0610-\\u061A\\u064B-\\u065F\\u0670\\u06D6-\\u06ED\\u0900-\\u0963\\u0966-\\u0DFF\\u1AB0-\\u1AFF\\u1DC0-\\u1DFF\\u20D0-\\u20FF\\uFE20-\\uFE2F]+', ' ', 'g');
-- A search's tsquery: each word's chat_words quoted (they hold no quote or backslash: only
-- letters, digits, marks and spaces; a word they split is a phrase), all required, the last
-- a prefix when the person may still be typing it. Nothing a person types is tsquery syntax.
CREATE FUNCTION chat_query(words text[], last_is_prefix boolean) RETURNS text LANGUAGE sql
IMMUTABLE PARALLEL SAFE STRICT
RETURN (SELECT string_agg('''' || chat_words(word) || ''''
                          || CASE WHEN n = cardinality(words) AND last_is_prefix
                                  THEN ':*' ELSE '' END,
                          ' & ' ORDER BY n)
        FROM unnest(words) WITH ORDINALITY AS w(word, n));
-- The column is generated anew for every row, and its index with it, with migration 10's
-- settings.
ALTER TABLE messages DROP COLUMN search;
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', chat_words(subject || ' ' || text))
) STORED;
CREATE INDEX messages_search ON messages USING gin (search)
    WITH (fastupdate = on, gin_pending_list_limit = 64);
",
    "
-- Tokens as chat_core::search::tokens makes them: each character of a script written
-- without spaces between words (chat_core::search::is_unspaced: Chinese, Japanese kana,
-- Thai, Lao, Burmese, Khmer, Korean syllables) stands between spaces, a token of its own,
-- so that a query word of several (chat_query quotes it, which makes it a phrase) is found
-- inside a run such as 我住在东京. The column and its index are generated anew, as in
-- migration 11.
CREATE OR REPLACE FUNCTION chat_words(text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
STRICT
RETURN regexp_replace(regexp_replace(unaccent('unaccent'::regdictionary, $1), '[^[:alnum:]\\u0300-\\u036F\\u0483-\\u0489\\u0591-\\u05BD\\u05BF-\\u05C7\\u0610-\\u061A\\u064B-\\u065F\\u0670\\u06D6-\\u06ED\\u0900-\\u0963\\u0966-\\u0DFF\\u1AB0-\\u1AFF\\u1DC0-\\u1DFF\\u20D0-\\u20FF\\uFE20-\\uFE2F]+', ' ', 'g'), '([\\u0E00-\\u0EFF\\u1000-\\u109F\\u1780-\\u17FF\\u3040-\\u30FF\\u31F0-\\u31FF\\u3400-\\u4DBF\\u4E00-\\u9FFF\\uAC00-\\uD7A3\\uF900-\\uFAFF\\uFF66-\\uFF9F\\U00020000-\\U0003FFFF])', ' \\1 ', 'g');
-- A query word that chat_words leaves blank (a lone combining accent, which unaccent
-- drops) was quoted as '', a syntax error in a tsquery, so such a search failed; quoted
-- with a space after its words ('word ', ' '), a blank word has no lexemes and is left out.
CREATE OR REPLACE FUNCTION chat_query(words text[], last_is_prefix boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN (SELECT string_agg('''' || chat_words(word) || ' '''
                          || CASE WHEN n = cardinality(words) AND last_is_prefix
                                  THEN ':*' ELSE '' END,
                          ' & ' ORDER BY n)
        FROM unnest(words) WITH ORDINALITY AS w(word, n));
ALTER TABLE messages DROP COLUMN search;
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', chat_words(subject || ' ' || text))
) STORED;
CREATE INDEX messages_search ON messages USING gin (search)
    WITH (fastupdate = on, gin_pending_list_limit = 64);
",
];

/// Brings the schema up to date, waiting for any other server migrating at the same moment.
pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if current > known {
        return Err(StoreError::Unavailable(format!(
            "database schema version {current} is newer than this server understands ({known}); upgrade the server"
        )));
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tracing::info!(version, "applying database migration");
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// The code points of the newest migration's bracket that starts with `opening`
    /// (`\uXXXX`, `\UXXXXXXXX`, or ranges of them), as `(first, last)`.
    fn bracket(opening: &str) -> Vec<(u32, u32)> {
        let migration = MIGRATIONS
            .iter()
            .rev()
            .find(|migration| migration.contains(opening))
            .unwrap_or_else(|| panic!("a migration has {opening}"));
        let start = migration.find(opening).expect("the bracket");
        let bracket = &migration[start + opening.len()..];
        let bracket = &bracket[..bracket.find(']').expect("the bracket ends")];
        let mut rest = bracket;
        let mut ranges = Vec::new();
        while !rest.is_empty() {
            let (first, ranged) = escape(&mut rest);
            let last = if ranged { escape(&mut rest).0 } else { first };
            ranges.push((first, last));
        }
        ranges
    }

    /// The code point of the escape `rest` starts with, which it takes off `rest`, and whether
    /// a `-` follows (the first of a range).
    fn escape(rest: &mut &str) -> (u32, bool) {
        let digits = match &rest[..2] {
            "\\u" => 4,
            "\\U" => 8,
            other => panic!("an escape, not {other}"),
        };
        let point = u32::from_str_radix(&rest[2..2 + digits], 16).expect("hex digits");
        *rest = &rest[2 + digits..];
        let ranged = rest.starts_with('-');
        if ranged {
            *rest = &rest[1..];
        }
        (point, ranged)
    }

    /// Whether every code point is in `ranges` exactly when `expected` says so.
    fn holds_exactly(ranges: &[(u32, u32)], expected: fn(char) -> bool) {
        assert!(ranges.len() > 5, "{ranges:?}");
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let listed = ranges
                .iter()
                .any(|&(first, last)| (first..=last).contains(&u32::from(c)));
            assert_eq!(listed, expected(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn the_search_column_keeps_exactly_the_marks_that_core_counts_as_part_of_a_word() {
        holds_exactly(
            &bracket("[^[:alnum:]"),
            chat_core::search::is_combining_mark,
        );
    }

    #[test]
    fn the_search_column_makes_a_token_of_exactly_the_characters_core_does() {
        holds_exactly(&bracket("'(["), chat_core::search::is_unspaced);
    }
}
