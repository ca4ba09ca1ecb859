//! Identifiers: each type can only hold a valid value, so code that has one need not check.

use std::fmt;

use crate::ValidationError;
use crate::limits::*;

/// An account name: 3 to 32 characters from `a-z`, `0-9`, `.`, `_`, `-`, starting with a
/// letter or digit. Input is lower-cased first, so `Alice` and `alice` are one account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let id = input.to_ascii_lowercase();
        let length = id.chars().count();
        if !(USER_ID_MIN_CHARS..=USER_ID_MAX_CHARS).contains(&length) {
            return Err(ValidationError::UserIdLength(input.to_owned()));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        if !id.chars().all(allowed) {
            return Err(ValidationError::UserIdCharacters(input.to_owned()));
        }
        if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(ValidationError::UserIdStart(input.to_owned()));
        }
        Ok(Self(id))
    }

    /// Parses a `user_id` field or `user-id` metadata that may be left empty to mean "the
    /// caller": `Ok(None)` when empty.
    pub fn parse_optional(input: &str) -> Result<Option<Self>, ValidationError> {
        if input.is_empty() {
            Ok(None)
        } else {
            Self::parse(input).map(Some)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string itself, for a wire message that owns its fields: no copy.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chat id: 32 lowercase hex digits (128 random bits), so chat ids cannot be guessed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChatId(String);

parse_by_check!(ChatId);

impl ChatId {
    const HEX_DIGITS: usize = 32;

    fn check(input: &str) -> Result<(), ValidationError> {
        if input.is_empty() {
            return Err(ValidationError::ChatIdMissing);
        }
        let well_formed = input.len() == Self::HEX_DIGITS
            && input
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(ValidationError::ChatIdInvalid(input.to_owned()));
        }
        Ok(())
    }

    /// Parses a chat id that may be left empty to mean "every chat": `Ok(None)` when empty.
    pub fn parse_optional(input: &str) -> Result<Option<Self>, ValidationError> {
        if input.is_empty() {
            Ok(None)
        } else {
            Self::parse(input).map(Some)
        }
    }

    /// Makes a chat id from 128 random bits; the server supplies the randomness.
    pub fn from_random(bits: u128) -> Self {
        Self(format!("{bits:032x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string itself, for a wire message that owns its fields: no copy.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message id: on the wire, the decimal string of a 64-bit unsigned integer. Ids increase
/// in commit order across the whole server, so they compare as numbers and one id is a
/// cursor over every chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

impl MessageId {
    /// Parses an optional id such as `before_id` or `after_id`; `field` names it in the error.
    pub fn parse_optional(
        field: &'static str,
        input: &str,
    ) -> Result<Option<Self>, ValidationError> {
        if input.is_empty() {
            return Ok(None);
        }
        // `u64::from_str` accepts a leading '+'; ids on the wire are plain digits only.
        if !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValidationError::MessageIdInvalid {
                field,
                value: input.to_owned(),
            });
        }
        input
            .parse()
            .map(|id| Some(Self(id)))
            .map_err(|_| ValidationError::MessageIdInvalid {
                field,
                value: input.to_owned(),
            })
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id a client gives each message it sends, reused on every retry of that message:
/// 1 to 64 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

parse_by_check!(ClientId);

impl ClientId {
    fn check(input: &str) -> Result<(), ValidationError> {
        if input.is_empty() {
            return Err(ValidationError::ClientIdMissing);
        }
        if input.len() > CLIENT_ID_MAX_CHARS || !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::ClientIdInvalid);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string itself, for a wire message that owns its fields: no copy.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_lowercased_and_checked() {
        assert_eq!(UserId::parse("Alice_1").unwrap().as_str(), "alice_1");
        assert_eq!(UserId::parse("a.b-c").unwrap().as_str(), "a.b-c");
        for bad in [
            "",
            "ab",
            &"a".repeat(33),
            "al ice",
            "_alice",
            "-bob",
            "bøb",
            "a\u{0}b",
            "élan",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(UserId::parse_optional("").unwrap(), None);
    }

    #[test]
    fn chat_ids_are_32_lowercase_hex_digits() {
        let id = ChatId::from_random(u128::MAX - 1);
        assert_eq!(ChatId::parse(id.as_str()).unwrap(), id);
        assert_eq!(ChatId::from_random(1).as_str().len(), 32);
        assert_eq!(ChatId::parse(""), Err(ValidationError::ChatIdMissing));
        for bad in ["abc", &"A".repeat(32), &"g".repeat(32), &"0".repeat(33)] {
            assert!(matches!(
                ChatId::parse(bad),
                Err(ValidationError::ChatIdInvalid(_))
            ));
        }
    }

    #[test]
    fn message_ids_are_plain_decimal_u64() {
        assert_eq!(MessageId::parse_optional("f", "").unwrap(), None);
        assert_eq!(
            MessageId::parse_optional("f", "42").unwrap(),
            Some(MessageId(42))
        );
        assert_eq!(
            MessageId::parse_optional("f", "18446744073709551615").unwrap(),
            Some(MessageId(u64::MAX))
        );
        for bad in ["-1", "+1", "1.0", "abc", "18446744073709551616", " 1"] {
            assert!(
                MessageId::parse_optional("before_id", bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_ids_are_short_visible_ascii() {
        assert!(ClientId::parse("6f1c2a4e-8d6b-4c1e-9a51-0c8a4d5e2f10").is_ok());
        assert_eq!(ClientId::parse(""), Err(ValidationError::ClientIdMissing));
        for bad in ["has space", "tab\t", &"x".repeat(65), "ünï"] {
            assert_eq!(
                ClientId::parse(bad),
                Err(ValidationError::ClientIdInvalid),
                "{bad:?}"
            );
        }
    }
}
