//! What the browser keeps in localStorage: the session, and each user's outbox of unsent
//! messages. Storage can be missing (private windows, disabled by policy) or full; the app
//! then works without persistence.
//!
//! The values are written in formats of their own (`format`), with a version, never as the
//! domain structs: a release that changes `Session` or `Outgoing` still reads what an
//! earlier release wrote, so an upgrade keeps people signed in and sends every unsent message.

mod format;
mod json;

use crate::api::Session;
use crate::live::model::Outgoing;

const SESSION_KEY: &str = "chat.session";

/// Each user has their own outbox, so signing in as someone else never sends another's
/// messages.
fn outbox_key(user: &str) -> String {
    format!("chat.outbox.{user}")
}

/// The stored session, whatever version wrote it; `None` if there is none or it cannot be
/// read (then the user signs in again).
pub fn load_session() -> Option<Session> {
    let text = read(SESSION_KEY)?;
    format::decode_session(&text)
        .inspect_err(|error| leptos::logging::warn!("the stored session is unreadable: {error}"))
        .ok()
}

pub fn save_session(session: &Session) {
    write(SESSION_KEY, &format::encode_session(session));
}

pub fn forget_session() {
    if let Some(storage) = local_storage() {
        let _ = storage.remove_item(SESSION_KEY);
    }
}

/// The unsent messages of `user`, oldest first, whatever version wrote them.
pub fn load_outbox(user: &str) -> Vec<Outgoing> {
    let Some(text) = read(&outbox_key(user)) else {
        return Vec::new();
    };
    format::decode_outbox(&text)
        .inspect_err(|error| leptos::logging::warn!("the stored outbox is unreadable: {error}"))
        .unwrap_or_default()
}

pub fn save_outbox(user: &str, outbox: &[Outgoing]) {
    write(&outbox_key(user), &format::encode_outbox(outbox));
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

fn read(key: &str) -> Option<String> {
    local_storage()?.get_item(key).ok()?
}

fn write(key: &str, text: &str) {
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(key, text);
    }
}
