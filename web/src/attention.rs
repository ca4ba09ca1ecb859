//! While the tab is hidden, its title counts the messages that arrived from others since it
//! was last seen, "(3) Chat", so a person sees from another tab that something is waiting.
//! Showing the tab puts the title back.

use std::cell::Cell;

use leptos::prelude::document;

/// The page's own title, as `index.html` sets it.
const TITLE: &str = "Chat";

thread_local! {
    static UNSEEN: Cell<u32> = const { Cell::new(0) };
}

/// A message from someone else arrived: counted in the title when the tab is hidden.
pub fn message_arrived() {
    if !document().hidden() {
        return;
    }
    let unseen = UNSEEN.with(|unseen| {
        unseen.set(unseen.get().saturating_add(1));
        unseen.get()
    });
    document().set_title(&format!("({unseen}) {TITLE}"));
}

/// The tab is shown (or the page is going away): nothing unseen any more.
pub fn seen() {
    UNSEEN.with(|unseen| unseen.set(0));
    document().set_title(TITLE);
}
