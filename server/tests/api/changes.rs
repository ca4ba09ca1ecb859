//! Edit, Delete and React (`proto/chat.proto`): the rules (only the sender edits or deletes,
//! one reaction per person and emoji, limits), retry safety, and above all delivery: every
//! change reaches every device as a Stream event in id order, and a device that was offline
//! while messages changed sees each change once, in order, when it resumes with its cursor,
//! over native gRPC and gRPC-web alike, and on PostgreSQL across two servers.

use std::time::Duration;

use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{
    DeleteRequest, EditRequest, Event, HistoryRequest, Message, ReactRequest, StreamRequest,
};
use chat_core::reason::Reason;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::*;

/// The Chat service over either transport, so one scenario runs on both.
#[derive(Clone)]
enum Client {
    Native(ChatClient<Channel>),
    Web(Box<ChatClient<WebClient>>),
}

macro_rules! call {
    ($client:expr, $method:ident, $token:expr, $request:expr) => {
        match $client {
            Client::Native(chat) => within(chat.$method(authed($token, $request)))
                .await
                .map(|response| response.into_inner()),
            Client::Web(chat) => within(chat.$method(authed($token, $request)))
                .await
                .map(|response| response.into_inner()),
        }
    };
}

impl Client {
    async fn native(server: &impl Server) -> Self {
        Self::Native(server.chat().await)
    }

    fn web(server: &impl Server) -> Self {
        Self::Web(Box::new(server.web_chat()))
    }

    async fn edit(
        &mut self,
        token: &str,
        message: &Message,
        text: &str,
    ) -> Result<Message, Status> {
        let request = EditRequest {
            chat_id: message.chat_id.clone(),
            message_id: message.id.clone(),
            subject: message.subject.clone(),
            text: text.to_owned(),
        };
        call!(self, edit, token, request).map(|response| response.message.expect("a message"))
    }

    async fn delete(&mut self, token: &str, message: &Message) -> Result<Message, Status> {
        let request = DeleteRequest {
            chat_id: message.chat_id.clone(),
            message_id: message.id.clone(),
        };
        call!(self, delete, token, request).map(|response| response.message.expect("a message"))
    }

    async fn react(
        &mut self,
        token: &str,
        message: &Message,
        emoji: &str,
        remove: bool,
    ) -> Result<Message, Status> {
        let request = ReactRequest {
            chat_id: message.chat_id.clone(),
            message_id: message.id.clone(),
            emoji: emoji.to_owned(),
            remove,
        };
        call!(self, react, token, request).map(|response| response.message.expect("a message"))
    }

    async fn send(&mut self, token: &str, chat_id: &str, client_id: &str, text: &str) -> Message {
        call!(self, send, token, send_request(chat_id, client_id, text))
            .expect("send")
            .message
            .expect("a message")
    }

    async fn stream(&mut self, token: &str, chat_id: &str, after_id: &str) -> Streaming<Event> {
        let request = StreamRequest {
            chat_id: chat_id.to_owned(),
            after_id: after_id.to_owned(),
        };
        call!(self, stream, token, request).expect("stream")
    }

    async fn history(&mut self, token: &str, chat_id: &str) -> Vec<Message> {
        let request = HistoryRequest {
            chat_id: chat_id.to_owned(),
            limit: 100,
            before_id: String::new(),
        };
        call!(self, history, token, request)
            .expect("history")
            .messages
    }
}

/// One Stream event as a test sees it: its id (the cursor) and the message it carries.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    id: String,
    change: bool,
    message: Message,
}

/// The next `n` messages and changes of `stream`, skipping heartbeats.
async fn next_events(stream: &mut Streaming<Event>, n: usize) -> Vec<Seen> {
    within(async {
        let mut seen = Vec::with_capacity(n);
        while seen.len() < n {
            match stream.message().await {
                Ok(Some(Event {
                    event: Some(EventKind::Message(message)),
                })) => seen.push(Seen {
                    id: message.id.clone(),
                    change: false,
                    message,
                }),
                Ok(Some(Event {
                    event: Some(EventKind::Change(change)),
                })) => seen.push(Seen {
                    id: change.id,
                    change: true,
                    message: change.message.expect("a change carries its message"),
                }),
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended after {} of {n} events", seen.len()),
                Err(status) => panic!("the stream failed after {} events: {status:?}", seen.len()),
            }
        }
        seen
    })
    .await
}

