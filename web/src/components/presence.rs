//! Presence as people see it: a dot in the chat list and a line in the chat header, both
//! from the model's presence map, which the stream keeps current.

use leptos::prelude::*;

use crate::components::connection_indicator::connection_text;
use crate::live::activity::Seen;
use crate::live::model::ModelStoreFields;
use crate::live::{Live, Status, use_live};
use crate::time::short_time;

/// "online", "last seen 14:05", or "offline" for someone never seen.
pub fn presence_text(seen: Option<Seen>) -> String {
    match seen {
        Some(Seen { online: true, .. }) => "online".to_owned(),
        Some(Seen { last_seen, .. }) if last_seen > 0 => {
            format!("last seen {}", short_time(last_seen))
        }
        _ => "offline".to_owned(),
    }
}

/// Whether this browser's stream is up: while it is down, what the server last said of
/// anyone's presence may have changed since. (A function of its own: inlined into the one
/// memo that asks, the bundle was 53 bytes larger.)
fn connected(live: Live) -> bool {
    live.status.with(|status| *status == Status::Connected)
}

/// A dot that is filled while `user` is online; its accessible name says who and how.
#[component]
pub fn PresenceDot(
    /// The person whose presence it shows.
    user: String,
    /// Their presence, from the model's presence map (the chat list keeps one per row).
    seen: RwSignal<Option<Seen>>,
) -> impl IntoView {
    let label = move || format!("{user}: {}", presence_text(seen.get()));
    view! {
        <span
            class="presence-dot"
            class:online=move || seen.get().is_some_and(|seen| seen.online)
            role="img"
            aria-label=label.clone()
            title=label
        ></span>
    }
}

/// The open chat's presence line: the other person's presence in a chat of two, how many
/// are online in a group. A polite live region, so a screen reader hears changes when they
/// happen, not on every keystroke. While the stream is down it says "Connecting…" instead:
/// on a phone the open chat covers the list and its connection line, so this is where one
/// sees it. Without the connection line's countdown, so it is announced once, not every
/// second beside that line.
#[component]
pub fn PresenceLine(
    /// The members other than the user.
    others: Memo<Vec<String>>,
) -> impl IntoView {
    let live = use_live();
    let text = Memo::new(move |_| {
        if !connected(live) {
            return connection_text(Status::Connecting);
        }
        others.with(|others| {
            live.model
                .presence()
                .with(|presence| match others.as_slice() {
                    [] => String::new(),
                    [one] => presence_text(presence.get(one).copied()),
                    many => {
                        let online = many
                            .iter()
                            .filter(|user| presence.get(*user).is_some_and(|seen| seen.online))
                            .count();
                        format!("{online} of {} online", many.len())
                    }
                })
        })
    });
    view! { <p class="presence" role="status" aria-live="polite">{move || text.get()}</p> }
}
