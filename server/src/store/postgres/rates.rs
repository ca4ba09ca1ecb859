//! Limits shared by every server on the database, on the database's clock so that servers
//! whose clocks differ still agree:
//! - rate budgets (the send rate and New calls per user, sign-ins and sign-outs per address):
//!   one GCRA row per key holding its theoretical arrival time, moved by a single
//!   `INSERT … ON CONFLICT DO UPDATE` that both checks and charges, for every charge this
//!   server has waiting at the moment (see `charge_queued`);
//! - failed sign-ins: the ladder of (account, address) and the account's budget of
//!   `limits::sign_in` as rows, locked together for one attempt's decision, which
//!   `sign_in::Policy` makes exactly as it does in one server's memory.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chat_core::ids::UserId;
use deadpool_postgres::{Client, GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};

use crate::limits::sign_in::{At, Bucket, Ladder, Policy, Source};
use crate::store::{SharedRates, StoreError};

/// Rows whose budget has been full again this long are deleted (a full budget is the same
/// as no row), so made-up keys cannot grow the table.
const FORGET_AFTER_SECS: f64 = 600.0;

/// Charges waiting for the charger; takers wait when it is full.
const CHARGES_QUEUED: usize = 4096;
/// How many charges one round of the charger takes at most.
const MAX_CHARGES: usize = 1024;

/// A budget's shape: one cell every `interval`, `burst` cells at once.
type Shape = (Duration, u32);

/// What a charge comes to: taken, or how long until a cell is there.
type Outcome = Result<Result<(), Duration>, StoreError>;

pub struct PgRates {
    pool: Pool,
    charges: mpsc::Sender<Charge>,
}

/// One cell of `key`'s budget asked for, with where the answer goes.
struct Charge {
    key: String,
    shape: Shape,
    reply: oneshot::Sender<Outcome>,
}

impl PgRates {
    /// Starts the charger task, which ends when this is dropped.
    pub fn new(pool: Pool) -> Self {
        let (charges, queue) = mpsc::channel(CHARGES_QUEUED);
        tokio::spawn(charge_queued(pool.clone(), queue));
        Self { pool, charges }
    }
}

/// The charger: a budget is charged on every Send, so charges are grouped like the writer's
/// appends: each round takes every charge queued at the moment and settles all of a shape in
/// one statement (one round trip, one row update per key however many cells it takes), while
/// the next round's charges queue. An idle server's one charge goes at once.
async fn charge_queued(pool: Pool, mut queue: mpsc::Receiver<Charge>) {
    let mut round = Vec::with_capacity(MAX_CHARGES);
    while queue.recv_many(&mut round, MAX_CHARGES).await > 0 {
        let mut by_shape: HashMap<Shape, Vec<Charge>> = HashMap::new();
        for charge in round.drain(..) {
            by_shape.entry(charge.shape).or_default().push(charge);
        }
        let client = match pool.get().await {
            Ok(client) => client,
            Err(error) => {
                let error = StoreError::from(error);
                for charge in by_shape.into_values().flatten() {
                    let _ = charge.reply.send(Err(error.clone()));
                }
                continue;
            }
        };
        // A round holds as many shapes as kinds of limit were charged (a handful): their
        // statements share the connection's pipeline.
        futures::future::join_all(
            by_shape
                .into_iter()
                .map(|(shape, charges)| charge_shape(&client, shape, charges)),
        )
        .await;
    }
}

