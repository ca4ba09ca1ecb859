//! New: one set of users has exactly one chat, whatever the order, case or repetition of the
//! ids and however many calls race; the caller must be a member and every member must exist.

use std::collections::HashSet;

use chat_core::proto::NewRequest;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn the_same_set_of_users_always_gets_the_same_chat() {
    let app = spawn_app().await;
    let [alice, bob, _] = signed_up_all(&app, ["alice", "bob", "carol"]).await;

    let first = new_chat(&app, &alice, &["alice", "bob", "carol"]).await;
    assert_eq!(first.len(), 32, "chat id {first:?} should be 32 hex digits");
    for members in [
        &["carol", "alice", "bob"][..],
        &["bob", "bob", "carol", "alice", "carol"],
        &["Alice", "BOB", "Carol"],
    ] {
        assert_eq!(
            new_chat(&app, &alice, members).await,
            first,
            "{members:?} as alice"
        );
        assert_eq!(
            new_chat(&app, &bob, members).await,
            first,
            "{members:?} as bob"
        );
    }

    let pair = new_chat(&app, &alice, &["alice", "bob"]).await;
    assert_ne!(pair, first, "a different set of users is a different chat");
    assert_eq!(new_chat(&app, &bob, &["bob", "alice"]).await, pair);

    let listed = chats_of(&app, &alice).await;
    assert_eq!(
        listed.len(),
        2,
        "repeated calls created extra chats: {:?}",
        listed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_identical_calls_all_get_one_chat() {
    let app = spawn_app().await;
    let [alice, bob, _] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let orders: [&[&str]; 4] = [
        &["alice", "bob", "carol"],
        &["carol", "bob", "alice"],
        &["bob", "Alice", "carol", "bob"],
        &["CAROL", "alice", "alice", "bob"],
    ];

    let mut calls = Vec::new();
    for round in 0..12 {
        // Separate connections, so the calls really arrive at the same time.
        let mut chat = app.chat().await;
        let token = if round % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        let user_ids = orders[round % orders.len()]
            .iter()
            .map(|id| id.to_string())
            .collect();
        calls.push(tokio::spawn(async move {
            chat.new_chat(authed(&token, NewRequest { user_ids })).await
        }));
    }
    let mut chat_ids = HashSet::new();
    for call in calls {
        let response = within(call)
            .await
            .expect("task panicked")
            .expect("new chat");
        chat_ids.insert(response.into_inner().chat_id);
    }

    assert_eq!(
        chat_ids.len(),
        1,
        "racing calls created several chats: {chat_ids:?}"
    );
    let listed = chats_of(&app, &alice).await;
    assert_eq!(listed.len(), 1, "{:?}", listed);
}

#[tokio::test]
async fn the_caller_must_be_one_of_the_members() {
    let app = spawn_app().await;
    let [alice, _, _] = signed_up_all(&app, ["alice", "bob", "carol"]).await;

    let request = NewRequest {
        user_ids: vec!["bob".into(), "carol".into()],
    };
    let status = within(app.chat().await.new_chat(authed(&alice, request)))
        .await
        .expect_err("a chat alice is not in");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let listed = chats_of(&app, &alice).await;
    assert!(listed.is_empty(), "{:?}", listed);
}

#[tokio::test]
async fn a_member_without_an_account_is_not_found_by_name() {
    let app = spawn_app().await;
    let (_, alice) = signed_up(&app, "alice").await;

    let request = NewRequest {
        user_ids: vec!["alice".into(), "zed".into()],
    };
    let status = within(app.chat().await.new_chat(authed(&alice, request)))
        .await
        .expect_err("zed has no account");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("zed"),
        "the message should name zed: {status:?}"
    );

    // Nothing half-made remains: once zed exists, the chat is created fresh and listed once.
    let listed = chats_of(&app, &alice).await;
    assert!(listed.is_empty(), "{:?}", listed);
    signed_up(&app, "zed").await;
    let chat_id = new_chat(&app, &alice, &["alice", "zed"]).await;
    let listed = chats_of(&app, &alice).await;
    let listed: Vec<_> = listed.iter().map(|chat| chat.chat_id.as_str()).collect();
    assert_eq!(listed, [chat_id.as_str()]);
}
