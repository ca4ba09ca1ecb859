//! Whether this server can serve now, for load balancers and orchestrators: ready while its
//! store answers ([`Store::ping`]: on PostgreSQL a query through the pool, on SQLite a read
//! with the writer thread running), checked every [`EVERY`]. Told two ways: the standard gRPC
//! health service on the API port (the whole server, `""`, and `chat.Chat`), and
//! `GET /readyz` beside `/metrics`. A server cut off from the database (its network, its
//! connections refused) then stops getting new clients from a load balancer that checks,
//! while the servers that still reach it take them; it is ready again by itself once the
//! database answers. From the start of the shutdown on it is never ready.
//!
//! One failed check is enough to say "not ready" and one good one to say "ready": a load
//! balancer or an orchestrator counts failures in a row itself (HAProxy's `fall`,
//! Kubernetes' `failureThreshold`) as its operator chose, and would only add its count to
//! ours.

use std::sync::Arc;
use std::time::Duration;

use chat_core::proto::chat_server::SERVICE_NAME as CHAT_SERVICE;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::store::Store;

/// How often the store is asked.
const EVERY: Duration = Duration::from_secs(2);
/// How long an answer may take before the store counts as not answering. Generous: a pool
/// busy with calls makes the check wait its turn, and a server that is only busy must not be
/// taken out of rotation (its load would go to the others and make them busy in turn).
const PATIENCE: Duration = Duration::from_secs(5);

/// What the server says of itself: `None` when ready, else why not.
#[derive(Clone)]
pub struct Readiness(watch::Receiver<Option<String>>);

impl Readiness {
    /// Why the server is not ready, or `None` when it is.
    pub fn why_not(&self) -> Option<String> {
        self.0.borrow().clone()
    }
}

/// Starts checking `store`, telling the result to `health`, until `stopping` turns true;
/// from then on the server is not ready, on both channels.
pub fn start(
    store: Arc<dyn Store>,
    health: HealthReporter,
    mut stopping: watch::Receiver<bool>,
) -> Readiness {
    // The store has just opened: ready until a check says otherwise.
    let (state, readiness) = watch::channel(None);
    tokio::spawn(async move {
        let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why_not = tokio::select! {
                biased;
                () = stopped(&mut stopping) => break,
                _ = checks.tick() => check(store.as_ref(), &mut stopping).await,
            };
            let Some(why_not) = why_not else { break };
            if *state.borrow() == why_not {
                continue;
            }
            match &why_not {
                None => tracing::info!("ready again: the database answers"),
                Some(why) => tracing::warn!(%why, "not ready"),
            }
            tell(&health, why_not.is_none()).await;
            state.send_replace(why_not);
        }
        state.send_replace(Some("shutting down".to_owned()));
        tell(&health, false).await;
    });
    Readiness(readiness)
}

/// Asks the store; `None` if the shutdown began meanwhile (its answer no longer matters).
async fn check(store: &dyn Store, stopping: &mut watch::Receiver<bool>) -> Option<Option<String>> {
    tokio::select! {
        biased;
        () = stopped(stopping) => None,
        answer = tokio::time::timeout(PATIENCE, store.ping()) => Some(match answer {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("the database does not answer: {error}")),
            Err(_) => Some(format!(
                "the database did not answer within {} s",
                PATIENCE.as_secs()
            )),
        }),
    }
}

/// Returns once `stopping` is true (or its sender is gone). The watch's reference to the
/// value is not kept: it may not be held across an await in a task.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Sets the health service's statuses, of the whole server and of `chat.Chat`.
pub async fn tell(health: &HealthReporter, ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in ["", CHAT_SERVICE] {
        health.set_service_status(service, status).await;
    }
}
