//! The rules of changes to stored messages (Edit, Delete, React), written once for both
//! backends: a backend finds the message (in a chat the caller is in) inside its write
//! transaction, asks [`plan`] what the change does to its current state, and writes that.

use chat_core::emoji::Emoji;
use chat_core::ids::UserId;
use chat_core::limits::{EDIT_WINDOW_SECS, REACTION_KINDS_MAX, REACTIONS_PER_PERSON_MAX};
use chat_core::requests::{Edit, MessageRef, ReactionChange};

use super::{Content, Reactions, StoreError, StoredMessage};

/// A change a member asks for.
#[derive(Debug, Clone)]
pub enum Change {
    Edit(Edit),
    Delete(MessageRef),
    React(ReactionChange),
}

impl Change {
    /// The message it changes.
    pub fn target(&self) -> &MessageRef {
        match self {
            Change::Edit(edit) => &edit.target,
            Change::Delete(target) => target,
            Change::React(reaction) => &reaction.target,
        }
    }

    /// Its name in the change table's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Edit(_) => "edit",
            Change::Delete(_) => "delete",
            Change::React(reaction) if reaction.remove => "unreact",
            Change::React(_) => "react",
        }
    }
}

/// What a backend writes for a change, besides the change's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageUpdate {
    /// The new subject and text, and `edited_at` = `at`.
    Edit {
        content: Content,
        at: i64,
    },
    /// Subject and text erased (set to ''), the message marked deleted, its reactions gone.
    Erase,
    AddReaction(Emoji),
    RemoveReaction(Emoji),
}

/// What `change` by `user` does to `current` at `now`: the write and the state after it;
/// `None` when it changes nothing (a retry of a change already made); or why it is refused.
pub fn plan(
    current: &StoredMessage,
    user: &UserId,
    change: &Change,
    now: i64,
) -> Result<Option<(MessageUpdate, StoredMessage)>, StoreError> {
    let mut after = current.clone();
    let write = match change {
        Change::Edit(edit) => {
            let Some(content) = &current.content else {
                return Err(StoreError::MessageNotFound);
            };
            if current.sender != *user {
                return Err(StoreError::NotYours("only its sender can edit a message"));
            }
            if content.subject == edit.subject && content.text == edit.text {
                return Ok(None);
            }
            if now - current.sent_at > EDIT_WINDOW_SECS {
                return Err(StoreError::NotAllowed(format!(
                    "a message can be edited for {} hours after it was sent; this one is older",
                    EDIT_WINDOW_SECS / 3600
                )));
            }
            let content = Content {
                subject: edit.subject.clone(),
                text: edit.text.clone(),
            };
            after.content = Some(content.clone());
            after.edited_at = Some(now);
            MessageUpdate::Edit { content, at: now }
        }
        Change::Delete(_) => {
            if current.sender != *user {
                return Err(StoreError::NotYours("only its sender can delete a message"));
            }
            if current.content.is_none() {
                return Ok(None);
            }
            after.content = None;
            after.reactions.clear();
            MessageUpdate::Erase
        }
        Change::React(reaction) => {
            if current.content.is_none() {
                return Err(StoreError::MessageNotFound);
            }
            let group = after
                .reactions
                .iter()
                .position(|group| group.emoji == reaction.emoji);
            let mine = group.is_some_and(|at| after.reactions[at].users.contains(user));
            if reaction.remove {
                let Some(at) = group.filter(|_| mine) else {
                    return Ok(None);
                };
                after.reactions[at].users.retain(|who| who != user);
                if after.reactions[at].users.is_empty() {
                    after.reactions.remove(at);
                }
                MessageUpdate::RemoveReaction(reaction.emoji.clone())
            } else {
                if mine {
                    return Ok(None);
                }
                let my_count = current
                    .reactions
                    .iter()
                    .filter(|group| group.users.contains(user))
                    .count();
                if my_count >= REACTIONS_PER_PERSON_MAX {
                    return Err(StoreError::NotAllowed(format!(
                        "you can add at most {REACTIONS_PER_PERSON_MAX} reactions to one message: take one back first"
                    )));
                }
                match group {
                    Some(at) => after.reactions[at].users.push(user.clone()),
                    None if current.reactions.len() >= REACTION_KINDS_MAX => {
                        return Err(StoreError::NotAllowed(format!(
                            "a message can carry at most {REACTION_KINDS_MAX} different reactions: use one it already has"
                        )));
                    }
                    None => after.reactions.push(Reactions {
                        emoji: reaction.emoji.clone(),
                        users: vec![user.clone()],
                    }),
                }
                MessageUpdate::AddReaction(reaction.emoji.clone())
            }
        }
    };
    Ok(Some((write, after)))
}

