//! The live actions about attention rather than messages: taking in read positions, typing
//! and presence from the stream, marking read what the user has seen, and saying the user is
//! typing (at most once every `TYPING_RESEND_MS`).

use std::cell::Cell;

use chat_core::activity::TYPING_RESEND_MS;
use chat_core::proto;
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Live, Part};
use crate::api::ApiError;

thread_local! {
    /// When this tab last said the user is typing (`Date.now()`), and in which chat.
    static LAST_TYPING: Cell<(f64, u64)> = const { Cell::new((f64::NEG_INFINITY, 0)) };
}

impl Live {
    /// A read-position event: another device of the user read on, or a receipt.
    pub fn on_read(&self, read: &proto::ReadPosition) {
        self.change(&[Part::Reading, Part::Chats], |model| {
            model.apply_read(read)
        });
    }

    /// A typing event: shown until it expires, then taken away without another event.
    pub fn on_typing(&self, typing: &proto::TypingEvent) {
        self.change(&[Part::Typing], |model| {
            model.apply_typing(typing, js_sys::Date::now())
        });
        let live = *self;
        let wait_ms = u32::try_from(typing.expires_in_ms.max(0)).unwrap_or(0) + 50;
        spawn_local(async move {
            TimeoutFuture::new(wait_ms).await;
            let expired = live
                .model
                .try_update_untracked(|model| model.expire_typing(js_sys::Date::now()));
            if expired == Some(true) {
                live.notify(&[Part::Typing]);
            }
        });
    }

    pub fn on_presence(&self, presence: &proto::Presence) {
        self.change(&[Part::Presence], |model| model.apply_presence(presence));
    }

    /// The user has seen the messages of `chat_id` up to `id` (shown in a visible tab): moves
    /// their position and tells the server when that is news.
    pub fn seen(&self, chat_id: &str, id: u64) {
        let hidden = document().hidden();
        if hidden || self.is_stopped() {
            return;
        }
        let moved = self.change(&[Part::Reading, Part::Chats], |model| {
            model.mark_seen(chat_id, id)
        });
        if moved != Some(true) {
            return;
        }
        let (live, chat_id) = (*self, chat_id.to_owned());
        spawn_local(async move {
            match live.api().mark_read(&chat_id, id).await {
                Ok(()) => {}
                Err(ApiError::SignedOut) => live.signed_out(),
                // The next message seen marks this one too; List tells the truth later.
                Err(error) => leptos::logging::warn!("mark read in {chat_id}: {error}"),
            }
        });
    }

    /// The user typed in `chat_id`'s box: says so, unless this tab did within
    /// `TYPING_RESEND_MS` for the same chat.
    pub fn typing(&self, chat_id: &str) {
        let now = js_sys::Date::now();
        let chat = chat_hash(chat_id);
        let (last, last_chat) = LAST_TYPING.get();
        if last_chat == chat && now - last < f64::from(TYPING_RESEND_MS) {
            return;
        }
        LAST_TYPING.set((now, chat));
        let (live, chat_id) = (*self, chat_id.to_owned());
        spawn_local(async move {
            // Best effort: a refused or lost call only costs the others a typing line.
            if let Err(ApiError::SignedOut) = live.api().typing(&chat_id).await {
                live.signed_out();
            }
        });
    }

    /// The message was sent or the box cleared: the next keystroke says "typing" at once.
    pub fn typing_stopped(&self) {
        LAST_TYPING.set((f64::NEG_INFINITY, 0));
    }
}

/// A cheap fingerprint of a chat id, so the throttle's state is `Copy`.
fn chat_hash(chat_id: &str) -> u64 {
    chat_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}
