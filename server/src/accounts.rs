//! The operator's account tasks, `chat-server add-account USER` and `chat-server
//! set-password USER`: how accounts are made on a server whose sign-up is closed
//! (`--sign-up closed`), and how a person who forgot their password gets back in (the server
//! knows no e-mail address to send a reset link to; the operator hands over a new password).
//! And `chat-server deactivate-account USER`, for someone who leaves the team: signed out
//! everywhere with a password nobody knows, and taken out of every chat, as if they had left
//! each one (the others' lists and open chats drop them), while their name stays taken, so
//! nobody else can become them, and their messages stay for the others.
//!
//! They open the store as a server does and go through the same [`Store`] calls as SignUp and
//! ChangePassword, so the same rules hold: the name and password are validated as SignUp's,
//! the password is hashed the same way, and a new password ends every session of the account.
//! On SQLite the data directory's lock keeps them from running under a server (whose token
//! cache would not hear of the ended sessions): the operator stops the server first. On
//! PostgreSQL they run beside the servers, which hear of the ended sessions as they hear of a
//! SignOut on another server.
//!
//! The password comes from standard input ([`read_password`]), never from the command line,
//! where it would stay in the shell's history and in `ps`.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use chat_core::ids::{ChatId, UserId};
use chat_core::limits::LIST_MAX_PAGE;
use chat_core::proto;
use chat_core::requests::{Credentials, ListQuery};

use crate::config::Settings;
use crate::fanout::Broker;
use crate::metrics::Metrics;
use crate::password;
use crate::signals::Signals;
use crate::store::roster::{self, Account};
use crate::store::{self, Store, StoreError};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountTask {
    /// Create the account.
    Add,
    /// Replace the account's password and end its sessions.
    SetPassword,
}

/// Does `task` for the account `user` with `password`; returns the account's name as
/// stored (names are lower-cased), or a sentence for the operator.
pub async fn account_task(
    settings: &Settings,
    task: AccountTask,
    user: &str,
    password: &str,
) -> Result<String, String> {
    let credentials = Credentials::try_from(&proto::Credentials {
        user_id: user.to_owned(),
        password: password.to_owned(),
        device: String::new(),
    })
    .map_err(|error| error.to_string())?;
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|error| format!("cannot create {}: {error}", settings.data_dir.display()))?;
    let location = settings.store_location();
    // Before the hash, which takes a while: a server in the way is said at once.
    let _claim = store::claim(&location).map_err(|error| error.to_string())?;
    let hash =
        password::hash_now(credentials.password.expose()).map_err(|error| error.to_string())?;
    let store: Arc<dyn Store> = store::open(&location, Broker::new(), Metrics::new())
        .await
        .map_err(|error| error.to_string())?;
    let user = &credentials.user_id;
    match task {
        AccountTask::Add => store.create_account(user, hash).await,
        // Revokes every token of the account in the same transaction (SQLite's writer,
        // PostgreSQL's `set_password`), as ChangePassword does.
        AccountTask::SetPassword => store.set_password(user, hash, None).await,
    }
    .map_err(|error| error.to_string())?;
    Ok(user.to_string())
}

/// What `deactivate-account` did.
#[derive(Debug)]
pub struct Deactivated {
    /// The account's name as stored.
    pub user: UserId,
    /// The chats it was taken out of.
    pub chats: usize,
}

