//! One delivered message with what can be done to it: the user's own can be edited inline
//! and deleted (after a confirmation); anyone can reply to it (the composer then quotes it)
//! or react with one of a few common emoji (Escape closes the picker). A reply shows its
//! original's quote, which jumps to the original. Reactions show as counts per emoji, the
//! user's own highlighted, with who reacted on hover and focus.
//!
//! The keyboard's focus stays where the person works: closing the editor (saved or not)
//! puts it on Edit, closing the picker (with Escape or a pick) on React, pressing a reaction
//! on that reaction again, and deleting on the placeholder "Message deleted". A change
//! renders the message's row anew, which takes the focus with the old row (see
//! `components::focus`).

use chat_core::links::links;
use leptos::ev::MouseEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::components::focus::{focus_in_message, keep_focus};
use crate::components::pieces::shown;
use crate::components::quote::QuoteView;
use crate::live::model::{ChatMessage, ModelStoreFields, Quote, shown_quote};
use crate::live::use_live;
use crate::route;
use crate::time::short_time;

/// The emoji the picker offers: a small fixed set keeps the bundle free of an emoji table.
const PICKER: [&str; 6] = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

/// The button that opens the picker: the message's one `aria-expanded` button.
const PICKER_BUTTON: &str = "[aria-expanded]";
/// The button that opens the editor.
const EDIT_BUTTON: &str = "button.edit";

/// One delivered message: the user's own on the right, others' with name and time. The row
/// is rendered anew whenever its message changes (the list keys rows by id and stamp).
#[component]
pub fn MessageItem(
    /// The message to show.
    message: ChatMessage,
    /// The signed-in user, to tell own messages and reactions apart.
    me: String,
    /// The chat the message belongs to.
    chat_id: String,
    /// The message just jumped to (its chat and id), which is highlighted.
    highlighted: RwSignal<Option<(String, u64)>>,
    /// Whether it follows the same sender's message closely: the name is then for screen
    /// readers only (each message is read on its own there).
    continued: bool,
) -> impl IntoView {
    let mine = message.sender == me;
    let id = message.id;
    let highlight =
        move || highlighted.with(|shown| shown.as_ref().is_some_and(|(_, shown)| *shown == id));
    let time = short_time(message.sent_at);
    let sender = (!mine).then(|| {
        let class = if continued {
            "sender visually-hidden"
        } else {
            "sender"
        };
        view! { <header class=class>{message.sender.clone()}</header> }
    });
    if message.deleted {
        return view! {
            <article class="message deleted" class:mine=mine class:highlight=highlight data-id=id.to_string()>
                {sender}
                <p class="text" tabindex="-1">"Message deleted"</p>
                <footer><time>{time}</time></footer>
            </article>
        }
        .into_any();
    }

    let live = use_live();
    let editing = RwSignal::new(false);
    let picking = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let subject = (!message.subject.is_empty())
        .then(|| view! { <p class="subject">{message.subject.clone()}</p> });
    let edited = (message.edited_at > 0).then(|| view! { <span class="edited">" · edited"</span> });
    let text = message.text.clone();
    // Read once: the log renders this row anew when the original changes.
    let quote = message.reply.as_ref().map(|quote| {
        let quote = live
            .model
            .timelines()
            .with_untracked(|timelines| shown_quote(timelines, &chat_id, quote));
        view! { <QuoteView quote=quote chat_id=chat_id.clone() /> }
    });
    let reply_to = Quote::of(&message);
    let reply = {
        let chat_id = chat_id.clone();
        move |_| live.reply(&chat_id, Some(reply_to.clone()))
    };
    let reactions = Reactions(message.clone(), me.clone(), chat_id.clone(), error);
    let target = StoredValue::new((chat_id, message));

    // Escape closes the picker and puts the keyboard's focus back on its button rather than
    // at the page's start.
    let close_picker = move |event: &web_sys::Event| {
        picking.set(false);
        focus_in_message(
            event.target().and_then(|target| target.dyn_into().ok()),
            PICKER_BUTTON,
        );
    };
    let react = move |emoji: &'static str| {
        picking.set(false);
        let (chat_id, message) = target.get_value();
        keep_focus(message.id, PICKER_BUTTON.into());
        spawn_local(async move {
            let outcome = live.toggle_reaction(&chat_id, &message, emoji).await;
            error.try_set(outcome.err());
        });
    };
    let delete = move |_| {
        let confirmed = window()
            .confirm_with_message("Delete this message for everyone?")
            .unwrap_or(false);
        if !confirmed {
            return;
        }
        let (chat_id, message) = target.get_value();
        // On the placeholder, which says what happened and keeps the person's place.
        keep_focus(message.id, ".text".into());
        spawn_local(async move {
            let outcome = live.delete(&chat_id, &message).await;
            error.try_set(outcome.err());
        });
    };

    view! {
        <article class="message" class:mine=mine class:highlight=highlight data-id=id.to_string()>
            {sender}
            {quote}
            {subject}
            <Show
                when=move || editing.get()
                fallback=move || view! { <p class="text">{linked(&text)}</p> }
            >
                <Editor target=target editing=editing error=error />
            </Show>
            {reactions}
            <footer>
                <time>{time}</time>
                {edited}
                {mine.then(|| view! { <span class="delivery sent">" · Sent"</span> })}
                <span class="actions">
                    <button type="button" class="link reply" on:click=reply>"Reply"</button>
                    <button type="button" class="link" aria-expanded=move || picking.get().to_string()
                        on:click=move |_| picking.update(|open| *open = !*open)>"React"</button>
                    {mine.then(|| view! {
                        <button type="button" class="link edit" on:click=move |_| editing.set(true)>"Edit"</button>
                        <button type="button" class="link" on:click=delete>"Delete"</button>
                    })}
                </span>
            </footer>
            <Show when=move || picking.get()>
                <div class="picker" role="group" aria-label="Pick a reaction" on:keydown=move |event: leptos::ev::KeyboardEvent| {
                    if event.key() == "Escape" {
                        close_picker(&event);
                    }
                }>
                    {PICKER.iter().map(|&emoji| view! {
                        <button type="button" aria-label=format!("React with {emoji}") on:click=move |_| react(emoji)>{emoji}</button>
                    }).collect_view()}
                </div>
            </Show>
            <p class="error" role="alert">{move || error.get()}</p>
        </article>
    }
    .into_any()
}

