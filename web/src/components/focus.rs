//! Moving the keyboard's focus, for the parts of the screen that re-render or appear under
//! it: a message's row is rendered anew whenever its message changes, which takes the focus
//! with the old row, and a form shown by a button is not there until the next frame.
//!
//! A change to a message asks, before it is made, where the focus should go in the row that
//! will show it (`keep_focus`); the log takes that wish each time it has shown a change
//! (`focus_after_change`) and puts the focus there if nothing holds it.

use std::cell::RefCell;

use wasm_bindgen::JsCast;

thread_local! {
    /// Where the keyboard's focus goes once the log has shown a change that a button of a
    /// message asked for: the message's id and a selector of what to focus in its row.
    static FOCUS_AFTER_CHANGE: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
}

/// Puts the keyboard's focus on `element`, when there is one.
pub fn focus(element: Option<web_sys::Element>) {
    if let Some(element) =
        element.and_then(|element| element.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = element.focus();
    }
}

/// Puts the keyboard's focus on what `selector` finds in the message (the `article`) that
/// holds `inside`, or is it.
pub fn focus_in_message(inside: Option<web_sys::Element>, selector: &str) {
    focus(
        inside
            .and_then(|inside| inside.closest("article").ok().flatten())
            .and_then(|article| article.query_selector(selector).ok().flatten()),
    );
}

/// Asks for the keyboard's focus to go to what `selector` finds in message `id`'s row once
/// the log has shown the change being made to it.
pub fn keep_focus(id: u64, selector: String) {
    FOCUS_AFTER_CHANGE.set(Some((id, selector)));
}

/// What [`keep_focus`] asked for, once: the log calls it each time it has shown a change.
pub fn focus_after_change() -> Option<(u64, String)> {
    FOCUS_AFTER_CHANGE.take()
}
