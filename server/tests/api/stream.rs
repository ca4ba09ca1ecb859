//! Stream: the live feed of one chat, or of every chat of the caller (chats created later
//! included); `after_id` replays what was missed and joins the live feed with no gap and no
//! duplicate, even while messages are being sent; idle streams get heartbeats.

use std::time::{Duration, Instant};

use chat_core::limits::TEXT_MAX_CHARS;
use chat_core::proto::Message;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::helpers::*;

#[tokio::test]
async fn a_chat_stream_carries_that_chat_only() {
    let app = spawn_app().await;
    let [alice, bob, _] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let followed = new_chat(&app, &alice, &["alice", "bob"]).await;
    let other = new_chat(&app, &alice, &["alice", "carol"]).await;
    let mut chat = app.chat().await;
    let mut stream = open_stream(&mut chat, &alice, &followed, "").await;

    // The other chat's message is older, so if it leaked it would arrive first.
    send_text(
        &mut chat,
        &alice,
        &other,
        "elsewhere",
        "not for this stream",
    )
    .await;
    let wanted = send_text(&mut chat, &bob, &followed, "here", "for this stream").await;

    assert_eq!(next_messages(&mut stream, 1).await, [wanted]);
}

#[tokio::test]
async fn the_all_chats_stream_follows_chats_created_after_it_opened() {
    let app = spawn_app().await;
    let [alice, bob, carol] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let existing = new_chat(&app, &carol, &["alice", "carol"]).await;
    let mut chat = app.chat().await;
    let mut stream = open_stream(&mut chat, &alice, "", "").await;

    let not_alices = new_chat(&app, &bob, &["bob", "carol"]).await;
    send_text(
        &mut chat,
        &bob,
        &not_alices,
        "private",
        "alice must not see this",
    )
    .await;
    let later = new_chat(&app, &bob, &["alice", "bob"]).await;
    let in_later = send_text(
        &mut chat,
        &bob,
        &later,
        "hello",
        "a chat made after the stream",
    )
    .await;
    let in_existing = send_text(&mut chat, &carol, &existing, "hey", "a chat made before").await;

    assert_eq!(next_messages(&mut stream, 2).await, [in_later, in_existing]);
}

