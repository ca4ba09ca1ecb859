//! The live state of a signed-in user, shared with every component as a context: the
//! [`model::Model`] of their chats, the connection's status, and the actions that change
//! them (open a chat, page history, send, reply, retry, start a chat, jump to a message, edit,
//! delete, react).
//!
//! `model` is the plain-Rust core (with `activity` for read positions, typing and presence);
//! `connection` runs the stream and reconnects; `tabs` makes it one stream per browser (one
//! tab leads and shares what it receives with the others); `awareness` holds the actions
//! about reading, typing and presence.
//!
//! Reactivity follows the data. The model sits in a store whose fields views read one at a
//! time (the chat list, the timelines, the outbox, the open chat), and each action notifies
//! only the fields its change touched ([`Part`]). Views derive what they show through memos,
//! which stop a change that does not alter their slice, and list rows are keyed: a new
//! message re-runs the open log's and the chat list's memos and renders one new row.

pub mod activity;
mod awareness;
pub mod connection;
pub mod model;
mod tabs;

use chat_core::content::Text;
use chat_core::ids::MessageId;
use chat_core::limits::HISTORY_MAX_PAGE;
use chat_core::proto::{self, event};
use chat_core::requests::Members;
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;
use reactive_stores::Store;

use crate::api::{Api, ApiError, Session};
use crate::storage::StoredOutbox;
use model::{ChatMessage, Found, Model, ModelStoreFields, Quote, Received};

/// How long a Send that could not reach the server waits before it goes again.
const SEND_AGAIN_MS: u32 = 3_000;

/// The state of the browser's one stream (held by this tab or another, see `tabs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected,
    /// Waiting before the next attempt.
    Offline {
        retry_in_secs: u64,
    },
}

/// The signed-in user's live state; `Copy`, so closures take it freely.
#[derive(Clone, Copy)]
pub struct Live {
    /// The user's chats. Views read one field each (`live.model.chats()`, `.timelines()`,
    /// `.outbox()`, `.open_chat()`); `me` and `cursor` never change while shown and are read
    /// untracked. Only the actions below write, and each notifies only what it touched.
    pub model: Store<Model>,
    pub status: RwSignal<Status>,
    api: StoredValue<Api>,
    /// Set when the page unmounts or the user signs out: the connection loop stops.
    stopped: RwSignal<bool>,
    /// Called, with the notice the sign-in page shows, when the server says the session is
    /// over.
    on_signed_out: Callback<Option<String>>,
    /// Set while a password change is in flight: the change revokes this session's token, and
    /// the server may end this tab's stream before its answer (the fresh session) arrives.
    /// That ending is then expected, not a sign-out.
    replacing_session: StoredValue<bool>,
    /// Set while a message is in flight or waiting out the server's rate limit: the outbox
    /// goes out one message at a time, oldest first, so messages keep the order written.
    sending: StoredValue<bool>,
    /// Whether this tab holds the stream and sends the outbox: a live state on its own does,
    /// and so does every tab of a browser that cannot elect one; else only the elected tab
    /// (see `tabs`).
    leader: StoredValue<bool>,
    /// The channel to the user's other tabs; `None` without one.
    tabs: StoredValue<Option<tabs::Tabs>, LocalStorage>,
    /// The outbox as this tab last read or wrote it in localStorage.
    stored_outbox: StoredValue<StoredOutbox>,
    /// Everyone the user blocked, sorted; `None` until loaded (see [`Live::load_blocked`]).
    pub blocked: RwSignal<Option<Vec<String>>>,
    /// The message the composer of a chat answers: (chat id, its quote), until sent or
    /// cancelled. Set through [`Live::reply`], which keeps it with the chat's draft.
    pub replying: RwSignal<Option<(String, Quote)>>,
    /// The message to bring into view and highlight once its chat shows it: (chat id, id).
    /// Set by [`Live::jump_to`] when the message is loaded; the message log takes it.
    pub jump: RwSignal<Option<(String, u64)>>,
}

/// The fields of [`Model`] that views read on their own: a change names those it touches,
/// and only their readers run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Chats,
    Timelines,
    Outbox,
    OpenChat,
    Reading,
    Typing,
    Presence,
}

