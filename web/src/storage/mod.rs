//! What the browser keeps in localStorage: the session, each user's outbox of unsent
//! messages, their drafts (what the composer of each chat holds, and the message it
//! replies to), and their device key. Storage can be missing
//! (private windows, disabled by policy) or full; the app then works without persistence.
//!
//! Every tab of the browser shares the outbox, so each message has a key of its own
//! (`chat.outbox.<user>/<client id>`): a tab writes only the messages it changed and removes
//! only those that left its outbox, and two tabs never overwrite each other's messages, as
//! they would rewriting one list. [`StoredOutbox`] remembers what the tab last read or wrote,
//! to know which those are.
//!
//! The values are written in formats of their own (`format`), with a version, never as the
//! domain structs: a release that changes `Session` or `Outgoing` still reads what an
//! earlier release wrote, so an upgrade keeps people signed in and sends every unsent message.

mod format;
mod json;

use crate::api::Session;
use crate::live::model::{Outgoing, Quote};

const SESSION_KEY: &str = "chat.session";

/// Each user has their own outbox, so signing in as someone else never sends another's
/// messages. Under this key earlier releases kept the whole outbox as one list; each message
/// now has the key followed by `/` (never part of a user id) and its client id.
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

/// Whether `key` holds (some of) `user`'s outbox: a message, or an earlier release's list.
pub fn is_outbox_key(user: &str, key: &str) -> bool {
    key.strip_prefix(&outbox_key(user))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The key of one message of `user`'s outbox.
fn message_key(user: &str, client_id: &str) -> String {
    format!("chat.outbox.{user}/{client_id}")
}

/// Puts `outgoing` into `outbox` in the order queued, unless it holds that message already.
fn place(outbox: &mut Vec<Outgoing>, outgoing: Outgoing) {
    if outbox.iter().all(|o| o.client_id != outgoing.client_id) {
        let at = outbox.partition_point(|o| o.queued_at <= outgoing.queued_at);
        outbox.insert(at, outgoing);
    }
}

/// The stored outbox of one user as this tab last read or wrote it.
#[derive(Debug, Default)]
pub struct StoredOutbox {
    user: String,
    known: Vec<Outgoing>,
}

impl StoredOutbox {
    /// Reads the outbox of `user`, oldest first, whatever version wrote it. A list an earlier
    /// release left is moved to keys of its own (and removed once every message is).
    pub fn load(user: &str) -> (Self, Vec<Outgoing>) {
        let mut stored = Self {
            user: user.to_owned(),
            known: Vec::new(),
        };
        let outbox = stored.read_all();
        (stored, outbox)
    }

    fn read_all(&mut self) -> Vec<Outgoing> {
        let mut outbox = Vec::new();
        if let Some(storage) = local_storage() {
            let list_key = outbox_key(&self.user);
            match read(&list_key).map(|text| format::decode_outbox(&text)) {
                Some(Ok(listed)) => {
                    let mut moved = true;
                    for outgoing in listed {
                        moved &= self.write(&outgoing);
                        place(&mut outbox, outgoing);
                    }
                    if moved {
                        let _ = storage.remove_item(&list_key);
                    }
                }
                Some(Err(error)) => {
                    leptos::logging::warn!("the stored outbox is unreadable: {error}")
                }
                None => {}
            }
            let prefix = message_key(&self.user, "");
            for index in 0..storage.length().unwrap_or(0) {
                let Some(key) = storage.key(index).ok().flatten() else {
                    continue;
                };
                if key.starts_with(&prefix) {
                    match read(&key).map(|text| format::decode_outgoing(&text)) {
                        Some(Ok(outgoing)) => place(&mut outbox, outgoing),
                        Some(Err(error)) => leptos::logging::warn!("stored message {key}: {error}"),
                        None => {}
                    }
                }
            }
        }
        self.known = outbox.clone();
        outbox
    }

    /// Reads the outbox again, after another tab changed it: what is stored, and the messages
    /// of `outbox` (the tab's) that could not be stored; those it had stored and are gone
    /// were sent, or deleted, by another tab.
    pub fn reload(&mut self, outbox: &[Outgoing]) -> Vec<Outgoing> {
        let unstored: Vec<Outgoing> = outbox
            .iter()
            .filter(|outgoing| self.known_as(&outgoing.client_id).is_none())
            .cloned()
            .collect();
        let mut reloaded = self.read_all();
        for outgoing in unstored {
            place(&mut reloaded, outgoing);
        }
        reloaded
    }

    /// Stores what changed between the outbox as last stored and `outbox`: each new or changed
    /// message is written, each one gone is removed. Returns whether anything was.
    pub fn save(&mut self, outbox: &[Outgoing]) -> bool {
        let mut changed = false;
        for outgoing in outbox {
            if self.known_as(&outgoing.client_id) != Some(outgoing) && self.write(outgoing) {
                self.known
                    .retain(|known| known.client_id != outgoing.client_id);
                self.known.push(outgoing.clone());
                changed = true;
            }
        }
        let storage = local_storage();
        let user = &self.user;
        self.known.retain(|known| {
            let kept = outbox.iter().any(|o| o.client_id == known.client_id);
            if !kept && let Some(storage) = &storage {
                let _ = storage.remove_item(&message_key(user, &known.client_id));
                changed = true;
            }
            kept
        });
        changed
    }

    fn known_as(&self, client_id: &str) -> Option<&Outgoing> {
        self.known.iter().find(|known| known.client_id == client_id)
    }

    fn write(&self, outgoing: &Outgoing) -> bool {
        write(
            &message_key(&self.user, &outgoing.client_id),
            &format::encode_outgoing(outgoing),
        )
    }
}

/// The key of what `user` has written in `chat` and not sent. A draft is stored as its plain
/// text, the one value that needs no format of its own; a release that keeps more of a draft
/// (the message it replies to, say) gives that a key of its own.
fn draft_key(user: &str, chat: &str) -> String {
    format!("chat.draft.{user}/{chat}")
}

/// What `user` had written in `chat` and not sent, if anything (an empty box is stored as no
/// key): kept while other chats are open, across reloads and sign-outs (as the outbox is),
/// and shared by the browser's tabs.
pub fn load_draft(user: &str, chat: &str) -> Option<String> {
    read(&draft_key(user, chat))
}

/// Keeps `text` as `user`'s draft in `chat`; an empty box leaves no key behind.
pub fn save_draft(user: &str, chat: &str, text: &str) {
    let key = draft_key(user, chat);
    if text.is_empty() {
        remove(&key);
    } else {
        write(&key, text);
    }
}

/// The key of the message `user` is replying to in `chat`: the draft's other part.
fn reply_key(user: &str, chat: &str) -> String {
    format!("chat.reply.{user}/{chat}")
}

/// The message `user` was replying to in `chat`, if a reply was being written there: kept
/// like the draft, so a reload never turns a reply into a plain message. Stored as its id,
/// sender and quoted start, a line each (the quote last: it may hold line breaks).
pub fn load_reply(user: &str, chat: &str) -> Option<Quote> {
    let stored = read(&reply_key(user, chat))?;
    let (id, rest) = stored.split_once('\n')?;
    let (sender, text_prefix) = rest.split_once('\n')?;
    Some(Quote {
        message_id: id.parse().ok()?,
        sender: sender.to_owned(),
        text_prefix: text_prefix.to_owned(),
        deleted: false,
    })
}

/// Keeps the message `user` is replying to in `chat`; no reply leaves no key behind.
pub fn save_reply(user: &str, chat: &str, quote: Option<&Quote>) {
    let key = reply_key(user, chat);
    match quote {
        Some(quote) => {
            let stored = format!(
                "{}\n{}\n{}",
                quote.message_id, quote.sender, quote.text_prefix
            );
            write(&key, &stored);
        }
        None => remove(&key),
    }
}

/// The key of the device key the server gave `user` in this browser.
fn device_key(user: &str) -> String {
    format!("chat.device.{user}")
}

/// The device key `user`'s last session in this browser came with: kept after signing out
/// (it signs nobody in), so that the next SignIn here gets a ladder of failed sign-ins of
/// its own, whoever else guesses at the account.
pub fn load_device(user: &str) -> Option<String> {
    read(&device_key(user))
}

pub fn save_device(user: &str, device: &str) {
    if !device.is_empty() {
        write(&device_key(user), device);
    }
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

fn read(key: &str) -> Option<String> {
    local_storage()?.get_item(key).ok()?
}

fn remove(key: &str) {
    if let Some(storage) = local_storage() {
        let _ = storage.remove_item(key);
    }
}

/// Whether `text` is stored under `key` now.
fn write(key: &str, text: &str) -> bool {
    local_storage().is_some_and(|storage| storage.set_item(key, text).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_own_outbox_keys_are_outbox_keys() {
        assert!(is_outbox_key("ali", "chat.outbox.ali"));
        assert!(is_outbox_key("ali", "chat.outbox.ali/c-1"));
        assert!(is_outbox_key("a.b", &message_key("a.b", "x")));
        for other in [
            "chat.outbox.alice/c-1",
            "chat.outbox.al",
            "chat.session",
            "chat.outbox.ali.x",
        ] {
            assert!(!is_outbox_key("ali", other), "{other}");
        }
    }
}