/// Sends rounds of messages from a background task (to alice's two chats and to one chat she
/// is not in), opens alice's stream with `after_id` a third of the way through while the
/// sends go on, and checks the stream yields exactly the messages after the cursor that it
/// follows, in id order, then live ones with no duplicate.
async fn resume_while_sending(follow_one_chat: bool) {
    const ROUNDS: usize = 30;
    let app = spawn_app().await;
    let [alice, bob, _] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let chats = [
        new_chat(&app, &alice, &["alice", "bob"]).await,
        new_chat(&app, &alice, &["alice", "carol"]).await,
        new_chat(&app, &bob, &["bob", "carol"]).await,
    ];
    let senders = [alice.clone(), alice.clone(), bob];
    let mut chat = app.chat().await;

    let (reports, mut sent_so_far) = mpsc::unbounded_channel::<(usize, Message)>();
    let sender = tokio::spawn({
        let (mut chat, chats) = (chat.clone(), chats.clone());
        async move {
            for round in 0..ROUNDS {
                for k in 0..chats.len() {
                    let client_id = format!("r{round}-c{k}");
                    let sent =
                        send_text(&mut chat, &senders[k], &chats[k], &client_id, "tick").await;
                    reports.send((k, sent)).expect("the test stopped listening");
                }
                // Pacing, not synchronisation: it keeps sends in flight while the stream opens.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
    });

    let mut sent = Vec::new();
    while sent.len() < ROUNDS {
        sent.push(
            within(sent_so_far.recv())
                .await
                .expect("the sender stopped early"),
        );
    }
    let cursor = sent
        .iter()
        .rev()
        .find(|(k, _)| *k == 0)
        .expect("a message of chat 0")
        .1
        .id
        .clone();
    let followed = if follow_one_chat {
        chats[0].as_str()
    } else {
        ""
    };
    let mut stream = open_stream(&mut chat, &alice, followed, &cursor).await;

    within(sender).await.expect("the sender panicked");
    while let Some(report) = sent_so_far.recv().await {
        sent.push(report);
    }
    let followed_chats = if follow_one_chat { 0..1 } else { 0..2 };
    let expected: Vec<Message> = sent
        .into_iter()
        .filter(|(k, message)| {
            followed_chats.contains(k) && id_number(&message.id) > id_number(&cursor)
        })
        .map(|(_, message)| message)
        .collect();
    assert!(
        expected.is_sorted_by_key(|message| id_number(&message.id)),
        "sequential sends got unordered ids"
    );
    // The cursor is a third of the way through, so two thirds of the followed messages remain.
    assert!(
        expected.len() >= ROUNDS / 2,
        "the test itself is wrong: too few messages after the cursor"
    );

    let received = next_messages(&mut stream, expected.len()).await;
    assert_eq!(
        ids(&received),
        ids(&expected),
        "replay and live feed must join without gap or duplicate"
    );
    assert_eq!(received, expected);

    let sentinel = send_text(&mut chat, &alice, &chats[0], "sentinel", "the end").await;
    assert_eq!(
        next_messages(&mut stream, 1).await,
        [sentinel],
        "nothing may follow twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stream_resumes_after_id_while_sends_are_in_flight() {
    resume_while_sending(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_chats_stream_resumes_after_one_cursor_while_sends_are_in_flight() {
    resume_while_sending(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_catches_up_without_a_gap_and_holds_up_no_one() {
    // The stalled reader has small HTTP/2 windows, so a megabyte of messages overflows what
    // flow control and the server's buffers hold for it (about 150 of these when this was
    // written): the server must let it fall behind and later catch it up from storage.
    const COUNT: usize = 250;
    let text = "x".repeat(TEXT_MAX_CHARS);
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let small_windows = Channel::from_shared(app.url(""))
        .expect("invalid server URL")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535);
    let mut stalled_client =
        ChatClient::new(within(small_windows.connect()).await.expect("connect"));
    let mut stalled = open_stream(&mut stalled_client, &alice, &chat_id, "").await;
    // A separate connection: readers sharing one would share its flow-control window too.
    let mut reader_client = app.chat().await;
    let mut reader = open_stream(&mut reader_client, &alice, &chat_id, "").await;

    let (sent, read) = tokio::join!(
        send_many(&app, &alice, &chat_id, COUNT, &text),
        next_messages(&mut reader, COUNT),
    );
    assert_eq!(
        ids(&read),
        ids(&sent),
        "the reader that keeps up gets everything meanwhile"
    );

    let caught_up = next_messages(&mut stalled, COUNT).await;
    assert_eq!(
        ids(&caught_up),
        ids(&sent),
        "the stalled reader catches up with no gap"
    );
    assert_eq!(caught_up, sent);
    let mut chat = app.chat().await;
    let sentinel = send_text(&mut chat, &alice, &chat_id, "sentinel", "the end").await;
    for stream in [&mut stalled, &mut reader] {
        assert_eq!(
            next_messages(stream, 1).await,
            std::slice::from_ref(&sentinel)
        );
    }
}

#[tokio::test]
async fn after_id_replays_only_newer_messages_of_the_chat() {
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let mut chat = app.chat().await;
    let sent = send_in_order(&mut chat, &alice, &chat_id, "m", 4, "stored").await;

    let mut stream = open_stream(&mut chat, &alice, &chat_id, &sent[1].id).await;
    assert_eq!(next_messages(&mut stream, 2).await, sent[2..]);
    let live = send_text(&mut chat, &alice, &chat_id, "live", "after the replay").await;
    assert_eq!(next_messages(&mut stream, 1).await, [live]);
}

#[tokio::test]
async fn an_idle_stream_gets_a_heartbeat_about_every_heartbeat_secs() {
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let mut chat = app.chat().await;
    let mut stream = open_stream(&mut chat, &alice, &chat_id, "").await;
    let period = Duration::from_secs(HEARTBEAT_SECS);

    let mut previous = Instant::now();
    for beat in 0..3 {
        let event = within(stream.message())
            .await
            .expect("the stream failed")
            .expect("the stream ended");
        let arrived = Instant::now();
        match event.event {
            Some(EventKind::Heartbeat(heartbeat)) => {
                let now = unix_now();
                assert!(
                    (now - 2..=now).contains(&heartbeat.sent_at),
                    "heartbeat sent_at {}",
                    heartbeat.sent_at
                );
            }
            other => panic!("an idle stream yielded {other:?}"),
        }
        let gap = arrived - previous;
        // Generous bounds: the point is "about every period", not scheduler precision.
        let shortest = if beat == 0 {
            Duration::ZERO
        } else {
            period * 3 / 10
        };
        assert!(
            (shortest..=period * 5 / 2).contains(&gap),
            "heartbeat {beat} came {gap:?} after the previous event; the period is {period:?}"
        );
        previous = arrived;
    }
}
