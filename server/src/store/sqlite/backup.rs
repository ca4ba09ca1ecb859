//! `chat-server backup`: a consistent copy of the database file, taken while a server (in this
//! or another process) keeps writing to it.
//!
//! `VACUUM INTO` copies what one read transaction sees, so the copy holds exactly the
//! transactions committed before it began, each whole. In WAL mode a reader never blocks the
//! writer: the server keeps committing while the copy is written (its WAL just cannot be
//! checkpointed past the copy's snapshot until the copy ends). The copy is written under a
//! temporary name, synced to disk and only then renamed, so a backup interrupted by a crash
//! never sits under the name an operator would restore from.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::schema;
use crate::store::StoreError;

/// What a finished backup holds, read back from the copy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    pub messages: i64,
    /// The newest message id in the copy, 0 when there are none.
    pub newest_message: i64,
}

/// Copies the database at `source` to `target`, which must not exist yet.
pub fn backup(source: &Path, target: &Path) -> Result<BackupSummary, StoreError> {
    if target.exists() {
        return Err(StoreError::Unavailable(format!(
            "{} exists; a backup never overwrites a file",
            target.display()
        )));
    }
    let conn = schema::open_source(source)?;
    let partial = partial_path(target);
    // A leftover from an interrupted backup; VACUUM INTO refuses a non-empty file.
    match std::fs::remove_file(&partial) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(&partial, error));
        }
        _ => {}
    }
    let partial_name = partial.to_str().ok_or_else(|| {
        StoreError::Unavailable(format!("{} is not valid UTF-8", partial.display()))
    })?;
    conn.execute("VACUUM INTO ?1", [partial_name])?;
    drop(conn);

    let summary = check_copy(&partial)?;
    std::fs::File::open(&partial)
        .and_then(|file| file.sync_all())
        .map_err(|error| io_error(&partial, error))?;
    std::fs::rename(&partial, target).map_err(|error| io_error(target, error))?;
    // The rename is durable only once the directory holding it is synced.
    if let Some(directory) = target.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::File::open(directory)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io_error(directory, error))?;
    }
    Ok(summary)
}

/// Opens the finished copy, checks it is a sound database and counts what it holds.
fn check_copy(path: &Path) -> Result<BackupSummary, StoreError> {
    let copy = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(StoreError::Unavailable(format!(
            "the copy at {} fails its check: {check}",
            path.display()
        )));
    }
    let (messages, newest_message) = copy.query_row(
        "SELECT count(*), coalesce(max(id), 0) FROM messages",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(BackupSummary {
        messages,
        newest_message,
    })
}

fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {error}", path.display()))
}
