//! Abuse limits, each configurable (see `config`): how fast one user may send and start chats,
//! how fast one user may make the other calls (reads, read marks, settings, Leave, Block),
//! how many streams one user may hold open, how often sign-in may be tried per address and per
//! account, and how often SignOut may be called per address.
//! (Sizes of a message and of a chat are validation, in `chat_core::limits`; the size of a
//! whole request is the transport's, set in `lib.rs`; how many passwords are hashed at once is
//! `password`'s.)
//!
//! On one server all of this lives in memory and starts afresh with the process: limits slow
//! abuse down, they are not records. With several servers on one PostgreSQL database the
//! same budgets are rows there (`SharedRates`, `StreamLeases`), so they do not multiply by
//! the number of servers. Every map here is bounded (see `keyed` and `sign_in`), and every
//! refusal says when to try again (`ApiError::RateLimited`).

mod keyed;
pub mod sign_in;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::UserId;
use governor::Quota;
use parking_lot::Mutex;

use crate::error::{ApiError, Limit};
use crate::metrics::{Metrics, Refusal};
use crate::store::{SharedRates, StreamLeases};
use keyed::KeyedLimit;
use sign_in::{Policy, SignIns, Source};

/// The knobs, as `config::Settings` reads them.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Messages per second one user may send, sustained; `None`: no limit.
    pub send_rate: Option<u32>,
    /// Messages one user may send at once before the rate applies.
    pub send_burst: u32,
    /// New calls per minute one user may make (also its burst); `None`: no limit.
    pub new_chat_per_minute: Option<u32>,
    /// The other calls per second one user may make, sustained (`Limits::call`); `None`: no
    /// limit.
    pub call_rate: Option<u32>,
    /// The other calls one user may make at once before the rate applies.
    pub call_burst: u32,
    pub max_streams_per_user: usize,
    /// Failed sign-ins an account may have from one address before each further attempt from
    /// there must wait.
    pub sign_in_free_failures: u32,
    /// The longest that wait grows to.
    pub sign_in_max_delay: Duration,
    /// Sign-in and sign-up attempts per minute from one address; `None`: no limit.
    pub sign_in_per_address_per_minute: Option<u32>,
    /// SignOut calls per minute from one address; `None`: no limit.
    pub sign_out_per_address_per_minute: Option<u32>,
}

pub struct Limits {
    sends: Option<KeyedLimit<UserId>>,
    send_rate: u32,
    send_burst: u32,
    new_chats: Option<KeyedLimit<UserId>>,
    new_chat_rate: u32,
    /// Typing calls: per server, in memory (a refusal only costs someone a typing line).
    typing: KeyedLimit<UserId>,
    /// The other calls: per server, in memory (see `Limits::call`).
    calls: Option<KeyedLimit<UserId>>,
    call_rate: u32,
    sign_in_addresses: Option<KeyedLimit<IpAddr>>,
    sign_out_addresses: Option<KeyedLimit<IpAddr>>,
    sign_ins: SignIns,
    streams: Streams,
    max_streams: usize,
    sign_in_per_address_per_minute: u32,
    sign_out_per_address_per_minute: u32,
    sign_in_policy: Policy,
    /// With several servers on one database: every rate here and the failed sign-ins are
    /// counted there instead of in this server's memory (`sends`, `new_chats`,
    /// `sign_in_addresses`, `sign_out_addresses`, `sign_ins` then only say which limits are
    /// on).
    shared: Option<Arc<dyn SharedRates>>,
    /// Where refusals are counted, by limit.
    metrics: Arc<Metrics>,
}

