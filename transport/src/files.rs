//! Noticing that a file of the UI was replaced: what the server derives from `index.html`
//! (its Content-Security-Policy, its page with the server's settings) is made again when a
//! new build is deployed under a running server, and only then.

use std::path::Path;
use std::time::SystemTime;

/// Enough of a file's metadata to notice that it was replaced.
pub type FileStamp = (Option<SystemTime>, u64);

/// The stamp of the file at `path` now (that of no file when it cannot be read).
pub fn stamp(path: &Path) -> FileStamp {
    std::fs::metadata(path)
        .map(|meta| (meta.modified().ok(), meta.len()))
        .unwrap_or((None, 0))
}