/// Puts reaction rows `(message id, emoji, user)`, read in the order they were added, onto
/// `messages` (whose ids they name; a page of events may hold one message several times) as
/// [`Reactions`], for both backends' reads. Each row must come once.
pub fn attach_reactions(
    messages: &mut [StoredMessage],
    rows: impl IntoIterator<Item = (chat_core::ids::MessageId, Emoji, UserId)>,
) {
    for (id, emoji, user) in rows {
        for message in messages.iter_mut().filter(|message| message.id == id) {
            match message
                .reactions
                .iter_mut()
                .find(|group| group.emoji == emoji)
            {
                Some(group) => group.users.push(user.clone()),
                None => message.reactions.push(Reactions {
                    emoji: emoji.clone(),
                    users: vec![user.clone()],
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_core::content::{Subject, Text};
    use chat_core::ids::{ChatId, ClientId, MessageId};
    use chat_core::requests::NewMessage;

    use super::*;

    const SENT: i64 = 1_000_000;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn target() -> MessageRef {
        MessageRef {
            chat_id: ChatId::from_random(1),
            message_id: MessageId(5),
        }
    }

    fn alices_message() -> StoredMessage {
        let new = NewMessage {
            chat_id: ChatId::from_random(1),
            client_id: ClientId::parse("c1").unwrap(),
            subject: Subject::default(),
            text: Text::parse("helo").unwrap(),
            claimed_sender: None,
            reply_to: None,
        };
        StoredMessage::new(MessageId(5), user("alice"), new, SENT, None)
    }

    fn edit(text: &str) -> Change {
        Change::Edit(Edit {
            target: target(),
            subject: Subject::default(),
            text: Text::parse(text).unwrap(),
        })
    }

    fn react(emoji: &str, remove: bool) -> Change {
        Change::React(ReactionChange {
            target: target(),
            emoji: Emoji::parse(emoji).unwrap(),
            remove,
        })
    }

    /// Applies `change` and returns the state after it, which must have changed.
    fn applied(message: &StoredMessage, who: &str, change: &Change) -> StoredMessage {
        plan(message, &user(who), change, SENT + 60)
            .unwrap()
            .expect("the change changed nothing")
            .1
    }

    #[test]
    fn only_the_sender_edits_within_the_window_and_a_retry_changes_nothing() {
        let message = alices_message();
        let edited = applied(&message, "alice", &edit("hello"));
        assert_eq!(edited.content.as_ref().unwrap().text.as_str(), "hello");
        assert_eq!(edited.edited_at, Some(SENT + 60));
        assert!(matches!(
            plan(&edited, &user("alice"), &edit("hello"), SENT + 90),
            Ok(None)
        ));
        assert!(matches!(
            plan(&message, &user("bob"), &edit("hello"), SENT + 60),
            Err(StoreError::NotYours(_))
        ));
        assert!(matches!(
            plan(
                &message,
                &user("alice"),
                &edit("late"),
                SENT + EDIT_WINDOW_SECS + 1
            ),
            Err(StoreError::NotAllowed(_))
        ));
    }

    #[test]
    fn a_deletion_erases_content_and_reactions_once_and_then_nothing_else_applies() {
        let message = applied(&alices_message(), "bob", &react("👍", false));
        let delete = Change::Delete(target());
        assert!(matches!(
            plan(&message, &user("bob"), &delete, SENT),
            Err(StoreError::NotYours(_))
        ));
        let deleted = applied(&message, "alice", &delete);
        assert_eq!(deleted.content, None);
        assert!(deleted.reactions.is_empty());
        assert!(matches!(
            plan(&deleted, &user("alice"), &delete, SENT),
            Ok(None)
        ));
        assert!(matches!(
            plan(&deleted, &user("alice"), &edit("back"), SENT),
            Err(StoreError::MessageNotFound)
        ));
        assert!(matches!(
            plan(&deleted, &user("bob"), &react("👍", false), SENT),
            Err(StoreError::MessageNotFound)
        ));
    }

    #[test]
    fn reactions_are_one_per_person_and_emoji_counted_and_limited() {
        let mut message = alices_message();
        message = applied(&message, "bob", &react("👍", false));
        message = applied(&message, "alice", &react("👍", false));
        message = applied(&message, "bob", &react("🎉", false));
        assert!(matches!(
            plan(&message, &user("bob"), &react("👍", false), SENT),
            Ok(None)
        ));
        assert_eq!(message.reactions[0].users, [user("bob"), user("alice")]);
        assert_eq!(message.reactions[1].emoji.as_str(), "🎉");

        message = applied(&message, "bob", &react("❤️", false));
        assert!(matches!(
            plan(&message, &user("bob"), &react("😂", false), SENT),
            Err(StoreError::NotAllowed(_))
        ));
        message = applied(&message, "bob", &react("🎉", true));
        assert_eq!(message.reactions.len(), 2, "an emoji nobody uses goes");
        assert!(matches!(
            plan(&message, &user("bob"), &react("🎉", true), SENT),
            Ok(None)
        ));

        let emoji = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊"];
        for (n, emoji) in emoji.iter().enumerate() {
            message = applied(&message, &format!("user{n}"), &react(emoji, false));
        }
        assert_eq!(message.reactions.len(), REACTION_KINDS_MAX);
        assert!(matches!(
            plan(&message, &user("carol"), &react("😋", false), SENT),
            Err(StoreError::NotAllowed(_))
        ));
        assert!(
            applied(&message, "carol", &react("😀", false)).reactions[2]
                .users
                .len()
                == 2
        );
    }
}
