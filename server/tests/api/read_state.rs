//! Read positions: MarkRead moves a member's position forward only, List reports unread
//! counts (messages only, never changes to them), positions and receipts, a move reaches the
//! member's other devices and the other members live, private receipts hide it from everyone
//! but the member, and someone who left a chat has no receipt in it and no say in it. Over
//! native gRPC and gRPC-web, on whichever backend the suite runs.

use std::time::Duration;

use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{
    ChatSummary, DeleteRequest, EditRequest, GetSettingsRequest, LeaveRequest, MarkReadRequest,
    ReactRequest, ReadPosition, Settings, TypingRequest,
};
use tonic::Code;

use crate::helpers::*;

fn mark(chat_id: &str, up_to_id: &str) -> MarkReadRequest {
    MarkReadRequest {
        chat_id: chat_id.to_owned(),
        up_to_id: up_to_id.to_owned(),
    }
}

/// The caller's summary of `chat_id`, from List.
async fn summary(app: &impl Server, token: &str, chat_id: &str) -> ChatSummary {
    chats_of(app, token)
        .await
        .into_iter()
        .find(|chat| chat.chat_id == chat_id)
        .unwrap_or_else(|| panic!("chat {chat_id} is not listed"))
}

fn read_position(event: EventKind) -> Option<ReadPosition> {
    match event {
        EventKind::ReadPosition(read) => Some(read),
        _ => None,
    }
}

#[tokio::test]
async fn mark_read_moves_forward_only_and_list_counts_what_others_sent_after_it() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    let from_bob = send_in_order(&mut native, &bob, &chat_id, "b", 3, "hello").await;

    let fresh = summary(&app, &alice, &chat_id).await;
    assert_eq!((fresh.unread_count, fresh.read_up_to_id.as_str()), (3, ""));

    let moved = within(web.mark_read(authed(&alice, mark(&chat_id, &from_bob[1].id))))
        .await
        .expect("MarkRead over gRPC-web")
        .into_inner();
    assert_eq!(moved.up_to_id, from_bob[1].id);
    let read = summary(&app, &alice, &chat_id).await;
    assert_eq!(
        (read.unread_count, read.read_up_to_id.as_str()),
        (1, from_bob[1].id.as_str())
    );

    // An older id is a no-op, not an error: the reply says where the position stayed.
    let older = within(native.mark_read(authed(&alice, mark(&chat_id, &from_bob[0].id))))
        .await
        .expect("an older mark is not an error")
        .into_inner();
    assert_eq!(older.up_to_id, from_bob[1].id);
    assert_eq!(
        summary(&app, &alice, &chat_id).await.read_up_to_id,
        from_bob[1].id
    );

    // My own messages are never unread to me.
    send_text(&mut native, &alice, &chat_id, "a0", "mine").await;
    assert_eq!(summary(&app, &alice, &chat_id).await.unread_count, 1);

    // Bob sees Alice's receipt; Bob himself has read nothing, so Alice's message is unread.
    let bobs = summary(&app, &bob, &chat_id).await;
    assert_eq!(bobs.unread_count, 1);
    assert_eq!(
        bobs.receipts,
        [ReadPosition {
            chat_id: chat_id.clone(),
            user_id: "alice".into(),
            up_to_id: from_bob[1].id.clone(),
        }]
    );
    assert!(
        summary(&app, &alice, &chat_id).await.receipts.is_empty(),
        "Bob has read nothing, so Alice sees no receipt of his"
    );
}

#[tokio::test]
async fn a_mark_outside_the_chat_is_refused_with_a_sentence_and_changes_nothing() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let (_, carol) = signed_up(&app, "carol").await;
    let carols_chat = new_chat(&app, &carol, &["carol"]).await;
    let bobs_own = new_chat(&app, &bob, &["bob"]).await;
    let mut chat = app.chat().await;
    let here = send_text(&mut chat, &bob, &chat_id, "here", "in the chat").await;
    let elsewhere = send_text(&mut chat, &bob, &bobs_own, "there", "another chat").await;
    let carols = send_text(&mut chat, &carol, &carols_chat, "c", "carol's").await;
    within(chat.mark_read(authed(&alice, mark(&chat_id, &here.id))))
        .await
        .expect("a valid mark");

    let cases = [
        (
            mark(&chat_id, &elsewhere.id),
            Code::InvalidArgument,
            "not a message of this chat",
        ),
        (
            mark(&chat_id, "999999999"),
            Code::InvalidArgument,
            "not a message of this chat",
        ),
        (
            mark(&chat_id, ""),
            Code::InvalidArgument,
            "up_to_id is required",
        ),
        (
            mark(&chat_id, "-1"),
            Code::InvalidArgument,
            "not a message id",
        ),
        (
            mark(&chat_id, "12abc"),
            Code::InvalidArgument,
            "not a message id",
        ),
        (
            mark("", &here.id),
            Code::InvalidArgument,
            "chat_id is required",
        ),
        (
            mark("XYZ", &here.id),
            Code::InvalidArgument,
            "not a chat id",
        ),
        (
            mark(&carols_chat, &carols.id),
            Code::NotFound,
            "chat not found",
        ),
    ];
    for (request, code, words) in cases {
        for web in [false, true] {
            let outcome = if web {
                within(app.web_chat().mark_read(authed(&alice, request.clone()))).await
            } else {
                within(chat.mark_read(authed(&alice, request.clone()))).await
            };
            let status = outcome.expect_err(&format!("{request:?} was accepted"));
            assert_eq!(status.code(), code, "{request:?}: {status:?}");
            assert!(status.message().contains(words), "{request:?}: {status:?}");
        }
    }
    let status = within(chat.mark_read(tonic::Request::new(mark(&chat_id, &here.id))))
        .await
        .expect_err("a mark without a token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let after = summary(&app, &alice, &chat_id).await;
    assert_eq!(
        after.read_up_to_id, here.id,
        "a refused mark moved the position"
    );
}

