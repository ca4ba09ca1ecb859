//! One stream per browser, not per tab. The tabs of one browser profile signed in as the same
//! user elect one of them with the Web Locks API (a lock named for the user): that tab, the
//! leader, runs the stream (`super::connection`), posts every event it receives, as the bytes
//! the server sent, on a BroadcastChannel named for the user, and sends the outbox. The other
//! tabs (followers) apply those events exactly as the leader does and show its connection
//! status. When the leader's tab closes, the browser releases its lock and the tab that asked
//! for it next takes over. A browser without Web Locks or BroadcastChannel gives every tab a
//! stream of its own, as if each were the only one.
//!
//! Why nothing is missed or shown twice: a follower listens on the channel before its first
//! List and keeps what arrives until the List is in, so every event after the List's snapshot
//! reaches it, and what the List already covered the model drops by id. From then on its
//! cursor moves with each event it applies, in the order the leader received them (a channel
//! delivers one sender's posts in order), so everything up to its cursor it has; and as the
//! leader's status carries the leader's cursor, a follower's never stays past it (a follower's
//! List can reach further than a leader's stream that lags). Taking over,
//! it opens the stream after its own cursor: the server replays all that came later, anything
//! it also got from the old leader is dropped by id, and it reads the list again for the read
//! positions that moved while nobody streamed (as after any reconnect). Events that are not
//! messages are not replayed: a tab that opens asks the leader (HELLO), which answers with its
//! status and the last presence it received of each person; typing is transient. A visible
//! follower that shows a message from someone else says so (SEEN), so that a hidden leader
//! does not notify the person of a message they are reading in another tab (`crate::notify`).
//!
//! The outbox: each message is in localStorage under its own key the moment it is written
//! (`crate::storage`), whichever tab wrote it, and every other tab reads the outbox again on
//! the browser's `storage` event, so all show the same. (That event, not a channel message:
//! it fires once the change is visible to the tab, while a post on the channel may arrive
//! before the change it would announce.) Only the leader sends, one message at a time, so no
//! message goes out from two tabs. A message stays stored until the server's copy comes back;
//! if the leader closes first, the tab that takes over sends it again under the same client
//! id, and the server, which stores a client id once, answers with the copy it has.

use std::cell::{Cell, RefCell};

use chat_core::proto::{self, event};
use js_sys::{Object, Promise, Reflect, Uint8Array};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

