//! Leaving a chat: afterwards it is to the one who left like any chat they are not in
//! (NOT_FOUND on History, Send, Stream and Connect, gone from List), their open calls of it
//! end, their all-chats Stream carries none of its new messages, and only they can bring
//! themselves back: another member's New of the same people returns the chat without them.
//! Every member's Streams, and the devices of the one who left, hear who is in the chat after
//! each change (`Event.members`).

use std::time::Duration;

use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{ChatMembers, Event, LeaveRequest, Message, NewRequest, StreamRequest};
use tonic::{Code, Status, Streaming};

use crate::helpers::*;

fn leave_request(chat_id: &str) -> LeaveRequest {
    LeaveRequest {
        chat_id: chat_id.to_owned(),
    }
}

fn new_request(members: &[&str]) -> NewRequest {
    NewRequest {
        user_ids: members.iter().map(|member| member.to_string()).collect(),
    }
}

#[track_caller]
fn assert_chat_not_found(what: &str, status: &Status) {
    assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}");
    assert_eq!(status.message(), "chat not found", "{what}");
}

/// The members List shows `token`'s caller for `chat_id`; `None` when the chat is not listed.
async fn members_listed(app: &impl Server, token: &str, chat_id: &str) -> Option<Vec<String>> {
    chats_of(app, token)
        .await
        .into_iter()
        .find(|chat| chat.chat_id == chat_id)
        .map(|chat| chat.user_ids)
}

/// Those who left `chat_id`, as List shows them to `token`'s caller (`left_user_ids`).
async fn left_listed(app: &impl Server, token: &str, chat_id: &str) -> Vec<String> {
    chats_of(app, token)
        .await
        .into_iter()
        .find(|chat| chat.chat_id == chat_id)
        .map(|chat| chat.left_user_ids)
        .expect("the chat is listed")
}

#[tokio::test]
async fn leaving_ends_access_open_calls_and_delivery_on_both_transports() {
    // The token re-check is an hour away, so only the Leave itself can end the calls.
    let app = spawn_app_with(&["--token-recheck-secs", "3600"]).await;
    let [alice, bob, carol] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let group = new_chat(&app, &alice, &["alice", "bob", "carol"]).await;
    let web_group = new_chat(&app, &alice, &["alice", "bob"]).await;
    let other = new_chat(&app, &carol, &["bob", "carol"]).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    send_text(&mut native, &alice, &group, "before", "before bob left").await;

    // Bob's open calls: a Stream of the group (native and gRPC-web), a Connect of it, and
    // his all-chats Stream.
    let mut group_stream = open_stream(&mut native, &bob, &group, "").await;
    let mut web_stream = within(web.stream(authed(
        &bob,
        StreamRequest {
            chat_id: web_group.clone(),
            after_id: String::new(),
        },
    )))
    .await
    .expect("a gRPC-web stream")
    .into_inner();
    let (_outbox, mut connect) = open_connect(&mut native, Some(&bob), &[("chat-id", &group)])
        .await
        .expect("a Connect");
    let mut everything = open_stream(&mut native, &bob, "", "").await;

    within(native.leave(authed(&bob, leave_request(&group))))
        .await
        .expect("bob leaves the group over native gRPC");
    within(web.leave(authed(&bob, leave_request(&web_group))))
        .await
        .expect("bob leaves the other chat over gRPC-web");

    assert_chat_not_found("the open Stream", &failure_of(&mut group_stream).await);
    assert_chat_not_found(
        "the open gRPC-web Stream",
        &failure_of(&mut web_stream).await,
    );
    assert_chat_not_found("the open Connect", &failure_of(&mut connect).await);

    // New messages of the chats he left do not reach his all-chats Stream: the next message
    // it carries is the one sent afterwards in a chat he is still in.
    send_text(&mut native, &alice, &group, "after", "after bob left").await;
    send_text(&mut native, &alice, &web_group, "after-2", "after bob left").await;
    let still = send_text(&mut native, &carol, &other, "other", "still here?").await;
    assert_eq!(next_messages(&mut everything, 1).await, [still]);

    for (transport, left) in [("native", &group), ("gRPC-web", &web_group)] {
        let history = match transport {
            "native" => within(native.history(authed(&bob, history_request(left)))).await,
            _ => within(web.history(authed(&bob, history_request(left)))).await,
        };
        assert_chat_not_found(
            &format!("{transport} History"),
            &history.expect_err("History"),
        );
        let send = send_request(left, "late", "sent after leaving");
        let sent = match transport {
            "native" => within(native.send(authed(&bob, send))).await,
            _ => within(web.send(authed(&bob, send))).await,
        };
        assert_chat_not_found(&format!("{transport} Send"), &sent.expect_err("Send"));
        let stream = StreamRequest {
            chat_id: left.clone(),
            after_id: "0".into(),
        };
        let opened = match transport {
            "native" => streaming_failure(within(native.stream(authed(&bob, stream))).await).await,
            _ => streaming_failure(within(web.stream(authed(&bob, stream))).await).await,
        };
        assert_chat_not_found(&format!("{transport} Stream"), &opened);
        let again = match transport {
            "native" => within(native.leave(authed(&bob, leave_request(left)))).await,
            _ => within(web.leave(authed(&bob, leave_request(left)))).await,
        };
        assert_chat_not_found(
            &format!("{transport} Leave again"),
            &again.expect_err("Leave"),
        );
    }
    let refused = match open_connect(&mut native, Some(&bob), &[("chat-id", &group)]).await {
        Err(status) => status,
        Ok((_outbox, mut stream)) => failure_of(&mut stream).await,
    };
    assert_chat_not_found("a new Connect", &refused);

    // Gone from his List; the others see the chat without him; nothing he sent after
    // leaving was stored.
    assert_eq!(members_listed(&app, &bob, &group).await, None);
    assert_eq!(members_listed(&app, &bob, &web_group).await, None);
    assert_eq!(
        members_listed(&app, &bob, &other).await,
        Some(vec!["bob".to_owned(), "carol".to_owned()])
    );
    assert_eq!(
        members_listed(&app, &carol, &group).await,
        Some(vec!["alice".to_owned(), "carol".to_owned()])
    );
    let history: Vec<String> = history_of(&app, &alice, &group)
        .await
        .iter()
        .map(|message| message.client_id.clone())
        .collect();
    assert_eq!(history, ["before", "after"]);
}

