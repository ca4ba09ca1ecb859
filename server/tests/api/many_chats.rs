//! Being put in many chats: one user with sockpuppets puts a victim in hundreds of chats, each
//! with a message as large as a message can be. The victim's List must still answer, one page
//! at a time, over native gRPC and gRPC-web, and the pages together must hold every chat once,
//! in List's order.

use std::collections::HashSet;

use chat_core::limits::{LIST_DEFAULT_PAGE, LIST_MAX_PAGE, TEXT_MAX_CHARS};
use chat_core::proto::{ChatSummary, ListRequest, ListResponse, NewRequest};
use tonic::Code;

use crate::helpers::*;

/// More chats than fit in one 4 MiB gRPC message when each carries a 16 KB message.
const CHATS: usize = 280;
/// Sockpuppets: their subsets, with the attacker and the victim, make `CHATS` member sets.
const PUPPETS: usize = 9;

/// Mallory and her puppets put the victim in [`CHATS`] chats, each with a 16 KB message.
/// Returns the victim's token.
async fn victim_of_many_chats(app: &TestApp) -> String {
    let (_, mallory) = signed_up(app, "mallory").await;
    let (_, victim) = signed_up(app, "victim").await;
    for n in 0..PUPPETS {
        signed_up(app, &format!("puppet{n}")).await;
    }
    let largest = "😀".repeat(TEXT_MAX_CHARS);
    let numbers: Vec<usize> = (0..CHATS).collect();
    for batch in numbers.chunks(8) {
        let attacks = batch.iter().map(|&n| {
            let (mallory, largest) = (&mallory, &largest);
            async move {
                let mut user_ids = vec!["mallory".to_owned(), "victim".to_owned()];
                user_ids.extend(
                    (0..PUPPETS)
                        .filter(|bit| (n + 1) & (1 << bit) != 0)
                        .map(|bit| format!("puppet{bit}")),
                );
                let mut chat = app.chat().await;
                let chat_id = within(chat.new_chat(authed(mallory, NewRequest { user_ids })))
                    .await
                    .unwrap_or_else(|status| panic!("cannot create chat {n}: {status:?}"))
                    .into_inner()
                    .chat_id;
                send_text(&mut chat, mallory, &chat_id, &format!("big-{n}"), largest).await;
            }
        });
        futures::future::join_all(attacks).await;
    }
    victim
}

/// Every page of the caller's chats, read with `limit` through `$client`.
macro_rules! all_pages {
    ($client:expr, $token:expr, $limit:expr) => {{
        let mut pages: Vec<ListResponse> = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListRequest {
                limit: $limit,
                page_token: page_token.clone(),
            };
            let page = within($client.list(authed($token, request)))
                .await
                .unwrap_or_else(|status| panic!("List page {} failed: {status:?}", pages.len()))
                .into_inner();
            page_token = page.next_page_token.clone();
            let has_more = page.has_more;
            assert_eq!(has_more, !page_token.is_empty(), "a next page has a token");
            pages.push(page);
            if !has_more {
                break pages;
            }
            assert!(pages.len() <= CHATS, "paging does not end");
        }
    }};
}

/// Where a chat stands in List's order: activity, newest message id, chat id, all descending.
fn position(chat: &ChatSummary) -> (i64, u64, String) {
    let last = chat
        .last_message
        .as_ref()
        .expect("every chat has a message");
    (last.sent_at, id_number(&last.id), chat.chat_id.clone())
}

fn chat_ids(chats: &[ChatSummary]) -> Vec<&str> {
    chats.iter().map(|chat| chat.chat_id.as_str()).collect()
}

fn assert_every_chat_once_in_order(pages: &[ListResponse], page_size: usize) {
    for page in pages {
        assert!(
            page.chats.len() <= page_size,
            "a page of {} chats",
            page.chats.len()
        );
    }
    let chats: Vec<&ChatSummary> = pages.iter().flat_map(|page| &page.chats).collect();
    let distinct: HashSet<&str> = chats.iter().map(|chat| chat.chat_id.as_str()).collect();
    assert_eq!(chats.len(), CHATS, "every chat is listed");
    assert_eq!(distinct.len(), CHATS, "no chat is listed twice");
    for pair in chats.windows(2) {
        assert!(
            position(pair[0]) > position(pair[1]),
            "most recently active first"
        );
    }
}

#[tokio::test]
async fn a_victim_put_in_hundreds_of_chats_with_the_largest_messages_can_still_list_them() {
    let app = spawn_app().await;
    let victim = victim_of_many_chats(&app).await;

    // An empty ListRequest, as a client generated before paging sends it, gets the first page.
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    let first = within(native.list(authed(&victim, ListRequest::default())))
        .await
        .unwrap_or_else(|status| panic!("List over native gRPC failed: {status:?}"))
        .into_inner();
    let first_web = within(web.list(authed(&victim, ListRequest::default())))
        .await
        .unwrap_or_else(|status| panic!("List over gRPC-web failed: {status:?}"))
        .into_inner();
    assert_eq!(first.chats.len(), LIST_DEFAULT_PAGE as usize);
    assert!(first.has_more);
    assert_eq!(first_web, first);

    // The pages together hold every chat once, in order, on both transports; a limit above
    // the maximum is capped.
    let pages = all_pages!(native, &victim, 0);
    assert_every_chat_once_in_order(&pages, LIST_DEFAULT_PAGE as usize);
    let pages = all_pages!(web, &victim, i32::MAX);
    assert_eq!(pages[0].chats.len(), LIST_MAX_PAGE as usize);
    assert_every_chat_once_in_order(&pages, LIST_MAX_PAGE as usize);
    let pages = all_pages!(native, &victim, 7);
    assert_every_chat_once_in_order(&pages, 7);
}

#[tokio::test]
async fn paging_neither_skips_nor_repeats_a_chat_when_another_one_moves_to_the_front() {
    let app = spawn_app().await;
    let [alice, _, _, _] = signed_up_all(&app, ["alice", "bob", "carol", "dave"]).await;
    let mut chat = app.chat().await;
    let mut chats = Vec::new();
    for (n, other) in ["bob", "carol", "dave"].into_iter().enumerate() {
        let chat_id = new_chat(&app, &alice, &["alice", other]).await;
        send_text(&mut chat, &alice, &chat_id, &format!("m{n}"), "hello").await;
        chats.push(chat_id);
    }
    let page = |page_token: String| ListRequest {
        limit: 1,
        page_token,
    };
    let first = within(chat.list(authed(&alice, page(String::new()))))
        .await
        .expect("first page")
        .into_inner();
    assert_eq!(chat_ids(&first.chats), [chats[2].as_str()]);
    assert!(first.has_more);
    // The oldest chat gets a message between two pages: it moves to the front, and the pages
    // after the first still hold the other chat exactly once.
    send_text(&mut chat, &alice, &chats[0], "late", "moved").await;
    let second = within(chat.list(authed(&alice, page(first.next_page_token))))
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(chat_ids(&second.chats), [chats[1].as_str()]);
    assert!(
        !second.has_more,
        "the moved chat is not listed again after the cursor"
    );
    assert!(second.next_page_token.is_empty());

    // A page token that is not one is INVALID_ARGUMENT.
    let status = within(chat.list(authed(&alice, page("not a token".into()))))
        .await
        .expect_err("a made-up page token");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}
