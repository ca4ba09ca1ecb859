//! The client's view of its chats as plain data: what the stream, History, Send and the
//! outbox change, with no DOM, no timers and no network, so it is unit-tested in plain Rust.
//!
//! Invariants it keeps: a message id appears at most once in a chat; a message the user
//! sent shows once, as pending until the server's copy (echo or Send reply, matched by
//! client id) replaces it; a change (edit, deletion, reaction) replaces the copy of its
//! message unless a newer change already did; the cursor is the greatest event id received
//! (message or change), which is where the stream resumes.

use std::collections::{BTreeMap, HashMap};

use chat_core::ids::MessageId;
use chat_core::proto;
use reactive_stores::Store;

use super::activity::{Reading, Seen, Typist};

/// A message as the UI shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: u64,
    pub client_id: String,
    pub sender: String,
    pub sent_at: i64,
    pub subject: String,
    pub text: String,
    /// Unix seconds of the last edit; 0 if never edited.
    pub edited_at: i64,
    /// Deleted by its sender: shown as a placeholder, without text.
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
    /// The id of the newest change applied to this copy (0: none), so an older change
    /// arriving late never replaces a newer state.
    pub revision: u64,
    /// Bumped whenever this copy is replaced, so the row showing it renders again.
    pub stamp: u64,
    /// What it answers, if it is a reply.
    pub reply: Option<Quote>,
}

/// The reactions of one emoji on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    /// Who reacted, in order.
    pub users: Vec<String>,
}

/// The quoted original of a reply: who wrote it and how it begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub message_id: u64,
    pub sender: String,
    pub text_prefix: String,
    /// The original was deleted: show the placeholder, not its text.
    pub deleted: bool,
}

impl Quote {
    fn from_proto(preview: &proto::ReplyPreview) -> Option<Self> {
        let id = MessageId::parse_optional("reply_to", &preview.message_id).ok()??;
        Some(Self {
            message_id: id.0,
            sender: preview.user_id.clone(),
            text_prefix: preview.text_prefix.clone(),
            deleted: preview.deleted,
        })
    }

    /// The quote of a loaded message, as the server would make it now.
    pub fn of(message: &ChatMessage) -> Self {
        Self {
            message_id: message.id,
            sender: message.sender.clone(),
            text_prefix: chat_core::content::reply_prefix(&message.text).to_owned(),
            deleted: message.deleted,
        }
    }
}

impl ChatMessage {
    /// Converts a server message; `None` if its id is not a message id.
    pub fn from_proto(message: &proto::Message) -> Option<Self> {
        let id = MessageId::parse_optional("id", &message.id).ok()??;
        Some(Self {
            id: id.0,
            client_id: message.client_id.clone(),
            sender: message.user_id.clone(),
            sent_at: message.sent_at,
            subject: message.subject.clone(),
            text: message.text.clone(),
            edited_at: message.edited_at,
            deleted: message.deleted,
            reactions: message
                .reactions
                .iter()
                .map(|reaction| Reaction {
                    emoji: reaction.emoji.clone(),
                    users: reaction.user_ids.clone(),
                })
                .collect(),
            revision: 0,
            stamp: 0,
            reply: message.reply_to.as_ref().and_then(Quote::from_proto),
        })
    }

    /// Whether `user` reacted with `emoji`.
    pub fn reacted(&self, user: &str, emoji: &str) -> bool {
        self.reactions
            .iter()
            .any(|reaction| reaction.emoji == emoji && reaction.users.iter().any(|u| u == user))
    }
}

/// Where a message stands in the loaded part of its chat (see [`Model::find`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Loaded,
    /// Older pages (or the first) must be loaded: the page before this id, or the newest.
    Older(Option<u64>),
    /// Not in this chat: an id beyond what History holds, or deleted from it.
    Missing,
}

/// Where an outgoing message stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Waiting to be sent, or in flight.
    Pending,
    /// Sending failed; the reason is shown with a retry button. With `auto_retry` (a server
    /// error, or an unreachable server in an outbox an earlier release stored: unreachable now
    /// keeps a message pending, see `Live::send_next`) it is also sent again when the
    /// connection returns.
    Failed { reason: String, auto_retry: bool },
}

/// A message the user wrote that the server has not confirmed yet. Kept in localStorage (see
/// `crate::storage`), so it survives a reload and is sent, with the same client id, when the
/// connection returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub client_id: String,
    pub chat_id: String,
    pub text: String,
    /// The id of the message it answers, if it is a reply.
    pub reply_to: Option<u64>,
    pub delivery: Delivery,
    /// When it was written (browser milliseconds): the outbox, which every tab of the
    /// browser shares, goes out in this order.
    pub queued_at: u64,
}

/// What [`Model::receive`] made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    New,
    /// New, in a chat the list did not have: refresh the list for its members.
    NewChat,
    Duplicate,
}

/// One chat as the chat list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEntry {
    pub chat_id: String,
    pub members: Vec<String>,
    /// Those it was created with who have left it, as List last said (a members event that
    /// leaves nobody else puts those who were there here until List, asked again, answers):
    /// its name once nobody else is in it.
    pub left: Vec<String>,
    /// The version of `members` (`ChatMembers.version`): news of members with a version no
    /// higher is older than what is shown, and is ignored. `None` while the members are a
    /// guess (the user's own New, a search result, a message from a chat not listed yet),
    /// which any news replaces.
    pub members_version: Option<u64>,
    pub last: Option<ChatMessage>,
    pub created_at: i64,
    pub unread: u32,
}

impl ChatEntry {
    fn activity(&self) -> (i64, u64) {
        self.last
            .as_ref()
            .map_or((self.created_at, 0), |last| (last.sent_at, last.id))
    }

    /// The members other than `me`; once they have all left, those who left, saying so (a
    /// chat with Dave stays "dave (left)" after he has gone, not a chat named after oneself);
    /// `me` alone for a chat with oneself.
    pub fn title(&self, me: &str) -> String {
        let others = |users: &[String]| users.iter().any(|user| user != me);
        if others(&self.members) || !others(&self.left) {
            title_from(&self.members, me)
        } else {
            format!("{} (left)", title_from(&self.left, me))
        }
    }
}

/// A chat's name for `me` from its `members`: the others, or `me` alone for a chat with
/// oneself.
pub fn title_from(members: &[String], me: &str) -> String {
    let others = others_than(members, me);
    if others.is_empty() {
        me.to_owned()
    } else {
        others.join(", ")
    }
}

/// `users` other than `me`, in their order.
pub fn others_than<'a>(users: &'a [String], me: &str) -> Vec<&'a str> {
    users
        .iter()
        .map(String::as_str)
        .filter(|user| *user != me)
        .collect()
}

/// The name of chat `chat_id` as the chat list shows it to `me`, when `chats` has it.
pub fn title_of(chats: &[ChatEntry], chat_id: &str, me: &str) -> Option<String> {
    chats
        .iter()
        .find(|chat| chat.chat_id == chat_id)
        .map(|chat| chat.title(me))
}

