//! Reconnect storm: hundreds of subscribers drop their streams at random (now and then their
//! whole connection too) and reopen them with `after_id` = the last id they saw, while
//! messages flow into three chats. Each subscriber must end with exactly the sequence it
//! follows: every message, in id order, none twice. `CHAT_SOAK=1` runs the long version.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{Message, StreamRequest};
use rand::Rng;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::helpers::*;

struct Profile {
    users: usize,
    subscribers_per_user: usize,
    messages_per_chat: usize,
    /// Chance that a subscriber drops its stream after a message.
    drop_chance: f64,
}

impl Profile {
    fn current() -> Self {
        if soak() {
            Self {
                users: 10,
                subscribers_per_user: 40,
                messages_per_chat: 1_000,
                drop_chance: 0.05,
            }
        } else {
            Self {
                users: 8,
                subscribers_per_user: 25,
                messages_per_chat: 30,
                drop_chance: 0.1,
            }
        }
    }
}

/// What a subscriber follows: all its user's chats, or one of them.
#[derive(Clone)]
struct Follows {
    token: String,
    /// Empty: every chat of the user.
    chat_id: String,
    /// The chats whose messages it must receive.
    chats: Vec<String>,
}

/// How long a subscriber waits for more once the last id is announced before it gives up
/// and reports what it has, so that a gap fails the test with a diff rather than a hang.
const STALLED: Duration = Duration::from_secs(3);

/// The id of the newest message of each chat, announced once the senders are done.
type LastIds = Option<Arc<HashMap<String, u64>>>;