impl Limits {
    /// With `leases` and `shared` (a database shared by several servers), open streams and
    /// every budget are counted there, across servers; without, in this server's memory.
    pub fn new(
        settings: &LimitSettings,
        metrics: Arc<Metrics>,
        leases: Option<Arc<dyn StreamLeases>>,
        shared: Option<Arc<dyn SharedRates>>,
    ) -> Self {
        let nonzero = |value: u32| NonZeroU32::new(value.max(1)).unwrap_or(NonZeroU32::MIN);
        let sign_in_policy =
            Policy::new(settings.sign_in_free_failures, settings.sign_in_max_delay);
        Self {
            sends: settings.send_rate.map(|per_second| {
                KeyedLimit::new(
                    Quota::per_second(nonzero(per_second))
                        .allow_burst(nonzero(settings.send_burst)),
                )
            }),
            send_rate: settings.send_rate.unwrap_or_default(),
            send_burst: settings.send_burst,
            sign_in_per_address_per_minute: settings
                .sign_in_per_address_per_minute
                .unwrap_or_default(),
            shared,
            new_chats: settings
                .new_chat_per_minute
                .map(|per_minute| KeyedLimit::new(Quota::per_minute(nonzero(per_minute)))),
            new_chat_rate: settings.new_chat_per_minute.unwrap_or_default(),
            typing: KeyedLimit::new(
                Quota::with_period(Duration::from_millis(u64::from(
                    chat_core::activity::TYPING_INTERVAL_MS,
                )))
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(nonzero(chat_core::activity::TYPING_BURST)),
            ),
            calls: settings.call_rate.map(|per_second| {
                KeyedLimit::new(
                    Quota::per_second(nonzero(per_second))
                        .allow_burst(nonzero(settings.call_burst)),
                )
            }),
            call_rate: settings.call_rate.unwrap_or_default(),
            sign_in_addresses: settings
                .sign_in_per_address_per_minute
                .map(|per_minute| KeyedLimit::new(Quota::per_minute(nonzero(per_minute)))),
            sign_out_addresses: settings
                .sign_out_per_address_per_minute
                .map(|per_minute| KeyedLimit::new(Quota::per_minute(nonzero(per_minute)))),
            sign_out_per_address_per_minute: settings
                .sign_out_per_address_per_minute
                .unwrap_or_default(),
            sign_ins: SignIns::new(sign_in_policy),
            sign_in_policy,
            streams: match leases {
                Some(leases) => Streams::Shared(leases),
                None => Streams::Memory(Arc::new(Mutex::new(HashMap::new()))),
            },
            max_streams: settings.max_streams_per_user,
            metrics,
        }
    }

    /// Counts `error` in the metrics when it is a refusal by a limit kept outside this
    /// module (the password hashing queue); the limits here count their own.
    pub fn count_refusal(&self, error: &ApiError) {
        if let ApiError::RateLimited {
            limit: Limit::SignInQueue,
            ..
        } = error
        {
            self.metrics.refused(Refusal::SignInQueue);
        }
    }

    /// Takes one message from `user`'s sending budget, or says how long until there is one.
    pub async fn send(&self, user: &UserId) -> Result<(), ApiError> {
        self.send_budget(user).await?.map_err(|retry_after| {
            self.metrics.refused(Refusal::SendRate);
            ApiError::RateLimited {
                limit: Limit::SendRate(self.send_rate),
                retry_after,
            }
        })
    }

    /// One cell of `user`'s sending budget, from memory or from the shared database.
    async fn send_budget(&self, user: &UserId) -> Result<Result<(), Duration>, ApiError> {
        let Some(sends) = &self.sends else {
            return Ok(Ok(()));
        };
        match &self.shared {
            Some(rates) => {
                let interval = Duration::from_secs_f64(1.0 / f64::from(self.send_rate.max(1)));
                Ok(rates
                    .take(&format!("send {user}"), interval, self.send_burst)
                    .await?)
            }
            None => Ok(sends.check(user)),
        }
    }

    /// Takes one New call from `user`'s budget, or says how long until there is one. Every
    /// New counts, also one that finds an existing chat: what is limited is how fast one
    /// account can put other people in chats.
    pub async fn new_chat(&self, user: &UserId) -> Result<(), ApiError> {
        let Some(new_chats) = &self.new_chats else {
            return Ok(());
        };
        let outcome = match &self.shared {
            Some(rates) => {
                per_minute(rates.as_ref(), &format!("new {user}"), self.new_chat_rate).await?
            }
            None => new_chats.check(user),
        };
        outcome.map_err(|retry_after| ApiError::RateLimited {
            limit: Limit::NewChatRate(self.new_chat_rate),
            retry_after,
        })
    }

