//! One live stream, as Stream and Connect both serve it: replay from storage after a cursor,
//! then live events (messages and changes to them) from the broker, then catch-up from
//! storage whenever the reader fell behind, with heartbeats while idle and a clean end when
//! the server shuts down.
//!
//! Why there is no gap and no duplicate: the feed subscribes to the broker *before* it reads
//! storage. Every event committed before the subscription is in storage; every event
//! committed after it arrives on the subscription. Those committed in between may come both
//! ways, and the cursor (the last id delivered) drops the second copy, since ids increase in
//! commit order and the broker publishes in that order.
//!
//! Events that are not stored (`Signal`s) pass straight through when the feed follows their
//! chat; they never touch the cursor. A Stream of every chat opens with a snapshot of its
//! user's contacts' presence (`Feed::open_with`), delivered before anything else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::{ChatId, MessageId, UserId};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::error::ApiError;
use crate::fanout::{Broker, Published};
use crate::metrics::{Metrics, OpenStream};
use crate::signals::Signal;
use crate::store::{Store, StoredEvent};
use chat_transport::unix_now;

/// Messages read from storage per query while replaying or catching up. A feed holds the page
/// until its reader has taken it all, however slowly it reads, so this bounds what a reader
/// catching up costs: 32 of the largest messages are 512 KB (0.9 MB if each also carries
/// the most reactions allowed), about what hyper buffers for a connection that stopped
/// reading. The API tests' `slow_consumer` checks that bound on the
/// server's memory (figures in RELIABILITY.md).
pub const REPLAY_PAGE: u32 = 32;

pub enum FeedItem {
    /// A message or a change to one; the cursor is its id.
    Event(Arc<StoredEvent>),
    /// Unix seconds.
    Heartbeat(i64),
    /// An event that is not a message: no id, never replayed.
    Signal(Arc<Signal>),
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
    Received(Result<Published, broadcast::error::RecvError>),
    Heartbeat,
}

pub struct Feed {
    store: Arc<dyn Store>,
    spec: FeedSpec,
    subscription: crate::fanout::Subscription,
    /// The id of the last event delivered (or the starting point).
    cursor: MessageId,
    /// The starting point: every message of the feed's chats with a greater id is delivered.
    start: MessageId,
    backlog: VecDeque<Arc<StoredEvent>>,
    /// Signals waiting to go out ahead of everything else (the opening snapshot).
    opening: VecDeque<Arc<Signal>>,
    /// Storage may hold messages after `cursor` that the subscription will not deliver.
    behind: bool,
    heartbeat: Option<Interval>,
    shutdown: watch::Receiver<bool>,
    ended: bool,
    metrics: Arc<Metrics>,
    /// Counts this feed among the open streams while it lives.
    _open: OpenStream,
}

