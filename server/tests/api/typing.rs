//! Typing: a unary call tells the chat's other members' Streams, stores nothing and uses no
//! message id, is refused for non-members and bad input, and is rate-limited per user. Over
//! native gRPC and gRPC-web, on whichever backend the suite runs.

use std::time::Duration;

use chat_core::activity::{TYPING_BURST, TYPING_SHOWN_MS};
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{TypingEvent, TypingRequest};
use chat_core::reason::Reason;
use tonic::Code;

use crate::helpers::*;

fn typing_in(chat_id: &str) -> TypingRequest {
    TypingRequest {
        chat_id: chat_id.to_owned(),
    }
}

fn typing(event: EventKind) -> Option<TypingEvent> {
    match event {
        EventKind::Typing(typing) => Some(typing),
        _ => None,
    }
}

#[tokio::test]
async fn typing_reaches_the_other_members_only_and_uses_no_message_id() {
    let app = spawn_app().await;
    let [alice, bob, carol] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let chat_id = new_chat(&app, &alice, &["alice", "bob", "carol"]).await;
    let mut native = app.chat().await;
    let mut bobs = open_stream(&mut native, &bob, "", "").await;
    let mut carols = open_stream(&mut native, &carol, &chat_id, "").await;
    let mut alices = open_stream(&mut native, &alice, "", "").await;
    let before = send_text(&mut native, &alice, &chat_id, "m0", "before").await;

    within(app.web_chat().typing(authed(&alice, typing_in(&chat_id))))
        .await
        .expect("Typing over gRPC-web");
    let expected = TypingEvent {
        chat_id: chat_id.clone(),
        user_id: "alice".into(),
        expires_in_ms: TYPING_SHOWN_MS as i32,
    };
    assert_eq!(
        next_event(&mut bobs, "Bob's typing event", typing).await,
        expected
    );
    assert_eq!(
        next_event(&mut carols, "Carol's typing event", typing).await,
        expected
    );
    assert_no_event(
        &mut alices,
        "Alice was told she types",
        Duration::from_millis(500),
        typing,
    )
    .await;

    let after = send_text(&mut native, &alice, &chat_id, "m1", "after").await;
    assert_eq!(
        id_number(&after.id),
        id_number(&before.id) + 1,
        "a typing event took a message id"
    );
    assert_eq!(
        history_of(&app, &alice, &chat_id).await.len(),
        2,
        "typing stored something"
    );
}

#[tokio::test]
async fn typing_outside_my_chats_or_with_a_bad_chat_id_is_refused() {
    let app = spawn_app().await;
    let (alice, bob, _chat_id) = alice_and_bob(&app).await;
    let (_, carol) = signed_up(&app, "carol").await;
    let carols_chat = new_chat(&app, &carol, &["carol"]).await;
    let cases = [
        (typing_in(&carols_chat), Code::NotFound, "chat not found"),
        (
            typing_in("0123456789abcdef0123456789abcdef"),
            Code::NotFound,
            "chat not found",
        ),
        (typing_in(""), Code::InvalidArgument, "chat_id is required"),
        (
            typing_in("not-a-chat"),
            Code::InvalidArgument,
            "not a chat id",
        ),
    ];
    // Alice calls natively and Bob over gRPC-web: the refused lookups count against each
    // one's typing rate, and two each stay within the burst.
    for (request, code, words) in cases {
        let native = within(app.chat().await.typing(authed(&alice, request.clone()))).await;
        let web = within(app.web_chat().typing(authed(&bob, request.clone()))).await;
        for outcome in [native, web] {
            let status = outcome.expect_err(&format!("{request:?} was accepted"));
            assert_eq!(
                (status.code(), status.message().contains(words)),
                (code, true),
                "{status:?}"
            );
        }
    }
}

#[tokio::test]
async fn typing_calls_beyond_the_burst_are_refused_with_a_wait_and_nobody_is_told() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut native = app.chat().await;
    let mut bobs = open_stream(&mut native, &bob, &chat_id, "").await;
    for _ in 0..TYPING_BURST {
        within(native.typing(authed(&alice, typing_in(&chat_id))))
            .await
            .expect("a Typing call within the burst");
    }
    let status = within(native.typing(authed(&alice, typing_in(&chat_id))))
        .await
        .expect_err("a Typing call beyond the burst");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let (reason, retry) = error_details(&status);
    assert_eq!(reason, Some(Reason::TypingRate));
    let retry = retry.expect("a retry hint");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );

    for n in 0..TYPING_BURST {
        next_event(&mut bobs, &format!("typing event {n}"), typing).await;
    }
    assert_no_event(
        &mut bobs,
        "a refused Typing call was announced",
        Duration::from_millis(500),
        typing,
    )
    .await;

    // Bob's budget is his own.
    within(native.typing(authed(&bob, typing_in(&chat_id))))
        .await
        .expect("another user's Typing call");
}
