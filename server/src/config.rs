//! Typed settings: every knob has a default, a `--flag` and a `CHAT_*` environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::client_address::TrustedProxies;
use crate::limits::LimitSettings;
use crate::password::Hashing;

/// How the chat server is configured. `chat-server --help` prints this.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Chat server: gRPC, gRPC-web and the web UI on one port",
    // A flag given twice takes the last value, so wrappers can append overrides.
    args_override_self = true
)]
pub struct Settings {
    /// Address to listen on for gRPC (HTTP/2), gRPC-web (HTTP/1.1) and the web UI.
    /// Use 0.0.0.0:8080 to accept connections from other machines.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address to serve Prometheus metrics on, at /metrics (plain HTTP, no sign-in): keep it
    /// reachable by the monitoring system only. Unset: no metrics listener.
    #[arg(long, env = "CHAT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// PEM file with the certificate chain for HTTPS; with --tls-key, the server speaks
    /// HTTPS only (HTTP/2 and HTTP/1.1), so browsers use HTTP/2.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Directory holding the SQLite database (chat.db); created if missing.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// PostgreSQL URL (`postgres://user@host/database`): store everything there instead of
    /// the SQLite file, so that several servers can share it. Unset: SQLite in --data-dir.
    /// TLS as libpq's parameters ask: `?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    #[arg(long, env = "CHAT_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Connections each server keeps to PostgreSQL at most (with --database-url); two more
    /// are held, for notifications and for the writer.
    #[arg(long, env = "CHAT_DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub database_pool_size: u32,

    /// Directory of the built web UI (trunk's dist/). Served at / when it exists.
    #[arg(long, env = "CHAT_STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,

    /// How long a sign-in token stays valid, in seconds (default 30 days).
    #[arg(long, env = "CHAT_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub token_ttl_secs: u64,

    /// Seconds between heartbeat events on idle streams, so proxies keep them open.
    #[arg(long, env = "CHAT_HEARTBEAT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,

    /// How long a person stays "online" after their last stream closes, in milliseconds, so
    /// that a reconnect (a page reload, a network blip) does not show them leaving.
    #[arg(long, env = "CHAT_PRESENCE_GRACE_MS", default_value_t = 8_000)]
    pub presence_grace_ms: u64,

    /// Log format: `text` for people, `json` for log collectors. Filter with RUST_LOG.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Largest request message accepted, in bytes; larger ones get OUT_OF_RANGE before they
    /// are read. The default fits every valid request (the largest, a Send of 4,000 four-byte
    /// characters, is about 17 KB).
    #[arg(long, env = "CHAT_MAX_REQUEST_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=4 * 1024 * 1024))]
    pub max_request_bytes: u32,

    /// Streams (Stream and Connect) one user may have open at once; one more gets
    /// RESOURCE_EXHAUSTED. Each open app tab holds one.
    #[arg(long, env = "CHAT_MAX_STREAMS_PER_USER", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_user: u32,

    /// Messages per second one user may send, sustained; 0 for no limit. Send beyond it gets
    /// RESOURCE_EXHAUSTED with a `retry-after-ms` hint; Connect is slowed down instead.
    #[arg(long, env = "CHAT_SEND_RATE", default_value_t = 10)]
    pub send_rate: u32,

    /// Messages one user may send in a burst before --send-rate applies.
    #[arg(long, env = "CHAT_SEND_BURST", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub send_burst: u32,

    /// New calls (starting or finding a chat) per minute one user may make, also as a burst;
    /// 0 for no limit. New beyond it gets RESOURCE_EXHAUSTED with a `retry-after-ms` hint.
    #[arg(long, env = "CHAT_NEW_CHAT_PER_MINUTE", default_value_t = 30)]
    pub new_chat_per_minute: u32,

    /// Other calls per second one user may make, sustained (History, List, Search, MarkRead,
    /// GetSettings, UpdateSettings, Leave, Block, Unblock, ListBlocked), on each server; 0 for
    /// no limit. Beyond it: RESOURCE_EXHAUSTED (CALL_RATE) with a `retry-after-ms` hint.
    #[arg(long, env = "CHAT_CALL_RATE", default_value_t = 20)]
    pub call_rate: u32,