/// The loaded part of one chat's history.
///
/// A timeline exists from the moment its chat opens, before its first page is in (`loaded`).
/// While a page is on its way, what the stream brings that the page may lack is kept aside
/// (`early`) for the page to take in: the page was read by the server before, and once
/// delivered, the stream never brings a message or a change again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub messages: BTreeMap<u64, ChatMessage>,
    /// Older messages exist on the server (History said `has_more`).
    pub has_older: bool,
    /// The first page has been loaded.
    pub loaded: bool,
    /// History pages asked for and not answered yet.
    asked: u32,
    /// Before the first page, the messages the stream brought; while any page is on its way,
    /// the messages its changes left of messages not loaded, as they then read (see
    /// [`Model::add_page`]).
    early: Vec<ChatMessage>,
}

impl Timeline {
    /// Whether a copy of the message `id` is here, loaded or early.
    fn has(&self, id: u64) -> bool {
        self.messages.contains_key(&id) || self.early.iter().any(|early| early.id == id)
    }

    /// Puts `message` in place of its copy here unless the copy is newer (see
    /// [`Model::replace`]). Whether the copy shown changed.
    fn replace(&mut self, mut message: ChatMessage) -> bool {
        let loaded = self.loaded;
        let old = match loaded {
            true => self.messages.get_mut(&message.id),
            false => self.early.iter_mut().find(|early| early.id == message.id),
        };
        match old {
            Some(old) if old.revision <= message.revision => {
                // The stream's copy of a change that a call's answer showed already differs
                // only by its revision: the row is not rendered again (which would also take
                // the keyboard's focus from it a second time).
                old.revision = message.revision;
                message.stamp = old.stamp;
                if *old == message {
                    return false;
                }
                message.stamp += 1;
                *old = message;
                loaded
            }
            Some(_) => false,
            // A change of a message not here yet: a page on its way may hold it as it was.
            None if !loaded || self.asked > 0 => {
                self.early.push(message);
                false
            }
            None => false,
        }
    }

    pub fn oldest_id(&self) -> Option<u64> {
        self.messages.keys().next().copied()
    }
}

/// The quote to show for a reply in `chat_id`: made from the original when it is loaded, so
/// it follows what became of it (deleted since the reply arrived, say), else the server's
/// preview.
pub fn shown_quote(timelines: &HashMap<String, Timeline>, chat_id: &str, quote: &Quote) -> Quote {
    timelines
        .get(chat_id)
        .and_then(|timeline| timeline.messages.get(&quote.message_id))
        .map_or_else(|| quote.clone(), Quote::of)
}

/// Everything the signed-in user sees of their chats. Plain data; `Store` only lets the
/// reactive layer (`super::Live`) hand each field to the views that read it, so a change to
/// one field re-runs only its readers.
#[derive(Debug, Clone, Default, Store)]
pub struct Model {
    pub me: String,
    /// Most recently active first.
    pub chats: Vec<ChatEntry>,
    pub timelines: HashMap<String, Timeline>,
    pub outbox: Vec<Outgoing>,
    pub open_chat: Option<String>,
    /// The greatest message id received: the stream resumes after it.
    pub cursor: Option<u64>,
    /// The page token of the chats not loaded yet; `None` once every page is loaded.
    pub more_chats: Option<String>,
    /// Read positions by chat: the user's own and the receipts (see `super::activity`).
    pub reading: HashMap<String, Reading>,
    /// Who is typing, by chat.
    pub typing: HashMap<String, Vec<Typist>>,
    /// Presence of the people who share a chat with the user, by user.
    pub presence: HashMap<String, Seen>,
}

impl Model {
    pub fn new(me: &str, outbox: Vec<Outgoing>) -> Self {
        Self {
            me: me.to_owned(),
            outbox,
            ..Self::default()
        }
    }

    /// Takes in List's first page and the token of the next (`more`). On the first load the
    /// cursor starts at the newest message listed, so a stream opened next misses nothing that
    /// happened after the list was read: List's order puts the newest message on the first
    /// page, and were a clock to put it on a later one, a lower cursor only replays more.
    /// Later loads (a refresh) leave the cursor alone: the stream replays from where it was,
    /// which fills open timelines without gaps; they also keep the chats of later pages
    /// already loaded, and where paging has got to.
    pub fn set_chats(&mut self, summaries: &[proto::ChatSummary], more: Option<String>) {
        let first_load = self.cursor.is_none();
        self.merge_chats(summaries);
        if first_load {
            let newest = self
                .chats
                .iter()
                .filter_map(|chat| chat.last.as_ref().map(|last| last.id))
                .max();
            self.cursor = Some(newest.unwrap_or(0));
            self.more_chats = more;
        }
    }

    /// Takes in a later page of List and the token of the page after it. It never moves the
    /// cursor: a later page's chats are older than the first page's, and their newest messages
    /// come through the stream like any other.
    pub fn add_chat_page(&mut self, summaries: &[proto::ChatSummary], more: Option<String>) {
        self.merge_chats(summaries);
        self.more_chats = more;
    }

    /// Adds listed chats and updates those already shown, keeping whichever last message is
    /// newer (the stream may have brought one after List read it); unread counts are List's,
    /// read positions the greater of List's and those already known.
    fn merge_chats(&mut self, summaries: &[proto::ChatSummary]) {
        for summary in summaries {
            let last = summary
                .last_message
                .as_ref()
                .and_then(ChatMessage::from_proto);
            match self
                .chats
                .iter_mut()
                .find(|chat| chat.chat_id == summary.chat_id)
            {
                Some(chat) => {
                    // Not when a members event after List's read came first.
                    if chat
                        .members_version
                        .is_none_or(|known| summary.members_version >= known)
                    {
                        chat.members = summary.user_ids.clone();
                        chat.left = summary.left_user_ids.clone();
                        chat.members_version = Some(summary.members_version);
                    }
                    chat.created_at = summary.created_at;
                    let newer = match (&chat.last, &last) {
                        (Some(shown), Some(listed)) => listed.id > shown.id,
                        (None, Some(_)) => true,
                        (_, None) => false,
                    };
                    if newer {
                        chat.last = last;
                    }
                }
                None => self.chats.push(ChatEntry {
                    chat_id: summary.chat_id.clone(),
                    members: summary.user_ids.clone(),
                    left: summary.left_user_ids.clone(),
                    members_version: Some(summary.members_version),
                    last,
                    created_at: summary.created_at,
                    unread: 0,
                }),
            }
            self.take_listed_reading(summary);
        }
        self.sort_chats();
    }

    /// Adds a chat the list does not have yet: one the user just started (New, created `at`
    /// now, no message), or one Search found that the list's pages have not reached (`last`
    /// the found message, `at` its time, so it sorts after the loaded chats, which are all more
    /// recently active; its first History page, or a later page of List, brings the rest).
    pub fn add_chat(
        &mut self,
        chat_id: &str,
        members: Vec<String>,
        at: i64,
        last: Option<ChatMessage>,
    ) {
        if self.chats.iter().all(|chat| chat.chat_id != chat_id) {
            self.chats.push(ChatEntry {
                chat_id: chat_id.to_owned(),
                members,
                left: Vec::new(),
                members_version: None,
                last,
                created_at: at,
                unread: 0,
            });
            self.sort_chats();
        }
    }

    /// Whether news of `chat_id`'s members at `version` is no newer than what is shown (two
    /// changes' events may arrive in either order).
    pub fn is_stale(&self, chat_id: &str, version: u64) -> bool {
        self.chats.iter().any(|chat| {
            chat.chat_id == chat_id && chat.members_version.is_some_and(|known| version <= known)
        })
    }

