//! Reader connections, reused across calls and used off the async threads. WAL lets them
//! read while the writer commits.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

use super::schema;
use crate::store::StoreError;

/// Idle reader connections kept open.
const IDLE_READERS: usize = 8;

pub struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `query` on a reader connection on tokio's blocking pool.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || pool.with(query))
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