    /// Other calls one user may make in a burst before --call-rate applies.
    #[arg(long, env = "CHAT_CALL_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub call_burst: u32,

    /// Failed sign-ins an account may have from one address (IPv4, or IPv6 /64) before each
    /// further attempt from there must wait: 1 s, then doubling with each failure, up to
    /// --sign-in-max-delay-secs. A right password forgives that address's failures; they are
    /// also forgotten after an hour. All addresses together share a second, larger budget
    /// per account (see README), so one address cannot keep the owner at another out.
    #[arg(long, env = "CHAT_SIGN_IN_FREE_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sign_in_free_failures: u32,

    /// The longest wait between sign-in attempts for an account from an address that keeps
    /// failing, in seconds; also the refill time of one attempt of the account's shared
    /// budget, so guessing from any number of addresses gets one guess per this long.
    #[arg(long, env = "CHAT_SIGN_IN_MAX_DELAY_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sign_in_max_delay_secs: u64,

    /// Sign-in and sign-up attempts per minute from one address (IPv4, or IPv6 /64); 0 for
    /// no limit. Behind a reverse proxy every client has the proxy's address: raise it.
    #[arg(
        long,
        env = "CHAT_SIGN_IN_PER_ADDRESS_PER_MINUTE",
        default_value_t = 30
    )]
    pub sign_in_per_address_per_minute: u32,

    /// SignOut calls per minute from one address (IPv4, or IPv6 /64); 0 for no limit. A
    /// SignOut with an unknown or already revoked token writes nothing, but it still costs a
    /// token lookup, so a flood of them is refused with RESOURCE_EXHAUSTED like sign-in.
    #[arg(
        long,
        env = "CHAT_SIGN_OUT_PER_ADDRESS_PER_MINUTE",
        default_value_t = 30
    )]
    pub sign_out_per_address_per_minute: u32,

    /// Reverse proxies whose X-Forwarded-For header is believed: addresses and networks,
    /// comma-separated (`10.0.0.5,fd00::/8`). A call from one of them counts, for the
    /// per-address sign-in and sign-out limits, as coming from the client the header names
    /// (its rightmost address that is not a trusted proxy). Unset: the header is ignored, so
    /// clients cannot choose their address. The per-address connection cap does not count
    /// connections from them (each may carry another client); the total cap does.
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", value_parser = TrustedProxies::parse)]
    pub trusted_proxies: Option<TrustedProxies>,

    /// Load balancers that pass TCP through (layer 4, such as HAProxy in TCP mode or a cloud
    /// network load balancer) and begin each connection with a PROXY protocol header (version
    /// 1 or 2) naming the client: addresses and networks, comma-separated. The client it
    /// names is the connection's address for every per-address limit and cap. A connection
    /// from them without a valid header is closed; nobody else's header is read.
    #[arg(long, env = "CHAT_PROXY_PROTOCOL_FROM", value_parser = TrustedProxies::parse)]
    pub proxy_protocol_from: Option<TrustedProxies>,

    /// Seconds between checks of the token of each open Stream and Connect call: a token
    /// revoked by another server sharing the database (or expired) ends the call with
    /// UNAUTHENTICATED within this long. A revocation on the same server ends it at once.
    #[arg(long, env = "CHAT_TOKEN_RECHECK_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub token_recheck_secs: u64,

    /// Chats one user may belong to; New refuses to create a chat (RESOURCE_EXHAUSTED) when
    /// its creator or any other member is at the cap. An existing chat is still returned.
    #[arg(long, env = "CHAT_MAX_CHATS_PER_USER", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_chats_per_user: u32,

    /// Password hashes (argon2id, 19 MiB and tens of milliseconds each) computed at once for
    /// SignUp and SignIn; 0 for one per core. Other calls never wait behind them.
    #[arg(long, env = "CHAT_PASSWORD_HASH_CONCURRENCY", default_value_t = 0)]
    pub password_hash_concurrency: u32,

    /// SignUp and SignIn attempts that may wait for a hash to be free; one more gets
    /// RESOURCE_EXHAUSTED with a retry hint.
    #[arg(long, env = "CHAT_PASSWORD_HASH_QUEUE", default_value_t = 64)]
    pub password_hash_queue: u32,

    /// Streams (calls) one HTTP/2 connection may have open at once, advertised to clients in
    /// SETTINGS; a client asking for more waits for one to end. A browser runs all its tabs
    /// of one origin over one connection, a few streams each.
    #[arg(long, env = "CHAT_MAX_CONCURRENT_STREAMS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Seconds between keepalive pings on HTTP/2 connections, which keep them open through
    /// NATs and find peers that are gone.
    #[arg(long, env = "CHAT_HTTP2_KEEPALIVE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http2_keepalive_secs: u64,

    /// Seconds a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "CHAT_HTTP2_KEEPALIVE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http2_keepalive_timeout_secs: u64,

    /// Seconds a call may take until its response starts: all of a unary call, its request
    /// body included (a body that trickles in is cut off). Stream and Connect start their
    /// response at once and are not cut.
    #[arg(long, env = "CHAT_CALL_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub call_timeout_secs: u64,

    /// Seconds a new connection may take to make its first request, TLS handshake included;
    /// one that sends nothing, or half a request, is closed after it.
    #[arg(long, env = "CHAT_FIRST_REQUEST_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub first_request_timeout_secs: u64,

    /// Seconds an HTTP/1.1 connection may stay idle (no call open, nothing read) between
    /// calls before it is closed; a gRPC-web Stream in progress is never idle. At most 30:
    /// hyper's own header-read timeout (30 s, which tonic turns on and does not let us set)
    /// closes a connection whose next request has not arrived by then anyway.
    #[arg(long, env = "CHAT_HTTP1_IDLE_TIMEOUT_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=30))]
    pub http1_idle_timeout_secs: u64,

    /// Connections open at once from one client address (IPv4, or IPv6 /64); more are closed
    /// at once. Connections from `--trusted-proxies` are not capped by it.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,

    /// Connections open at once in all; more are closed at once. The open-file limit is
    /// raised to the system's hard limit at start-up; keep this below it.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Who may create an account: `open`, anyone who reaches the server, with SignUp (the
    /// sign-in page's "Sign up"); `closed`, only the operator, with `chat-server add-account`
    /// (SignUp then gets PERMISSION_DENIED), for a server reachable from the internet that
    /// is for one team.
    #[arg(long, env = "CHAT_SIGN_UP", value_enum, default_value = "open")]
    pub sign_up: SignUp,

    /// An operator's task instead of serving (none: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The operators' tasks `chat-server` runs instead of serving, then exits.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Write a consistent copy of the SQLite database in --data-dir to FILE, while a server
    /// keeps running on it (it is not paused). Restore: stop the server, put FILE in place of
    /// chat.db, delete chat.db-wal and chat.db-shm, start. On PostgreSQL use pg_dump instead.
    Backup {
        /// Where to write the copy; must not exist yet.
        file: PathBuf,
    },
    /// Copy everything in the SQLite database in --data-dir (accounts, tokens, chats,
    /// messages with their ids) into the PostgreSQL database at --to, then print the row
    /// counts of both sides. Safe to re-run: it continues where an interrupted run stopped.
    /// Stop the SQLite server before the last run.
    Migrate {
        /// The PostgreSQL URL to copy into (`postgres://user@host/database`).
        #[arg(long)]
        to: String,
    },
    /// Create the account USER, with the password read from the first line of standard
    /// input, or asked for twice without being shown at a terminal (the same rules as
    /// SignUp). On SQLite stop the server first; on PostgreSQL (--database-url) run it beside
    /// the servers. Global options such as --data-dir go before the command.
    AddAccount {
        /// The new account's name.
        user: String,
    },
    /// Give the account USER a new password, read as add-account reads it, and end every
    /// session of it (on every server): for a forgotten or leaked password. On SQLite stop
    /// the server first; on PostgreSQL run it beside the servers.
    SetPassword {
        /// The account's name.
        user: String,
    },
    /// For someone who leaves the team: end every session of the account USER with a
    /// password nobody knows, and take it out of every chat (as if they had left each one).
    /// The name stays taken and their messages stay; set-password lets them in again (they
    /// then start or rejoin chats themselves). On SQLite stop the server first; on PostgreSQL
    /// run it beside the servers, whose users see the change at once.
    DeactivateAccount {
        /// The account's name.
        user: String,
    },
    /// List the accounts: each one's name, when it was made, its sessions (signed-in
    /// browsers and clients whose token has not expired), how many chats it is in and when
    /// it was last online. Read-only: runs beside a running server, on SQLite as on
    /// PostgreSQL.
    Accounts,
}