use super::model::ModelStoreFields;
use super::{Live, Status, connection};

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks.request(name, options, callback)`: calls `callback` with the lock once
    /// granted (with `null` at once when `options.ifAvailable` and another tab holds it), and
    /// holds it until the promise the callback returns settles, or the tab closes. An error
    /// where the browser has no Web Locks.
    #[wasm_bindgen(js_namespace = ["navigator", "locks"], js_name = request, catch)]
    fn request_lock(name: &str, options: &Object, callback: &JsValue) -> Result<Promise, JsValue>;
}

// What one tab posts to the others: a first byte saying which, then its content.

/// A stream event, as the server's protobuf bytes (leader to followers).
const EVENT: u8 = 0;
/// The leader's connection status: `[STATUS, state, seconds to the next attempt]`, then its
/// cursor (8 bytes, little-endian) once it has one.
const STATUS: u8 = 1;
/// A tab opened: the leader answers with its status and the presence it holds.
const HELLO: u8 = 2;
/// A visible follower showed a message from someone else: `[SEEN]`, then the message id (8
/// bytes, little-endian). The leader, hidden, then makes no desktop notification for it, nor
/// for any before it (`crate::notify`).
const SEEN: u8 = 3;

/// This tab's end of the channel to the user's other tabs.
pub struct Tabs {
    channel: BroadcastChannel,
    /// Events posted before this tab's first List was in, applied once it is; `None` after.
    early: RefCell<Option<Vec<Vec<u8>>>>,
    /// The leader's latest presence event of each person, as posted, for tabs that open later.
    presence: RefCell<Vec<(String, Vec<u8>)>>,
    /// A follower heard the leader lose the stream: when it is back, read the list again.
    leader_was_down: Cell<bool>,
    /// Called by the channel: kept as long as the channel is open.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// Another tab changed the stored outbox.
    on_storage: Option<WindowListenerHandle>,
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        if let Some(listener) = self.on_storage.take() {
            listener.remove();
        }
    }
}

impl Tabs {
    fn post(&self, message: &[u8]) {
        let _ = self.channel.post_message(&Uint8Array::from(message).into());
    }
}

/// Starts this tab's part in the user's one stream: the leader's if no other tab holds the
/// lock now, else a follower's that asks for the lock to take over when it is released.
pub fn start(live: Live, user: &str) {
    let name = format!("chat.stream.{user}");
    let Ok(channel) = BroadcastChannel::new(&name) else {
        return alone(live);
    };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
        if let Ok(bytes) = message.data().dyn_into::<Uint8Array>() {
            received(live, &bytes.to_vec());
        }
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let user_id = user.to_owned();
    let on_storage = window_event_listener_untyped("storage", move |event| {
        // No key: the whole storage was cleared.
        let key = Reflect::get(&event, &"key".into())
            .ok()
            .and_then(|key| key.as_string());
        if key.is_none_or(|key| crate::storage::is_outbox_key(&user_id, &key)) {
            live.reload_outbox();
        }
    });
    live.leader.set_value(false);
    live.tabs.set_value(Some(Tabs {
        channel,
        early: RefCell::new(Some(Vec::new())),
        presence: RefCell::default(),
        leader_was_down: Cell::new(false),
        _on_message: on_message,
        on_storage: Some(on_storage),
    }));
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE);
    let lock_name = name.clone();
    let first = Closure::once_into_js(move |lock: JsValue| {
        if lock.is_null() {
            spawn_local(follow(live, lock_name));
            Promise::resolve(&JsValue::UNDEFINED)
        } else {
            lead(live)
        }
    });
    if request_lock(&name, &options, &first).is_err() {
        live.tabs.set_value(None);
        alone(live);
    }
}

/// No way to share one stream here: this tab streams and sends for itself.
fn alone(live: Live) {
    live.leader.set_value(true);
    spawn_local(connection::run(live));
}

/// With the lock: runs the stream until the live state stops; the promise settling releases
/// the lock to the next tab.
fn lead(live: Live) -> Promise {
    Promise::new(&mut |release, _| {
        spawn_local(async move {
            if !live.is_stopped() {
                live.leader.try_set_value(true);
                with_tabs(live, |tabs| tabs.early.replace(None));
                // What the other tabs queued while nobody sent, and what the last leader left.
                live.reload_outbox();
                connection::run(live).await;
                live.leader.try_set_value(false);
            }
            let _ = release.call0(&JsValue::UNDEFINED);
        })
    })
}

/// Without the lock: lists the chats, applies what arrived meanwhile, asks the leader for
/// what a new tab needs (its status, the presence it holds), then waits in line for the lock.
async fn follow(live: Live, name: String) {
    if !connection::list(live).await {
        return;
    }
    let early = with_tabs(live, |tabs| tabs.early.replace(None)).flatten();
    for bytes in early.unwrap_or_default() {
        apply_bytes(live, &bytes);
    }
    with_tabs(live, |tabs| tabs.post(&[HELLO]));
    let next = Closure::once_into_js(move |_lock: JsValue| lead(live));
    let _ = request_lock(&name, &Object::new(), &next);
}

fn with_tabs<R>(live: Live, use_tabs: impl FnOnce(&Tabs) -> R) -> Option<R> {
    live.tabs
        .try_with_value(|tabs| tabs.as_ref().map(use_tabs))
        .flatten()
}

/// What another tab posted.
fn received(live: Live, message: &[u8]) {
    let Some((&kind, rest)) = message.split_first() else {
        return;
    };
    let leader = live.is_leader();
    match kind {
        EVENT if !leader => {
            let waiting = with_tabs(live, |tabs| {
                tabs.early
                    .borrow_mut()
                    .as_mut()
                    .map(|early| early.push(rest.to_vec()))
                    .is_some()
            });
            if waiting == Some(false) {
                apply_bytes(live, rest);
            }
        }
        STATUS if !leader => {
            let status = match rest {
                [1, ..] => Status::Connected,
                [2, secs, ..] => Status::Offline {
                    retry_in_secs: u64::from(*secs),
                },
                _ => Status::Connecting,
            };
            let connected = status == Status::Connected;
            let was_down = with_tabs(live, |tabs| tabs.leader_was_down.replace(!connected));
            let leader_ahead = rest
                .get(2..10)
                .and_then(|cursor| cursor.try_into().ok())
                .and_then(|cursor| {
                    live.model.try_update_untracked(|model| {
                        model.follow_cursor(u64::from_le_bytes(cursor))
                    })
                });
            if (connected && was_down == Some(true)) || leader_ahead == Some(true) {
                // A reconnect or a new leader (read positions may have moved meanwhile), or a
                // leader that started streaming after this tab's List (what came between is in
                // neither).
                live.refresh_list();
            }
            if leader_ahead == Some(true) {
                // Nor in the pages this tab loaded meanwhile (the chat its address opened).
                live.reload_timelines();
            }
            live.status.try_set(status);
        }
        SEEN if leader => {
            if let Ok(id) = rest.try_into() {
                crate::notify::seen_elsewhere(u64::from_le_bytes(id));
            }
        }
        HELLO if leader => {
            status_changed(live, &live.status.get_untracked());
            with_tabs(live, |tabs| {
                for (_, bytes) in tabs.presence.borrow().iter() {
                    tabs.post(bytes);
                }
            });
        }
        _ => {}
    }
}

fn apply_bytes(live: Live, bytes: &[u8]) {
    match crate::api::decode_event(bytes) {
        Ok(event) => live.apply(event.event),
        Err(error) => leptos::logging::warn!("an event from another tab: {error}"),
    }
}

/// The leader received `event` (encoded as `bytes`): passes it on to the other tabs, and keeps
/// the latest presence of each person for tabs that open later.
pub fn share_event(live: Live, bytes: &[u8], event: &proto::Event) {
    if matches!(event.event, Some(event::Event::Heartbeat(_)) | None) {
        return;
    }
    with_tabs(live, |tabs| {
        let mut message = Vec::with_capacity(bytes.len() + 1);
        message.push(EVENT);
        message.extend_from_slice(bytes);
        tabs.post(&message);
        if let Some(event::Event::Presence(presence)) = &event.event {
            let mut held = tabs.presence.borrow_mut();
            held.retain(|(user, _)| *user != presence.user_id);
            held.push((presence.user_id.clone(), message));
        }
    });
}

/// This tab, a visible follower, showed the message `id` from someone else: the leader
/// makes no notification for it.
pub fn message_seen(live: Live, id: u64) {
    let mut message = vec![SEEN];
    message.extend_from_slice(&id.to_le_bytes());
    with_tabs(live, |tabs| tabs.post(&message));
}

/// The leader's status changed: the other tabs show it too.
pub fn status_changed(live: Live, status: &Status) {
    if !live.is_leader() {
        return;
    }
    let mut message = match status {
        Status::Connecting => vec![STATUS, 0, 0],
        Status::Connected => vec![STATUS, 1, 0],
        Status::Offline { retry_in_secs } => {
            vec![STATUS, 2, u8::try_from(*retry_in_secs).unwrap_or(u8::MAX)]
        }
    };
    if let Some(cursor) = live.model.cursor().try_get_untracked().flatten() {
        message.extend_from_slice(&cursor.to_le_bytes());
    }
    with_tabs(live, |tabs| tabs.post(&message));
}
