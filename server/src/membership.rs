//! Leaving a chat, as the open calls of the one who left see it: their Stream or Connect of
//! that chat ends (NOT_FOUND, like any chat they are not in).
//!
//! What a Leave changes in delivery needs nothing here: messages are published to the members
//! a chat has when each message commits (the store's contract), so the one who left gets no
//! new message on any feed, the all-chats Stream included. A feed of that one chat would just
//! go quiet, though, so each waits in [`Departures::until_left`], which ends it: at once for a
//! Leave on this server (an in-process notification naming the user and chat), and, when
//! other servers share the database, at the next membership re-read (every
//! `--token-recheck-secs`, the interval that bounds a sign-out on another server too).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::{ChatId, UserId};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::store::{Membership, Store};

/// Leaves a stream may fall behind on before it re-reads its membership regardless.
const LEAVES_QUEUED: usize = 256;

pub struct Departures {
    store: Arc<dyn Store>,
    /// The user and chat of every Leave this server commits.
    left: broadcast::Sender<(UserId, ChatId)>,
    /// How often an open feed of one chat re-reads its membership; `None` when no other
    /// server can change it (SQLite), where the notification alone is enough.
    recheck: Option<Duration>,
}

impl Departures {
    pub fn new(store: Arc<dyn Store>, recheck: Duration) -> Self {
        let recheck = store.is_shared().then_some(recheck);
        Self {
            store,
            left: broadcast::Sender::new(LEAVES_QUEUED),
            recheck,
        }
    }

    /// Takes `user` out of `chat` (NOT_FOUND when they are not in it) and ends their open
    /// feeds of it on this server. Returns the members the chat has after it.
    pub async fn leave(&self, chat: &ChatId, user: &UserId) -> Result<Membership, ApiError> {
        let membership = self.store.leave_chat(chat, user).await?;
        tracing::info!(%user, %chat, "left a chat");
        // No receiver (no open stream) is not an error.
        let _ = self.left.send((user.clone(), chat.clone()));
        Ok(membership)
    }

    /// Resolves with NOT_FOUND once `user` is no longer a member of `chat`; never resolves
    /// while they are, nor for `None` (a feed of all the user's chats, which a Leave only
    /// makes carry less). A store that cannot answer right now does not end the call: the
    /// next check tries again. It listens from the moment it is called, not from its first
    /// poll, so a Leave in between is not missed.
    pub fn until_left(
        self: &Arc<Self>,
        user: UserId,
        chat: Option<ChatId>,
    ) -> impl Future<Output = ApiError> + Send + 'static {
        let mut leaves = self.left.subscribe();
        let this = Arc::clone(self);
        async move {
            let Some(chat) = chat else {
                return std::future::pending().await;
            };
            let mut recheck = this.recheck.map(|period| {
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval
            });
            // An interval's first tick is at once; the call checked membership as it opened.
            if let Some(interval) = &mut recheck {
                interval.tick().await;
            }
            loop {
                let ticked = async {
                    match &mut recheck {
                        Some(interval) => {
                            interval.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = ticked => {}
                    left = leaves.recv() => match left {
                        Ok((who, which)) if who != user || which != chat => continue,
                        // A lagging receiver may have missed this one: look.
                        Ok(_) | Err(_) => {}
                    },
                }
                if let Ok(false) = this.store.is_member(&chat, &user).await {
                    return ApiError::ChatNotFound;
                }
            }
        }
    }
}
