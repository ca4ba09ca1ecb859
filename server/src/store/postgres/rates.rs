//! Rate budgets shared by every server on the database (the send rate per user, sign-ins per
//! address): one GCRA row per key holding its theoretical arrival time, moved by a single
//! `INSERT … ON CONFLICT DO UPDATE … WHERE` that both checks and charges, on the database's
//! clock so that servers whose clocks differ still agree.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;

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

/// Deletes the rows of budgets that are long full again; run now and then by the server.
pub async fn forget_full(pool: &Pool) -> Result<(), StoreError> {
    pool.get()
        .await?
        .execute(
            "DELETE FROM rate_budgets
             WHERE tat < extract(epoch FROM clock_timestamp())::float8 - $1",
            &[&FORGET_AFTER_SECS],
        )
        .await?;
    Ok(())
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
        let charged = client
            .query_opt(
                "WITH now AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t)
                 INSERT INTO rate_budgets AS b (key, tat)
                 SELECT $1, t + $2 FROM now
                 ON CONFLICT (key) DO UPDATE
                 SET tat = greatest(b.tat, (SELECT t FROM now)) + $2
                 WHERE greatest(b.tat, (SELECT t FROM now)) - (SELECT t FROM now) <= $3
                 RETURNING tat",
                &[&key, &interval, &tolerance],
            )
            .await?;
        if charged.is_some() {
            return Ok(Ok(()));
        }
        let wait: f64 = client
            .query_opt(
                "SELECT tat - $2 - extract(epoch FROM clock_timestamp())::float8
                 FROM rate_budgets WHERE key = $1",
                &[&key, &tolerance],
            )
            .await?
            .map_or(Ok(0.0), |row| row.try_get(0))?;
        Ok(Err(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0))))
    }
}
