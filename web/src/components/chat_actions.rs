//! What the open chat's header offers besides its title: leaving the chat (after a
//! confirmation), and blocking or unblocking the other person of a one-to-one chat, also
//! once they have left it (blocked, they cannot come back to it either).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::live::model::{ModelStoreFields, others_than};
use crate::live::use_live;

/// "Leave chat" (asks "Leave this chat?" first) and, when the chat has exactly one other
/// member (or had, before everyone else left), "Block NAME" or "Unblock NAME". Blocking stops
/// that person from starting chats with the user or adding them to one; this chat stays until
/// the user leaves it.
#[component]
pub fn ChatActions(
    /// The open chat.
    chat_id: String,
) -> impl IntoView {
    let chat_id = StoredValue::new(chat_id);
    let live = use_live();
    live.load_blocked();
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let other = Memo::new(move |_| -> Option<String> {
        let me = live.model.me().get_untracked();
        let id = chat_id.get_value();
        live.model.chats().with(|chats| {
            let chat = chats.iter().find(|chat| chat.chat_id == id)?;
            let mut others = others_than(&chat.members, &me);
            if others.is_empty() {
                others = others_than(&chat.left, &me);
            }
            match others.as_slice() {
                [one] => Some((*one).to_owned()),
                _ => None,
            }
        })
    });
    let is_blocked = Memo::new(move |_| {
        let Some(other) = other.get() else {
            return false;
        };
        live.blocked
            .with(|list| list.as_ref().is_some_and(|list| list.contains(&other)))
    });

    let leave = move |_| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        let id = chat_id.get_value();
        spawn_local(async move {
            let outcome = live.leave_chat(&id).await;
            // The header is gone once the chat is left; only a failure needs showing.
            if let Err(problem) = outcome {
                error.try_set(Some(problem));
                busy.try_set(false);
            }
        });
    };
    let toggle_block = move |_| {
        let Some(other) = other.get_untracked() else {
            return;
        };
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        let block = !is_blocked.get_untracked();
        spawn_local(async move {
            let outcome = live.set_blocked(&other, block).await;
            error.try_set(outcome.err());
            busy.try_set(false);
        });
    };

    view! {
        <div class="chat-actions">
            {move || other.get().map(|name| {
                let label = if is_blocked.get() { format!("Unblock {name}") } else { format!("Block {name}") };
                view! {
                    <button type="button" class="link" disabled=move || busy.get() on:click=toggle_block>
                        {label}
                    </button>
                }
            })}
            <Show
                when=move || confirming.get()
                fallback=move || view! {
                    <button type="button" class="link" on:click=move |_| confirming.set(true)>"Leave chat"</button>
                }
            >
                <div role="alertdialog" aria-label="Leave this chat?" class="confirm">
                    <span>"Leave this chat? You stop receiving its messages; only you can rejoin."</span>
                    <button type="button" class="danger" disabled=move || busy.get() on:click=leave>"Leave"</button>
                    <button type="button" class="link" on:click=move |_| confirming.set(false)>"Cancel"</button>
                </div>
            </Show>
            <p class="error" role="alert">{move || error.get()}</p>
        </div>
    }
}
