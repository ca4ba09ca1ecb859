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
use chat_web::live::activity::Reading;
use chat_web::live::model::{ChatMessage, Delivery, Outgoing, Quote};
use chat_web::live::{Live, Status, create_live};
use chat_web::pages::sign_in::SignInPage;
use chat_web::storage::StoredOutbox;
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
        ..Default::default()
    }
}

fn shown(id: u64, sender: &str, text: &str) -> ChatMessage {
    ChatMessage {
        id,
        client_id: format!("c{id}"),
        sender: sender.into(),
        sent_at: 1_700_000_000 + id as i64,
        text: text.into(),
        ..ChatMessage::default()
    }
}

#[wasm_bindgen_test]
async fn sign_up_checks_fields_with_the_shared_rules_before_any_request() {
    let root = container();
    let signed_in = RwSignal::new(false);
    leptos::mount::mount_to(root.clone(), move || {
        view! { <SignInPage on_signed_in=Callback::new(move |_| signed_in.set(true)) notice=RwSignal::new(None::<String>) /> }
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
        // The field is labelled "Username", and the sentence calls it the same.
        user_error.starts_with("Username \"al\" must be 3 to 32 characters"),
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
        model.set_chats(
            &[
                chat("a", &["alice", "bob"], Some((5, "bob", "old news"))),
                chat("b", &["alice", "carol"], None),
            ],
            None,
        );
        model.receive(shown(9, "carol", "fresh"), "b", true);
    });
    settle().await;
    let entries = root.query_selector_all(".chat-entry").unwrap();
    assert_eq!(entries.length(), 2);
    let first = entries.item(0).unwrap().text_content().unwrap();
    assert!(
        // The text is isolated (U+2068 … U+2069), so it keeps its own direction.
        first.contains("carol") && first.contains("carol: \u{2068}fresh\u{2069}"),
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

    // A message in the other chat moves its row to the top and updates it in place: the
    // same element, so keyboard focus on it stays.
    let row_a = entries.item(1).unwrap();
    live.receive(&proto_message("a", 12, "bob", 1_700_000_100), true);
    settle().await;
    let entries = root.query_selector_all(".chat-entry").unwrap();
    assert!(entries.item(0).unwrap().is_same_node(Some(&row_a)));
    let first = entries.item(0).unwrap().text_content().unwrap();
    assert!(first.contains("bob: \u{2068}message 12\u{2069}"), "{first}");
    assert_eq!(
        find(&root, ".badge").get_attribute("aria-label").as_deref(),
        Some("1 unread")
    );

    // A message of one's own is said to be "You"'s, not one's own name's.
    live.receive(&proto_message("b", 13, "alice", 1_700_000_200), true);
    settle().await;
    let first = root
        .query_selector(".chat-entry")
        .unwrap()
        .unwrap()
        .text_content()
        .unwrap();
    assert!(first.contains("You: \u{2068}message 13\u{2069}"), "{first}");
}

#[wasm_bindgen_test]
async fn the_chat_list_offers_more_chats_while_the_server_has_more_pages() {
    let (root, live) = mount_with_live("alice", || view! { <ChatList /> });
    live.set_chats(&[chat("a", &["alice", "bob"], None)], Some("page-2".into()));
    settle().await;
    assert_eq!(
        find(&root, "button.load-more").text_content().as_deref(),
        Some("Load more chats")
    );
    live.model.update(|model| {
        model.add_chat_page(&[chat("b", &["alice", "carol"], None)], None);
    });
    settle().await;
    assert_eq!(root.query_selector_all(".chat-entry").unwrap().length(), 2);
    assert!(
        root.query_selector("button.load-more").unwrap().is_none(),
        "no button once every page is loaded"
    );
}

#[wasm_bindgen_test]
async fn messages_render_as_text_with_own_on_the_right_and_delivery_states() {
    let (root, live) = mount_with_live(
        "alice",
        || view! { <MessageList chat_id="a".to_string() /> },
    );
    live.model.update(|model| {
        model.set_chats(&[chat("a", &["alice", "bob"], None)], None);
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
        model.queue("a", "p-1".into(), "on its way".into(), None, 0);
        model.queue("a", "p-2".into(), "refused".into(), None, 0);
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
    // on port 9 in this test, so each attempt fails as "offline": the oldest stays pending
    // and goes again by itself shortly (the stream may be up while a Send is lost), and the
    // one written after it waits its turn.
    let sends = watch_fetches("/chat.Chat/Send");
    live.status.set(Status::Connected);
    live.flush_outbox();
    wait_for_fetches(&sends, 2).await;
    for id in ["p-1", "p-2"] {
        assert_eq!(delivery_of(live, id), Some(Delivery::Pending), "{id}");
    }
    assert!(log.text_content().unwrap().contains("Sending…"));
}

/// Counts, from now on, the page's fetches whose address ends with `path`.
fn watch_fetches(path: &str) -> js_sys::Function {
    js_sys::Function::new_with_args(
        "path",
        "let count = 0;
         const fetch = window.fetch;
         window.fetch = function (input, init) {
             if (String(input.url ?? input).endsWith(path)) count += 1;
             return fetch.call(this, input, init);
         };
         return () => count;",
    )
    .call1(&wasm_bindgen::JsValue::NULL, &path.into())
    .unwrap()
    .unchecked_into()
}

/// Waits (up to 10 s) until `counter` of [`watch_fetches`] has counted `count` fetches.
async fn wait_for_fetches(counter: &js_sys::Function, count: u32) {
    let counted = || {
        counter
            .call0(&wasm_bindgen::JsValue::NULL)
            .unwrap()
            .as_f64()
            .unwrap_or(0.0)
    };
    for _ in 0..100 {
        if counted() >= f64::from(count) {
            return;
        }
        gloo_timers::future::TimeoutFuture::new(100).await;
    }
    panic!("{} fetches, not {count}", counted());
}

#[wasm_bindgen_test]
async fn web_addresses_in_a_message_are_links_that_open_apart_and_nothing_else_is() {
    let text =
        "docs at https://example.com/a_(b)?q=1&r=2. not javascript:alert(1), www.example.org";
    let (root, live) = mount_with_live(
        "alice",
        || view! { <MessageList chat_id="l".to_string() /> },
    );
    live.model.update(|model| {
        model.set_chats(&[chat("l", &["alice", "bob"], None)], None);
        model.add_page("l", vec![shown(1, "bob", text)], false);
    });
    settle().await;
    let log = find(&root, "[role=log]");
    let links = log.query_selector_all("a").unwrap();
    assert_eq!(links.length(), 1, "{}", log.inner_html());
    let link: Element = links.item(0).unwrap().unchecked_into();
    let address = "https://example.com/a_(b)?q=1&r=2";
    assert_eq!(link.get_attribute("href").as_deref(), Some(address));
    assert_eq!(link.text_content().as_deref(), Some(address));
    assert_eq!(link.get_attribute("target").as_deref(), Some("_blank"));
    let rel = link.get_attribute("rel").unwrap_or_default();
    assert!(
        rel.contains("noopener") && rel.contains("noreferrer"),
        "{rel}"
    );
    // The text reads as written, the link's part included.
    assert_eq!(find(&log, ".text").text_content().as_deref(), Some(text));
}

#[wasm_bindgen_test]
async fn a_reply_shows_its_quote_which_follows_the_original_and_reply_starts_one() {
    let (root, live) = mount_with_live("quoter", || {
        view! { <MessageList chat_id="q".to_string() /> <Composer chat_id="q".to_string() /> }
    });
    let original = shown(1, "bob", "<b>the plan</b> is simple");
    let reply = ChatMessage {
        reply: Some(Quote::of(&original)),
        ..shown(2, "quoter", "agreed")
    };
    live.model.update(|model| {
        model.set_chats(&[chat("q", &["bob", "quoter"], None)], None);
        model.add_page("q", vec![original.clone(), reply], false);
    });
    settle().await;
    let log = find(&root, "[role=log]");
    let quote = find(&log, "article[data-id=\"2\"] .quote");
    assert_eq!(
        quote.text_content().as_deref(),
        Some("bob<b>the plan</b> is simple"),
        "the quote is text, never markup"
    );
    // The original deleted (a change from the stream), the quote follows with the placeholder.
    live.model.update(|model| {
        model.apply_change(
            3,
            ChatMessage {
                text: String::new(),
                deleted: true,
                ..original
            },
            "q",
        );
    });
    settle().await;
    let quote = find(&log, "article[data-id=\"2\"] .quote");
    assert_eq!(quote.text_content().as_deref(), Some("bobMessage deleted"));

    // "Reply" puts the message's quote above the composer; "Cancel reply" takes it away.
    let mine = find(&log, "article[data-id=\"2\"]");
    click(&button(&mine, "Reply"));
    settle().await;
    let replying = find(&root, ".replying");
    assert!(replying.text_content().unwrap().contains("agreed"));
    click(&button(&replying, "Cancel reply"));
    settle().await;
    assert!(root.query_selector(".replying").unwrap().is_none());
}

#[wasm_bindgen_test]
async fn day_separators_and_the_divider_move_with_what_is_loaded() {
    let (root, live) =
        mount_with_live("dora", || view! { <MessageList chat_id="d".to_string() /> });
    // Noon (UTC) of three days in a row: the same three days in any time zone of the world.
    const NOON: i64 = 1_699_963_200;
    const DAY: i64 = 86_400;
    let sent = |id: u64, day: i64, minute: i64| ChatMessage {
        sent_at: NOON + day * DAY + minute * 60,
        ..shown(id, "eve", &format!("message {id}"))
    };
    live.model.update(|model| {
        model.set_chats(&[chat("d", &["dora", "eve"], None)], None);
        model.add_page(
            "d",
            vec![sent(10, 0, 1), sent(11, 0, 2), sent(12, 1, 0)],
            true,
        );
        model.reading.insert(
            "d".into(),
            Reading {
                divider: Some(11),
                ..Reading::default()
            },
        );
    });
    settle().await;
    let log = find(&root, "[role=log]");
    // The ids of the messages that a separator of `class` comes before (the divider may
    // stand between a day's separator and its first message).
    let after = |class: &str| {
        let rows = log
            .query_selector_all(&format!(
                "p.{class} + article, p.{class} + p.divider + article"
            ))
            .unwrap();
        (0..rows.length())
            .map(|at| {
                let row: Element = rows.item(at).unwrap().unchecked_into();
                row.get_attribute("data-id").unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(after("day"), ["10", "12"], "{}", log.inner_html());
    assert_eq!(after("divider"), ["12"]);

    // A message of the same day adds no separator; one of the next day does.
    live.receive(&proto_message("d", 13, "eve", NOON + DAY + 60), true);
    settle().await;
    assert_eq!(after("day"), ["10", "12"]);
    live.receive(&proto_message("d", 14, "eve", NOON + 2 * DAY), true);
    settle().await;
    assert_eq!(after("day"), ["10", "12", "14"]);

    // An older page of the first day: its day's separator moves up to it; the divider stays.
    live.model
        .update(|model| model.add_page("d", vec![sent(5, 0, 0)], false));
    settle().await;
    assert_eq!(after("day"), ["5", "12", "14"]);
    assert_eq!(after("divider"), ["12"]);
}

fn proto_message(chat_id: &str, id: u64, sender: &str, sent_at: i64) -> proto::Message {
    proto::Message {
        id: id.to_string(),
        chat_id: chat_id.into(),
        user_id: sender.into(),
        sent_at,
        text: format!("message {id}"),
        ..Default::default()
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
    let (root, live) = mount_with_live("dora", || view! { <Composer chat_id="a".to_string() /> });
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

fn queued(client_id: &str, queued_at: u64) -> Outgoing {
    Outgoing {
        client_id: client_id.into(),
        chat_id: "7".into(),
        text: format!("text of {client_id}"),
        reply_to: None,
        delivery: Delivery::Pending,
        queued_at,
    }
}

fn client_ids(outbox: &[Outgoing]) -> Vec<&str> {
    outbox.iter().map(|o| o.client_id.as_str()).collect()
}

/// Two tabs of one browser share the stored outbox: each stores and removes only its own
/// changes, so neither loses a message the other queued, and one removed (sent) stays gone.
#[wasm_bindgen_test]
fn tabs_sharing_the_stored_outbox_never_drop_each_others_messages() {
    let (mut tab_a, none) = StoredOutbox::load("ines");
    let (mut tab_b, _) = StoredOutbox::load("ines");
    assert!(none.is_empty());
    assert!(tab_a.save(&[queued("a-1", 20)]));
    // Tab B never saw a-1: storing its own outbox leaves a-1 alone.
    assert!(tab_b.save(&[queued("b-1", 10)]));
    assert!(
        !tab_b.save(&[queued("b-1", 10)]),
        "nothing changed, nothing written"
    );
    assert_eq!(
        client_ids(&StoredOutbox::load("ines").1),
        ["b-1", "a-1"],
        "oldest first"
    );

    // Told of a change, B reads both; A's message is sent and leaves A's outbox.
    let b_sees = tab_b.reload(&[queued("b-1", 10)]);
    assert_eq!(client_ids(&b_sees), ["b-1", "a-1"]);
    assert!(tab_a.save(&[]));
    assert_eq!(client_ids(&StoredOutbox::load("ines").1), ["b-1"]);
    // B, still showing a-1 until it hears, stores nothing that brings it back.
    assert!(!tab_b.save(&b_sees));
    assert_eq!(client_ids(&tab_b.reload(&b_sees)), ["b-1"]);
    assert!(tab_b.save(&[]));
    assert!(StoredOutbox::load("ines").1.is_empty());
}

/// Exactly what the app stored for an outbox before its storage formats had versions.
const OUTBOX_WITHOUT_VERSION: &str = r#"[{"client_id":"18c2f1a9b3e-0f3a9c2d41b7e580","chat_id":"7","text":"written before the upgrade","delivery":"Pending"},{"client_id":"18c2f1a9b40-9d04e1c2aa3f7b16","chat_id":"7","text":"refused before the upgrade","delivery":{"Failed":{"reason":"Message text is too long","auto_retry":false}}}]"#;

fn local_storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

#[wasm_bindgen_test]
async fn an_outbox_stored_by_an_earlier_release_is_shown_and_sent() {
    local_storage()
        .set_item("chat.outbox.gina", OUTBOX_WITHOUT_VERSION)
        .unwrap();
    let (root, live) =
        mount_with_live("gina", || view! { <MessageList chat_id="7".to_string() /> });
    live.model.update(|model| {
        model.set_chats(&[chat("7", &["gina", "hal"], None)], None);
        model.add_page("7", Vec::new(), false);
    });
    settle().await;
    let log = find(&root, "[role=log]");
    let text = log.text_content().unwrap();
    assert!(
        text.contains("written before the upgrade") && text.contains("Sending…"),
        "{text}"
    );
    assert!(text.contains("refused before the upgrade") && text.contains("Failed"));
    // Moved at once to a key per message in the current format, so the next release reads
    // it too and the other tabs never overwrite it.
    assert_eq!(local_storage().get_item("chat.outbox.gina").unwrap(), None);
    let stored = local_storage()
        .get_item("chat.outbox.gina/18c2f1a9b40-9d04e1c2aa3f7b16")
        .unwrap()
        .unwrap();
    assert!(
        stored.starts_with(r#"{"version":4,"queued_at":1,"#),
        "{stored}"
    );

    // Once connected it goes out under its original client id (no server listens on port 9
    // here, so the attempt fails as "offline" and the message stays pending, to go again by
    // itself), and the message the server refused waits for the user.
    let sends = watch_fetches("/chat.Chat/Send");
    live.status.set(Status::Connected);
    live.flush_outbox();
    wait_for_fetches(&sends, 1).await;
    settle().await;
    assert_eq!(
        delivery_of(live, "18c2f1a9b3e-0f3a9c2d41b7e580"),
        Some(Delivery::Pending)
    );
    assert_eq!(
        delivery_of(live, "18c2f1a9b40-9d04e1c2aa3f7b16"),
        Some(Delivery::Failed {
            reason: "Message text is too long".into(),
            auto_retry: false
        })
    );
}

#[wasm_bindgen_test]
async fn new_messages_get_random_uuids_as_client_ids() {
    let (_root, live) = mount_with_live("ivan", || ());
    live.send("a", "one", None).unwrap();
    live.send("a", "two", None).unwrap();
    let ids: Vec<String> = live.model.with_untracked(|model| {
        model
            .outbox
            .iter()
            .map(|outgoing| outgoing.client_id.clone())
            .collect()
    });
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{id}");
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
    }
}

#[wasm_bindgen_test]
fn times_are_in_the_browsers_locale() {
    let seconds = |date: &js_sys::Date| (date.get_time() / 1000.0) as i64;
    // `date.toLocaleString(undefined, options)`: the browser's locale, by another road.
    let locale = |date: &js_sys::Date, options: &[(&str, &str)]| {
        let object = js_sys::Object::new();
        for (key, value) in options {
            js_sys::Reflect::set(&object, &(*key).into(), &(*value).into()).unwrap();
        }
        let to_locale_string: js_sys::Function =
            js_sys::Reflect::get(date, &"toLocaleString".into())
                .unwrap()
                .unchecked_into();
        to_locale_string
            .call2(date, &wasm_bindgen::JsValue::UNDEFINED, &object)
            .unwrap()
            .as_string()
            .unwrap()
    };
    let clock = [("hour", "numeric"), ("minute", "2-digit")];

    let now = js_sys::Date::new_0();
    assert_eq!(
        chat_web::time::short_time(seconds(&now)),
        locale(&now, &clock)
    );

    let long_ago = js_sys::Date::new_with_year_month_day_hr_min(2024, 2, 3, 14, 5);
    let shown = chat_web::time::short_time(seconds(&long_ago));
    let month = locale(&long_ago, &[("month", "short")]);
    assert!(
        shown.contains(&month) && shown.contains('3') && shown.contains(&locale(&long_ago, &clock)),
        "{shown}"
    );
}

#[wasm_bindgen_test]
async fn each_change_reruns_only_the_readers_of_what_it_touched() {
    use chat_web::live::model::ModelStoreFields;
    let (_root, live) = mount_with_live("judy", || ());
    let runs = |read: fn(Live)| {
        let count = RwSignal::new(0);
        Effect::new(move |_| {
            read(live);
            count.update_untracked(|count| *count += 1);
        });
        count
    };
    let timeline_runs = runs(|live| live.model.timelines().track());
    let outbox_runs = runs(|live| live.model.outbox().track());
    let chats_runs = runs(|live| live.model.chats().track());
    // A chat whose log is loaded: duplicates are recognised there.
    live.model
        .update(|model| model.add_page("a", Vec::new(), false));
    settle().await;
    let counts = move || {
        (
            timeline_runs.get_untracked(),
            outbox_runs.get_untracked(),
            chats_runs.get_untracked(),
        )
    };
    let before = counts();

    live.set_chats(&[chat("a", &["judy", "ken"], None)], None);
    settle().await;
    assert_eq!(counts(), (before.0, before.1, before.2 + 1), "a list");

    live.send("a", "queued", None).unwrap();
    settle().await;
    assert_eq!(counts(), (before.0, before.1 + 1, before.2 + 1), "a send");

    let from_ken = proto::Message {
        id: "5".into(),
        chat_id: "a".into(),
        user_id: "ken".into(),
        text: "from ken".into(),
        ..Default::default()
    };
    live.receive(&from_ken, true);
    settle().await;
    assert_eq!(
        counts(),
        (before.0 + 1, before.1 + 1, before.2 + 2),
        "someone else's message leaves the outbox alone"
    );

    live.receive(&from_ken, true);
    settle().await;
    assert_eq!(
        counts(),
        (before.0 + 1, before.1 + 1, before.2 + 2),
        "a duplicate changes nothing"
    );

    // The server's copy of the queued message replaces it: the outbox changes too.
    let client_id = live
        .model
        .with_untracked(|model| model.outbox[0].client_id.clone());
    live.receive(
        &proto::Message {
            id: "6".into(),
            chat_id: "a".into(),
            user_id: "judy".into(),
            client_id,
            text: "queued".into(),
            ..Default::default()
        },
        true,
    );
    settle().await;
    assert_eq!(
        counts(),
        (before.0 + 2, before.1 + 2, before.2 + 3),
        "my message"
    );
    assert!(live.model.with_untracked(|model| model.outbox.is_empty()));
}
