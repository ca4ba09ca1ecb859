//! In-process fan-out: every committed message, and every change to one (an event, see
//! `store::StoredEvent`), goes to the live feeds of its chat's members.
//!
//! Each user with at least one open stream has one broadcast channel; all of that user's
//! streams (Stream and Connect, every tab) read from it, each filtering for what it follows.
//! The store publishes in commit order (its contract, see `store`), so every feed sees
//! messages in id order.
//! Channels are bounded: a reader that falls more than [`FEED_CAPACITY`] messages behind is
//! told it lagged, and catches up from storage (see `feed.rs`), so a slow reader never slows
//! the writer or anyone else and never makes memory grow.
//!
//! The store is the only publisher of messages: SQLite's writer thread after each commit, or
//! on PostgreSQL each server's tailer, which publishes what every server committed, in id
//! order. Events that are not messages (read positions, typing, presence, members) come from
//! `signals.rs` through the same channels, unordered with respect to messages: they have no
//! id and never move a cursor, and a reader that lags loses them (they are best effort).

use std::collections::HashMap;
use std::sync::Arc;

use chat_core::ids::{MessageId, UserId};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::broadcast;

use crate::signals::Signal;
use crate::store::StoredEvent;

/// What a user's channel carries.
#[derive(Debug, Clone)]
pub enum Published {
    /// A message or a change to one, in commit order.
    Stored(Arc<StoredEvent>),
    Signal(Arc<Signal>),
}

/// Events a user's feed holds for its slowest stream before that stream must catch up
/// from storage. Small on purpose: every user with an open stream has one such buffer.
pub const FEED_CAPACITY: usize = 128;

impl Published {
    /// The stored event, when this is one.
    #[cfg(test)]
    pub fn stored(&self) -> Option<&StoredEvent> {
        match self {
            Published::Stored(event) => Some(event),
            Published::Signal(_) => None,
        }
    }
}

/// Routes committed messages to the open feeds of their chats' members.
pub struct Broker {
    state: Mutex<State>,
}

struct State {
    feeds: HashMap<UserId, broadcast::Sender<Published>>,
    /// The id of the newest event published, so a feed opened now knows where "now" is.
    newest: MessageId,
}

impl Broker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                feeds: HashMap::new(),
                newest: MessageId(0),
            }),
        })
    }

    /// Tells the broker the newest id already stored when the server starts.
    pub fn start_after(&self, newest: MessageId) {
        let mut state = self.state();
        state.newest = state.newest.max(newest);
    }

    /// Delivers a committed event to every open feed of `members`. Called in commit order.
    pub fn publish(&self, event: Arc<StoredEvent>, members: &[UserId]) {
        let mut state = self.state();
        state.newest = state.newest.max(event.id);
        for member in members {
            if let Some(feed) = state.feeds.get(member) {
                // An error means no receiver is left; `Subscription::drop` removes the entry.
                let _ = feed.send(Published::Stored(Arc::clone(&event)));
            }
        }
    }

    /// Delivers an event that is not a message to the open feeds of its recipients.
    pub fn signal(&self, signal: Arc<Signal>) {
        let state = self.state();
        for recipient in &signal.recipients {
            if let Some(feed) = state.feeds.get(recipient) {
                let _ = feed.send(Published::Signal(Arc::clone(&signal)));
            }
        }
    }

    /// Opens a feed of everything published to `user` from now on.
    pub fn subscribe(self: &Arc<Self>, user: &UserId) -> Subscription {
        let mut state = self.state();
        let receiver = state
            .feeds
            .entry(user.clone())
            .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
            .subscribe();
        Subscription {
            receiver,
            start: state.newest,
            user: user.clone(),
            broker: Arc::clone(self),
        }
    }

    /// How many users have a feed open.
    #[cfg(test)]
    fn open_feeds(&self) -> usize {
        self.state().feeds.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }
}

/// One stream's place in its user's feed.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Published>,
    /// Every event with a greater id is (or will be) in `receiver`.
    pub start: MessageId,
    user: UserId,
    broker: Arc<Broker>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.broker.state();
        // `self.receiver` is still alive here, so a count of one means it is the last.
        if state
            .feeds
            .get(&self.user)
            .is_some_and(|feed| feed.receiver_count() <= 1)
        {
            state.feeds.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_core::content::{Subject, Text};
    use chat_core::ids::{ChatId, ClientId};
    use chat_core::requests::NewMessage;

    use super::*;
    use crate::store::StoredMessage;

    fn message(id: u64) -> Arc<StoredEvent> {
        let new = NewMessage {
            chat_id: ChatId::from_random(1),
            client_id: ClientId::parse(&format!("c{id}")).unwrap(),
            subject: Subject::default(),
            text: Text::parse("hi").unwrap(),
            claimed_sender: None,
            reply_to: None,
        };
        let sender = UserId::parse("alice").unwrap();
        Arc::new(StoredEvent::arrival(StoredMessage::new(
            MessageId(id),
            sender,
            new,
            0,
            None,
        )))
    }

    #[tokio::test]
    async fn members_feeds_receive_in_order_and_others_nothing() {
        let broker = Broker::new();
        let (alice, bob, carol) = ["alice", "bob", "carol"]
            .map(|id| UserId::parse(id).unwrap())
            .into();
        let mut alice_feed = broker.subscribe(&alice);
        let mut carol_feed = broker.subscribe(&carol);
        broker.publish(message(1), &[alice.clone(), bob.clone()]);
        broker.publish(message(2), &[alice.clone(), bob]);
        for id in [1, 2] {
            match alice_feed.receiver.recv().await.unwrap() {
                Published::Stored(event) => assert_eq!(event.id, MessageId(id)),
                Published::Signal(signal) => panic!("a signal nobody sent: {signal:?}"),
            }
        }
        assert!(carol_feed.receiver.try_recv().is_err());
        // A feed opened now starts after the newest published message.
        assert_eq!(broker.subscribe(&carol).start, MessageId(2));
    }

    #[test]
    fn a_feed_is_dropped_with_its_last_subscription() {
        let broker = Broker::new();
        let alice = UserId::parse("alice").unwrap();
        let first = broker.subscribe(&alice);
        let second = broker.subscribe(&alice);
        assert_eq!(broker.open_feeds(), 1);
        drop(first);
        assert_eq!(broker.open_feeds(), 1);
        drop(second);
        assert_eq!(broker.open_feeds(), 0);
    }

    #[test]
    fn a_slow_reader_lags_instead_of_growing() {
        let broker = Broker::new();
        let alice = UserId::parse("alice").unwrap();
        let mut feed = broker.subscribe(&alice);
        for id in 1..=(FEED_CAPACITY as u64 + 10) {
            broker.publish(message(id), std::slice::from_ref(&alice));
        }
        assert!(matches!(
            feed.receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
    }
}
