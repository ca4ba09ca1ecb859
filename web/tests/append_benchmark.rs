//! How long the app takes to show one new message in an open chat that already shows 1,000
//! (and 10,000, to see what grows with the chat; and 1,000 beside 500 other chats in the
//! list, to see what grows with the list), measured in headless Chromium: from handing
//! the message to the live state (as the stream does) until its row is in the DOM. And how
//! long a presence change takes to show on its dot in a list of 500 chats. A benchmark, not
//! a test, so it is ignored by default:
//!
//! ```sh
//! WASM_BINDGEN_TEST_TIMEOUT=300 CHROMEDRIVER=/usr/bin/chromedriver \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!     cargo test -p chat-web --target wasm32-unknown-unknown --release \
//!     --test append_benchmark -- --include-ignored --nocapture
//! ```
//!
//! It prints the median and 95th percentile; the figures are in BENCHMARKS.md.
#![cfg(target_arch = "wasm32")]

use chat_core::proto;
use chat_web::api::{Api, Session};
use chat_web::components::chat_list::ChatList;
use chat_web::components::message_list::MessageList;
use chat_web::live::model::ChatMessage;
use chat_web::live::{Live, create_live};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{Element, HtmlElement};

wasm_bindgen_test_configure!(run_in_browser);

/// Appends measured; a few more before them warm up the page.
const MEASURED: usize = 50;
const WARM_UP: usize = 5;
const CHAT: &str = "a";

/// Mounts the chat list beside the open chat's message log, as the chats page does, with a
/// live state that is not connected.
fn mount() -> (
    HtmlElement,
    Live,
    leptos::mount::UnmountHandle<impl Mountable>,
) {
    let document = web_sys::window().unwrap().document().unwrap();
    let root: HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&root).unwrap();
    let (live_tx, live_rx) = std::sync::mpsc::channel();
    let handle = leptos::mount::mount_to(root.clone(), move || {
        let session = Session {
            user_id: "alice".into(),
            token: "00".repeat(32),
            expires_at: i64::MAX,
        };
        let live = create_live(
            Api::new("http://127.0.0.1:9".into()),
            &session,
            Callback::new(|_| ()),
        );
        live_tx.send(live).unwrap();
        view! {
            <ChatList />
            <MessageList chat_id=CHAT.to_string() />
        }
    });
    (root, live_rx.recv().unwrap(), handle)
}