/// Creates the live state for `session`, provides it as context and starts its connection,
/// or joins the one another tab of the browser holds.
pub fn provide_live(api: Api, session: &Session, on_signed_out: Callback<Option<String>>) -> Live {
    let live = create_live(api, session, on_signed_out);
    tabs::start(live, &session.user_id);
    live
}

/// Creates the live state and provides it as context, without connecting: components can
/// be shown against a model filled by hand (the browser tests do).
pub fn create_live(api: Api, session: &Session, on_signed_out: Callback<Option<String>>) -> Live {
    let (stored_outbox, outbox) = StoredOutbox::load(&session.user_id);
    let live = Live {
        model: Store::new(Model::new(&session.user_id, outbox)),
        status: RwSignal::new(Status::Connecting),
        api: StoredValue::new(api),
        stopped: RwSignal::new(false),
        on_signed_out,
        sending: StoredValue::new(false),
        replacing_session: StoredValue::new(false),
        leader: StoredValue::new(true),
        tabs: StoredValue::new_local(None),
        stored_outbox: StoredValue::new(stored_outbox),
        blocked: RwSignal::new(None),
        replying: RwSignal::new(None),
        jump: RwSignal::new(None),
    };
    // Keep the outbox in localStorage, so unsent messages survive a reload and the other
    // tabs see them (`tabs`). An effect runs in a microtask, so a change is stored before an
    // event from another tab (a task) can make this tab read the outbox again.
    Effect::new(move |_| {
        live.model.outbox().with(|outbox| {
            live.stored_outbox
                .try_update_value(|stored| stored.save(outbox))
        });
    });
    on_cleanup(move || {
        live.stopped.set(true);
        live.tabs.try_update_value(|tabs| *tabs = None);
    });
    provide_context(live);
    live
}

/// The live state provided by [`provide_live`].
pub fn use_live() -> Live {
    expect_context::<Live>()
}

impl Live {
    pub fn api(&self) -> Api {
        self.api.get_value()
    }

    /// Whether the connection should stop: stopped, or its page gone already.
    pub fn is_stopped(&self) -> bool {
        self.stopped.try_get_untracked().unwrap_or(true)
    }

    /// Whether this tab holds the stream and sends the outbox (see `tabs`).
    pub fn is_leader(&self) -> bool {
        self.leader.try_get_value().unwrap_or(false)
    }

    /// Sets the stream's status here and, from the leader, in the other tabs.
    fn set_status(&self, status: Status) {
        tabs::status_changed(*self, &status);
        self.status.try_set(status);
    }

    /// Applies one event of the stream, received here or in the leader's tab.
    fn apply(&self, event: Option<event::Event>) {
        match event {
            Some(event::Event::Message(message)) => self.receive(&message, true),
            Some(event::Event::Change(change)) => self.receive_change(&change),
            Some(event::Event::ReadPosition(read)) => self.on_read(&read),
            Some(event::Event::Typing(typing)) => self.on_typing(&typing),
            Some(event::Event::Presence(presence)) => self.on_presence(&presence),
            Some(event::Event::Members(members)) => self.on_members(members),
            Some(event::Event::Heartbeat(_)) | None => {}
        }
    }

    /// Reads the outbox again from localStorage, which another tab changed, and sends what
    /// is pending if this tab is the one that sends.
    fn reload_outbox(&self) {
        let Some(outbox) = self.model.try_with_untracked(|model| {
            self.stored_outbox
                .try_update_value(|stored| stored.reload(&model.outbox))
        }) else {
            return;
        };
        if let Some(outbox) = outbox {
            self.change(&[Part::Outbox], |model| model.set_outbox(outbox));
        }
        self.send_next();
    }

    pub fn stop(&self) {
        self.stopped.try_set(true);
    }

    /// The server ended this session. Reported to the page unless this live state is
    /// already stopped (its page replaced) or its session is being replaced on purpose.
    pub fn signed_out(&self) {
        let already_stopped = self.stopped.try_get_untracked().unwrap_or(true);
        let replacing = self.replacing_session.try_get_value().unwrap_or(false);
        self.stop();
        if !already_stopped && !replacing {
            self.on_signed_out
                .run(Some("Your session has ended. Please sign in again.".into()));
        }
    }

