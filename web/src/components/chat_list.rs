//! The list of the user's chats, most recently active first, updated live.

use leptos::prelude::*;

use crate::live::use_live;
use crate::time::short_time;

/// Every chat of the user: members, last message, time and unread count. Clicking one opens
/// it.
#[component]
pub fn ChatList() -> impl IntoView {
    let live = use_live();
    let chats = move || live.model.with(|model| model.chats.clone());
    let me = move || live.model.with(|model| model.me.clone());
    let open = move || live.model.with(|model| model.open_chat.clone());
    view! {
        <nav class="chat-list" aria-label="Chats">
            <Show
                when=move || !chats().is_empty()
                fallback=|| view! { <p class="empty">"No chats yet. Start one with “New chat”."</p> }
            >
                <ul>
                    <For
                        each=chats
                        key=|chat| (chat.chat_id.clone(), chat.last.as_ref().map(|m| m.id), chat.unread, chat.members.len())
                        children=move |chat| {
                            let title = chat.title(&me());
                            let chat_id = chat.chat_id.clone();
                            let is_open = {
                                let chat_id = chat_id.clone();
                                move || open().as_deref() == Some(chat_id.as_str())
                            };
                            let preview = chat
                                .last
                                .as_ref()
                                .map(|last| format!("{}: {}", last.sender, last.text))
                                .unwrap_or_else(|| "No messages yet".to_owned());
                            let time = chat.last.as_ref().map(|last| short_time(last.sent_at)).unwrap_or_default();
                            let unread = chat.unread;
                            view! {
                                <li>
                                    <button
                                        class="chat-entry"
                                        class:active=is_open.clone()
                                        aria-current=move || is_open().then_some("true")
                                        on:click=move |_| live.open_chat(chat_id.clone())
                                    >
                                        <span class="chat-title">{title}</span>
                                        <span class="chat-time">{time}</span>
                                        <span class="chat-preview">{preview}</span>
                                        <Show when=move || unread != 0>
                                            <span class="badge" aria-label=format!("{unread} unread")>{unread}</span>
                                        </Show>
                                    </button>
                                </li>
                            }
                        }
                    />
                </ul>
            </Show>
        </nav>
    }
}
