//! One live stream, as Stream and Connect both serve it: replay from storage after a cursor,
//! then live messages from the broker, then catch-up from storage whenever the reader fell
//! behind, with heartbeats while idle and a clean end when the server shuts down.
//!
//! Why there is no gap and no duplicate: the feed subscribes to the broker *before* it reads
//! storage. Every message committed before the subscription is in storage; every message
//! committed after it arrives on the subscription. Those committed in between may come both
//! ways, and the cursor (the last id delivered) drops the second copy, since ids increase in
//! commit order and the broker publishes in that order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::{ChatId, MessageId, UserId};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::error::ApiError;
use crate::fanout::Broker;
use crate::store::{Store, StoredMessage};
use chat_transport::unix_now;

/// Messages read from storage per query while replaying or catching up. A feed holds the page
/// until its reader has taken it all, however slowly it reads, so this bounds what a reader
/// catching up costs: 32 of the largest messages are 512 KB, about what hyper buffers for a
/// connection that stopped reading. (At 256, twenty stalled readers catching up at once
/// raised the server's RSS by about 100 MB; at 32, by about 30: `slow_consumer` in the API
/// tests measures it.)
pub const REPLAY_PAGE: u32 = 32;

pub enum FeedItem {
    Message(Arc<StoredMessage>),
    /// Unix seconds.
    Heartbeat(i64),
}

/// What a feed follows and from where.
pub struct FeedSpec {
    pub user: UserId,
    /// `None`: every chat of the user, including chats created later.
    pub chat: Option<ChatId>,
    /// `None`: from now on.
    pub after: Option<MessageId>,
    pub heartbeat: Option<Duration>,
}

enum Woken {
    Stopping,
    Received(Result<Arc<StoredMessage>, broadcast::error::RecvError>),
    Heartbeat,
}

pub struct Feed {
    store: Arc<dyn Store>,
    spec: FeedSpec,
    subscription: crate::fanout::Subscription,
    /// The id of the last message delivered (or the starting point).
    cursor: MessageId,
    backlog: VecDeque<Arc<StoredMessage>>,
    /// Storage may hold messages after `cursor` that the subscription will not deliver.
    behind: bool,
    heartbeat: Option<Interval>,
    shutdown: watch::Receiver<bool>,
    ended: bool,
}

impl Feed {
    pub fn open(
        store: Arc<dyn Store>,
        broker: &Arc<Broker>,
        spec: FeedSpec,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let subscription = broker.subscribe(&spec.user);
        let (cursor, behind) = match spec.after {
            Some(after) => (after, true),
            None => (subscription.start, false),
        };
        let heartbeat = spec.heartbeat.map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        Self {
            store,
            spec,
            subscription,
            cursor,
            backlog: VecDeque::new(),
            behind,
            heartbeat,
            shutdown,
            ended: false,
        }
    }

    /// The next item, or `None` once the feed has ended.
    pub async fn next(&mut self) -> Option<Result<FeedItem, ApiError>> {
        if self.ended {
            return None;
        }
        loop {
            if *self.shutdown.borrow() {
                return self.end(ApiError::ShuttingDown);
            }
            if let Some(message) = self.backlog.pop_front() {
                return Some(Ok(self.deliver(message)));
            }
            if self.behind {
                if let Err(error) = self.read_storage().await {
                    return self.end(error);
                }
                continue;
            }
            match self.wait().await {
                Woken::Stopping => return self.end(ApiError::ShuttingDown),
                Woken::Heartbeat => return Some(Ok(FeedItem::Heartbeat(unix_now()))),
                Woken::Received(Ok(message)) => {
                    if message.id > self.cursor && self.follows(&message) {
                        return Some(Ok(self.deliver(message)));
                    }
                }
                Woken::Received(Err(broadcast::error::RecvError::Lagged(skipped))) => {
                    tracing::debug!(user = %self.spec.user, skipped, "feed lagged; catching up from storage");
                    self.behind = true;
                }
                Woken::Received(Err(broadcast::error::RecvError::Closed)) => {
                    return self.end(ApiError::ShuttingDown);
                }
            }
        }
    }

    /// Waits for shutdown, a published message or the heartbeat, in that order of priority.
    async fn wait(&mut self) -> Woken {
        let heartbeat = async {
            match &mut self.heartbeat {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.shutdown.wait_for(|stopping| *stopping) => Woken::Stopping,
            received = self.subscription.receiver.recv() => Woken::Received(received),
            _ = heartbeat => Woken::Heartbeat,
        }
    }

    fn follows(&self, message: &StoredMessage) -> bool {
        self.spec
            .chat
            .as_ref()
            .is_none_or(|chat| *chat == message.chat_id)
    }

    fn deliver(&mut self, message: Arc<StoredMessage>) -> FeedItem {
        self.cursor = message.id;
        if let Some(interval) = &mut self.heartbeat {
            interval.reset();
        }
        FeedItem::Message(message)
    }

    async fn read_storage(&mut self) -> Result<(), ApiError> {
        let page = self
            .store
            .messages_after(
                &self.spec.user,
                self.spec.chat.as_ref(),
                self.cursor,
                REPLAY_PAGE,
            )
            .await?;
        // A short page means storage has nothing more; newer messages are on the subscription.
        self.behind = page.len() == REPLAY_PAGE as usize;
        self.backlog.extend(page.into_iter().map(Arc::new));
        Ok(())
    }

    fn end(&mut self, error: ApiError) -> Option<Result<FeedItem, ApiError>> {
        self.ended = true;
        Some(Err(error))
    }
}
