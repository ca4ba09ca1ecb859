//! Read positions, typing and presence as plain data, beside the messages of `model`: what
//! the stream's events that are not messages, List and the user's own reading change. No DOM,
//! no timers (times come in as arguments), so it is unit-tested in plain Rust.
//!
//! Positions only move forward, so whatever arrives late (a List read before an event, an
//! event replayed after a reconnect) is merged by keeping the greater; typing entries expire
//! by the clock the caller passes; presence is the last word the server said.

use std::collections::HashMap;

use chat_core::proto;

use super::model::Model;

/// How far the people of one chat have read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The user's own position: every message with an id at or below it is read.
    pub mine: u64,
    /// The other members' positions, for receipts (absent: private, or nothing read), in
    /// name order: a list, as a chat has few members (and a map type more in the bundle costs
    /// more than the search).
    pub others: Vec<(String, u64)>,
    /// Where the "New messages" divider goes: the user's position when the chat was opened
    /// with unread messages in it.
    pub divider: Option<u64>,
}

impl Reading {
    /// The other members who have read the message `id`, in name order.
    pub fn seen_by(&self, id: u64) -> Vec<&str> {
        self.others
            .iter()
            .filter(|(_, up_to)| *up_to >= id)
            .map(|(user, _)| user.as_str())
            .collect()
    }

    /// Where `user` has read up to: 0 if nowhere yet.
    pub fn position_of(&self, user: &str) -> u64 {
        self.find(user).map_or(0, |at| self.others[at].1)
    }

    /// Moves `user`'s position forward to `up_to` (never back); whether it moved.
    fn raise(&mut self, user: &str, up_to: u64) -> bool {
        match self.find(user) {
            Ok(at) => {
                let position = &mut self.others[at].1;
                let moved = up_to > *position;
                *position = (*position).max(up_to);
                moved
            }
            Err(at) => {
                self.others.insert(at, (user.to_owned(), up_to));
                up_to > 0
            }
        }
    }

    fn find(&self, user: &str) -> Result<usize, usize> {
        self.others
            .binary_search_by(|(name, _)| name.as_str().cmp(user))
    }
}

/// Someone typing in a chat, until a moment in browser milliseconds (`Date.now()`).
#[derive(Debug, Clone, PartialEq)]
pub struct Typist {
    pub user: String,
    pub until_ms: f64,
}

/// Whether someone is online, or when they were last seen (unix seconds, 0: never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub online: bool,
    pub last_seen: i64,
}

