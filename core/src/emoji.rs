//! What a reaction is: exactly one emoji, checked here so the server and the browser's picker
//! agree on it.

use crate::ValidationError;
use crate::limits::EMOJI_MAX_BYTES;

/// One emoji: a single grapheme of Unicode's emoji set (UTS #51), at most
/// [`EMOJI_MAX_BYTES`]. That is a ZWJ sequence (`U+200D`-joined) of elements, each one of:
/// a pictograph (`Extended_Pictographic`), optionally with the emoji variation selector
/// `U+FE0F`, a skin tone modifier, or (after the black flag) a tag sequence; a keycap
/// (`0-9 # *`, optional `U+FE0F`, `U+20E3`); or a flag (two regional indicators). Letters,
/// digits alone, several emoji, white space and joiners without an emoji on each side are
/// not one emoji.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        if input.is_empty() {
            return Err(ValidationError::EmojiMissing);
        }
        if input.len() > EMOJI_MAX_BYTES || !is_one_emoji(input) {
            return Err(ValidationError::EmojiInvalid(input.to_owned()));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const ZWJ: char = '\u{200D}';
const EMOJI_PRESENTATION: char = '\u{FE0F}';
const KEYCAP: char = '\u{20E3}';
const BLACK_FLAG: char = '\u{1F3F4}';
const CANCEL_TAG: char = '\u{E007F}';

fn is_one_emoji(input: &str) -> bool {
    let chars: Vec<char> = input.chars().collect();
    let mut rest = &chars[..];
    loop {
        let Some(after) = element(rest) else {
            return false;
        };
        match after.split_first() {
            None => return true,
            Some((&ZWJ, next)) => rest = next,
            Some(_) => return false,
        }
    }
}

/// Reads one element of an emoji sequence at the start of `chars`; returns what follows it.
fn element(chars: &[char]) -> Option<&[char]> {
    let (&first, mut rest) = chars.split_first()?;
    if is_regional_indicator(first) {
        let (&second, rest) = rest.split_first()?;
        return is_regional_indicator(second).then_some(rest);
    }
    if matches!(first, '0'..='9' | '#' | '*') {
        let rest = rest.strip_prefix(&[EMOJI_PRESENTATION][..]).unwrap_or(rest);
        return rest.strip_prefix(&[KEYCAP][..]);
    }
    if !is_pictographic(first) {
        return None;
    }
    if let Some(after) = rest.strip_prefix(&[EMOJI_PRESENTATION][..]) {
        rest = after;
    }
    if let Some((&modifier, after)) = rest.split_first()
        && is_skin_tone(modifier)
    {
        rest = after;
    }
    if first == BLACK_FLAG && rest.first().copied().is_some_and(is_tag) {
        while let Some((&tag, after)) = rest.split_first()
            && is_tag(tag)
        {
            rest = after;
        }
        rest = rest.strip_prefix(&[CANCEL_TAG][..])?;
    }
    Some(rest)
}

fn is_regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

fn is_skin_tone(c: char) -> bool {
    ('\u{1F3FB}'..='\u{1F3FF}').contains(&c)
}

fn is_tag(c: char) -> bool {
    ('\u{E0020}'..='\u{E007E}').contains(&c)
}

/// Unicode's `Extended_Pictographic` property (emoji-data.txt), the code points an emoji
/// grapheme is built on.
fn is_pictographic(c: char) -> bool {
    const RANGES: [(u32, u32); 78] = [
        (0x00A9, 0x00A9),
        (0x00AE, 0x00AE),
        (0x203C, 0x203C),
        (0x2049, 0x2049),
        (0x2122, 0x2122),
        (0x2139, 0x2139),
        (0x2194, 0x2199),
        (0x21A9, 0x21AA),
        (0x231A, 0x231B),
        (0x2328, 0x2328),
        (0x2388, 0x2388),
        (0x23CF, 0x23CF),
        (0x23E9, 0x23F3),
        (0x23F8, 0x23FA),
        (0x24C2, 0x24C2),
        (0x25AA, 0x25AB),
        (0x25B6, 0x25B6),
        (0x25C0, 0x25C0),
        (0x25FB, 0x25FE),
        (0x2600, 0x2605),
        (0x2607, 0x2612),
        (0x2614, 0x2685),
        (0x2690, 0x2705),
        (0x2708, 0x2712),
        (0x2714, 0x2714),
        (0x2716, 0x2716),
        (0x271D, 0x271D),
        (0x2721, 0x2721),
        (0x2728, 0x2728),
        (0x2733, 0x2734),
        (0x2744, 0x2744),
        (0x2747, 0x2747),
        (0x274C, 0x274C),
        (0x274E, 0x274E),
        (0x2753, 0x2755),
        (0x2757, 0x2757),
        (0x2763, 0x2767),
        (0x2795, 0x2797),
        (0x27A1, 0x27A1),
        (0x27B0, 0x27B0),
        (0x27BF, 0x27BF),
        (0x2934, 0x2935),
        (0x2B05, 0x2B07),
        (0x2B1B, 0x2B1C),
        (0x2B50, 0x2B50),
        (0x2B55, 0x2B55),
        (0x3030, 0x3030),
        (0x303D, 0x303D),
        (0x3297, 0x3297),
        (0x3299, 0x3299),
        (0x1F000, 0x1F0FF),
        (0x1F10D, 0x1F10F),
        (0x1F12F, 0x1F12F),
        (0x1F16C, 0x1F171),
        (0x1F17E, 0x1F17F),
        (0x1F18E, 0x1F18E),
        (0x1F191, 0x1F19A),
        (0x1F1AD, 0x1F1E5),
        (0x1F201, 0x1F20F),
        (0x1F21A, 0x1F21A),
        (0x1F22F, 0x1F22F),
        (0x1F232, 0x1F23A),
        (0x1F23C, 0x1F23F),
        (0x1F249, 0x1F3FA),
        (0x1F400, 0x1F53D),
        (0x1F546, 0x1F64F),
        (0x1F680, 0x1F6FF),
        (0x1F774, 0x1F77F),
        (0x1F7D5, 0x1F7FF),
        (0x1F80C, 0x1F80F),
        (0x1F848, 0x1F84F),
        (0x1F85A, 0x1F85F),
        (0x1F888, 0x1F88F),
        (0x1F8AE, 0x1F8FF),
        (0x1F90C, 0x1F93A),
        (0x1F93C, 0x1F945),
        (0x1F947, 0x1FAFF),
        (0x1FC00, 0x1FFFD),
    ];
    let c = u32::from(c);
    RANGES
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_emoji_of_every_form_is_accepted() {
        for emoji in [
            "👍",
            "👍🏽",
            "❤️",
            "❤",
            "©️",
            "1️⃣",
            "#⃣",
            "🇫🇷",
            "👨‍👩‍👧‍👦",
            "🏳️‍🌈",
            "🧑🏿‍🤝‍🧑🏻",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ] {
            assert_eq!(Emoji::parse(emoji).map(|e| e.0), Ok(emoji.to_owned()));
        }
    }

    #[test]
    fn text_several_emoji_and_broken_sequences_are_refused() {
        assert_eq!(Emoji::parse(""), Err(ValidationError::EmojiMissing));
        for not_one in [
            "a",
            "ok",
            "1",
            "#",
            "é",
            "中",
            "👍👍",
            "👍 ",
            " 👍",
            "🇫",
            "🇫🇷🇩🇪",
            "\u{200D}",
            "👍\u{200D}",
            "\u{200D}👍",
            "🏽",
            "👍\u{FE0E}",
            "👍\u{0301}",
            "🏴\u{E0067}\u{E0062}",
            "\u{E0067}\u{E007F}",
            ":+1:",
        ] {
            assert_eq!(
                Emoji::parse(not_one),
                Err(ValidationError::EmojiInvalid(not_one.to_owned())),
                "{not_one:?}"
            );
        }
    }

    #[test]
    fn a_sequence_longer_than_the_limit_is_refused() {
        let long = ["👍"; 17].join("\u{200D}");
        assert!(long.len() > EMOJI_MAX_BYTES);
        assert!(Emoji::parse(&long).is_err());
        let fits = ["👍"; 9].join("\u{200D}");
        assert!(fits.len() <= EMOJI_MAX_BYTES);
        assert!(Emoji::parse(&fits).is_ok());
    }
}
