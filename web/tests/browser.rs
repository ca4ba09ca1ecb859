//! Component and client-logic tests in a real browser (headless Chromium through
//! wasm-bindgen-test-runner). Each test mounts a component into the page, acts like a user,
//! and reads the DOM. None of them reaches a server. They run only on wasm32.
#![cfg(target_arch = "wasm32")]

use chat_core::proto;
use chat_web::api::{Api, Session};
use chat_web::components::chat_list::ChatList;
use chat_web::components::composer::Composer;
use chat_web::components::connection_indicator::ConnectionIndicator;
use chat_web::components::message_list::MessageList;
use chat_web::live::model::{Delivery, Shown};
use chat_web::live::{Live, Status, create_live};
use chat_web::pages::sign_in::SignInPage;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{Element, HtmlElement, HtmlInputElement, HtmlTextAreaElement};

wasm_bindgen_test_configure!(run_in_browser);

/// Lets Leptos run its effects and render.
async fn settle() {
    gloo_timers::future::TimeoutFuture::new(20).await;
}

/// A fresh container in the page for one test.
fn container() -> HtmlElement {
    let document = web_sys::window().unwrap().document().unwrap();
    let div: HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&div).unwrap();
    div
}

fn find(root: &Element, selector: &str) -> Element {
    root.query_selector(selector)
        .unwrap()
        .unwrap_or_else(|| panic!("nothing matches {selector}"))
}

fn type_into(input: &Element, text: &str) {
    let event = web_sys::Event::new("input").unwrap();
    if let Some(input) = input.dyn_ref::<HtmlInputElement>() {
        input.set_value(text);
    } else if let Some(area) = input.dyn_ref::<HtmlTextAreaElement>() {
        area.set_value(text);
    }
    input.dispatch_event(&event).unwrap();
}

fn click(element: &Element) {
    element.unchecked_ref::<HtmlElement>().click();
}

fn button(root: &Element, name: &str) -> Element {
    let buttons = root.query_selector_all("button").unwrap();
    (0..buttons.length())
        .filter_map(|i| buttons.item(i))
        .map(|node| node.unchecked_into::<Element>())
        .find(|button| button.text_content().unwrap_or_default().trim() == name)
        .unwrap_or_else(|| panic!("no button named {name:?}"))
}

fn session(user: &str) -> Session {
    Session {
        user_id: user.into(),
        token: "00".repeat(32),
        expires_at: i64::MAX,
    }
}

/// Mounts `view` with a live state of `user` that is not connected, and returns both. Tests
/// may run interleaved in one page, and the outbox persists in localStorage per user, so a
/// test that writes to the outbox uses a user of its own.
fn mount_with_live<V: IntoView + 'static>(
    user: &'static str,
    view: impl FnOnce() -> V + 'static,
) -> (HtmlElement, Live) {
    let root = container();
    let (live_tx, live_rx) = std::sync::mpsc::channel();
    let handle = leptos::mount::mount_to(root.clone(), move || {
        let live = create_live(
            Api::new("http://127.0.0.1:9".into()),
            &session(user),
            Callback::new(|_| ()),
        );
        live_tx.send(live).unwrap();
        view()
    });
    handle.forget();
    (root, live_rx.recv().unwrap())
}

fn chat(chat_id: &str, members: &[&str], last: Option<(u64, &str, &str)>) -> proto::ChatSummary {
    proto::ChatSummary {
        chat_id: chat_id.into(),
        user_ids: members.iter().map(|m| m.to_string()).collect(),
        last_message: last.map(|(id, sender, text)| proto::Message {
            id: id.to_string(),
            chat_id: chat_id.into(),
            user_id: sender.into(),
            sent_at: 1_700_000_000 + id as i64,
            text: text.into(),
            ..Default::default()
        }),
        created_at: 1_700_000_000,
    }
}

