//! The operator's side of accounts, with the real binary: `--sign-up closed` refuses SignUp
//! and stores nothing; `chat-server add-account` makes an account people then sign in to,
//! and `set-password` gives a forgotten password a replacement and ends every session of the
//! account. On SQLite they refuse to run under a server (its lock on the data directory), and
//! a second server on the same directory is refused likewise; on PostgreSQL they run beside
//! the server, which hears of the ended sessions. At a terminal (a pseudo-terminal here) the
//! password is asked twice and never shown, and Ctrl-C gives the terminal its echo back.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{ListRequest, NewRequest, SignOutEverywhereRequest};
use tonic::{Code, Status};

use crate::helpers::*;

/// How long an operator's task may take (one password hash, opening the store).
const TASK_LIMIT: Duration = Duration::from_secs(60);

/// What the operator's task printed (standard output and error) and whether it succeeded.
struct TaskOutput {
    succeeded: bool,
    text: String,
}

impl TaskOutput {
    fn of(output: std::process::Output) -> Self {
        Self {
            succeeded: output.status.success(),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Checks that the task did what it was asked and said `saying`.
    fn done(&self, saying: &str) {
        assert!(
            self.succeeded && self.text.contains(saying),
            "expected success saying {saying:?}: {}",
            self.text
        );
    }

    /// Checks that the task refused and said why (`saying`).
    fn refused(&self, saying: &str) {
        assert!(
            !self.succeeded && self.text.contains(saying),
            "expected a refusal saying {saying:?}: {}",
            self.text
        );
    }
}

/// Runs `chat-server <task> <user>` on `server`'s data with `input` on standard input.
async fn task_with_input(
    server: &ServerProcess,
    task: &str,
    user: &str,
    input: &str,
) -> TaskOutput {
    let mut args = server.store_args();
    args.extend([task.to_owned(), user.to_owned()]);
    TaskOutput::of(run_command_with_input(server_binary(), args, input, TASK_LIMIT).await)
}

/// Runs `chat-server <task> <user>` on `server`'s data with `password` as its input line.
async fn task(server: &ServerProcess, task: &str, user: &str, password: &str) -> TaskOutput {
    task_with_input(server, task, user, &format!("{password}\n")).await
}

/// Runs `task` as an operator would: beside the server on PostgreSQL; on SQLite, first
/// checks that the running server's lock refuses it, then stops the server, runs it and
/// starts the server again.
async fn task_as_operator(
    server: &mut ServerProcess,
    name: &str,
    user: &str,
    password: &str,
) -> TaskOutput {
    if on_postgres() {
        return task(server, name, user, password).await;
    }
    task(server, name, user, password)
        .await
        .refused("in use by another chat-server process");
    server.terminate().await;
    let done = task(server, name, user, password).await;
    server.start().await;
    done
}

/// A session of `user` with `password`, or the refusal.
async fn sign_in(server: &ServerProcess, user: &str, password: &str) -> Result<String, Status> {
    let session = within(server.auth().await.sign_in(credentials(user, password))).await?;
    Ok(session.into_inner().token)
}

/// Checks that `user` cannot sign in with `password`.
async fn assert_sign_in_refused(server: &ServerProcess, user: &str, password: &str) {
    let refused = sign_in(server, user, password)
        .await
        .expect_err("signed in");
    assert_eq!(refused.code(), Code::Unauthenticated, "{user}: {refused:?}");
}

/// List with `token`: what a signed-in client does first.
async fn list(server: &ServerProcess, token: &str) -> Result<(), Status> {
    within(
        server
            .chat()
            .await
            .list(authed(token, ListRequest::default())),
    )
    .await?;
    Ok(())
}

/// Waits until `token` is refused as UNAUTHENTICATED, which on PostgreSQL takes the running
/// server a moment (it hears of the ended session through the database's notification).
async fn assert_session_ends(server: &ServerProcess, token: &str) {
    let start = Instant::now();
    loop {
        match list(server, token).await {
            Err(status) if status.code() == Code::Unauthenticated => return,
            outcome => assert!(
                start.elapsed() < Duration::from_secs(5),
                "the session still works: {outcome:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On SQLite the operator's tasks need the server stopped; on PostgreSQL it keeps running.
async fn stop_on_sqlite(server: &mut ServerProcess) {
    if !on_postgres() {
        server.terminate().await;
    }
}

async fn start_on_sqlite(server: &mut ServerProcess) {
    if !on_postgres() {
        server.start().await;
    }
}

#[tokio::test]
async fn with_sign_up_closed_only_the_operator_makes_accounts() {
    let mut server = spawn_process(&["--sign-up", "closed"]).await;

    let closed = "sign-up is closed on this server: ask its operator for an account";
    let native = within(
        server
            .auth()
            .await
            .sign_up(credentials("mallory", PASSWORD)),
    )
    .await;
    let web = within(server.web_auth().sign_up(credentials("mallory", PASSWORD))).await;
    for refusal in [native, web] {
        let status = refusal.expect_err("SignUp on a closed server");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.message(), closed);
    }
    assert_sign_in_refused(&server, "mallory", PASSWORD).await;

    task_as_operator(&mut server, "add-account", "Dave", PASSWORD)
        .await
        .done("account dave created");
    let token = sign_in(&server, "dave", PASSWORD)
        .await
        .expect("the operator's account signs in");
    list(&server, &token).await.expect("and is used");

    // What the operator can get wrong is said, and changes nothing.
    stop_on_sqlite(&mut server).await;
    task(&server, "add-account", "dave", "another fine password")
        .await
        .refused("account dave exists");
    task(&server, "add-account", "erin", "short")
        .await
        .refused("password must be at least 8 characters");
    task(&server, "add-account", "no spaces", PASSWORD)
        .await
        .refused("username");
    start_on_sqlite(&mut server).await;
    assert_sign_in_refused(&server, "erin", PASSWORD).await;
    sign_in(&server, "dave", PASSWORD)
        .await
        .expect("dave keeps his password");
}

#[tokio::test]
async fn set_password_replaces_a_forgotten_password_and_ends_every_session() {
    let mut server = spawn_process(&[]).await;
    let (_, first) = signed_up(&server, "alice").await;
    let second = signed_in(&server, "alice").await;
    let new_password = "a brand new password";

    task_as_operator(&mut server, "set-password", "alice", new_password)
        .await
        .done("every session of alice has ended");

    for token in [&first, &second] {
        assert_session_ends(&server, token).await;
    }
    assert_sign_in_refused(&server, "alice", PASSWORD).await;
    sign_in(&server, "alice", new_password)
        .await
        .expect("the new password signs in");

    stop_on_sqlite(&mut server).await;
    task(&server, "set-password", "nobody", new_password)
        .await
        .refused("no account named nobody");
    task_with_input(&server, "set-password", "alice", "")
        .await
        .refused("standard input is empty");
    start_on_sqlite(&mut server).await;
    sign_in(&server, "alice", new_password)
        .await
        .expect("nothing changed without a password");
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_directory_is_refused() {
    if on_postgres() {
        // Servers on PostgreSQL share their database by design; their data directories
        // hold nothing.
        return;
    }
    let mut server = spawn_process(&[]).await;
    let (_, token) = signed_up(&server, "alice").await;
    let second = run_command(
        server_binary(),
        [
            vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()],
            server.store_args(),
        ]
        .concat(),
        // It must stop at once; a server that starts serves until killed at this limit.
        Duration::from_secs(20),
    )
    .await;
    TaskOutput::of(second).refused("in use by another chat-server process (it holds ");
    list(&server, &token)
        .await
        .expect("the first server carries on");

    // The lock goes with the process, however it ends: no stale lock after a SIGKILL.
    server.kill();
    server.start().await;
    sign_in(&server, "alice", PASSWORD)
        .await
        .expect("the restarted server serves the directory");
}

#[tokio::test]
async fn at_a_terminal_the_password_is_asked_twice_unseen_and_ctrl_c_gives_the_echo_back() {
    let mut server = spawn_process(&[]).await;
    stop_on_sqlite(&mut server).await;
    let password = "a secret password";
    let add_dave = [
        server.store_args(),
        vec!["add-account".to_owned(), "dave".to_owned()],
    ]
    .concat();

    // The operator gives up at the second question: the program ends as Ctrl-C ends a
    // program, and the terminal shows what is typed again.
    let (terminal, mut task) = asked_twice(&add_dave, password).await;
    terminal.type_keys("\x03");
    let ended = wait_for_exit(&mut task).await;
    assert_eq!(ended.signal(), Some(libc::SIGINT), "{}", terminal.shown());
    assert!(
        terminal.echoes(),
        "Ctrl-C left the terminal without echo: {}",
        terminal.shown()
    );

    // Two different answers: refused, nothing made.
    let (terminal, mut task) = asked_twice(&add_dave, password).await;
    terminal.type_keys(&format!("{password}!\r"));
    assert!(!wait_for_exit(&mut task).await.success());
    terminal.wait_for("the two passwords differ").await;

    // The same answer twice: the account is made, and the password was never on the screen.
    let (terminal, mut task) = asked_twice(&add_dave, password).await;
    terminal.type_keys(&format!("{password}\r"));
    assert!(
        wait_for_exit(&mut task).await.success(),
        "{}",
        terminal.shown()
    );
    terminal.wait_for("account dave created").await;
    assert!(terminal.echoes());
    assert!(
        !terminal.shown().contains(password),
        "the password was shown: {}",
        terminal.shown()
    );

    start_on_sqlite(&mut server).await;
    sign_in(&server, "dave", password)
        .await
        .expect("the password typed at the terminal signs in");
}

#[tokio::test]
async fn accounts_lists_every_account_and_its_sessions_beside_the_running_server() {
    let server = spawn_process(&[]).await;
    let (_, alice) = signed_up(&server, "alice").await;
    signed_in(&server, "alice").await;
    let (_, bob) = signed_up(&server, "bob").await;
    signed_up(&server, "carol").await;
    let mut chat = server.chat().await;
    let _alice_online = open_stream(&mut chat, &alice, "", "").await;

    // Read-only, so the server keeps running, on SQLite too. Alice's stream makes her online
    // as soon as the server has recorded it.
    let listed = listed_once_online(&server, "alice").await;
    assert_eq!(
        row(&listed, "alice")[3..],
        ["UTC", "2", "0", "now"],
        "{listed}"
    );
    assert_eq!(
        row(&listed, "bob")[3..],
        ["UTC", "1", "0", "never"],
        "{listed}"
    );
    assert_eq!(
        row(&listed, "carol")[3..],
        ["UTC", "1", "0", "never"],
        "{listed}"
    );
    assert!(listed.starts_with("account "), "{listed}");
    assert!(listed.trim_end().ends_with("\n3 accounts"), "{listed}");

    // Signed out everywhere, Bob has no session left.
    within(
        server
            .auth()
            .await
            .sign_out_everywhere(authed(&bob, SignOutEverywhereRequest {})),
    )
    .await
    .expect("Bob signs out everywhere");
    let listed = accounts_listed(&server).await;
    assert_eq!(
        row(&listed, "bob")[3..],
        ["UTC", "0", "0", "never"],
        "{listed}"
    );

    // A data directory with no database (a mistyped --data-dir) is said, and left as it was.
    let nowhere = tempfile::tempdir().expect("a directory");
    let args = [
        "--data-dir",
        &nowhere.path().display().to_string(),
        "accounts",
    ];
    let refused = TaskOutput::of(
        run_command(
            server_binary(),
            args.map(str::to_owned).to_vec(),
            TASK_LIMIT,
        )
        .await,
    );
    refused.refused("chat.db: unable to open database file");
    assert!(!nowhere.path().join("chat.db").exists());
}

#[tokio::test]
async fn deactivate_account_signs_out_everywhere_and_takes_the_account_out_of_every_chat() {
    let mut server = spawn_process(&[]).await;
    let [alice, bob, dave] = signed_up_all(&server, ["alice", "bob", "dave"]).await;
    let group = new_chat(&server, &alice, &["alice", "bob", "dave"]).await;
    let pair = new_chat(&server, &dave, &["alice", "dave"]).await;
    let mut chat = server.chat().await;
    let goodbye = send_text(&mut chat, &dave, &group, "bye", "my last day, bye all").await;
    let mut alices = open_stream(&mut chat, &alice, "", "").await;

    let deactivate = |server: &ServerProcess, user: &str| {
        let mut args = server.store_args();
        args.extend(["deactivate-account".to_owned(), user.to_owned()]);
        async move { TaskOutput::of(run_command(server_binary(), args, TASK_LIMIT).await) }
    };
    if on_postgres() {
        // Beside the running server, whose streams hear of it at once.
        deactivate(&server, "Dave").await.done(
            "account dave deactivated: every session of dave has ended, and dave left 2 chats",
        );
        let mut heard = Vec::new();
        while heard.len() < 2 {
            let members = next_event(
                &mut alices,
                "alice hears who is left",
                |event| match event {
                    EventKind::Members(members) => Some(members),
                    _ => None,
                },
            )
            .await;
            heard.push((members.chat_id, members.user_ids));
        }
        heard.sort();
        let mut expected = vec![
            (group.clone(), vec!["alice".to_owned(), "bob".to_owned()]),
            (pair.clone(), vec!["alice".to_owned()]),
        ];
        expected.sort();
        assert_eq!(heard, expected);
    } else {
        deactivate(&server, "dave")
            .await
            .refused("in use by another chat-server process");
        server.terminate().await;
        deactivate(&server, "dave").await.done(
            "account dave deactivated: every session of dave has ended, and dave left 2 chats",
        );
        server.start().await;
    }

    // Dave is out: his session ends, his password no longer works, his name stays taken.
    assert_session_ends(&server, &dave).await;
    assert_sign_in_refused(&server, "dave", PASSWORD).await;
    let taken = within(server.auth().await.sign_up(credentials("dave", PASSWORD)))
        .await
        .expect_err("someone else signed up as dave");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    // The others have the chats without him (he is among those who left, which names the
    // chat of two), and what he wrote.
    let listed: Vec<(String, Vec<String>, Vec<String>)> = chats_of(&server, &bob)
        .await
        .into_iter()
        .chain(chats_of(&server, &alice).await)
        .map(|chat| (chat.chat_id, chat.user_ids, chat.left_user_ids))
        .collect();
    let dave = || vec!["dave".to_owned()];
    assert!(
        listed.contains(&(group.clone(), vec!["alice".into(), "bob".into()], dave())),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(pair.clone(), vec!["alice".into()], dave())),
        "{listed:?}"
    );
    assert_eq!(history_of(&server, &bob, &group).await, [goodbye]);
    // Nobody starts a chat with him any more, new or old, natively or from a browser: it would
    // reach nobody. Said so, and nothing changes.
    let mut web = server.web_chat();
    for members in [
        &["alice", "bob", "dave"][..],
        &["alice", "dave"],
        &["bob", "dave"],
    ] {
        let request = || {
            authed(
                &alice_or_bob(members, &alice, &bob),
                NewRequest {
                    user_ids: members.iter().map(|user| user.to_string()).collect(),
                },
            )
        };
        for refused in [
            within(chat.new_chat(request())).await,
            within(web.new_chat(request())).await,
        ] {
            let refused = refused.expect_err("a chat with a deactivated account");
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
            assert_eq!(
                refused.message(),
                "\"dave\" is no longer here (the account is deactivated): a chat with them \
                 would reach nobody"
            );
        }
    }
    assert_eq!(chats_of(&server, &bob).await.len(), 1);
    assert_eq!(chats_of(&server, &alice).await.len(), 2);
    let listed = accounts_listed(&server).await;
    assert_eq!(row(&listed, "dave")[4..7], ["0", "0", "never;"], "{listed}");
    assert_eq!(row(&listed, "dave")[7], "deactivated", "{listed}");
    assert_eq!(row(&listed, "alice")[5], "2", "{listed}");

    // What the operator can get wrong is said, and changes nothing.
    stop_on_sqlite(&mut server).await;
    deactivate(&server, "dave").await.done("dave left 0 chats");
    deactivate(&server, "nobody")
        .await
        .refused("no account named nobody");
    deactivate(&server, "not a name").await.refused("username");
    start_on_sqlite(&mut server).await;
    if !on_postgres() {
        let nowhere = tempfile::tempdir().expect("a directory");
        let args = [
            "--data-dir",
            &nowhere.path().display().to_string(),
            "deactivate-account",
            "dave",
        ];
        TaskOutput::of(
            run_command(
                server_binary(),
                args.map(str::to_owned).to_vec(),
                TASK_LIMIT,
            )
            .await,
        )
        .refused("does not exist: is --data-dir the server's?");
        assert!(!nowhere.path().join("chat.db").exists());
    }

    // set-password lets him in again; he is in no chat until he starts or rejoins one.
    task_as_operator(&mut server, "set-password", "dave", "welcome back dave")
        .await
        .done("password of dave set");
    let again = sign_in(&server, "dave", "welcome back dave")
        .await
        .expect("dave signs in again");
    assert!(chats_of(&server, &again).await.is_empty());
    let listed = accounts_listed(&server).await;
    assert_eq!(
        row(&listed, "dave")[6..],
        ["never"],
        "active again: {listed}"
    );
    // And chats with him can start again (new_chat fails the test otherwise).
    new_chat(&server, &bob, &["bob", "dave"]).await;
}

#[tokio::test]
async fn on_postgresql_a_new_chat_racing_a_deactivation_waits_for_it_and_is_refused() {
    if !on_postgres() {
        return;
    }
    let server = spawn_process(&[]).await;
    let [alice, _] = signed_up_all(&server, ["alice", "dave"]).await;
    // The deactivation's update begun and not committed yet, as `deactivate-account`'s is for
    // a moment beside running servers.
    let database = server.database().expect("a PostgreSQL database");
    let (deactivating, driver) = database.connect().await;
    deactivating
        .batch_execute("BEGIN; UPDATE accounts SET deactivated_at = 1 WHERE user_id = 'dave'")
        .await
        .expect("the deactivation's update");
    let mut chat = server.chat().await;
    let with_dave = NewRequest {
        user_ids: vec!["alice".into(), "dave".into()],
    };
    let new = tokio::spawn(async move { chat.new_chat(authed(&alice, with_dave)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !new.is_finished(),
        "New did not wait for the deactivation in flight: {:?}",
        new.await
    );
    deactivating
        .batch_execute("COMMIT")
        .await
        .expect("the deactivation commits");
    let refused = within(new)
        .await
        .expect("the New call's task")
        .expect_err("a chat with dave, deactivated meanwhile");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    drop(deactivating);
    let _ = driver.await;
}

/// Whichever of alice and bob is among `members`, to call New as.
fn alice_or_bob(members: &[&str], alice: &str, bob: &str) -> String {
    if members.contains(&"alice") {
        alice
    } else {
        bob
    }
    .to_owned()
}

#[tokio::test]
async fn with_the_sqlite_server_stopped_nobody_is_listed_as_online_now() {
    if on_postgres() {
        // Servers on PostgreSQL announce the people of a dead one offline themselves.
        return;
    }
    let mut server = spawn_process(&[]).await;
    let (_, alice) = signed_up(&server, "alice").await;
    signed_up(&server, "bob").await;
    let mut chat = server.chat().await;
    let _online = open_stream(&mut chat, &alice, "", "").await;
    listed_once_online(&server, "alice").await;

    // Stopped (cleanly or not) with her stream open, the server leaves her recorded online.
    for stop in ["SIGTERM", "SIGKILL"] {
        match stop {
            "SIGTERM" => drop(server.terminate().await),
            _ => server.kill(),
        }
        let listed = accounts_listed(&server).await;
        assert_eq!(
            row(&listed, "alice")[6..],
            ["when", "the", "server", "stopped"],
            "{stop}: {listed}"
        );
        assert_eq!(row(&listed, "bob")[6..], ["never"], "{stop}: {listed}");
        server.start().await;
        if stop == "SIGTERM" {
            let _again = open_stream(&mut server.chat().await, &alice, "", "").await;
            listed_once_online(&server, "alice").await;
        }
    }
    // The next server records her offline as it starts, from then on.
    let listed = accounts_listed(&server).await;
    assert_eq!(row(&listed, "alice")[8], "UTC", "{listed}");
}

/// What `chat-server accounts` prints once it lists `user` as online "now", which the server
/// records a moment after their stream opens; fails after [`TASK_LIMIT`].
async fn listed_once_online(server: &ServerProcess, user: &str) -> String {
    let start = Instant::now();
    loop {
        let listed = accounts_listed(server).await;
        if row(&listed, user).last() == Some(&"now") {
            return listed;
        }
        assert!(
            start.elapsed() < TASK_LIMIT,
            "{user} never listed online: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `chat-server accounts` prints for `server`'s data, which it must list.
async fn accounts_listed(server: &ServerProcess) -> String {
    let mut args = server.store_args();
    args.push("accounts".to_owned());
    let output = run_command(server_binary(), args, TASK_LIMIT).await;
    let listed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{listed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    listed
}

/// The words of the table's row of `user`: name, date, time, "UTC", sessions, chats, last
/// online.
fn row<'a>(listed: &'a str, user: &str) -> Vec<&'a str> {
    listed
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&user))
        .unwrap_or_else(|| panic!("no row of {user}: {listed}"))
}

/// Starts chat-server with `args` (an `add-account dave`) on a new terminal and answers its
/// first question for the password with `first`, which must not be shown; returns once the second question is on
/// the screen.
async fn asked_twice(args: &[String], first: &str) -> (Terminal, Child) {
    let terminal = Terminal::open();
    let task = terminal.run(args);
    terminal.wait_for("Password for dave: ").await;
    assert!(
        !terminal.echoes(),
        "the password would be shown as it is typed"
    );
    terminal.type_keys(&format!("{first}\r"));
    terminal.wait_for("The same again: ").await;
    (terminal, task)
}

/// A pseudo-terminal, as an operator's terminal is to the program it runs: what is typed is
/// written to its keyboard side, what the program shows is read from there.
struct Terminal {
    keyboard: File,
    /// The program's side, kept open so that its settings can be read once the program ended.
    device: File,
    shown: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn open() -> Self {
        // SAFETY: posix_openpt returns a new descriptor (checked), which the File then owns;
        // grantpt, unlockpt and ptsname_r only act on it and the buffer given.
        let (keyboard, path) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(
                fd >= 0,
                "no pseudo-terminal: {}",
                std::io::Error::last_os_error()
            );
            let keyboard = File::from_raw_fd(fd);
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
            let path = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned();
            (keyboard, path)
        };
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .unwrap_or_else(|error| panic!("cannot open {path}: {error}"));
        let shown = Arc::new(Mutex::new(Vec::new()));
        let (mut screen, sink) = (keyboard.try_clone().expect("keyboard"), shown.clone());
        // A thread of its own, not the runtime's blocking pool, which a test's end would wait
        // for: the read ends (with EIO) once the program and `device` are gone.
        std::thread::spawn(move || {
            let mut buffer = [0; 1024];
            while let Ok(read @ 1..) = screen.read(&mut buffer) {
                sink.lock()
                    .expect("screen")
                    .extend_from_slice(&buffer[..read]);
            }
        });
        Self {
            keyboard,
            device,
            shown,
        }
    }

    /// Starts chat-server with `args` on this terminal, as its controlling terminal (so
    /// that Ctrl-C sends it SIGINT) and its standard input, output and error.
    fn run(&self, args: &[String]) -> Child {
        let stream = || self.device.try_clone().expect("terminal");
        let mut command = std::process::Command::new(server_binary());
        command
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(stream())
            .stdout(stream())
            .stderr(stream());
        // SAFETY: between fork and exec only setsid and ioctl, both async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn().expect("chat-server starts")
    }

    fn type_keys(&self, keys: &str) {
        (&self.keyboard).write_all(keys.as_bytes()).expect("typed");
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().expect("screen")).into_owned()
    }

    async fn wait_for(&self, text: &str) {
        let start = Instant::now();
        while !self.shown().contains(text) {
            assert!(
                start.elapsed() < TASK_LIMIT,
                "the terminal never showed {text:?}: {}",
                self.shown()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the terminal shows what is typed.
    fn echoes(&self) -> bool {
        // SAFETY: tcgetattr fills the termios given, for a descriptor `device` owns.
        unsafe {
            let mut settings: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.device.as_raw_fd(), &mut settings), 0);
            settings.c_lflag & libc::ECHO != 0
        }
    }
}

/// How `task` ended; killed, and the test failed, if it runs past `TASK_LIMIT`.
async fn wait_for_exit(task: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = task.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > TASK_LIMIT {
            let _ = task.kill();
            panic!("chat-server ran longer than {TASK_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
