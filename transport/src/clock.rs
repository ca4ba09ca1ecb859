//! The one clock of the servers: unix seconds, as every timestamp on the wire.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix seconds (0 if the system clock is set before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
