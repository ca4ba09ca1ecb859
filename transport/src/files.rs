//! What the server derives from a file of the UI (`index.html`: its Content-Security-Policy,
//! its page with the server's settings), made again when a new build is deployed under a
//! running server, and only then.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;

/// Enough of a file's metadata to notice that it was replaced.
type FileStamp = (Option<SystemTime>, u64);

/// A value made from a file's text, made again when the file is replaced (a file that cannot
/// be read counts as empty).
pub struct FromFile<T> {
    path: PathBuf,
    make: Box<dyn Fn(&str) -> T + Send + Sync>,
    current: Mutex<Option<(FileStamp, T)>>,
}

impl<T: Clone> FromFile<T> {
    pub fn new(path: PathBuf, make: impl Fn(&str) -> T + Send + Sync + 'static) -> Self {
        Self {
            path,
            make: Box::new(make),
            current: Mutex::new(None),
        }
    }

    /// The value for the file as it is now.
    pub fn get(&self) -> T {
        let stamp = stamp(&self.path);
        let mut current = self.current.lock();
        if let Some((seen, value)) = current.as_ref()
            && *seen == stamp
        {
            return value.clone();
        }
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let value = (self.make)(&text);
        *current = Some((stamp, value.clone()));
        value
    }
}

fn stamp(path: &Path) -> FileStamp {
    std::fs::metadata(path)
        .map(|meta| (meta.modified().ok(), meta.len()))
        .unwrap_or((None, 0))
}
