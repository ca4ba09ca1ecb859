//! Reader connections, reused across calls and used off the async threads. WAL lets them
//! read while the writer commits.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::schema;
use crate::store::StoreError;

/// Idle reader connections kept open.
const IDLE_READERS: usize = 8;
/// Reads that run at once, at most; the others wait for a turn. Each running read holds a
/// connection, whose page cache grows to 2 MB, on a thread of tokio's blocking pool with
/// the allocator's arena of that thread. Unbounded, twenty streams catching up at once held
/// twenty of each: 3 MB a stream (`slow_consumer` measured 59–66 MB for twenty), for reads
/// that two cores run no faster than eight at a time.
const READS_AT_ONCE: usize = IDLE_READERS;

pub struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    turns: Arc<Semaphore>,
}

impl ReaderPool {
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            path,
            idle: Mutex::new(Vec::new()),
            turns: Arc::new(Semaphore::new(READS_AT_ONCE)),
        })
    }

    /// Runs `query` on a reader connection on tokio's blocking pool, once it is its turn.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let turn = Arc::clone(&self.turns)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the reader pool is closed".into()))?;
        let pool = Arc::clone(self);
        // The turn ends with the query, not with this future: a caller that goes away does
        // not let another read start while its query still runs.
        tokio::task::spawn_blocking(move || {
            let result = pool.with(query);
            drop(turn);
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("reader task failed: {error}")))?
    }

    fn with<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let reused = self.idle.lock().pop();
        let conn = match reused {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let result = query(&conn);
        let mut idle = self.idle.lock();
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}