#[tokio::test]
async fn a_move_reaches_my_other_devices_and_the_other_members_live_and_only_a_move_does() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut native = app.chat().await;
    let sent = send_in_order(&mut native, &bob, &chat_id, "b", 3, "hello").await;
    // Alice's second device listens over gRPC-web; Bob follows the one chat.
    let mut alice_other = within(
        app.web_chat()
            .stream(authed(&alice, chat_core::proto::StreamRequest::default())),
    )
    .await
    .expect("Alice's web stream")
    .into_inner();
    let mut bobs = open_stream(&mut native, &bob, &chat_id, "").await;

    within(native.mark_read(authed(&alice, mark(&chat_id, &sent[1].id))))
        .await
        .expect("mark");
    let expected = ReadPosition {
        chat_id: chat_id.clone(),
        user_id: "alice".into(),
        up_to_id: sent[1].id.clone(),
    };
    assert_eq!(
        next_event(&mut alice_other, "Alice's read event", read_position).await,
        expected
    );
    assert_eq!(
        next_event(&mut bobs, "Alice's receipt", read_position).await,
        expected
    );

    // An older mark moves nothing, so nobody hears of it: the next event is the next move.
    within(native.mark_read(authed(&alice, mark(&chat_id, &sent[0].id))))
        .await
        .expect("older mark");
    within(native.mark_read(authed(&alice, mark(&chat_id, &sent[2].id))))
        .await
        .expect("newer mark");
    for stream in [&mut alice_other, &mut bobs] {
        let next = next_event(stream, "the next read event", read_position).await;
        assert_eq!(
            next.up_to_id, sent[2].id,
            "a mark that moved nothing was announced"
        );
    }
}

#[tokio::test]
async fn private_receipts_hide_my_position_from_others_but_not_from_my_devices() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    let sent = send_in_order(&mut native, &bob, &chat_id, "b", 2, "hello").await;

    let settings = within(web.get_settings(authed(&alice, GetSettingsRequest {})))
        .await
        .expect("GetSettings")
        .into_inner();
    assert_eq!(
        settings.private_receipts,
        Some(false),
        "receipts are shared by default"
    );
    let private = Settings {
        private_receipts: Some(true),
    };
    let changed = within(web.update_settings(authed(&alice, private)))
        .await
        .expect("UpdateSettings")
        .into_inner();
    assert_eq!(changed.private_receipts, Some(true));
    // An update that sets nothing changes nothing.
    let unchanged = within(native.update_settings(authed(&alice, Settings::default())))
        .await
        .expect("empty UpdateSettings")
        .into_inner();
    assert_eq!(unchanged.private_receipts, Some(true));

    let mut alice_other = open_stream(&mut native, &alice, "", "").await;
    let mut bobs = open_stream(&mut native, &bob, "", "").await;
    within(native.mark_read(authed(&alice, mark(&chat_id, &sent[1].id))))
        .await
        .expect("mark");
    let mine = next_event(&mut alice_other, "Alice's own read event", read_position).await;
    assert_eq!(mine.up_to_id, sent[1].id);
    assert_no_event(
        &mut bobs,
        "Bob saw a private position",
        Duration::from_millis(700),
        read_position,
    )
    .await;

    let alices = summary(&app, &alice, &chat_id).await;
    assert_eq!(
        (alices.unread_count, alices.read_up_to_id.as_str()),
        (0, sent[1].id.as_str())
    );
    assert!(
        summary(&app, &bob, &chat_id).await.receipts.is_empty(),
        "List showed a private position"
    );

    // Shared again, the stored position shows.
    within(web.update_settings(authed(
        &alice,
        Settings {
            private_receipts: Some(false),
        },
    )))
    .await
    .expect("UpdateSettings");
    let receipts = summary(&app, &bob, &chat_id).await.receipts;
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].up_to_id, sent[1].id);
}

