//! Typed settings: every knob has a default, a `--flag` and a `CHAT_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the chat server is configured. `chat-server --help` prints this.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Chat server: gRPC, gRPC-web and the web UI on one port"
)]
pub struct Settings {
    /// Address to listen on for gRPC (HTTP/2), gRPC-web (HTTP/1.1) and the web UI.
    /// Use 0.0.0.0:8080 to accept connections from other machines.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory holding the SQLite database (chat.db); created if missing.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

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

    /// Log format: `text` for people, `json` for log collectors. Filter with RUST_LOG.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("chat.db")
    }
}