    /// Says that a password change is in flight (`true`) or failed (`false`); see
    /// `replacing_session`.
    pub fn replacing_session(&self, replacing: bool) {
        self.replacing_session.try_set_value(replacing);
    }

    /// Applies `change` to the model, then notifies the readers of the parts it `touches`,
    /// and no others. `None` once the state is gone (the page unmounted meanwhile).
    fn change<R>(&self, touches: &[Part], change: impl FnOnce(&mut Model) -> R) -> Option<R> {
        let result = self.model.try_update_untracked(change)?;
        self.notify(touches);
        Some(result)
    }

    fn notify(&self, parts: &[Part]) {
        for part in parts {
            match part {
                Part::Chats => {
                    self.model.chats().notify();
                    self.model.more_chats().notify();
                }
                Part::Timelines => self.model.timelines().notify(),
                Part::Outbox => self.model.outbox().notify(),
                Part::OpenChat => self.model.open_chat().notify(),
                Part::Reading => self.model.reading().notify(),
                Part::Typing => self.model.typing().notify(),
                Part::Presence => self.model.presence().notify(),
            }
        }
    }

    /// Shows a chat, loading its newest page the first time.
    pub fn open_chat(&self, chat_id: String) {
        self.change(&[Part::OpenChat, Part::Chats, Part::Reading], |model| {
            model.open(&chat_id)
        });
        let loaded = self
            .model
            .timelines()
            .with_untracked(|timelines| timelines.get(&chat_id).is_some_and(|t| t.loaded));
        if !loaded {
            self.load_page(chat_id, None, || ());
        }
    }

    /// Forgets every chat's loaded history and loads the open chat's again: for a tab whose
    /// pages may lack messages that no stream brought it (see `tabs`).
    pub fn reload_timelines(&self) {
        self.change(&[Part::Timelines], |model| model.timelines.clear());
        if let Some(open) = self.model.open_chat().get_untracked() {
            self.load_page(open, None, || ());
        }
    }

    /// Back to the chat list (on a narrow screen, where the open chat covers it).
    pub fn close_chat(&self) {
        self.change(&[Part::OpenChat], Model::close);
    }

    /// Loads the page before the oldest loaded message; `done` runs once the model has it.
    /// `done` is a plain closure, not a reactive callback: the component that asked may be
    /// gone by the time the page arrives.
    pub fn load_older(&self, chat_id: String, done: impl FnOnce() + 'static) {
        let oldest = self.model.timelines().with_untracked(|timelines| {
            timelines
                .get(&chat_id)
                .filter(|t| t.has_older)
                .and_then(|t| t.oldest_id())
        });
        if let Some(oldest) = oldest {
            self.load_page(chat_id, Some(MessageId(oldest)), done);
        }
    }

    fn load_page(&self, chat_id: String, before: Option<MessageId>, done: impl FnOnce() + 'static) {
        let live = *self;
        spawn_local(async move {
            if live.fetch_page(&chat_id, before, 0).await {
                done();
            }
        });
    }

    /// Loads one History page of `limit` messages (0: the default) into the model; false
    /// when it could not.
    async fn fetch_page(&self, chat_id: &str, before: Option<MessageId>, limit: u32) -> bool {
        self.model
            .try_update_untracked(|model| model.page_asked(chat_id));
        let page = self.api().history(chat_id, before, limit).await;
        if page.is_err() {
            self.model
                .try_update_untracked(|model| model.page_failed(chat_id));
        }
        match page {
            Ok(page) => {
                let messages = page
                    .messages
                    .iter()
                    .filter_map(ChatMessage::from_proto)
                    .collect();
                // The chat list too: a first page may bring a newer last message.
                self.change(&[Part::Timelines, Part::Chats], |model| {
                    model.add_page(chat_id, messages, page.has_more)
                })
                .is_some()
            }
            Err(ApiError::SignedOut) => {
                self.signed_out();
                false
            }
            Err(error) => {
                leptos::logging::warn!("history of {chat_id}: {error}");
                // A chat the server refuses to show at all (not found: a link to a chat the
                // user is not in, or one they left on another device) is closed, back to
                // the list, rather than left open and empty.
                let refused = matches!(error, ApiError::Refused(_)) && before.is_none();
                let open = self
                    .model
                    .open_chat()
                    .with_untracked(|open| open.as_deref() == Some(chat_id));
                if refused && open {
                    self.close_chat();
                }
                false
            }
        }
    }