    /// Replaces the members of a listed chat (unless they are stale) and forgets the
    /// receipts of those who left (as List leaves them out); false when the list does not
    /// have it, or when nobody else is left in it: then List, which knows everyone who left
    /// (`left_user_ids`), is to be asked again, and meanwhile those who were here name the
    /// chat ("bob (left)", not oneself).
    pub fn set_members(&mut self, chat_id: &str, members: Vec<String>, version: u64) -> bool {
        if self.is_stale(chat_id, version) {
            return true;
        }
        let Some(chat) = self.chats.iter_mut().find(|chat| chat.chat_id == chat_id) else {
            return false;
        };
        chat.members_version = Some(version);
        if members.len() < 2 {
            chat.left = std::mem::take(&mut chat.members);
        }
        chat.members = members;
        if let Some(reading) = self.reading.get_mut(chat_id) {
            reading
                .others
                .retain(|(user, _)| chat.members.contains(user));
        }
        chat.members.len() > 1
    }

    /// Shows `chat_id`: it becomes the open chat, and its messages count as read. Its
    /// timeline keeps what arrives from now on, while its first page loads.
    pub fn open(&mut self, chat_id: &str) {
        self.timelines.entry(chat_id.to_owned()).or_default();
        self.place_divider(chat_id);
        self.open_chat = Some(chat_id.to_owned());
        if let Some(chat) = self.chats.iter_mut().find(|chat| chat.chat_id == chat_id) {
            chat.unread = 0;
        }
    }

    /// Back to the list: no chat is open.
    pub fn close(&mut self) {
        self.open_chat = None;
    }

    /// Forgets a chat the user left: its entry, its loaded history, its read positions and
    /// typing, and its unsent messages (the server would refuse them now), and closes it if
    /// it is open.
    pub fn remove_chat(&mut self, chat_id: &str) {
        self.chats.retain(|chat| chat.chat_id != chat_id);
        self.timelines.remove(chat_id);
        self.reading.remove(chat_id);
        self.typing.remove(chat_id);
        self.outbox.retain(|outgoing| outgoing.chat_id != chat_id);
        if self.open_chat.as_deref() == Some(chat_id) {
            self.open_chat = None;
        }
    }

    /// Takes in a message from the stream (`streamed`) or a Send reply. Returns what the
    /// caller should do next: nothing for a duplicate, or refresh the list for a chat it has
    /// not seen yet (someone else started it), which is shown at once with the sender as a
    /// placeholder. Only the stream moves the cursor: a Send reply may overtake messages of
    /// others stored before it that the stream has yet to deliver, and a stream resumed after
    /// the reply's id would skip them.
    pub fn receive(&mut self, message: ChatMessage, chat_id: &str, streamed: bool) -> Received {
        if streamed {
            self.advance_cursor(Some(message.id));
        }
        // Before the duplicate check: a message sent again (by the tab that took over the
        // outbox of another) comes back as the copy the server stored the first time.
        if message.sender == self.me {
            self.outbox
                .retain(|outgoing| outgoing.client_id != message.client_id);
        }
        if self
            .timelines
            .get(chat_id)
            .is_some_and(|timeline| timeline.has(message.id))
        {
            return Received::Duplicate;
        }
        let known_chat = self.chats.iter().any(|chat| chat.chat_id == chat_id);
        if !known_chat {
            let (me, sender) = (self.me.clone(), message.sender.clone());
            let members = match me.cmp(&sender) {
                std::cmp::Ordering::Less => vec![me, sender],
                std::cmp::Ordering::Equal => vec![me],
                std::cmp::Ordering::Greater => vec![sender, me],
            };
            self.chats.push(ChatEntry {
                chat_id: chat_id.to_owned(),
                members,
                left: Vec::new(),
                members_version: None,
                last: None,
                created_at: message.sent_at,
                unread: 0,
            });
        }
        if let Some(chat) = self.chats.iter_mut().find(|chat| chat.chat_id == chat_id) {
            if chat.last.as_ref().is_some_and(|last| last.id >= message.id) {
                // Older than what the list shows: a history page or a replay; nothing to bump.
            } else {
                let from_me = message.sender == self.me;
                let is_open = self.open_chat.as_deref() == Some(chat_id);
                if !from_me && !is_open {
                    chat.unread += 1;
                }
                chat.last = Some(message.clone());
            }
        }
        self.stop_typing(chat_id, &message.sender);
        if let Some(timeline) = self.timelines.get_mut(chat_id) {
            if timeline.loaded {
                timeline.messages.insert(message.id, message);
            } else {
                timeline.early.push(message);
            }
        }
        self.sort_chats();
        if known_chat {
            Received::New
        } else {
            Received::NewChat
        }
    }

    /// Takes in a change from the stream: event `change_id` left `message` (of `chat_id`) in
    /// this state. Replaces the copy shown (timeline and chat list) unless a change at least
    /// as new was applied already; moves the cursor either way. Returns whether anything
    /// shown changed.
    pub fn apply_change(
        &mut self,
        change_id: u64,
        mut message: ChatMessage,
        chat_id: &str,
    ) -> bool {
        self.advance_cursor(Some(change_id));
        message.revision = change_id;
        self.replace(message, chat_id)
    }

    /// Takes in the state an Edit, Delete or React call answered with, asked of the copy at
    /// revision `seen`. The answer carries no change id, so it counts as that revision: it
    /// shows at once unless the stream has brought a change since, which may be a later one
    /// (the stream brings this call's change too, with its id).
    pub fn update(&mut self, mut message: ChatMessage, chat_id: &str, seen: u64) -> bool {
        message.revision = seen;
        self.replace(message, chat_id)
    }

    /// Puts `message` in place of its copies, unless a copy holds a newer change.
    fn replace(&mut self, message: ChatMessage, chat_id: &str) -> bool {
        let mut shown = false;
        if let Some(timeline) = self.timelines.get_mut(chat_id) {
            shown = timeline.replace(message.clone());
        }
        if let Some(last) = self
            .chats
            .iter_mut()
            .find(|chat| chat.chat_id == chat_id)
            .and_then(|chat| chat.last.as_mut())
            .filter(|last| last.id == message.id && last.revision <= message.revision)
        {
            *last = message;
            shown = true;
        }
        shown
    }

    /// A History page of `chat_id` is asked for: until it is in, changes to messages not
    /// loaded are kept for it.
    pub fn page_asked(&mut self, chat_id: &str) {
        self.timelines.entry(chat_id.to_owned()).or_default().asked += 1;
    }

    /// A page asked for did not come.
    pub fn page_failed(&mut self, chat_id: &str) {
        if let Some(timeline) = self.timelines.get_mut(chat_id) {
            timeline.asked = timeline.asked.saturating_sub(1);
            if timeline.loaded && timeline.asked == 0 {
                timeline.early.clear();
            }
        }
    }

