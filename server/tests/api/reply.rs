//! Replies: a message may answer another message of its chat. The stored reply carries a
//! preview of its original (sender, the beginning of its text, whether it was deleted) on
//! every path that returns messages; an original in another chat, unknown or deleted is
//! NOT_FOUND and stores nothing; retries stay idempotent.

use chat_core::limits::REPLY_PREFIX_CHARS;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::{
    DeleteRequest, Event, HistoryRequest, ListRequest, Message, ReplyPreview, SendRequest,
    StreamRequest,
};
use chat_core::wire;
use tonic::Code;
use tonic::codec::Streaming;

use crate::helpers::*;

fn reply_request(chat_id: &str, client_id: &str, text: &str, original: &str) -> SendRequest {
    SendRequest {
        reply_to_id: original.to_owned(),
        ..send_request(chat_id, client_id, text)
    }
}

async fn send_with<T: Transport>(
    chat: &mut ChatClient<T>,
    token: &str,
    request: SendRequest,
) -> Result<Message, tonic::Status> {
    within(chat.send(authed(token, request)))
        .await
        .map(|response| {
            response
                .into_inner()
                .message
                .expect("SendResponse has a message")
        })
}

/// A Stream opened over `chat`'s own transport.
async fn stream_on<T: Transport>(
    chat: &ChatClient<T>,
    token: &str,
    chat_id: &str,
    after_id: &str,
) -> Streaming<Event> {
    let request = StreamRequest {
        chat_id: chat_id.to_owned(),
        after_id: after_id.to_owned(),
    };
    within(chat.clone().stream(authed(token, request)))
        .await
        .expect("stream")
        .into_inner()
}

fn preview_of(original: &Message) -> ReplyPreview {
    ReplyPreview {
        message_id: original.id.clone(),
        user_id: original.user_id.clone(),
        text_prefix: original.text.clone(),
        deleted: false,
    }
}

/// Bob follows every chat; alice writes, bob answers: Send, History, Stream (live and
/// replayed), List and a retry all show the same quote.
async fn a_reply_quotes_its_original_everywhere<T: Transport>(
    app: &TestApp,
    mut chat: ChatClient<T>,
) {
    let (alice, bob, chat_id) = alice_and_bob(app).await;
    let mut live = stream_on(&chat, &bob, "", "").await;
    let original = send_with(
        &mut chat,
        &alice,
        send_request(&chat_id, "q1", "Lunch at noon? Let's meet at the café"),
    )
    .await
    .expect("send the original");
    let request = reply_request(&chat_id, "r1", "Yes, see you there", &original.id);
    let reply = send_with(&mut chat, &bob, request.clone())
        .await
        .expect("send the reply");
    assert_eq!(reply.reply_to, Some(preview_of(&original)));

    assert_eq!(
        next_messages(&mut live, 2).await,
        [original.clone(), reply.clone()]
    );
    let mut replay = stream_on(&chat, &alice, "", &original.id).await;
    assert_eq!(
        next_messages(&mut replay, 1).await,
        std::slice::from_ref(&reply)
    );
    let history = within(chat.history(authed(
        &alice,
        HistoryRequest {
            chat_id: chat_id.clone(),
            ..Default::default()
        },
    )))
    .await
    .expect("history")
    .into_inner()
    .messages;
    assert_eq!(history, [original.clone(), reply.clone()]);
    assert_eq!(history[0].reply_to, None, "the original answers nothing");
    let listed = within(chat.list(authed(&alice, ListRequest::default())))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.chats[0].last_message.as_ref(), Some(&reply));

    let retried = send_with(&mut chat, &bob, request).await.expect("retry");
    assert_eq!(retried, reply, "a retry returns the stored reply");
    assert_eq!(history_of(app, &bob, &chat_id).await.len(), 2);
}

#[tokio::test]
async fn a_reply_quotes_its_original_everywhere_over_native_grpc() {
    let app = spawn_app().await;
    let chat = app.chat().await;
    a_reply_quotes_its_original_everywhere(&app, chat).await;
}

#[tokio::test]
async fn a_reply_quotes_its_original_everywhere_over_grpc_web() {
    let app = spawn_app().await;
    a_reply_quotes_its_original_everywhere(&app, app.web_chat()).await;
}

