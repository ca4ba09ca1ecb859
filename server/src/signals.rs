//! Events that are not messages — read positions, typing, presence, members — on their way to the
//! open streams of the people they concern, on this server and on every other server sharing
//! the database.
//!
//! They are never stored, have no id and never move a cursor (the invariant in
//! ARCHITECTURE.md): a [`Signal`] is a wire event plus its recipients. With one server it goes
//! straight to the [`Broker`]. With several servers on PostgreSQL it goes out as a `NOTIFY`
//! on a channel of its own (`Store::shared_signals`), and every server, this one included,
//! hands what it hears to its broker, so a signal reaches each server the same way. Delivery is
//! best effort on both paths: a lost signal (a lagging reader, a dropped listener) costs a
//! client a stale badge or presence dot until the next event or List, never a message.

use std::sync::Arc;

use chat_core::ids::{ChatId, UserId};
use chat_core::proto::{self, event::Event};
use prost::Message as _;

use crate::fanout::Broker;
use crate::store::{Membership, SharedSignals};

/// An event and who gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub recipients: Vec<UserId>,
    pub event: Event,
}

impl Signal {
    /// The chat the event belongs to; `None` for presence, which belongs to a person.
    pub fn chat(&self) -> Option<&str> {
        match &self.event {
            Event::ReadPosition(read) => Some(&read.chat_id),
            Event::Typing(typing) => Some(&typing.chat_id),
            Event::Members(members) => Some(&members.chat_id),
            _ => None,
        }
    }

    pub fn to_proto(&self) -> proto::Event {
        proto::Event {
            event: Some(self.event.clone()),
        }
    }
}

/// Sends signals to this server's broker, or through the database to every server's.
pub struct Signals {
    broker: Arc<Broker>,
    shared: Option<Arc<dyn SharedSignals>>,
}

impl Signals {
    /// With `shared`, signals travel through it and this server starts handing what it hears
    /// there to `broker`.
    pub fn start(broker: Arc<Broker>, shared: Option<Arc<dyn SharedSignals>>) -> Arc<Self> {
        if let Some(shared) = &shared {
            let mut heard = shared.receive();
            let local = Arc::clone(&broker);
            tokio::spawn(async move {
                while let Some(payload) = heard.recv().await {
                    match decode(&payload) {
                        Some(signal) => local.signal(Arc::new(signal)),
                        None => tracing::warn!(payload, "an unreadable signal; dropped"),
                    }
                }
            });
        }
        Arc::new(Self { broker, shared })
    }

    /// Tells `chat`'s members (after New or a Leave), and the one who `left` it if anyone
    /// did (their devices then drop the chat), who is in it now: `Event.members`, with the
    /// members' version, since two such events may arrive in either order.
    pub async fn members_changed(
        &self,
        chat: &ChatId,
        membership: &Membership,
        left: Option<&UserId>,
    ) {
        let event = Event::Members(proto::ChatMembers {
            chat_id: chat.to_string(),
            user_ids: membership.members.iter().map(ToString::to_string).collect(),
            version: membership.version,
        });
        let recipients = membership.members.iter().chain(left).cloned().collect();
        self.send(recipients, event).await;
    }

    /// Tells `recipients` of `event`, as far as they have streams open anywhere.
    pub async fn send(&self, recipients: Vec<UserId>, event: Event) {
        if recipients.is_empty() {
            return;
        }
        let signal = Signal { recipients, event };
        let Some(shared) = &self.shared else {
            self.broker.signal(Arc::new(signal));
            return;
        };
        for payload in encode(&signal) {
            if let Err(error) = shared.send(&payload).await {
                tracing::warn!(%error, "cannot send a signal to the other servers; dropped");
            }
        }
    }
}

/// A payload stays well under PostgreSQL's 8000-byte limit for a `NOTIFY` payload.
const PAYLOAD_MAX: usize = 7_000;

/// The signal as one or more text payloads (more when its recipients do not fit in one):
/// the event's protobuf bytes in hex, then its recipients, all separated by spaces (user ids
/// never contain one).
fn encode(signal: &Signal) -> Vec<String> {
    let bytes = signal.to_proto().encode_to_vec();
    let head = crate::auth::hex(&bytes);
    let mut payloads = Vec::new();
    let mut payload = head.clone();
    for recipient in &signal.recipients {
        if payload.len() + 1 + recipient.as_str().len() > PAYLOAD_MAX && payload.len() > head.len()
        {
            payloads.push(std::mem::replace(&mut payload, head.clone()));
        }
        payload.push(' ');
        payload.push_str(recipient.as_str());
    }
    payloads.push(payload);
    payloads
}

/// Reads a payload made by [`encode`]; `None` if it is not one.
fn decode(payload: &str) -> Option<Signal> {
    let mut parts = payload.split(' ');
    let hex = parts.next()?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let event = proto::Event::decode(bytes.as_slice()).ok()?.event?;
    let recipients = parts
        .map(|id| UserId::parse(id).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Signal { recipients, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<UserId> {
        (0..n)
            .map(|i| UserId::parse(&format!("user-{i:026}")).unwrap())
            .collect()
    }

    fn typing() -> Event {
        Event::Typing(proto::TypingEvent {
            chat_id: "0123456789abcdef0123456789abcdef".into(),
            user_id: "alice".into(),
            expires_in_ms: 6000,
        })
    }

    #[test]
    fn a_signal_reads_back_from_its_payload() {
        let signal = Signal {
            recipients: users(3),
            event: typing(),
        };
        let payloads = encode(&signal);
        assert_eq!(payloads.len(), 1);
        assert_eq!(decode(&payloads[0]), Some(signal));
    }

    #[test]
    fn many_recipients_are_split_into_payloads_that_each_fit() {
        let signal = Signal {
            recipients: users(1_000),
            event: Event::Presence(proto::Presence {
                user_id: "alice".into(),
                online: false,
                last_seen: 1_700_000_000,
            }),
        };
        let payloads = encode(&signal);
        assert!(payloads.len() > 1);
        let mut heard = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= PAYLOAD_MAX, "{}", payload.len());
            let part = decode(payload).unwrap();
            assert_eq!(part.event, signal.event);
            heard.extend(part.recipients);
        }
        assert_eq!(heard, signal.recipients);
    }

    #[test]
    fn the_members_of_the_largest_chat_with_the_longest_names_fit_under_the_limit() {
        let members: Vec<UserId> = (0..chat_core::limits::MEMBERS_MAX)
            .map(|i| UserId::parse(&format!("member-{i:025}")).unwrap())
            .collect();
        assert_eq!(
            members[0].as_str().len(),
            chat_core::limits::USER_ID_MAX_CHARS
        );
        let signal = Signal {
            recipients: members.clone(),
            event: Event::Members(proto::ChatMembers {
                chat_id: "0123456789abcdef0123456789abcdef".into(),
                user_ids: members.iter().map(ToString::to_string).collect(),
                version: u64::MAX,
            }),
        };
        let mut heard = Vec::new();
        for payload in encode(&signal) {
            assert!(payload.len() <= PAYLOAD_MAX, "{}", payload.len());
            let part = decode(&payload).unwrap();
            assert_eq!(part.event, signal.event);
            heard.extend(part.recipients);
        }
        assert_eq!(heard, signal.recipients);
    }

    #[test]
    fn garbage_is_not_a_signal() {
        for payload in ["", "zz alice", "0 alice", "0a01 alice", "1203 Not Valid!"] {
            assert_eq!(decode(payload), None, "{payload:?}");
        }
    }
}