    /// Opens a message that Search found, first adding its chat (with the `members` Search
    /// gave) to the list when the list has not loaded it, so it is named like any other.
    pub fn open_found(&self, found: &proto::Message, members: Vec<String>) {
        if let Some(message) = ChatMessage::from_proto(found)
            && !members.is_empty()
        {
            self.change(&[Part::Chats], |model| {
                model.add_chat(&found.chat_id, members, message.sent_at, Some(message))
            });
        }
        if let Ok(id) = found.id.parse() {
            self.jump_to(found.chat_id.clone(), id);
        }
    }

    /// Opens `chat_id` at the message `id`, however far back: loads History pages (of the
    /// largest size) from the oldest loaded one back until the message is in, then hands it
    /// to the message log through [`Live::jump`], which scrolls to it and highlights it. A
    /// message N messages back costs N / 100 History calls and renders N rows, as if the
    /// person had scrolled there; what cannot be found (deleted, or not in this chat) only
    /// opens the chat.
    pub fn jump_to(&self, chat_id: String, id: u64) {
        self.change(&[Part::OpenChat, Part::Chats], |model| model.open(&chat_id));
        let live = *self;
        spawn_local(async move {
            loop {
                if live.is_stopped() {
                    return;
                }
                match live.model.with_untracked(|model| model.find(&chat_id, id)) {
                    Found::Loaded => {
                        live.jump.set(Some((chat_id, id)));
                        return;
                    }
                    Found::Missing => return,
                    Found::Older(before) => {
                        let before = before.map(MessageId);
                        if !live.fetch_page(&chat_id, before, HISTORY_MAX_PAGE).await {
                            return;
                        }
                    }
                }
            }
        });
    }

    /// Starts (`Some`) or ends (`None`: sent or cancelled) the reply being written in
    /// `chat_id`, kept in storage with the chat's draft, so a reload never turns it into a
    /// plain message (the composer takes it back as the chat opens).
    pub fn reply(&self, chat_id: &str, quote: Option<Quote>) {
        self.model
            .me()
            .with_untracked(|me| crate::storage::save_reply(me, chat_id, quote.as_ref()));
        self.replying
            .set(quote.map(|quote| (chat_id.to_owned(), quote)));
    }

    /// Validates and queues a message (a reply to `reply_to`, if given), then sends it if
    /// the connection is up. The error is for the composer to show; nothing is queued then.
    pub fn send(&self, chat_id: &str, text: &str, reply_to: Option<u64>) -> Result<(), String> {
        Text::parse(text).map_err(|error| crate::sentence(&error.to_string()))?;
        let client_id = new_client_id()
            .ok_or_else(|| "This browser cannot make message ids (no Web Crypto).".to_owned())?;
        let now = js_sys::Date::now() as u64;
        self.change(&[Part::Outbox], |model| {
            model.queue(chat_id, client_id, text.to_owned(), reply_to, now)
        });
        self.send_next();
        Ok(())
    }

    /// Sends a failed message again, with its original client id.
    pub fn retry(&self, client_id: String) {
        self.change(&[Part::Outbox], |model| model.mark_pending(&client_id));
        self.send_next();
    }

    /// Sends every queued message that may be sent automatically; after (re)connecting.
    pub fn flush_outbox(&self) {
        self.change(&[Part::Outbox], |model| {
            for outgoing in model.to_flush() {
                model.mark_pending(&outgoing.client_id);
            }
        });
        self.send_next();
    }