/// The line under the log while others type: "alice is typing…", "alice and bob are
/// typing…", "alice, bob and 2 others are typing…".
pub fn typing_line(users: &[String]) -> Option<String> {
    Some(match users {
        [] => return None,
        [one] => format!("{one} is typing…"),
        [one, two] => format!("{one} and {two} are typing…"),
        [one, two, rest @ ..] => format!(
            "{one}, {two} and {} other{} are typing…",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
    })
}

/// The receipt under the user's newest message, given how many `others` the chat has: "Seen"
/// in a chat of two; in a group "Seen by everyone" once all the others have seen it, else
/// their names ("Seen by alice, bob"), or how many of how many once more than three have.
/// (A member who keeps read state private never counts, so then it never says everyone.)
pub fn seen_line(seen_by: &[&str], others: usize) -> Option<String> {
    Some(match seen_by.len() {
        0 => return None,
        _ if others < 2 => "Seen".to_owned(),
        seen if seen >= others => "Seen by everyone".to_owned(),
        1..=3 => format!("Seen by {}", seen_by.join(", ")),
        seen => format!("Seen by {seen} of {others}"),
    })
}

impl Model {
    /// Takes in one chat's read state from List: the unread count is the server's, positions
    /// only move forward.
    pub(super) fn take_listed_reading(&mut self, summary: &proto::ChatSummary) {
        let reading = self.reading.entry(summary.chat_id.clone()).or_default();
        reading.mine = reading.mine.max(parse_id(&summary.read_up_to_id));
        for receipt in &summary.receipts {
            reading.raise(&receipt.user_id, parse_id(&receipt.up_to_id));
        }
        let is_open = self.open_chat.as_deref() == Some(summary.chat_id.as_str());
        if let Some(chat) = self
            .chats
            .iter_mut()
            .find(|chat| chat.chat_id == summary.chat_id)
        {
            chat.unread = if is_open {
                0
            } else {
                u32::try_from(summary.unread_count).unwrap_or(u32::MAX)
            };
        }
    }

    /// Takes in a read-position event. Returns whether anything shown changed.
    pub fn apply_read(&mut self, read: &proto::ReadPosition) -> bool {
        let up_to = parse_id(&read.up_to_id);
        if read.user_id == self.me {
            return self.move_mine(&read.chat_id, up_to);
        }
        self.reading
            .entry(read.chat_id.clone())
            .or_default()
            .raise(&read.user_id, up_to)
    }

    /// The user has seen every message of `chat_id` up to `id`. Returns whether their
    /// position moved, in which case the caller tells the server (MarkRead). A chat no longer
    /// listed (the user left it) has nothing to mark.
    pub fn mark_seen(&mut self, chat_id: &str, id: u64) -> bool {
        if self.chats.iter().all(|chat| chat.chat_id != chat_id) {
            return false;
        }
        self.move_mine(chat_id, id)
    }

    /// The user's position in `chat_id`.
    pub fn read_position(&self, chat_id: &str) -> u64 {
        self.reading.get(chat_id).map_or(0, |reading| reading.mine)
    }

    /// Moves the user's position forward and counts what is still unread: nothing when the
    /// position reaches the newest message, else the loaded messages from others after it
    /// (the count the server would give, as far as this tab can tell).
    fn move_mine(&mut self, chat_id: &str, up_to: u64) -> bool {
        let reading = self.reading.entry(chat_id.to_owned()).or_default();
        if up_to <= reading.mine {
            return false;
        }
        reading.mine = up_to;
        let me = &self.me;
        let after = self
            .timelines
            .get(chat_id)
            .filter(|t| t.loaded)
            .map(|timeline| {
                timeline
                    .messages
                    .range(up_to + 1..)
                    .filter(|(_, message)| message.sender != *me)
                    .count()
            });
        if let Some(chat) = self.chats.iter_mut().find(|chat| chat.chat_id == chat_id) {
            let newest = chat.last.as_ref().map_or(0, |last| last.id);
            if up_to >= newest {
                chat.unread = 0;
            } else if let Some(after) = after {
                chat.unread = u32::try_from(after).unwrap_or(u32::MAX);
            }
        }
        true
    }

    /// Remembers where the "New messages" divider goes as `chat_id` opens: after the user's
    /// position, if anything from others is unread.
    pub(super) fn place_divider(&mut self, chat_id: &str) {
        let unread = self
            .chats
            .iter()
            .find(|chat| chat.chat_id == chat_id)
            .is_some_and(|chat| chat.unread > 0);
        let reading = self.reading.entry(chat_id.to_owned()).or_default();
        reading.divider = unread.then_some(reading.mine);
    }

    /// Takes in a typing event at `now_ms`.
    pub fn apply_typing(&mut self, typing: &proto::TypingEvent, now_ms: f64) {
        if typing.user_id == self.me {
            return;
        }
        let until_ms = now_ms + f64::from(typing.expires_in_ms.max(0));
        let typists = self.typing.entry(typing.chat_id.clone()).or_default();
        match typists
            .iter_mut()
            .find(|typist| typist.user == typing.user_id)
        {
            Some(typist) => typist.until_ms = until_ms,
            None => typists.push(Typist {
                user: typing.user_id.clone(),
                until_ms,
            }),
        }
    }

    /// `user` sent a message in `chat_id`: they are done typing it.
    pub(super) fn stop_typing(&mut self, chat_id: &str, user: &str) -> bool {
        let Some(typists) = self.typing.get_mut(chat_id) else {
            return false;
        };
        let before = typists.len();
        typists.retain(|typist| typist.user != user);
        typists.len() != before
    }

    /// Forgets typing that has expired by `now_ms`; returns whether any did.
    pub fn expire_typing(&mut self, now_ms: f64) -> bool {
        let mut expired = false;
        for typists in self.typing.values_mut() {
            let before = typists.len();
            typists.retain(|typist| typist.until_ms > now_ms);
            expired |= typists.len() != before;
        }
        self.typing.retain(|_, typists| !typists.is_empty());
        expired
    }

    /// Who is typing in `chat_id` at `now_ms`, in name order.
    pub fn typists(&self, chat_id: &str, now_ms: f64) -> Vec<String> {
        typists(&self.typing, chat_id, now_ms)
    }

    /// Takes in a presence event.
    pub fn apply_presence(&mut self, presence: &proto::Presence) {
        self.presence.insert(
            presence.user_id.clone(),
            Seen {
                online: presence.online,
                last_seen: presence.last_seen,
            },
        );
    }
}

/// Who is typing in `chat_id` at `now_ms` according to `typing`, in name order.
pub fn typists(typing: &HashMap<String, Vec<Typist>>, chat_id: &str, now_ms: f64) -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    for typist in typing.get(chat_id).into_iter().flatten() {
        if typist.until_ms > now_ms
            && let Err(at) = users.binary_search(&typist.user)
        {
            users.insert(at, typist.user.clone());
        }
    }
    users
}

