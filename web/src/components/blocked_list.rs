//! The people the user blocked, each with "Unblock", for the account menu.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::live::use_live;

/// A "Blocked people" list (loaded when first shown) with an "Unblock NAME" button per person,
/// or a sentence saying nobody is blocked.
#[component]
pub fn BlockedList() -> impl IntoView {
    let live = use_live();
    live.load_blocked();
    let error = RwSignal::new(None::<String>);
    let unblock = move |user: String| {
        spawn_local(async move {
            let outcome = live.set_blocked(&user, false).await;
            error.try_set(outcome.err());
        });
    };

    view! {
        <section class="blocked" aria-label="Blocked people">
            <h3>"Blocked people"</h3>
            {move || match live.blocked.get() {
                None => view! { <p>"Loading…"</p> }.into_any(),
                Some(list) if list.is_empty() => view! { <p>"You have blocked nobody."</p> }.into_any(),
                Some(list) => view! {
                    <ul>
                        {list.into_iter().map(|user| {
                            let label = format!("Unblock {user}");
                            let name = user.clone();
                            view! {
                                <li>
                                    <span>{name}</span>
                                    <button type="button" class="link" on:click=move |_| unblock(user.clone())>{label}</button>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any(),
            }}
            <p class="error" role="alert">{move || error.get()}</p>
        </section>
    }
}