/// Fails if `stream` delivers a message or change within a second and a half.
async fn assert_quiet(stream: &mut Streaming<Event>) {
    let quiet = async {
        loop {
            match stream.message().await {
                Ok(Some(Event {
                    event: Some(EventKind::Heartbeat(_)),
                })) => {}
                other => return other,
            }
        }
    };
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(1500), quiet).await {
        panic!("the stream delivered more than expected: {extra:?}");
    }
}

fn assert_in_id_order(events: &[Seen]) {
    let numbers: Vec<u64> = events.iter().map(|seen| id_number(&seen.id)).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "events out of id order: {numbers:?}"
    );
}

fn emoji_counts(message: &Message) -> Vec<(String, Vec<String>)> {
    message
        .reactions
        .iter()
        .map(|reaction| (reaction.emoji.clone(), reaction.user_ids.clone()))
        .collect()
}

/// Alice and Bob, their chat, and two of Alice's messages that Bob's device has seen; then Bob's
/// device goes offline while Alice edits, Bob's other device reacts, Alice deletes and sends.
/// Bob's device resumes with its cursor and must see each change once, in order, with the
/// states Alice's live stream saw; a second resume from the middle sees exactly the rest.
async fn offline_device_sees_every_change_once_in_order(server: &impl Server, mut client: Client) {
    let (alice, bob, chat_id) = alice_and_bob(server).await;
    let mut alices_stream = client.stream(&alice, "", "").await;
    let first = client.send(&alice, &chat_id, "m1", "helo").await;
    let second = client.send(&alice, &chat_id, "m2", "to be deleted").await;

    let mut bobs_device = client.stream(&bob, &chat_id, "0").await;
    let arrived = next_events(&mut bobs_device, 2).await;
    assert_eq!(
        arrived.iter().map(|seen| &seen.message).collect::<Vec<_>>(),
        [&first, &second]
    );
    let cursor = arrived[1].id.clone();
    drop(bobs_device);

    let edited = client.edit(&alice, &first, "hello").await.expect("edit");
    assert_eq!(edited.text, "hello");
    assert!(edited.edited_at >= first.sent_at, "{edited:?}");
    let reacted = client
        .react(&bob, &second, "👍", false)
        .await
        .expect("react");
    assert_eq!(
        emoji_counts(&reacted),
        [("👍".to_owned(), vec!["bob".to_owned()])]
    );
    let reacted_first = client
        .react(&alice, &first, "🎉", false)
        .await
        .expect("react");
    let deleted = client.delete(&alice, &second).await.expect("delete");
    assert!(deleted.deleted && deleted.text.is_empty() && deleted.reactions.is_empty());
    let third = client
        .send(&alice, &chat_id, "m3", "after the changes")
        .await;

    let live = next_events(&mut alices_stream, 7).await;
    assert_in_id_order(&live);
    assert_eq!(
        live.iter().map(|seen| seen.change).collect::<Vec<_>>(),
        [false, false, true, true, true, true, false]
    );
    assert_eq!(live[2].message, edited);
    assert_eq!(live[3].message, reacted);
    assert_eq!(live[4].message, reacted_first);
    assert_eq!(live[5].message, deleted);
    assert_eq!(live[6].message, third);

    let mut resumed = client.stream(&bob, &chat_id, &cursor).await;
    let caught_up = next_events(&mut resumed, 5).await;
    assert_in_id_order(&caught_up);
    assert_eq!(
        caught_up
            .iter()
            .map(|seen| seen.id.clone())
            .collect::<Vec<_>>(),
        live[2..]
            .iter()
            .map(|seen| seen.id.clone())
            .collect::<Vec<_>>(),
        "the resumed device missed or repeated a change"
    );
    // Replay carries each message's current state: what the last change left.
    let final_first = caught_up
        .last()
        .map(|_| &caught_up[2].message)
        .expect("events");
    assert_eq!(final_first.text, "hello");
    assert_eq!(
        emoji_counts(final_first),
        [("🎉".to_owned(), vec!["alice".to_owned()])]
    );
    assert!(caught_up[3].message.deleted);
    assert_eq!(caught_up[4].message, third);
    assert_quiet(&mut resumed).await;

    // Resuming from the middle (after the edit) delivers exactly what followed it.
    let mut again = client.stream(&bob, "", &live[2].id).await;
    let rest = next_events(&mut again, 4).await;
    assert_eq!(
        rest.iter().map(|seen| seen.id.clone()).collect::<Vec<_>>(),
        live[3..]
            .iter()
            .map(|seen| seen.id.clone())
            .collect::<Vec<_>>()
    );
    assert_quiet(&mut again).await;

    // History shows the current versions: edited, deleted placeholder, reactions.
    let history = client.history(&bob, &chat_id).await;
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].text, "hello");
    assert!(history[0].edited_at > 0);
    assert_eq!(
        emoji_counts(&history[0]),
        [("🎉".to_owned(), vec!["alice".to_owned()])]
    );
    assert!(history[1].deleted && history[1].text.is_empty() && history[1].subject.is_empty());
    assert_eq!(history[2], third);
}

