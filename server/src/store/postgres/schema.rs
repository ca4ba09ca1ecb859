//! The tables, as numbered migrations applied at start-up. Several servers may start at
//! once: each runs the migrations in one transaction that first takes a transaction-level
//! advisory lock, so one migrates while the others wait for it and then find nothing to do.
//! A database whose schema is newer than this server knows is refused, not misread.

use deadpool_postgres::Client;

use super::words;
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
    "
-- Search words are made by the servers (words.rs): the column keeps each row's words and
-- takes new ones from the writer, edits and deletions; `reindex_words` computes it anew
-- for every row in the same transaction. chat_words and chat_query have no more use. NOT
-- NULL: a server of an older version, which writes no words, fails to store a message
-- (its caller may retry on another server) rather than store one that search never finds.
ALTER TABLE messages ALTER COLUMN search DROP EXPRESSION;
ALTER TABLE messages ALTER COLUMN search SET NOT NULL;
DROP FUNCTION chat_query(text[], boolean);
DROP FUNCTION chat_words(text);
-- A batch of appends in one call (writer.rs, where the rules are argued): the message
-- counter's lock, each candidate's membership, earlier copy (idempotency) and reply original,
-- the inserts, the counter and the notification, run next to the data. As statements sent
-- one by one, with a plan made for each run, a batch cost its writer and PostgreSQL about
-- 1.5 ms of CPU; in one call, about 0.6 (BENCHMARKS.md).
--
-- Plans: PL/pgSQL keeps each statement's plan for the session, and after five runs may keep
-- one generic plan. Planned while `messages` is empty or small, a sequential scan would look
-- cheapest and stay while the table grows; with sequential scans off while they are planned,
-- the lookups here (one key at a time, all on unique keys) can only be index probes, at any
-- size. Not the counter's statements: its one row is rewritten by every batch, and an index
-- scan of it went through every dead version (22 ms a batch in `chat-bench cluster`).
--
-- Rows returned: one per chat of the batch ('members': chat, its members now), then one per
-- candidate, in order (n from 1): 'new' (the id given, and the reply's original when it is
-- one), 'earlier' (the message stored before, in the columns of rows.rs MESSAGE_COLUMNS),
-- 'not member' or 'no original'.
CREATE FUNCTION chat_append(p_chats bigint[], p_senders text[], p_client_ids text[],
                            p_subjects text[], p_texts text[], p_reply_to bigint[],
                            p_search text[], p_sent_at bigint, p_channel text)
