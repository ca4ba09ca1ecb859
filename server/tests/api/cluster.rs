//! Several real `chat-server` processes on one PostgreSQL database (PostgreSQL only): what
//! one server promises must hold across them. Concurrent senders on three servers, every
//! Stream checked against what was acknowledged (no gap, no duplicate, id order, the order
//! History returns), one server SIGKILLed mid-run with its clients resuming on another with
//! their cursor, and `New`/`Send` retries racing on different servers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{Event, Message, NewRequest};
use tonic::Code;
use tonic::codec::Streaming;
use tonic::transport::Channel;

use crate::helpers::*;

/// Messages each sender sends.
const PER_SENDER: usize = 60;

/// Whether a failed call may be retried elsewhere (the server is gone or busy).
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

/// Sends `PER_SENDER` messages as `user`, on `primary` until it fails, then on `fallback`,
/// retrying each failed message with its client id; returns what was acknowledged.
async fn sender(
    mut primary: Option<ChatClient<Channel>>,
    mut fallback: ChatClient<Channel>,
    token: String,
    chat_id: String,
    user: &'static str,
) -> Vec<Message> {
    let mut acked = Vec::with_capacity(PER_SENDER);
    for n in 0..PER_SENDER {
        let client_id = format!("{user}-{n}");
        loop {
            let request = authed(&token, send_request(&chat_id, &client_id, "hello"));
            let outcome = match &mut primary {
                Some(chat) => chat.send(request).await,
                None => fallback.send(request).await,
            };
            match outcome {
                Ok(response) => {
                    acked.push(response.into_inner().message.expect("a stored message"));
                    break;
                }
                Err(status) if is_transient(status.code()) => {
                    primary = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => panic!("{user} cannot send {client_id}: {status:?}"),
            }
        }
    }
    acked
}

/// Reads messages from `stream` into `seen` until it fails; returns the failure, if any.
async fn read_until_failure(stream: &mut Streaming<Event>, seen: &Mutex<Vec<Message>>) {
    while let Ok(Some(event)) = stream.message().await {
        if let Some(EventKind::Message(message)) = event.event {
            seen.lock().expect("seen").push(message);
        }
    }
}

/// Checks a stream's messages against the chat's history: the same messages, in the same
/// order, each once.
fn check_stream(who: &str, seen: &[Message], history: &[Message]) {
    let seen_ids: Vec<u64> = seen.iter().map(|m| id_number(&m.id)).collect();
    let history_ids: Vec<u64> = history.iter().map(|m| id_number(&m.id)).collect();
    assert!(
        seen_ids.windows(2).all(|pair| pair[0] < pair[1]),
        "{who}'s stream is out of order or repeats a message: {seen_ids:?}"
    );
    assert_eq!(
        seen_ids, history_ids,
        "{who}'s stream differs from the history (a gap, an extra or another order)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_deliver_every_acknowledged_message_once_in_order_through_a_sigkill() {
    // Several servers share a database only on PostgreSQL.
    if !on_postgres() {
        return;
    }
    let first = spawn_process(&[]).await;
    let second = spawn_process_sharing(&first, &[]).await;
    let mut third = spawn_process_sharing(&first, &[]).await;
    let (_, alice) = signed_up(&first, "alice").await;
    let (_, bob) = signed_up(&second, "bob").await;
    let (_, carol) = signed_up(&third, "carol").await;
    let chat_id = new_chat(&second, &bob, &["alice", "bob", "carol"]).await;

    // Each user follows all of their chats on their own server, from now on.
    let mut streams = Vec::new();
    for (server, token) in [(&first, &alice), (&second, &bob), (&third, &carol)] {
        let mut chat = server.chat().await;
        streams.push(open_stream(&mut chat, token, "", "").await);
    }
    let seen: Vec<Arc<Mutex<Vec<Message>>>> =
        (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let mut readers = Vec::new();
    for (mut stream, seen) in streams.into_iter().zip(seen.iter().cloned()) {
        readers.push(tokio::spawn(async move {
            read_until_failure(&mut stream, &seen).await;
        }));
    }

    let senders = [
        tokio::spawn(sender(
            Some(first.chat().await),
            second.chat().await,
            alice.clone(),
            chat_id.clone(),
            "alice",
        )),
        tokio::spawn(sender(
            Some(second.chat().await),
            first.chat().await,
            bob.clone(),
            chat_id.clone(),
            "bob",
        )),
        tokio::spawn(sender(
            Some(third.chat().await),
            first.chat().await,
            carol.clone(),
            chat_id.clone(),
            "carol",
        )),
    ];

    // Kill the third server once some messages have gone through it.
    within(async {
        while seen[2].lock().expect("seen").len() < PER_SENDER / 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    third.kill();
    let carol_reader = readers.pop().expect("carol's reader");
    within(carol_reader).await.expect("carol's reader panicked");

    // Carol resumes on the first server with her cursor.
    let cursor = seen[2]
        .lock()
        .expect("seen")
        .last()
        .map(|message| message.id.clone())
        .unwrap_or_default();
    let mut resumed = open_stream(&mut first.chat().await, &carol, "", &cursor).await;
    let carol_seen = Arc::clone(&seen[2]);
    readers.push(tokio::spawn(async move {
        read_until_failure(&mut resumed, &carol_seen).await;
    }));

    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(
            tokio::time::timeout(Duration::from_secs(60), sender)
                .await
                .expect("the senders did not finish within 60 s")
                .expect("a sender panicked"),
        );
    }
    assert_eq!(acked.len(), 3 * PER_SENDER);

    let history = full_history(&first, &alice, &chat_id).await;
    // Nothing acknowledged is lost or doubled.
    let mut acked_ids: Vec<u64> = acked.iter().map(|m| id_number(&m.id)).collect();
    acked_ids.sort_unstable();
    let history_ids: Vec<u64> = history.iter().map(|m| id_number(&m.id)).collect();
    assert_eq!(
        acked_ids, history_ids,
        "the history is not what was acknowledged"
    );

    // Every stream catches up with the whole history, then holds exactly it.
    within(async {
        while seen
            .iter()
            .any(|seen| seen.lock().expect("seen").len() < history.len())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (who, seen) in ["alice", "bob", "carol"].iter().zip(&seen) {
        check_stream(who, &seen.lock().expect("seen"), &history);
    }
    for reader in readers {
        reader.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_send_retries_racing_on_three_servers_store_one_chat_and_one_message() {
    // Several servers share a database only on PostgreSQL.
    if !on_postgres() {
        return;
    }
    let first = spawn_process(&[]).await;
    let second = spawn_process_sharing(&first, &[]).await;
    let third = spawn_process_sharing(&first, &[]).await;
    let servers = [&first, &second, &third];
    let (_, alice) = signed_up(&first, "alice").await;
    for round in 0..10 {
        let other = format!("friend{round}");
        signed_up(&second, &other).await;
        let mut clients = Vec::new();
        for server in servers {
            clients.push(server.chat().await);
        }

        let news = clients.iter().map(|chat| {
            let mut chat = chat.clone();
            let request = authed(
                &alice,
                NewRequest {
                    user_ids: vec!["alice".into(), other.clone()],
                },
            );
            async move { within(chat.new_chat(request)).await }
        });
        let chat_ids: Vec<String> = futures::future::join_all(news)
            .await
            .into_iter()
            .map(|outcome| outcome.expect("New").into_inner().chat_id)
            .collect();
        assert!(
            chat_ids.iter().all(|id| *id == chat_ids[0]),
            "racing New calls made different chats: {chat_ids:?}"
        );
        let chat_id = &chat_ids[0];

        let sends = clients.iter().map(|chat| {
            let mut chat = chat.clone();
            let request = authed(&alice, send_request(chat_id, "the-one", "once"));
            async move { within(chat.send(request)).await }
        });
        let stored: Vec<String> = futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|outcome| {
                outcome
                    .expect("Send")
                    .into_inner()
                    .message
                    .expect("a stored message")
                    .id
            })
            .collect();
        assert!(
            stored.iter().all(|id| *id == stored[0]),
            "racing Send retries stored different messages: {stored:?}"
        );
        let history = history_of(&third, &alice, chat_id).await;
        assert_eq!(ids(&history), vec![stored[0].clone()], "round {round}");
        let chats = chats_of(&first, &alice).await;
        assert_eq!(chats.len(), round + 1, "one chat per member set");
    }
}
