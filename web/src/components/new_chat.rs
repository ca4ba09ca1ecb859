//! Starting a chat by typing usernames.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::components::focus::focus;
use crate::live::use_live;

/// A "New chat" button that opens a small form, with the cursor in its field: usernames
/// separated by commas or spaces, checked with the shared validation, then New; unknown users
/// are reported by name. Escape closes it.
#[component]
pub fn NewChat() -> impl IntoView {
    let live = use_live();
    let open = RwSignal::new(false);
    let names = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match live.start_chat(&names.get_untracked()).await {
                Ok(()) => {
                    names.set(String::new());
                    error.set(None);
                    open.set(false);
                }
                Err(message) => error.set(Some(message)),
            }
            busy.set(false);
        });
    };

    view! {
        // Escape closes the form and puts the focus back on the button that opened it.
        <div class="new-chat" on:keydown=move |event: leptos::ev::KeyboardEvent| {
            if event.key() == "Escape" {
                open.set(false);
                focus(document().query_selector(".new-chat>button").ok().flatten());
            }
        }>
            <button type="button" class="primary" aria-expanded=move || open.get().to_string() on:click=move |_| {
                open.update(|o| *o = !*o);
                // The form shows in the next frame: put the cursor in its field then.
                request_animation_frame(|| {
                    focus(document().query_selector("#new-chat-names").ok().flatten());
                });
            }>
                "New chat"
            </button>
            <Show when=move || open.get()>
                <form class="new-chat-form" on:submit=submit>
                    <label for="new-chat-names">"Usernames"</label>
                    <input
                        id="new-chat-names"
                        type="text"
                        placeholder="bob, carol"
                        autocomplete="off"
                        autocapitalize="none"
                        prop:value=move || names.get()
                        on:input=move |event| names.set(event_target_value(&event))
                    />
                    <button type="submit" disabled=move || busy.get()>"Start chat"</button>
                    <p class="error" role="alert">{move || error.get()}</p>
                </form>
            </Show>
        </div>
    }
}
