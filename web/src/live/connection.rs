//! The browser's one long-lived stream, for every chat at once (browsers allow only about
//! six HTTP/1.1 connections per origin), run by the tab that leads (`super::tabs`). It loads
//! the chat list, streams from the cursor, sends the outbox once connected, and on any break
//! waits (with backoff) and resumes from the cursor, so every missed message arrives, in
//! order, exactly once. Events that are not
//! messages are not replayed: each Stream opens with the current presence of the user's
//! contacts, and after a reconnect the first page of List is read again for the read
//! positions and unread counts that moved meanwhile (positions merge by the greater).

use futures::future::{Either, select};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;

use super::model::{Backoff, ModelStoreFields};
use super::{Live, Status};
use crate::api::{self, ApiError};

/// Runs until the live state is stopped (sign-out, page unmounted) or the session ends. A
/// model listed already (a tab taking the stream over from another) resumes from its cursor
/// and reads the list again once connected, as after a reconnect.
pub async fn run(live: Live) {
    let mut backoff = Backoff::default();
    let mut listed = live.model.cursor().get_untracked().is_some();
    while !live.is_stopped() {
        live.set_status(Status::Connecting);
        match connect_and_follow(live, &mut listed, &mut backoff).await {
            Err(ApiError::SignedOut) => {
                live.signed_out();
                return;
            }
            Err(error) => leptos::logging::log!("stream interrupted: {error}"),
            Ok(()) => leptos::logging::log!("stream ended by the server"),
        }
        if live.is_stopped() {
            return;
        }
        let delay_ms = backoff.next_delay_ms(js_sys::Math::random());
        wait_visibly(live, delay_ms).await;
    }
}

/// One connection: list the first page once, stream after the cursor, read until it breaks.
/// Only the first page is read before streaming, so the stream starts however many chats the
/// user is in; later pages load when the user asks (`Live::load_more_chats`).
async fn connect_and_follow(
    live: Live,
    listed: &mut bool,
    backoff: &mut Backoff,
) -> Result<(), ApiError> {
    let api = live.api();
    let reconnect = *listed;
    if !*listed {
        let (chats, more) = api.list("").await?;
        live.set_chats(&chats, more);
        *listed = true;
    }
    let cursor = live.model.cursor().get_untracked();
    let mut stream = api.stream(cursor).await?;
    live.set_status(Status::Connected);
    if reconnect {
        // A reconnect: read positions may have moved while the stream was down.
        live.refresh_list();
    }
    backoff.reset();
    live.flush_outbox();
    loop {
        // Heartbeats come every 15 s; a stream silent for much longer is dead even if the
        // browser has not noticed (a sleeping laptop, a proxy that dropped it).
        let next = std::pin::pin!(stream.next());
        let event = match select(next, TimeoutFuture::new(SILENCE_LIMIT_MS)).await {
            Either::Left((event, _)) => event?,
            Either::Right(_) => return Err(ApiError::Offline),
        };
        let Some(bytes) = event else { return Ok(()) };
        if live.is_stopped() {
            return Ok(());
        }
        let event = api::decode_event(&bytes)?;
        super::tabs::share_event(live, &bytes, &event);
        live.apply(event.event);
    }
}

/// Reads the first page of the chat list into the model, trying again (with backoff) until
/// it is in: for a tab that follows another's stream. False when the live state stopped or
/// the session ended first.
pub async fn list(live: Live) -> bool {
    let mut backoff = Backoff::default();
    while !live.is_stopped() {
        match live.api().list("").await {
            Ok((chats, more)) => {
                live.set_chats(&chats, more);
                return true;
            }
            Err(ApiError::SignedOut) => {
                live.signed_out();
                return false;
            }
            Err(error) => leptos::logging::log!("list: {error}"),
        }
        let delay_ms = backoff.next_delay_ms(js_sys::Math::random());
        wait_visibly(live, delay_ms).await;
    }
    false
}

/// How long a stream may stay silent before it counts as broken: three heartbeats.
const SILENCE_LIMIT_MS: u32 = 45_000;

/// Waits `delay_ms`, counting down in the status so the user sees when the next try is.
async fn wait_visibly(live: Live, delay_ms: u64) {
    let mut left_ms = delay_ms;
    while left_ms > 0 && !live.is_stopped() {
        live.set_status(Status::Offline {
            retry_in_secs: left_ms.div_ceil(1000),
        });
        let step = left_ms.min(1000);
        TimeoutFuture::new(step as u32).await;
        left_ms -= step;
    }
}
