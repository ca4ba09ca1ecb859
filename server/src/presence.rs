//! Who is online: a person is online while any of their devices holds a Stream or Connect
//! call open, anywhere; when their last one closes they stay online for a grace period (a
//! reconnect within it changes nothing anyone sees), then go offline with "last seen" = when
//! it closed.
//!
//! Where it lives: each server counts the open streams of its own users in memory
//! ([`Presence`]). Going online is announced by the server where a person's first stream
//! opens; going offline by the server where their last one closed, once the grace period has
//! passed with no stream reopened there and, on PostgreSQL, no stream lease of theirs held by
//! any server (the leases `limits` already keeps per open stream). Each change is stored as a
//! transition (`Store::set_online`, `Store::set_offline`) and announced only by the server
//! whose write made it, so a person whose stream moves to another server is not announced
//! twice; the last-seen time survives restarts and every server reads the same one.
//! Announcements are signals to everyone who shares a chat with the person (`signals.rs`),
//! which cross servers as `NOTIFY` payloads. A Stream of every chat opens with the current
//! presence of each of its user's contacts ([`Presence::snapshot`]): online if this server
//! counts them or any server holds a lease of theirs; New introduces a new chat's members to
//! each other ([`Presence::introduce`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::UserId;
use chat_core::proto::{self, event::Event};
use parking_lot::Mutex;

use crate::signals::{Signal, Signals};
use crate::store::{Store, StoreError};
use chat_transport::unix_now;

/// How often a server looks for people whose streams' server died (their leases lapse
/// 15 s after its last renewal, so they are announced offline within about 20 s).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub struct Presence {
    store: Arc<dyn Store>,
    signals: Arc<Signals>,
    grace: Duration,
    local: Mutex<HashMap<UserId, Local>>,
}

/// One user with streams open on this server, or within the grace period after their last.
struct Local {
    open: usize,
    /// Changes on every open and close, so a grace period knows whether it is still the
    /// latest word on this user.
    generation: u64,
}

/// Counts one open stream of its user while it lives.
pub struct Online {
    presence: Arc<Presence>,
    user: UserId,
}

impl Drop for Online {
    fn drop(&mut self) {
        self.presence.closed(&self.user);
    }
}

impl Presence {
    pub fn new(store: Arc<dyn Store>, signals: Arc<Signals>, grace: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            signals,
            grace,
            local: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a stream of `user` as open until the returned guard is dropped. The first one on
    /// this server (or the first again within a grace period) records `user` online, and
    /// announces them if the record said offline.
    pub fn opened(self: &Arc<Self>, user: &UserId) -> Online {
        let announce = {
            let mut local = self.local.lock();
            let entry = local.entry(user.clone()).or_insert(Local {
                open: 0,
                generation: 0,
            });
            // The first stream here, or one reopened within the grace period. The store says
            // whether that is news: within the grace the record still says online (nobody
            // heard them leave), unless a sweep settled them offline meanwhile (their other
            // stream was on a server that died), and then they must be announced again.
            let first = entry.open == 0;
            entry.open += 1;
            entry.generation += 1;
            first
        };
        if announce {
            let presence = Arc::clone(self);
            let user = user.clone();
            tokio::spawn(async move {
                // Stored as a change of state, so that when another server already holds a
                // stream of theirs (they were online all along) nobody is told again.
                match presence.store.set_online(&user).await {
                    Ok(true) => presence.announce(&user, true, 0).await,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, %user, "cannot record presence"),
                }
            });
        }
        Online {
            presence: Arc::clone(self),
            user: user.clone(),
        }
    }