    /// Sends the oldest pending message, then the next, until none is left; does nothing
    /// while one is already on its way, the stream is down (the reconnect flushes), or
    /// another tab sends (the leader: it reads what this tab queued from localStorage).
    fn send_next(&self) {
        if self.sending.get_value()
            || self.is_stopped()
            || !self.is_leader()
            || self.status.get_untracked() != Status::Connected
        {
            return;
        }
        let Some(outgoing) = self.model.with_untracked(Model::next_to_send) else {
            return;
        };
        self.sending.set_value(true);
        let live = *self;
        spawn_local(async move {
            let sent = live
                .api()
                .send(
                    &outgoing.chat_id,
                    &outgoing.client_id,
                    &outgoing.text,
                    outgoing.reply_to,
                )
                .await;
            match sent {
                Ok(message) => live.receive(&message, false),
                Err(ApiError::SignedOut) => {
                    live.sending.set_value(false);
                    live.signed_out();
                    return;
                }
                // Over the server's send rate (a long outbox flushed at once, a fast typist):
                // the message stays pending and goes first again when the server said.
                Err(ApiError::Busy { retry_after_ms, .. }) => {
                    let wait_ms = u32::try_from(retry_after_ms).unwrap_or(u32::MAX);
                    TimeoutFuture::new(wait_ms).await;
                }
                // The server could not be reached, while the stream may well be up (a load
                // balancer's 502 from a server that died while the stream is on another; its
                // storage failing for a moment): the message stays pending and goes again
                // shortly, with the same client id, so once, and what was written after it
                // waits its turn. Marked failed until a reconnect, it stayed failed for good
                // when the stream never dropped.
                Err(ApiError::Offline) => TimeoutFuture::new(SEND_AGAIN_MS).await,
                // Anything else (a refusal; a server error, which a retry may not mend) is
                // shown with its reason and a retry button, and the messages after it go on.
                Err(error) => {
                    let transient = error.is_transient();
                    live.change(&[Part::Outbox], |model| {
                        model.mark_failed(&outgoing.client_id, error.to_string(), transient)
                    });
                }
            }
            live.sending.set_value(false);
            live.send_next();
        });
    }

    /// Takes in a message from the stream (`streamed`) or a Send reply.
    pub fn receive(&self, message: &chat_core::proto::Message, streamed: bool) {
        let Some(shown) = ChatMessage::from_proto(message) else {
            return;
        };
        let mine = self.model.me().with_untracked(|me| *me == message.user_id);
        let id = shown.id;
        let received = self
            .model
            .try_update_untracked(|model| model.receive(shown, &message.chat_id, streamed));
        match received {
            // A duplicate changes nothing but, if it is the user's, the outbox.
            None => return,
            Some(Received::Duplicate) => {
                if mine {
                    self.notify(&[Part::Outbox]);
                }
                return;
            }
            Some(Received::New) => {}
            Some(Received::NewChat) => self.refresh_list(),
        }
        // A message ends its sender's typing line.
        self.notify(&[Part::Chats, Part::Timelines, Part::Typing]);
        // Only the user's own messages take theirs out of the outbox.
        if mine {
            self.notify(&[Part::Outbox]);
        } else {
            crate::attention::message_arrived();
            // One desktop notification per browser: the leader's, unless another tab shows
            // the message to the person.
            if self.is_leader() {
                crate::notify::message_arrived(
                    *self,
                    id,
                    &message.user_id,
                    &message.text,
                    &message.chat_id,
                );
            } else if !document().hidden() {
                tabs::message_seen(*self, id);
            }
        }
    }

    /// Takes in a change (edit, deletion, reaction) from the stream.
    pub fn receive_change(&self, change: &chat_core::proto::Change) {
        let (Some(message), Some(id)) = (
            change.message.as_ref(),
            MessageId::parse_optional("id", &change.id).ok().flatten(),
        ) else {
            return;
        };
        let Some(shown) = ChatMessage::from_proto(message) else {
            return;
        };
        if self
            .model
            .try_update_untracked(|model| model.apply_change(id.0, shown, &message.chat_id))
            == Some(true)
        {
            self.notify(&[Part::Chats, Part::Timelines]);
        }
    }