fn shown(id: u64, sender: &str, text: &str) -> Shown {
    Shown {
        id,
        client_id: format!("c{id}"),
        sender: sender.into(),
        sent_at: 1_700_000_000 + id as i64,
        subject: String::new(),
        text: text.into(),
    }
}

#[wasm_bindgen_test]
async fn sign_up_checks_fields_with_the_shared_rules_before_any_request() {
    let root = container();
    let signed_in = RwSignal::new(false);
    leptos::mount::mount_to(root.clone(), move || {
        view! { <SignInPage on_signed_in=Callback::new(move |_| signed_in.set(true)) notice=Signal::derive(|| None::<String>) /> }
    })
    .forget();
    settle().await;
    type_into(&find(&root, "#sign-in-user"), "al");
    type_into(&find(&root, "#sign-in-password"), "short");
    click(&button(&root, "Sign up"));
    settle().await;
    let user_error = find(&root, "#sign-in-user-error").text_content().unwrap();
    let password_error = find(&root, "#sign-in-password-error")
        .text_content()
        .unwrap();
    assert!(
        user_error.contains("must be 3 to 32 characters"),
        "{user_error}"
    );
    assert!(
        password_error.contains("at least 8 characters"),
        "{password_error}"
    );
    assert_eq!(
        find(&root, "#sign-in-user")
            .get_attribute("aria-invalid")
            .as_deref(),
        Some("true")
    );
    assert!(!signed_in.get_untracked());
    // Labels name the fields, so people and tests find them by name.
    assert_eq!(
        find(&root, "label[for=sign-in-user]")
            .text_content()
            .unwrap(),
        "Username"
    );
    assert_eq!(
        find(&root, "label[for=sign-in-password]")
            .text_content()
            .unwrap(),
        "Password"
    );
}

#[wasm_bindgen_test]
async fn the_chat_list_is_most_recent_first_with_unread_badges() {
    let (root, live) = mount_with_live("alice", || view! { <ChatList /> });
    live.model.update(|model| {
        model.set_chats(&[
            chat("a", &["alice", "bob"], Some((5, "bob", "old news"))),
            chat("b", &["alice", "carol"], None),
        ]);
        model.receive(shown(9, "carol", "fresh"), "b");
    });
    settle().await;
    let entries = root.query_selector_all(".chat-entry").unwrap();
    assert_eq!(entries.length(), 2);
    let first = entries.item(0).unwrap().text_content().unwrap();
    assert!(
        first.contains("carol") && first.contains("carol: fresh"),
        "{first}"
    );
    assert_eq!(
        find(&root, ".badge").get_attribute("aria-label").as_deref(),
        Some("1 unread")
    );
    click(&entries.item(0).unwrap().unchecked_into());
    settle().await;
    assert!(
        root.query_selector(".badge").unwrap().is_none(),
        "opening a chat reads it"
    );
}