#[tokio::test]
async fn changes_are_never_unread_and_their_ids_are_no_read_position() {
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    let sent = send_in_order(&mut native, &bob, &chat_id, "b", 2, "hello").await;
    within(native.mark_read(authed(&alice, mark(&chat_id, &sent[1].id))))
        .await
        .expect("mark");
    let mut alices = open_stream(&mut native, &alice, &chat_id, "").await;

    // Bob edits and reacts to messages Alice has read; Alice reacts too. Each change takes an
    // id after Alice's position, and none of them is a message to read.
    within(native.edit(authed(
        &bob,
        EditRequest {
            chat_id: chat_id.clone(),
            message_id: sent[0].id.clone(),
            subject: String::new(),
            text: "hello, edited".into(),
        },
    )))
    .await
    .expect("edit");
    let react = |message_id: &str| ReactRequest {
        chat_id: chat_id.clone(),
        message_id: message_id.to_owned(),
        emoji: "👍".into(),
        remove: false,
    };
    within(web.react(authed(&bob, react(&sent[1].id))))
        .await
        .expect("Bob's reaction");
    within(native.react(authed(&alice, react(&sent[0].id))))
        .await
        .expect("Alice's reaction");
    let change_id = next_event(&mut alices, "the edit", |event| match event {
        EventKind::Change(change) => Some(change.id),
        _ => None,
    })
    .await;
    assert!(id_number(&change_id) > id_number(&sent[1].id));
    let after_changes = summary(&app, &alice, &chat_id).await;
    assert_eq!(
        (
            after_changes.unread_count,
            after_changes.read_up_to_id.as_str()
        ),
        (0, sent[1].id.as_str()),
        "changes counted as unread messages"
    );

    // A change's id is not a message of the chat: no position can be set to it.
    for web_call in [false, true] {
        let outcome = if web_call {
            within(web.mark_read(authed(&alice, mark(&chat_id, &change_id)))).await
        } else {
            within(native.mark_read(authed(&alice, mark(&chat_id, &change_id)))).await
        };
        let status = outcome.expect_err("a change id was taken as a read position");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("not a message of this chat"),
            "{status:?}"
        );
    }

    // The next message is unread, and stays counted when its sender deletes it: its
    // placeholder is in the chat like any message.
    let third = send_text(&mut native, &bob, &chat_id, "b-third", "third").await;
    assert_eq!(summary(&app, &alice, &chat_id).await.unread_count, 1);
    within(native.delete(authed(
        &bob,
        DeleteRequest {
            chat_id: chat_id.clone(),
            message_id: third.id.clone(),
        },
    )))
    .await
    .expect("delete");
    assert_eq!(summary(&app, &alice, &chat_id).await.unread_count, 1);
    within(native.mark_read(authed(&alice, mark(&chat_id, &third.id))))
        .await
        .expect("a deleted message is still a message to mark read");
    assert_eq!(summary(&app, &alice, &chat_id).await.unread_count, 0);
}

#[tokio::test]
async fn someone_who_left_has_no_receipt_and_can_neither_mark_nor_type_nor_hear_typing() {
    let app = spawn_app().await;
    let [alice, bob, carol] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let chat_id = new_chat(&app, &alice, &["alice", "bob", "carol"]).await;
    let mut native = app.chat().await;
    let hello = send_text(&mut native, &alice, &chat_id, "a", "hello").await;
    for reader in [&bob, &carol] {
        within(native.mark_read(authed(reader, mark(&chat_id, &hello.id))))
            .await
            .expect("mark");
    }
    let receipts = |summary: ChatSummary| {
        summary
            .receipts
            .into_iter()
            .map(|receipt| receipt.user_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        receipts(summary(&app, &alice, &chat_id).await),
        ["bob", "carol"]
    );

    within(native.leave(authed(
        &carol,
        LeaveRequest {
            chat_id: chat_id.clone(),
        },
    )))
    .await
    .expect("leave");
    assert_eq!(
        receipts(summary(&app, &alice, &chat_id).await),
        ["bob"],
        "the receipt of someone who left is still shown"
    );

    let status = within(native.mark_read(authed(&carol, mark(&chat_id, &hello.id))))
        .await
        .expect_err("a mark in a chat the caller left");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let typing_in = TypingRequest {
        chat_id: chat_id.clone(),
    };
    let status = within(native.typing(authed(&carol, typing_in.clone())))
        .await
        .expect_err("typing in a chat the caller left");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Bob types: Alice hears it, Carol (streaming every chat she is in) does not.
    let mut alices = open_stream(&mut native, &alice, "", "").await;
    let mut carols = open_stream(&mut native, &carol, "", "").await;
    within(native.typing(authed(&bob, typing_in)))
        .await
        .expect("Bob types");
    let typing = |event: EventKind| match event {
        EventKind::Typing(typing) => Some(typing),
        _ => None,
    };
    assert_eq!(
        next_event(&mut alices, "Bob's typing", typing)
            .await
            .user_id,
        "bob"
    );
    assert_no_event(
        &mut carols,
        "typing reached someone who left",
        Duration::from_millis(700),
        typing,
    )
    .await;
}