/// Streams what `follows` follows, dropping the stream after a message with `drop_chance` and
/// reopening it with `after_id` = the last id received, until it has the newest message of
/// its chats, which `last` announces once sending is over. Returns what it received and how
/// often it opened a stream.
async fn subscriber(
    app_url: String,
    follows: Follows,
    drop_chance: f64,
    mut last: watch::Receiver<LastIds>,
) -> (Vec<Message>, usize) {
    let connect = || async {
        let endpoint = Channel::from_shared(app_url.clone()).expect("invalid server URL");
        ChatClient::new(within(endpoint.connect()).await.expect("connect"))
    };
    let mut chat = connect().await;
    let mut received: Vec<Message> = Vec::new();
    let mut give_up = None;
    let mut cursor = 0;
    let mut opens = 0;
    let finished = |cursor: u64, last: &watch::Receiver<LastIds>| {
        last.borrow().as_ref().is_some_and(|last| {
            let target = follows.chats.iter().map(|chat| last[chat]).max();
            target.is_some_and(|target| cursor >= target)
        })
    };
    while !finished(cursor, &last) {
        let request = StreamRequest {
            chat_id: follows.chat_id.clone(),
            after_id: cursor.to_string(),
        };
        opens += 1;
        let mut stream = within(chat.stream(authed(&follows.token, request)))
            .await
            .unwrap_or_else(|status| panic!("cannot reopen a stream: {status:?}"))
            .into_inner();
        // Read until a random drop, or until the last message has arrived.
        while !finished(cursor, &last) {
            if give_up.is_none() && last.borrow().is_some() {
                give_up = Some(tokio::time::Instant::now() + STALLED);
            }
            let event = tokio::select! {
                event = stream.message() => event,
                _ = last.changed(), if give_up.is_none() => continue,
                () = tokio::time::sleep_until(give_up.unwrap_or_else(tokio::time::Instant::now)),
                    if give_up.is_some() => return (received, opens),
            };
            match event {
                Ok(Some(event)) => match event.event {
                    Some(EventKind::Message(message)) => {
                        cursor = id_number(&message.id);
                        received.push(message);
                        if rand::rng().random_bool(drop_chance) {
                            break;
                        }
                    }
                    Some(EventKind::Change(change)) => panic!("an unexpected change: {change:?}"),
                    // Heartbeats, and events that are not stored (presence of the others).
                    Some(_) => {}
                    None => panic!("an event with no content"),
                },
                Ok(None) => panic!("the stream ended by itself"),
                Err(status) => panic!("the stream failed: {status:?}"),
            }
        }
        drop(stream);
        // Now and then the whole connection goes, as when a laptop changes networks.
        if rand::rng().random_bool(0.2) {
            chat = connect().await;
        }
    }
    (received, opens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_ends_with_the_complete_sequence_through_a_reconnect_storm() {
    let profile = Profile::current();
    let started = Instant::now();
    let app = spawn_app().await;
    let mut users = Vec::with_capacity(profile.users);
    for index in 0..profile.users {
        users.push(signed_up(&app, &format!("user{index}")).await);
    }
    let names: Vec<&str> = users.iter().map(|(user, _)| user.as_str()).collect();
    let half = profile.users / 2;
    // Everyone; the first half; the second half. Each user is in two chats.
    let memberships = [
        names.clone(),
        names[..half].to_vec(),
        names[half..].to_vec(),
    ];
    let mut chats = Vec::new();
    for members in &memberships {
        let creator = names
            .iter()
            .position(|name| *name == members[0])
            .expect("a member");
        chats.push(new_chat(&app, &users[creator].1, members).await);
    }
    let chats_of_user = |index: usize| -> Vec<String> {
        memberships
            .iter()
            .zip(&chats)
            .filter(|(members, _)| members.contains(&names[index]))
            .map(|(_, chat)| chat.clone())
            .collect()
    };

    let (announce, done) = watch::channel(None);
    let mut subscribers = Vec::new();
    for (index, (_, token)) in users.iter().enumerate() {
        let own = chats_of_user(index);
        for n in 0..profile.subscribers_per_user {
            // Half follow all their chats, the others one chat each, taking turns.
            let follows = if n % 2 == 0 {
                Follows {
                    token: token.clone(),
                    chat_id: String::new(),
                    chats: own.clone(),
                }
            } else {
                let chat = own[(n / 2) % own.len()].clone();
                Follows {
                    token: token.clone(),
                    chat_id: chat.clone(),
                    chats: vec![chat],
                }
            };
            let task = subscriber(
                app.url(""),
                follows.clone(),
                profile.drop_chance,
                done.clone(),
            );
            subscribers.push((follows, tokio::spawn(task)));
        }
    }

    // One sender per chat, all at once, while the subscribers come and go.
    let senders: Vec<_> = memberships
        .iter()
        .zip(&chats)
        .map(|(members, chat_id)| {
            let sender = names
                .iter()
                .position(|name| *name == members[0])
                .expect("a member");
            let token = users[sender].1.clone();
            let chat_id = chat_id.clone();
            let count = profile.messages_per_chat;
            let app_url = app.url("");
            tokio::spawn(async move {
                let endpoint = Channel::from_shared(app_url).expect("invalid server URL");
                let mut chat = ChatClient::new(within(endpoint.connect()).await.expect("connect"));
                for n in 0..count {
                    send_text(&mut chat, &token, &chat_id, &format!("m{n}"), "storm").await;
                }
            })
        })
        .collect();
    for sender in senders {
        tokio::time::timeout(Duration::from_secs(60), sender)
            .await
            .expect("the senders took over a minute")
            .expect("a sender panicked");
    }

    let mut histories = HashMap::new();
    for (members, chat_id) in memberships.iter().zip(&chats) {
        let reader = names
            .iter()
            .position(|name| *name == members[0])
            .expect("a member");
        let history = full_history(&app, &users[reader].1, chat_id).await;
        histories.insert(chat_id.clone(), history);
    }
    let last_ids = histories
        .iter()
        .map(|(chat, history)| {
            let last = history.last().expect("messages were sent");
            (chat.clone(), id_number(&last.id))
        })
        .collect();
    announce.send_replace(Some(Arc::new(last_ids)));

    let (mut total_opens, count) = (0, subscribers.len());
    for (follows, task) in subscribers {
        let (received, opens) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a subscriber did not finish within a minute")
            .expect("a subscriber panicked");
        total_opens += opens;
        let mut expected: Vec<&Message> = follows
            .chats
            .iter()
            .flat_map(|chat| &histories[chat])
            .collect();
        expected.sort_by_key(|message| id_number(&message.id));
        let expected: Vec<Message> = expected.into_iter().cloned().collect();
        assert_eq!(
            ids(&received),
            ids(&expected),
            "a subscriber following {:?} after {opens} opens",
            follows.chats
        );
        assert_eq!(received, expected);
    }
    println!(
        "reconnect storm: {count} subscribers, {} messages in 3 chats, {total_opens} stream \
         opens with after_id, every subscriber complete, in order, no duplicate; {:.1} s",
        3 * profile.messages_per_chat,
        started.elapsed().as_secs_f64()
    );
}
