//! Blocking: a person someone blocked cannot start a chat with them or put them in one (New is
//! PERMISSION_DENIED with reason BLOCKED and a sentence), the blocker cannot start one with
//! them either until they unblock, other people are not affected, and existing chats go on.

use chat_core::proto::{BlockRequest, ListBlockedRequest, NewRequest};
use chat_core::reason::Reason;
use tonic::Code;

use crate::helpers::*;

fn block_request(user_id: &str) -> BlockRequest {
    BlockRequest {
        user_id: user_id.to_owned(),
    }
}

fn new_request(members: &[&str]) -> NewRequest {
    NewRequest {
        user_ids: members.iter().map(|member| member.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_blocked_person_cannot_start_a_chat_with_the_blocker_or_add_them_on_both_transports() {
    let app = spawn_app().await;
    let [alice, mallory, bob] = signed_up_all(&app, ["alice", "mallory", "bob"]).await;
    let existing = new_chat(&app, &mallory, &["alice", "mallory"]).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();

    within(native.block(authed(&alice, block_request("Mallory"))))
        .await
        .expect("alice blocks mallory");
    // Twice is fine and changes nothing.
    within(web.block(authed(&alice, block_request("mallory"))))
        .await
        .expect("alice blocks mallory again over gRPC-web");
    for listed in [
        within(native.list_blocked(authed(&alice, ListBlockedRequest {}))).await,
        within(web.list_blocked(authed(&alice, ListBlockedRequest {}))).await,
    ] {
        assert_eq!(
            listed.expect("ListBlocked").into_inner().user_ids,
            ["mallory"]
        );
    }
    assert!(
        within(native.list_blocked(authed(&mallory, ListBlockedRequest {})))
            .await
            .expect("mallory's ListBlocked")
            .into_inner()
            .user_ids
            .is_empty()
    );

    // Mallory cannot start a chat with alice, nor put her in a group, on either transport.
    let chats_before = chats_of(&app, &mallory).await.len();
    for (transport, members) in [
        ("native", vec!["mallory", "alice"]),
        ("gRPC-web", vec!["mallory", "bob", "alice"]),
    ] {
        let refused = match transport {
            "native" => within(native.new_chat(authed(&mallory, new_request(&members)))).await,
            _ => within(web.new_chat(authed(&mallory, new_request(&members)))).await,
        }
        .expect_err("a blocked person's New");
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{transport}: {refused:?}"
        );
        assert_eq!(
            error_details(&refused),
            (Some(Reason::Blocked), None),
            "{transport}"
        );
        assert_eq!(
            refused.message(),
            "\"alice\" does not accept chats from you"
        );
    }
    // Nothing was created; mallory is free to start chats with others.
    assert_eq!(chats_of(&app, &mallory).await.len(), chats_before);
    assert_eq!(chats_of(&app, &bob).await.len(), 0);
    new_chat(&app, &mallory, &["mallory", "bob"]).await;
    // Others may still put both in one chat: only New between the two is affected.
    new_chat(&app, &bob, &["alice", "bob", "mallory"]).await;

    // Alice cannot start one with mallory either until she unblocks.
    let refused = within(native.new_chat(authed(&alice, new_request(&["alice", "mallory"]))))
        .await
        .expect_err("the blocker's New with the blocked");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(error_details(&refused), (Some(Reason::Blocked), None));
    assert_eq!(
        refused.message(),
        "you blocked \"mallory\": unblock them first to start a chat with them"
    );

    // The existing chat goes on as before (documented: block changes only new chats).
    let mut stream = open_stream(&mut native, &alice, &existing, "").await;
    let sent = send_text(&mut native, &mallory, &existing, "m1", "still here").await;
    assert_eq!(next_messages(&mut stream, 1).await, [sent]);

    // Unblocking (over gRPC-web) lets mallory start chats with alice again.
    within(web.unblock(authed(&alice, block_request("mallory"))))
        .await
        .expect("alice unblocks mallory");
    within(native.unblock(authed(&alice, block_request("mallory"))))
        .await
        .expect("unblocking twice is fine");
    assert!(
        within(web.list_blocked(authed(&alice, ListBlockedRequest {})))
            .await
            .expect("ListBlocked")
            .into_inner()
            .user_ids
            .is_empty()
    );
    new_chat(&app, &mallory, &["mallory", "alice", "bob"]).await;
}

#[tokio::test]
async fn someone_blocked_after_leaving_a_chat_of_two_cannot_come_back_to_it() {
    let app = spawn_app().await;
    let [alice, mallory] = signed_up_all(&app, ["alice", "mallory"]).await;
    let chat_id = new_chat(&app, &mallory, &["alice", "mallory"]).await;
    let mut native = app.chat().await;
    within(native.leave(authed(
        &mallory,
        chat_core::proto::LeaveRequest {
            chat_id: chat_id.clone(),
        },
    )))
    .await
    .expect("mallory leaves");
    // Alice's chat with her is named after her still, and she can be blocked from it.
    let listed = chats_of(&app, &alice).await;
    assert_eq!(listed[0].left_user_ids, ["mallory"]);
    within(native.block(authed(&alice, block_request("mallory"))))
        .await
        .expect("alice blocks mallory, who left");

    // Her own New of the two, which would bring her back, is refused; she stays out.
    let refused = within(native.new_chat(authed(&mallory, new_request(&["mallory", "alice"]))))
        .await
        .expect_err("mallory comes back to a chat with someone who blocked her");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(error_details(&refused), (Some(Reason::Blocked), None));
    let listed = chats_of(&app, &alice).await;
    assert_eq!(listed[0].user_ids, ["alice"]);
    assert!(chats_of(&app, &mallory).await.is_empty());
}

#[tokio::test]
async fn block_refuses_bad_targets_with_a_sentence_and_stores_nothing() {
    let app = spawn_app().await;
    let [alice] = signed_up_all(&app, ["alice"]).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    for (target, code, message) in [
        ("alice", Code::InvalidArgument, "you cannot block yourself"),
        ("ALICE", Code::InvalidArgument, "you cannot block yourself"),
        ("nobody", Code::NotFound, "no account named \"nobody\""),
        (
            "b@d",
            Code::InvalidArgument,
            "username \"b@d\" may only contain letters a-z, digits, '.', '_' and '-'",
        ),
        (
            "",
            Code::InvalidArgument,
            "username \"\" must be 3 to 32 characters long",
        ),
    ] {
        for (transport, refused) in [
            (
                "native",
                within(native.block(authed(&alice, block_request(target)))).await,
            ),
            (
                "gRPC-web",
                within(web.block(authed(&alice, block_request(target)))).await,
            ),
        ] {
            let refused = refused.expect_err(&format!("{transport} Block of {target:?}"));
            assert_eq!(refused.code(), code, "{transport} {target:?}: {refused:?}");
            assert_eq!(refused.message(), message, "{transport} {target:?}");
        }
        let refused = within(web.unblock(authed(&alice, block_request(target)))).await;
        if target == "nobody" {
            refused.expect("unblocking someone never blocked is OK");
        } else {
            assert_eq!(refused.expect_err("Unblock").code(), code, "{target:?}");
        }
    }
    assert!(
        within(native.list_blocked(authed(&alice, ListBlockedRequest {})))
            .await
            .expect("ListBlocked")
            .into_inner()
            .user_ids
            .is_empty()
    );
}