fn members(event: EventKind) -> Option<ChatMembers> {
    match event {
        EventKind::Members(members) => Some(members),
        _ => None,
    }
}

fn members_event(chat_id: &str, user_ids: &[&str], version: u64) -> ChatMembers {
    ChatMembers {
        chat_id: chat_id.to_owned(),
        user_ids: user_ids.iter().map(|user| user.to_string()).collect(),
        version,
    }
}

/// The version of `chat_id`'s members as List shows them to `token`'s caller.
async fn members_version_listed(app: &impl Server, token: &str, chat_id: &str) -> u64 {
    chats_of(app, token)
        .await
        .into_iter()
        .find(|chat| chat.chat_id == chat_id)
        .map(|chat| chat.members_version)
        .expect("the chat is listed")
}

/// Each of `streams` hears `expected` as the next members event it carries.
async fn all_hear(
    streams: &mut [(&str, &mut Streaming<Event>)],
    expected: &ChatMembers,
    when: &str,
) {
    for (who, stream) in streams {
        let heard = next_event(stream, &format!("{who}'s members {when}"), members).await;
        assert_eq!(&heard, expected, "{who} {when}");
    }
}

#[tokio::test]
async fn every_member_hears_who_is_in_a_chat_as_it_starts_as_someone_leaves_and_comes_back() {
    let app = spawn_app().await;
    let [alice, bob, carol, dave] = signed_up_all(&app, ["alice", "bob", "carol", "dave"]).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    let mut alices = open_stream(&mut native, &alice, "", "").await;
    let mut carols = open_stream(&mut native, &carol, "", "").await;
    let mut daves = open_stream(&mut native, &dave, "", "").await;
    // Bob on two devices: one over gRPC-web, one native.
    let mut bobs_browser = within(web.stream(authed(
        &bob,
        StreamRequest {
            chat_id: String::new(),
            after_id: String::new(),
        },
    )))
    .await
    .expect("a gRPC-web stream")
    .into_inner();
    let mut bobs_phone = open_stream(&mut native, &bob, "", "").await;

    // Alice starts a group: everyone in it has it in their list at once, also before anything
    // is said in it.
    // Each event carries the members' version (0 for a new chat, one more for each change),
    // which List gives too: a client that hears two out of order keeps the higher.
    let group = new_chat(&app, &alice, &["alice", "bob", "carol"]).await;
    let everyone = members_event(&group, &["alice", "bob", "carol"], 0);
    let mut hearing = [
        ("alice", &mut alices),
        ("bob's browser", &mut bobs_browser),
        ("bob's phone", &mut bobs_phone),
        ("carol", &mut carols),
    ];
    all_hear(&mut hearing, &everyone, "of the new group").await;
    let mut carols_group = open_stream(&mut native, &carol, &group, "").await;
    let before = send_text(&mut native, &alice, &group, "before", "before").await;

    // Bob leaves from his browser: the others, and his phone, hear who is left.
    within(web.leave(authed(&bob, leave_request(&group))))
        .await
        .expect("bob leaves over gRPC-web");
    let mut hearing = [
        ("alice", &mut alices),
        ("bob's phone", &mut bobs_phone),
        ("carol", &mut carols),
        ("carol's Stream of the group", &mut carols_group),
    ];
    let left = members_event(&group, &["alice", "carol"], 1);
    all_hear(&mut hearing, &left, "after bob left").await;
    assert_eq!(members_version_listed(&app, &alice, &group).await, 1);

    // He comes back: the members hear it.
    let back = new_chat(&app, &bob, &["alice", "bob", "carol"]).await;
    assert_eq!(back, group);
    let everyone_again = members_event(&group, &["alice", "bob", "carol"], 2);
    all_hear(&mut hearing, &everyone_again, "after bob came back").await;
    assert_eq!(members_version_listed(&app, &carol, &group).await, 2);
    // A New of a chat whose members do not change tells them again, at the same version.
    new_chat(&app, &carol, &["alice", "bob", "carol"]).await;
    all_hear(
        &mut hearing,
        &everyone_again,
        "after carol's New changed nothing",
    )
    .await;
    // Nobody else hears any of it, and it took no message id.
    assert_no_event(
        &mut daves,
        "dave heard of a chat he is not in",
        Duration::from_millis(300),
        members,
    )
    .await;
    let after = send_text(&mut native, &alice, &group, "after", "after").await;
    assert_eq!(id_number(&after.id), id_number(&before.id) + 1);
}