#[tokio::test]
async fn an_offline_device_sees_every_change_once_in_order_over_native_grpc() {
    let app = spawn_app().await;
    let client = Client::native(&app).await;
    offline_device_sees_every_change_once_in_order(&app, client).await;
}

#[tokio::test]
async fn an_offline_device_sees_every_change_once_in_order_over_grpc_web() {
    let app = spawn_app().await;
    offline_device_sees_every_change_once_in_order(&app, Client::web(&app)).await;
}

#[tokio::test]
async fn retried_changes_change_nothing_and_publish_nothing() {
    let app = spawn_app().await;
    let mut client = Client::native(&app).await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let message = client.send(&alice, &chat_id, "m1", "first").await;
    let mut bobs_stream = client.stream(&bob, &chat_id, &message.id).await;

    let edited = client.edit(&alice, &message, "fixed").await.expect("edit");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        client.edit(&alice, &message, "fixed").await.expect("retry"),
        edited
    );
    let reacted = client
        .react(&bob, &message, "❤️", false)
        .await
        .expect("react");
    assert_eq!(
        client
            .react(&bob, &message, "❤️", false)
            .await
            .expect("retry"),
        reacted
    );
    assert_eq!(
        client
            .react(&alice, &message, "👀", true)
            .await
            .expect("removing none"),
        reacted
    );
    let unreacted = client
        .react(&bob, &message, "❤️", true)
        .await
        .expect("unreact");
    assert!(unreacted.reactions.is_empty());
    let deleted = client.delete(&alice, &message).await.expect("delete");
    assert_eq!(
        client.delete(&alice, &message).await.expect("retry"),
        deleted
    );
    let marker = client.send(&alice, &chat_id, "m2", "marker").await;

    let events = next_events(&mut bobs_stream, 5).await;
    assert_eq!(
        events
            .iter()
            .map(|seen| seen.message.clone())
            .collect::<Vec<_>>(),
        [edited, reacted, unreacted, deleted, marker],
        "a retry published a change"
    );
    assert_quiet(&mut bobs_stream).await;
}

