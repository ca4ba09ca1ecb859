//! What people write: message text, subjects and passwords, each checked once here.

use std::fmt;

use crate::ValidationError;
use crate::limits::*;

/// Message text: something visible (see [`shows_nothing`]), at most [`TEXT_MAX_CHARS`]
/// characters, and no control characters other than line breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

parse_by_check!(Text);

impl Text {
    fn check(input: &str) -> Result<(), ValidationError> {
        if shows_nothing(input) {
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

/// An optional one-line subject of at most [`SUBJECT_MAX_CHARS`] characters; empty means none,
/// and one that is not empty must show something (see [`shows_nothing`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject(String);

parse_by_check!(Subject);

impl Subject {
    fn check(input: &str) -> Result<(), ValidationError> {
        let length = input.chars().count();
        if length > SUBJECT_MAX_CHARS {
            return Err(ValidationError::SubjectTooLong(length));
        }
        if input.chars().any(char::is_control) {
            return Err(ValidationError::SubjectControl);
        }
        if !input.is_empty() && shows_nothing(input) {
            return Err(ValidationError::SubjectBlank);
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

/// Whether `input` renders as nothing at all: it is empty, or every character is white space
/// or invisible by nature (see [`is_invisible`]). Such a message would arrive as a blank
/// bubble, so it is refused like empty text. The same characters inside visible text are
/// kept: right-to-left marks, joiners in emoji and Persian words, and the like do real work.
pub fn shows_nothing(input: &str) -> bool {
    input.chars().all(|c| c.is_whitespace() || is_invisible(c))
}

/// Unicode's `Default_Ignorable_Code_Point` characters (zero-width spaces and joiners, bidi
/// marks and controls, variation selectors, tags, Hangul fillers, ...), which a renderer
/// shows as nothing, plus U+2800 BRAILLE PATTERN BLANK, a visible-width blank often used as a
/// "space" that trimming does not remove. The table is from DerivedCoreProperties.txt.
fn is_invisible(c: char) -> bool {
    const RANGES: [(u32, u32); 18] = [
        (0x00AD, 0x00AD),
        (0x034F, 0x034F),
        (0x061C, 0x061C),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180F),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x206F),
        (0x2800, 0x2800),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFEFF, 0xFEFF),
        (0xFFA0, 0xFFA0),
        (0xFFF0, 0xFFF8),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0000, 0xE0FFF),
    ];
    let c = u32::from(c);
    RANGES
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// The beginning of a message's text that a reply quotes: its first [`REPLY_PREFIX_CHARS`]
/// characters, cut between characters. The server fills reply previews with it; the web app
/// shows what it is given, so the length is defined here once.
pub fn reply_prefix(text: &str) -> &str {
    match text.char_indices().nth(REPLY_PREFIX_CHARS) {
        None => text,
        Some((cut, _)) => &text[..cut],
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

    /// Strings that render as nothing: each alone, and all of them together with spaces.
    const INVISIBLE: [&str; 20] = [
        "\u{200B}",           // zero width space
        "\u{2060}",           // word joiner
        "\u{FEFF}",           // byte order mark
        "\u{200C}\u{200D}",   // zero width non-joiner and joiner
        "\u{00AD}",           // soft hyphen
        "\u{034F}",           // combining grapheme joiner
        "\u{061C}",           // Arabic letter mark
        "\u{180E}",           // Mongolian vowel separator
        "\u{200E}\u{200F}",   // left-to-right and right-to-left marks
        "\u{202E}",           // right-to-left override
        "\u{2066}\u{2069}",   // isolates
        "\u{2064}",           // invisible plus
        "\u{3164}",           // Hangul filler
        "\u{115F}\u{1160}",   // Hangul choseong and jungseong fillers
        "\u{FFA0}",           // halfwidth Hangul filler
        "\u{2800}",           // braille pattern blank
        "\u{FE0F}",           // variation selector
        "\u{E0020}\u{E007F}", // tag space, cancel tag
        "\u{3000}\u{00A0}",   // ideographic and no-break spaces
        " \u{200B}\n\u{2060}\t\u{FEFF} ",
    ];

    #[test]
    fn text_and_subjects_that_show_nothing_are_refused_like_empty_ones() {
        for invisible in INVISIBLE {
            assert_eq!(
                Text::parse(invisible),
                Err(ValidationError::TextBlank),
                "text {invisible:?}"
            );
            // A subject is one line: line breaks are refused first, for what they are.
            let expected = if invisible.chars().any(char::is_control) {
                ValidationError::SubjectControl
            } else {
                ValidationError::SubjectBlank
            };
            assert_eq!(
                Subject::parse(invisible),
                Err(expected),
                "subject {invisible:?}"
            );
        }
        let all = INVISIBLE.concat();
        assert_eq!(Text::parse(&all), Err(ValidationError::TextBlank));
        // One visible character is enough.
        assert!(Text::parse(&format!("{all}.{all}")).is_ok());
        assert!(Subject::parse("\u{200B}x").is_ok());
    }

    #[test]
    fn right_to_left_text_with_its_marks_and_joiners_is_kept_as_written() {
        for written in [
            "مرحبا بالعالم",                       // Arabic
            "שלום עולם\u{200F}",                   // Hebrew ending in a right-to-left mark
            "\u{200F}שלום\u{200E} (v2.0)\u{200F}", // marks around a left-to-right run
            "\u{2067}مرحبا\u{2069} means hello",   // an isolate inside English
            "\u{061C}١٢٣",                         // Arabic letter mark before digits
            "می\u{200C}خواهم",                     // Persian with a zero width non-joiner
            "👩\u{200D}💻 ❤\u{FE0F}",              // emoji joined and with a selector
        ] {
            let text = Text::parse(written).unwrap_or_else(|error| panic!("{written:?}: {error}"));
            assert_eq!(text.as_str(), written);
            let subject =
                Subject::parse(written).unwrap_or_else(|error| panic!("{written:?}: {error}"));
            assert_eq!(subject.as_str(), written);
        }
    }

    #[test]
    fn reply_prefix_is_the_first_characters() {
        assert_eq!(reply_prefix("short"), "short");
        let long = "é".repeat(REPLY_PREFIX_CHARS + 10);
        assert_eq!(reply_prefix(&long), "é".repeat(REPLY_PREFIX_CHARS));
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
