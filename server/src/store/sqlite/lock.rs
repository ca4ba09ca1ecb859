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
use std::os::unix::fs::MetadataExt;
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

/// Whether some process holds the lock of the data directory that holds `database` (a server
/// runs on it), as the kernel lists its locks in `/proc/locks`: looked up, not taken, so that
/// asking never makes a server starting at that moment find the directory in use. `None`
/// where the list cannot be read (not Linux).
pub fn is_held(database: &Path) -> Option<bool> {
    let metadata = match std::fs::metadata(database.with_extension("lock")) {
        Ok(metadata) => metadata,
        // No server ever ran on the directory, or not since the lock file was introduced.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    Some(holds_lock(&locks, metadata.dev(), metadata.ino()))
}

/// Whether `/proc/locks` (its text in `locks`) lists a `flock` on the file `inode` of device
/// `device`. Each line names the file as `MAJOR:MINOR:INODE`, the device numbers in hex.
fn holds_lock(locks: &str, device: u64, inode: u64) -> bool {
    let file = format!(
        "{:02x}:{:02x}:{inode}",
        libc::major(device),
        libc::minor(device)
    );
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.contains(&"FLOCK") && fields.contains(&file.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_taken_here_is_listed_and_one_given_back_is_not() {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("chat.db");
        assert_eq!(is_held(&database), Some(false), "no lock file yet");
        let lock = take(&database).unwrap();
        assert_eq!(is_held(&database), Some(true));
        drop(lock);
        assert_eq!(is_held(&database), Some(false));
    }

    #[test]
    fn only_a_flock_on_that_very_file_counts() {
        let device = libc::makedev(0xfe, 0x01);
        let locks = "1: POSIX  ADVISORY  WRITE 3864 fe:01:770064 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4100 fe:01:770065 0 EOF\n";
        assert!(
            !holds_lock(locks, device, 770064),
            "a POSIX lock is not the directory's"
        );
        assert!(holds_lock(locks, device, 770065));
        assert!(!holds_lock(locks, device, 77006));
        assert!(!holds_lock(locks, libc::makedev(0xfe, 0x02), 770065));
    }
}
