//! Connect, the bidirectional chat over native gRPC: what a client sends is stored and echoed
//! to every stream of the chat, the sender's own included, in one order for everyone; a bad
//! message ends the stream with a status, since gRPC gives Connect no per-message error channel.

use chat_core::proto::Message;
use tonic::Code;

use crate::helpers::*;

/// A message as a client writes it: the server fills in id, sender and time.
fn outgoing(client_id: &str, text: &str) -> Message {
    Message {
        client_id: client_id.into(),
        text: text.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_echo_acknowledges_a_message_with_its_server_id() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let (outbox, mut echoes) = open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
        .await
        .expect("connect");
    let before = unix_now();

    outbox
        .send(outgoing("c1", "hello over connect"))
        .await
        .expect("the stream is open");
    let echo = take(&mut echoes, 1).await.remove(0);

    id_number(&echo.id);
    assert_eq!(echo.client_id, "c1");
    assert_eq!(echo.user_id, "alice");
    assert_eq!(echo.chat_id, chat_id);
    assert_eq!(echo.text, "hello over connect");
    assert!(
        (before..=unix_now()).contains(&echo.sent_at),
        "sent_at {}",
        echo.sent_at
    );
    assert_eq!(
        history_of(&app, &alice, &chat_id).await,
        std::slice::from_ref(&echo)
    );
    // Connect and Send share one idempotency key: resending c1 with Send is a retry.
    let retried = send_text(&mut chat, &alice, &chat_id, "c1", "hello over connect").await;
    assert_eq!(retried, echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_see_every_message_in_the_same_order() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let metadata = [("chat-id", chat_id.as_str())];
    let (alice_out, mut alice_in) = open_connect(&mut chat, Some(&alice), &metadata)
        .await
        .expect("alice");
    let (bob_out, mut bob_in) =
        open_connect(&mut chat, Some(&bob), &[("user-id", "bob"), metadata[0]])
            .await
            .expect("bob");
    let mut watcher = open_stream(&mut chat, &alice, &chat_id, "").await;

    const EACH: usize = 5;
    let talk = |outbox: tokio::sync::mpsc::Sender<Message>, who: &'static str| async move {
        for n in 0..EACH {
            let message = outgoing(&format!("{who}-{n}"), &format!("{who} says {n}"));
            outbox.send(message).await.expect("the stream is open");
        }
        outbox
    };
    // Both users type at once; keep the outboxes so the streams stay open while reading.
    let (_alice_out, _bob_out) = tokio::join!(talk(alice_out, "alice"), talk(bob_out, "bob"));
    let (alice_saw, bob_saw, watched) = tokio::join!(
        take(&mut alice_in, 2 * EACH),
        take(&mut bob_in, 2 * EACH),
        next_messages(&mut watcher, 2 * EACH),
    );

    assert_eq!(
        ids(&alice_saw),
        ids(&bob_saw),
        "both users must see one order"
    );
    assert_eq!(alice_saw, bob_saw);
    assert_eq!(
        alice_saw, watched,
        "a Stream of the chat sees what Connect streams see"
    );
    let numbers: Vec<u64> = alice_saw
        .iter()
        .map(|message| id_number(&message.id))
        .collect();
    assert!(
        numbers.is_sorted() && numbers.windows(2).all(|w| w[0] < w[1]),
        "ids {numbers:?}"
    );
    for who in ["alice", "bob"] {
        let theirs: Vec<&str> = alice_saw
            .iter()
            .filter(|message| message.user_id == who)
            .map(|message| message.client_id.as_str())
            .collect();
        let expected: Vec<String> = (0..EACH).map(|n| format!("{who}-{n}")).collect();
        assert_eq!(
            theirs, expected,
            "{who}'s messages, in the order {who} sent them"
        );
    }
    assert_eq!(history_of(&app, &bob, &chat_id).await, alice_saw);
}

#[tokio::test]
async fn after_id_metadata_replays_then_goes_live() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let stored = send_in_order(&mut chat, &bob, &chat_id, "m", 3, "while alice was away").await;

    let (_outbox, mut incoming) = open_connect(
        &mut chat,
        Some(&alice),
        &[("chat-id", &chat_id), ("after-id", &stored[0].id)],
    )
    .await
    .expect("connect");
    assert_eq!(take(&mut incoming, 2).await, stored[1..]);
    let live = send_text(&mut chat, &bob, &chat_id, "live", "welcome back").await;
    assert_eq!(take(&mut incoming, 1).await, [live]);
}