    /// Takes one Typing call from `user`'s budget, or says how long until there is one.
    pub fn typing(&self, user: &UserId) -> Result<(), ApiError> {
        self.typing
            .check(user)
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::TypingRate,
                retry_after,
            })
    }

    /// Takes one call from `user`'s budget of the calls that are neither messages (the send
    /// rate) nor New, Typing or streams (their own limits): History, List, Search, MarkRead,
    /// the settings, Leave, Block, Unblock and ListBlocked. Without it, one account (a
    /// stolen token, a client stuck in a loop) could keep the readers and the writer busy
    /// for everyone: a Block and Unblock in turn is a write transaction each, a prefix
    /// Search a scan of the index. The default budget is far above what the app makes.
    ///
    /// Per server, in memory, like Typing's: with N servers behind a load balancer a user
    /// may make N times as many. Counting them in PostgreSQL would cost each such call a
    /// statement there, more than many of these calls cost themselves.
    pub fn call(&self, user: &UserId) -> Result<(), ApiError> {
        let Some(calls) = &self.calls else {
            return Ok(());
        };
        calls.check(user).map_err(|retry_after| {
            self.metrics.refused(Refusal::CallRate);
            ApiError::RateLimited {
                limit: Limit::CallRate(self.call_rate),
                retry_after,
            }
        })
    }

    /// Waits until `user` may send one more message. Connect uses this instead of refusing:
    /// a bidirectional stream has no per-message error, so a fast client is slowed down (its
    /// stream's flow control pushes back) rather than cut off.
    pub async fn send_when_allowed(&self, user: &UserId) {
        // A database that cannot be asked lets the message through to the store, which
        // then fails it retry-safely.
        while let Ok(Err(wait)) = self.send_budget(user).await {
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds one of `user`'s stream slots until the returned guard is dropped.
    pub async fn open_stream(&self, user: &UserId) -> Result<StreamSlot, ApiError> {
        let slot = match &self.streams {
            Streams::Memory(streams) => {
                let mut counts = streams.lock();
                let open = counts.entry(user.clone()).or_default();
                (*open < self.max_streams).then(|| {
                    *open += 1;
                    StreamSlot::Counted {
                        streams: Arc::clone(streams),
                        user: user.clone(),
                    }
                })
            }
            Streams::Shared(leases) => {
                leases
                    .take(user, self.max_streams)
                    .await?
                    .map(|lease| StreamSlot::Leased {
                        leases: Arc::clone(leases),
                        lease,
                    })
            }
        };
        slot.ok_or_else(|| {
            self.metrics.refused(Refusal::StreamsPerUser);
            ApiError::TooManyStreams(self.max_streams)
        })
    }

    /// Called before a sign-in or sign-up is tried: counts the attempt against the address it
    /// comes from. Without an address (not TCP), only the account limits apply.
    pub async fn sign_in_from(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.per_address(
            self.sign_in_addresses.as_ref(),
            address,
            "sign-in",
            self.sign_in_per_address_per_minute,
            (Limit::AddressSignIns, Refusal::AddressSignIns),
        )
        .await
    }

    /// Called before a SignOut looks its token up: counts the call against the address it
    /// comes from, so that a flood of made-up tokens is refused before it costs a lookup.
    pub async fn sign_out_from(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.per_address(
            self.sign_out_addresses.as_ref(),
            address,
            "sign-out",
            self.sign_out_per_address_per_minute,
            (Limit::AddressSignOuts, Refusal::AddressSignOuts),
        )
        .await
    }

    /// Counts one call from `address` against a per-address budget of `rate` calls a minute:
    /// `local`'s in this server's memory, or on a shared database the row `<kind> <address>`
    /// that every server charges. `local` is `None` when the limit is off. A refusal says
    /// which `limit` and is counted in the metrics as its `Refusal`.
    async fn per_address(
        &self,
        local: Option<&KeyedLimit<IpAddr>>,
        address: Option<IpAddr>,
        kind: &str,
        rate: u32,
        (limit, refusal): (Limit, Refusal),
    ) -> Result<(), ApiError> {
        let (Some(local), Some(address)) = (local, address) else {
            return Ok(());
        };
        let key = address_key(address);
        let outcome = match &self.shared {
            Some(rates) => per_minute(rates.as_ref(), &format!("{kind} {key}"), rate).await?,
            None => local.check(&key),
        };
        outcome.map_err(|retry_after| {
            self.metrics.refused(refusal);
            ApiError::RateLimited { limit, retry_after }
        })
    }

    /// Called before `user`'s password is checked for a caller at `address`: refuses while
    /// that caller must wait, and otherwise counts the attempt as a failure until
    /// [`Limits::signed_in`] says otherwise. Counting before the check means many attempts in
    /// parallel cannot all slip through. See `sign_in` for who waits for whom.
    pub async fn sign_in_attempt(&self, user: &UserId, source: Source) -> Result<(), ApiError> {
        let source = source_key(source);
        let outcome = match &self.shared {
            Some(rates) => {
                rates
                    .sign_in_attempt(user, source, &self.sign_in_policy)
                    .await?
            }
            None => self.sign_ins.attempt(user, source),
        };
        outcome.map_err(|retry_after| {
            self.metrics.refused(Refusal::AccountSignIns);
            ApiError::RateLimited {
                limit: Limit::AccountSignIns,
                retry_after,
            }
        })
    }

    /// The password was right: what this attempt counted is given back, and the failures of
    /// this account from this source are forgiven (not those from elsewhere).
    pub async fn signed_in(&self, user: &UserId, source: Source) {
        let source = source_key(source);
        match &self.shared {
            Some(rates) => {
                // The sign-in itself succeeded; a database that cannot be asked now only
                // leaves this attempt counted as a failure, which the ladder forgets in time.
                if let Err(error) = rates
                    .sign_in_succeeded(user, source, &self.sign_in_policy)
                    .await
                {
                    tracing::warn!(%error, "cannot forgive the failed sign-ins of a right password");
                }
            }
            None => self.sign_ins.succeeded(user, source),
        }
    }
}

/// Takes one cell of a shared budget of `per_minute` a minute (also its burst).
async fn per_minute(
    rates: &dyn SharedRates,
    key: &str,
    per_minute: u32,
) -> Result<Result<(), Duration>, ApiError> {
    let per_minute = per_minute.max(1);
    let interval = Duration::from_secs_f64(60.0 / f64::from(per_minute));
    Ok(rates.take(key, interval, per_minute).await?)
}

/// Where open streams are counted.
enum Streams {
    /// In this server's memory (SQLite: one server).
    Memory(Arc<Mutex<HashMap<UserId, usize>>>),
    /// In the shared database, across servers.
    Shared(Arc<dyn StreamLeases>),
}

/// One open stream of a user; the slot is free again when this is dropped.
pub enum StreamSlot {
    Counted {
        streams: Arc<Mutex<HashMap<UserId, usize>>>,
        user: UserId,
    },
    Leased {
        leases: Arc<dyn StreamLeases>,
        lease: i64,
    },
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        match self {
            StreamSlot::Counted { streams, user } => {
                let mut streams = streams.lock();
                if let Some(open) = streams.get_mut(user) {
                    *open = open.saturating_sub(1);
                    if *open == 0 {
                        streams.remove(user);
                    }
                }
            }
            StreamSlot::Leased { leases, lease } => {
                // Given back in the background; if that fails (the database is away), the
                // lease is no longer renewed and lapses by itself.
                let (leases, lease) = (Arc::clone(leases), *lease);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Err(error) = leases.give_back(lease).await {
                            tracing::warn!(%error, "cannot give a stream slot back; it will lapse");
                        }
                    });
                }
            }
        }
    }
}

