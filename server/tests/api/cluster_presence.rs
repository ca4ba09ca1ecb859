//! Events that are not messages across several real `chat-server` processes on one
//! PostgreSQL database (PostgreSQL only): presence, typing and read positions reach streams
//! on another server, a person whose stream moves to another server within the grace period
//! does not flap offline, a Stream's opening snapshot counts streams held elsewhere, and a
//! person whose only stream was on a server that died goes offline for the others.

use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{MarkReadRequest, StreamRequest, TypingRequest};

use crate::helpers::*;
use crate::presence::presence_of;

#[tokio::test]
async fn presence_typing_and_read_positions_cross_servers() {
    if !on_postgres() {
        return;
    }
    let grace = ["--presence-grace-ms", "1500"];
    let first = spawn_process(&grace).await;
    let second = spawn_process_sharing(&first, &grace).await;
    let (alice, bob, chat_id) = alice_and_bob(&first).await;
    let mut on_first = first.chat().await;
    let mut on_second = second.chat().await;

    let mut alices = open_stream(&mut on_first, &alice, "", "").await;
    let mut bobs = open_stream(&mut on_second, &bob, "", "").await;
    let online = next_event(
        &mut alices,
        "Bob online, from the other server",
        |event| match event {
            EventKind::Presence(presence) if presence.online => Some(presence),
            _ => None,
        },
    )
    .await;
    assert_eq!(online.user_id, "bob");

    // A snapshot on the first server counts Bob's stream on the second.
    let mut alice_web = within(
        first
            .web_chat()
            .stream(authed(&alice, StreamRequest::default())),
    )
    .await
    .expect("Alice's web stream")
    .into_inner();
    let snapshot = next_event(&mut alice_web, "the snapshot", presence_of("bob")).await;
    assert!(snapshot.online, "{snapshot:?}");

    within(on_second.typing(authed(
        &bob,
        TypingRequest {
            chat_id: chat_id.clone(),
        },
    )))
    .await
    .expect("Typing");
    let typing = next_event(&mut alices, "Bob typing", |event| match event {
        EventKind::Typing(typing) => Some(typing),
        _ => None,
    })
    .await;
    assert_eq!(
        (typing.user_id.as_str(), typing.chat_id.as_str()),
        ("bob", chat_id.as_str())
    );

    let sent = send_text(&mut on_second, &bob, &chat_id, "b0", "hello").await;
    within(on_first.mark_read(authed(
        &alice,
        MarkReadRequest {
            chat_id: chat_id.clone(),
            up_to_id: sent.id.clone(),
        },
    )))
    .await
    .expect("MarkRead");
    let read = next_event(
        &mut bobs,
        "Alice's receipt, from the other server",
        |event| match event {
            EventKind::ReadPosition(read) => Some(read),
            _ => None,
        },
    )
    .await;
    assert_eq!(
        (read.user_id.as_str(), read.up_to_id.as_str()),
        ("alice", sent.id.as_str())
    );

    // Bob's device moves from the second server to the first within the grace: no flap,
    // even after the second server's grace has run out (it finds his lease on the first).
    drop(bobs);
    let bobs_moved = open_stream(&mut on_first, &bob, "", "").await;
    assert_no_event(
        &mut alices,
        "Bob flapped while moving between servers",
        std::time::Duration::from_millis(2500),
        presence_of("bob"),
    )
    .await;

    drop(bobs_moved);
    let offline = next_event(&mut alice_web, "Bob offline", |event| match event {
        EventKind::Presence(presence) if presence.user_id == "bob" && !presence.online => {
            Some(presence)
        }
        _ => None,
    })
    .await;
    assert!(offline.last_seen > 0);
}

/// A server SIGKILLed while it holds someone's only stream says nothing; the other servers
/// find that person's lapsed lease and announce them offline, last seen when their stream was
/// last known alive.
#[tokio::test]
async fn a_person_whose_server_died_goes_offline_on_the_other_servers() {
    if !on_postgres() {
        return;
    }
    let grace = ["--presence-grace-ms", "1500"];
    let mut first = spawn_process(&grace).await;
    let second = spawn_process_sharing(&first, &grace).await;
    let (alice, bob, _) = alice_and_bob(&second).await;
    let mut bobs = open_stream(&mut second.chat().await, &bob, "", "").await;
    // Held until the end: closing it would settle Alice's presence the ordinary way.
    let _alices = open_stream(&mut first.chat().await, &alice, "", "").await;
    next_event(&mut bobs, "Alice online", |event| match event {
        EventKind::Presence(presence) if presence.user_id == "alice" && presence.online => {
            Some(presence)
        }
        _ => None,
    })
    .await;

    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    first.kill();
    // The lease lapses 15 s after its last renewal and every server sweeps every 5 s.
    let offline = tokio::time::timeout(std::time::Duration::from_secs(45), async {
        loop {
            match bobs.message().await {
                Ok(Some(event)) => match event.event {
                    Some(EventKind::Presence(presence)) if presence.user_id == "alice" => {
                        return presence;
                    }
                    _ => {}
                },
                other => panic!("Bob's stream ended before Alice went offline: {other:?}"),
            }
        }
    })
    .await
    .expect("Alice was not announced offline within 45 s of her server's death");
    assert!(!offline.online, "{offline:?}");
    let last_seen = u64::try_from(offline.last_seen).expect("a last-seen time");
    assert!(
        last_seen + 10 >= killed_at && last_seen <= killed_at,
        "last seen {last_seen}, killed at {killed_at}: not when her stream was last alive"
    );
}
