//! Desktop notifications: when the tab is hidden and a message from someone else arrives, a
//! notification with the sender and the text, which opens the chat when clicked. The browser
//! asks the person only when they click the offer in the account menu ([`ask`]), never on
//! load. Only the tab holding the stream calls [`message_arrived`] (`crate::live`), so a
//! browser shows one notification per message however many tabs are open; its `tag` is the
//! message id, so were two tabs to show the same message (the takeover of the stream), the
//! second would replace the first.

use js_sys::{Object, Promise, Reflect};
use leptos::prelude::{document, window};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::live::Live;

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

/// A message from `sender` arrived in `chat_id`: notifies when the tab is hidden and the
/// person allowed it. A click brings the window forward and opens the chat.
pub fn message_arrived(live: Live, id: &str, sender: &str, text: &str, chat_id: &str) {
    if !document().hidden() || permission_state().as_deref() != Some("granted") {
        return;
    }
    let options = Object::new();
    let _ = Reflect::set(&options, &"body".into(), &text.into());
    let _ = Reflect::set(&options, &"tag".into(), &id.into());
    let Ok(notification) = Notification::new(sender, &options) else {
        return;
    };
    let chat_id = chat_id.to_owned();
    let shown = notification.clone();
    // Freed when clicked; a notification never clicked keeps this small closure.
    let open = Closure::once_into_js(move || {
        let _ = window().focus();
        live.open_chat(chat_id);
        shown.close();
    });
    notification.set_onclick(&open);
}
