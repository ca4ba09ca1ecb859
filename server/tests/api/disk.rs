//! Disk trouble: the real binary's database becomes unwritable while it runs, then writable
//! again. Send (and every other write) must fail with UNAVAILABLE and a sentence saying what
//! to do, reads keep working, nothing half-written appears anywhere, and once the disk is back
//! the same retries succeed, each message stored once, without a restart.
//!
//! The fault is a real one the kernel produces: the process's file-size limit
//! (RLIMIT_FSIZE, changed from outside with `prlimit`) set to 0 makes every write(2) to a
//! regular file fail with EFBIG, the way a full disk fails with ENOSPC. The server runs under
//! a shell that ignores SIGXFSZ first, as a full disk sends no signal; the shell `exec`s the
//! server, so `prlimit` reaches it by the same pid.

use chat_core::proto::{Credentials, NewRequest};
use tonic::Code;

use crate::helpers::*;

/// Makes every write of the server to a regular file fail (`fsize` 0), or lifts that.
fn set_writable(server: &ServerProcess, writable: bool) {
    let limit = if writable { "unlimited" } else { "0:unlimited" };
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &server.pid().to_string(),
            &format!("--fsize={limit}"),
        ])
        .status()
        .expect("cannot run prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={limit} failed");
}

/// The server under a shell that ignores SIGXFSZ, so a write over the limit fails with EFBIG
/// instead of killing the process.
async fn spawn_with_fsize_faults() -> ServerProcess {
    spawn_process_under(&["sh", "-c", "trap '' XFSZ; exec \"$0\" \"$@\""], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_refuses_writes_with_unavailable_and_recovers() {
    // The fault is the server's own file writes failing; on PostgreSQL the server writes no
    // database file, so there is nothing for this limit to break.
    if on_postgres() {
        return;
    }
    let mut server = spawn_with_fsize_faults().await;
    let (alice, _, chat_id) = alice_and_bob(&server).await;
    let mut chat = server.chat().await;
    let before = send_text(&mut chat, &alice, &chat_id, "before", "written fine").await;
    let mut stream = open_stream(&mut chat, &alice, &chat_id, &before.id).await;

    set_writable(&server, false);
    // Several at once, so they share a group commit as they would under load.
    let sends = (0..8).map(|n| {
        let mut chat = chat.clone();
        let request = authed(
            &alice,
            send_request(&chat_id, &format!("during-{n}"), "lost?"),
        );
        async move { within(chat.send(request)).await }
    });
    for outcome in futures::future::join_all(sends).await {
        let status = outcome.expect_err("a Send succeeded on an unwritable disk");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("same client_id"),
            "the message must say how to recover: {status:?}"
        );
    }
    let sign_in = within(server.auth().await.sign_in(credentials("alice", PASSWORD))).await;
    assert_eq!(
        sign_in.expect_err("sign-in writes a token").code(),
        Code::Unavailable
    );
    let sign_up = within(server.auth().await.sign_up(Credentials {
        user_id: "carol".into(),
        password: PASSWORD.into(),
        device: String::new(),
    }))
    .await;
    assert_eq!(sign_up.expect_err("sign-up").code(), Code::Unavailable);
    let new = NewRequest {
        user_ids: vec!["alice".into()],
    };
    let new = within(chat.new_chat(authed(&alice, new))).await;
    assert_eq!(
        new.expect_err("New writes a chat").code(),
        Code::Unavailable
    );
    // Reads do not need the disk to take writes.
    assert_eq!(
        history_of(&server, &alice, &chat_id).await,
        std::slice::from_ref(&before)
    );
    assert_eq!(chats_of(&server, &alice).await.len(), 1);

    set_writable(&server, true);
    let mut retried = Vec::new();
    for n in 0..8 {
        retried.push(send_text(&mut chat, &alice, &chat_id, &format!("during-{n}"), "lost?").await);
    }
    let again = send_text(&mut chat, &alice, &chat_id, "during-0", "lost?").await;
    assert_eq!(again, retried[0], "a second retry returns the same message");
    let after = send_text(&mut chat, &alice, &chat_id, "after", "written fine").await;
    retried.push(after);

    // The stream saw nothing while writes failed, then each stored message once.
    assert_eq!(next_messages(&mut stream, retried.len()).await, retried);
    let mut expected = vec![before];
    expected.extend(retried);
    assert_eq!(history_of(&server, &alice, &chat_id).await, expected);
    let session = within(server.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("sign-in works again");
    assert!(!session.into_inner().token.is_empty());

    // What the failed writes left in the files is harmless to a fresh start too.
    let exit = server.terminate().await;
    assert_eq!(exit.code(), Some(0), "{exit}");
    server.start().await;
    assert_eq!(history_of(&server, &alice, &chat_id).await, expected);
}
