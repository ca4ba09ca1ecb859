//! The listener: one connection per server that `LISTEN`s on the channel every writer's
//! transaction notifies, and wakes the tailer for each notification but those of its own
//! writer's batches (whose messages the writer hands the tailer itself). It reconnects by itself
//! when the connection drops, and wakes the tailer after each (re)connection, since
//! notifications sent while it was away are lost; the tailer then reads what it missed.
//! It also listens on the signals' channel and forwards those payloads (events that are not
//! messages, see `signals.rs`) untouched; signals sent while it was away are lost for good.
//! And it keeps the token cache honest: each revocation heard makes it forget that user's
//! tokens, and the cache is suspended while the listener is away (see `TokenCache`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use chat_core::ids::UserId;

use super::activity::SIGNALS_CHANNEL;
use super::tailer::Hints;
use super::tls::Target;
use super::writer::CHANNEL;
use super::writes::TOKENS_CHANNEL;
use crate::store::token_cache::TokenCache;

/// The pause before reconnecting a dropped listener.
const RECONNECT: Duration = Duration::from_millis(500);

/// Listens until `tailer_gone` reports the tailer dropped.
pub async fn run(
    database: Target,
    hints: Arc<Hints>,
    signals: mpsc::UnboundedSender<String>,
    tokens: Arc<TokenCache>,
    mut tailer_gone: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tailer_gone.changed() => return,
            error = listen(&database, &hints, &signals, &tokens) => {
                tokens.suspend();
                tracing::warn!(%error, "database listener lost; reconnecting");
            }
        }
        tokio::select! {
            _ = tailer_gone.changed() => return,
            _ = tokio::time::sleep(RECONNECT) => {}
        }
    }
}

/// Connects, listens and forwards notifications until the connection fails.
async fn listen(
    database: &Target,
    hints: &Hints,
    signals: &mpsc::UnboundedSender<String>,
    tokens: &Arc<TokenCache>,
) -> String {
    let (client, mut connection) = match database.config.connect(database.tls.clone()).await {
        Ok(connected) => connected,
        Err(error) => return error.to_string(),
    };
    let (notes, mut received) = mpsc::unbounded_channel();
    // The connection delivers notifications only while it is polled; this task does that
    // and ends (dropping `notes`) when the connection does.
    let signals = signals.clone();
    let heard = Arc::clone(tokens);
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(note)) if note.channel() == SIGNALS_CHANNEL => {
                    let _ = signals.send(note.payload().to_owned());
                }
                Ok(AsyncMessage::Notification(note)) if note.channel() == TOKENS_CHANNEL => {
                    match UserId::parse(note.payload()) {
                        Ok(user) => heard.forget_user(&user),
                        // Not written by a chat-server: forgetting everything is always safe.
                        Err(_) => heard.forget_all(),
                    }
                }
                Ok(AsyncMessage::Notification(note)) => {
                    let announced = note.payload().parse::<u64>().unwrap_or(0);
                    let _ = notes.send((note.process_id(), announced));
                }
                Ok(_) => {}
                Err(error) => return Some(error),
            }
        }
        None
    });
    if let Err(error) = client
        .batch_execute(&format!(
            "LISTEN {CHANNEL}; LISTEN {SIGNALS_CHANNEL}; LISTEN {TOKENS_CHANNEL}"
        ))
        .await
    {
        driver.abort();
        return error.to_string();
    }
    // Every revocation committed from here on will be heard.
    tokens.resume();
    hints.reconnected.store(true, Ordering::Release);
    hints.wake.notify_one();
    while let Some((backend, announced)) = received.recv().await {
        if hints.is_own(backend, announced) {
            continue;
        }
        hints.announced.fetch_max(announced, Ordering::AcqRel);
        hints.wake.notify_one();
    }
    drop(client);
    match driver.await {
        Ok(Some(error)) => error.to_string(),
        _ => "the connection closed".to_owned(),
    }
}
