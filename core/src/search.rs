//! Search queries: how text splits into words, which query words a request may hold, and
//! which parts of a found message to highlight. The server builds its index queries from
//! [`SearchQuery::words`] and the browser highlights results with [`highlights`]: both use
//! the one splitting ([`words`]) defined here, which is also how the indexes split messages
//! (SQLite's `unicode61` tokenizer and the PostgreSQL column, see the server's store).

use std::ops::Range;

use crate::ValidationError;
use crate::ids::{ChatId, MessageId};
use crate::limits::*;
use crate::proto;

/// A validated Search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub terms: SearchTerms,
    pub chat_id: Option<ChatId>,
    /// 1 to [`SEARCH_MAX_PAGE`].
    pub limit: u32,
    /// Only messages older than this one (the page token); `None` for the first page.
    pub before: Option<MessageId>,
}

impl TryFrom<&proto::SearchRequest> for SearchQuery {
    type Error = ValidationError;

    fn try_from(request: &proto::SearchRequest) -> Result<Self, Self::Error> {
        let terms = SearchTerms::parse(&request.query)?;
        let limit = match request.limit {
            n if n < 0 => return Err(ValidationError::NegativeLimit),
            0 => SEARCH_DEFAULT_PAGE,
            n => (n as u32).min(SEARCH_MAX_PAGE),
        };
        let before = match request.page_token.as_str() {
            "" => None,
            token => Some(page_token(token)?),
        };
        Ok(Self {
            terms,
            chat_id: ChatId::parse_optional(&request.chat_id)?,
            limit,
            before,
        })
    }
}

/// The `next_page_token` of a page whose last (oldest) result is `last`.
pub fn next_page_token(last: MessageId) -> String {
    last.to_string()
}

fn page_token(token: &str) -> Result<MessageId, ValidationError> {
    match MessageId::parse_optional("page_token", token) {
        Ok(Some(id)) => Ok(id),
        _ => Err(ValidationError::PageTokenInvalid(token.to_owned())),
    }
}

/// The words of a query, lower-cased, in the order typed, without repeats. Every word must
/// be in a message for it to be found; the last one also matches the start of a longer word
/// when `last_is_prefix` (the query did not end with a space or punctuation, so the person
/// may still be typing it). Words hold only letters, digits and combining marks, so nothing
/// in them can be index query syntax; the backends quote them anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerms {
    words: Vec<String>,
    last_is_prefix: bool,
}

impl SearchTerms {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        if crate::content::shows_nothing(input) {
            return Err(ValidationError::SearchBlank);
        }
        let length = input.chars().count();
        if length > SEARCH_QUERY_MAX_CHARS {
            return Err(ValidationError::SearchTooLong(length));
        }
        let mut found: Vec<String> = Vec::new();
        for (_, word) in words(input) {
            let word = word.to_lowercase();
            if !found.contains(&word) {
                found.push(word);
            }
        }
        match found.len() {
            0 => return Err(ValidationError::SearchNoWords),
            n if n > SEARCH_MAX_WORDS => return Err(ValidationError::SearchTooManyWords(n)),
            _ => {}
        }
        let last_is_prefix = input.chars().next_back().is_some_and(is_word_char);
        Ok(Self {
            words: found,
            last_is_prefix,
        })
    }

    /// The words, lower-cased; at least one.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Whether the last of [`SearchTerms::words`] matches as a prefix too.
    pub fn last_is_prefix(&self) -> bool {
        self.last_is_prefix
    }
}

/// The words of `text` with their byte ranges: maximal runs of letters, digits and combining
/// marks. Everything else (spaces, punctuation, symbols, emoji) separates words, as in
/// SQLite's `unicode61` tokenizer.
pub fn words(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = rest.find(|&(_, c)| is_word_char(c))?;
        let mut end = text.len();
        while let Some(&(at, c)) = rest.peek() {
            if !is_word_char(c) {
                end = at;
                break;
            }
            rest.next();
        }
        Some((start..end, &text[start..end]))
    })
}

