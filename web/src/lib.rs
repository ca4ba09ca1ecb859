//! The chat web app: a Leptos single-page app (client-side rendered, WASM) that talks to the
//! server only through gRPC-web, with the types and validation of `chat-core`.
//!
//! - `api`: the only code that makes gRPC calls; errors as sentences. `grpc_web`: the
//!   gRPC-web transport under it, on the browser's fetch.
//! - `attention`: the unseen-message count in a hidden tab's title; `notify`: desktop
//!   notifications of messages that arrive while the tab is hidden.
//! - `live`: the signed-in state, the one stream per browser (shared by its tabs),
//!   reconnects and the outbox.
//! - `pages`: the screens; `components`: their parts.
//! - `storage`: what the browser keeps (session, outbox), in versioned formats; `time`:
//!   showing times in the browser's locale; `route`: the open chat in the address bar.

pub mod api;
pub mod attention;
pub mod components;
pub mod grpc_web;
pub mod live;
pub mod notify;
pub mod pages;
pub mod route;
pub mod storage;
pub mod time;

use leptos::prelude::*;

use api::Session;
use pages::chats::ChatsPage;
use pages::sign_in::SignInPage;

/// The app: the sign-in screen, or the chats of the signed-in user. The session is kept in
/// localStorage, so a reload stays signed in until sign-out or expiry.
#[component]
pub fn App() -> impl IntoView {
    let session = RwSignal::new(stored_session());
    let notice = RwSignal::new(None::<String>);

    let signed_in = Callback::new(move |new: Session| {
        storage::save_session(&new);
        notice.set(None);
        session.set(Some(new));
    });
    let signed_out = Callback::new(move |why: Option<String>| {
        storage::forget_session();
        notice.set(why);
        session.set(None);
    });

    // A changed password starts the chats page afresh with the new session; the notice says
    // why the page restarted and that the other devices were signed out.
    let password_changed = Callback::new(move |new: Session| {
        storage::save_session(&new);
        notice.set(Some(
            "Your password was changed, and your other devices were signed out.".into(),
        ));
        session.set(Some(new));
    });

    move || match session.get() {
        None => view! { <SignInPage on_signed_in=signed_in notice=notice /> }.into_any(),
        Some(session) => view! {
            <ChatsPage
                session=session
                on_signed_out=signed_out
                on_session_changed=password_changed
                notice=notice
            />
        }
        .into_any(),
    }
}

/// The stored session, unless it has expired.
fn stored_session() -> Option<Session> {
    let session = storage::load_session()?;
    let now = js_sys::Date::now() / 1000.0;
    if (session.expires_at as f64) > now {
        Some(session)
    } else {
        storage::forget_session();
        None
    }
}

/// A validation message as a sentence: capital first letter, full stop at the end.
pub fn sentence(message: &str) -> String {
    let mut out = capitalised(message);
    if !out.is_empty() && !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// `text` with its first letter in upper case ("today" → "Today", "сегодня" → "Сегодня"):
/// the server's messages and the browser's relative day names come as inside a sentence.
pub fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
