//! Search queries: how text splits into words and tokens, which query words a request may
//! hold, and which parts of a found message to highlight. The server builds its index
//! queries from [`SearchTerms::words`] and tells clients where each result matched
//! ([`matches`], from [`highlights`]); the browser checks a query with
//! [`SearchTerms::parse`] before sending it. All of it uses the one splitting ([`tokens`])
//! defined here, which is also how the indexes split messages (SQLite's index takes
//! [`index_text`], and so do the words the server gives PostgreSQL's column).

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
    runs(text, false)
}

/// The search tokens of `text` with their byte ranges: its [`words`], except that every
/// [unspaced](is_unspaced) character is a token of its own. A query word is found where its
/// tokens stand one after another (a phrase), so "东京" is found inside "我住在东京", which
/// no space splits into words.
pub fn tokens(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    runs(text, true)
}

/// The words of `text`, each unspaced character apart when `unspaced_apart`: one loop for
/// both, so a token never reaches past its word.
fn runs(text: &str, unspaced_apart: bool) -> impl Iterator<Item = (Range<usize>, &str)> {
    let apart = move |c| unspaced_apart && is_unspaced(c);
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, first) = rest.find(|&(_, c)| is_word_char(c))?;
        let mut end = start + first.len_utf8();
        if !apart(first) {
            while let Some(&(at, c)) = rest.peek() {
                if !is_word_char(c) || apart(c) {
                    break;
                }
                end = at + c.len_utf8();
                rest.next();
            }
        }
        Some((start..end, &text[start..end]))
    })
}

/// Whether `c` is written without spaces between words: Chinese characters, Japanese kana,
/// Thai, Lao, Burmese and Khmer, and Korean syllables (Korean puts spaces between phrases,
/// but a noun and its particles are one: 서울에서, "in Seoul"). Such a character is a search
/// token of its own.
pub fn is_unspaced(c: char) -> bool {
    matches!(u32::from(c),
        0x0E00..=0x0EFF | 0x1000..=0x109F | 0x1780..=0x17FF | 0x3040..=0x30FF
        | 0x31F0..=0x31FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF | 0xFF66..=0xFF9F | 0x2_0000..=0x3_FFFF)
}

/// `text` as SQLite's search index takes it: its [`tokens`], [folded](fold_into), one space
/// between each. Queries go through it too, so a text and a query always split and fold
/// alike; the index's `unicode61` tokenizer then only splits at the spaces.
pub fn index_text(text: &str) -> String {
    let mut indexed = String::with_capacity(text.len() + text.len() / 4);
    for (_, token) in tokens(text) {
        if !indexed.is_empty() {
            indexed.push(' ');
        }
        fold_into(&mut indexed, token);
    }
    indexed
}

/// The byte ranges of `text` to highlight for `terms`: wherever a query word's tokens stand
/// one after another (for most words, a word equal to the query word), the last token
/// matching the start of a longer one when the last word is a prefix, ignoring case and
/// (Latin) accents, as the indexes match. Ranges are in order and do not overlap (touching
/// ones are joined); they fall on character boundaries.
pub fn highlights(text: &str, terms: &SearchTerms) -> Vec<Range<usize>> {
    let found = Folded::tokens_of(text);
    let mut marked = vec![false; found.len()];
    let last = terms.words.len() - 1;
    for (i, word) in terms.words.iter().enumerate() {
        let phrase = Folded::tokens_of(word);
        let prefix = i == last && terms.last_is_prefix;
        let n = phrase.len();
        for start in 0..(found.len() + 1).saturating_sub(n) {
            let matches = (0..n).all(|k| {
                let (token, term) = (found.token(start + k), phrase.token(k));
                token == term || (prefix && k + 1 == n && token.starts_with(term))
            });
            if matches {
                marked[start..start + n].fill(true);
            }
        }
    }
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for ((range, _), _) in found
        .tokens
        .into_iter()
        .zip(marked)
        .filter(|(_, marked)| *marked)
    {
        match ranges.last_mut() {
            Some(previous) if previous.end == range.start => previous.end = range.end,
            _ => ranges.push(range),
        }
    }
    ranges
}

/// The tokens of a text, folded into one string (two allocations for a whole message, not
/// one per token: the server highlights every result of every search).
struct Folded {
    folded: String,
    /// Each token's range in the text and in `folded`.
    tokens: Vec<(Range<usize>, Range<usize>)>,
}

