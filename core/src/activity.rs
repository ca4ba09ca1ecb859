//! What people do in a chat besides sending: marking it read, typing, and the account
//! settings that decide who sees their read position. Wire requests become validated values
//! here, and the typing timings live here because the server and the browser must agree on
//! them.

use crate::ValidationError;
use crate::ids::{ChatId, MessageId};
use crate::proto;

/// How long a receiver shows "typing" after the last Typing event (the event carries it).
pub const TYPING_SHOWN_MS: u32 = 6_000;
/// A client sends at most one Typing call this often while its person types: well inside
/// [`TYPING_SHOWN_MS`], so the line does not flicker between two calls.
pub const TYPING_RESEND_MS: u32 = 3_000;
/// Typing calls one user may make at once on one server before the rate applies.
pub const TYPING_BURST: u32 = 3;
/// After the burst, one Typing call per this many milliseconds.
pub const TYPING_INTERVAL_MS: u32 = 1_000;

/// A validated MarkRead: the caller has seen every message of `chat_id` up to `up_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMark {
    pub chat_id: ChatId,
    pub up_to: MessageId,
}

impl TryFrom<&proto::MarkReadRequest> for ReadMark {
    type Error = ValidationError;

    fn try_from(request: &proto::MarkReadRequest) -> Result<Self, Self::Error> {
        let chat_id = ChatId::parse(&request.chat_id)?;
        let up_to = MessageId::parse_optional("up_to_id", &request.up_to_id)?
            .ok_or(ValidationError::UpToIdMissing)?;
        Ok(Self { chat_id, up_to })
    }
}

/// A validated Typing call: the chat the caller is typing in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingIn(pub ChatId);

impl TryFrom<&proto::TypingRequest> for TypingIn {
    type Error = ValidationError;

    fn try_from(request: &proto::TypingRequest) -> Result<Self, Self::Error> {
        Ok(Self(ChatId::parse(&request.chat_id)?))
    }
}

/// The changes an UpdateSettings asks for: `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub private_receipts: Option<bool>,
}

impl From<&proto::Settings> for SettingsChange {
    fn from(request: &proto::Settings) -> Self {
        Self {
            private_receipts: request.private_receipts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "0123456789abcdef0123456789abcdef";

    fn mark(chat_id: &str, up_to_id: &str) -> Result<ReadMark, ValidationError> {
        ReadMark::try_from(&proto::MarkReadRequest {
            chat_id: chat_id.to_owned(),
            up_to_id: up_to_id.to_owned(),
        })
    }

    #[test]
    fn a_read_mark_needs_a_chat_and_a_message_id() {
        assert_eq!(
            mark(CHAT, "42"),
            Ok(ReadMark {
                chat_id: ChatId::parse(CHAT).unwrap(),
                up_to: MessageId(42),
            })
        );
        let refusals = [
            ("", "1", ValidationError::ChatIdMissing),
            ("nope", "1", ValidationError::ChatIdInvalid("nope".into())),
            (CHAT, "", ValidationError::UpToIdMissing),
            (
                CHAT,
                "+1",
                ValidationError::MessageIdInvalid {
                    field: "up_to_id",
                    value: "+1".into(),
                },
            ),
            (
                CHAT,
                "99999999999999999999",
                ValidationError::MessageIdInvalid {
                    field: "up_to_id",
                    value: "99999999999999999999".into(),
                },
            ),
        ];
        for (chat_id, up_to_id, error) in refusals {
            assert_eq!(
                mark(chat_id, up_to_id),
                Err(error),
                "{chat_id:?} {up_to_id:?}"
            );
        }
    }

    #[test]
    fn typing_needs_a_valid_chat() {
        let typing = |chat_id: &str| {
            TypingIn::try_from(&proto::TypingRequest {
                chat_id: chat_id.to_owned(),
            })
        };
        assert_eq!(typing(CHAT), Ok(TypingIn(ChatId::parse(CHAT).unwrap())));
        assert_eq!(typing(""), Err(ValidationError::ChatIdMissing));
        assert!(matches!(
            typing("ABC"),
            Err(ValidationError::ChatIdInvalid(_))
        ));
    }

    #[test]
    fn unset_settings_stay_unchanged() {
        assert_eq!(
            SettingsChange::from(&proto::Settings::default()),
            SettingsChange::default()
        );
        let on = proto::Settings {
            private_receipts: Some(true),
        };
        assert_eq!(SettingsChange::from(&on).private_receipts, Some(true));
    }

    #[test]
    fn typing_is_resent_well_before_it_expires() {
        const { assert!(TYPING_RESEND_MS * 2 <= TYPING_SHOWN_MS) };
        const { assert!(TYPING_INTERVAL_MS <= TYPING_RESEND_MS) };
    }
}
