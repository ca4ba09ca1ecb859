//! One process at a time writes an SQLite data directory. A second server started on the
//! same directory would reset the first one's presence at start-up, never see the first
//! one's messages live (each publishes only what its own writer commits), and leave the two
//! writers waiting on each other's locks; an operator's task (`add-account`) run under a
//! server would change passwords behind that server's token cache. So the process that opens
//! the store to serve or for an operator's task takes an exclusive lock on `chat.lock` beside
//! the database (see `store::claim`), and the next one is refused with a sentence saying what
//! to do. The lock is the kernel's (`flock`):
//! it goes with the process however that ends, SIGKILL and power loss included, so a crash
//! never leaves a stale lock behind to be removed by hand.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::store::StoreError;

/// Held while the store is open; dropping it releases the directory.
pub struct DirectoryLock {
    _file: File,
}

/// Takes the lock of the data directory that holds `database`, or says who has it.
pub fn take(database: &Path) -> Result<DirectoryLock, StoreError> {
    let path = database.with_extension("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| {
            StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(DirectoryLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(StoreError::InUse(format!(
            "{} is in use by another chat-server process (it holds {}): stop that server \
             first, or give this one a --data-dir of its own",
            database.display(),
            path.display()
        ))),
        Err(TryLockError::Error(error)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {error}",
            path.display()
        ))),
    }
}
