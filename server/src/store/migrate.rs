//! `chat-server migrate --to postgres://…`: copies everything the SQLite file holds into a
//! PostgreSQL database, so a team can move from one server to several without losing a message
//! or a session.
//!
//! What is kept: accounts with their password hashes (old passwords still sign in), tokens
//! (signed-in clients stay signed in), device keys (newest last, so the same ones stay the
//! newest), chats with their public and internal ids, members, who
//! left which chat (so they alone can come back), blocks, and
//! messages with their ids, so every client's cursor (`after_id`, `before_id`) means the same
//! message afterwards; changes to messages (`message_changes`, with their ids from the same
//! sequence) and reactions, and every changed message's current state, refreshed on each run
//! (`refresh_changed`), since an earlier run may have copied it before it changed; and read
//! positions, settings and last-seen times. The PostgreSQL id counter (`message_seq`) is set
//! past the newest copied id, and the client id of every message is kept, so a Send retried
//! after the move is still recognised as a repeat.
//!
//! Resumable: rows are copied in batches, each committed on its own; a batch that is copied
//! again changes nothing (`ON CONFLICT DO NOTHING`), and messages resume after the newest id
//! already copied, so re-running after an interruption continues where it stopped. Accounts
//! are copied again whole on each run (`ON CONFLICT … DO UPDATE`), so a password set or an
//! account deactivated between two runs is what PostgreSQL ends with. The
//! tables whose rows SQLite deletes are the exception: tokens (sign-out, expiry), device keys
//! (a changed password, a newer sign-in), chat members (Leave), departures (a rejoin) and blocks (Unblock) are each replaced as a whole in
//! one transaction, so a row deleted in SQLite between two runs does not survive in
//! PostgreSQL: a revoked token stays revoked, a person who left stays out, an unblocked one
//! stays unblocked.
//!
//! Every table is read from one SQLite read transaction, so the copy is one consistent
//! snapshot even while a server still writes to the file (a message never arrives without its
//! chat); the final run must be made with the SQLite server stopped. At the end the rows of
//! each table are counted on both sides: the caller reports them and fails on a difference.

use std::path::Path;

use deadpool_postgres::Object;
use rusqlite::Connection;

use super::StoreError;
use super::{postgres, sqlite};

/// Rows copied per PostgreSQL transaction.
const BATCH: i64 = 1000;

/// One table's row count on each side, once the copy is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub sqlite: i64,
    pub postgres: i64,
}

/// The counts the migration ends with.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    pub tables: Vec<TableCount>,
    /// The id the next message stored on PostgreSQL will be greater than.
    pub message_counter: i64,
    /// The newest message or change id in the SQLite file (0 when it has none).
    pub newest_message: i64,
}

impl MigrationReport {
    /// Whether PostgreSQL holds exactly what the SQLite file holds and its counter is past
    /// every copied id.
    pub fn verified(&self) -> bool {
        self.tables
            .iter()
            .all(|count| count.sqlite == count.postgres)
            && self.message_counter >= self.newest_message
    }
}

/// Copies the SQLite database at `sqlite_path` into the PostgreSQL database at `url` (its
/// schema is created first if needed) and counts both sides.
pub async fn migrate_to_postgres(
    sqlite_path: &Path,
    url: &str,
) -> Result<MigrationReport, StoreError> {
    let source = sqlite::open_source(sqlite_path)?;
    // Deferred: the snapshot is taken at the first read and held until COMMIT.
    source.execute_batch("BEGIN")?;
    let mut target = postgres::connect_for_tools(url).await?;

    copy_accounts(&source, &target).await?;
    replace_tokens(&source, &mut target).await?;
    replace_devices(&source, &mut target).await?;
    copy_chats(&source, &target).await?;
    replace_members(&source, &mut target).await?;
    replace_departures(&source, &mut target).await?;
    replace_blocks(&source, &mut target).await?;
    copy_messages(&source, &mut target).await?;
    copy_changes(&source, &mut target).await?;
    refresh_changed(&source, &mut target).await?;
    copy_reading(&source, &target).await?;

    let mut tables = Vec::new();
    for table in [
        "accounts",
        "tokens",
        "devices",
        "chats",
        "chat_members",
        "chat_departures",
        "blocks",
        "messages",
        "message_changes",
        "reactions",
        "read_positions",
        "account_settings",
        "presence",
    ] {
        let sql = format!("SELECT count(*) FROM {table}");
        let sqlite = source.query_row(&sql, [], |row| row.get(0))?;
        let postgres = target.query_one(&sql, &[]).await?.try_get(0)?;
        tables.push(TableCount {
            table,
            sqlite,
            postgres,
        });
    }
    let newest_message = source.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM messages), 0),
                    coalesce((SELECT max(id) FROM message_changes), 0))",
        [],
        |row| row.get(0),
    )?;
    let message_counter = target
        .query_one("SELECT last FROM message_seq", &[])
        .await?
        .try_get(0)?;
    source.execute_batch("COMMIT")?;
    Ok(MigrationReport {
        tables,
        message_counter,
        newest_message,
    })
}

