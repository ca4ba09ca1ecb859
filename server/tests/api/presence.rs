//! Presence: online while any device holds a stream, offline with a last-seen time once the
//! last one has been closed for the grace period, and no flapping on a quick reconnect. Every
//! Stream of every chat starts with the presence of the caller's contacts. Over native gRPC and
//! gRPC-web, on whichever backend the suite runs.

use std::time::Duration;

use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{Presence, StreamRequest};

use crate::helpers::*;

/// The grace period of these tests' servers.
const GRACE_MS: u64 = 600;

pub fn presence_of(user: &'static str) -> impl FnMut(EventKind) -> Option<Presence> {
    move |event| match event {
        EventKind::Presence(presence) if presence.user_id == user => Some(presence),
        _ => None,
    }
}

#[tokio::test]
async fn presence_goes_online_then_offline_after_the_grace_with_a_last_seen_time() {
    let app = spawn_app_with(&["--presence-grace-ms", &GRACE_MS.to_string()]).await;
    let (alice, bob, _chat_id) = alice_and_bob(&app).await;
    signed_up(&app, "carol").await;
    let mut native = app.chat().await;

    // Alice's stream starts with Bob's presence: never seen. Carol shares no chat with her.
    let mut alices = open_stream(&mut native, &alice, "", "").await;
    let first = next_event(&mut alices, "the snapshot", |event| match event {
        EventKind::Presence(presence) => Some(presence),
        _ => None,
    })
    .await;
    assert_eq!(
        first,
        Presence {
            user_id: "bob".into(),
            online: false,
            last_seen: 0
        }
    );

    // Bob comes online over gRPC-web; his snapshot shows Alice online.
    let mut bobs = within(
        app.web_chat()
            .stream(authed(&bob, StreamRequest::default())),
    )
    .await
    .expect("Bob's web stream")
    .into_inner();
    let online = next_event(&mut alices, "Bob online", presence_of("bob")).await;
    assert!(online.online, "{online:?}");
    let alice_seen = next_event(&mut bobs, "Bob's snapshot", presence_of("alice")).await;
    assert!(alice_seen.online, "{alice_seen:?}");

    let closed_at = unix_now();
    drop(bobs);
    assert_no_event(
        &mut alices,
        "Bob went offline within the grace",
        Duration::from_millis(GRACE_MS / 2),
        presence_of("bob"),
    )
    .await;
    let offline = next_event(&mut alices, "Bob offline", presence_of("bob")).await;
    assert!(!offline.online, "{offline:?}");
    assert!(
        (closed_at - 1..=closed_at + 1).contains(&offline.last_seen),
        "last seen {} for a stream closed at {closed_at}",
        offline.last_seen
    );

    // A new stream's snapshot has the stored time.
    let mut again = within(
        app.web_chat()
            .stream(authed(&alice, StreamRequest::default())),
    )
    .await
    .expect("Alice's web stream")
    .into_inner();
    let snapshot = next_event(&mut again, "the snapshot", presence_of("bob")).await;
    assert_eq!(
        (snapshot.online, snapshot.last_seen),
        (false, offline.last_seen)
    );
}

#[tokio::test]
async fn a_reconnect_within_the_grace_does_not_flap_and_any_open_device_keeps_one_online() {
    let app = spawn_app_with(&["--presence-grace-ms", "1500"]).await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut native = app.chat().await;
    let mut alices = open_stream(&mut native, &alice, "", "").await;
    let bobs = open_stream(&mut native, &bob, "", "").await;
    let online = next_event(&mut alices, "Bob online", |event| match event {
        EventKind::Presence(presence) if presence.online => Some(presence),
        _ => None,
    })
    .await;
    assert_eq!(online.user_id, "bob");

    // A reload: the stream closes and a new one opens at once.
    drop(bobs);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bobs_reloaded = open_stream(&mut native, &bob, "", "").await;
    // A second device (a Connect call) comes and goes while the first stays.
    let (outbox, connect) = open_connect(&mut native, Some(&bob), &[("chat-id", &chat_id)])
        .await
        .expect("Connect");
    drop((outbox, connect));
    assert_no_event(
        &mut alices,
        "Bob's presence changed though he never left",
        Duration::from_millis(2500),
        presence_of("bob"),
    )
    .await;

    drop(bobs_reloaded);
    let offline = next_event(&mut alices, "Bob offline", presence_of("bob")).await;
    assert!(!offline.online);
}

#[tokio::test]
async fn people_who_start_a_chat_are_told_each_others_presence() {
    let app = spawn_app().await;
    let [alice, bob] = signed_up_all(&app, ["alice", "bob"]).await;
    let mut native = app.chat().await;
    // Sharing no chat yet, their streams open without a word about each other.
    let mut alices = open_stream(&mut native, &alice, "", "").await;
    let mut bobs = within(
        app.web_chat()
            .stream(authed(&bob, StreamRequest::default())),
    )
    .await
    .expect("Bob's web stream")
    .into_inner();
    new_chat(&app, &alice, &["alice", "bob"]).await;
    let bob_seen = next_event(&mut alices, "Bob's presence", presence_of("bob")).await;
    let alice_seen = next_event(&mut bobs, "Alice's presence", presence_of("alice")).await;
    assert!(
        bob_seen.online && alice_seen.online,
        "{bob_seen:?} {alice_seen:?}"
    );
}
