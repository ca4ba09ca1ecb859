//! The chat server: tonic gRPC and gRPC-web on one port, on an embedded SQLite database.
//!
//! [`run`] wires the pieces together; `main.rs` only parses settings and calls it, and the
//! integration tests call it the same way on `127.0.0.1:0`.
//!
//! - `config`: settings from flags and `CHAT_*` variables.
//! - `service`: the gRPC handlers, thin; `auth`: accounts and tokens.
//! - `store`: the storage trait and its SQLite and PostgreSQL backends (the only SQL).
//! - `fanout`: the broker that routes committed messages to open feeds.
//! - `feed`: one live stream (replay, live, catch-up, heartbeat, shutdown).
//! - `http`: gRPC-web, CORS, the static UI and its security headers on the same router.
//! - `limits`: per-user send rate and streams, sign-in attempts per account and address.
//! - `tls`: HTTPS (HTTP/2 and HTTP/1.1) on the same port, when given a certificate.

pub mod config;

mod auth;
mod clock;
mod error;
mod fanout;
mod feed;
mod http;
mod limits;
mod service;
mod store;
mod tls;

/// How much live delivery holds per reader, for capacity planning and the fault tests that
/// check memory stays within it.
pub use fanout::FEED_CAPACITY;
pub use feed::REPLAY_PAGE;
/// The operators' tools behind `chat-server backup` and `chat-server migrate`.
pub use store::{migrate::migrate_to_postgres, sqlite::backup::backup as backup_sqlite};

use std::sync::Arc;
use std::time::Duration;

use chat_core::proto::auth_server::AuthServer;
use chat_core::proto::chat_server::ChatServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::fanout::Broker;
use crate::limits::Limits;
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
    let broker = Broker::new();
    let store = store::open(&settings.store_location(), Arc::clone(&broker))
        .await
        .map_err(|error| ServerError::Store(error.to_string()))?;
    let authenticator = Arc::new(
        Authenticator::new(Arc::clone(&store), settings.token_ttl())
            .map_err(|error| ServerError::Store(error.to_string()))?,
    );
    let (stopping, shutdown_seen) = watch::channel(false);
    let limits = Arc::new(Limits::new(&settings.limits()));
    // Checked on the length prefix, before a byte of the message is buffered.
    let max_request = usize::try_from(settings.max_request_bytes).unwrap_or(usize::MAX);

    let chat = ChatServer::new(ChatService {
        store,
        broker,
        authenticator: Arc::clone(&authenticator),
        limits: Arc::clone(&limits),
        heartbeat: settings.heartbeat(),
        shutdown: shutdown_seen,
    })
    .max_decoding_message_size(max_request);
    let auth = AuthServer::new(AuthService {
        authenticator,
        limits,
    })
    .max_decoding_message_size(max_request);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ChatServer<ChatService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(chat_core::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(chat_core::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let grpc = Routes::new(chat)
        .add_service(auth)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha);
    let app = http::router(grpc, &settings.static_dir);

    // Read before anything is served, so a bad certificate stops the start-up, not a client.
    let tls = match settings.tls_files() {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
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
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: ending streams, finishing calls in flight");
        health_reporter
            .set_not_serving::<ChatServer<ChatService>>()
            .await;
        let _ = stopping.send(true);
    };
    let server = Server::builder()
        .accept_http1(true)
        // Pings keep idle HTTP/2 connections alive through NATs and detect dead peers.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    match tls {
        Some(acceptor) => {
            server
                .serve_with_incoming_shutdown(app, tls::incoming(listener, acceptor), signal)
                .await?
        }
        None => {
            server
                .serve_with_incoming_shutdown(
                    app,
                    // TCP_NODELAY on the incoming itself: tonic ignores the builder's
                    // `tcp_nodelay` with a custom incoming, and Nagle's algorithm against
                    // delayed ACKs stalls small responses by 40 ms.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    signal,
                )
                .await?
        }
    }
    tracing::info!("stopped");
    Ok(())
}
