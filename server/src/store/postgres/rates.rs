//! Limits shared by every server on the database, on the database's clock so that servers
//! whose clocks differ still agree:
//! - rate budgets (the send rate and New calls per user, sign-ins and sign-outs per address):
//!   one GCRA row per key holding its theoretical arrival time, moved by a single
//!   `INSERT … ON CONFLICT DO UPDATE … WHERE` that both checks and charges;
//! - failed sign-ins: the ladder of (account, address) and the account's budget of
//!   `limits::sign_in` as rows, locked together for one attempt's decision, which
//!   `sign_in::Policy` makes exactly as it does in one server's memory.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::ids::UserId;
use deadpool_postgres::{GenericClient, Pool};

use crate::limits::sign_in::{At, Bucket, Ladder, Policy};
use crate::store::{SharedRates, StoreError};

/// Rows whose budget has been full again this long are deleted (a full budget is the same
/// as no row), so made-up keys cannot grow the table.
const FORGET_AFTER_SECS: f64 = 600.0;

pub struct PgRates {
    pool: Pool,
}

impl PgRates {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

/// Deletes the rows of budgets that are long full again and of sign-in state that has been
/// forgotten; run now and then by the server.
pub async fn forget_full(pool: &Pool) -> Result<(), StoreError> {
    pool.get()
        .await?
        .batch_execute(&format!(
            "DELETE FROM rate_budgets
             WHERE tat < extract(epoch FROM clock_timestamp())::float8 - {FORGET_AFTER_SECS};
             DELETE FROM sign_in_ladders
             WHERE forget_at < extract(epoch FROM clock_timestamp())::float8;
             DELETE FROM sign_in_budgets
             WHERE forget_at < extract(epoch FROM clock_timestamp())::float8;"
        ))
        .await?;
    Ok(())
}

/// The database's clock, as a time since the unix epoch.
async fn database_now(client: &impl GenericClient) -> Result<At, StoreError> {
    let now: f64 = client
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .await?
        .try_get(0)?;
    Ok(Duration::from_secs_f64(now.max(0.0)))
}

/// Writes `user`'s account budget back, with when it is full again.
async fn store_budget(
    tx: &impl GenericClient,
    user: &UserId,
    budget: &Bucket,
    policy: &Policy,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE sign_in_budgets SET tokens = $2, updated_at = $3, forget_at = $4
         WHERE user_id = $1",
        &[
            &user.as_str(),
            &budget.tokens,
            &seconds(budget.updated),
            &seconds(policy.budget_full_at(budget)),
        ],
    )
    .await?;
    Ok(())
}

/// How a missing address is stored (a primary key column cannot be NULL).
fn address_column(address: Option<IpAddr>) -> String {
    address
        .map(|address| address.to_string())
        .unwrap_or_default()
}

fn seconds(at: At) -> f64 {
    at.as_secs_f64()
}

fn at(seconds: f64) -> At {
    Duration::from_secs_f64(seconds.max(0.0))
}