/// See [`Settings::sign_up`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignUp {
    Open,
    Closed,
}

/// See [`Settings::log_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    pub fn token_recheck(&self) -> Duration {
        Duration::from_secs(self.token_recheck_secs)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    pub fn presence_grace(&self) -> Duration {
        Duration::from_millis(self.presence_grace_ms)
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("chat.db")
    }

    /// Where the data lives: PostgreSQL when a database URL is given, else the SQLite file.
    pub(crate) fn store_location(&self) -> crate::store::Location {
        match &self.database_url {
            Some(url) => crate::store::Location::Postgres {
                url: url.clone(),
                pool_size: usize::try_from(self.database_pool_size).unwrap_or(usize::MAX),
            },
            None => crate::store::Location::Sqlite(self.database_path()),
        }
    }

    /// The certificate and key files, when HTTPS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    pub(crate) fn hashing(&self) -> Hashing {
        let count = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        Hashing::new(
            count(self.password_hash_concurrency),
            count(self.password_hash_queue),
        )
    }

    /// How the transport serves: TLS and the limits on connections and calls.
    pub(crate) fn transport(&self, tls: Option<chat_transport::Tls>) -> chat_transport::Options {
        let count = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        chat_transport::Options {
            tls,
            max_concurrent_streams: self.max_concurrent_streams,
            http2_keepalive_interval: Duration::from_secs(self.http2_keepalive_secs),
            http2_keepalive_timeout: Duration::from_secs(self.http2_keepalive_timeout_secs),
            call_timeout: Duration::from_secs(self.call_timeout_secs),
            first_request_timeout: Duration::from_secs(self.first_request_timeout_secs),
            http1_idle_timeout: Duration::from_secs(self.http1_idle_timeout_secs),
            max_connections_per_address: count(self.max_connections_per_address),
            uncapped: peers(self.trusted_proxies.clone()),
            proxy_protocol_from: peers(self.proxy_protocol_from.clone()),
            max_connections: count(self.max_connections),
        }
    }

    pub(crate) fn limits(&self) -> LimitSettings {
        let unless_zero = |value: u32| (value > 0).then_some(value);
        LimitSettings {
            send_rate: unless_zero(self.send_rate),
            send_burst: self.send_burst,
            new_chat_per_minute: unless_zero(self.new_chat_per_minute),
            call_rate: unless_zero(self.call_rate),
            call_burst: self.call_burst,
            max_streams_per_user: usize::try_from(self.max_streams_per_user).unwrap_or(usize::MAX),
            sign_in_free_failures: self.sign_in_free_failures,
            sign_in_max_delay: Duration::from_secs(self.sign_in_max_delay_secs),
            sign_in_per_address_per_minute: unless_zero(self.sign_in_per_address_per_minute),
            sign_out_per_address_per_minute: unless_zero(self.sign_out_per_address_per_minute),
        }
    }
}

/// The peers among `networks` (none when unset).
fn peers(networks: Option<TrustedProxies>) -> chat_transport::Peers {
    match networks {
        Some(networks) => Arc::new(move |peer| networks.trusts(peer)),
        None => Arc::new(|_| false),
    }
}
