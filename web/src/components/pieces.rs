//! Text cut into pieces so that some can be shown differently (a search's matches marked,
//! web addresses linked), always as text nodes: nothing a message holds becomes markup.

use leptos::prelude::*;

/// `text` as text nodes, the parts at `offsets` each in the element `special` makes of it.
/// One function for every such text: a function pointer, not a generic, so the bundle holds
/// the loop once.
pub fn shown(text: &str, offsets: &[u32], special: fn(String) -> AnyView) -> Vec<AnyView> {
    pieces(text, offsets)
        .into_iter()
        .map(|(part, inside)| {
            let part = part.to_owned();
            if inside {
                special(part)
            } else {
                part.into_any()
            }
        })
        .collect()
}

/// `text` cut at `offsets` (pairs of byte offsets, in order), each piece with whether a pair
/// holds it. A pair that does not fall on the text's characters in order is passed over:
/// a search's offsets come from the server, and are never trusted to slice with.
fn pieces<'a>(text: &'a str, offsets: &[u32]) -> Vec<(&'a str, bool)> {
    let mut pieces = Vec::new();
    let mut at = 0;
    for pair in offsets.chunks_exact(2) {
        let (start, end) = (pair[0] as usize, pair[1] as usize);
        let (Some(before), Some(hit)) = (text.get(at..start), text.get(start..end)) else {
            continue;
        };
        pieces.push((before, false));
        pieces.push((hit, true));
        at = end;
    }
    pieces.push((&text[at..], false));
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_the_offsets_and_bad_offsets_are_passed_over() {
        let text = "Café <b>au</b> 东京";
        assert_eq!(
            pieces(text, &[0, 5, 16, 22]),
            [
                ("", false),
                ("Café", true),
                (" <b>au</b> ", false),
                ("东京", true),
                ("", false)
            ]
        );
        // Inside a character, backwards, past the end, an odd one out: all passed over.
        assert_eq!(
            pieces(text, &[4, 6, 3, 1, 0, 99, 17, 22, 7]),
            [("Café <b>au</b> 东京", false)]
        );
        assert_eq!(pieces("", &[]), [("", false)]);
    }
}