/// `chat-server deactivate-account USER`: ends every session of the account with a password
/// nobody knows (as `set-password` ends them), then takes it out of each of its chats as a
/// Leave does, telling each chat's members (on PostgreSQL the running servers pass it on to
/// their streams; on SQLite no server runs meanwhile, and the apps re-read their list as they
/// reconnect). The password goes first, so nobody signs in while the chats are left. Safe to
/// run again (a run cut short leaves the rest of the chats to the next).
pub async fn deactivate_account(settings: &Settings, user: &str) -> Result<Deactivated, String> {
    let user = UserId::parse(user).map_err(|error| error.to_string())?;
    let location = settings.store_location();
    // Opening a store creates it: a mistyped --data-dir must not end up holding an empty one.
    if settings.database_url.is_none() && !settings.database_path().exists() {
        return Err(format!(
            "{} does not exist: is --data-dir the server's?",
            settings.database_path().display()
        ));
    }
    let _claim = store::claim(&location).map_err(|error| error.to_string())?;
    let broker = Broker::new();
    let store: Arc<dyn Store> = store::open(&location, Arc::clone(&broker), Metrics::new())
        .await
        .map_err(|error| error.to_string())?;
    let failed = |error: StoreError| error.to_string();
    if store.password_hash(&user).await.map_err(failed)?.is_none() {
        return Err(format!("no account named {user}"));
    }
    let unknown = crate::auth::hex(&rand::random::<[u8; 32]>());
    let hash = password::hash_now(&unknown).map_err(|error| error.to_string())?;
    store
        .set_password(&user, hash, Some(chat_transport::unix_now()))
        .await
        .map_err(failed)?;

    let chats = chats_of(store.as_ref(), &user).await.map_err(failed)?;
    let signals = Signals::start(broker, store.shared_signals());
    for chat in &chats {
        match store.leave_chat(chat, &user).await {
            Ok(membership) => {
                signals
                    .members_changed(chat, &membership, Some(&user))
                    .await
            }
            // Left meanwhile (on PostgreSQL, through a server still serving a call of theirs).
            Err(StoreError::ChatNotFound) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    tracing::info!(%user, chats = chats.len(), "account deactivated");
    Ok(Deactivated {
        user,
        chats: chats.len(),
    })
}

/// Every chat `user` is in, page by page as List reads them.
async fn chats_of(store: &dyn Store, user: &UserId) -> Result<Vec<ChatId>, StoreError> {
    let mut chats = Vec::new();
    let mut query = ListQuery {
        limit: LIST_MAX_PAGE,
        after: None,
    };
    loop {
        let page = store.chats_of(user, &query).await?;
        chats.extend(page.chats.into_iter().map(|chat| chat.chat_id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(chats),
        }
    }
}

/// `chat-server accounts`: every account as a table for the operator, ending with their
/// number. Read-only, so it takes no lock: on SQLite as on PostgreSQL it runs beside the
/// servers.
pub async fn accounts_table(settings: &Settings) -> Result<String, String> {
    let now = chat_transport::unix_now();
    let listed = match &settings.database_url {
        Some(url) => roster::postgres_accounts(url, now)
            .await
            .map(|accounts| (accounts, false)),
        None => {
            let path = settings.database_path();
            // A stopped server leaves its streams' people recorded online (the server that
            // starts next records them offline), so with no server on the directory, "now"
            // would not be true of them.
            roster::sqlite_accounts(&path, now).map(|accounts| {
                (
                    accounts,
                    roster::sqlite_server_running(&path) == Some(false),
                )
            })
        }
    };
    let (accounts, stopped) = listed.map_err(|error| error.to_string())?;
    Ok(table(&accounts, stopped))
}

/// The table of `accounts`; `stopped`: no server runs on them, so those recorded online were
/// online when it stopped.
fn table(accounts: &[Account], stopped: bool) -> String {
    let width = accounts
        .iter()
        .map(|account| account.user_id.chars().count())
        .chain(["account".len()])
        .max()
        .unwrap_or(0);
    let mut table = format!(
        "{:<width$}  {:<20}  {:>8}  {:>5}  last online\n",
        "account", "created", "sessions", "chats"
    );
    for account in accounts {
        let last_online = match (account.online, account.last_seen) {
            (true, _) if stopped => "when the server stopped".to_owned(),
            (true, _) => "now".to_owned(),
            (false, Some(at)) => utc_minute(at),
            (false, None) => "never".to_owned(),
        };
        let last_online = match account.deactivated_at {
            Some(at) => format!("{last_online}; deactivated {}", utc_minute(at)),
            None => last_online,
        };
        table.push_str(&format!(
            "{:<width$}  {:<20}  {:>8}  {:>5}  {last_online}\n",
            account.user_id,
            utc_minute(account.created_at),
            account.sessions,
            account.chats,
        ));
    }
    let count = accounts.len();
    table.push_str(&format!(
        "{count} account{}",
        if count == 1 { "" } else { "s" }
    ));
    table
}

/// A time as `2026-11-30 19:50 UTC`: the day from the days since the epoch by Howard
/// Hinnant's `civil_from_days` (the calendar's 400-year cycle), with no time crate for it.
fn utc_minute(seconds: i64) -> String {
    let (days, minute) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400) / 60);
    let shifted = days + 719_468; // days since 0000-03-01, when the cycle's years begin
    let (era, day_of_era) = (shifted.div_euclid(146_097), shifted.rem_euclid(146_097));
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_based_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_based_month + 2) / 5 + 1;
    let month = if march_based_month < 10 {
        march_based_month + 3
    } else {
        march_based_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute / 60,
        minute % 60
    )
}

/// The first line of standard input, without its line ending. At a terminal it is asked for
/// twice, not shown as it is typed (a password on the command line would stay in the shell's
/// history and in `ps`).
pub fn read_password(user: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return first_line(&mut stdin.lock());
    }
    let _hidden = HiddenInput::start()?;
    eprint!("Password for {user}: ");
    let password = first_line(&mut stdin.lock())?;
    eprint!("\nThe same again: ");
    let again = first_line(&mut stdin.lock())?;
    eprintln!();
    if password != again {
        return Err(std::io::Error::other("the two passwords differ"));
    }
    Ok(password)
}

