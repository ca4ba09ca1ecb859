//! The quote of a reply's original: its sender and how it begins, or the placeholder once it
//! is deleted. Clicking it opens the original in its chat.

use leptos::prelude::*;

use crate::live::model::Quote;
use crate::live::use_live;

/// A reply's quote, as a button that jumps to the original. It shows `quote` as given: the
/// views that show one make it from the original while that is loaded (`shown_quote`) and
/// show it anew when the original changes.
#[component]
pub fn QuoteView(
    /// What to show of the original.
    quote: Quote,
    /// The chat of the reply and of its original.
    chat_id: String,
) -> impl IntoView {
    let live = use_live();
    let id = quote.message_id;
    let text = if quote.deleted {
        "Message deleted".to_owned()
    } else {
        quote.text_prefix
    };
    view! {
        <button type="button" class="quote" on:click=move |_| live.jump_to(chat_id.clone(), id) title="Show the original message">
            <span class="quote-sender">{quote.sender}</span>
            <span class="quote-text" class:deleted=quote.deleted>{text}</span>
        </button>
    }
}
