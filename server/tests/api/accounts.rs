//! The operator's side of accounts, with the real binary: `--sign-up closed` refuses SignUp
//! and stores nothing; `chat-server add-account` makes an account people then sign in to,
//! and `set-password` gives a forgotten password a replacement and ends every session of the
//! account. On SQLite they refuse to run under a server (its lock on the data directory), and
//! a second server on the same directory is refused likewise; on PostgreSQL they run beside
//! the server, which hears of the ended sessions.

use std::time::{Duration, Instant};

use chat_core::proto::ListRequest;
use tonic::Code;

use crate::helpers::*;

/// How long an operator's task may take (one password hash, opening the store).
const TASK_LIMIT: Duration = Duration::from_secs(60);

/// What the operator's task printed (standard output and error) and whether it succeeded.
struct TaskOutput {
    succeeded: bool,
    text: String,
}

/// Runs `chat-server <task> <user>` on `server`'s data with `password` on standard input.
async fn task(server: &ServerProcess, task: &str, user: &str, password: &str) -> TaskOutput {
    let mut args = server.store_args();
    args.extend([task.to_owned(), user.to_owned()]);
    let output =
        run_command_with_input(server_binary(), args, &format!("{password}\n"), TASK_LIMIT).await;
    TaskOutput {
        succeeded: output.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
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
    let refused = task(server, name, user, password).await;
    assert!(
        !refused.succeeded
            && refused
                .text
                .contains("in use by another chat-server process"),
        "{name} under a running SQLite server must be refused: {}",
        refused.text
    );
    server.terminate().await;
    let done = task(server, name, user, password).await;
    server.start().await;
    done
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

    let native = within(
        server
            .auth()
            .await
            .sign_up(credentials("mallory", PASSWORD)),
    )
    .await
    .expect_err("SignUp on a closed server");
    assert_eq!(native.code(), Code::PermissionDenied, "{native:?}");
    assert_eq!(
        native.message(),
        "sign-up is closed on this server: ask its operator for an account"
    );
    let web = within(server.web_auth().sign_up(credentials("mallory", PASSWORD)))
        .await
        .expect_err("SignUp over gRPC-web on a closed server");
    assert_eq!(web.code(), Code::PermissionDenied, "{web:?}");
    let nothing = within(
        server
            .auth()
            .await
            .sign_in(credentials("mallory", PASSWORD)),
    )
    .await
    .expect_err("no account was made");
    assert_eq!(nothing.code(), Code::Unauthenticated, "{nothing:?}");

    let added = task_as_operator(&mut server, "add-account", "Dave", PASSWORD).await;
    assert!(added.succeeded, "add-account: {}", added.text);
    assert!(
        added.text.contains("account dave created"),
        "{}",
        added.text
    );
    let session = within(server.auth().await.sign_in(credentials("dave", PASSWORD)))
        .await
        .expect("the operator's account signs in")
        .into_inner();
    within(
        server
            .chat()
            .await
            .list(authed(&session.token, ListRequest::default())),
    )
    .await
    .expect("and is used");

    // What the operator can get wrong is said, and changes nothing.
    stop_on_sqlite(&mut server).await;
    let again = task(&server, "add-account", "dave", "another fine password").await;
    assert!(!again.succeeded, "a second dave: {}", again.text);
    assert!(again.text.contains("account dave exists"), "{}", again.text);
    let short = task(&server, "add-account", "erin", "short").await;
    assert!(!short.succeeded, "a short password: {}", short.text);
    assert!(
        short
            .text
            .contains("password must be at least 8 characters"),
        "{}",
        short.text
    );
    let bad_name = task(&server, "add-account", "no spaces", PASSWORD).await;
    assert!(
        !bad_name.succeeded,
        "a name with a space: {}",
        bad_name.text
    );
    start_on_sqlite(&mut server).await;
    let erin = within(server.auth().await.sign_in(credentials("erin", PASSWORD)))
        .await
        .expect_err("erin was not made");
    assert_eq!(erin.code(), Code::Unauthenticated, "{erin:?}");
    within(server.auth().await.sign_in(credentials("dave", PASSWORD)))
        .await
        .expect("dave keeps his password");
}

#[tokio::test]
async fn set_password_replaces_a_forgotten_password_and_ends_every_session() {
    let mut server = spawn_process(&[]).await;
    let (_, first) = signed_up(&server, "alice").await;
    let second = signed_in(&server, "alice").await;
    let new_password = "a brand new password";

    let set = task_as_operator(&mut server, "set-password", "alice", new_password).await;
    assert!(set.succeeded, "set-password: {}", set.text);
    assert!(
        set.text.contains("every session of alice has ended"),
        "{}",
        set.text
    );

    // On PostgreSQL the running server hears of it through the database's notification,
    // which takes a moment to arrive.
    let mut chat = server.chat().await;
    for token in [&first, &second] {
        let start = Instant::now();
        loop {
            match within(chat.list(authed(token, ListRequest::default()))).await {
                Err(status) if status.code() == Code::Unauthenticated => break,
                outcome => assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "a session of the old password still works: {outcome:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let old = within(server.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect_err("the old password");
    assert_eq!(old.code(), Code::Unauthenticated, "{old:?}");
    within(
        server
            .auth()
            .await
            .sign_in(credentials("alice", new_password)),
    )
    .await
    .expect("the new password signs in");

    stop_on_sqlite(&mut server).await;
    let nobody = task(&server, "set-password", "nobody", new_password).await;
    assert!(!nobody.succeeded, "set-password of nobody: {}", nobody.text);
    assert!(
        nobody.text.contains("no account named nobody"),
        "{}",
        nobody.text
    );
    let empty = run_command_with_input(
        server_binary(),
        [
            server.store_args(),
            vec!["set-password".to_owned(), "alice".to_owned()],
        ]
        .concat(),
        "",
        TASK_LIMIT,
    )
    .await;
    assert!(!empty.status.success(), "no password given");
    start_on_sqlite(&mut server).await;
    within(
        server
            .auth()
            .await
            .sign_in(credentials("alice", new_password)),
    )
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
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(!second.status.success(), "a second server started: {said}");
    assert!(
        said.contains("in use by another chat-server process") && said.contains("--data-dir"),
        "{said}"
    );
    within(chats_of_checked(&server, &token))
        .await
        .expect("the first server carries on");

    // The lock goes with the process, however it ends: no stale lock after a SIGKILL.
    server.kill();
    server.start().await;
    within(server.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("the restarted server serves the directory");
}

/// List for `token`, as a result.
async fn chats_of_checked(
    server: &ServerProcess,
    token: &str,
) -> Result<tonic::Response<chat_core::proto::ListResponse>, tonic::Status> {
    server
        .chat()
        .await
        .list(authed(token, ListRequest::default()))
        .await
}