fn message(id: u64) -> proto::Message {
    proto::Message {
        id: id.to_string(),
        chat_id: CHAT.into(),
        client_id: format!("c{id}"),
        user_id: if id.is_multiple_of(3) { "alice" } else { "bob" }.into(),
        // A message every ten minutes: 1,000 span a week, 10,000 ten weeks of day separators.
        sent_at: 1_700_000_000 + id as i64 * 600,
        text: format!("message number {id}, long enough to wrap like a real one might"),
        // One message in ten answers an earlier one, as in a lively chat: its quote follows
        // the original.
        reply_to: id.is_multiple_of(10).then(|| proto::ReplyPreview {
            message_id: (id - 5).to_string(),
            user_id: "bob".into(),
            text_prefix: format!("message number {}", id - 5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits until the row of message `id` is the last row of the log; panics after five
/// seconds. It looks only at the last element, so the wait costs the same at any length.
async fn until_last(log: &Element, id: u64) {
    let id = id.to_string();
    let started = now_ms();
    while log
        .last_element_child()
        .and_then(|row| row.get_attribute("data-id"))
        .as_deref()
        != Some(id.as_str())
    {
        assert!(now_ms() - started < 5_000.0, "message {id} never appeared");
        // Leptos runs its effects as tasks of the page's executor: let them run.
        leptos::task::tick().await;
    }
}

fn now_ms() -> f64 {
    web_sys::window().unwrap().performance().unwrap().now()
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run it with --include-ignored"]
async fn append_one_message_to_an_open_chat_of_1000() {
    measure(1_000, 0).await;
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run it with --include-ignored"]
async fn append_one_message_to_an_open_chat_of_10000() {
    measure(10_000, 0).await;
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run it with --include-ignored"]
async fn append_one_message_to_an_open_chat_of_1000_beside_500_chats() {
    measure(1_000, 500).await;
}

/// The open chat, whose newest message is `newest`, and `others` more chats of two, with
/// `user0`, `user1`...
fn chats(newest: u64, others: usize) -> Vec<proto::ChatSummary> {
    let summary = |chat_id: &str, other: &str, last: proto::Message| proto::ChatSummary {
        chat_id: chat_id.into(),
        user_ids: vec!["alice".into(), other.into()],
        last_message: Some(last),
        created_at: 1_700_000_000,
        ..Default::default()
    };
    let mut chats = vec![summary(CHAT, "bob", message(newest))];
    chats.extend((0..others).map(|n| {
        let chat_id = format!("other{n}");
        let last = proto::Message {
            chat_id: chat_id.clone(),
            ..message(n as u64 + 1)
        };
        summary(&chat_id, &format!("user{n}"), last)
    }));
    chats
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run it with --include-ignored"]
async fn presence_change_beside_500_chats() {
    const OTHERS: usize = 500;
    let (root, live, handle) = mount();
    live.model
        .update(|model| model.set_chats(&chats(1, OTHERS), None));
    let list = root.query_selector("nav.chat-list").unwrap().unwrap();
    let mut times_ms = Vec::with_capacity(MEASURED);
    for round in 0..WARM_UP + MEASURED {
        let user = format!("user{}", round * 7 % OTHERS);
        let online = round % 2 == 0;
        let shown = format!(
            "[aria-label=\"{user}: {}\"]",
            if online { "online" } else { "offline" }
        );
        let started = now_ms();
        live.on_presence(&proto::Presence {
            user_id: user.clone(),
            online,
            last_seen: 0,
        });
        while list.query_selector(&shown).unwrap().is_none() {
            assert!(now_ms() - started < 5_000.0, "{user}'s dot never changed");
            leptos::task::tick().await;
        }
        let took = now_ms() - started;
        if round >= WARM_UP {
            times_ms.push(took);
        }
        gloo_timers::future::TimeoutFuture::new(10).await;
    }
    drop(handle);
    root.remove();
    report(&format!("presence change beside {OTHERS} chats"), times_ms);
}

/// Shows a chat of `shown` messages, with `others` more chats in the list, then appends
/// and times one message at a time.
async fn measure(shown: u64, others: usize) {
    let (root, live, handle) = mount();
    let chats = chats(shown, others);
    let history: Vec<ChatMessage> = (1..=shown)
        .filter_map(|id| ChatMessage::from_proto(&message(id)))
        .collect();
    live.model.update(|model| {
        model.set_chats(&chats, None);
        model.open(CHAT);
        model.add_page(CHAT, history, false);
    });
    let log = root.query_selector("[role=log]").unwrap().unwrap();
    until_last(&log, shown).await;
    assert_eq!(
        root.query_selector_all("article.message").unwrap().length() as u64,
        shown
    );

    let mut times_ms = Vec::with_capacity(MEASURED);
    for round in 0..WARM_UP + MEASURED {
        let id = shown + 1 + round as u64;
        let started = now_ms();
        live.receive(&message(id), true);
        until_last(&log, id).await;
        let took = now_ms() - started;
        if round >= WARM_UP {
            times_ms.push(took);
        }
        // Let the browser lay out and paint between appends, as between real messages.
        gloo_timers::future::TimeoutFuture::new(10).await;
    }
    assert_eq!(
        root.query_selector_all("article.message").unwrap().length() as usize,
        shown as usize + WARM_UP + MEASURED
    );
    drop(handle);
    root.remove();

    report(
        &format!("append to an open chat of {shown} beside {others} chats"),
        times_ms,
    );
}

/// Prints the median and 95th percentile of `times_ms`.
fn report(what: &str, mut times_ms: Vec<f64>) {
    times_ms.sort_by(f64::total_cmp);
    let median = times_ms[times_ms.len() / 2];
    let p95 = times_ms[(times_ms.len() * 95).div_ceil(100) - 1];
    console_log!(
        "{what}: median {median:.2} ms, p95 {p95:.2} ms over {} times",
        times_ms.len()
    );
}