    /// Replaces the text of one of the user's messages. The error is for the editor to show.
    pub async fn edit(
        &self,
        chat_id: &str,
        message: &ChatMessage,
        text: &str,
    ) -> Result<(), String> {
        Text::parse(text).map_err(|error| crate::sentence(&error.to_string()))?;
        let answer = self
            .api()
            .edit(chat_id, message.id, &message.subject, text)
            .await;
        self.changed(chat_id, message, answer)
    }

    /// Deletes one of the user's messages for everyone.
    pub async fn delete(&self, chat_id: &str, message: &ChatMessage) -> Result<(), String> {
        let answer = self.api().delete(chat_id, message.id).await;
        self.changed(chat_id, message, answer)
    }

    /// Adds the user's `emoji` to a message, or takes it back if they have it already.
    pub async fn toggle_reaction(
        &self,
        chat_id: &str,
        message: &ChatMessage,
        emoji: &str,
    ) -> Result<(), String> {
        let me = self.model.me().get_untracked();
        let remove = message.reacted(&me, emoji);
        let answer = self.api().react(chat_id, message.id, emoji, remove).await;
        self.changed(chat_id, message, answer)
    }

    /// Shows the message an Edit, Delete or React of `asked` (the copy shown when the person
    /// acted) answered with, or says why it failed.
    fn changed(
        &self,
        chat_id: &str,
        asked: &ChatMessage,
        answer: Result<chat_core::proto::Message, ApiError>,
    ) -> Result<(), String> {
        match answer {
            Ok(message) => {
                if let Some(shown) = ChatMessage::from_proto(&message) {
                    self.change(&[Part::Chats, Part::Timelines], |model| {
                        model.update(shown, chat_id, asked.revision)
                    });
                }
                Ok(())
            }
            Err(ApiError::SignedOut) => {
                self.signed_out();
                Err(ApiError::SignedOut.to_string())
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Takes in List's first page and the token of the next.
    pub fn set_chats(&self, chats: &[chat_core::proto::ChatSummary], more: Option<String>) {
        self.change(&[Part::Chats, Part::Reading], |model| {
            model.set_chats(chats, more)
        });
    }

    /// Loads the next page of chats, if there is one, below those shown.
    pub async fn load_more_chats(&self) -> Result<(), ApiError> {
        let Some(token) = self.model.more_chats().get_untracked() else {
            return Ok(());
        };
        match self.api().list(&token).await {
            Ok((chats, more)) => {
                self.change(&[Part::Chats, Part::Reading], |model| {
                    model.add_chat_page(&chats, more)
                });
                Ok(())
            }
            Err(ApiError::SignedOut) => {
                self.signed_out();
                Err(ApiError::SignedOut)
            }
            Err(error) => Err(error),
        }
    }

    /// Reloads the first page of the chat list (members, last messages) from the server.
    pub fn refresh_list(&self) {
        let live = *self;
        spawn_local(async move {
            match live.api().list("").await {
                Ok((chats, more)) => live.set_chats(&chats, more),
                Err(ApiError::SignedOut) => live.signed_out(),
                Err(error) => leptos::logging::warn!("list: {error}"),
            }
        });
    }

    /// Leaves `chat_id` and forgets it here; the error is a sentence to show.
    pub async fn leave_chat(&self, chat_id: &str) -> Result<(), String> {
        match self.api().leave(chat_id).await {
            // Not found: already left (a retry, another tab), which is what was asked.
            Ok(()) | Err(ApiError::Refused(_)) => {}
            Err(ApiError::SignedOut) => {
                self.signed_out();
                return Err(ApiError::SignedOut.to_string());
            }
            Err(error) => return Err(error.to_string()),
        }
        self.forget_chat(chat_id);
        Ok(())
    }

    /// Forgets a chat the user left, here or on another device.
    fn forget_chat(&self, chat_id: &str) {
        self.change(
            &[
                Part::Chats,
                Part::Timelines,
                Part::Outbox,
                Part::OpenChat,
                Part::Reading,
                Part::Typing,
            ],
            |model| model.remove_chat(chat_id),
        );
    }

    /// Takes in who is in a chat now (someone left it or came back, or it was just started):
    /// a chat the user is not in any more (they left it on another device) is forgotten, a
    /// chat the list lacks is loaded with it, and the others show their new members (and,
    /// when nobody else is left, ask the list who left: it names the chat).
    fn on_members(&self, members: proto::ChatMembers) {
        let mine = self
            .model
            .me()
            .with_untracked(|me| members.user_ids.contains(me));
        if !mine {
            // Not on the word of an event older than what the list shows (a rejoin's list
            // overtaken by the leave before it).
            let stale = self
                .model
                .with_untracked(|model| model.is_stale(&members.chat_id, members.version));
            if !stale {
                self.forget_chat(&members.chat_id);
            }
        } else if self.change(&[Part::Chats, Part::Reading], |model| {
            model.set_members(&members.chat_id, members.user_ids, members.version)
        }) == Some(false)
        {
            self.refresh_list();
        }
    }

    /// Reads the list of people the user blocked into [`Live::blocked`], once.
    pub fn load_blocked(&self) {
        if self.blocked.get_untracked().is_some() {
            return;
        }
        let live = *self;
        spawn_local(async move {
            match live.api().blocked().await {
                Ok(users) => {
                    let _ = live.blocked.try_set(Some(users));
                }
                Err(ApiError::SignedOut) => live.signed_out(),
                Err(error) => leptos::logging::warn!("blocked list: {error}"),
            }
        });
    }

    /// Blocks (`true`) or unblocks (`false`) `user` and updates [`Live::blocked`]; the error
    /// is a sentence to show.
    pub async fn set_blocked(&self, user: &str, blocked: bool) -> Result<(), String> {
        match self.api().set_blocked(user, blocked).await {
            Ok(()) => {}
            Err(ApiError::SignedOut) => {
                self.signed_out();
                return Err(ApiError::SignedOut.to_string());
            }
            Err(error) => return Err(error.to_string()),
        }
        self.blocked.try_update(|list| {
            let list = list.get_or_insert_with(Vec::new);
            match list.binary_search_by(|listed| listed.as_str().cmp(user)) {
                Ok(at) if !blocked => {
                    list.remove(at);
                }
                Err(at) if blocked => list.insert(at, user.to_owned()),
                _ => {}
            }
        });
        Ok(())
    }

    /// Starts (or finds) the chat with the users named in `names` (separated by commas or
    /// spaces) and opens it.
    pub async fn start_chat(&self, names: &str) -> Result<(), String> {
        let me = self.model.me().get_untracked();
        let mut ids: Vec<&str> = names
            .split([',', ' ', '\n'])
            .filter(|name| !name.is_empty())
            .collect();
        if ids.is_empty() {
            return Err("Type at least one username.".into());
        }
        ids.push(&me);
        let members = Members::parse(ids).map_err(|error| crate::sentence(&error.to_string()))?;
        let user_ids: Vec<String> = members.as_slice().iter().map(ToString::to_string).collect();
        let chat_id = self
            .api()
            .new_chat(user_ids.clone())
            .await
            .map_err(|error| match error {
                ApiError::SignedOut => {
                    self.signed_out();
                    error.to_string()
                }
                error => error.to_string(),
            })?;
        let now = (js_sys::Date::now() / 1000.0) as i64;
        self.change(&[Part::Chats], |model| {
            model.add_chat(&chat_id, user_ids, now, None)
        });
        self.open_chat(chat_id);
        Ok(())
    }
}

/// A client id for a new message: a random UUID from the browser. `crypto.randomUUID` exists
/// only in secure contexts (HTTPS, or a loopback address), so a page served over plain HTTP
/// to another machine takes 128 bits from `crypto.getRandomValues` instead, which every
/// context has.
/// `None` only in a browser without Web Crypto, which no supported browser is.
fn new_client_id() -> Option<String> {
    let window = web_sys::window()?;
    let crypto = window.crypto().ok()?;
    if window.is_secure_context() {
        return Some(crypto.random_uuid());
    }
    let mut bytes = [0u8; 16];
    crypto.get_random_values_with_u8_array(&mut bytes).ok()?;
    Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