#[async_trait]
impl SharedRates for PgRates {
    async fn take(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Result<(), Duration>, StoreError> {
        let client = self.pool.get().await?;
        let interval = interval.as_secs_f64();
        // A key may run `tolerance` ahead of now: `burst` cells at once, then one per interval.
        let tolerance = interval * f64::from(burst.max(1) - 1);
        // Prepared once per connection: this runs on every Send, and a statement given as
        // text is parsed and planned again each time, in a round trip of its own.
        let charge = client
            .prepare_cached(
                "WITH now AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t)
                 INSERT INTO rate_budgets AS b (key, tat)
                 SELECT $1, t + $2 FROM now
                 ON CONFLICT (key) DO UPDATE
                 SET tat = greatest(b.tat, (SELECT t FROM now)) + $2
                 WHERE greatest(b.tat, (SELECT t FROM now)) - (SELECT t FROM now) <= $3
                 RETURNING tat",
            )
            .await?;
        let charged = client
            .query_opt(&charge, &[&key, &interval, &tolerance])
            .await?;
        if charged.is_some() {
            return Ok(Ok(()));
        }
        let full_at = client
            .prepare_cached(
                "SELECT tat - $2 - extract(epoch FROM clock_timestamp())::float8
                 FROM rate_budgets WHERE key = $1",
            )
            .await?;
        let wait: f64 = client
            .query_opt(&full_at, &[&key, &tolerance])
            .await?
            .map_or(Ok(0.0), |row| row.try_get(0))?;
        Ok(Err(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0))))
    }

    async fn sign_in_attempt(
        &self,
        user: &UserId,
        address: Option<IpAddr>,
        policy: &Policy,
    ) -> Result<Result<(), Duration>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Limits slow abuse down, they are not records (see `limits`): a commit need not wait
        // for the disk, and after a database crash at worst a few failures are forgotten.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        let address = address_column(address);
        // Each upsert leaves a fresh row where there was none and locks the row either way,
        // so two first attempts at once count one after the other instead of both starting
        // from nothing. Ladder first, then budget, in every transaction, so no two attempts
        // wait for each other's rows in opposite orders.
        let row = tx
            .query_one(
                "WITH now AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t)
                 INSERT INTO sign_in_ladders AS l
                     (user_id, address, failures, blocked_until, last_at, forget_at)
                 SELECT $1, $2, 0, NULL, t, t + $3 FROM now
                 ON CONFLICT (user_id, address) DO UPDATE SET failures = l.failures
                 RETURNING failures, blocked_until, last_at, (SELECT t FROM now)",
                &[
                    &user.as_str(),
                    &address,
                    &policy.forget_after().as_secs_f64(),
                ],
            )
            .await?;
        let mut ladder = Ladder {
            count: u32::try_from(row.try_get::<_, i32>(0)?).unwrap_or(0),
            blocked_until: row.try_get::<_, Option<f64>>(1)?.map(at),
            last: at(row.try_get(2)?),
        };
        let now = at(row.try_get(3)?);
        let fresh = policy.full_budget(now);
        let row = tx
            .query_one(
                "INSERT INTO sign_in_budgets AS b (user_id, tokens, updated_at, forget_at)
                 VALUES ($1, $2, $3, $3)
                 ON CONFLICT (user_id) DO UPDATE SET tokens = b.tokens
                 RETURNING tokens, updated_at",
                &[&user.as_str(), &fresh.tokens, &seconds(fresh.updated)],
            )
            .await?;
        let mut budget = Bucket {
            tokens: row.try_get(0)?,
            updated: at(row.try_get(1)?),
        };
        let outcome = policy.attempt(&mut ladder, &mut budget, now);
        if outcome.is_ok() {
            tx.execute(
                "UPDATE sign_in_ladders
                 SET failures = $3, blocked_until = $4, last_at = $5, forget_at = $6
                 WHERE user_id = $1 AND address = $2",
                &[
                    &user.as_str(),
                    &address,
                    &i32::try_from(ladder.count).unwrap_or(i32::MAX),
                    &ladder.blocked_until.map(seconds),
                    &seconds(ladder.last),
                    &seconds(policy.ladder_forgotten_at(&ladder)),
                ],
            )
            .await?;
            store_budget(&tx, user, &budget, policy).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn sign_in_succeeded(
        &self,
        user: &UserId,
        address: Option<IpAddr>,
        policy: &Policy,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        let now = database_now(&tx).await?;
        tx.execute(
            "DELETE FROM sign_in_ladders WHERE user_id = $1 AND address = $2",
            &[&user.as_str(), &address_column(address)],
        )
        .await?;
        let stored = tx
            .query_opt(
                "SELECT tokens, updated_at FROM sign_in_budgets WHERE user_id = $1 FOR UPDATE",
                &[&user.as_str()],
            )
            .await?;
        if let Some(row) = stored {
            let mut budget = Bucket {
                tokens: row.try_get(0)?,
                updated: at(row.try_get(1)?),
            };
            policy.give_back(&mut budget, now);
            store_budget(&tx, user, &budget, policy).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
