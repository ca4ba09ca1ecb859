//! What people write: message text, subjects and passwords, each checked once here.

use std::fmt;

use crate::ValidationError;
use crate::limits::*;

/// Message text: not blank, at most [`TEXT_MAX_CHARS`] characters, and no control characters
/// other than line breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        if input.trim().is_empty() {
            return Err(ValidationError::TextBlank);
        }
        let length = input.chars().count();
        if length > TEXT_MAX_CHARS {
            return Err(ValidationError::TextTooLong(length));
        }
        if input
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ValidationError::TextControl);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optional one-line subject of at most [`SUBJECT_MAX_CHARS`] characters; empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let length = input.chars().count();
        if length > SUBJECT_MAX_CHARS {
            return Err(ValidationError::SubjectTooLong(length));
        }
        if input.chars().any(char::is_control) {
            return Err(ValidationError::SubjectControl);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of [`PASSWORD_MIN_CHARS`] to [`PASSWORD_MAX_CHARS`] characters. Its `Debug`
/// never shows it, so it cannot end up in a log by accident.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let length = input.chars().count();
        if length < PASSWORD_MIN_CHARS {
            return Err(ValidationError::PasswordTooShort);
        }
        if length > PASSWORD_MAX_CHARS {
            return Err(ValidationError::PasswordTooLong);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_must_be_non_blank_bounded_and_printable() {
        assert!(Text::parse("hello\nworld\t!").is_ok());
        assert_eq!(Text::parse(" \n\t"), Err(ValidationError::TextBlank));
        assert_eq!(Text::parse(""), Err(ValidationError::TextBlank));
        assert!(Text::parse(&"é".repeat(TEXT_MAX_CHARS)).is_ok());
        assert_eq!(
            Text::parse(&"é".repeat(TEXT_MAX_CHARS + 1)),
            Err(ValidationError::TextTooLong(TEXT_MAX_CHARS + 1))
        );
        assert_eq!(Text::parse("nul\0byte"), Err(ValidationError::TextControl));
        assert_eq!(Text::parse("bell\u{7}"), Err(ValidationError::TextControl));
    }

    #[test]
    fn subject_is_one_bounded_line() {
        assert_eq!(Subject::parse("").unwrap().as_str(), "");
        assert!(Subject::parse("Lunch?").is_ok());
        assert_eq!(
            Subject::parse("two\nlines"),
            Err(ValidationError::SubjectControl)
        );
        assert!(matches!(
            Subject::parse(&"s".repeat(SUBJECT_MAX_CHARS + 1)),
            Err(ValidationError::SubjectTooLong(_))
        ));
    }

    #[test]
    fn password_is_bounded_and_never_printed() {
        assert_eq!(
            Password::parse("short").unwrap_err(),
            ValidationError::PasswordTooShort
        );
        assert!(Password::parse(&"p".repeat(PASSWORD_MAX_CHARS + 1)).is_err());
        let password = Password::parse("correct horse").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
