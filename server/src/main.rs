//! The `chat-server` binary: parse settings, start logging, bind, and hand over to
//! [`chat_server::run`] until Ctrl-C or SIGTERM; or run one of the operators' tasks
//! (`backup`, `migrate`, `add-account`, `set-password`, `deactivate-account`, `accounts`) and
//! exit.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use chat_server::AccountTask;
use chat_server::config::{Command, LogFormat, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    return_large_blocks_to_the_system();
    let settings = Settings::parse();
    init_logging(settings.log_format);
    match &settings.command {
        Some(Command::Backup { file }) => return backup(&settings, file),
        Some(Command::Migrate { to }) => return migrate(&settings, to).await,
        Some(Command::AddAccount { user }) => {
            return account(&settings, AccountTask::Add, user).await;
        }
        Some(Command::SetPassword { user }) => {
            return account(&settings, AccountTask::SetPassword, user).await;
        }
        Some(Command::DeactivateAccount { user }) => return deactivate(&settings, user).await,
        Some(Command::Accounts) => return accounts(&settings).await,
        None => {}
    }

    let listener = match chat_transport::listen(settings.listen) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(address = %settings.listen, %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    match chat_server::run(listener, settings, chat_transport::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server stopped");
            ExitCode::FAILURE
        }
    }
}

/// `chat-server backup FILE`: prints what the copy holds, or why there is none.
fn backup(settings: &Settings, file: &Path) -> ExitCode {
    if settings.database_url.is_some() {
        tracing::error!(
            "backup copies the SQLite file; on PostgreSQL use pg_dump -Fc (see the README, \"Backups\")"
        );
        return ExitCode::FAILURE;
    }
    let source = settings.database_path();
    match chat_server::backup_sqlite(&source, file) {
        Ok(summary) => {
            println!(
                "backed up {} to {}: {} messages, newest id {}",
                source.display(),
                file.display(),
                summary.messages,
                summary.newest_message
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "backup failed");
            ExitCode::FAILURE
        }
    }
}

/// `chat-server migrate --to URL`: prints the row counts of both sides; fails unless they
/// match, so a script can stop before switching servers over.
async fn migrate(settings: &Settings, url: &str) -> ExitCode {
    let source = settings.database_path();
    // Only a copy made with no server on the file is final: a server still running keeps
    // storing what this copy will not have.
    let claim = chat_server::claim_sqlite(&source);
    let report = match chat_server::migrate_to_postgres(&source, url).await {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(%error, "migration stopped; run it again to continue");
            return ExitCode::FAILURE;
        }
    };
    println!("{:<14}{:>12}{:>12}", "table", "sqlite", "postgres");
    for count in &report.tables {
        println!(
            "{:<14}{:>12}{:>12}",
            count.table, count.sqlite, count.postgres
        );
    }
    println!(
        "newest message id {}, next id on PostgreSQL after {}",
        report.newest_message, report.message_counter
    );
    if report.verified() {
        match claim {
            Ok(_) => println!(
                "verified: PostgreSQL holds everything in {}",
                source.display()
            ),
            Err(why) => println!(
                "copied so far, NOT final: {why}, and what it stores from now on is not \
                 copied: stop it and run migrate again, which then verifies, before switching"
            ),
        }
        ExitCode::SUCCESS
    } else {
        println!("NOT verified: the counts differ (was the PostgreSQL database empty?)");
        ExitCode::FAILURE
    }
}

/// `chat-server add-account USER` and `set-password USER`, with the password read from
/// standard input.
async fn account(settings: &Settings, task: AccountTask, user: &str) -> ExitCode {
    let password = match chat_server::read_password(user) {
        Ok(password) => password,
        Err(error) => {
            tracing::error!("no password read: {error}");
            return ExitCode::FAILURE;
        }
    };
    match chat_server::account_task(settings, task, user, &password).await {
        Ok(user) => {
            match task {
                AccountTask::Add => println!("account {user} created"),
                AccountTask::SetPassword => {
                    println!("password of {user} set; every session of {user} has ended")
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// `chat-server deactivate-account USER`: what it did, or why not.
async fn deactivate(settings: &Settings, user: &str) -> ExitCode {
    match chat_server::deactivate_account(settings, user).await {
        Ok(done) => {
            let user = done.user;
            let chats = done.chats;
            let plural = if chats == 1 { "" } else { "s" };
            println!(
                "account {user} deactivated: every session of {user} has ended, and {user} left \
                 {chats} chat{plural}"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// `chat-server accounts`: the table of accounts, or why there is none.
async fn accounts(settings: &Settings) -> ExitCode {
    match chat_server::accounts_table(settings).await {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("cannot list the accounts: {error}");
            ExitCode::FAILURE
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
