//! Per-user quotas: a user with sockpuppets cannot put a victim (or themselves) in more chats
//! than `--max-chats-per-user`; New says who is at the cap, and an existing chat is still
//! returned.

use chat_core::proto::NewRequest;
use chat_core::reason::Reason;
use tonic::Code;

use crate::helpers::*;

fn new_request(members: &[&str]) -> NewRequest {
    NewRequest {
        user_ids: members.iter().map(|member| member.to_string()).collect(),
    }
}

#[tokio::test]
async fn new_refuses_a_chat_past_any_members_cap_on_both_transports() {
    let app = spawn_app_with(&["--max-chats-per-user", "3"]).await;
    let [alice, _, _, _, erin] =
        signed_up_all(&app, ["alice", "bob", "carol", "dave", "erin"]).await;
    let mut chat = app.chat().await;
    let mut first = String::new();
    for (n, friend) in ["bob", "carol", "dave"].into_iter().enumerate() {
        let id = new_chat(&app, &alice, &["alice", friend]).await;
        if n == 0 {
            first = id;
        }
    }

    let refused = within(chat.new_chat(authed(&alice, new_request(&["alice", "erin"]))))
        .await
        .expect_err("a fourth chat for alice");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(error_details(&refused), (Some(Reason::TooManyChats), None));
    assert_eq!(
        refused.message(),
        "you are already in 3 chats, the most one account may be in"
    );

    // Someone else cannot add alice to a chat either; the sentence names her.
    let refused = within(
        app.web_chat()
            .new_chat(authed(&erin, new_request(&["erin", "alice"]))),
    )
    .await
    .expect_err("erin puts alice in a fourth chat over gRPC-web");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("\"alice\""), "{refused:?}");

    // An existing chat is returned whatever the quota, and others go on as usual.
    let again = within(chat.new_chat(authed(&alice, new_request(&["bob", "alice"]))))
        .await
        .expect("the existing chat")
        .into_inner();
    assert_eq!(again.chat_id, first);
    new_chat(&app, &erin, &["erin", "bob"]).await;
    assert_eq!(chats_of(&app, &alice).await.len(), 3);
}

#[tokio::test]
async fn leaving_and_coming_back_is_no_way_past_the_cap() {
    use chat_core::proto::LeaveRequest;

    let app = spawn_app_with(&["--max-chats-per-user", "2"]).await;
    let [alice, bob, ..] = signed_up_all(&app, ["alice", "bob", "carol", "dave"]).await;
    let mut chat = app.chat().await;
    let with_bob = new_chat(&app, &alice, &["alice", "bob"]).await;
    within(chat.leave(authed(
        &alice,
        LeaveRequest {
            chat_id: with_bob.clone(),
        },
    )))
    .await
    .expect("alice leaves her chat with bob");
    // Out of one chat, alice fills her cap of two with others...
    new_chat(&app, &alice, &["alice", "carol"]).await;
    new_chat(&app, &alice, &["alice", "dave"]).await;
    // ...so her own New of the chat she left, which would bring her back, is refused...
    let refused = within(chat.new_chat(authed(&alice, new_request(&["alice", "bob"]))))
        .await
        .expect_err("a rejoin past the cap");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(error_details(&refused).0, Some(Reason::TooManyChats));
    // ...while bob, still in it, gets the chat back as before (it adds nobody).
    let found = within(chat.new_chat(authed(&bob, new_request(&["alice", "bob"]))))
        .await
        .expect("bob's New of his chat");
    assert_eq!(found.into_inner().chat_id, with_bob);
}