/// The reactions of a message: one button per emoji with its count (pressed when the user
/// has it; pressing takes it back or adds it) and who reacted, shown on hover and focus.
#[allow(non_snake_case)]
fn Reactions(
    message: ChatMessage,
    me: String,
    chat_id: String,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let live = use_live();
    let target = StoredValue::new((chat_id, message.clone()));
    let buttons = message
        .reactions
        .iter()
        .map(|reaction| {
            let emoji = reaction.emoji.clone();
            let mine = reaction.users.contains(&me);
            let who = reaction.users.join(", ");
            let title = who.clone();
            let label = format!("{emoji} {}: {who}", reaction.users.len());
            let toggle = move |_| {
                let (chat_id, message) = target.get_value();
                let emoji = emoji.clone();
                // Back on this emoji's button (its label starts with the emoji), or on React
                // once no one has that emoji any more.
                keep_focus(
                    message.id,
                    format!(".reaction[aria-label^=\"{emoji} \"], {PICKER_BUTTON}"),
                );
                spawn_local(async move {
                    let outcome = live.toggle_reaction(&chat_id, &message, &emoji).await;
                    error.try_set(outcome.err());
                });
            };
            view! {
                <button type="button" class="reaction" class:mine=mine aria-pressed=mine.to_string()
                    aria-label=label title=title on:click=toggle>
                    {reaction.emoji.clone()} " " {reaction.users.len()}
                    <span class="who" aria-hidden="true">{who}</span>
                </button>
            }
        })
        .collect::<Vec<_>>();
    (!buttons.is_empty()).then(|| view! { <div class="reactions">{buttons}</div> })
}

/// The inline editor of the user's own message: Enter or Save stores the new text, Escape
/// or Cancel leaves it as it was. The text is checked with the shared validation first.
#[component]
fn Editor(
    /// The chat and the message being edited.
    target: StoredValue<(String, ChatMessage)>,
    /// Whether the editor is open; closed on save or cancel.
    editing: RwSignal<bool>,
    /// Where a refusal is shown.
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let live = use_live();
    let text = RwSignal::new(target.with_value(|(_, message)| message.text.clone()));
    let input = NodeRef::<leptos::html::Textarea>::new();
    // Opened by a click: put the cursor in the text at once.
    Effect::new(move |_| {
        if let Some(input) = input.get() {
            let _ = input.focus();
        }
    });
    // Back to the Edit button, rather than to the page's start.
    let cancel = move || {
        error.set(None);
        focus_in_message(input.get_untracked().map(Into::into), EDIT_BUTTON);
        editing.set(false);
    };
    let save = move || {
        let (chat_id, message) = target.get_value();
        let new_text = text.get_untracked();
        // Nothing to store; and no change would come to put the focus back on Edit.
        if new_text == message.text {
            return cancel();
        }
        keep_focus(message.id, EDIT_BUTTON.into());
        spawn_local(async move {
            match live.edit(&chat_id, &message, &new_text).await {
                Ok(()) => {
                    error.try_set(None);
                    editing.try_set(false);
                }
                Err(reason) => {
                    error.try_set(Some(reason));
                }
            }
        });
    };
    view! {
        <form class="editor" on:submit=move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            save();
        }>
            <label class="visually-hidden" for="edit-text">"Edit message"</label>
            <textarea
                id="edit-text"
                rows="2"
                node_ref=input
                prop:value=move || text.get()
                on:input=move |event| text.set(event_target_value(&event))
                on:keydown=move |event: leptos::ev::KeyboardEvent| {
                    if event.key() == "Escape" {
                        event.prevent_default();
                        cancel();
                    } else if event.key() == "Enter" && !event.shift_key() && !event.is_composing() {
                        event.prevent_default();
                        save();
                    }
                }
            ></textarea>
            <button type="submit" class="primary">"Save"</button>
            <button type="button" on:click=move |_| cancel()>"Cancel"</button>
        </form>
    }
}

/// A message's text with its web addresses as links (`chat_core::links`: only `http` and
/// `https`). A link to a chat of this app opens it here, as the chat list does (with a
/// modifier key, the browser's new tab or window as usual); any other opens in a new tab,
/// which can neither reach this page (`noopener`) nor learn which chat the address was in
/// (`noreferrer`).
pub fn linked(text: &str) -> Vec<AnyView> {
    let offsets: Vec<u32> = links(text)
        .into_iter()
        .flat_map(|link| [link.start as u32, link.end as u32])
        .collect();
    shown(text, &offsets, |address| {
        let href = address.clone();
        let Some(chat) = route::chat_of_link(&address) else {
            return view! { <a href=href target="_blank" rel="noopener noreferrer nofollow">{address}</a> }
                .into_any();
        };
        let live = use_live();
        let open_here = move |event: MouseEvent| {
            if !(event.ctrl_key() || event.meta_key() || event.shift_key()) {
                event.prevent_default();
                live.open_chat(chat.clone());
            }
        };
        view! { <a href=href on:click=open_here>{address}</a> }.into_any()
    })
}