/// Charges every key of `charges`, each as many cells as it has charges (up to `burst`),
/// and answers each charge in the order it came: the first ones of a key take the cells its
/// budget had, the others hear how long until the next.
async fn charge_shape(client: &Client, (interval, burst): Shape, charges: Vec<Charge>) {
    // In key order, which is the order the statement locks the rows in: two servers charging
    // the same keys at once then wait for one another instead of deadlocking.
    let mut wanted: BTreeMap<&str, i32> = BTreeMap::new();
    for charge in &charges {
        let cells = wanted.entry(charge.key.as_str()).or_default();
        *cells = (*cells + 1).min(i32::try_from(burst.max(1)).unwrap_or(i32::MAX));
    }
    let (keys, cells): (Vec<&str>, Vec<i32>) = wanted.into_iter().unzip();
    let interval = interval.as_secs_f64();
    // A key may run `tolerance` ahead of now: `burst` cells at once, then one per interval.
    let tolerance = interval * f64::from(burst.max(1) - 1);
    let charged = charge_statement(client, &keys, &cells, interval, tolerance).await;
    let mut budgets = match charged {
        Ok(budgets) => budgets,
        Err(error) => {
            for charge in charges {
                let _ = charge.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    for charge in charges {
        let outcome = match budgets.get_mut(&charge.key) {
            Some((granted, _)) if *granted > 0 => {
                *granted -= 1;
                Ok(Ok(()))
            }
            Some((_, wait)) => Ok(Err(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0)))),
            None => Err(StoreError::Unavailable(format!(
                "the rate budget of {} was not returned",
                charge.key
            ))),
        };
        let _ = charge.reply.send(outcome);
    }
}

/// Runs the charge: per key, the cells granted and the seconds until its next cell.
async fn charge_statement(
    client: &Client,
    keys: &[&str],
    cells: &[i32],
    interval: f64,
    tolerance: f64,
) -> Result<HashMap<String, (i32, f64)>, StoreError> {
    // GCRA for several cells: a budget whose theoretical arrival time is `tat` may take the
    // k-th cell now if max(tat, now) + (k - 1) × interval - now <= tolerance. A new key has
    // its whole burst, which `cells` never exceeds. `granted` is set from the row as it was
    // before the update (SET reads the old row), and RETURNING reads it back.
    let statement = client
        .prepare_cached(
            "WITH now AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t)
             INSERT INTO rate_budgets AS b (key, tat, granted)
             SELECT w.key, now.t + $2::float8 * w.cells, w.cells
             FROM unnest($1::text[], $4::int4[]) AS w(key, cells), now
             ORDER BY w.key
             ON CONFLICT (key) DO UPDATE
             SET (tat, granted) = (
                 SELECT greatest(b.tat, n.t) + $2::float8 * g.cells, g.cells
                 FROM now n, LATERAL (SELECT least(
                     excluded.granted::float8,
                     greatest(0, floor((n.t + $3::float8 - greatest(b.tat, n.t)) / $2::float8) + 1)
                 )::int4 AS cells) g
             )
             RETURNING key, granted, tat - $3::float8 - (SELECT t FROM now)",
        )
        .await?;
    let rows = client
        .query(&statement, &[&keys, &interval, &tolerance, &cells])
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
        .collect()
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

/// The `address` column of a source's ladder: the address, empty when it is unknown (a
/// primary key column cannot be NULL), or `device ` and the device key's hash in hex, which
/// no address looks like.
fn source_column(source: Source) -> String {
    match source {
        Source::Address(address) => address
            .map(|address| address.to_string())
            .unwrap_or_default(),
        Source::Device(hash) => format!("device {}", crate::auth::hex(&hash)),
    }
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
        let (reply, outcome) = oneshot::channel();
        let charge = Charge {
            key: key.to_owned(),
            shape: (interval, burst),
            reply,
        };
        let stopped = || StoreError::Unavailable("the rate charger stopped".to_owned());
        self.charges.send(charge).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn sign_in_attempt(
        &self,
        user: &UserId,
        source: Source,
        policy: &Policy,
    ) -> Result<Result<(), Duration>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Limits slow abuse down, they are not records (see `limits`): a commit need not wait
        // for the disk, and after a database crash at worst a few failures are forgotten.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        let address = source_column(source);
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
        let mut budget = if source.shares_the_budget() {
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
            Some(Bucket {
                tokens: row.try_get(0)?,
                updated: at(row.try_get(1)?),
            })
        } else {
            None
        };
        let outcome = policy.attempt(&mut ladder, budget.as_mut(), now);
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
            if let Some(budget) = &budget {
                store_budget(&tx, user, budget, policy).await?;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn sign_in_succeeded(
        &self,
        user: &UserId,
        source: Source,
        policy: &Policy,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        let now = database_now(&tx).await?;
        tx.execute(
            "DELETE FROM sign_in_ladders WHERE user_id = $1 AND address = $2",
            &[&user.as_str(), &source_column(source)],
        )
        .await?;
        if !source.shares_the_budget() {
            tx.commit().await?;
            return Ok(());
        }
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