/// The byte ranges of `text` to highlight for `terms`: every word that equals a query word,
/// or starts with the last one when it is a prefix, ignoring case and (Latin) accents.
/// Ranges are in order and do not overlap; they fall on character boundaries.
pub fn highlights(text: &str, terms: &SearchTerms) -> Vec<Range<usize>> {
    let folded_terms: Vec<String> = terms.words.iter().map(|word| fold(word)).collect();
    let last = folded_terms.len() - 1;
    words(text)
        .filter(|(_, word)| {
            let word = fold(word);
            folded_terms.iter().enumerate().any(|(i, term)| {
                word == *term || (i == last && terms.last_is_prefix && word.starts_with(term))
            })
        })
        .map(|(range, _)| range)
        .collect()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// Combining marks of the common blocks (accents written as separate characters, Hebrew and
/// Arabic points, the vowel signs of Indic scripts): part of the word they sit on.
pub fn is_combining_mark(c: char) -> bool {
    matches!(u32::from(c),
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x05BF..=0x05C7
        | 0x0610..=0x061A | 0x064B..=0x065F | 0x0670 | 0x06D6..=0x06ED
        | 0x0900..=0x0963 | 0x0966..=0x0DFF | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF
        | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// A word as the index compares it: lower-cased, without the accents of Latin letters.
fn fold(word: &str) -> String {
    word.chars()
        .flat_map(char::to_lowercase)
        .filter(|&c| !matches!(u32::from(c), 0x0300..=0x036F))
        .map(unaccented)
        .collect()
}

/// The base letter of a lower- or upper-case Latin letter with a diacritic, from Latin-1,
/// Latin Extended-A and Latin Extended Additional; `.` in the tables marks letters without
/// one (æ, ß, ×...), which stay as they are.
fn unaccented(c: char) -> char {
    const LATIN_1_AND_EXTENDED_A: &[u8] = b"aaaaaa.ceeeeiiii.nooooo.ouuuuy..aaaaaa.ceeeeiiii.nooooo.ouuuuy.yaaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii..jjkk.llllll..llnnnnnn...oooooo..rrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzz.";
    const LATIN_EXTENDED_ADDITIONAL: &[u8] = b"aabbbbbbccddddddddddeeeeeeeeeeffgghhhhhhhhhhiiiikkkkkkllllllllmmmmmmnnnnnnnnoooooooopppprrrrrrrrssssssssssttttttttuuuuuuuuuuvvvvwwwwwwwwwwxxxxyyzzzzzzhtwy......aaaaaaaaaaaaaaaaaaaaaaaaeeeeeeeeeeeeeeeeiiiioooooooooooooooooooooooouuuuuuuuuuuuuuyyyyyyyy......";
    let code = u32::from(c);
    let base = match code {
        0x00C0..=0x017F => LATIN_1_AND_EXTENDED_A[(code - 0x00C0) as usize],
        0x1E00..=0x1EFF => LATIN_EXTENDED_ADDITIONAL[(code - 0x1E00) as usize],
        _ => return c,
    };
    if base == b'.' { c } else { char::from(base) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(query: &str) -> SearchTerms {
        SearchTerms::parse(query).unwrap_or_else(|error| panic!("{query:?}: {error}"))
    }

    fn highlighted<'a>(text: &'a str, query: &str) -> Vec<&'a str> {
        highlights(text, &terms(query))
            .into_iter()
            .map(|range| &text[range])
            .collect()
    }

    #[test]
    fn words_split_at_punctuation_spaces_and_symbols() {
        let split: Vec<&str> = words("Hello, world! It's 9:30 — café‐crème? 👍ok")
            .map(|(_, w)| w)
            .collect();
        assert_eq!(
            split,
            [
                "Hello", "world", "It", "s", "9", "30", "café", "crème", "ok"
            ]
        );
        let split: Vec<&str> = words("Привет, мир. שלום עולם! مرحبا بالعالم 東京タワー")
            .map(|(_, w)| w)
            .collect();
        assert_eq!(
            split,
            [
                "Привет",
                "мир",
                "שלום",
                "עולם",
                "مرحبا",
                "بالعالم",
                "東京タワー"
            ]
        );
        // Combining accents and Indic vowel signs stay inside their word.
        let split: Vec<&str> = words("cafe\u{301} नमस्ते दुनिया").map(|(_, w)| w).collect();
        assert_eq!(split, ["cafe\u{301}", "नमस्ते", "दुनिया"]);
        assert_eq!(words(" ,.!? ").count(), 0);
    }

    #[test]
    fn queries_are_words_without_operators() {
        let query = terms("\"Hello\" OR (world*) -NEAR: hello");
        assert_eq!(query.words(), ["hello", "or", "world", "near"]);
        assert!(query.last_is_prefix());
        assert!(!terms("hello ").last_is_prefix());
        assert!(!terms("hello?").last_is_prefix());
    }

    #[test]
    fn bad_queries_are_refused_with_a_reason() {
        for (query, expected) in [
            ("", ValidationError::SearchBlank),
            ("  \u{200B}\n", ValidationError::SearchBlank),
            ("?!… -- \"\" **", ValidationError::SearchNoWords),
            (
                &"x".repeat(SEARCH_QUERY_MAX_CHARS + 1),
                ValidationError::SearchTooLong(SEARCH_QUERY_MAX_CHARS + 1),
            ),
            (
                &(0..=SEARCH_MAX_WORDS)
                    .map(|i| format!("w{i} "))
                    .collect::<String>(),
                ValidationError::SearchTooManyWords(SEARCH_MAX_WORDS + 1),
            ),
        ] {
            assert_eq!(SearchTerms::parse(query), Err(expected), "{query:?}");
        }
        // Repeats do not count twice.
        assert_eq!(
            terms(&"same ".repeat(SEARCH_MAX_WORDS + 5)).words(),
            ["same"]
        );
    }

    #[test]
    fn highlights_follow_words_case_accents_and_the_last_prefix() {
        assert_eq!(
            highlighted("Café au lait, CAFE noir", "cafe"),
            ["Café", "CAFE"]
        );
        assert_eq!(
            highlighted("Crème brûlée", "creme brulee"),
            ["Crème", "brûlée"]
        );
        assert_eq!(
            highlighted("hello helicopter help", "hel"),
            ["hello", "helicopter", "help"]
        );
        assert_eq!(
            highlighted("hello helicopter help", "hel "),
            Vec::<&str>::new()
        );
        assert_eq!(highlighted("hello help", "help"), ["help"]);
        assert_eq!(highlighted("Größe: 10 m²; Łódź", "lodz grosse"), ["Łódź"]);
        assert_eq!(highlighted("Привет, МИР!", "мир"), ["МИР"]);
        assert_eq!(
            highlighted("say \"hi\" (or *not*)", "\"hi\" or"),
            ["hi", "or"]
        );
        let text = "naïve naïve";
        for range in highlights(text, &terms("naive")) {
            assert!(text.is_char_boundary(range.start) && text.is_char_boundary(range.end));
        }
    }

    #[test]
    fn requests_have_a_default_page_a_cap_and_tokens() {
        let request = |limit, page_token: &str| proto::SearchRequest {
            query: "hi".into(),
            chat_id: String::new(),
            limit,
            page_token: page_token.into(),
        };
        let query = SearchQuery::try_from(&request(0, "")).unwrap();
        assert_eq!((query.limit, query.before), (SEARCH_DEFAULT_PAGE, None));
        assert_eq!(
            SearchQuery::try_from(&request(999, "")).unwrap().limit,
            SEARCH_MAX_PAGE
        );
        assert_eq!(
            SearchQuery::try_from(&request(0, &next_page_token(MessageId(41))))
                .unwrap()
                .before,
            Some(MessageId(41))
        );
        for bad in ["x", "-1", "1.2"] {
            assert_eq!(
                SearchQuery::try_from(&request(0, bad)),
                Err(ValidationError::PageTokenInvalid(bad.into()))
            );
        }
        assert_eq!(
            SearchQuery::try_from(&request(-1, "")),
            Err(ValidationError::NegativeLimit)
        );
    }
}
