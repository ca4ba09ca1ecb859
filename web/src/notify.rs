//! Desktop notifications: when the tab is hidden and a message from someone else arrives, a
//! notification with the sender and the text, which opens the chat when clicked. The browser
//! asks the person only when they click the offer in the account menu ([`ask`]), never on
//! load. Only the tab holding the stream calls [`message_arrived`] (`crate::live`), so a
//! browser shows one notification per message however many tabs are open; its `tag` is the
//! message id, so were two tabs to show the same message (the takeover of the stream), the
//! second would replace the first.
//!
//! The tab holding the stream may be hidden while the person reads the chat in another tab
//! of the same browser. A visible tab that shows a message from someone else says so to the
//! others (`crate::live::tabs`, [`seen_elsewhere`]), so the hidden tab waits a moment
//! ([`SEEN_WAIT_MS`]) before it notifies, and does not if a tab showed the message meanwhile.
//! An answer, not a record of which tabs are visible: a tab that crashed or froze while
//! visible cannot silence notifications for good.

use std::cell::Cell;

use gloo_timers::future::TimeoutFuture;
use js_sys::{Object, Promise, Reflect};
use leptos::prelude::{document, window};
use leptos::task::spawn_local;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::live::Live;

/// How long the hidden tab holding the stream waits for another tab to say it showed the
/// message. The other tabs hear of it on the browser's channel within milliseconds; a
/// notification this much later is not noticed as late.
pub const SEEN_WAIT_MS: u32 = 400;

thread_local! {
    /// The newest message another tab, visible, showed (0: none). Ids grow in the order the
    /// stream delivers, so a tab that showed it showed those before it too.
    static SEEN_ELSEWHERE: Cell<u64> = const { Cell::new(0) };
}

#[wasm_bindgen]
extern "C" {
    #[derive(Clone)]
    type Notification;

    #[wasm_bindgen(constructor, catch)]
    fn new(title: &str, options: &Object) -> Result<Notification, JsValue>;

    /// `"granted"`, `"denied"` or `"default"` (not asked yet); an error without notifications.
    #[wasm_bindgen(static_method_of = Notification, getter, catch)]
    fn permission() -> Result<String, JsValue>;

    #[wasm_bindgen(static_method_of = Notification, js_name = requestPermission, catch)]
    fn request_permission() -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, setter)]
    fn set_onclick(this: &Notification, handler: &JsValue);

    #[wasm_bindgen(method)]
    fn close(this: &Notification);
}

/// Whether desktop notifications may be shown: `Some("granted")`, `Some("denied")`,
/// `Some("default")` (not asked yet), or `None` in a browser without them.
pub fn permission_state() -> Option<String> {
    Notification::permission().ok()
}

/// Asks the browser for permission (it shows its prompt) and returns the answer, as
/// [`permission_state`] says it. Call it only when the person asked for notifications.
pub async fn ask() -> Option<String> {
    if let Ok(asked) = Notification::request_permission() {
        let _ = JsFuture::from(asked).await;
    }
    permission_state()
}

/// A message from `sender` arrived in `chat_id`: notifies, [`SEEN_WAIT_MS`] later, when the
/// tab is hidden, the person allowed it, and no other tab showed it meanwhile. A click
/// brings the window forward and opens the chat.
pub fn message_arrived(live: Live, id: u64, sender: &str, text: &str, chat_id: &str) {
    if !document().hidden() || permission_state().as_deref() != Some("granted") {
        return;
    }
    let options = Object::new();
    let _ = Reflect::set(&options, &"body".into(), &text.into());
    let _ = Reflect::set(&options, &"tag".into(), &id.to_string().into());
    let (sender, chat_id) = (sender.to_owned(), chat_id.to_owned());
    spawn_local(async move {
        TimeoutFuture::new(SEEN_WAIT_MS).await;
        // This tab may have been shown meanwhile: then the person sees the message here.
        if SEEN_ELSEWHERE.get() >= id || !document().hidden() {
            return;
        }
        let Ok(notification) = Notification::new(&sender, &options) else {
            return;
        };
        let shown = notification.clone();
        // Freed when clicked; a notification never clicked keeps this small closure.
        let open = Closure::once_into_js(move || {
            let _ = window().focus();
            live.open_chat(chat_id);
            shown.close();
        });
        notification.set_onclick(&open);
    });
}

/// Another tab, visible, showed the message `id`: no notification for it from this one.
pub fn seen_elsewhere(id: u64) {
    SEEN_ELSEWHERE.set(SEEN_ELSEWHERE.get().max(id));
}
