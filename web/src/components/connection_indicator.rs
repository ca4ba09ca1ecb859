//! Shows whether the live connection is up, so people know if what they see is current.

use leptos::prelude::*;

use crate::live::{Status, use_live};

/// "Connected", "Connecting…" or "Offline — retrying in 3 s": the one wording of the
/// connection's state, here and in the open chat's header.
pub fn connection_text(status: Status) -> String {
    match status {
        Status::Connected => "Connected".to_owned(),
        Status::Connecting => "Connecting…".to_owned(),
        Status::Offline { retry_in_secs } => format!("Offline — retrying in {retry_in_secs} s"),
    }
}

/// A status line ("Connected", "Connecting…", "Offline — retrying in 3 s") announced politely
/// to screen readers.
#[component]
pub fn ConnectionIndicator() -> impl IntoView {
    let live = use_live();
    let label = move || connection_text(live.status.get());
    let class = move || match live.status.get() {
        Status::Connected => "connection online",
        Status::Connecting => "connection connecting",
        Status::Offline { .. } => "connection offline",
    };
    view! {
        <p class=class role="status" aria-live="polite" aria-label="Connection">
            <span class="dot" aria-hidden="true"></span>
            {label}
        </p>
    }
}
