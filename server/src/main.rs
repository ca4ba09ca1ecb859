//! The `chat-server` binary: parse settings, start logging, bind, and hand over to
//! [`chat_server::run`] until Ctrl-C or SIGTERM.

use clap::Parser;

use chat_server::config::{LogFormat, Settings};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    return_large_blocks_to_the_system();
    let settings = Settings::parse();
    init_logging(settings.log_format);

    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(address = %settings.listen, %error, "cannot listen");
            return std::process::ExitCode::FAILURE;
        }
    };
    match chat_server::run(listener, settings, chat_transport::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), after
/// which every password hash's 19 MiB of argon2 memory comes from a thread's arena, and
/// arenas keep what they get, so every concurrent sign-up or sign-in grows the process for
/// good (BENCHMARKS.md has the figures). A fixed threshold keeps such blocks in their own
/// mappings, returned to the system when freed.
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only changes allocator parameters and is thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log that cannot be written (a full disk under `>> chat.log`) must not take requests
    // down with it: by default a failed write is reported with `eprintln!`, which panics when
    // stderr cannot be written either. See RELIABILITY.md, "Disk trouble".
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