#[tokio::test]
async fn refused_changes_say_why_and_store_nothing() {
    let app = spawn_app().await;
    let mut client = Client::native(&app).await;
    let [alice, bob, carol] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let chat_id = new_chat(&app, &alice, &["alice", "bob"]).await;
    let other_chat = new_chat(&app, &alice, &["alice", "carol"]).await;
    let mine = client.send(&alice, &chat_id, "m1", "mine").await;
    let elsewhere = client.send(&alice, &other_chat, "m1", "elsewhere").await;
    let gone = client.send(&alice, &chat_id, "m2", "gone").await;
    client.delete(&alice, &gone).await.expect("delete");
    let marker = client.send(&bob, &chat_id, "b1", "marker").await;
    let mut bobs_stream = client.stream(&bob, &chat_id, &marker.id).await;
    let before = client.history(&alice, &chat_id).await;

    let unknown = Message {
        id: "999999".into(),
        ..mine.clone()
    };
    let in_other_chat = Message {
        chat_id: chat_id.clone(),
        ..elsewhere.clone()
    };
    let not_a_chat = Message {
        chat_id: "nope".into(),
        ..mine.clone()
    };
    let no_id = Message {
        id: String::new(),
        ..mine.clone()
    };
    let checks: Vec<(&str, Result<Message, Status>, Code, &str)> = vec![
        (
            "bob edits alice's",
            client.edit(&bob, &mine, "x").await,
            Code::PermissionDenied,
            "only its sender",
        ),
        (
            "bob deletes alice's",
            client.delete(&bob, &mine).await,
            Code::PermissionDenied,
            "only its sender",
        ),
        (
            "carol edits outside",
            client.edit(&carol, &mine, "x").await,
            Code::NotFound,
            "chat not found",
        ),
        (
            "carol reacts outside",
            client.react(&carol, &mine, "👍", false).await,
            Code::NotFound,
            "chat not found",
        ),
        (
            "unknown id",
            client.edit(&alice, &unknown, "x").await,
            Code::NotFound,
            "message not found",
        ),
        (
            "other chat's id",
            client.react(&alice, &in_other_chat, "👍", false).await,
            Code::NotFound,
            "message not found",
        ),
        (
            "edit deleted",
            client.edit(&alice, &gone, "back").await,
            Code::NotFound,
            "message not found",
        ),
        (
            "react deleted",
            client.react(&bob, &gone, "👍", false).await,
            Code::NotFound,
            "message not found",
        ),
        (
            "blank text",
            client.edit(&alice, &mine, " \u{200B} ").await,
            Code::InvalidArgument,
            "empty or invisible",
        ),
        (
            "long text",
            client.edit(&alice, &mine, &"x".repeat(4001)).await,
            Code::InvalidArgument,
            "limit is 4000",
        ),
        (
            "not an emoji",
            client.react(&bob, &mine, "lol", false).await,
            Code::InvalidArgument,
            "not one emoji",
        ),
        (
            "two emoji",
            client.react(&bob, &mine, "👍👍", false).await,
            Code::InvalidArgument,
            "not one emoji",
        ),
        (
            "no emoji",
            client.react(&bob, &mine, "", false).await,
            Code::InvalidArgument,
            "emoji is required",
        ),
        (
            "no message id",
            client.delete(&alice, &no_id).await,
            Code::InvalidArgument,
            "message_id is required",
        ),
        (
            "bad chat id",
            client.edit(&alice, &not_a_chat, "x").await,
            Code::InvalidArgument,
            "not a chat id",
        ),
    ];
    for (case, outcome, code, words) in checks {
        let status = outcome.expect_err(case);
        assert_eq!(status.code(), code, "{case}: {status:?}");
        assert!(status.message().contains(words), "{case}: {status:?}");
    }

    // Nothing refused was stored or published.
    assert_eq!(client.history(&alice, &chat_id).await, before);
    assert_quiet(&mut bobs_stream).await;
}

#[tokio::test]
async fn reactions_are_limited_per_person_and_per_message() {
    let app = spawn_app().await;
    let mut client = Client::native(&app).await;
    let people = ["alice", "bob", "carol", "dave", "erin"];
    let tokens = signed_up_all(&app, people).await;
    let chat_id = new_chat(&app, &tokens[0], &people).await;
    let message = client.send(&tokens[0], &chat_id, "m1", "react!").await;
    let emoji = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎",
    ];
    for (person, theirs) in emoji.chunks(3).enumerate() {
        for emoji in theirs {
            client
                .react(&tokens[person], &message, emoji, false)
                .await
                .expect("within the limits");
        }
    }
    let status = client
        .react(&tokens[0], &message, "😃", false)
        .await
        .expect_err("a fourth reaction of alice's");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("at most 3"), "{status:?}");
    let status = client
        .react(&tokens[4], &message, "🥳", false)
        .await
        .expect_err("a thirteenth emoji");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("at most 12"), "{status:?}");
    let joined = client
        .react(&tokens[4], &message, "😀", false)
        .await
        .expect("an emoji already there");
    assert_eq!(joined.reactions.len(), 12);
    assert_eq!(joined.reactions[0].user_ids, ["alice", "erin"]);
    let history = client.history(&tokens[1], &chat_id).await;
    assert_eq!(history, [joined]);
}