impl Folded {
    fn tokens_of(text: &str) -> Self {
        let mut folded = String::with_capacity(text.len());
        let tokens = tokens(text)
            .map(|(range, token)| {
                let start = folded.len();
                fold_into(&mut folded, token);
                (range, start..folded.len())
            })
            .collect();
        Self { folded, tokens }
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Token `i`, folded.
    fn token(&self, i: usize) -> &str {
        &self.folded[self.tokens[i].1.clone()]
    }
}

/// Where `terms` match a found message: its subject's and text's [`highlights`], as the pairs
/// of byte offsets a Search response carries.
pub fn matches(subject: &str, text: &str, terms: &SearchTerms) -> proto::Matches {
    let offsets = |field: &str| {
        highlights(field, terms)
            .into_iter()
            .flat_map(|range| [range.start, range.end])
            // A field is far shorter than 4 GiB (`limits`).
            .map(|offset| u32::try_from(offset).unwrap_or(u32::MAX))
            .collect()
    };
    proto::Matches {
        subject: offsets(subject),
        text: offsets(text),
    }
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

/// Adds `token` to `folded` as the indexes compare it: lower-cased, without the accents of
/// Latin letters, with ß and the Latin ligatures spelled out (as PostgreSQL's `unaccent`
/// does).
fn fold_into(folded: &mut String, token: &str) {
    // Most text is ASCII, which only needs lower-casing: the index's writer folds every
    // message it stores.
    if token.is_ascii() {
        folded.extend(token.chars().map(|c| c.to_ascii_lowercase()));
        return;
    }
    for c in token.chars().flat_map(char::to_lowercase) {
        if let Some((_, spelled)) = SPELLED_OUT.iter().find(|(letter, _)| *letter == c) {
            folded.push_str(spelled);
        } else if !matches!(c, '\u{0300}'..='\u{036F}') {
            folded.push(unaccented(c));
        }
    }
}

/// The lower-case letters that fold to several, spelled as PostgreSQL's `unaccent` spells them.
const SPELLED_OUT: [(char, &str); 11] = [
    ('ß', "ss"),
    ('æ', "ae"),
    ('œ', "oe"),
    ('ĳ', "ij"),
    ('ﬀ', "ff"),
    ('ﬁ', "fi"),
    ('ﬂ', "fl"),
    ('ﬃ', "ffi"),
    ('ﬄ', "ffl"),
    ('ﬅ', "st"),
    ('ﬆ', "st"),
];

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
    fn unspaced_characters_are_tokens_of_their_own() {
        let split: Vec<&str> = tokens("我住在东京。iPhone用のケース 서울에서 만나요 𠮷野家 café")
            .map(|(_, token)| token)
            .collect();
        assert_eq!(
            split,
            [
                "我", "住", "在", "东", "京", "iPhone", "用", "の", "ケ", "ー", "ス", "서", "울",
                "에", "서", "만", "나", "요", "𠮷", "野", "家", "café"
            ]
        );
        // Thai: each letter apart; a vowel sign that is a letter (ุ) too, a tone mark (่)
        // separates, as everywhere.
        let split: Vec<&str> = tokens("ประชุมที่").map(|(_, token)| token).collect();
        assert_eq!(split, ["ป", "ร", "ะ", "ช", "ุ", "ม", "ท", "ี"]);
        let text = "a东b";
        let ranges: Vec<_> = tokens(text).map(|(range, _)| range).collect();
        assert_eq!(ranges, [0..1, 1..4, 4..5]);
        assert_eq!(
            index_text("Grüße aus 東京タワー, ÉCOLE!"),
            "grusse aus 東 京 タ ワ ー ecole"
        );
        assert_eq!(index_text(" ?! "), "");
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
        assert_eq!(
            highlighted("Größe: 10 m²; Łódź", "lodz grosse"),
            ["Größe", "Łódź"]
        );
        assert_eq!(
            highlighted("STRASSE, Straße", "straße"),
            ["STRASSE", "Straße"]
        );
        assert_eq!(highlighted("Œuvre, ﬁne", "oeuvre fine"), ["Œuvre", "ﬁne"]);
        assert_eq!(highlighted("Привет, МИР!", "мир"), ["МИР"]);
        assert_eq!(
            highlighted("say \"hi\" (or *not*)", "\"hi\" or"),
            ["hi", "or"]
        );
        // An unspaced query word is found as a run of its characters, in that order, and
        // marked as one range.
        assert_eq!(highlighted("我住在东京，京东很大", "东京"), ["东京"]);
        assert_eq!(highlighted("明天的会议取消了", "会议 取消"), ["会议取消"]);
        assert_eq!(highlighted("東京タワーに行きました", "タワ"), ["タワ"]);
        assert_eq!(highlighted("東京タワーに行きました", "タワ "), ["タワ"]);
        assert_eq!(highlighted("서울에서 만나요", "서울"), ["서울"]);
        assert_eq!(highlighted("东方的京城", "东京"), Vec::<&str>::new());
        assert_eq!(highlighted("iPhone用のケース", "iphone"), ["iPhone"]);
        let text = "naïve naïve";
        for range in highlights(text, &terms("naive")) {
            assert!(text.is_char_boundary(range.start) && text.is_char_boundary(range.end));
        }
    }

    #[test]
    fn matches_are_pairs_of_byte_offsets_per_field() {
        let found = matches("Plans", "Café crème in 东京, café", &terms("CAFE 东京"));
        assert_eq!(found.subject, Vec::<u32>::new());
        assert_eq!(found.text, [0, 5, 16, 22, 24, 29]);
    }

    #[test]
    fn the_most_matches_a_result_can_have_fit_their_limit() {
        use crate::limits::{MATCHES_MAX_ENCODED_BYTES, SUBJECT_MAX_CHARS, TEXT_MAX_CHARS};
        use prost::Message as _;
        // Every other character matched, with 4-byte characters (the largest offsets).
        for (unit, query) in [("𠀀 ", "𠀀"), ("东京", "东"), ("a ", "a")] {
            let field = |chars: usize| unit.repeat(chars / 2);
            let (subject, text) = (field(SUBJECT_MAX_CHARS), field(TEXT_MAX_CHARS));
            let found = matches(&subject, &text, &terms(query));
            assert_eq!(
                found.text.len(),
                TEXT_MAX_CHARS,
                "{unit:?}: a range per two characters"
            );
            assert!(
                found.encoded_len() <= MATCHES_MAX_ENCODED_BYTES,
                "{unit:?}: {}",
                found.encoded_len()
            );
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
