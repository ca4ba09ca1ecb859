//! The offer of desktop notifications, for the account menu: the browser asks for permission
//! only when the person clicks it, never on load.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::notify;

/// A "Turn on desktop notifications" button while the browser has not been asked, or a
/// sentence saying they are on or blocked; nothing in a browser without notifications.
#[component]
pub fn NotificationOffer() -> impl IntoView {
    let permission = RwSignal::new(notify::permission_state());
    let ask = move |_| {
        spawn_local(async move {
            permission.try_set(notify::ask().await);
        });
    };
    move || match permission.get().as_deref() {
        None => ().into_any(),
        Some("granted") => view! { <p>"Desktop notifications are on."</p> }.into_any(),
        Some("denied") => {
            view! { <p>"Desktop notifications are blocked in this browser's settings."</p> }
                .into_any()
        }
        Some(_) => view! {
            <button type="button" class="link" on:click=ask>
                "Turn on desktop notifications"
            </button>
        }
        .into_any(),
    }
}