RETURNS TABLE (n integer, status text, chat bigint, members text[], id bigint, sender text,
               client_id text, subject text, text text, sent_at bigint, edited_at bigint,
               deleted boolean, reply_to bigint, reply_sender text, reply_text text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    first_id bigint;
    next_id bigint;
    ids bigint[] := array_fill(NULL::bigint, ARRAY[cardinality(p_chats)]);
    seqscan text := current_setting('enable_seqscan');
    c record;
BEGIN
    SELECT s.last INTO first_id FROM message_seq s FOR UPDATE;
    next_id := first_id;
    PERFORM set_config('enable_seqscan', 'off', true);
    RETURN QUERY
        SELECT 0, 'members', cm.chat, array_agg(cm.user_id), NULL::bigint, NULL, NULL, NULL,
               NULL, NULL::bigint, NULL::bigint, NULL::boolean, NULL::bigint, NULL, NULL
        FROM chat_members cm WHERE cm.chat = ANY (p_chats) GROUP BY cm.chat;
    -- Every candidate's lookups in one statement: each LATERAL with LIMIT 1 stays a
    -- subquery run per candidate (an index probe), never a join the planner could reorder.
    FOR c IN
        SELECT k.o::integer AS o, k.chat AS k_chat, k.reply_to AS k_reply_to,
               mem.ok IS NOT NULL AS is_member, e.*, orig.o_chat, orig.o_sender, orig.o_preview
        FROM unnest(p_chats, p_senders, p_client_ids, p_reply_to) WITH ORDINALITY
             AS k(chat, sender, client_id, reply_to, o)
        LEFT JOIN LATERAL (
            SELECT TRUE AS ok FROM chat_members cm
            WHERE cm.chat = k.chat AND cm.user_id = k.sender LIMIT 1
        ) mem ON TRUE
        LEFT JOIN LATERAL (
            SELECT m.id AS e_id, m.sender AS e_sender, m.client_id AS e_client_id,
                   m.subject AS e_subject, m.text AS e_text, m.sent_at AS e_sent_at,
                   m.edited_at AS e_edited_at, m.deleted AS e_deleted,
                   m.reply_to AS e_reply_to, r.sender AS e_reply_sender,
                   left(r.text, 100) AS e_reply_text
            FROM messages m LEFT JOIN messages r ON r.id = m.reply_to
            WHERE m.chat = k.chat AND m.sender = k.sender AND m.client_id = k.client_id
            LIMIT 1
        ) e ON TRUE
        LEFT JOIN LATERAL (
            SELECT o.chat AS o_chat, o.sender AS o_sender, left(o.text, 100) AS o_preview
            FROM messages o WHERE o.id = k.reply_to AND NOT o.deleted LIMIT 1
        ) orig ON TRUE
        ORDER BY k.o
    LOOP
        n := c.o;
        chat := c.k_chat;
        members := NULL;
        id := NULL; sender := NULL; client_id := NULL; subject := NULL; text := NULL;
        sent_at := NULL; edited_at := NULL; deleted := NULL;
        reply_to := NULL; reply_sender := NULL; reply_text := NULL;
        IF NOT c.is_member THEN
            status := 'not member';
        ELSIF c.e_id IS NOT NULL THEN
            status := 'earlier';
            id := c.e_id; sender := c.e_sender; client_id := c.e_client_id;
            subject := c.e_subject; text := c.e_text; sent_at := c.e_sent_at;
            edited_at := c.e_edited_at; deleted := c.e_deleted;
            reply_to := c.e_reply_to; reply_sender := c.e_reply_sender;
            reply_text := c.e_reply_text;
        -- Another chat's message looks like no message at all.
        ELSIF c.k_reply_to IS NOT NULL AND c.o_chat IS DISTINCT FROM c.k_chat THEN
            status := 'no original';
        ELSE
            status := 'new';
            next_id := next_id + 1;
            ids[c.o] := next_id;
            id := next_id;
            reply_to := c.k_reply_to; reply_sender := c.o_sender; reply_text := c.o_preview;
        END IF;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('enable_seqscan', seqscan, true);
    IF next_id > first_id THEN
        INSERT INTO messages (id, chat, sender, client_id, subject, text, sent_at, reply_to,
                              search)
            SELECT ids[o], c, s, k, su, t, p_sent_at, r, w::tsvector
            FROM unnest(p_chats, p_senders, p_client_ids, p_subjects, p_texts, p_reply_to,
                        p_search)
                 WITH ORDINALITY AS u(c, s, k, su, t, r, w, o)
            WHERE ids[o] IS NOT NULL;
        UPDATE message_seq SET last = next_id;
        PERFORM pg_notify(p_channel, next_id::text);
    END IF;
END
$$;
",
    "
-- When `deactivate-account` deactivated the account (seconds since the epoch), NULL while it
-- is active: New refuses a chat with it, `accounts` says so, `set-password` clears it.
ALTER TABLE accounts ADD COLUMN deactivated_at BIGINT;
",
    "
-- Device keys (SHA-256 of each): given with a session, shown at the next sign-in to climb a
-- failed-sign-in ladder of their own instead of sharing the account's budget with every
-- address (limits::sign_in). Forgotten when the password changes. `id` orders them, newest
-- last, for keeping the newest few.
CREATE TABLE devices (
    device_hash BYTEA PRIMARY KEY,
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    user_id     TEXT NOT NULL REFERENCES accounts(user_id),
    created_at  BIGINT NOT NULL
);
CREATE INDEX devices_by_user ON devices(user_id, id);
",
    "
-- How many times each chat's members have changed (a Leave, a rejoin): news of members may
-- arrive out of order (Event.members), and the version says which is newer.
ALTER TABLE chats ADD COLUMN members_version BIGINT NOT NULL DEFAULT 0;
",
    "
-- A message's chat exists without the foreign key's check: chat_append stores a message only
-- for a sender it finds in chat_members of that chat, in the same transaction, and
-- chat_members references chats, whose rows are never deleted. The check ran once a message,
-- under the message counter's lock, and locked the chat's row (FOR KEY SHARE, a write to
-- that row for each batch): 0.17 of a batch's 1.2 ms in chat_append (BENCHMARKS.md).
ALTER TABLE messages DROP CONSTRAINT messages_chat_fkey;
",
];

/// The SQL of migration `version` (from 1). For the test of an upgrade, which builds an older
/// schema from the migrations' own SQL.
#[doc(hidden)]
pub fn migration_sql(version: usize) -> Option<&'static str> {
    MIGRATIONS.get(version.checked_sub(1)?).copied()
}

/// The migration from which the servers make the search column's words (`words.rs`).
const WORDS_FROM_SERVERS: i32 = 13;
/// Messages re-indexed per statement by [`reindex_words`].
const REINDEX_PAGE: i64 = 5_000;

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
        if version == WORDS_FROM_SERVERS {
            reindex_words(&tx).await?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Computes the search column of every message from its subject and text, page by page in
/// id order, inside the migration's transaction (so the column never holds a mix).
async fn reindex_words(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let read = tx
        .prepare("SELECT id, subject, text FROM messages WHERE id > $1 ORDER BY id LIMIT $2")
        .await?;
    let write = tx
        .prepare(
            "UPDATE messages m SET search = w.search::tsvector
             FROM unnest($1::bigint[], $2::text[]) AS w(id, search) WHERE m.id = w.id",
        )
        .await?;
    let mut after = i64::MIN;
    let mut done = 0_u64;
    loop {
        let rows = tx.query(&read, &[&after, &REINDEX_PAGE]).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get(0)?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut vectors = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.try_get::<_, i64>(0)?);
            vectors.push(words::vector(row.try_get(1)?, row.try_get(2)?));
        }
        tx.execute(&write, &[&ids, &vectors]).await?;
        done += rows.len() as u64;
        if done % 100_000 < REINDEX_PAGE as u64 {
            tracing::info!(messages = done, "search words computed anew");
        }
    }
    Ok(())
}
