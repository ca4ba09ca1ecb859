//! The list of the user's chats, most recently active first, updated live.

use leptos::prelude::*;

use crate::components::presence::PresenceDot;
use crate::live::activity::Seen;
use crate::live::model::{ChatEntry, ModelStoreFields};
use crate::live::use_live;
use crate::storage;
use crate::time::short_time;

/// Every chat of the user: members, last message, time, unread count and, in a chat of two,
/// whether the other person is online. Clicking one opens it.
#[component]
pub fn ChatList() -> impl IntoView {
    let live = use_live();
    let me = live.model.me().get_untracked();
    // The list's rows, in its order: each chat with its entry, and in a chat of two the other
    // person's presence, in signals of their own, which are set only when they changed. A
    // row reads only its own signals, so a new message or someone coming online runs again
    // the row it concerns, not every row (a memo per row over the whole list, or over every
    // presence, made each message or presence change cost a pass per row, and a wake-up of
    // each row's views).
    let rows = Memo::new(move |previous: Option<&Vec<Row>>| {
        let previous = previous.map(Vec::as_slice).unwrap_or_default();
        live.model.presence().with(|presence| {
            live.model.chats().with(|chats| {
                chats
                    .iter()
                    .enumerate()
                    .map(|(at, chat)| {
                        let seen =
                            other_member(chat, &me).and_then(|other| presence.get(other).copied());
                        // A new message moves its chat to the top and those above it down by
                        // one: look there first.
                        let known = [at, at.wrapping_sub(1)]
                            .iter()
                            .filter_map(|at| previous.get(*at))
                            .chain(previous)
                            .find(|row| row.0 == chat.chat_id);
                        match known {
                            Some(row) => {
                                set_if_changed(&row.1, chat);
                                set_if_changed(&row.2, &seen);
                                row.clone()
                            }
                            None => (
                                chat.chat_id.clone(),
                                ArcRwSignal::new(chat.clone()),
                                ArcRwSignal::new(seen),
                            ),
                        }
                    })
                    .collect()
            })
        })
    });
    view! {
        <nav class="chat-list" aria-label="Chats">
            <Show
                when=move || rows.with(|rows| !rows.is_empty())
                fallback=|| view! { <p class="empty">"No chats yet. Start one with “New chat”."</p> }
            >
                <ul>
                    // Rows are keyed by chat only and read their entry reactively, so a new
                    // message or a read chat updates a row in place instead of rebuilding it.
                    <For each=move || rows.get() key=|row| row.0.clone() let:row>
                        <ChatRow chat_id=row.0 entry=row.1.into() seen=row.2.into() />
                    </For>
                </ul>
            </Show>
            <LoadMoreChats />
        </nav>
    }
}

/// A chat of the list: its id, its entry, and the presence of the other person of a chat
/// of two.
type Row = (String, ArcRwSignal<ChatEntry>, ArcRwSignal<Option<Seen>>);

fn set_if_changed<T: PartialEq + Clone + Send + Sync + 'static>(
    signal: &ArcRwSignal<T>,
    value: &T,
) {
    if signal.with_untracked(|now| now != value) {
        signal.set(value.clone());
    }
}

/// The other person of a chat of two, whose presence its row shows.
fn other_member<'a>(chat: &'a ChatEntry, me: &str) -> Option<&'a String> {
    let mut others = chat.members.iter().filter(|member| *member != me);
    let other = others.next();
    others.next().is_none().then_some(other).flatten()
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
    /// The other person's presence in a chat of two, likewise.
    seen: RwSignal<Option<Seen>>,
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
    // Read again when the members change: a chat first seen through one of its messages is
    // listed with its sender alone until the list brings every member, and a group must not
    // keep a dot for that first sender.
    let other = {
        let me = me.clone();
        Memo::new(move |_| entry.with(|entry| other_member(entry, &me).cloned()))
    };
    let (signed_in, draft_of) = (me.clone(), chat_id.clone());
    let title = move || entry.with(|entry| entry.title(&me));
    let time = move || entry.with(|entry| Some(short_time(entry.last.as_ref()?.sent_at)));
    let preview = move || {
        // A chat left with something written and not sent says so, as chats people know
        // do. Its draft changes only while it is open, and opening or leaving it runs this
        // again (`is_open`), so localStorage is read then and on a new message, not kept.
        let draft = (!is_open.get())
            .then(|| storage::load_draft(&signed_in, &draft_of))
            .flatten();
        entry.with(|entry| {
            // The text between U+2068 and U+2069 (first strong isolate, pop isolate) takes
            // its own direction, as <bdi> would: a Hebrew message keeps its punctuation on
            // its side after the sender's name.
            match (draft, &entry.last) {
                (Some(draft), _) => format!("Draft: \u{2068}{draft}\u{2069}"),
                // One's own message says "You", as chats people know do: one's own name there
                // reads as if someone else had written it.
                (None, Some(last)) => {
                    let sender = if last.sender == signed_in {
                        "You"
                    } else {
                        &last.sender
                    };
                    format!("{sender}: \u{2068}{}\u{2069}", last.text)
                }
                (None, None) => "No messages yet".to_owned(),
            }
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
                    {move || other.get().map(|user| view! { <PresenceDot user=user seen=seen /> })}
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