fn first_line(input: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other(
            "standard input is empty: give the password on its first line",
        ));
    }
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

/// The terminal's echo turned off until this is dropped, or until a signal ends the process
/// while the password is asked for: Ctrl-C (SIGINT), Ctrl-\ (SIGQUIT), a closed terminal
/// (SIGHUP) or SIGTERM first give the terminal its echo back, then end the process as the
/// signal would have. Without that, the shell the operator returns to would show nothing they
/// type until `stty echo`, since dropping is not run when a signal kills a process.
struct HiddenInput {
    before: libc::termios,
    handlers: Vec<(libc::c_int, libc::sigaction)>,
}

/// The signals that end a process waiting at a terminal, whose handler gives the echo back.
const ENDING_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM];

/// The terminal's settings before the echo was turned off, for the signal handler, which can
/// only reach a static. Written before the handlers are installed, read only by them.
static SETTINGS_BEFORE: std::sync::OnceLock<libc::termios> = std::sync::OnceLock::new();

impl HiddenInput {
    fn start() -> std::io::Result<Self> {
        std::io::stderr().flush()?;
        // SAFETY: tcgetattr and tcsetattr only read and write the termios given, for the
        // file descriptor of standard input, which is a terminal here; sigaction installs a
        // handler that only calls functions safe in a signal handler (see `give_echo_back`).
        unsafe {
            let mut before: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut before) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The first settings read stay: a second prompt in one process (none today) would
            // read the echo already off.
            let _ = SETTINGS_BEFORE.set(before);
            let mut handlers = Vec::with_capacity(ENDING_SIGNALS.len());
            for signal in ENDING_SIGNALS {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = give_echo_back as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut previous) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                handlers.push((signal, previous));
            }
            let mut hidden = before;
            hidden.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &hidden) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Self { before, handlers })
        }
    }
}

impl Drop for HiddenInput {
    fn drop(&mut self) {
        // SAFETY: as in `start`, with the settings and handlers read there.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.before);
            for (signal, previous) in &self.handlers {
                libc::sigaction(*signal, previous, std::ptr::null_mut());
            }
        }
    }
}

/// The handler of `ENDING_SIGNALS` while the echo is off: the echo back on, a line break
/// (the prompt's line was left open), then the signal's default action, which ends the
/// process with the signal as a shell expects (exit status 130 for Ctrl-C). Only
/// async-signal-safe calls (tcsetattr, write, signal, raise) and a load of a static.
extern "C" fn give_echo_back(signal: libc::c_int) {
    // SAFETY: each call is async-signal-safe and gets valid arguments.
    unsafe {
        if let Some(before) = SETTINGS_BEFORE.get() {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, before);
        }
        libc::write(libc::STDERR_FILENO, b"\n".as_ptr().cast(), 1);
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_utc_dates_and_minutes() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(951_829_620), "2000-02-29 13:07 UTC");
        assert_eq!(utc_minute(1_796_153_200), "2026-12-01 19:26 UTC");
        assert_eq!(utc_minute(-86_400), "1969-12-31 00:00 UTC");
    }

    #[test]
    fn the_table_lines_up_and_says_how_many() {
        let account = |user_id: &str, online, last_seen| Account {
            user_id: user_id.to_owned(),
            created_at: 0,
            sessions: 2,
            chats: 12,
            online,
            last_seen,
            deactivated_at: None,
        };
        let accounts = [
            account("a", true, Some(60)),
            account("someone-long", false, Some(60)),
            account("c", false, None),
            Account {
                sessions: 0,
                chats: 0,
                deactivated_at: Some(86_400 + 120),
                ..account("gone", false, Some(86_400))
            },
        ];
        let listed = table(&accounts, false);
        assert_eq!(
            listed,
            "account       created               sessions  chats  last online\n\
             a             1970-01-01 00:00 UTC         2     12  now\n\
             someone-long  1970-01-01 00:00 UTC         2     12  1970-01-01 00:01 UTC\n\
             c             1970-01-01 00:00 UTC         2     12  never\n\
             gone          1970-01-01 00:00 UTC         0      0  1970-01-02 00:00 UTC; \
             deactivated 1970-01-02 00:02 UTC\n\
             4 accounts"
        );
        assert_eq!(
            table(&[], false),
            "account  created               sessions  chats  last online\n0 accounts"
        );
        // With the server stopped, those it left recorded online were so until it stopped.
        let stopped = table(&accounts, true);
        assert!(
            stopped.contains(
                "\na             1970-01-01 00:00 UTC         2     12  when the server stopped\n"
            ),
            "{stopped}"
        );
        assert!(stopped.contains("  never\n"), "{stopped}");
    }
}
