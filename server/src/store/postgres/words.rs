//! The search words of the `messages.search` column and of its queries, made here from
//! `chat_core::search::index_text`, the words SQLite's index takes: one definition of a
//! message's words for both backends, which PostgreSQL receives as `tsvector` and `tsquery`
//! literals it only parses. (Until migration 13 the column was generated in SQL by
//! `chat_words`, regular expressions and `unaccent` that mirrored the Rust definition; they
//! cost about half of each insert, and could drift from it.)
//!
//! The index's words must never change without a migration that computes the column again
//! for every row (as migration 13 does), or old messages are found by other words than new
//! ones; `chat_core::search`'s guard test fails when `index_text` changes.

use std::fmt::Write as _;

use chat_core::search::{SearchTerms, index_text};

/// The longest lexeme PostgreSQL accepts, in bytes; `to_tsvector` leaves longer words out,
/// and so do these literals (a literal with one would be refused, and its insert with it).
const MAX_LEXEME_BYTES: usize = 2047;
/// The highest word position a `tsvector` records; later words share it.
const MAX_POSITION: usize = 16_383;

/// The tokens of `indexed` (an [`index_text`]) as PostgreSQL takes them: without the empty
/// ones (a word of accents alone folds to nothing) and without the ones too long for it.
fn lexemes(indexed: &str) -> impl Iterator<Item = &str> {
    indexed
        .split(' ')
        .filter(|token| !token.is_empty() && token.len() <= MAX_LEXEME_BYTES)
}

/// `token` quoted for a `tsvector` or `tsquery` literal. Tokens hold only letters, digits and
/// marks, so the escapes are for safety alone.
fn quote_into(literal: &mut String, token: &str) {
    literal.push('\'');
    for c in token.chars() {
        if c == '\'' || c == '\\' {
            literal.push(c);
        }
        literal.push(c);
    }
    literal.push('\'');
}

/// The `tsvector` literal of a message: the words of its subject, then of its text, each
/// with its position, so that a query word of several tokens matches where they stand one
/// after another.
pub fn vector(subject: &str, text: &str) -> String {
    let mut literal = String::with_capacity(subject.len() + text.len() * 3 / 2);
    let (subject, text) = (index_text(subject), index_text(text));
    for (index, token) in lexemes(&subject).chain(lexemes(&text)).enumerate() {
        if !literal.is_empty() {
            literal.push(' ');
        }
        quote_into(&mut literal, token);
        let _ = write!(literal, ":{}", (index + 1).min(MAX_POSITION));
    }
    literal
}

/// A search as PostgreSQL takes it.
pub struct Query {
    /// The `tsquery` literal.
    pub literal: String,
    /// How many lexemes it holds: the planner guesses a query of several badly (see
    /// `reads::search`).
    pub lexemes: usize,
}

/// The `tsquery` of a search: every word required, a word of several tokens a phrase of
/// them, the last token of the last word a prefix when the person may still be typing it.
/// `None` when no word has a token (only accents, say): such a search finds nothing.
pub fn query(terms: &SearchTerms) -> Option<Query> {
    let indexed: Vec<String> = terms.words().iter().map(|word| index_text(word)).collect();
    let words: Vec<Vec<&str>> = indexed
        .iter()
        .map(|word| lexemes(word).collect::<Vec<_>>())
        .filter(|tokens| !tokens.is_empty())
        .collect();
    let mut literal = String::new();
    for (w, tokens) in words.iter().enumerate() {
        if w > 0 {
            literal.push_str(" & ");
        }
        for (t, token) in tokens.iter().enumerate() {
            if t > 0 {
                literal.push_str(" <-> ");
            }
            quote_into(&mut literal, token);
        }
        if w + 1 == words.len() && terms.last_is_prefix() {
            literal.push_str(":*");
        }
    }
    (!literal.is_empty()).then(|| Query {
        literal,
        lexemes: words.iter().map(Vec::len).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(query: &str) -> SearchTerms {
        SearchTerms::parse(query).expect("a valid query")
    }

    #[test]
    fn a_vector_holds_the_folded_tokens_of_subject_then_text_with_positions() {
        assert_eq!(
            vector("Réunion", "à Tōkyō: 东京 Straße"),
            "'reunion':1 'a':2 'tokyo':3 '东':4 '京':5 'strasse':6"
        );
        assert_eq!(vector("", ""), "");
    }

    #[test]
    fn words_too_long_or_folded_to_nothing_are_left_out_and_positions_stop_at_the_limit() {
        let long = "x".repeat(MAX_LEXEME_BYTES + 1);
        assert_eq!(vector("", &format!("a {long} \u{301} b")), "'a':1 'b':2");
        let many = "w ".repeat(MAX_POSITION + 5);
        assert!(vector("", &many).ends_with("'w':16383 'w':16383"));
    }

    #[test]
    fn a_query_requires_every_word_makes_phrases_of_tokens_and_prefixes_the_last() {
        let literal = |query: &str| super::query(&terms(query)).map(|query| query.literal);
        assert_eq!(
            literal("Café 东京").as_deref(),
            Some("'cafe' & '东' <-> '京':*")
        );
        assert_eq!(literal("straße ").as_deref(), Some("'strasse'"));
        assert_eq!(literal("\u{301} gr").as_deref(), Some("'gr':*"));
        assert_eq!(literal("\u{301}"), None);
        let lexemes = |query: &str| super::query(&terms(query)).map(|query| query.lexemes);
        assert_eq!(lexemes("Café 东京"), Some(3));
        assert_eq!(lexemes("\u{301} gr"), Some(1));
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        let mut literal = String::new();
        quote_into(&mut literal, "it's\\");
        assert_eq!(literal, "'it''s\\\\'");
    }
}
