//! The sign-in / sign-up screen.

use chat_core::content::Password;
use chat_core::ids::UserId;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{Api, Session};

/// Which button submitted the form.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    SignIn,
    SignUp,
}

/// Username and password with "Sign in" and "Sign up". Each field is checked with the shared
/// validation before any request, and problems are shown on the field; server answers are
/// shown as sentences.
#[component]
pub fn SignInPage(
    /// Called with the new session once signed in.
    on_signed_in: Callback<Session>,
    /// A message to show first, e.g. why the user was signed out.
    notice: RwSignal<Option<String>>,
) -> impl IntoView {
    let user_id = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let user_error = RwSignal::new(None::<String>);
    let password_error = RwSignal::new(None::<String>);
    let form_error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let submit = move |action: Action| {
        let user = UserId::parse(&user_id.get_untracked());
        let pass = Password::parse(&password.get_untracked());
        user_error.set(
            user.as_ref()
                .err()
                .map(|error| crate::sentence(&error.to_string())),
        );
        // At sign-in only emptiness matters: old accounts may predate today's rules.
        let pass_problem = match (action, &pass) {
            (Action::SignUp, Err(error)) => Some(crate::sentence(&error.to_string())),
            (Action::SignIn, _) if password.get_untracked().is_empty() => {
                Some("Enter your password.".to_owned())
            }
            _ => None,
        };
        password_error.set(pass_problem.clone());
        form_error.set(None);
        let (Ok(user), None) = (user, pass_problem) else {
            return;
        };
        busy.set(true);
        spawn_local(async move {
            let api = Api::for_this_page();
            let secret = password.get_untracked();
            let result = match action {
                Action::SignIn => api.sign_in(user.as_str(), &secret).await,
                Action::SignUp => api.sign_up(user.as_str(), &secret).await,
            };
            busy.set(false);
            match result {
                Ok(session) => on_signed_in.run(session),
                Err(error) => form_error.set(Some(error.to_string())),
            }
        });
    };

    view! {
        <main class="sign-in">
            <form on:submit=move |event: leptos::ev::SubmitEvent| {
                event.prevent_default();
                submit(Action::SignIn);
            }>
                <h1>"Chat"</h1>
                <Show when=move || notice.get().is_some()>
                    <p class="notice" role="status">{move || notice.get()}</p>
                </Show>
                <label for="sign-in-user">"Username"</label>
                <input
                    id="sign-in-user"
                    type="text"
                    autocomplete="username"
                    autocapitalize="none"
                    aria-invalid=move || user_error.get().is_some().to_string()
                    aria-describedby="sign-in-user-error"
                    prop:value=move || user_id.get()
                    on:input=move |event| user_id.set(event_target_value(&event))
                />
                <p id="sign-in-user-error" class="error field-error">{move || user_error.get()}</p>
                <label for="sign-in-password">"Password"</label>
                <input
                    id="sign-in-password"
                    type="password"
                    autocomplete="current-password"
                    aria-invalid=move || password_error.get().is_some().to_string()
                    aria-describedby="sign-in-password-error"
                    prop:value=move || password.get()
                    on:input=move |event| password.set(event_target_value(&event))
                />
                <p id="sign-in-password-error" class="error field-error">{move || password_error.get()}</p>
                <div class="actions">
                    <button type="submit" class="primary" disabled=move || busy.get()>"Sign in"</button>
                    <button type="button" disabled=move || busy.get() on:click=move |_| submit(Action::SignUp)>
                        "Sign up"
                    </button>
                </div>
                <Show when=move || form_error.get().is_some()>
                    <p class="error" role="alert">{move || form_error.get()}</p>
                </Show>
            </form>
        </main>
    }
}
