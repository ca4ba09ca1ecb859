//! The benchmark's scenarios, one module each. Every scenario starts its own servers, puts the
//! same load on the ceiling server and on chat-server one after the other (never both at
//! once: they would share the two cores), and returns a [`ScenarioReport`].

pub mod allocations;
pub mod bundle;
pub mod cluster;
pub mod fanout;
pub mod history;
pub mod idle;
pub mod search;
pub mod send;

use std::path::PathBuf;

use crate::error::BenchError;
use crate::process::{Kind, ServerProcess};
use crate::report::ScenarioReport;

/// What every scenario gets from the command line.
#[derive(Debug, Clone)]
pub struct Context {
    /// Tiny sizes, seconds in all: proves the scenario runs, says nothing about speed.
    pub smoke: bool,
    pub server_bin: PathBuf,
    pub dist: PathBuf,
    pub page_script: PathBuf,
    /// The PostgreSQL server the cluster scenario creates its database on.
    pub database_url: String,
    /// The delay each way between the cluster's servers and PostgreSQL (`relay.rs`).
    pub database_delay: Option<std::time::Duration>,
}

/// Stops `server` gracefully and records whether it exited 0, as a check: a server must shut
/// down cleanly after (or under) load.
pub async fn stop_cleanly(
    server: ServerProcess,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let kind = server.kind;
    let clean = server.stop().await?;
    if kind == Kind::Real {
        report.check(
            "chat-server stops cleanly",
            clean,
            if clean {
                "exited 0 after SIGTERM"
            } else {
                "did not exit 0 within the grace period after SIGTERM"
            },
        );
    }
    Ok(())
}