    /// Takes in a History page asked for: `messages` oldest first, older than anything
    /// loaded, and the newer state of any of them that the stream brought while the page was
    /// on its way. The first page also takes in each message the stream brought meanwhile,
    /// newer than the page. What is older than it while older pages remain (a stream
    /// replaying after a reconnect) is left to those pages, which read it as it is then:
    /// kept, it would leave a gap above it.
    pub fn add_page(&mut self, chat_id: &str, messages: Vec<ChatMessage>, has_more: bool) {
        let timeline = self.timelines.entry(chat_id.to_owned()).or_default();
        timeline.asked = timeline.asked.saturating_sub(1);
        let first = !timeline.loaded;
        let floor = match messages.first() {
            Some(oldest) if has_more && first => oldest.id,
            _ if first => 0,
            _ => u64::MAX,
        };
        // A copy already here is at least as new: the stream has brought every change since
        // (a page asked for twice, by two quick clicks, comes twice).
        for message in messages {
            timeline.messages.entry(message.id).or_insert(message);
        }
        timeline.has_older = has_more;
        timeline.loaded = true;
        // Another page on its way may need them too.
        let early = match timeline.asked {
            0 => std::mem::take(&mut timeline.early),
            _ => timeline.early.clone(),
        };
        for early in early {
            // Not the entry API: `replace` takes the whole timeline.
            #[allow(clippy::map_entry)]
            if timeline.messages.contains_key(&early.id) {
                timeline.replace(early);
            } else if early.id > floor {
                timeline.messages.insert(early.id, early);
            }
        }
        // The first page ends with the chat's newest message, which the list's entry then
        // shows: one that Search added showed the found message until now.
        if first
            && let Some(newest) = timeline.messages.values().next_back()
            && let Some(chat) = self.chats.iter_mut().find(|chat| chat.chat_id == chat_id)
            && chat.last.as_ref().is_none_or(|last| last.id < newest.id)
        {
            chat.last = Some(newest.clone());
            self.sort_chats();
        }
    }

    /// Queues a message the user wrote at `now` (browser milliseconds), answering
    /// `reply_to` if given. It goes after every message queued before, even if the clock
    /// went back.
    pub fn queue(
        &mut self,
        chat_id: &str,
        client_id: String,
        text: String,
        reply_to: Option<u64>,
        now: u64,
    ) {
        let after = self.outbox.last().map_or(0, |last| last.queued_at + 1);
        self.outbox.push(Outgoing {
            client_id,
            chat_id: chat_id.to_owned(),
            text,
            reply_to,
            delivery: Delivery::Pending,
            queued_at: now.max(after),
        });
    }

    /// Takes the outbox as stored (oldest first), after another tab changed it; leaves out
    /// any message this tab has already received from the server (the tab that stored it may
    /// not have removed it yet).
    pub fn set_outbox(&mut self, outbox: Vec<Outgoing>) {
        let me = &self.me;
        let delivered = |outgoing: &Outgoing| {
            let mine = |message: &ChatMessage| {
                message.sender == *me && message.client_id == outgoing.client_id
            };
            self.timelines
                .get(&outgoing.chat_id)
                .is_some_and(|timeline| timeline.messages.values().any(mine))
                || self.chats.iter().any(|chat| {
                    chat.chat_id == outgoing.chat_id && chat.last.as_ref().is_some_and(mine)
                })
        };
        let outbox = outbox.into_iter().filter(|o| !delivered(o)).collect();
        self.outbox = outbox;
    }

    /// Whether the message `id` of `chat_id` is loaded; and, if not, whether older pages
    /// may still hold it (`Some(true)`: load the next older page; `Some(false)`: it is not in
    /// this chat's history; `None`: nothing is loaded yet).
    pub fn find(&self, chat_id: &str, id: u64) -> Found {
        match self.timelines.get(chat_id) {
            Some(timeline) if timeline.messages.contains_key(&id) => Found::Loaded,
            Some(timeline) if timeline.loaded => {
                if timeline.has_older && timeline.oldest_id().is_none_or(|oldest| oldest > id) {
                    Found::Older(timeline.oldest_id())
                } else {
                    Found::Missing
                }
            }
            _ => Found::Older(None),
        }
    }

    pub fn mark_failed(&mut self, client_id: &str, reason: String, auto_retry: bool) {
        if let Some(outgoing) = self
            .outbox
            .iter_mut()
            .find(|outgoing| outgoing.client_id == client_id)
        {
            outgoing.delivery = Delivery::Failed { reason, auto_retry };
        }
    }

    /// The messages to send when the connection (re)opens: all but those the server refused.
    pub fn to_flush(&self) -> Vec<Outgoing> {
        self.outbox
            .iter()
            .filter(|outgoing| {
                !matches!(
                    outgoing.delivery,
                    Delivery::Failed {
                        auto_retry: false,
                        ..
                    }
                )
            })
            .cloned()
            .collect()
    }

    /// The message to send next: the oldest pending one. Sending one at a time in this
    /// order keeps the user's messages in the order written, across chats and retries.
    pub fn next_to_send(&self) -> Option<Outgoing> {
        self.outbox
            .iter()
            .find(|outgoing| outgoing.delivery == Delivery::Pending)
            .cloned()
    }

    pub fn mark_pending(&mut self, client_id: &str) {
        if let Some(outgoing) = self
            .outbox
            .iter_mut()
            .find(|outgoing| outgoing.client_id == client_id)
        {
            outgoing.delivery = Delivery::Pending;
        }
    }

    /// The user's unconfirmed messages in one chat, in the order written.
    pub fn outgoing_in<'a>(&'a self, chat_id: &'a str) -> impl Iterator<Item = &'a Outgoing> + 'a {
        self.outbox
            .iter()
            .filter(move |outgoing| outgoing.chat_id == chat_id)
    }

    /// A tab that follows another's stream hears where that stream stands (`leader`): its own
    /// cursor goes no further, since what the leader has not delivered yet this tab has not
    /// seen either (its List may reach further), and were it to take the stream over, it must
    /// replay that. Returns whether the leader is ahead of this tab's cursor: it started
    /// streaming after this tab's List, and what came between is in neither.
    pub fn follow_cursor(&mut self, leader: u64) -> bool {
        match self.cursor {
            Some(mine) if mine > leader => {
                self.cursor = Some(leader);
                false
            }
            Some(mine) => leader > mine,
            None => false,
        }
    }

    fn advance_cursor(&mut self, id: Option<u64>) {
        self.cursor = self.cursor.max(id);
    }

    /// Most recently active first, by an insertion sort: the list is nearly sorted (a change
    /// moves one chat), which takes it one pass, and the bundle carries no general sort.
    fn sort_chats(&mut self) {
        for sorted in 1..self.chats.len() {
            let mut at = sorted;
            while at > 0 && self.chats[at - 1].activity() < self.chats[at].activity() {
                self.chats.swap(at - 1, at);
                at -= 1;
            }
        }
    }
}