#[wasm_bindgen_test]
async fn messages_render_as_text_with_own_on_the_right_and_delivery_states() {
    let (root, live) = mount_with_live(
        "alice",
        || view! { <MessageList chat_id=Signal::derive(|| "a".to_string()) /> },
    );
    live.model.update(|model| {
        model.set_chats(&[chat("a", &["alice", "bob"], None)]);
        model.add_page(
            "a",
            vec![
                shown(
                    1,
                    "bob",
                    "<img src=x onerror=\"window.hacked=1\"><script>window.hacked=2</script>",
                ),
                shown(2, "alice", "mine"),
            ],
            false,
        );
        model.queue("a", "p-1".into(), "on its way".into());
        model.queue("a", "p-2".into(), "refused".into());
        model.mark_failed("p-2", "Message text is too long".into(), false);
    });
    settle().await;
    let log = find(&root, "[role=log]");
    assert_eq!(log.get_attribute("aria-label").as_deref(), Some("Messages"));
    assert!(
        log.query_selector("img, script").unwrap().is_none(),
        "text must never become markup"
    );
    assert!(
        log.text_content()
            .unwrap()
            .contains("<script>window.hacked=2</script>")
    );
    assert!(
        js_sys::Reflect::get(&web_sys::window().unwrap(), &"hacked".into())
            .unwrap()
            .is_undefined()
    );
    let articles = log.query_selector_all("article").unwrap();
    assert_eq!(articles.length(), 4, "{}", log.inner_html());
    let second: Element = articles.item(1).unwrap().unchecked_into();
    assert!(second.class_list().contains("mine"));
    assert!(log.text_content().unwrap().contains("Sending…"));
    // Retry queues the message again under its client id; while the stream is down it waits
    // for the connection like every queued message.
    click(&button(&log, "Retry"));
    settle().await;
    assert_eq!(delivery_of(live, "p-2"), Some(Delivery::Pending));
    // Connected, the outbox goes out one message at a time, oldest first. No server listens
    // on port 9 in this test, so each attempt fails as "offline", which the outbox retries
    // by itself when the connection is back.
    live.status.set(Status::Connected);
    live.flush_outbox();
    let failed = |id| matches!(delivery_of(live, id), Some(Delivery::Failed { .. }));
    for _ in 0..100 {
        if failed("p-1") && failed("p-2") {
            break;
        }
        settle().await;
    }
    for id in ["p-1", "p-2"] {
        let delivery = delivery_of(live, id);
        let Some(Delivery::Failed { reason, auto_retry }) = delivery else {
            panic!("{id} should have been sent and failed: {delivery:?}");
        };
        assert!(reason.starts_with("Cannot reach the server"), "{reason}");
        assert!(auto_retry);
    }
}

/// Where the queued message `client_id` stands; `None` once it has left the outbox.
fn delivery_of(live: Live, client_id: &str) -> Option<Delivery> {
    live.model.with_untracked(|model| {
        model
            .outbox
            .iter()
            .find(|outgoing| outgoing.client_id == client_id)
            .map(|outgoing| outgoing.delivery.clone())
    })
}

#[wasm_bindgen_test]
async fn the_composer_refuses_blank_text_and_queues_the_rest() {
    let (root, live) = mount_with_live(
        "dora",
        || view! { <Composer chat_id=Signal::derive(|| "a".to_string()) /> },
    );
    settle().await;
    let textarea = find(&root, "textarea");
    assert_eq!(
        find(&root, "label[for=composer-text]")
            .text_content()
            .unwrap(),
        "Message"
    );
    type_into(&textarea, "   ");
    click(&button(&root, "Send"));
    settle().await;
    assert!(
        find(&root, "#composer-error")
            .text_content()
            .unwrap()
            .contains("empty")
    );
    assert_eq!(live.model.with_untracked(|model| model.outbox.len()), 0);

    type_into(&textarea, "hello\nworld");
    let init = web_sys::KeyboardEventInit::new();
    init.set_key("Enter");
    init.set_bubbles(true);
    init.set_cancelable(true);
    let enter =
        web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    textarea.dispatch_event(&enter).unwrap();
    settle().await;
    let queued = live.model.with_untracked(|model| {
        model
            .outbox
            .iter()
            .map(|o| o.text.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(queued, vec!["hello\nworld"]);
    assert_eq!(
        textarea.unchecked_ref::<HtmlTextAreaElement>().value(),
        "",
        "the box clears once queued"
    );
}

#[wasm_bindgen_test]
async fn the_connection_indicator_says_what_is_happening() {
    let (root, live) = mount_with_live("erin", || view! { <ConnectionIndicator /> });
    live.status.set(Status::Offline { retry_in_secs: 3 });
    settle().await;
    let status = find(&root, "[role=status]");
    assert_eq!(status.text_content().unwrap(), "Offline — retrying in 3 s");
    live.status.set(Status::Connected);
    settle().await;
    assert_eq!(status.text_content().unwrap(), "Connected");
}
