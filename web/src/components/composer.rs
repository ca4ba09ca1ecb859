//! Writing a message: Enter sends, Shift+Enter starts a new line. A reply shows its quote
//! above the box until it is sent or cancelled ("Cancel reply", or Escape in the box). What is written and not sent stays, as the
//! chat's draft, when another chat opens or the page reloads (`storage::save_draft`), and so
//! does the message it replies to (`storage::save_reply`).
//! Typing tells the others (at most every few seconds, see `Live::typing`); sending or
//! clearing the box stops that.

use leptos::prelude::*;

use crate::components::quote::QuoteView;
use crate::live::model::{ModelStoreFields, shown_quote};
use crate::live::use_live;
use crate::storage;

/// The message box of the open chat. Text is checked with the shared validation before it
/// is queued; problems are shown under the box and nothing is sent.
#[component]
pub fn Composer(
    /// The chat messages go to.
    chat_id: String,
) -> impl IntoView {
    let chat_id = StoredValue::new(chat_id);
    let live = use_live();
    // Every change of the box is stored as the chat's draft at once, so a reload, a closed
    // tab or another chat opened next loses nothing (localStorage takes a few kilobytes in
    // microseconds).
    let keep_draft = move |text: &str| {
        live.model
            .me()
            .with_untracked(|me| chat_id.with_value(|chat| storage::save_draft(me, chat, text)))
    };
    let text = RwSignal::new(
        live.model
            .me()
            .with_untracked(|me| chat_id.with_value(|chat| storage::load_draft(me, chat)))
            .unwrap_or_default(),
    );
    let error = RwSignal::new(None::<String>);
    // The reply being written in this chat, if any (a reply started in another chat waits
    // there), quoting the original as it now reads while it is loaded (deleted meanwhile,
    // say).
    let replying = Memo::new(move |_| {
        let quote = live.replying.with(|replying| {
            replying
                .as_ref()
                .filter(|(chat, _)| chat_id.with_value(|open| open == chat))
                .map(|(_, quote)| quote.clone())
        })?;
        Some(chat_id.with_value(|chat_id| {
            live.model
                .timelines()
                .with(|timelines| shown_quote(timelines, chat_id, &quote))
        }))
    });

    // The reply of this chat's draft (`Live::reply` keeps it), taken back as the chat opens
    // unless one is being written here already.
    let elsewhere = live.replying.with_untracked(|replying| {
        replying
            .as_ref()
            .is_none_or(|(chat, _)| chat_id.with_value(|open| open != chat))
    });
    if elsewhere
        && let Some(quote) = live
            .model
            .me()
            .with_untracked(|me| chat_id.with_value(|chat| storage::load_reply(me, chat)))
    {
        live.replying.set(Some((chat_id.get_value(), quote)));
    }

    let send = move || {
        let reply_to = replying.get_untracked().map(|quote| quote.message_id);
        match live.send(&chat_id.get_value(), &text.get_untracked(), reply_to) {
            Ok(()) => {
                text.set(String::new());
                keep_draft("");
                error.set(None);
                live.typing_stopped();
                if reply_to.is_some() {
                    live.reply(&chat_id.get_value(), None);
                }
            }
            Err(message) => error.set(Some(message)),
        }
    };

    view! {
        <form class="composer" on:submit=move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            send();
        }>
            {move || replying.get().map(|quote| view! {
                <div class="replying" role="group" aria-label="Replying to">
                    <QuoteView quote=quote chat_id=chat_id.get_value() />
                    <button type="button" class="link" on:click=move |_| live.reply(&chat_id.get_value(), None)>"Cancel reply"</button>
                </div>
            })}
            <label for="composer-text" class="visually-hidden">"Message"</label>
            <textarea
                id="composer-text"
                rows="1"
                placeholder="Write a message…"
                aria-describedby="composer-error"
                prop:value=move || text.get()
                on:input=move |event| {
                    let typed = event_target_value(&event);
                    if typed.trim().is_empty() {
                        live.typing_stopped();
                    } else {
                        live.typing(&chat_id.get_value());
                    }
                    keep_draft(&typed);
                    text.set(typed);
                }
                on:keydown=move |event: leptos::ev::KeyboardEvent| {
                    let key = event.key();
                    if key == "Enter" && !event.shift_key() && !event.is_composing() {
                        event.prevent_default();
                        send();
                    } else if key == "Escape" && replying.get_untracked().is_some() {
                        // Escape cancels the reply, as in the chats people know, and leaves
                        // the text and the keyboard's focus in the box.
                        live.reply(&chat_id.get_value(), None);
                    }
                }
            ></textarea>
            <button type="submit" class="primary">"Send"</button>
            <p id="composer-error" class="error" role="alert">{move || error.get()}</p>
        </form>
    }
}
