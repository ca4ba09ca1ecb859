//! The chat server: tonic gRPC and gRPC-web on one port, on an embedded SQLite database.
//!
//! [`run`] wires the pieces together; `main.rs` only parses settings and calls it, and the
//! integration tests call it the same way on `127.0.0.1:0`.
//!
//! - `config`: settings from flags and `CHAT_*` variables; `accounts`: the operator's
//!   `add-account` and `set-password`.
//! - `service`: the gRPC handlers, thin; `auth`: accounts and tokens; `password`: argon2id,
//!   a bounded number of hashes at once.
//! - `store`: the storage trait and its SQLite and PostgreSQL backends (the only SQL).
//! - `fanout`: the broker that routes committed messages to open feeds.
//! - `feed`: one live stream (replay, live, catch-up, heartbeat, shutdown); `membership`:
//!   Leave, and ending the leaver's open calls of the chat.
//! - `limits`: per-user send rate and streams, sign-in attempts per account and address;
//!   `client_address`: which address a call counts as coming from (`--trusted-proxies`).
//! - `metrics`: the Prometheus series and their own listener (`--metrics-listen`).
//! - `allocations`: with the `count-allocations` feature only, a counting global allocator
//!   whose totals `/metrics` reports (for `chat-bench allocations`).
//!
//! How the services reach the network (gRPC-web, CORS, the static UI, TLS, the server's
//! HTTP settings) is the `chat-transport` crate's, shared with the benchmark's ceiling.

pub mod client_address;
pub mod config;

#[cfg(feature = "count-allocations")]
mod allocations;

#[cfg(all(feature = "count-allocations", feature = "mimalloc"))]
compile_error!("count-allocations wraps the system allocator: build it without mimalloc");

// Only for measuring it against glibc's malloc (BENCHMARKS.md); see the feature in Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod accounts;
mod auth;
mod error;
mod fanout;
mod feed;
mod limits;
mod membership;
mod metrics;
mod password;
mod presence;
mod readiness;
mod service;
mod signals;
mod store;

/// The operators' tools behind `chat-server add-account`, `set-password`,
/// `deactivate-account` and `accounts`.
pub use accounts::{AccountTask, account_task, accounts_table, deactivate_account, read_password};
/// How much live delivery holds per reader, for capacity planning and the fault tests that
/// check memory stays within it.
pub use fanout::FEED_CAPACITY;
pub use feed::REPLAY_PAGE;
#[doc(hidden)]
pub use store::postgres::migration_sql as postgres_migration_sql;
/// The operators' tools behind `chat-server backup` and `migrate`.
pub use store::{migrate::migrate_to_postgres, sqlite::backup::backup as backup_sqlite};

/// For `chat-server migrate`: the lock of the SQLite data directory holding `database`
/// (kept through the copy, so that no server starts on it meanwhile), or the sentence saying
/// that a server holds it.
pub fn claim_sqlite(database: &std::path::Path) -> Result<impl Sized, String> {
    store::claim(&store::Location::Sqlite(database.to_owned())).map_err(|error| match error {
        store::StoreError::InUse(_) => {
            format!("a chat-server still runs on {}", database.display())
        }
        other => other.to_string(),
    })
}

use std::sync::Arc;