/// Reconnect delays: doubling from half a second up to 15 s, each shortened by up to a
/// fifth at random so that many clients cut off together do not come back together.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    const FIRST_MS: u64 = 500;
    const MAX_MS: u64 = 15_000;

    /// The delay before the next attempt; `random` is in [0, 1).
    pub fn next_delay_ms(&mut self, random: f64) -> u64 {
        let full = Self::FIRST_MS
            .saturating_mul(1 << self.attempt.min(16))
            .min(Self::MAX_MS);
        self.attempt += 1;
        let jitter = (full as f64 * 0.2 * random.clamp(0.0, 1.0)) as u64;
        full - jitter
    }

    /// Called once a connection works again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, sender: &str, client_id: &str) -> ChatMessage {
        ChatMessage {
            id,
            client_id: client_id.into(),
            sender: sender.into(),
            sent_at: id as i64,
            text: format!("message {id}"),
            ..ChatMessage::default()
        }
    }

    fn summary(chat_id: &str, members: &[&str], last: Option<u64>) -> proto::ChatSummary {
        proto::ChatSummary {
            chat_id: chat_id.into(),
            user_ids: members.iter().map(|member| member.to_string()).collect(),
            last_message: last.map(|id| proto::Message {
                id: id.to_string(),
                chat_id: chat_id.into(),
                user_id: "bob".into(),
                sent_at: id as i64,
                text: "hi".into(),
                ..Default::default()
            }),
            created_at: 0,
            ..Default::default()
        }
    }

    #[test]
    fn a_chat_left_is_forgotten_with_its_history_and_unsent_messages() {
        let mut model = model_with_two_chats();
        model.open("a");
        model.add_page("a", vec![message(5, "bob", "c5")], false);
        model.queue("a", "out-a".into(), "to a".into(), None, 0);
        model.queue("b", "out-b".into(), "to b".into(), None, 0);
        model.remove_chat("a");
        let chats: Vec<&str> = model
            .chats
            .iter()
            .map(|chat| chat.chat_id.as_str())
            .collect();
        assert_eq!(chats, ["b"]);
        assert!(!model.timelines.contains_key("a"));
        let outbox: Vec<&str> = model.outbox.iter().map(|o| o.client_id.as_str()).collect();
        assert_eq!(outbox, ["out-b"]);
        assert_eq!(model.open_chat, None);
        // Leaving a chat that is not open leaves the open one alone.
        model.open("b");
        model.remove_chat("a");
        assert_eq!(model.open_chat.as_deref(), Some("b"));
    }

    fn model_with_two_chats() -> Model {
        let mut model = Model::new("alice", Vec::new());
        model.set_chats(
            &[
                summary("a", &["alice", "bob"], Some(5)),
                summary("b", &["alice", "carol"], Some(7)),
            ],
            None,
        );
        model
    }

    #[test]
    fn the_list_sets_the_cursor_and_the_order() {
        let model = model_with_two_chats();
        assert_eq!(model.cursor, Some(7));
        assert_eq!(model.chats[0].chat_id, "b");
        assert_eq!(model.chats[0].title("alice"), "carol");
    }

    #[test]
    fn new_members_rename_a_listed_chat_and_an_unlisted_one_asks_for_the_list() {
        let mut model = model_with_two_chats();
        model.set_members("a", vec!["alice".into(), "bob".into(), "carol".into()], 1);
        for user in ["bob", "carol"] {
            model.apply_read(&proto::ReadPosition {
                chat_id: "a".into(),
                user_id: user.into(),
                up_to_id: "5".into(),
            });
        }
        assert_eq!(model.reading["a"].seen_by(5), ["bob", "carol"]);
        // Carol leaves and Dave joins: her receipt goes with her.
        assert!(model.set_members("a", vec!["alice".into(), "bob".into(), "dave".into()], 2));
        assert_eq!(
            title_of(&model.chats, "a", "alice").as_deref(),
            Some("bob, dave")
        );
        assert_eq!(model.reading["a"].seen_by(5), ["bob"]);
        assert!(!model.set_members("new", vec!["alice".into(), "erin".into()], 1));
        assert_eq!(title_of(&model.chats, "new", "alice"), None);
    }

    #[test]
    fn a_chat_everyone_else_left_is_named_after_those_who_left() {
        let mut model = model_with_two_chats();
        // Bob leaves the chat of two: named after him at once, and the list is to be asked.
        assert!(!model.set_members("a", vec!["alice".into()], 1));
        assert_eq!(
            title_of(&model.chats, "a", "alice").as_deref(),
            Some("bob (left)")
        );
        // As it says (here, the same).
        let listed = proto::ChatSummary {
            left_user_ids: vec!["bob".into()],
            members_version: 1,
            ..summary("a", &["alice"], Some(5))
        };
        model.set_chats(&[listed], None);
        assert_eq!(
            title_of(&model.chats, "a", "alice").as_deref(),
            Some("bob (left)")
        );
        // He comes back (New of the same two): his name alone again.
        assert!(model.set_members("a", vec!["alice".into(), "bob".into()], 2));
        assert_eq!(title_of(&model.chats, "a", "alice").as_deref(), Some("bob"));
        // A group: while anyone else is in it, it is named after them.
        let listed = proto::ChatSummary {
            left_user_ids: vec!["bob".into(), "carol".into()],
            members_version: 3,
            ..summary("a", &["alice", "dave"], Some(5))
        };
        model.set_chats(&[listed], None);
        assert_eq!(
            title_of(&model.chats, "a", "alice").as_deref(),
            Some("dave")
        );
        let listed = proto::ChatSummary {
            left_user_ids: vec!["bob".into(), "carol".into(), "dave".into()],
            members_version: 4,
            ..summary("a", &["alice"], Some(5))
        };
        model.set_chats(&[listed], None);
        assert_eq!(
            title_of(&model.chats, "a", "alice").as_deref(),
            Some("bob, carol, dave (left)")
        );
        // Dave, the last, leaves too: until the list answers, the chat is named after him.
        model.set_chats(
            &[proto::ChatSummary {
                left_user_ids: vec!["bob".into(), "carol".into()],
                members_version: 5,
                ..summary("a", &["alice", "dave"], Some(5))
            }],
            None,
        );
        assert!(!model.set_members("a", vec!["alice".into()], 6));
        assert_eq!(
            title_of(&model.chats, "a", "alice").as_deref(),
            Some("dave (left)")
        );
        // A chat with oneself stays named after oneself, also as it is started again.
        model.add_chat("self", vec!["alice".into()], 1, None);
        assert!(!model.set_members("self", vec!["alice".into()], 1));
        assert_eq!(
            title_of(&model.chats, "self", "alice").as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn news_of_members_older_than_what_is_shown_changes_nothing() {
        let mut model = model_with_two_chats();
        // Carol joins (1) and leaves (2); her leaving arrives first.
        assert!(model.set_members("a", vec!["alice".into(), "bob".into()], 2));
        assert!(model.set_members("a", vec!["alice".into(), "bob".into(), "carol".into()], 1));
        assert_eq!(title_of(&model.chats, "a", "alice").as_deref(), Some("bob"));
        assert!(model.is_stale("a", 2) && !model.is_stale("a", 3));
        // A List read before the newer event: its members are older too.
        let listed = proto::ChatSummary {
            members_version: 1,
            ..summary("a", &["alice", "bob", "carol"], Some(5))
        };
        model.set_chats(&[listed], None);
        assert_eq!(title_of(&model.chats, "a", "alice").as_deref(), Some("bob"));
        // One read after it replaces them.
        let listed = proto::ChatSummary {
            members_version: 3,
            ..summary("a", &["alice", "bob", "dave"], Some(5))
        };
        model.set_chats(&[listed], None);
        assert_eq!(
            title_of(&model.chats, "a", "alice").as_deref(),
            Some("bob, dave")
        );
        // A chat the list lacks is never stale (the list is to be asked), nor one whose
        // members are a guess, such as one just started.
        assert!(!model.is_stale("new", 0));
        model.add_chat("started", vec!["alice".into(), "erin".into()], 1, None);
        assert!(!model.is_stale("started", 0));
        assert!(model.set_members("started", vec!["alice".into(), "erin".into()], 0));
        assert!(model.is_stale("started", 0));
    }

    #[test]
    fn a_chat_is_named_by_its_id_while_the_list_has_it() {
        let model = model_with_two_chats();
        assert_eq!(title_of(&model.chats, "a", "alice").as_deref(), Some("bob"));
        assert_eq!(title_of(&model.chats, "a", "bob").as_deref(), Some("alice"));
        assert_eq!(title_of(&model.chats, "not-listed", "alice"), None);
    }

    #[test]
    fn a_message_is_shown_once_however_often_it_arrives() {
        let mut model = model_with_two_chats();
        model.add_page("a", vec![message(5, "bob", "x")], false);
        assert_eq!(
            model.receive(message(9, "bob", "y"), "a", true),
            Received::New
        );
        assert_eq!(
            model.receive(message(9, "bob", "y"), "a", true),
            Received::Duplicate
        );
        assert_eq!(model.timelines["a"].messages.len(), 2);
        assert_eq!(
            model.chats[0].chat_id, "a",
            "the active chat moves to the top"
        );
        assert_eq!(model.chats[0].unread, 1, "counted once");
        assert_eq!(model.cursor, Some(9));
    }

    #[test]
    fn the_open_chat_and_own_messages_are_not_unread() {
        let mut model = model_with_two_chats();
        model.open("a");
        model.receive(message(8, "bob", "1"), "a", true);
        model.receive(message(10, "alice", "2"), "b", true);
        assert!(model.chats.iter().all(|chat| chat.unread == 0));
    }

    #[test]
    fn the_server_copy_replaces_the_pending_message() {
        let mut model = model_with_two_chats();
        model.queue("a", "c-1".into(), "hello".into(), None, 0);
        assert_eq!(model.outgoing_in("a").count(), 1);
        model.receive(message(11, "alice", "c-1"), "a", true);
        assert_eq!(model.outgoing_in("a").count(), 0);
        // The same client id from someone else is a different message.
        model.queue("a", "c-2".into(), "again".into(), None, 0);
        model.receive(message(12, "bob", "c-2"), "a", true);
        assert_eq!(model.outgoing_in("a").count(), 1);
    }

    #[test]
    fn failed_messages_keep_their_client_id_for_the_retry() {
        let mut model = model_with_two_chats();
        model.queue("a", "c-1".into(), "hello".into(), None, 0);
        model.queue("a", "c-2".into(), "refused".into(), None, 0);
        model.mark_failed("c-1", "offline".into(), true);
        model.mark_failed("c-2", "too long".into(), false);
        let flushed: Vec<String> = model
            .to_flush()
            .into_iter()
            .map(|outgoing| outgoing.client_id)
            .collect();
        assert_eq!(flushed, vec!["c-1"], "refused messages wait for the user");
        model.mark_pending("c-1");
        assert_eq!(model.outbox[0].delivery, Delivery::Pending);
        assert_eq!(model.outbox[0].client_id, "c-1");
    }

    #[test]
    fn messages_go_out_oldest_first_skipping_failed_ones() {
        let mut model = model_with_two_chats();
        for (chat, id) in [("a", "c-1"), ("b", "c-2"), ("a", "c-3")] {
            model.queue(chat, id.into(), format!("text {id}"), None, 0);
        }
        let next = |model: &Model| model.next_to_send().map(|outgoing| outgoing.client_id);
        assert_eq!(next(&model).as_deref(), Some("c-1"));
        model.mark_failed("c-1", "too long".into(), false);
        assert_eq!(next(&model).as_deref(), Some("c-2"));
        model.receive(message(40, "alice", "c-2"), "b", true);
        assert_eq!(next(&model).as_deref(), Some("c-3"));
        model.receive(message(41, "alice", "c-3"), "a", true);
        assert_eq!(next(&model), None, "the refused message waits for the user");
        model.mark_pending("c-1");
        assert_eq!(next(&model).as_deref(), Some("c-1"));
    }

    #[test]
    fn the_outbox_keeps_the_order_written_even_if_the_clock_goes_back() {
        let mut model = model_with_two_chats();
        model.queue("a", "c-1".into(), "first".into(), None, 1_000);
        model.queue("a", "c-2".into(), "second".into(), None, 900);
        model.queue("b", "c-3".into(), "third".into(), None, 5_000);
        let order: Vec<u64> = model.outbox.iter().map(|o| o.queued_at).collect();
        assert_eq!(order, [1_000, 1_001, 5_000]);
    }

    #[test]
    fn a_stored_outbox_leaves_out_what_this_tab_has_received() {
        let mut model = model_with_two_chats();
        model.add_page("a", vec![message(9, "alice", "sent-1")], false);
        model.receive(message(10, "alice", "sent-2"), "b", true);
        model.queue("a", "mine".into(), "here".into(), None, 1);
        let stored = ["sent-1", "sent-2", "other-tab", "bob-id"]
            .into_iter()
            .zip(["a", "b", "a", "a"])
            .map(|(client_id, chat_id)| Outgoing {
                client_id: client_id.into(),
                chat_id: chat_id.into(),
                text: String::new(),
                reply_to: None,
                delivery: Delivery::Pending,
                queued_at: 0,
            })
            .collect();
        // Bob's message with the client id "bob-id" is not the user's: it stays.
        model.add_page("a", vec![message(3, "bob", "bob-id")], false);
        model.set_outbox(stored);
        let left: Vec<&str> = model.outbox.iter().map(|o| o.client_id.as_str()).collect();
        assert_eq!(
            left,
            ["other-tab", "bob-id"],
            "the stored outbox replaces the tab's"
        );
    }

    #[test]
    fn a_message_sent_twice_leaves_the_outbox_when_its_copy_comes_back_again() {
        let mut model = model_with_two_chats();
        model.add_page("a", vec![message(9, "alice", "c-1")], false);
        // Another tab's outbox had it: sent again, the server answers with the stored copy.
        model.queue("a", "c-1".into(), "again".into(), None, 1);
        assert_eq!(
            model.receive(message(9, "alice", "c-1"), "a", true),
            Received::Duplicate
        );
        assert!(model.outbox.is_empty());
    }

    #[test]
    fn a_follower_never_holds_a_cursor_past_its_leaders() {
        let mut model = Model::new("alice", Vec::new());
        assert!(!model.follow_cursor(5), "not listed yet: nothing to align");
        assert_eq!(model.cursor, None);
        model.set_chats(&[summary("a", &["alice", "bob"], Some(9))], None);
        // The leader's stream is behind this tab's List: resume from the leader's place.
        assert!(!model.follow_cursor(7));
        assert_eq!(model.cursor, Some(7));
        model.receive(message(8, "bob", "m8"), "a", true);
        assert!(!model.follow_cursor(8));
        assert_eq!(model.cursor, Some(8));
        // The leader streams from after this tab's cursor: a gap to fill from List.
        assert!(model.follow_cursor(12));
        assert_eq!(model.cursor, Some(8));
    }

    #[test]
    fn history_pages_prepend_and_remember_if_more_remain() {
        let mut model = model_with_two_chats();
        model.add_page(
            "a",
            vec![message(20, "bob", "p"), message(21, "bob", "q")],
            true,
        );
        model.add_page("a", vec![message(3, "bob", "r")], false);
        let timeline = &model.timelines["a"];
        assert_eq!(
            timeline.messages.keys().copied().collect::<Vec<_>>(),
            vec![3, 20, 21]
        );
        assert_eq!(timeline.oldest_id(), Some(3));
        assert!(!timeline.has_older);
    }

    #[test]
    fn what_arrives_while_the_first_page_loads_is_kept() {
        let mut model = model_with_two_chats();
        model.open("a");
        // The page was read before message 9 was stored, and before the edit of 4 (change 10):
        // the stream brings both while it is on its way.
        model.receive(message(9, "bob", "new"), "a", true);
        let edited = ChatMessage {
            text: "edited".into(),
            ..message(4, "bob", "old")
        };
        model.apply_change(10, edited, "a");
        // A change of a message older than the page: its own page will read it as it is now.
        model.apply_change(11, message(1, "bob", "older"), "a");
        // A stream replaying after a reconnect, older than the page, with older pages left.
        model.receive(message(2, "bob", "replayed"), "a", true);
        model.add_page(
            "a",
            vec![message(4, "bob", "old"), message(5, "bob", "x")],
            true,
        );
        let timeline = &model.timelines["a"];
        assert_eq!(
            timeline.messages.keys().copied().collect::<Vec<_>>(),
            vec![4, 5, 9],
            "the page, then what came while it loaded; nothing that would leave a gap"
        );
        assert_eq!(timeline.messages[&4].text, "edited");
        assert_eq!(timeline.messages[&4].revision, 10);
        assert_eq!(timeline.oldest_id(), Some(4));
        // The next page brings 2 in its place.
        model.add_page("a", vec![message(2, "bob", "replayed")], false);
        assert_eq!(model.timelines["a"].oldest_id(), Some(2));
    }

    #[test]
    fn a_change_that_arrives_while_an_older_page_loads_is_applied_to_it() {
        let mut model = model_with_two_chats();
        model.open("a");
        model.page_asked("a");
        model.add_page("a", vec![message(20, "bob", "x")], true);
        // Scrolling up: the older page is read, then message 3 in it is deleted (change 30).
        model.page_asked("a");
        let deleted = ChatMessage {
            text: String::new(),
            deleted: true,
            ..message(3, "bob", "old")
        };
        model.apply_change(30, deleted, "a");
        model.add_page("a", vec![message(3, "bob", "old")], false);
        let shown = &model.timelines["a"].messages[&3];
        assert!(shown.deleted && shown.text.is_empty(), "{shown:?}");
        // With no page on its way, nothing is kept for one.
        model.apply_change(31, message(2, "bob", "unloaded"), "a");
        assert!(model.timelines["a"].early.is_empty());
        // A page that did not come keeps nothing either.
        model.page_asked("a");
        model.apply_change(32, message(1, "bob", "unloaded"), "a");
        model.page_failed("a");
        assert!(model.timelines["a"].early.is_empty());
    }

    #[test]
    fn a_call_s_answer_shows_at_once_unless_the_stream_brought_a_later_change() {
        let mut model = model_with_two_chats();
        model.add_page("a", vec![message(5, "bob", "y")], false);
        let reacted = |users: &[&str]| ChatMessage {
            reactions: vec![Reaction {
                emoji: "👍".into(),
                users: users.iter().map(|user| user.to_string()).collect(),
            }],
            ..message(5, "bob", "y")
        };
        // Alice reacts on the copy at revision 0; the answer comes first: shown at once.
        assert!(model.update(reacted(&["alice"]), "a", 0));
        assert_eq!(
            model.timelines["a"].messages[&5].reactions[0].users,
            ["alice"]
        );
        // Her change (12) from the stream then holds what the answer showed: the copy takes
        // its revision, and its row is not rendered again.
        let stamp = model.timelines["a"].messages[&5].stamp;
        model.apply_change(12, reacted(&["alice"]), "a");
        let shown = &model.timelines["a"].messages[&5];
        assert_eq!((shown.revision, shown.stamp), (12, stamp));
        // Bob reacts on the copy at revision 12 (Alice's change); his change (13) and
        // Carol's (14) reach the stream before the answer to his call, which shows his only.
        assert!(model.apply_change(13, reacted(&["alice", "bob"]), "a"));
        assert!(model.apply_change(14, reacted(&["alice", "bob", "carol"]), "a"));
        assert!(!model.update(reacted(&["alice", "bob"]), "a", 12));
        let shown = &model.timelines["a"].messages[&5];
        assert_eq!(
            shown.reactions[0].users,
            ["alice", "bob", "carol"],
            "Carol's stays"
        );
        let listed = model.chats.iter().find(|chat| chat.chat_id == "a").unwrap();
        assert_eq!(
            listed.last.as_ref().unwrap().reactions[0].users,
            ["alice", "bob", "carol"],
            "the list too"
        );
    }

    #[test]
    fn a_page_that_comes_twice_does_not_undo_a_change_between() {
        let mut model = model_with_two_chats();
        model.open("a");
        model.page_asked("a");
        model.page_asked("a");
        model.add_page("a", vec![message(5, "bob", "x")], false);
        let edited = ChatMessage {
            text: "edited".into(),
            ..message(5, "bob", "x")
        };
        model.apply_change(12, edited, "a");
        model.add_page("a", vec![message(5, "bob", "x")], false);
        assert_eq!(model.timelines["a"].messages[&5].text, "edited");
    }

    #[test]
    fn only_the_stream_moves_the_cursor_not_a_send_reply() {
        let mut model = model_with_two_chats();
        model.add_page("a", vec![message(5, "bob", "x")], false);
        // Bob's 8 is stored, then Alice's 9; the reply to her Send overtakes his 8 on the
        // stream. Were the stream to resume now, it must still bring 8.
        model.receive(message(9, "alice", "mine"), "a", false);
        assert_eq!(model.cursor, Some(7), "where the stream stands");
        assert!(
            model.timelines["a"].messages.contains_key(&9),
            "shown at once"
        );
        model.receive(message(8, "bob", "his"), "a", true);
        assert_eq!(model.cursor, Some(8));
        // The stream's echo of hers is a duplicate, and moves the cursor all the same.
        assert_eq!(
            model.receive(message(9, "alice", "mine"), "a", true),
            Received::Duplicate
        );
        assert_eq!(model.cursor, Some(9));
    }

    #[test]
    fn a_message_in_an_unknown_chat_shows_it_and_asks_for_a_refresh() {
        let mut model = model_with_two_chats();
        assert_eq!(
            model.receive(message(30, "dave", "z"), "new-chat", true),
            Received::NewChat
        );
        assert_eq!(model.cursor, Some(30));
        assert_eq!(model.chats[0].chat_id, "new-chat");
        assert_eq!(model.chats[0].members, vec!["alice", "dave"]);
        assert_eq!(model.chats[0].unread, 1);
        // The refresh takes the server's unread count, which counts the same message.
        let listed = proto::ChatSummary {
            unread_count: 1,
            ..summary("new-chat", &["alice", "dave", "erin"], Some(30))
        };
        model.set_chats(&[listed], None);
        assert_eq!(model.chats[0].unread, 1);
        assert_eq!(model.cursor, Some(30));
    }

    #[test]
    fn a_chat_found_by_search_joins_the_list_below_the_loaded_chats_once() {
        let mut model = model_with_two_chats();
        let members = vec!["alice".to_owned(), "dave".to_owned(), "erin".to_owned()];
        model.add_chat("old", members.clone(), 3, Some(message(3, "dave", "x")));
        let order: Vec<&str> = model.chats.iter().map(|c| c.chat_id.as_str()).collect();
        assert_eq!(
            order,
            ["b", "a", "old"],
            "after the more recently active chats"
        );
        assert_eq!(
            title_of(&model.chats, "old", "alice").as_deref(),
            Some("dave, erin")
        );
        assert_eq!(model.cursor, Some(7), "a found message moves no cursor");
        // Found again, or listed meanwhile: the entry stays as it is.
        model.add_chat(
            "old",
            vec!["alice".to_owned()],
            2,
            Some(message(2, "dave", "y")),
        );
        assert_eq!(model.chats.len(), 3);
        assert_eq!(model.chats[2].members, members);
        assert_eq!(model.chats[2].last.as_ref().map(|last| last.id), Some(3));
        // Opened, its first page brings its newest message, which the entry shows from then.
        model.open("old");
        let page = vec![message(3, "dave", "x"), message(4, "erin", "z")];
        model.add_page("old", page, true);
        assert_eq!(model.chats[2].chat_id, "old");
        assert_eq!(model.chats[2].last.as_ref().map(|last| last.id), Some(4));
    }

    #[test]
    fn later_lists_do_not_move_the_cursor_past_unreceived_messages() {
        let mut model = model_with_two_chats();
        model.set_chats(&[summary("a", &["alice", "bob"], Some(50))], None);
        assert_eq!(model.cursor, Some(7), "the stream must replay 8..=50");
    }

    #[test]
    fn later_pages_add_chats_below_without_moving_the_cursor() {
        let mut model = Model::new("alice", Vec::new());
        model.set_chats(
            &[summary("b", &["alice", "carol"], Some(7))],
            Some("page-2".into()),
        );
        assert_eq!(model.cursor, Some(7));
        assert_eq!(model.more_chats.as_deref(), Some("page-2"));
        // A later page whose chat carries a higher id (a server whose clock went back) must
        // not move the cursor past messages the stream has not delivered.
        model.add_chat_page(&[summary("a", &["alice", "bob"], Some(9))], None);
        assert_eq!(model.cursor, Some(7));
        assert_eq!(model.more_chats, None);
        assert_eq!(model.chats.len(), 2);
        // A refresh of the first page keeps the chats of later pages and the paging state.
        model.set_chats(
            &[summary("b", &["alice", "carol"], Some(7))],
            Some("x".into()),
        );
        assert_eq!(model.chats.len(), 2);
        assert_eq!(model.more_chats, None);
    }

    #[test]
    fn a_change_replaces_its_message_once_and_an_older_one_never_wins() {
        let mut model = model_with_two_chats();
        model.add_page(
            "a",
            vec![message(3, "bob", "x"), message(5, "bob", "y")],
            false,
        );
        let edited = ChatMessage {
            text: "edited".into(),
            edited_at: 100,
            ..message(5, "bob", "y")
        };
        assert!(model.apply_change(12, edited.clone(), "a"));
        assert_eq!(model.cursor, Some(12), "a change moves the cursor");
        let shown = &model.timelines["a"].messages[&5];
        assert_eq!(
            (shown.text.as_str(), shown.edited_at, shown.revision),
            ("edited", 100, 12)
        );
        assert_eq!(
            model.chats[1].last.as_ref().unwrap().text,
            "edited",
            "the list too"
        );
        let stamp = shown.stamp;

        let deleted = ChatMessage {
            text: String::new(),
            deleted: true,
            ..message(5, "bob", "y")
        };
        assert!(model.apply_change(14, deleted, "a"));
        // A replayed older change (the same event again, or one overtaken) changes nothing.
        assert!(!model.apply_change(12, edited, "a"));
        let shown = &model.timelines["a"].messages[&5];
        assert!(shown.deleted && shown.text.is_empty());
        assert_eq!(
            shown.stamp,
            stamp + 1,
            "the row renders again once per change"
        );
        assert_eq!(model.cursor, Some(14));
        assert_eq!(model.timelines["a"].messages.len(), 2, "no message added");
    }

    #[test]
    fn reactions_are_counted_per_emoji_and_mine_are_known() {
        let mut model = model_with_two_chats();
        model.add_page("a", vec![message(5, "bob", "y")], false);
        let reacted = ChatMessage {
            reactions: vec![
                Reaction {
                    emoji: "👍".into(),
                    users: vec!["bob".into(), "alice".into()],
                },
                Reaction {
                    emoji: "🎉".into(),
                    users: vec!["bob".into()],
                },
            ],
            ..message(5, "bob", "y")
        };
        model.apply_change(9, reacted, "a");
        let shown = &model.timelines["a"].messages[&5];
        assert!(shown.reacted("alice", "👍"));
        assert!(!shown.reacted("alice", "🎉"));
        assert_eq!(shown.reactions[0].users.len(), 2);
        // A change to a message not loaded only moves the cursor.
        assert!(!model.apply_change(20, message(2, "bob", "old"), "a"));
        assert_eq!(model.cursor, Some(20));
    }

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay_ms(0.0)).collect();
        assert_eq!(
            delays,
            vec![500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]
        );
        backoff.reset();
        let jittered = backoff.next_delay_ms(0.999);
        assert!((400..=500).contains(&jittered), "{jittered}");
    }

    #[test]
    fn a_quote_follows_its_original_when_it_is_loaded() {
        let mut model = Model::new("alice", Vec::new());
        let original = message(5, "bob", "c5");
        let served = Quote::of(&original);
        assert_eq!(served.text_prefix, "message 5");
        // Not loaded: the server's preview.
        assert_eq!(shown_quote(&model.timelines, "a", &served), served);
        // Loaded and since deleted: the placeholder.
        let deleted = ChatMessage {
            text: String::new(),
            deleted: true,
            ..original
        };
        model.add_page("a", vec![deleted], false);
        let shown = shown_quote(&model.timelines, "a", &served);
        assert!(shown.deleted);
        assert_eq!(shown.text_prefix, "");
    }

    #[test]
    fn finding_a_message_says_whether_to_load_older_pages() {
        let mut model = Model::new("alice", Vec::new());
        assert_eq!(model.find("a", 3), Found::Older(None));
        model.add_page(
            "a",
            vec![message(10, "bob", "c10"), message(12, "bob", "c12")],
            true,
        );
        assert_eq!(model.find("a", 12), Found::Loaded);
        assert_eq!(model.find("a", 3), Found::Older(Some(10)));
        assert_eq!(model.find("a", 11), Found::Missing);
        model.add_page("a", vec![message(3, "bob", "c3")], false);
        assert_eq!(model.find("a", 3), Found::Loaded);
        assert_eq!(model.find("a", 2), Found::Missing);
    }
}
