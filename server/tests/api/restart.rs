//! Shutdown and restart: open streams end with UNAVAILABLE so clients know to resume, `run`
//! returns, and a server started on the same data directory finds accounts, tokens, chats and
//! messages as they were, and carries on with larger ids.

use tonic::Code;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart() {
    let mut app = spawn_app().await;
    let (_, alice) = signed_up(&app, "alice").await;
    let (_, bob) = signed_up(&app, "bob").await;
    let chat_id = new_chat(&app, &alice, &["alice", "bob"]).await;
    let mut chat = app.chat().await;
    let mut sent = Vec::new();
    for n in 0..5 {
        let token = if n % 2 == 0 { &alice } else { &bob };
        sent.push(
            send_text(
                &mut chat,
                token,
                &chat_id,
                &format!("m{n}"),
                &format!("before restart {n}"),
            )
            .await,
        );
    }
    let mut stream = open_stream(&mut chat, &alice, &chat_id, "").await;
    let (outbox, mut incoming) = open_connect(&mut chat, Some(&bob), &[("chat-id", &chat_id)])
        .await
        .expect("connect");

    // Read the open streams while the server shuts down: their ends are part of the shutdown.
    // The Connect client hangs up once its stream has ended, as a client that resumes does.
    let stream_end = tokio::spawn(async move { failure_of(&mut stream).await });
    let connect_end = tokio::spawn(async move {
        let status = failure_of(&mut incoming).await;
        drop(outbox);
        status
    });
    app.stop().await;
    for (name, end) in [("Stream", stream_end), ("Connect", connect_end)] {
        let status = within(end).await.expect("reader panicked");
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "{name} at shutdown: {status:?}"
        );
    }

    app.restart().await;
    let mut chat = app.chat().await;

    let session = within(app.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("alice can sign in after the restart")
        .into_inner();
    assert_eq!(session.user_id, "alice");
    // Bob's token from before the restart still works.
    let listed = chats_of(&app, &bob).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].chat_id, chat_id);
    assert_eq!(listed[0].user_ids, ["alice", "bob"]);
    assert_eq!(listed[0].last_message.as_ref(), sent.last());

    assert_eq!(
        history_of(&app, &alice, &chat_id).await,
        sent,
        "every message is still there"
    );
    assert_eq!(
        new_chat(&app, &bob, &["bob", "alice"]).await,
        chat_id,
        "the same users, the same chat"
    );

    // A client resuming from the last id it saw gets exactly what came after.
    let mut resumed = open_stream(&mut chat, &alice, "", &sent[4].id).await;
    let retried = send_text(&mut chat, &alice, &chat_id, "m0", "before restart 0").await;
    assert_eq!(
        retried, sent[0],
        "client ids are remembered across restarts"
    );
    let after = send_text(&mut chat, &session.token, &chat_id, "m5", "after restart").await;
    assert!(
        id_number(&after.id) > id_number(&sent[4].id),
        "new id {} must be larger than every old one ({})",
        after.id,
        sent[4].id
    );
    assert_eq!(next_messages(&mut resumed, 1).await, [after]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_client_that_keeps_its_side_open_does_not_hold_up_shutdown() {
    let mut app = spawn_app().await;
    let (_, alice) = signed_up(&app, "alice").await;
    let chat_id = new_chat(&app, &alice, &["alice"]).await;
    let mut chat = app.chat().await;
    let (outbox, mut incoming) = open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
        .await
        .expect("connect");

    // This client never closes its sending side, like a UI that keeps its outbox around;
    // `outbox` stays alive until the end of the test.
    let connect_end = tokio::spawn(async move { failure_of(&mut incoming).await });
    app.stop().await;

    let status = within(connect_end).await.expect("reader panicked");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    drop(outbox);
}
