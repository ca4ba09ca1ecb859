//! `chat-server accounts`: the accounts a server has, for its operator: who can sign in,
//! since when, on how many devices they are signed in, in how many chats, and when they were
//! last online; what the operator needs before `set-password` or `deactivate-account` and
//! after it (to see their sessions and chats gone).
//!
//! Read-only, so unlike `add-account` it runs beside a running server on either backend
//! (nothing to lock, nothing a server's memory would miss): the SQLite file through a
//! read-only connection of its own, as `backup` reads it, PostgreSQL through a connection
//! that changes nothing (not even the schema).

use std::path::Path;

use super::StoreError;
use super::postgres::connect_for_reading;
use super::sqlite;

/// One account as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created_at: i64,
    /// Its sessions that have not expired (signed-in browsers and clients).
    pub sessions: i64,
    /// The chats it is in.
    pub chats: i64,
    /// Online as the servers last recorded it (a stream open somewhere).
    pub online: bool,
    /// When its last stream closed; `None` if it never had one.
    pub last_seen: Option<i64>,
    /// When `deactivate-account` deactivated it; `None` while it is active.
    pub deactivated_at: Option<i64>,
}

/// Every account, by name, with what a row needs; sessions counted as of `now`.
const ACCOUNTS: &str = "SELECT a.user_id, a.created_at,
        (SELECT count(*) FROM tokens t WHERE t.user_id = a.user_id AND t.expires_at > $1),
        (SELECT count(*) FROM chat_members m WHERE m.user_id = a.user_id),
        coalesce(p.online, FALSE), p.last_seen, a.deactivated_at
    FROM accounts a LEFT JOIN presence p ON p.user_id = a.user_id
    ORDER BY a.user_id";

/// Whether a server runs on the SQLite database at `path` (holds its directory's lock);
/// `None` when that cannot be told.
pub fn sqlite_server_running(path: &Path) -> Option<bool> {
    sqlite::lock::is_held(path)
}

/// The accounts in the SQLite database at `path`.
pub fn sqlite_accounts(path: &Path, now: i64) -> Result<Vec<Account>, StoreError> {
    let conn = sqlite::open_source(path)?;
    let mut statement = conn.prepare(ACCOUNTS)?;
    let rows = statement.query_map([now], |row| {
        Ok(Account {
            user_id: row.get(0)?,
            created_at: row.get(1)?,
            sessions: row.get(2)?,
            chats: row.get(3)?,
            online: row.get::<_, i64>(4)? != 0,
            last_seen: row.get(5)?,
            deactivated_at: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The accounts in the PostgreSQL database at `url`.
pub async fn postgres_accounts(url: &str, now: i64) -> Result<Vec<Account>, StoreError> {
    let client = connect_for_reading(url).await?;
    let rows = client.query(ACCOUNTS, &[&now]).await?;
    rows.iter()
        .map(|row| {
            Ok(Account {
                user_id: row.try_get(0)?,
                created_at: row.try_get(1)?,
                sessions: row.try_get(2)?,
                chats: row.try_get(3)?,
                online: row.try_get(4)?,
                last_seen: row.try_get(5)?,
                deactivated_at: row.try_get(6)?,
            })
        })
        .collect()
}
