//! The list of the user's chats, most recently active first, updated live.

use leptos::prelude::*;

use crate::components::presence::PresenceDot;
use crate::live::model::ModelStoreFields;
use crate::live::use_live;
use crate::time::short_time;

/// Every chat of the user: members, last message, time, unread count and, in a chat of two,
/// whether the other person is online. Clicking one opens it.
#[component]
pub fn ChatList() -> impl IntoView {
    let live = use_live();
    let chat_ids = Memo::new(move |_| {
        live.model.chats().with(|chats| {
            chats
                .iter()
                .map(|chat| chat.chat_id.clone())
                .collect::<Vec<_>>()
        })
    });
    view! {
        <nav class="chat-list" aria-label="Chats">
            <Show
                when=move || chat_ids.with(|ids| !ids.is_empty())
                fallback=|| view! { <p class="empty">"No chats yet. Start one with “New chat”."</p> }
            >
                <ul>
                    // Rows are keyed by chat only and read their fields reactively, so a new
                    // message or a read chat updates a row in place instead of rebuilding it.
                    <For each=move || chat_ids.get() key=|chat_id| chat_id.clone() let:chat_id>
                        <ChatRow chat_id=chat_id />
                    </For>
                </ul>
            </Show>
            <LoadMoreChats />
        </nav>
    }
}

/// The "Load more chats" button under the list, shown while the server has chats not loaded
/// yet: the app reads the list one page at a time so that being in many chats never keeps it
/// from connecting.
#[component]
fn LoadMoreChats() -> impl IntoView {
    let live = use_live();
    let (loading, set_loading) = signal(false);
    let (failed, set_failed) = signal(None::<String>);
    let more = Memo::new(move |_| live.model.more_chats().with(Option::is_some));
    let load = move |_| {
        set_loading.set(true);
        set_failed.set(None);
        leptos::task::spawn_local(async move {
            if let Err(error) = live.load_more_chats().await {
                set_failed.set(Some(format!("Could not load more chats: {error}")));
            }
            set_loading.set(false);
        });
    };
    view! {
        <Show when=move || more.get()>
            <button class="load-more" on:click=load disabled=move || loading.get()>
                {move || if loading.get() { "Loading chats…" } else { "Load more chats" }}
            </button>
        </Show>
        <Show when=move || failed.with(Option::is_some)>
            <p role="alert">{move || failed.get()}</p>
        </Show>
    }
}

/// One entry of the chat list.
#[component]
fn ChatRow(
    /// The chat this row shows.
    chat_id: String,
) -> impl IntoView {
    let live = use_live();
    let me = live.model.me().get_untracked();
    // The row's own slice of the list: the views below run again only when it changes.
    let entry = {
        let chat_id = chat_id.clone();
        Memo::new(move |_| {
            live.model
                .chats()
                .with(|chats| chats.iter().find(|chat| chat.chat_id == chat_id).cloned())
        })
    };
    let is_open = {
        let chat_id = chat_id.clone();
        Memo::new(move |_| {
            live.model
                .open_chat()
                .with(|open| open.as_deref() == Some(chat_id.as_str()))
        })
    };
    // The other person of a chat of two, whose presence the row shows; members never change.
    let other = entry.with_untracked(|entry| {
        let others: Vec<&String> = entry
            .as_ref()?
            .members
            .iter()
            .filter(|member| **member != me)
            .collect();
        match others.as_slice() {
            [one] => Some((*one).clone()),
            _ => None,
        }
    });
    let title = move || entry.with(|entry| entry.as_ref().map(|entry| entry.title(&me)));
    let time = move || {
        entry.with(|entry| {
            let last = entry.as_ref()?.last.as_ref()?;
            Some(short_time(last.sent_at))
        })
    };
    let preview = move || {
        entry.with(|entry| {
            entry.as_ref().map(|entry| {
                entry
                    .last
                    .as_ref()
                    // The text between U+2068 and U+2069 (first strong isolate, pop
                    // isolate) takes its own direction, as <bdi> would: a Hebrew message
                    // keeps its punctuation on its side after the sender's name.
                    .map(|last| format!("{}: \u{2068}{}\u{2069}", last.sender, last.text))
                    .unwrap_or_else(|| "No messages yet".to_owned())
            })
        })
    };
    let unread = move || entry.with(|entry| entry.as_ref().map_or(0, |entry| entry.unread));
    view! {
        <li>
            <button
                class="chat-entry"
                class:active=is_open
                aria-current=move || is_open.get().then_some("true")
                on:click=move |_| live.open_chat(chat_id.clone())
            >
                <span class="chat-title">
                    {other.map(|user| view! { <PresenceDot user=user /> })}
                    {title}
                </span>
                <span class="chat-time">{time}</span>
                <span class="chat-preview">{preview}</span>
                <Show when=move || unread() != 0>
                    <span class="badge" aria-label=move || format!("{} unread", unread())>{unread}</span>
                </Show>
            </button>
        </li>
    }
}