/// The unit one address limit covers: an IPv4 address, or an IPv6 /64 (one host usually
/// holds a whole /64, so counting single IPv6 addresses would let it rotate at will).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// `source` with its address reduced to the unit the address limits cover.
fn source_key(source: Source) -> Source {
    match source {
        Source::Address(address) => Source::Address(address.map(address_key)),
        device @ Source::Device(_) => device,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_streams_per_user: usize) -> LimitSettings {
        LimitSettings {
            send_rate: Some(2),
            send_burst: 3,
            new_chat_per_minute: None,
            call_rate: Some(2),
            call_burst: 3,
            max_streams_per_user,
            sign_in_free_failures: 1,
            sign_in_max_delay: Duration::from_secs(1),
            sign_in_per_address_per_minute: None,
            sign_out_per_address_per_minute: None,
        }
    }

    #[tokio::test]
    async fn sends_are_limited_per_user_with_a_wait_that_fits_the_rate() {
        let limits = Limits::new(&settings(1), Metrics::new(), None, None);
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        for _ in 0..3 {
            assert!(limits.send(&alice).await.is_ok());
        }
        match limits.send(&alice).await {
            Err(ApiError::RateLimited {
                limit: Limit::SendRate(2),
                retry_after,
            }) => assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}"),
            other => panic!("{other:?}"),
        }
        assert!(limits.send(&bob).await.is_ok(), "another user's budget");
    }

    #[tokio::test]
    async fn stream_slots_are_counted_per_user_and_freed_on_drop() {
        let limits = Limits::new(&settings(2), Metrics::new(), None, None);
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let first = limits.open_stream(&alice).await.unwrap();
        let _second = limits.open_stream(&alice).await.unwrap();
        assert!(matches!(
            limits.open_stream(&alice).await,
            Err(ApiError::TooManyStreams(2))
        ));
        let _bobs = limits.open_stream(&bob).await.unwrap();
        drop(first);
        assert!(limits.open_stream(&alice).await.is_ok());
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