/// Replies to what is not a message of the chat, over both transports: each refusal has its
/// code and sentence, and none stores anything.
async fn replies_outside_the_chat_are_refused<T: Transport>(
    app: &TestApp,
    mut chat: ChatClient<T>,
) {
    let [alice, _bob, carol, dave] = signed_up_all(app, ["alice", "bob", "carol", "dave"]).await;
    let ours = new_chat(app, &alice, &["alice", "bob"]).await;
    let with_carol = new_chat(app, &alice, &["alice", "carol"]).await;
    let theirs = new_chat(app, &carol, &["carol", "dave"]).await;
    let mine = send_with(&mut chat, &alice, send_request(&ours, "m1", "in our chat"))
        .await
        .unwrap();
    let elsewhere = send_with(
        &mut chat,
        &alice,
        send_request(&with_carol, "m2", "with carol"),
    )
    .await
    .unwrap();
    let foreign = send_with(
        &mut chat,
        &dave,
        send_request(&theirs, "m3", "not for alice"),
    )
    .await
    .unwrap();

    let not_found = "the message you reply to is not in this chat (or was deleted)";
    for (original, code, message) in [
        (elsewhere.id.as_str(), Code::NotFound, not_found),
        (foreign.id.as_str(), Code::NotFound, not_found),
        ("999999999", Code::NotFound, not_found),
        (
            "12x",
            Code::InvalidArgument,
            "reply_to_id \"12x\" is not a message id: use the id of a message you received",
        ),
    ] {
        let status = send_with(
            &mut chat,
            &alice,
            reply_request(&ours, "bad", "reply", original),
        )
        .await
        .expect_err("a reply outside the chat must be refused");
        assert_eq!(
            (status.code(), status.message()),
            (code, message),
            "reply to {original:?}"
        );
    }
    assert_eq!(
        history_of(app, &alice, &ours).await,
        std::slice::from_ref(&mine),
        "nothing was stored"
    );
    // The refused client id is still free: the same one with a good original is stored.
    let reply = send_with(
        &mut chat,
        &alice,
        reply_request(&ours, "bad", "reply", &mine.id),
    )
    .await
    .expect("a reply inside the chat");
    assert_eq!(reply.reply_to, Some(preview_of(&mine)));
}

#[tokio::test]
async fn replies_outside_the_chat_are_refused_over_native_grpc() {
    let app = spawn_app().await;
    let chat = app.chat().await;
    replies_outside_the_chat_are_refused(&app, chat).await;
}

#[tokio::test]
async fn replies_outside_the_chat_are_refused_over_grpc_web() {
    let app = spawn_app().await;
    replies_outside_the_chat_are_refused(&app, app.web_chat()).await;
}

#[tokio::test]
async fn a_long_original_is_quoted_by_its_first_characters() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let long = "é".repeat(REPLY_PREFIX_CHARS) + &"ü".repeat(50);
    let original = send_text(&mut chat, &alice, &chat_id, "long", &long).await;
    let reply = send_with(
        &mut chat,
        &bob,
        reply_request(&chat_id, "r", "ok", &original.id),
    )
    .await
    .unwrap();
    let quoted = reply.reply_to.expect("a preview");
    assert_eq!(quoted.text_prefix, "é".repeat(REPLY_PREFIX_CHARS));
    assert_eq!(
        history_of(&app, &alice, &chat_id).await[1].reply_to,
        Some(quoted)
    );
}

#[tokio::test]
async fn a_connect_stream_sends_replies_and_echoes_their_quote() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let original = send_text(&mut chat, &alice, &chat_id, "q", "shall we?").await;
    let (outgoing, mut incoming) = open_connect(
        &mut app.chat().await,
        Some(&bob),
        &[(wire::CHAT_ID, chat_id.as_str())],
    )
    .await
    .expect("connect");
    outgoing
        .send(Message {
            client_id: "c1".into(),
            text: "let's".into(),
            reply_to: Some(ReplyPreview {
                message_id: original.id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let echoed = take(&mut incoming, 1).await;
    assert_eq!(echoed[0].reply_to, Some(preview_of(&original)));
    assert_eq!(history_of(&app, &alice, &chat_id).await[1], echoed[0]);
}

/// A deleted original shows as deleted in History and replay, and can no longer be replied
/// to, while a retry of a reply stored before still gets its message back.
#[tokio::test]
async fn a_reply_to_a_deleted_message_shows_the_placeholder() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let original = send_text(&mut chat, &alice, &chat_id, "q", "a secret").await;
    send_text(&mut chat, &alice, &chat_id, "n", "in between").await;
    let request = reply_request(&chat_id, "r1", "noted", &original.id);
    let reply = send_with(&mut chat, &bob, request.clone()).await.unwrap();

    within(chat.delete(authed(
        &alice,
        DeleteRequest {
            chat_id: chat_id.clone(),
            message_id: original.id.clone(),
        },
    )))
    .await
    .expect("alice deletes her message");

    let newest = within(chat.history(authed(
        &bob,
        HistoryRequest {
            chat_id: chat_id.clone(),
            limit: 1,
            before_id: String::new(),
        },
    )))
    .await
    .unwrap()
    .into_inner()
    .messages;
    let expected = ReplyPreview {
        message_id: original.id.clone(),
        user_id: "alice".into(),
        text_prefix: String::new(),
        deleted: true,
    };
    assert_eq!(newest[0].reply_to, Some(expected.clone()));
    let mut replay = stream_on(&chat, &bob, &chat_id, &original.id).await;
    assert_eq!(
        next_messages(&mut replay, 2).await[1].reply_to,
        Some(expected)
    );

    let retried = send_with(&mut chat, &bob, request).await.expect("retry");
    assert_eq!(
        retried.id, reply.id,
        "a retry still returns the stored reply"
    );
    let status = send_with(
        &mut chat,
        &bob,
        reply_request(&chat_id, "r2", "?", &original.id),
    )
    .await
    .expect_err("a deleted message cannot be replied to");
    assert_eq!(status.code(), Code::NotFound);
}