use chat_core::proto::auth_server::AuthServer;
use chat_core::proto::chat_server::ChatServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::auth::Authenticator;
use crate::config::{Settings, SignUp};
use crate::fanout::Broker;
use crate::limits::Limits;
use crate::membership::Departures;
use crate::metrics::Metrics;
use crate::service::auth::AuthService;
use crate::service::chat::ChatService;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(String),
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen for metrics on {address}: {source}")]
    MetricsListen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Serves until `shutdown` completes, then ends open streams (UNAVAILABLE, so clients
/// reconnect and resume), lets in-flight calls finish, and returns.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| ServerError::DataDir {
        path: settings.data_dir.display().to_string(),
        source,
    })?;
    let metrics = Metrics::new();
    // Bound before anything is served, so a taken port stops the start-up.
    let metrics_listener = match settings.metrics_listen {
        Some(address) => Some(
            chat_transport::listen(address)
                .map_err(|source| ServerError::MetricsListen { address, source })?,
        ),
        None => None,
    };
    let location = settings.store_location();
    let _claim = store::claim(&location).map_err(|error| ServerError::Store(error.to_string()))?;
    let broker = Broker::new();
    let store = store::open(&location, Arc::clone(&broker), Arc::clone(&metrics))
        .await
        .map_err(|error| ServerError::Store(error.to_string()))?;
    let authenticator = Arc::new(
        Authenticator::new(
            Arc::clone(&store),
            settings.hashing(),
            settings.token_ttl(),
            settings.token_recheck(),
        )
        .map_err(|error| ServerError::Store(error.to_string()))?,
    );
    let (stopping, shutdown_seen) = watch::channel(false);
    let limits = Arc::new(Limits::new(
        &settings.limits(),
        Arc::clone(&metrics),
        store.stream_leases(),
        store.shared_rates(),
    ));
    // Checked on the length prefix, before a byte of the message is buffered.
    let max_request = usize::try_from(settings.max_request_bytes).unwrap_or(usize::MAX);
    let signals = signals::Signals::start(Arc::clone(&broker), store.shared_signals());
    let presence = presence::Presence::new(
        Arc::clone(&store),
        Arc::clone(&signals),
        settings.presence_grace(),
    );
    presence.start_sweeping();

    let departures = Arc::new(Departures::new(
        Arc::clone(&store),
        settings.token_recheck(),
    ));
    let pinged = Arc::clone(&store);
    let chat = ChatServer::new(ChatService {
        store,
        departures,
        broker,
        authenticator: Arc::clone(&authenticator),
        limits: Arc::clone(&limits),
        metrics: Arc::clone(&metrics),
        signals,
        presence,
        heartbeat: settings.heartbeat(),
        max_chats_per_user: settings.max_chats_per_user,
        shutdown: shutdown_seen,
    })
    .max_decoding_message_size(max_request);
    let auth = AuthServer::new(AuthService {
        authenticator,
        limits,
        proxies: settings.trusted_proxies.clone().unwrap_or_default(),
        sign_up: settings.sign_up,
    })
    .max_decoding_message_size(max_request);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ChatServer<ChatService>>()
        .await;
    let readiness = readiness::start(pinged, health_reporter.clone(), stopping.subscribe());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(chat_core::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(chat_core::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let others = Routes::new(auth)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha);
    // Calls are counted inside the gRPC-web translation, so calls of both protocols are seen
    // the same way, and on the gRPC routes only, not the UI's files.
    let app = chat_transport::router(
        chat,
        others,
        metrics::TrackCalls(Arc::clone(&metrics)),
        Some(chat_transport::WebUi {
            dir: &settings.static_dir,
            // The sign-in page's style sheet then offers "Sign in" only (web/style.css).
            root_attributes: match settings.sign_up {
                SignUp::Open => "",
                SignUp::Closed => r#"data-sign-up="closed""#,
            },
        }),
    );

    // Read before anything is served, so a bad certificate stops the start-up, not a client.
    let tls = match settings.tls_files() {
        Some((cert, key)) => Some(
            chat_transport::Tls::from_pem_files(cert, key)
                .map_err(|error| ServerError::Tls(error.to_string()))?,
        ),
        None => None,
    };
    if let Some(tls) = &tls {
        let mut stopped = stopping.subscribe();
        tokio::spawn(tls.clone().reload_on_hangup(async move {
            let _ = stopped.wait_for(|stopping| *stopping).await;
        }));
    }
    let address = listener
        .local_addr()
        .map_or_else(|error| error.to_string(), |address| address.to_string());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let data = match &settings.database_url {
        // The URL may hold a password: name only the backend.
        Some(_) => "PostgreSQL (--database-url)".to_owned(),
        None => settings.database_path().display().to_string(),
    };
    tracing::info!(%address, scheme, %data, "chat server listening");
    let metrics_server = metrics_listener.map(|listener| {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "metrics at http://{address}/metrics");
        }
        let mut stopped = stopping.subscribe();
        tokio::spawn(metrics::serve(listener, metrics, readiness, async move {
            let _ = stopped.wait_for(|stopping| *stopping).await;
        }))
    });
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: ending streams, finishing calls in flight");
        readiness::tell(&health_reporter, false).await;
        let _ = stopping.send(true);
    };
    chat_transport::serve(listener, app, signal, settings.transport(tls)).await?;
    if let Some(metrics_server) = metrics_server
        && let Ok(Err(error)) = metrics_server.await
    {
        tracing::error!(%error, "metrics listener failed");
    }
    tracing::info!("stopped");
    Ok(())
}