async fn copy_accounts(source: &Connection, target: &Object) -> Result<(), StoreError> {
    let insert = target
        .prepare(
            "INSERT INTO accounts (user_id, password_hash, created_at, deactivated_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
             ON CONFLICT (user_id) DO UPDATE
                 SET password_hash = excluded.password_hash,
                     deactivated_at = excluded.deactivated_at",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT user_id, password_hash, created_at, deactivated_at FROM accounts
         WHERE user_id > ?1 ORDER BY user_id LIMIT ?2",
    )?;
    let mut after = String::new();
    let mut copied = 0;
    loop {
        let (mut users, mut hashes) = (Vec::new(), Vec::new());
        let (mut created, mut deactivated) = (Vec::<i64>::new(), Vec::<Option<i64>>::new());
        let mut rows = page.query(rusqlite::params![after, BATCH])?;
        while let Some(row) = rows.next()? {
            users.push(row.get::<_, String>(0)?);
            hashes.push(row.get::<_, String>(1)?);
            created.push(row.get(2)?);
            deactivated.push(row.get(3)?);
        }
        drop(rows);
        let Some(last) = users.last().cloned() else {
            break;
        };
        copied += users.len();
        target
            .execute(&insert, &[&users, &hashes, &created, &deactivated])
            .await?;
        after = last;
    }
    tracing::info!(copied, "accounts copied");
    Ok(())
}

/// Replaces every token in one transaction: unlike the other tables, tokens are deleted in
/// SQLite (sign-out, expiry), and a revoked token must not come back to life.
async fn replace_tokens(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let tx = target.transaction().await?;
    tx.execute("DELETE FROM tokens", &[]).await?;
    let insert = tx
        .prepare(
            "INSERT INTO tokens (token_hash, user_id, expires_at)
             SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[])",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT token_hash, user_id, expires_at FROM tokens
         WHERE token_hash > ?1 ORDER BY token_hash LIMIT ?2",
    )?;
    let mut after: Vec<u8> = Vec::new();
    let mut copied = 0;
    loop {
        let (mut hashes, mut users, mut expiries) = (Vec::new(), Vec::new(), Vec::<i64>::new());
        let mut rows = page.query(rusqlite::params![after, BATCH])?;
        while let Some(row) = rows.next()? {
            hashes.push(row.get::<_, Vec<u8>>(0)?);
            users.push(row.get::<_, String>(1)?);
            expiries.push(row.get(2)?);
        }
        drop(rows);
        let Some(last) = hashes.last().cloned() else {
            break;
        };
        copied += hashes.len();
        tx.execute(&insert, &[&hashes, &users, &expiries]).await?;
        after = last;
    }
    tx.commit().await?;
    tracing::info!(copied, "tokens copied");
    Ok(())
}

