//! Searching the user's messages: a search box, results newest first with the matched words
//! highlighted, "More results" for the next page, and a click that opens the message in its
//! chat. The query is checked with the server's own rules (`chat_core::search`) before it is
//! sent; the server says where each result matched (`proto::Matches`), which is marked.

use chat_core::proto;
use chat_core::search::SearchTerms;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::ApiError;
use crate::components::pieces::shown;
use crate::live::model::{ModelStoreFields, title_from, title_of};
use crate::live::use_live;
use crate::time::short_time;

/// The results shown: the query they are for, the messages with where each matched, and the
/// token of the next page.
#[derive(Clone)]
struct Results {
    query: String,
    /// Each message with where it matched and its chat's members (empty from a server too
    /// old to say).
    messages: Vec<(proto::Message, proto::Matches, Vec<String>)>,
    next: Option<String>,
}

/// A search box over every chat of the user, with its results under it.
#[component]
pub fn SearchBox() -> impl IntoView {
    let live = use_live();
    let query = RwSignal::new(String::new());
    let results = RwSignal::new(None::<Results>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    // Loads the page after `token` ("" for the first) of `text`, adding it to what is shown.
    let load = move |text: String, token: String| {
        busy.set(true);
        spawn_local(async move {
            match live.api().search(&text, &token).await {
                Ok(page) => {
                    let next = page.has_more.then_some(page.next_page_token);
                    // A server too old to say where results matched marks nothing.
                    let mut matches = page.matches.into_iter();
                    let chats = page.chats;
                    let found = page.messages.into_iter().map(|message| {
                        let members = chats
                            .iter()
                            .find(|chat| chat.chat_id == message.chat_id)
                            .map(|chat| chat.user_ids.clone())
                            .unwrap_or_default();
                        (message, matches.next().unwrap_or_default(), members)
                    });
                    results.update(|results| match results {
                        Some(shown) if !token.is_empty() && shown.query == text => {
                            shown.messages.extend(found);
                            shown.next = next;
                        }
                        _ => {
                            *results = Some(Results {
                                query: text,
                                messages: found.collect(),
                                next,
                            })
                        }
                    });
                    error.set(None);
                }
                Err(ApiError::SignedOut) => live.signed_out(),
                Err(failure) => error.set(Some(failure.to_string())),
            }
            busy.try_set(false);
        });
    };
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let text = query.get_untracked();
        match SearchTerms::parse(&text) {
            Ok(_) => load(text, String::new()),
            Err(invalid) => error.set(Some(crate::sentence(&invalid.to_string()))),
        }
    };
    let more = move |_| {
        if let Some(shown) = results.get_untracked()
            && let Some(token) = shown.next
        {
            load(shown.query, token);
        }
    };
    let clear = move |_| {
        results.set(None);
        error.set(None);
        query.set(String::new());
    };

    view! {
        <div class="search">
            <form role="search" on:submit=submit>
                <label for="search-query" class="visually-hidden">"Search messages"</label>
                <input
                    id="search-query"
                    type="search"
                    placeholder="Search messages"
                    autocomplete="off"
                    prop:value=move || query.get()
                    on:input=move |event| query.set(event_target_value(&event))
                />
                <button type="submit" disabled=move || busy.get()>"Search"</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            {move || results.get().map(|shown| {
                let count = shown.messages.len();
                let has_more = shown.next.is_some();
                view! {
                    <section class="search-results" aria-label="Search results">
                        <header>
                            <p role="status">{match count {
                                0 => "No messages found.".to_owned(),
                                1 => "1 message found.".to_owned(),
                                n if has_more => format!("{n} messages found so far."),
                                n => format!("{n} messages found."),
                            }}</p>
                            <button type="button" class="link" on:click=clear>"Close search"</button>
                        </header>
                        <ol>
                            {shown.messages.into_iter().map(|(message, matches, members)| view! {
                                <li><SearchResult message=message matches=matches members=members /></li>
                            }).collect_view()}
                        </ol>
                        <Show when=move || has_more>
                            <button type="button" on:click=more disabled=move || busy.get()>"More results"</button>
                        </Show>
                    </section>
                }
            })}
        </div>
    }
}

/// One found message: its chat (unless the chat is the one with its sender alone), sender,
/// time and text with the matched words marked. Clicking it opens the message in its chat.
#[component]
fn SearchResult(
    /// The message found.
    message: proto::Message,
    /// Where it matched, to mark.
    matches: proto::Matches,
    /// Its chat's members, as Search gave them.
    members: Vec<String>,
) -> impl IntoView {
    let live = use_live();
    // The chat's name as the chat list shows it; from the members Search gave when the list
    // has not loaded the chat (it is paged).
    let me = live.model.me().get_untracked();
    let chat = live
        .model
        .chats()
        .with_untracked(|chats| title_of(chats, &message.chat_id, &me))
        .or_else(|| (!members.is_empty()).then(|| title_from(&members, &me)))
        .filter(|title| *title != message.user_id)
        .map(|title| view! { <span class="chat">{title}</span> });
    let found = message.clone();
    let open = move |_| live.open_found(&found, members.clone());
    let subject = (!message.subject.is_empty()).then(|| {
        view! { <span class="subject">{marked(&message.subject, &matches.subject)}</span> }
    });
    view! {
        <button type="button" class="search-result" on:click=open>
            {chat}
            <span class="sender">{message.user_id.clone()}</span>
            " "
            <time>{short_time(message.sent_at)}</time>
            {subject}
            <span class="text">{marked(&message.text, &matches.text)}</span>
        </button>
    }
}

/// `text` with the parts at `offsets` (where the server says it matched) in `<mark>`.
fn marked(text: &str, offsets: &[u32]) -> Vec<AnyView> {
    shown(text, offsets, |part| {
        view! { <mark>{part}</mark> }.into_any()
    })
}
