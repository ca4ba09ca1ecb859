//! "alice is typing…" under the open chat's messages.

use leptos::prelude::*;

use crate::live::activity::{typing_line, typists};
use crate::live::model::ModelStoreFields;
use crate::live::use_live;

/// Who is typing in the chat, as a polite live region: its text changes only when someone
/// starts or stops, so a screen reader announces that, never each keystroke.
#[component]
pub fn TypingLine(
    /// The chat shown.
    chat_id: String,
) -> impl IntoView {
    let chat_id = StoredValue::new(chat_id);
    let live = use_live();
    let line = Memo::new(move |_| {
        chat_id.with_value(|chat_id| {
            live.model
                .typing()
                .with(|typing| typists(typing, chat_id, js_sys::Date::now()))
        })
    });
    view! {
        <p class="typing" role="status" aria-live="polite">
            {move || line.with(|users| typing_line(users)).unwrap_or_default()}
        </p>
    }
}