/// Replaces every device key in one transaction, like the tokens, in the order SQLite gave
/// them, which the PostgreSQL identity keeps (the newest are those an account keeps).
async fn replace_devices(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let tx = target.transaction().await?;
    tx.execute("DELETE FROM devices", &[]).await?;
    let insert = tx
        .prepare(
            "INSERT INTO devices (device_hash, user_id, created_at)
             SELECT h, u, c FROM unnest($1::bytea[], $2::text[], $3::bigint[])
                 WITH ORDINALITY AS d(h, u, c, n)
             ORDER BY n",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT rowid, device_hash, user_id, created_at FROM devices
         WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    let mut after = 0_i64;
    let mut copied = 0;
    loop {
        let (mut hashes, mut users, mut created) = (Vec::new(), Vec::new(), Vec::<i64>::new());
        let mut last = None;
        let mut rows = page.query(rusqlite::params![after, BATCH])?;
        while let Some(row) = rows.next()? {
            last = Some(row.get::<_, i64>(0)?);
            hashes.push(row.get::<_, Vec<u8>>(1)?);
            users.push(row.get::<_, String>(2)?);
            created.push(row.get(3)?);
        }
        drop(rows);
        let Some(last) = last else {
            break;
        };
        copied += hashes.len();
        tx.execute(&insert, &[&hashes, &users, &created]).await?;
        after = last;
    }
    tx.commit().await?;
    tracing::info!(copied, "device keys copied");
    Ok(())
}

/// Copies chats with their internal ids (which members and messages refer to), then moves
/// the identity past them, so chats created on PostgreSQL later get fresh ids. The members'
/// version is copied again on every run: members change between runs (and are replaced
/// whole, `replace_members`), and a client must not meet a version lower than one it saw.
async fn copy_chats(source: &Connection, target: &Object) -> Result<(), StoreError> {
    let insert = target
        .prepare(
            "INSERT INTO chats (id, public_id, member_key, created_at, members_version)
                 OVERRIDING SYSTEM VALUE
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                                  $5::bigint[])
             ON CONFLICT (id) DO UPDATE SET members_version = excluded.members_version",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT id, public_id, member_key, created_at, members_version FROM chats
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let mut after = 0_i64;
    let mut copied = 0;
    loop {
        let (mut ids, mut public_ids, mut keys, mut created, mut versions) = (
            Vec::<i64>::new(),
            Vec::new(),
            Vec::new(),
            Vec::<i64>::new(),
            Vec::<i64>::new(),
        );
        let mut rows = page.query(rusqlite::params![after, BATCH])?;
        while let Some(row) = rows.next()? {
            ids.push(row.get(0)?);
            public_ids.push(row.get::<_, String>(1)?);
            keys.push(row.get::<_, String>(2)?);
            created.push(row.get(3)?);
            versions.push(row.get(4)?);
        }
        drop(rows);
        let Some(&last) = ids.last() else {
            break;
        };
        copied += ids.len();
        target
            .execute(&insert, &[&ids, &public_ids, &keys, &created, &versions])
            .await?;
        after = last;
    }
    target
        .execute(
            "SELECT setval(pg_get_serial_sequence('chats', 'id'), max(id))
             FROM chats HAVING max(id) IS NOT NULL",
            &[],
        )
        .await?;
    tracing::info!(copied, "chats copied");
    Ok(())
}

/// Replaces every chat member in one transaction: a member who left in SQLite between two
/// runs must not stay in the chat on PostgreSQL.
async fn replace_members(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let tx = target.transaction().await?;
    tx.execute("DELETE FROM chat_members", &[]).await?;
    let insert = tx
        .prepare(
            "INSERT INTO chat_members (chat, user_id)
             SELECT * FROM unnest($1::bigint[], $2::text[])",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT chat, user_id FROM chat_members
         WHERE (chat, user_id) > (?1, ?2) ORDER BY chat, user_id LIMIT ?3",
    )?;
    let mut after = (0_i64, String::new());
    let mut copied = 0;
    loop {
        let (mut chats, mut users) = (Vec::<i64>::new(), Vec::<String>::new());
        let mut rows = page.query(rusqlite::params![after.0, after.1, BATCH])?;
        while let Some(row) = rows.next()? {
            chats.push(row.get(0)?);
            users.push(row.get(1)?);
        }
        drop(rows);
        let (Some(&chat), Some(user)) = (chats.last(), users.last()) else {
            break;
        };
        after = (chat, user.clone());
        copied += chats.len();
        tx.execute(&insert, &[&chats, &users]).await?;
    }
    tx.commit().await?;
    tracing::info!(copied, "chat members copied");
    Ok(())
}

/// Replaces every departure (who left which chat) in one transaction: one that came back in
/// SQLite between two runs must not count as gone on PostgreSQL.
async fn replace_departures(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let tx = target.transaction().await?;
    tx.execute("DELETE FROM chat_departures", &[]).await?;
    let insert = tx
        .prepare(
            "INSERT INTO chat_departures (chat, user_id, left_at)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT chat, user_id, left_at FROM chat_departures
         WHERE (chat, user_id) > (?1, ?2) ORDER BY chat, user_id LIMIT ?3",
    )?;
    let mut after = (0_i64, String::new());
    let mut copied = 0;
    loop {
        let (mut chats, mut users, mut left) =
            (Vec::<i64>::new(), Vec::<String>::new(), Vec::<i64>::new());
        let mut rows = page.query(rusqlite::params![after.0, after.1, BATCH])?;
        while let Some(row) = rows.next()? {
            chats.push(row.get(0)?);
            users.push(row.get(1)?);
            left.push(row.get(2)?);
        }
        drop(rows);
        let (Some(&chat), Some(user)) = (chats.last(), users.last()) else {
            break;
        };
        after = (chat, user.clone());
        copied += chats.len();
        tx.execute(&insert, &[&chats, &users, &left]).await?;
    }
    tx.commit().await?;
    tracing::info!(copied, "chat departures copied");
    Ok(())
}

/// Replaces every block in one transaction: an Unblock in SQLite between two runs must not
/// leave the block standing on PostgreSQL.
async fn replace_blocks(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let tx = target.transaction().await?;
    tx.execute("DELETE FROM blocks", &[]).await?;
    let insert = tx
        .prepare(
            "INSERT INTO blocks (blocker, blocked, created_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT blocker, blocked, created_at FROM blocks
         WHERE (blocker, blocked) > (?1, ?2) ORDER BY blocker, blocked LIMIT ?3",
    )?;
    let mut after = (String::new(), String::new());
    let mut copied = 0;
    loop {
        let (mut blockers, mut blocked, mut created) = (
            Vec::<String>::new(),
            Vec::<String>::new(),
            Vec::<i64>::new(),
        );
        let mut rows = page.query(rusqlite::params![after.0, after.1, BATCH])?;
        while let Some(row) = rows.next()? {
            blockers.push(row.get(0)?);
            blocked.push(row.get(1)?);
            created.push(row.get(2)?);
        }
        drop(rows);
        let (Some(blocker), Some(last)) = (blockers.last(), blocked.last()) else {
            break;
        };
        after = (blocker.clone(), last.clone());
        copied += blockers.len();
        tx.execute(&insert, &[&blockers, &blocked, &created])
            .await?;
    }
    tx.commit().await?;
    tracing::info!(copied, "blocks copied");
    Ok(())
}

/// The search column's words of each (subject, text), as the servers make them.
fn search_vectors(subjects: &[String], texts: &[String]) -> Vec<String> {
    subjects
        .iter()
        .zip(texts)
        .map(|(subject, text)| postgres::search_vector(subject, text))
        .collect()
}

/// Copies messages in id order after the newest one PostgreSQL already has. Each batch takes
/// the `message_seq` row lock and moves the counter past its ids in the same transaction, as
/// the servers' writers do, so ids stay in commit order even if a server were running.
async fn copy_messages(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let mut after: i64 = target
        .query_one("SELECT coalesce(max(id), 0) FROM messages", &[])
        .await?
        .try_get(0)?;
    let resumed_after = after;
    let mut page = source.prepare(
        "SELECT id, chat, sender, client_id, subject, text, sent_at, edited_at, deleted, reply_to
         FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let mut copied = 0;
    loop {
        let mut ids = Vec::<i64>::new();
        let mut chats = Vec::<i64>::new();
        let (mut senders, mut client_ids) = (Vec::<String>::new(), Vec::<String>::new());
        let (mut subjects, mut texts) = (Vec::<String>::new(), Vec::<String>::new());
        let mut sent_at = Vec::<i64>::new();
        let mut edited_at = Vec::<Option<i64>>::new();
        let mut deleted = Vec::<bool>::new();
        let mut reply_to = Vec::<Option<i64>>::new();
        let mut rows = page.query(rusqlite::params![after, BATCH])?;
        while let Some(row) = rows.next()? {
            ids.push(row.get(0)?);
            chats.push(row.get(1)?);
            senders.push(row.get(2)?);
            client_ids.push(row.get(3)?);
            subjects.push(row.get(4)?);
            texts.push(row.get(5)?);
            sent_at.push(row.get(6)?);
            edited_at.push(row.get(7)?);
            deleted.push(row.get(8)?);
            reply_to.push(row.get(9)?);
        }
        drop(rows);
        let Some(&last) = ids.last() else {
            break;
        };
        let tx = target.transaction().await?;
        tx.execute("SELECT last FROM message_seq FOR UPDATE", &[])
            .await?;
        tx.execute(
            "INSERT INTO messages
                 (id, chat, sender, client_id, subject, text, sent_at, edited_at, deleted,
                  reply_to, search)
             SELECT id, chat, sender, client_id, subject, text, sent_at, edited_at, deleted,
                    reply_to, search::tsvector
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::bigint[], $8::bigint[], $9::boolean[], $10::bigint[],
                         $11::text[])
                  AS u(id, chat, sender, client_id, subject, text, sent_at, edited_at, deleted,
                       reply_to, search)
             ON CONFLICT DO NOTHING",
            &[
                &ids,
                &chats,
                &senders,
                &client_ids,
                &subjects,
                &texts,
                &sent_at,
                &edited_at,
                &deleted,
                &reply_to,
                &search_vectors(&subjects, &texts),
            ],
        )
        .await?;
        tx.execute("UPDATE message_seq SET last = greatest(last, $1)", &[&last])
            .await?;
        tx.commit().await?;
        copied += ids.len();
        after = last;
    }
    tracing::info!(copied, resumed_after, "messages copied");
    Ok(())
}

/// Copies the changes to messages with their ids (they share the messages' sequence), in id
/// order after the newest one PostgreSQL has, moving the counter past them like
/// [`copy_messages`].
async fn copy_changes(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let mut after: i64 = target
        .query_one("SELECT coalesce(max(id), 0) FROM message_changes", &[])
        .await?
        .try_get(0)?;
    let mut page = source.prepare(
        "SELECT id, message, chat, kind, at FROM message_changes
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let mut copied = 0;
    loop {
        let (mut ids, mut messages, mut chats) = (Vec::<i64>::new(), Vec::new(), Vec::new());
        let (mut kinds, mut at) = (Vec::<String>::new(), Vec::<i64>::new());
        let mut rows = page.query(rusqlite::params![after, BATCH])?;
        while let Some(row) = rows.next()? {
            ids.push(row.get(0)?);
            messages.push(row.get::<_, i64>(1)?);
            chats.push(row.get::<_, i64>(2)?);
            kinds.push(row.get(3)?);
            at.push(row.get(4)?);
        }
        drop(rows);
        let Some(&last) = ids.last() else {
            break;
        };
        let tx = target.transaction().await?;
        tx.execute("SELECT last FROM message_seq FOR UPDATE", &[])
            .await?;
        tx.execute(
            "INSERT INTO message_changes (id, message, chat, kind, at)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                                  $5::bigint[])
             ON CONFLICT DO NOTHING",
            &[&ids, &messages, &chats, &kinds, &at],
        )
        .await?;
        tx.execute("UPDATE message_seq SET last = greatest(last, $1)", &[&last])
            .await?;
        tx.commit().await?;
        copied += ids.len();
        after = last;
    }
    tracing::info!(copied, "message changes copied");
    Ok(())
}

/// Brings every message that changed after it was sent (its id is in `message_changes`) to
/// its current state on PostgreSQL: subject, text, `edited_at`, `deleted`, and its reactions
/// replaced whole, in the order they were added. A run that copied a message before it was
/// edited, reacted to or deleted (an earlier run, while the SQLite server still ran) thus
/// catches up, and running it again changes nothing. One transaction: changed messages are a
/// small part of a chat's.
async fn refresh_changed(source: &Connection, target: &mut Object) -> Result<(), StoreError> {
    let (mut ids, mut subjects, mut texts) = (Vec::<i64>::new(), Vec::new(), Vec::new());
    let (mut edited_at, mut deleted) = (Vec::<Option<i64>>::new(), Vec::<bool>::new());
    let mut changed = source.prepare(
        "SELECT id, subject, text, edited_at, deleted FROM messages
         WHERE id IN (SELECT message FROM message_changes) ORDER BY id",
    )?;
    let mut rows = changed.query([])?;
    while let Some(row) = rows.next()? {
        ids.push(row.get(0)?);
        subjects.push(row.get::<_, String>(1)?);
        texts.push(row.get::<_, String>(2)?);
        edited_at.push(row.get(3)?);
        deleted.push(row.get(4)?);
    }
    drop(rows);
    let (mut messages, mut emoji, mut users) = (Vec::<i64>::new(), Vec::new(), Vec::new());
    let mut reactions =
        source.prepare("SELECT message, emoji, user_id FROM reactions ORDER BY id")?;
    let mut rows = reactions.query([])?;
    while let Some(row) = rows.next()? {
        messages.push(row.get(0)?);
        emoji.push(row.get::<_, String>(1)?);
        users.push(row.get::<_, String>(2)?);
    }
    drop(rows);
    let tx = target.transaction().await?;
    tx.execute(
        "UPDATE messages m
         SET subject = u.subject, text = u.text, edited_at = u.edited_at, deleted = u.deleted,
             search = u.search::tsvector
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::boolean[],
                     $6::text[])
              AS u(id, subject, text, edited_at, deleted, search)
         WHERE m.id = u.id",
        &[
            &ids,
            &subjects,
            &texts,
            &edited_at,
            &deleted,
            &search_vectors(&subjects, &texts),
        ],
    )
    .await?;
    tx.execute("DELETE FROM reactions WHERE message = ANY($1)", &[&ids])
        .await?;
    tx.execute(
        "INSERT INTO reactions (message, emoji, user_id)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])",
        &[&messages, &emoji, &users],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        messages = ids.len(),
        reactions = messages.len(),
        "changed messages refreshed"
    );
    Ok(())
}

/// Copies read positions, settings and presence (last-seen times). A row already on PostgreSQL (an
/// earlier run, or a server that ran meanwhile) keeps the further position and the later time;
/// settings take the SQLite value, which is the one the person last chose there.
async fn copy_reading(source: &Connection, target: &Object) -> Result<(), StoreError> {
    let insert = target
        .prepare(
            "INSERT INTO read_positions (chat, user_id, up_to)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
             ON CONFLICT (chat, user_id)
             DO UPDATE SET up_to = greatest(read_positions.up_to, excluded.up_to)",
        )
        .await?;
    let mut page = source.prepare(
        "SELECT chat, user_id, up_to FROM read_positions
         WHERE (chat, user_id) > (?1, ?2) ORDER BY chat, user_id LIMIT ?3",
    )?;
    let mut after = (0_i64, String::new());
    let mut copied = 0;
    loop {
        let (mut chats, mut users, mut up_to) =
            (Vec::<i64>::new(), Vec::<String>::new(), Vec::<i64>::new());
        let mut rows = page.query(rusqlite::params![after.0, after.1, BATCH])?;
        while let Some(row) = rows.next()? {
            chats.push(row.get(0)?);
            users.push(row.get(1)?);
            up_to.push(row.get(2)?);
        }
        drop(rows);
        let (Some(&chat), Some(user)) = (chats.last(), users.last()) else {
            break;
        };
        after = (chat, user.clone());
        copied += chats.len();
        target.execute(&insert, &[&chats, &users, &up_to]).await?;
    }
    tracing::info!(copied, "read positions copied");

    for (select, insert) in [
        (
            "SELECT user_id, private_receipts FROM account_settings",
            "INSERT INTO account_settings (user_id, private_receipts)
             SELECT u, v <> 0 FROM unnest($1::text[], $2::bigint[]) AS t(u, v)
             ON CONFLICT (user_id) DO UPDATE SET private_receipts = excluded.private_receipts",
        ),
        (
            // Everyone is offline after a move: no server of the new setup holds a stream.
            "SELECT user_id, coalesce(last_seen, 0) FROM presence",
            "INSERT INTO presence (user_id, online, last_seen)
             SELECT u, FALSE, nullif(v, 0) FROM unnest($1::text[], $2::bigint[]) AS t(u, v)
             ON CONFLICT (user_id) DO UPDATE
             SET last_seen = greatest(presence.last_seen, excluded.last_seen)",
        ),
    ] {
        // One row per account at most: small enough to copy in one statement.
        let (mut users, mut values) = (Vec::<String>::new(), Vec::<i64>::new());
        let mut statement = source.prepare(select)?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            users.push(row.get(0)?);
            values.push(row.get(1)?);
        }
        drop(rows);
        target.execute(insert, &[&users, &values]).await?;
    }
    Ok(())
}
