//! The open chat in the address bar: `/chats/<id>` while a chat is open, `/` otherwise. So a
//! reload reopens the chat, the browser's back button returns to the list, and a link to a
//! chat opens it, after sign-in when needed (the sign-in page leaves the address alone). The
//! server answers every such path with the app (its single-page fallback).

use chat_core::ids::ChatId;
use leptos::prelude::window;
use wasm_bindgen::JsValue;

const CHATS: &str = "/chats/";

/// The chat the address names, when it names a well-formed chat id.
pub fn chat_in_address() -> Option<String> {
    chat_of_path(&window().location().pathname().ok()?)
}

fn chat_of_path(path: &str) -> Option<String> {
    let id = path.strip_prefix(CHATS)?.trim_end_matches('/');
    ChatId::parse(id).ok().map(|id| id.as_str().to_owned())
}

/// The chat a link names when it is an address of this app (`<origin>/chats/<id>`): such a
/// link opens the chat in place, as the chat list does, rather than the app again in a tab.
pub fn chat_of_link(address: &str) -> Option<String> {
    chat_of_address(address, &window().location().origin().ok()?)
}

fn chat_of_address(address: &str, origin: &str) -> Option<String> {
    chat_of_path(address.strip_prefix(origin)?)
}

fn path_of(chat: Option<&str>) -> String {
    match chat {
        Some(id) => format!("{CHATS}{id}"),
        None => "/".to_owned(),
    }
}

/// Makes the address show `chat` (or the list), as a new entry of the tab's history, unless
/// it shows it already (after a reload, or when the back button just brought it there). The
/// entry's state marks it as the app's own, see [`back_to_list`].
pub fn show(chat: Option<&str>) {
    let wanted = path_of(chat);
    let window = window();
    if window.location().pathname().ok().as_deref() == Some(wanted.as_str()) {
        return;
    }
    if let Ok(history) = window.history() {
        let _ = history.push_state_with_url(&JsValue::TRUE, "", Some(&wanted));
    }
}

/// The app's own "Back" to the list: the browser's back when the entry before this one is the
/// app's (so back and forward keep meaning what they say); otherwise, as after following a
/// link to a chat, `close` shows the list as a new entry.
pub fn back_to_list(close: impl FnOnce()) {
    let history = window().history().ok();
    let ours = history
        .as_ref()
        .and_then(|history| history.state().ok())
        .is_some_and(|state| state.is_truthy());
    match history {
        Some(history) if ours => {
            let _ = history.back();
        }
        _ => close(),
    }
}

/// The address of the list, replacing the current entry (on sign-out: the next person to sign
/// in on this tab starts from the list, not from the chat of the one before).
pub fn forget() {
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some("/"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_chat_paths_name_a_chat() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(chat_of_path(&format!("/chats/{id}")).as_deref(), Some(id));
        assert_eq!(chat_of_path(&format!("/chats/{id}/")).as_deref(), Some(id));
        assert_eq!(chat_of_path(&path_of(Some(id))).as_deref(), Some(id));
        for path in ["/", "/chats/", "/chats/nope", "/chat/0123", "/chats/../etc"] {
            assert_eq!(chat_of_path(path), None, "{path}");
        }
        let here = "https://chat.example";
        let link = format!("{here}/chats/{id}");
        assert_eq!(chat_of_address(&link, here).as_deref(), Some(id));
        for elsewhere in [
            "https://chat.example.org",
            "http://chat.example",
            "https://other.example",
        ] {
            assert_eq!(chat_of_address(&link, elsewhere), None, "{elsewhere}");
        }
        assert_eq!(chat_of_address(&format!("{here}/chats/{id}?x"), here), None);
        assert_eq!(path_of(None), "/");
    }
}
