//! The account menu: signing out on every device, changing the password, whether others see
//! how far the user has read (read receipts), desktop notifications, and the people the user
//! blocked.

use chat_core::content::Password;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{Api, Session};
use crate::components::blocked_list::BlockedList;
use crate::components::notification_offer::NotificationOffer;
use crate::live::model::ModelStoreFields;
use crate::live::use_live;

/// An "Account" disclosure with a "Share read receipts" switch, the offer of desktop
/// notifications, "Sign out everywhere", a
/// "Change password" form (current and new password) and the blocked people, each with
/// "Unblock". Signing out everywhere and changing the password revoke every session of the
/// user, so this tab's stream stops; a changed password goes on with the fresh session the
/// server returns.
#[component]
pub fn AccountMenu(
    /// The client of the signed-in session.
    api: Api,
    /// Called after "Sign out everywhere" (this session is over too).
    on_signed_out: Callback<Option<String>>,
    /// Called with the fresh session after a password change.
    on_session_changed: Callback<Session>,
) -> impl IntoView {
    let live = use_live();
    let old_password = RwSignal::new(String::new());
    let new_password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let everywhere = {
        let api = api.clone();
        move |_| {
            if busy.get_untracked() {
                return;
            }
            busy.set(true);
            let api = api.clone();
            spawn_local(async move {
                match api.sign_out_everywhere().await {
                    Ok(()) => {
                        live.stop();
                        on_signed_out.run(Some("You were signed out on every device.".into()));
                    }
                    Err(problem) => {
                        error.set(Some(problem.to_string()));
                        busy.set(false);
                    }
                }
            });
        }
    };
    // Read when the menu first opens, not on every page load; the switch waits until then.
    // (Two `bool` signals rather than one `Option<bool>`: the app has no other signal of that
    // type, and each type of signal costs the bundle several hundred bytes.)
    let receipts_known = RwSignal::new(false);
    let receipts = RwSignal::new(true);
    let receipts_api = api.clone();
    let load_receipts = move |_| {
        if receipts_known.get_untracked() {
            return;
        }
        let api = receipts_api.clone();
        spawn_local(async move {
            match api.private_receipts().await {
                Ok(private) => {
                    receipts.set(!private);
                    receipts_known.set(true);
                }
                Err(problem) => error.set(Some(problem.to_string())),
            }
        });
    };
    let set_receipts = {
        let api = api.clone();
        move |event: leptos::ev::Event| {
            let share = event_target_checked(&event);
            let api = api.clone();
            spawn_local(async move {
                match api.set_private_receipts(!share).await {
                    Ok(private) => receipts.set(!private),
                    Err(problem) => error.set(Some(problem.to_string())),
                }
            });
        }
    };

    let change = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let (old, new) = (old_password.get_untracked(), new_password.get_untracked());
        if old.is_empty() {
            error.set(Some("Enter your current password.".into()));
            return;
        }
        // The same validation the server applies, so a bad choice is told at once.
        if let Err(problem) = Password::parse(&new) {
            error.set(Some(problem.to_string()));
            return;
        }
        busy.set(true);
        let api = api.clone();
        let me = live.model.me().get_untracked();
        live.replacing_session(true);
        spawn_local(async move {
            match api.change_password(&me, &old, &new).await {
                Ok(session) => {
                    live.stop();
                    on_session_changed.run(session);
                }
                Err(problem) => {
                    live.replacing_session(false);
                    error.set(Some(problem.to_string()));
                    busy.set(false);
                }
            }
        });
    };

    view! {
        <details class="account-menu" on:toggle=load_receipts>
            <summary>"Account"</summary>
            <div class="account-panel">
                <label class="receipts">
                    <input
                        type="checkbox"
                        disabled=move || !receipts_known.get()
                        prop:checked=move || receipts.get()
                        on:change=set_receipts
                    />
                    " Share read receipts (others see how far you have read)"
                </label>
                <NotificationOffer />
                <button type="button" class="link" disabled=move || busy.get() on:click=everywhere>
                    "Sign out everywhere"
                </button>
                <form class="change-password" aria-label="Change password" on:submit=change>
                    <label for="current-password">"Current password"</label>
                    <input
                        id="current-password"
                        type="password"
                        autocomplete="current-password"
                        prop:value=move || old_password.get()
                        on:input=move |event| old_password.set(event_target_value(&event))
                    />
                    <label for="new-password">"New password"</label>
                    <input
                        id="new-password"
                        type="password"
                        autocomplete="new-password"
                        prop:value=move || new_password.get()
                        on:input=move |event| new_password.set(event_target_value(&event))
                    />
                    <button type="submit" disabled=move || busy.get()>"Change password"</button>
                </form>
                <p class="error" role="alert">{move || error.get()}</p>
                <BlockedList />
            </div>
        </details>
    }
}
