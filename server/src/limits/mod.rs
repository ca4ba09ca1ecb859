//! Abuse limits, each configurable (see `config`): how fast one user may send and start chats,
//! how many streams
//! one user may hold open, and how often sign-in may be tried per address and per account.
//! (Sizes of a message and of a chat are validation, in `chat_core::limits`; the size of a
//! whole request is the transport's, set in `lib.rs`; how many passwords are hashed at once is
//! `password`'s.)
//!
//! All of this lives in memory and starts afresh with the process: limits slow abuse down,
//! they are not records. Every map here is bounded (see `keyed` and `sign_in`), and every
//! refusal says when to try again (`ApiError::RateLimited`).

mod keyed;
mod sign_in;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::UserId;
use governor::Quota;
use parking_lot::Mutex;

use crate::error::{ApiError, Limit};
use keyed::KeyedLimit;
use sign_in::SignIns;

/// The knobs, as `config::Settings` reads them.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Messages per second one user may send, sustained; `None`: no limit.
    pub send_rate: Option<u32>,
    /// Messages one user may send at once before the rate applies.
    pub send_burst: u32,
    /// New calls per minute one user may make (also its burst); `None`: no limit.
    pub new_chat_per_minute: Option<u32>,
    pub max_streams_per_user: usize,
    /// Failed sign-ins an account may have from one address before each further attempt from
    /// there must wait.
    pub sign_in_free_failures: u32,
    /// The longest that wait grows to.
    pub sign_in_max_delay: Duration,
    /// Sign-in and sign-up attempts per minute from one address; `None`: no limit.
    pub sign_in_per_address_per_minute: Option<u32>,
}

pub struct Limits {
    sends: Option<KeyedLimit<UserId>>,
    send_rate: u32,
    new_chats: Option<KeyedLimit<UserId>>,
    new_chat_rate: u32,
    sign_in_addresses: Option<KeyedLimit<IpAddr>>,
    sign_ins: SignIns,
    streams: Arc<Mutex<HashMap<UserId, usize>>>,
    max_streams: usize,
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        let nonzero = |value: u32| NonZeroU32::new(value.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            sends: settings.send_rate.map(|per_second| {
                KeyedLimit::new(
                    Quota::per_second(nonzero(per_second))
                        .allow_burst(nonzero(settings.send_burst)),
                )
            }),
            send_rate: settings.send_rate.unwrap_or_default(),
            new_chats: settings
                .new_chat_per_minute
                .map(|per_minute| KeyedLimit::new(Quota::per_minute(nonzero(per_minute)))),
            new_chat_rate: settings.new_chat_per_minute.unwrap_or_default(),
            sign_in_addresses: settings
                .sign_in_per_address_per_minute
                .map(|per_minute| KeyedLimit::new(Quota::per_minute(nonzero(per_minute)))),
            sign_ins: SignIns::new(settings.sign_in_free_failures, settings.sign_in_max_delay),
            streams: Arc::new(Mutex::new(HashMap::new())),
            max_streams: settings.max_streams_per_user,
        }
    }

    /// Takes one message from `user`'s sending budget, or says how long until there is one.
    pub fn send(&self, user: &UserId) -> Result<(), ApiError> {
        let Some(sends) = &self.sends else {
            return Ok(());
        };
        sends
            .check(user)
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::SendRate(self.send_rate),
                retry_after,
            })
    }

    /// Takes one New call from `user`'s budget, or says how long until there is one. Every
    /// New counts, also one that finds an existing chat: what is limited is how fast one
    /// account can put other people in chats.
    pub fn new_chat(&self, user: &UserId) -> Result<(), ApiError> {
        let Some(new_chats) = &self.new_chats else {
            return Ok(());
        };
        new_chats
            .check(user)
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::NewChatRate(self.new_chat_rate),
                retry_after,
            })
    }

    /// Waits until `user` may send one more message. Connect uses this instead of refusing:
    /// a bidirectional stream has no per-message error, so a fast client is slowed down (its
    /// stream's flow control pushes back) rather than cut off.
    pub async fn send_when_allowed(&self, user: &UserId) {
        let Some(sends) = &self.sends else {
            return;
        };
        while let Err(wait) = sends.check(user) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds one of `user`'s stream slots until the returned guard is dropped.
    pub fn open_stream(&self, user: &UserId) -> Result<StreamSlot, ApiError> {
        let mut streams = self.streams.lock();
        let open = streams.entry(user.clone()).or_default();
        if *open >= self.max_streams {
            return Err(ApiError::TooManyStreams(self.max_streams));
        }
        *open += 1;
        Ok(StreamSlot {
            streams: Arc::clone(&self.streams),
            user: user.clone(),
        })
    }

    /// Called before a sign-in or sign-up is tried: counts the attempt against the address it
    /// comes from. Without an address (not TCP), only the account limits apply.
    pub fn sign_in_from(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(addresses), Some(address)) = (&self.sign_in_addresses, address) else {
            return Ok(());
        };
        addresses
            .check(&address_key(address))
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::AddressSignIns,
                retry_after,
            })
    }

    /// Called before `user`'s password is checked for a caller at `address`: refuses while
    /// that caller must wait, and otherwise counts the attempt as a failure until
    /// [`Limits::signed_in`] says otherwise. Counting before the check means many attempts in
    /// parallel cannot all slip through. See `sign_in` for who waits for whom.
    pub fn sign_in_attempt(&self, user: &UserId, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.sign_ins
            .attempt(user, address.map(address_key))
            .map_err(|retry_after| ApiError::RateLimited {
                limit: Limit::AccountSignIns,
                retry_after,
            })
    }

    /// The password was right: what this attempt counted is given back, and the failures of
    /// this account from this address are forgiven (not those from elsewhere).
    pub fn signed_in(&self, user: &UserId, address: Option<IpAddr>) {
        self.sign_ins.succeeded(user, address.map(address_key));
    }
}

/// One open stream of a user; the slot is free again when this is dropped.
pub struct StreamSlot {
    streams: Arc<Mutex<HashMap<UserId, usize>>>,
    user: UserId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock();
        if let Some(open) = streams.get_mut(&self.user) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.user);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_streams_per_user: usize) -> LimitSettings {
        LimitSettings {
            send_rate: Some(2),
            send_burst: 3,
            new_chat_per_minute: None,
            max_streams_per_user,
            sign_in_free_failures: 1,
            sign_in_max_delay: Duration::from_secs(1),
            sign_in_per_address_per_minute: None,
        }
    }

    #[test]
    fn sends_are_limited_per_user_with_a_wait_that_fits_the_rate() {
        let limits = Limits::new(&settings(1));
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        for _ in 0..3 {
            assert!(limits.send(&alice).is_ok());
        }
        match limits.send(&alice) {
            Err(ApiError::RateLimited {
                limit: Limit::SendRate(2),
                retry_after,
            }) => assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}"),
            other => panic!("{other:?}"),
        }
        assert!(limits.send(&bob).is_ok(), "another user's budget");
    }

    #[test]
    fn stream_slots_are_counted_per_user_and_freed_on_drop() {
        let limits = Limits::new(&settings(2));
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let first = limits.open_stream(&alice).unwrap();
        let _second = limits.open_stream(&alice).unwrap();
        assert!(matches!(
            limits.open_stream(&alice),
            Err(ApiError::TooManyStreams(2))
        ));
        let _bobs = limits.open_stream(&bob).unwrap();
        drop(first);
        assert!(limits.open_stream(&alice).is_ok());
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
