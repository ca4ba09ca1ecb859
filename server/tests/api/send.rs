//! Send: the reply is the committed message, and the same (chat, sender, client_id) is one
//! message however often, and however concurrently, it is retried.

use chat_core::proto::SendRequest;

use crate::helpers::*;

#[tokio::test]
async fn send_returns_the_stored_message() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let before = unix_now();

    let request = SendRequest {
        subject: "Lunch?".into(),
        ..send_request(&chat_id, "m-1", "noon at the usual place")
    };
    let stored = within(app.chat().await.send(authed(&alice, request)))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("the reply carries the stored message");

    id_number(&stored.id);
    assert_eq!(stored.chat_id, chat_id);
    assert_eq!(stored.user_id, "alice");
    assert_eq!(stored.client_id, "m-1");
    assert_eq!(stored.subject, "Lunch?");
    assert_eq!(stored.text, "noon at the usual place");
    assert!(
        (before..=unix_now()).contains(&stored.sent_at),
        "sent_at {} should be the server's clock at sending",
        stored.sent_at
    );
    assert_eq!(history_of(&app, &alice, &chat_id).await, [stored]);
}

#[tokio::test]
async fn a_retried_send_returns_the_first_message_and_stores_it_once() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;

    let first = send_text(&mut chat, &alice, &chat_id, "retry-me", "hello").await;
    for _ in 0..3 {
        let retry = send_text(&mut chat, &alice, &chat_id, "retry-me", "hello").await;
        assert_eq!(
            retry, first,
            "a retry must return the stored message unchanged"
        );
    }
    let next = send_text(&mut chat, &alice, &chat_id, "another", "world").await;
    assert!(id_number(&next.id) > id_number(&first.id));

    assert_eq!(history_of(&app, &alice, &chat_id).await, [first, next]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_store_one_message() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;

    let mut retries = Vec::new();
    for _ in 0..12 {
        let mut chat = app.chat().await;
        let (alice, chat_id) = (alice.clone(), chat_id.clone());
        retries.push(tokio::spawn(async move {
            chat.send(authed(&alice, send_request(&chat_id, "raced", "only once")))
                .await
        }));
    }
    let mut replies = Vec::new();
    for retry in retries {
        let reply = within(retry).await.expect("task panicked").expect("send");
        replies.push(reply.into_inner().message.expect("stored message"));
    }

    assert!(
        replies.iter().all(|reply| *reply == replies[0]),
        "retries disagree: {replies:#?}"
    );
    assert_eq!(
        history_of(&app, &alice, &chat_id).await,
        [replies[0].clone()]
    );
}

#[tokio::test]
async fn a_client_id_is_scoped_to_its_chat_and_sender() {
    let app = spawn_app().await;
    let (alice, bob, ours) = alice_and_bob(&app).await;
    let mine = new_chat(&app, &alice, &["alice"]).await;
    let mut chat = app.chat().await;

    let alice_here = send_text(&mut chat, &alice, &ours, "same-id", "from alice").await;
    let bob_here = send_text(&mut chat, &bob, &ours, "same-id", "from bob").await;
    let alice_there = send_text(&mut chat, &alice, &mine, "same-id", "elsewhere").await;

    assert_ne!(
        alice_here.id, bob_here.id,
        "another sender's client id is another message"
    );
    assert_ne!(
        alice_here.id, alice_there.id,
        "another chat's client id is another message"
    );
    assert_eq!(bob_here.user_id, "bob");
    assert_eq!(history_of(&app, &bob, &ours).await, [alice_here, bob_here]);
    assert_eq!(history_of(&app, &alice, &mine).await, [alice_there]);
}

#[tokio::test]
async fn ids_are_decimal_and_increase_across_chats() {
    let app = spawn_app().await;
    let [alice, _] = signed_up_all(&app, ["alice", "bob"]).await;
    let chats = [
        new_chat(&app, &alice, &["alice", "bob"]).await,
        new_chat(&app, &alice, &["alice"]).await,
    ];
    let mut chat = app.chat().await;

    let mut previous = 0;
    for n in 0..10 {
        let stored = send_text(&mut chat, &alice, &chats[n % 2], &format!("m{n}"), "tick").await;
        let id = id_number(&stored.id);
        assert_eq!(
            stored.id,
            id.to_string(),
            "ids are plain decimal, without padding"
        );
        assert!(
            id > previous,
            "id {id} after {previous}: one cursor must order every chat"
        );
        previous = id;
    }
}
