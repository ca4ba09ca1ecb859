//! History: pages of at most `limit` messages, oldest first, newest page first, walked back
//! with `before_id` without a gap or a duplicate; `limit = 0` is the default page and large
//! limits are capped.

use chat_core::limits::{HISTORY_DEFAULT_PAGE, HISTORY_MAX_PAGE};
use chat_core::proto::{HistoryRequest, HistoryResponse, Message};

use crate::helpers::*;

async fn page(
    app: &TestApp,
    token: &str,
    chat_id: &str,
    limit: i32,
    before_id: &str,
) -> HistoryResponse {
    let request = HistoryRequest {
        chat_id: chat_id.into(),
        limit,
        before_id: before_id.into(),
    };
    within(app.chat().await.history(authed(token, request)))
        .await
        .unwrap_or_else(|status| panic!("history limit {limit} before {before_id:?}: {status:?}"))
        .into_inner()
}

#[tokio::test]
async fn an_empty_chat_has_an_empty_history() {
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;

    let response = page(&app, &alice, &chat_id, 0, "").await;
    assert!(response.messages.is_empty());
    assert!(!response.has_more);
}

#[tokio::test]
async fn pages_walk_the_whole_chat_oldest_first_without_gap_or_duplicate() {
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let mut chat = app.chat().await;
    let sent = send_in_order(&mut chat, &alice, &chat_id, "m", 7, "text").await;

    let newest = page(&app, &alice, &chat_id, 3, "").await;
    assert_eq!(
        newest.messages,
        sent[4..7],
        "the first page is the newest, oldest first"
    );
    assert!(newest.has_more);

    let middle = page(&app, &alice, &chat_id, 3, &newest.messages[0].id).await;
    assert_eq!(middle.messages, sent[1..4]);
    assert!(middle.has_more);

    let oldest = page(&app, &alice, &chat_id, 3, &middle.messages[0].id).await;
    assert_eq!(oldest.messages, sent[0..1]);
    assert!(!oldest.has_more, "nothing is older than the first message");

    // A page that ends exactly at the first message says so too.
    let exact = page(&app, &alice, &chat_id, 1, &sent[1].id).await;
    assert_eq!(exact.messages, sent[0..1]);
    assert!(!exact.has_more);
}

#[tokio::test]
async fn limit_zero_is_the_default_page_and_large_limits_are_capped() {
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let default = HISTORY_DEFAULT_PAGE as usize;
    let max = HISTORY_MAX_PAGE as usize;
    let sent = send_many(&app, &alice, &chat_id, max + 5, "filler").await;

    let first = page(&app, &alice, &chat_id, 0, "").await;
    assert_eq!(first.messages.len(), default);
    assert_eq!(first.messages, sent[sent.len() - default..]);
    assert!(first.has_more);

    let capped = page(&app, &alice, &chat_id, 10_000, "").await;
    assert_eq!(capped.messages.len(), max);
    assert_eq!(capped.messages, sent[5..]);
    assert!(capped.has_more);

    let rest = page(&app, &alice, &chat_id, i32::MAX, &capped.messages[0].id).await;
    assert_eq!(rest.messages, sent[..5]);
    assert!(!rest.has_more);
}

#[tokio::test]
async fn walking_back_with_the_default_page_returns_every_message_once() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    // Another chat's messages interleave with this one's ids and must not show up.
    let other = new_chat(&app, &alice, &["alice"]).await;
    let sent = send_many(&app, &alice, &chat_id, 120, "filler").await;
    send_many(&app, &alice, &other, 10, "elsewhere").await;

    let mut walked: Vec<Message> = Vec::new();
    let mut before_id = String::new();
    let mut pages = 0;
    loop {
        let response = page(&app, &alice, &chat_id, 0, &before_id).await;
        pages += 1;
        assert!(pages <= 3, "120 messages in pages of 50 take three pages");
        let mut older = response.messages;
        older.append(&mut walked);
        walked = older;
        if !response.has_more {
            break;
        }
        before_id = walked[0].id.clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(
        walked, sent,
        "the pages joined must be the whole chat, in order"
    );
}
