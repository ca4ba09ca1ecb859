//! Web addresses in message text, which the browser shows as links.
//!
//! Only addresses written with `http://` or `https://` count, as people paste them from a
//! browser's address bar: anything else (a bare `example.com`, `mailto:`, `javascript:`)
//! stays text, so a message can never make a link that runs code or guesses at a host.
//! Where an address ends follows what people expect from other chats: at a space, or before
//! the punctuation that closes the sentence or bracket around it.

use std::ops::Range;

/// The byte ranges of `text` that are web addresses, in order and not overlapping.
pub fn links(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = next_scheme(text, from) {
        let end = start + address_length(&text[start..]);
        if end > start {
            found.push(start..end);
            from = end;
        } else {
            from = start + 1;
        }
    }
    found
}

/// Where the next `http://` or `https://` (in any case) starts at the beginning of a word.
fn next_scheme(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    (from..bytes.len()).find(|&at| {
        let starts = |scheme: &[u8]| {
            bytes[at..]
                .get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        };
        // A scheme glued to a word ("xhttp://") is not where an address starts. Other scripts
        // may run into it: Chinese and Japanese put no space before an address.
        (starts(b"https://") || starts(b"http://"))
            && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric())
    })
}

/// The length in bytes of the address at the start of `rest` (which starts with a scheme),
/// or 0 when what follows the scheme names no host.
fn address_length(rest: &str) -> usize {
    let host_at = rest.find("://").map_or(0, |at| at + 3);
    if !rest[host_at..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '[')
    {
        return 0;
    }
    let mut end = rest
        .char_indices()
        .find(|&(_, c)| !in_address(c))
        .map_or(rest.len(), |(at, _)| at);
    // Trailing punctuation belongs to the sentence, and a closing bracket to the text around
    // the address unless the address opened it (as in a Wikipedia article's name).
    while let Some(last) = rest[..end].chars().next_back() {
        let closes_outside = match last {
            ')' => unbalanced(&rest[..end], '(', ')'),
            ']' => unbalanced(&rest[..end], '[', ']'),
            '}' => unbalanced(&rest[..end], '{', '}'),
            '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '*' | '_' | '~' => true,
            _ => false,
        };
        if !closes_outside {
            break;
        }
        end -= last.len_utf8();
    }
    if end <= host_at { 0 } else { end }
}

/// Whether `c` can be part of an address as people write one: ASCII that URLs allow, and
/// letters and digits of any script (hosts and paths in other scripts are addresses too).
/// Spaces, quotes, angle brackets and other scripts' punctuation (`。` right after an
/// address in Japanese, `»` in French) end it, and so does an emoji.
fn in_address(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '`')
    } else {
        c.is_alphanumeric()
    }
}

fn unbalanced(address: &str, open: char, close: char) -> bool {
    let count = |wanted| address.chars().filter(|&c| c == wanted).count();
    count(close) > count(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linked(text: &str) -> Vec<&str> {
        links(text).into_iter().map(|range| &text[range]).collect()
    }

    #[test]
    fn addresses_with_a_scheme_are_links_wherever_they_stand() {
        assert_eq!(linked("https://example.com"), ["https://example.com"]);
        assert_eq!(
            linked("see http://example.com/a?b=1&c=2#d and HTTPS://EXAMPLE.ORG/x"),
            ["http://example.com/a?b=1&c=2#d", "HTTPS://EXAMPLE.ORG/x"]
        );
        assert_eq!(
            linked("first line\nhttps://a.example/\tnext"),
            ["https://a.example/"]
        );
    }

    #[test]
    fn the_sentence_keeps_its_punctuation_and_brackets() {
        assert_eq!(
            linked("Look: https://example.com."),
            ["https://example.com"]
        );
        assert_eq!(linked("https://example.com/a?!"), ["https://example.com/a"]);
        assert_eq!(
            linked("(see https://example.com/docs)"),
            ["https://example.com/docs"]
        );
        assert_eq!(
            linked("https://en.wikipedia.org/wiki/Rust_(programming_language)."),
            ["https://en.wikipedia.org/wiki/Rust_(programming_language)"]
        );
        assert_eq!(linked("'https://example.com'"), ["https://example.com"]);
        assert_eq!(linked("\"https://example.com\""), ["https://example.com"]);
        assert_eq!(linked("<https://example.com>"), ["https://example.com"]);
        assert_eq!(linked("https://example.com/a_"), ["https://example.com/a"]);
    }

    #[test]
    fn other_scripts_end_and_continue_addresses_as_their_readers_expect() {
        assert_eq!(
            linked("これ https://example.jp/ページ。ありがとう"),
            ["https://example.jp/ページ"]
        );
        assert_eq!(
            linked("https://de.wikipedia.org/wiki/Straße"),
            ["https://de.wikipedia.org/wiki/Straße"]
        );
        assert_eq!(linked("👉https://example.com👈"), ["https://example.com"]);
        assert_eq!(linked("見てhttps://example.jp！"), ["https://example.jp"]);
        assert_eq!(linked("«https://example.fr»"), ["https://example.fr"]);
        assert_eq!(
            linked("https://bücher.example/Straße—"),
            ["https://bücher.example/Straße"]
        );
        assert_eq!(linked("https://[::1]:8080/"), ["https://[::1]:8080/"]);
    }

    #[test]
    fn nothing_else_becomes_a_link() {
        for text in [
            "example.com",
            "www.example.com",
            "javascript:alert(1)",
            "mailto:someone@example.com",
            "ftp://example.com",
            "xhttps://example.com",
            "https://",
            "https:// example.com",
            "https://.",
            "http:/example.com",
            "",
        ] {
            assert_eq!(linked(text), Vec::<&str>::new(), "{text:?}");
        }
    }

    #[test]
    fn every_mix_of_awkward_pieces_gives_well_formed_links() {
        const PIECES: [&str; 12] = [
            "http://", "HTTPS://", "a", "é", "見", "。", ")", "(", ".", " ", "[", "👍",
        ];
        let mut text = String::new();
        for n in 0..PIECES.len().pow(4) {
            text.clear();
            let mut rest = n;
            for _ in 0..4 {
                text.push_str(PIECES[rest % PIECES.len()]);
                rest /= PIECES.len();
            }
            let mut after = 0;
            for link in links(&text) {
                assert!(link.start >= after, "{text:?}: {link:?} overlaps");
                let address = text.get(link.clone()).expect("ranges fall on characters");
                let lower = address.to_ascii_lowercase();
                assert!(lower.starts_with("http://") || lower.starts_with("https://"));
                assert!(
                    !address.contains(' ') && !address.contains('。'),
                    "{text:?}"
                );
                after = link.end;
            }
        }
    }
}
