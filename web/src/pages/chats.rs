//! The chat screen: the chat list beside the open chat.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{Api, Session};
use crate::attention;
use crate::components::account_menu::AccountMenu;
use crate::components::chat_actions::ChatActions;
use crate::components::chat_list::ChatList;
use crate::components::composer::Composer;
use crate::components::connection_indicator::ConnectionIndicator;
use crate::components::message_list::MessageList;
use crate::components::new_chat::NewChat;
use crate::components::presence::PresenceLine;
use crate::components::search::SearchBox;
use crate::components::typing_line::TypingLine;
use crate::live::model::{ModelStoreFields, title_of};
use crate::live::provide_live;
use crate::route;

/// Everything a signed-in user sees. Owns the live state (and so the tab's one stream)
/// for as long as it is shown.
#[component]
pub fn ChatsPage(
    /// The signed-in session.
    session: Session,
    /// Called when the user signs out, or the server ends the session (with why).
    on_signed_out: Callback<Option<String>>,
    /// Called with the fresh session after a password change.
    on_session_changed: Callback<Session>,
    /// A sentence for the user about what just happened to their session, if any.
    notice: RwSignal<Option<String>>,
) -> impl IntoView {
    let api = Api::for_this_page().signed_in(&session);
    let live = provide_live(api.clone(), &session, on_signed_out);
    let account_api = api.clone();
    let sign_out = move |_| {
        live.stop();
        route::forget();
        let api = api.clone();
        spawn_local(async move {
            // Revoke the token; if the server cannot be reached, forgetting it locally
            // still signs this browser out.
            let _ = api.sign_out().await;
        });
        on_signed_out.run(None);
    };
    let me = session.user_id.clone();
    let open_chat = Memo::new(move |_| live.model.open_chat().get());

    // The address follows the open chat, and the open chat follows the address: a reload or
    // a link opens the chat it names; back and forward show what their entry names.
    if let Some(chat) = route::chat_in_address() {
        live.open_chat(chat);
    }
    Effect::new(move |_| open_chat.with(|open| route::show(open.as_deref())));
    let moved = window_event_listener(
        leptos::ev::popstate,
        move |_| match route::chat_in_address() {
            Some(chat) if open_chat.get_untracked().as_deref() != Some(chat.as_str()) => {
                live.open_chat(chat)
            }
            None if open_chat.with_untracked(Option::is_some) => live.close_chat(),
            _ => {}
        },
    );
    on_cleanup(move || moved.remove());
    // The title's count of unseen messages ends when the tab is shown, or this page goes.
    let shown = window_event_listener_untyped("visibilitychange", |_| {
        if !document().hidden() {
            attention::seen();
        }
    });
    on_cleanup(move || {
        shown.remove();
        attention::seen();
    });
    let open_title = {
        let me = me.clone();
        Memo::new(move |_| {
            let open = open_chat.get()?;
            live.model.chats().with(|chats| title_of(chats, &open, &me))
        })
    };

    let open_others = {
        let me = me.clone();
        Memo::new(move |_| {
            let Some(open) = open_chat.get() else {
                return Vec::new();
            };
            live.model.chats().with(|chats| {
                chats
                    .iter()
                    .find(|chat| chat.chat_id == open)
                    .map(|chat| {
                        chat.members
                            .iter()
                            .filter(|member| **member != me)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default()
            })
        })
    };

    view! {
        <div class="app" class:chat-open=move || open_chat.with(Option::is_some)>
            <aside class="sidebar">
                <header class="sidebar-header">
                    <p class="me">"Signed in as " <strong>{me}</strong></p>
                    <button type="button" class="link" on:click=sign_out>"Sign out"</button>
                    <AccountMenu api=account_api on_signed_out=on_signed_out on_session_changed=on_session_changed />
                </header>
                <Show when=move || notice.with(Option::is_some)>
                    <p class="notice" role="status">{move || notice.get()}</p>
                </Show>
                <ConnectionIndicator />
                <SearchBox />
                <NewChat />
                <ChatList />
            </aside>
            <main class="conversation">
                {move || match open_chat.get() {
                    None => view! { <p class="placeholder">"Choose a chat, or start a new one."</p> }.into_any(),
                    Some(chat_id) => {
                        view! {
                            <header class="conversation-header">
                                <button type="button" class="link back" on:click=move |_| route::back_to_list(|| live.close_chat())>
                                    "Back"
                                </button>
                                <div>
                                    <h2>{move || open_title.get()}</h2>
                                    <PresenceLine others=open_others />
                                </div>
                                <ChatActions chat_id=chat_id.clone() />
                            </header>
                            <MessageList chat_id=chat_id.clone() />
                            <TypingLine chat_id=chat_id.clone() />
                            <Composer chat_id=chat_id />
                        }
                        .into_any()
                    }
                }}
            </main>
        </div>
    }
}
