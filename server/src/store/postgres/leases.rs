//! Stream slots shared by every server on the database: one row per open Stream or Connect,
//! a lease its server renews while the stream lives. A server that dies stops renewing, so
//! its rows lapse after [`LEASE`] and its users get their slots back without anyone cleaning
//! up after it.

use std::time::Duration;

use async_trait::async_trait;
use chat_core::ids::UserId;
use deadpool_postgres::{Client, Pool};

use crate::store::{StoreError, StreamLeases};

/// How long a lease lasts unless renewed; also the longest a dead server's streams keep
/// counting against their users.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often a server renews all of its leases, in one statement: well within [`LEASE`], so
/// one slow or failed renewal does not let a live stream's lease lapse.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// The lease rows of one server (`server` is a random number chosen at start-up).
pub struct PgLeases {
    pool: Pool,
    server: i64,
}

impl PgLeases {
    /// Starts renewing this server's leases every [`RENEW_EVERY`] for as long as the pool
    /// lives.
    pub fn start(pool: Pool) -> Self {
        let server: i64 = rand::random();
        let renewer = pool.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(RENEW_EVERY);
            loop {
                ticks.tick().await;
                if renewer.is_closed() {
                    return;
                }
                if let Err(error) = renew(&renewer, server).await {
                    tracing::warn!(%error, "cannot renew stream leases; retrying");
                }
                // The shared rate budgets' housekeeping rides on the same tick.
                if let Err(error) = super::rates::forget_full(&renewer).await {
                    tracing::warn!(%error, "cannot delete full rate budgets; retrying");
                }
            }
        });
        Self { pool, server }
    }
}

async fn renew(pool: &Pool, server: i64) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE stream_leases SET expires_at = now() + make_interval(secs => $2)
             WHERE server = $1",
            &[&server, &LEASE.as_secs_f64()],
        )
        .await?;
    Ok(())
}

/// How many people one sweep settles at most; the rest wait for the next one.
const SWEEP_MAX: i64 = 1_000;

/// Settles the presence of people whose every stream lease has lapsed: their streams were on a
/// server that died without a word (a server that closes a stream deletes its lease and
/// settles the person's presence itself). Each is recorded offline since their newest
/// lease's last renewal, which is when their stream was last known alive, and their lapsed
/// rows are deleted. Per person, under the lock that taking a lease holds, so a stream
/// opening at that moment anywhere is either seen (and they stay online) or opens after and
/// announces them online again. Returns who went offline, and since when (unix seconds):
/// only those whose recorded presence this call changed, so several servers sweeping at once
/// announce each person once.
pub async fn sweep_lapsed(client: &mut Client) -> Result<Vec<(UserId, i64)>, StoreError> {
    let lapsed = client
        .query(
            "SELECT user_id FROM stream_leases
             GROUP BY user_id HAVING max(expires_at) < now()
             LIMIT $1",
            &[&SWEEP_MAX],
        )
        .await?;
    let mut settled = Vec::new();
    for row in lapsed {
        let user: String = row.try_get(0)?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&user],
        )
        .await?;
        // Deleted whatever happens next: a lapsed lease counts for nobody.
        let renewed: Option<f64> = tx
            .query_one(
                "WITH gone AS (
                     DELETE FROM stream_leases WHERE user_id = $1 AND expires_at < now()
                     RETURNING expires_at)
                 SELECT extract(epoch FROM max(expires_at))::float8 - $2 FROM gone",
                &[&user, &LEASE.as_secs_f64()],
            )
            .await?
            .try_get(0)?;
        let live: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM stream_leases WHERE user_id = $1)",
                &[&user],
            )
            .await?
            .try_get(0)?;
        let changed = match renewed {
            // Another server swept them first, or a stream of theirs is open somewhere.
            None => false,
            Some(_) if live => false,
            Some(renewed) => {
                tx.execute(
                    "UPDATE presence SET online = FALSE, last_seen = $2
                     WHERE user_id = $1 AND online",
                    &[&user, &(renewed as i64)],
                )
                .await?
                    > 0
            }
        };
        tx.commit().await?;
        if changed {
            settled.push((
                crate::store::decode::stored_user(&user)?,
                renewed.unwrap_or(0.0) as i64,
            ));
        }
    }
    Ok(settled)
}

#[async_trait]
impl StreamLeases for PgLeases {
    async fn take(&self, user: &UserId, max: usize) -> Result<Option<i64>, StoreError> {
        let client = self.pool.get().await?;
        let lock = client
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .await?;
        // Counts the user's live leases and takes one if there is room, dropping lapsed
        // ones. Its snapshot is taken when it starts, after the lock is granted, so it sees
        // every lease committed before: it counts only unexpired rows rather than after the
        // deletion, which a statement's own later parts do not see.
        let take = client
            .prepare_cached(
                "WITH gone AS (
                     DELETE FROM stream_leases WHERE user_id = $1 AND expires_at < now()),
                 open AS (
                     SELECT count(*) AS leases FROM stream_leases
                     WHERE user_id = $1 AND expires_at >= now())
                 INSERT INTO stream_leases (user_id, server, expires_at)
                 SELECT $1, $2, now() + make_interval(secs => $3) FROM open
                 WHERE open.leases < $4
                 RETURNING id",
            )
            .await?;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        // One user's slots are counted and taken one transaction at a time (other users'
        // are not held up): without the lock two servers could both see one slot free. The
        // transaction is one round trip, so the lock is held for the statement and the
        // commit only: a user whose devices all reconnect at once (their server died) waits
        // for each of the others' commits, not for four round trips each. The commit does
        // not wait for the WAL's flush: a lease is not data anyone was promised, and one lost
        // with a database crash lets its user open one stream more until that one ends.
        let taken = futures::future::try_join4(
            client.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
            client.execute(&lock, &[&user.as_str()]),
            client.query_opt(
                &take,
                &[&user.as_str(), &self.server, &LEASE.as_secs_f64(), &max],
            ),
            client.batch_execute("COMMIT"),
        )
        .await;
        match taken {
            Ok(((), _, taken, ())) => Ok(taken.map(|row| row.try_get(0)).transpose()?),
            Err(error) => {
                // The connection may still be inside the transaction.
                drop(deadpool_postgres::Object::take(client));
                Err(error.into())
            }
        }
    }

    async fn give_back(&self, lease: i64) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM stream_leases WHERE id = $1", &[&lease])
            .await?;
        Ok(())
    }
}