/// A message id from the wire; 0 (before every message) when empty or malformed.
fn parse_id(id: &str) -> u64 {
    id.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::model::ChatMessage;

    fn message(id: u64, sender: &str) -> ChatMessage {
        ChatMessage {
            id,
            client_id: format!("c{id}"),
            sender: sender.into(),
            sent_at: id as i64,
            text: format!("message {id}"),
            ..ChatMessage::default()
        }
    }

    fn listed(unread: i64, mine: &str, receipts: &[(&str, &str)]) -> proto::ChatSummary {
        proto::ChatSummary {
            chat_id: "a".into(),
            user_ids: vec!["alice".into(), "bob".into(), "carol".into()],
            last_message: Some(proto::Message {
                id: "9".into(),
                chat_id: "a".into(),
                user_id: "bob".into(),
                sent_at: 9,
                text: "hi".into(),
                ..Default::default()
            }),
            unread_count: unread,
            read_up_to_id: mine.into(),
            receipts: receipts
                .iter()
                .map(|(user, up_to)| proto::ReadPosition {
                    chat_id: "a".into(),
                    user_id: (*user).into(),
                    up_to_id: (*up_to).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn read(user: &str, up_to: u64) -> proto::ReadPosition {
        proto::ReadPosition {
            chat_id: "a".into(),
            user_id: user.into(),
            up_to_id: up_to.to_string(),
        }
    }

    fn alice_in_a_group() -> Model {
        let mut model = Model::new("alice", Vec::new());
        model.set_chats(&[listed(3, "6", &[("bob", "9")])], None);
        model
    }

    #[test]
    fn list_gives_the_badge_and_positions_only_move_forward() {
        let mut model = alice_in_a_group();
        assert_eq!(model.chats[0].unread, 3);
        assert_eq!(model.read_position("a"), 6);
        // A List read before a later event says less: the greater position stays.
        assert!(model.apply_read(&read("alice", 8)));
        model.set_chats(&[listed(1, "6", &[("bob", "7")])], None);
        assert_eq!(model.read_position("a"), 8);
        assert_eq!(model.reading["a"].position_of("bob"), 9);
        assert!(
            !model.apply_read(&read("alice", 7)),
            "an older position moved"
        );
    }

    #[test]
    fn reading_on_another_device_clears_or_recounts_the_badge() {
        let mut model = alice_in_a_group();
        model.add_page(
            "a",
            vec![message(7, "bob"), message(8, "alice"), message(9, "carol")],
            false,
        );
        assert!(model.apply_read(&read("alice", 7)));
        assert_eq!(
            model.chats[0].unread, 1,
            "only carol's 9 is left; alice's own 8 never counts"
        );
        assert!(model.apply_read(&read("alice", 9)));
        assert_eq!(model.chats[0].unread, 0);
        assert!(
            !model.mark_seen("a", 9),
            "seeing what is read is no news for the server"
        );
    }

    #[test]
    fn a_chat_the_user_left_has_nothing_to_mark_and_forgets_its_reading() {
        let mut model = alice_in_a_group();
        model.remove_chat("a");
        assert!(model.reading.is_empty(), "the left chat's positions stayed");
        assert!(
            !model.mark_seen("a", 9),
            "a chat the user left was marked read"
        );
        assert!(model.reading.is_empty());
    }

    #[test]
    fn the_divider_sits_at_the_position_the_chat_opened_with() {
        let mut model = alice_in_a_group();
        model.open("a");
        assert_eq!(model.reading["a"].divider, Some(6));
        assert_eq!(model.chats[0].unread, 0);
        model.close();
        model.open("a");
        assert_eq!(
            model.reading["a"].divider, None,
            "nothing was unread the second time"
        );
    }

    #[test]
    fn receipts_name_who_has_seen_my_message() {
        let mut model = alice_in_a_group();
        model.apply_read(&read("carol", 5));
        let reading = &model.reading["a"];
        assert_eq!(reading.seen_by(8), ["bob"]);
        assert_eq!(reading.seen_by(5), ["bob", "carol"]);
        assert_eq!(seen_line(&reading.seen_by(8), 1).as_deref(), Some("Seen"));
        assert_eq!(
            seen_line(&reading.seen_by(5), 3).as_deref(),
            Some("Seen by bob, carol")
        );
        assert_eq!(
            seen_line(&reading.seen_by(5), 2).as_deref(),
            Some("Seen by everyone")
        );
        assert_eq!(
            seen_line(&["a", "b", "c", "d"], 9).as_deref(),
            Some("Seen by 4 of 9")
        );
        assert_eq!(
            seen_line(&["a", "b", "c", "d"], 4).as_deref(),
            Some("Seen by everyone")
        );
        assert_eq!(seen_line(&reading.seen_by(10), 3), None);
    }

    #[test]
    fn typing_expires_by_itself_and_ends_with_the_message() {
        let mut model = alice_in_a_group();
        let typing = |user: &str| proto::TypingEvent {
            chat_id: "a".into(),
            user_id: user.into(),
            expires_in_ms: 6000,
        };
        model.apply_typing(&typing("carol"), 1000.0);
        model.apply_typing(&typing("bob"), 2000.0);
        model.apply_typing(&typing("alice"), 2000.0);
        assert_eq!(model.typists("a", 3000.0), ["bob", "carol"]);
        assert_eq!(
            typing_line(&model.typists("a", 3000.0)).as_deref(),
            Some("bob and carol are typing…")
        );
        // Carol's ran out at 7000; Bob's was renewed.
        model.apply_typing(&typing("bob"), 5000.0);
        assert!(model.expire_typing(7500.0));
        assert_eq!(model.typists("a", 7500.0), ["bob"]);
        // Bob's message ends his typing at once.
        model.receive(message(10, "bob"), "a", true);
        assert_eq!(model.typists("a", 7600.0), Vec::<String>::new());
        assert_eq!(typing_line(&[]), None);
        let many = ["a", "b", "c", "d"].map(String::from);
        assert_eq!(
            typing_line(&many).as_deref(),
            Some("a, b and 2 others are typing…")
        );
    }

    #[test]
    fn presence_is_the_last_word() {
        let mut model = alice_in_a_group();
        let presence = |online, last_seen| proto::Presence {
            user_id: "bob".into(),
            online,
            last_seen,
        };
        model.apply_presence(&presence(true, 0));
        assert!(model.presence["bob"].online);
        model.apply_presence(&presence(false, 1_700_000_000));
        assert_eq!(
            model.presence["bob"],
            Seen {
                online: false,
                last_seen: 1_700_000_000
            }
        );
    }
}