#[tokio::test]
async fn changes_count_against_the_send_rate() {
    let app = spawn_app_with(&["--send-rate", "1", "--send-burst", "3"]).await;
    let mut client = Client::native(&app).await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let message = client.send(&alice, &chat_id, "m1", "hi").await;
    client.send(&bob, &chat_id, "b1", "hello").await;
    client.edit(&alice, &message, "hi!").await.expect("edit");
    client
        .react(&alice, &message, "👍", false)
        .await
        .expect("react");
    let status = client
        .react(&alice, &message, "🎉", false)
        .await
        .expect_err("over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_details(&status).0, Some(Reason::SendRate));
}

#[tokio::test]
async fn connect_streams_carry_messages_only() {
    let app = spawn_app().await;
    let mut chat = app.chat().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut client = Client::native(&app).await;
    let first = client.send(&alice, &chat_id, "m1", "hi").await;
    let (_outbox, mut connect) = open_connect(
        &mut chat,
        Some(&bob),
        &[("chat-id", &chat_id), ("after-id", &first.id)],
    )
    .await
    .expect("connect");
    client.edit(&alice, &first, "hi!").await.expect("edit");
    client
        .react(&bob, &first, "👍", false)
        .await
        .expect("react");
    let second = client.send(&alice, &chat_id, "m2", "next").await;
    assert_eq!(take(&mut connect, 1).await, [second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_server_reach_a_device_resuming_on_another() {
    // Several servers share a database only on PostgreSQL.
    if !on_postgres() {
        return;
    }
    let first = spawn_process(&[]).await;
    let second = spawn_process_sharing(&first, &[]).await;
    let (alice, bob, chat_id) = alice_and_bob(&first).await;
    let mut on_first = Client::native(&first).await;
    let mut on_second = Client::web(&second);
    let message = on_first.send(&alice, &chat_id, "m1", "helo").await;
    let mut live_on_second = on_second.stream(&bob, "", &message.id).await;

    let edited = on_first
        .edit(&alice, &message, "hello")
        .await
        .expect("edit");
    let reacted = on_second
        .react(&bob, &message, "👍", false)
        .await
        .expect("react");
    // Read from the table by the second server's tailer: both reactions, in the order given.
    let reacted_again = on_first
        .react(&alice, &message, "🎉", false)
        .await
        .expect("react again");
    assert_eq!(
        emoji_counts(&reacted_again),
        [
            ("👍".to_owned(), vec!["bob".to_owned()]),
            ("🎉".to_owned(), vec!["alice".to_owned()])
        ]
    );
    let next = on_second.send(&bob, &chat_id, "b1", "ok").await;
    let deleted = on_first.delete(&alice, &message).await.expect("delete");

    let live = next_events(&mut live_on_second, 5).await;
    assert_in_id_order(&live);
    assert_eq!(
        live.iter()
            .map(|seen| seen.message.clone())
            .collect::<Vec<_>>(),
        [edited, reacted, reacted_again, next.clone(), deleted]
    );
    let mut resumed = on_first.stream(&bob, &chat_id, &message.id).await;
    let replayed = next_events(&mut resumed, 5).await;
    assert_eq!(
        replayed
            .iter()
            .map(|seen| seen.id.clone())
            .collect::<Vec<_>>(),
        live.iter().map(|seen| seen.id.clone()).collect::<Vec<_>>()
    );
    assert!(
        replayed[0].message.deleted,
        "replay carries the current state"
    );
    assert_eq!(replayed[3].message, next);
    assert_quiet(&mut resumed).await;
}
