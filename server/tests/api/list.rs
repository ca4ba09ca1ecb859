//! List: the caller's chats and no one else's, each with its sorted members and newest
//! message, the most recently active first.

use chat_core::proto::{ChatSummary, ReactRequest};

use crate::helpers::*;

fn chat_ids(chats: &[ChatSummary]) -> Vec<&str> {
    chats.iter().map(|chat| chat.chat_id.as_str()).collect()
}

#[tokio::test]
async fn list_shows_the_callers_chats_most_recently_active_first() {
    let app = spawn_app().await;
    let [alice, bob, _] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let with_bob = new_chat(&app, &alice, &["bob", "alice"]).await;
    let with_carol = new_chat(&app, &alice, &["carol", "alice"]).await;
    let not_alices = new_chat(&app, &bob, &["carol", "bob"]).await;
    let mut chat = app.chat().await;

    send_text(&mut chat, &alice, &with_carol, "c1", "hi carol").await;
    let to_bob = send_text(&mut chat, &bob, &with_bob, "b1", "hi alice").await;
    send_text(&mut chat, &bob, &not_alices, "n1", "alice cannot see this").await;

    let chats = chats_of(&app, &alice).await;
    assert_eq!(chat_ids(&chats), [with_bob.as_str(), with_carol.as_str()]);
    assert_eq!(chats[0].user_ids, ["alice", "bob"], "members are sorted");
    assert_eq!(chats[1].user_ids, ["alice", "carol"]);
    assert_eq!(chats[0].last_message.as_ref(), Some(&to_bob));
    for summary in &chats {
        assert!(
            (1..=unix_now()).contains(&summary.created_at),
            "created_at {} is not a past unix time",
            summary.created_at
        );
    }

    // A new message moves its chat to the top.
    let to_carol = send_text(&mut chat, &alice, &with_carol, "c2", "still there?").await;
    let chats = chats_of(&app, &alice).await;
    assert_eq!(chat_ids(&chats), [with_carol.as_str(), with_bob.as_str()]);
    assert_eq!(chats[0].last_message.as_ref(), Some(&to_carol));

    let bobs: Vec<_> = chats_of(&app, &bob)
        .await
        .into_iter()
        .map(|chat| chat.chat_id)
        .collect();
    assert_eq!(bobs, [not_alices, with_bob]);
}

#[tokio::test]
async fn a_chat_without_messages_is_listed_without_a_last_message() {
    let app = spawn_app().await;
    let (_, bob, chat_id) = alice_and_bob(&app).await;

    let chats = chats_of(&app, &bob).await;
    assert_eq!(
        chat_ids(&chats),
        [chat_id.as_str()],
        "bob sees the chat alice made with him"
    );
    assert_eq!(chats[0].user_ids, ["alice", "bob"]);
    assert_eq!(chats[0].last_message, None);
    assert!(
        chats_of(&app, &signed_up(&app, "carol").await.1)
            .await
            .is_empty()
    );
}

/// The last message of each chat comes as History and Search give it: with its reactions
/// (both chats have one, in one page, so that each gets its own).
#[tokio::test]
async fn the_last_message_comes_with_its_reactions() {
    let app = spawn_app().await;
    let [alice, bob, carol] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let with_bob = new_chat(&app, &alice, &["alice", "bob"]).await;
    let with_carol = new_chat(&app, &alice, &["alice", "carol"]).await;
    let empty = new_chat(&app, &bob, &["alice", "bob", "carol"]).await;
    let mut chat = app.chat().await;
    let to_bob = send_text(&mut chat, &alice, &with_bob, "b1", "lunch?").await;
    let to_carol = send_text(&mut chat, &alice, &with_carol, "c1", "coffee?").await;
    for (token, message, emoji) in [(&bob, &to_bob, "👍"), (&carol, &to_carol, "🎉")] {
        within(chat.react(authed(
            token,
            ReactRequest {
                chat_id: message.chat_id.clone(),
                message_id: message.id.clone(),
                emoji: emoji.to_owned(),
                remove: false,
            },
        )))
        .await
        .expect("react");
    }

    let chats = chats_of(&app, &alice).await;
    assert_eq!(
        chat_ids(&chats),
        [with_carol.as_str(), with_bob.as_str(), empty.as_str()]
    );
    let reactions = |summary: &ChatSummary| {
        summary.last_message.as_ref().map(|message| {
            message
                .reactions
                .iter()
                .map(|reaction| (reaction.emoji.clone(), reaction.user_ids.clone()))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        reactions(&chats[0]),
        Some(vec![("🎉".to_owned(), vec!["carol".to_owned()])])
    );
    assert_eq!(
        reactions(&chats[1]),
        Some(vec![("👍".to_owned(), vec!["bob".to_owned()])])
    );
    assert_eq!(reactions(&chats[2]), None);
}