    fn closed(self: &Arc<Self>, user: &UserId) {
        let closed_at = unix_now();
        let generation = {
            let mut local = self.local.lock();
            let Some(entry) = local.get_mut(user) else {
                return;
            };
            entry.open = entry.open.saturating_sub(1);
            entry.generation += 1;
            if entry.open > 0 {
                return;
            }
            entry.generation
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let presence = Arc::clone(self);
        let user = user.clone();
        runtime.spawn(async move {
            tokio::time::sleep(presence.grace).await;
            {
                let mut local = presence.local.lock();
                match local.get(&user) {
                    Some(entry) if entry.generation == generation => {
                        local.remove(&user);
                    }
                    // Reopened here meanwhile (or already settled): still online.
                    _ => return,
                }
            }
            match presence.store.leases_of(&user).await {
                Ok(0) => {}
                // Another server holds a stream of theirs and will announce when it closes.
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, %user, "cannot check presence elsewhere; going offline");
                }
            }
            match presence.store.set_offline(&user, closed_at).await {
                Ok(true) => presence.announce(&user, false, closed_at).await,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, %user, "cannot record presence"),
            }
        });
    }

    /// On a database that several servers share, settles now and then the presence of people
    /// whose streams were all on a server that died ([`Store::sweep_presence`]): nobody else
    /// would announce them offline, and their contacts' open streams would show them online
    /// until they next came and went. Every server sweeps; each person is announced by the
    /// one whose sweep changed their record. Runs while this presence is in use.
    pub fn start_sweeping(self: &Arc<Self>) {
        if self.store.shared_signals().is_none() {
            return;
        }
        let presence = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(presence) = presence.upgrade() else {
                    return;
                };
                match presence.store.sweep_presence().await {
                    Ok(settled) => {
                        for (user, last_seen) in settled {
                            tracing::info!(%user, "offline: their streams' server stopped");
                            presence.announce(&user, false, last_seen).await;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot sweep presence; retrying"),
                }
            }
        });
    }

    /// Tells everyone who shares a chat with `user` whether they are online.
    async fn announce(&self, user: &UserId, online: bool, last_seen: i64) {
        let contacts = match self.store.contacts(user).await {
            Ok(contacts) => contacts,
            Err(error) => {
                tracing::warn!(%error, %user, "cannot find whom to tell about presence");
                return;
            }
        };
        let event = Event::Presence(proto::Presence {
            user_id: user.to_string(),
            online,
            last_seen,
        });
        let recipients = contacts.into_iter().map(|contact| contact.user).collect();
        self.signals.send(recipients, event).await;
    }

    /// Tells the members of a chat just started (or found) by `caller` each other's
    /// presence: people who shared no chat before have never heard of each other, and a
    /// Stream's snapshot is only taken when it opens. One signal per member.
    pub async fn introduce(&self, caller: &UserId, members: &[UserId]) {
        let contacts = match self.store.contacts(caller).await {
            Ok(contacts) => contacts,
            Err(error) => {
                tracing::warn!(%error, "cannot introduce a new chat's members");
                return;
            }
        };
        for member in members {
            let contact = contacts.iter().find(|contact| contact.user == *member);
            let leased = if member == caller {
                matches!(self.store.leases_of(caller).await, Ok(leases) if leases > 0)
            } else {
                contact.is_some_and(|contact| contact.leased)
            };
            let online = leased || self.local.lock().contains_key(member);
            let last_seen = contact.and_then(|contact| contact.last_seen).unwrap_or(0);
            let others = members
                .iter()
                .filter(|other| *other != member)
                .cloned()
                .collect();
            let event = Event::Presence(proto::Presence {
                user_id: member.to_string(),
                online,
                last_seen: if online { 0 } else { last_seen },
            });
            self.signals.send(others, event).await;
        }
    }

    /// The presence of everyone who shares a chat with `user`, as events for `user` alone:
    /// what a Stream of every chat starts with.
    pub async fn snapshot(&self, user: &UserId) -> Result<Vec<Arc<Signal>>, StoreError> {
        let contacts = self.store.contacts(user).await?;
        let local = self.local.lock();
        Ok(contacts
            .into_iter()
            .map(|contact| {
                let online = contact.leased || local.contains_key(&contact.user);
                Arc::new(Signal {
                    recipients: vec![user.clone()],
                    event: Event::Presence(proto::Presence {
                        user_id: contact.user.to_string(),
                        online,
                        last_seen: if online {
                            0
                        } else {
                            contact.last_seen.unwrap_or(0)
                        },
                    }),
                })
            })
            .collect())
    }
}