fn history_request(chat_id: &str) -> chat_core::proto::HistoryRequest {
    chat_core::proto::HistoryRequest {
        chat_id: chat_id.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn only_the_one_who_left_can_bring_themselves_back() {
    let app = spawn_app().await;
    let [alice, bob] = signed_up_all(&app, ["alice", "bob"]).await;
    let chat_id = new_chat(&app, &alice, &["alice", "bob"]).await;
    let mut native = app.chat().await;
    within(native.leave(authed(&bob, leave_request(&chat_id))))
        .await
        .expect("bob leaves");
    // Alice's list still names the chat after bob: he is in those who left, on both
    // transports.
    assert_eq!(left_listed(&app, &alice, &chat_id).await, ["bob"]);
    let listed = within(
        app.web_chat()
            .list(authed(&alice, chat_core::proto::ListRequest::default())),
    )
    .await
    .expect("alice lists her chats over gRPC-web")
    .into_inner();
    assert_eq!(listed.chats[0].user_ids, ["alice"]);
    assert_eq!(listed.chats[0].left_user_ids, ["bob"]);
    let missed = send_text(
        &mut native,
        &alice,
        &chat_id,
        "missed",
        "while you were away",
    )
    .await;

    // Alice's New of the same two people finds the same chat and does not pull bob back.
    for (transport, found) in [
        (
            "native",
            within(native.new_chat(authed(&alice, new_request(&["bob", "alice"])))).await,
        ),
        (
            "gRPC-web",
            within(
                app.web_chat()
                    .new_chat(authed(&alice, new_request(&["alice", "bob"]))),
            )
            .await,
        ),
    ] {
        let found = found.unwrap_or_else(|status| panic!("{transport} New: {status:?}"));
        assert_eq!(found.into_inner().chat_id, chat_id, "{transport}");
        assert_eq!(
            members_listed(&app, &alice, &chat_id).await,
            Some(vec!["alice".to_owned()]),
            "{transport}: alice's New brought bob back"
        );
        let history = within(native.history(authed(&bob, history_request(&chat_id)))).await;
        assert_chat_not_found(transport, &history.expect_err("bob reads the chat he left"));
    }

    // Bob's own New brings him (and only him) back, to the whole history.
    let back = within(
        app.web_chat()
            .new_chat(authed(&bob, new_request(&["alice", "bob"]))),
    )
    .await
    .expect("bob comes back over gRPC-web")
    .into_inner();
    assert_eq!(back.chat_id, chat_id);
    assert_eq!(
        members_listed(&app, &alice, &chat_id).await,
        Some(vec!["alice".to_owned(), "bob".to_owned()])
    );
    assert!(left_listed(&app, &alice, &chat_id).await.is_empty());
    let seen: Vec<Message> = history_of(&app, &bob, &chat_id).await;
    assert_eq!(seen, [missed]);
    send_text(&mut native, &bob, &chat_id, "back", "I am back").await;

    // Leaving and coming back again works the same way (the departure is recorded anew).
    within(app.web_chat().leave(authed(&bob, leave_request(&chat_id))))
        .await
        .expect("bob leaves again over gRPC-web");
    assert_eq!(members_listed(&app, &bob, &chat_id).await, None);
    assert_eq!(new_chat(&app, &bob, &["alice", "bob"]).await, chat_id);
    assert_eq!(history_of(&app, &bob, &chat_id).await.len(), 2);
}

#[tokio::test]
async fn a_member_who_left_gets_nothing_sent_right_after_on_a_busy_chat() {
    // The writer's cache of members must not outlive a Leave: messages in the same moment
    // as the Leave, and right after, reach the remaining members only.
    let app = spawn_app().await;
    let [alice, bob, carol] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let chat_id = new_chat(&app, &alice, &["alice", "bob", "carol"]).await;
    let side = new_chat(&app, &carol, &["bob", "carol"]).await;
    // Cached by the writer before the Leave.
    let mut chat = app.chat().await;
    send_in_order(&mut chat, &alice, &chat_id, "warm-", 5, "warming up").await;
    let mut bobs = open_stream(&mut app.chat().await, &bob, "", "").await;
    let mut carols = open_stream(&mut app.chat().await, &carol, &chat_id, "").await;
    let leaving = async {
        within(app.web_chat().leave(authed(&bob, leave_request(&chat_id))))
            .await
            .expect("bob leaves")
    };
    let (_, during) = tokio::join!(leaving, async {
        send_text(
            &mut chat.clone(),
            &alice,
            &chat_id,
            "during",
            "during the leave",
        )
        .await
    });
    let after = send_in_order(&mut chat, &alice, &chat_id, "after-", 10, "after the leave").await;
    let marker = send_text(&mut chat, &carol, &side, "marker", "to bob").await;

    // Bob's stream may carry the message sent during the Leave (it raced it), then nothing
    // of the chat until the marker from the chat he is still in.
    let mut got = next_messages(&mut bobs, 1).await;
    if got[0].client_id == "during" {
        got = next_messages(&mut bobs, 1).await;
    }
    assert_eq!(got, [marker]);
    let mut expected = vec![during];
    expected.extend(after);
    assert_eq!(next_messages(&mut carols, expected.len()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_on_one_server_ends_the_stream_and_delivery_on_another() {
    if !on_postgres() {
        return;
    }
    let first = spawn_process(&["--token-recheck-secs", "1"]).await;
    let second = spawn_process_sharing(&first, &["--token-recheck-secs", "1"]).await;
    let [alice, bob, carol] = signed_up_all(&first, ["alice", "bob", "carol"]).await;
    let chat_id = new_chat(&first, &alice, &["alice", "bob", "carol"]).await;
    let side = new_chat(&first, &carol, &["bob", "carol"]).await;
    let mut on_second = second.chat().await;
    // The second server's writer and tailer have seen the chat and its members.
    send_text(&mut on_second, &alice, &chat_id, "seen", "cached").await;
    send_text(
        &mut first.chat().await,
        &alice,
        &chat_id,
        "seen-2",
        "cached",
    )
    .await;

    let mut chat_stream = open_stream(&mut on_second, &bob, &chat_id, "").await;
    let mut carols = open_stream(&mut on_second, &carol, "", "").await;
    let (_outbox, mut connect) = open_connect(&mut on_second, Some(&bob), &[("chat-id", &chat_id)])
        .await
        .expect("a Connect on the second server");
    let mut everything = open_stream(&mut on_second, &bob, "", "").await;

    within(
        first
            .web_chat()
            .leave(authed(&bob, leave_request(&chat_id))),
    )
    .await
    .expect("bob leaves on the first server");
    assert_eq!(
        next_event(&mut carols, "carol's members on the other server", members).await,
        members_event(&chat_id, &["alice", "carol"], 1)
    );
    // Ended within the re-check interval (1 s), well inside the wait.
    assert_chat_not_found(
        "the Stream on the other server",
        &failure_of(&mut chat_stream).await,
    );
    assert_chat_not_found(
        "the Connect on the other server",
        &failure_of(&mut connect).await,
    );

    // Sent through either server, nothing of the chat reaches bob's all-chats Stream there,
    // and bob cannot send to it through the server that cached him as a member.
    send_text(&mut on_second, &alice, &chat_id, "after", "after bob left").await;
    send_text(
        &mut first.chat().await,
        &alice,
        &chat_id,
        "after-2",
        "after bob left",
    )
    .await;
    let marker = send_text(&mut first.chat().await, &carol, &side, "marker", "to bob").await;
    assert_eq!(next_messages(&mut everything, 1).await, [marker]);
    let sent = within(on_second.send(authed(&bob, send_request(&chat_id, "late", "late")))).await;
    assert_chat_not_found("Send on the other server", &sent.expect_err("Send"));
}
