//! The quote of a reply's original: its sender and how it begins, or the placeholder once it
//! is deleted. Clicking it opens the original in its chat.

use leptos::prelude::*;

use crate::live::model::{ModelStoreFields, Quote};
use crate::live::use_live;

/// A reply's quote, as a button that jumps to the original. It follows the original while
/// that is loaded (a deletion the tab learns of shows at once); otherwise it shows the
/// server's preview.
#[component]
pub fn QuoteView(
    /// The server's preview of the original.
    quote: Quote,
    /// The chat of the reply and of its original.
    chat_id: String,
) -> impl IntoView {
    let live = use_live();
    let shown = {
        let chat_id = chat_id.clone();
        Memo::new(move |_| {
            live.model.timelines().with(|timelines| {
                timelines
                    .get(&chat_id)
                    .map_or_else(|| quote.clone(), |timeline| timeline.quote(&quote))
            })
        })
    };
    let jump = move |_| {
        let id = shown.with_untracked(|quote| quote.message_id);
        live.jump_to(chat_id.clone(), id);
    };
    view! {
        <button type="button" class="quote" on:click=jump title="Show the original message">
            <span class="quote-sender">{move || shown.with(|quote| quote.sender.clone())}</span>
            <span class="quote-text" class:deleted=move || shown.with(|quote| quote.deleted)>
                {move || shown.with(|quote| {
                    if quote.deleted { "Message deleted".to_owned() } else { quote.text_prefix.clone() }
                })}
            </span>
        </button>
    }
}