impl Feed {
    pub fn open(
        store: Arc<dyn Store>,
        broker: &Arc<Broker>,
        spec: FeedSpec,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
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
            start: cursor,
            backlog: VecDeque::new(),
            opening: VecDeque::new(),
            behind,
            heartbeat,
            shutdown,
            ended: false,
            _open: metrics.stream_opened(),
            metrics,
        }
    }

    /// Queues `signals` to go out before anything else the feed delivers.
    pub fn open_with(&mut self, signals: Vec<Arc<Signal>>) {
        self.opening.extend(signals);
    }

    /// The feed delivers every message of its chats with an id above this one, and none at or
    /// below it.
    pub fn starts_after(&self) -> MessageId {
        self.start
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
            if let Some(signal) = self.opening.pop_front() {
                return Some(Ok(FeedItem::Signal(signal)));
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
                Woken::Received(Ok(Published::Stored(event))) => {
                    if event.id > self.cursor && self.follows(&event.message.chat_id) {
                        return Some(Ok(self.deliver(event)));
                    }
                }
                Woken::Received(Ok(Published::Signal(signal))) => {
                    let follows = match (signal.chat(), &self.spec.chat) {
                        (_, None) => true,
                        (Some(chat), Some(followed)) => chat == followed.as_str(),
                        // Presence belongs to no chat: only Streams of every chat carry it.
                        (None, Some(_)) => false,
                    };
                    if follows {
                        return Some(Ok(FeedItem::Signal(signal)));
                    }
                }
                Woken::Received(Err(broadcast::error::RecvError::Lagged(skipped))) => {
                    tracing::debug!(user = %self.spec.user, skipped, "feed lagged; catching up from storage");
                    self.behind = true;
                    self.metrics.catch_ups.inc();
                    self.metrics.messages_missed_live.inc_by(skipped);
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

    fn follows(&self, chat_id: &ChatId) -> bool {
        self.spec.chat.as_ref().is_none_or(|chat| chat == chat_id)
    }

    fn deliver(&mut self, event: Arc<StoredEvent>) -> FeedItem {
        self.cursor = event.id;
        self.metrics.deliveries.inc();
        if let Some(interval) = &mut self.heartbeat {
            interval.reset();
        }
        FeedItem::Event(event)
    }

    async fn read_storage(&mut self) -> Result<(), ApiError> {
        let page = self
            .store
            .events_after(
                &self.spec.user,
                self.spec.chat.as_ref(),
                self.cursor,
                REPLAY_PAGE,
            )
            .await?;
        // A short page means storage has nothing more; newer messages are on the subscription.
        self.behind = page.len() == REPLAY_PAGE as usize;
        self.metrics
            .messages_from_storage
            .inc_by(u64::try_from(page.len()).unwrap_or(u64::MAX));
        self.backlog.extend(page.into_iter().map(Arc::new));
        Ok(())
    }

    fn end(&mut self, error: ApiError) -> Option<Result<FeedItem, ApiError>> {
        self.ended = true;
        Some(Err(error))
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use chat_core::content::{Subject, Text};
    use chat_core::ids::ClientId;
    use chat_core::requests::{Members, NewMessage};

    use super::*;
    use crate::fanout::FEED_CAPACITY;
    use crate::store;

    /// A store on a fresh database with a chat of Alice and Bob, and its broker.
    struct Chat {
        store: Arc<dyn Store>,
        broker: Arc<Broker>,
        id: ChatId,
        alice: UserId,
        shutdown: watch::Receiver<bool>,
        _stop: watch::Sender<bool>,
        _dir: tempfile::TempDir,
    }

    impl Chat {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let broker = Broker::new();
            let location = store::Location::Sqlite(dir.path().join("chat.db"));
            let store = store::open(&location, Arc::clone(&broker), Metrics::new())
                .await
                .unwrap();
            for user in ["alice", "bob"] {
                let user = UserId::parse(user).unwrap();
                store.create_account(&user, "hash".into()).await.unwrap();
            }
            let members = Members::parse(["alice", "bob"]).unwrap();
            let id = store
                .create_chat(
                    &UserId::parse("alice").unwrap(),
                    &members,
                    ChatId::from_random(1),
                )
                .await
                .unwrap()
                .0;
            let (stop, shutdown) = watch::channel(false);
            Self {
                store,
                broker,
                id,
                alice: UserId::parse("alice").unwrap(),
                shutdown,
                _stop: stop,
                _dir: dir,
            }
        }

        /// Alice's feed of this chat (`Some`) or of all her chats (`None`), resuming after
        /// `after` or from now on.
        fn feed(&self, chat: Option<ChatId>, after: Option<MessageId>) -> Feed {
            let spec = FeedSpec {
                user: self.alice.clone(),
                chat,
                after,
                heartbeat: None,
            };
            Feed::open(
                Arc::clone(&self.store),
                &self.broker,
                spec,
                self.shutdown.clone(),
                Metrics::new(),
            )
        }

        /// Bob sends messages `numbers` all at once; returns their ids in commit order.
        async fn send(&self, numbers: Range<usize>) -> Vec<MessageId> {
            let bob = UserId::parse("bob").unwrap();
            let sends = numbers.map(|n| {
                let message = NewMessage {
                    chat_id: self.id.clone(),
                    client_id: ClientId::parse(&format!("m{n}")).unwrap(),
                    subject: Subject::default(),
                    text: Text::parse(&format!("message {n}")).unwrap(),
                    claimed_sender: None,
                    reply_to: None,
                };
                self.store.append(bob.clone(), message)
            });
            let mut ids: Vec<_> = futures::future::join_all(sends)
                .await
                .into_iter()
                .map(|stored| stored.unwrap().id)
                .collect();
            ids.sort();
            ids
        }
    }

    /// The ids of the next `n` messages of `feed`, which must come within seconds.
    async fn take(feed: &mut Feed, n: usize) -> Vec<MessageId> {
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(5), feed.next()).await;
            match next.expect("the feed went quiet").expect("the feed ended") {
                Ok(FeedItem::Event(event)) => ids.push(event.id),
                Ok(FeedItem::Heartbeat(_)) => panic!("a heartbeat from a feed without one"),
                Ok(FeedItem::Signal(signal)) => panic!("a signal nobody sent: {signal:?}"),
                Err(error) => panic!("the feed failed: {error}"),
            }
        }
        ids
    }

    async fn assert_nothing_more(feed: &mut Feed) {
        let next = tokio::time::timeout(Duration::from_millis(200), feed.next()).await;
        assert!(next.is_err(), "the feed delivered more than was sent");
    }

    #[tokio::test]
    async fn replay_then_live_has_no_gap_and_no_duplicate_at_the_seam() {
        let chat = Chat::new().await;
        let before = chat.send(0..3).await;
        let mut feed = chat.feed(None, Some(MessageId(0)));
        // Committed after the feed subscribed and before it read storage: these arrive both
        // from storage and live, and must be delivered once.
        let between = chat.send(3..6).await;
        let replayed = take(&mut feed, 6).await;
        assert_eq!(replayed, [before, between].concat());

        let after = chat.send(6..8).await;
        assert_eq!(take(&mut feed, 2).await, after);
        assert_nothing_more(&mut feed).await;
    }

    #[tokio::test]
    async fn a_feed_from_now_on_skips_the_past_and_misses_nothing_after() {
        let chat = Chat::new().await;
        chat.send(0..3).await;
        let mut feed = chat.feed(Some(chat.id.clone()), None);
        let sent = chat.send(3..5).await;
        assert_eq!(take(&mut feed, 2).await, sent);
        assert_nothing_more(&mut feed).await;
    }

    #[tokio::test]
    async fn a_reader_that_lags_catches_up_from_storage_without_gap_or_duplicate() {
        let chat = Chat::new().await;
        let mut feed = chat.feed(Some(chat.id.clone()), None);
        // More than the broker holds for a reader, and more than one storage page after that.
        let count = FEED_CAPACITY + 2 * REPLAY_PAGE as usize + 5;
        let mut sent = Vec::new();
        for chunk in (0..count).collect::<Vec<_>>().chunks(64) {
            sent.extend(chat.send(chunk[0]..chunk[0] + chunk.len()).await);
        }
        assert!(
            feed.subscription.receiver.len() > FEED_CAPACITY,
            "the reader has not fallen behind the broker"
        );
        assert_eq!(take(&mut feed, count).await, sent);

        // Caught up, it is live again.
        let live = chat.send(count..count + 2).await;
        assert_eq!(take(&mut feed, 2).await, live);
        assert_nothing_more(&mut feed).await;
    }
}
