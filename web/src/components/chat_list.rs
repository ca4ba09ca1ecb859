//! The list of the user's chats, most recently active first, updated live.

use leptos::prelude::*;

use crate::components::presence::PresenceDot;
use crate::live::model::{ChatEntry, ModelStoreFields};
use crate::live::use_live;
use crate::time::short_time;

/// Every chat of the user: members, last message, time, unread count and, in a chat of two,
/// whether the other person is online. Clicking one opens it.
#[component]
pub fn ChatList() -> impl IntoView {
    let live = use_live();
    // The list's rows, in its order: each chat with its entry in a signal of its own, which
    // is set only when that entry changed. A row reads only its own signal, so a new message
    // runs again the row of its chat, not every row (a memo per row over the whole list made
    // each message cost a pass over the list per row, and a wake-up of each row's views).
    let rows = Memo::new(
        move |previous: Option<&Vec<(String, ArcRwSignal<ChatEntry>)>>| {
            let previous = previous.map(Vec::as_slice).unwrap_or_default();
            live.model.chats().with(|chats| {
                chats
                    .iter()
                    .enumerate()
                    .map(|(at, chat)| {
                        // A new message moves its chat to the top and those above it down by one:
                        // look there first.
                        let known = [at, at.wrapping_sub(1)]
                            .iter()
                            .filter_map(|at| previous.get(*at))
                            .chain(previous)
                            .find(|(chat_id, _)| *chat_id == chat.chat_id);
                        match known {
                            Some((chat_id, entry)) => {
                                if entry.with_untracked(|entry| entry != chat) {
                                    entry.set(chat.clone());
                                }
                                (chat_id.clone(), entry.clone())
                            }
                            None => (chat.chat_id.clone(), ArcRwSignal::new(chat.clone())),
                        }
                    })
                    .collect()
            })
        },
    );
    view! {
        <nav class="chat-list" aria-label="Chats">
            <Show
                when=move || rows.with(|rows| !rows.is_empty())
                fallback=|| view! { <p class="empty">"No chats yet. Start one with “New chat”."</p> }
            >
                <ul>
                    // Rows are keyed by chat only and read their entry reactively, so a new
                    // message or a read chat updates a row in place instead of rebuilding it.
                    <For each=move || rows.get() key=|(chat_id, _)| chat_id.clone() let:row>
                        <ChatRow chat_id=row.0 entry=row.1.into() />
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
    /// What the row shows of it, set by the list when it changes.
    entry: RwSignal<ChatEntry>,
) -> impl IntoView {
    let live = use_live();
    let me = live.model.me().get_untracked();
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
            .members
            .iter()
            .filter(|member| **member != me)
            .collect();
        match others.as_slice() {
            [one] => Some((*one).clone()),
            _ => None,
        }
    });
    let title = move || entry.with(|entry| entry.title(&me));
    let time = move || entry.with(|entry| Some(short_time(entry.last.as_ref()?.sent_at)));
    let preview = move || {
        entry.with(|entry| {
            entry
                .last
                .as_ref()
                // The text between U+2068 and U+2069 (first strong isolate, pop isolate)
                // takes its own direction, as <bdi> would: a Hebrew message keeps its
                // punctuation on its side after the sender's name.
                .map(|last| format!("{}: \u{2068}{}\u{2069}", last.sender, last.text))
                .unwrap_or_else(|| "No messages yet".to_owned())
        })
    };
    let unread = move || entry.with(|entry| entry.unread);
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