#[tokio::test]
async fn a_bad_message_ends_the_stream_and_is_not_stored() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let other_chat = new_chat(&app, &alice, &["alice"]).await;
    let mut chat = app.chat().await;

    let rows: [(&str, Message, Code); 6] = [
        (
            "empty text",
            outgoing("bad-empty", ""),
            Code::InvalidArgument,
        ),
        (
            "blank text",
            outgoing("bad-blank", " \n\t "),
            Code::InvalidArgument,
        ),
        (
            "no client id",
            outgoing("", "who am I"),
            Code::InvalidArgument,
        ),
        (
            "client id with spaces",
            outgoing("bad client id", "hi"),
            Code::InvalidArgument,
        ),
        (
            "another chat's id",
            Message {
                chat_id: other_chat.clone(),
                ..outgoing("bad-chat", "hi")
            },
            Code::InvalidArgument,
        ),
        (
            "another sender",
            Message {
                user_id: "bob".into(),
                ..outgoing("bad-sender", "hi")
            },
            Code::PermissionDenied,
        ),
    ];
    let mut accepted = Vec::new();
    for (row, (case, bad, code)) in rows.into_iter().enumerate() {
        let (outbox, mut incoming) =
            open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
                .await
                .expect("connect");
        // A good message first proves the stream worked until the bad one.
        outbox
            .send(outgoing(&format!("good-{row}"), "fine"))
            .await
            .expect("the stream is open");
        accepted.extend(take(&mut incoming, 1).await);

        outbox.send(bad).await.expect("the stream is open");
        let status = failure_of(&mut incoming).await;
        assert_eq!(status.code(), code, "{case}: {status:?}");
    }

    assert_eq!(
        history_of(&app, &alice, &chat_id).await,
        accepted,
        "only the good messages are stored"
    );
    assert!(history_of(&app, &alice, &other_chat).await.is_empty());
}

#[tokio::test]
async fn an_unreadable_message_ends_the_stream_with_why_instead_of_being_ignored() {
    // Bytes that are not a protobuf Message must not be dropped silently: the client would
    // wait for an echo that never comes.
    use bytes::Bytes;
    use http::uri::PathAndQuery;

    let app = spawn_app_with(&["--max-request-bytes", "1024"]).await;
    let (alice, chat_id) = alice_alone(&app).await;
    let rows: [(&str, Bytes, Code, &str); 2] = [
        (
            "not protobuf (field number 0)",
            Bytes::from_static(&[0]),
            Code::Internal,
            "failed to decode",
        ),
        (
            "over the request size limit",
            Bytes::from(vec![b'x'; 2048]),
            Code::OutOfRange,
            "too large",
        ),
    ];
    for (case, bytes, code, words) in rows {
        let mut grpc = tonic::client::Grpc::new(app.channel().await);
        within(grpc.ready()).await.expect("ready");
        let request = with_metadata(
            authed(&alice, futures::stream::iter([bytes])),
            "chat-id",
            &chat_id,
        );
        let path = PathAndQuery::from_static("/chat.Chat/Connect");
        let response = within(grpc.streaming(request, path, RawCodec)).await;
        let status = streaming_failure(response).await;
        assert_eq!(status.code(), code, "{case}: {status:?}");
        assert!(
            status.message().starts_with("cannot read your message"),
            "{case}: {status:?}"
        );
        assert!(status.message().contains(words), "{case}: {status:?}");
    }
    assert!(history_of(&app, &alice, &chat_id).await.is_empty());
}
