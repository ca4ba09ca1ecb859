//! The formats the app writes to localStorage, one struct per version, apart from the domain
//! types, so that changing `Session` or `Outgoing` never makes stored data unreadable.
//!
//! - Version 1 carries no version field: the session as `{"user_id", "token", "expires_at"}`,
//!   the outbox as a bare array of `{"client_id", "chat_id", "text", "delivery"}`, where
//!   `delivery` is `"Pending"` or `{"Failed": {"reason", "auto_retry"}}`.
//! - Version 2 is a JSON object with `"version": 2`; the session is still written so.
//! - Version 3 (the outbox written now) adds `"reply_to"` (the id of the message answered)
//!   to a message that is a reply. Version 2 reads as version 3 without replies.
//!
//! To change a format, add version 3 beside these and read every earlier version into the
//! domain type; a version once released is never edited. Reading ignores fields it does not
//! know, and a version newer than this app reads is an error, never a panic.

use serde::{Deserialize, Serialize};

use crate::api::Session;
use crate::live::model::{Delivery, Outgoing};

/// The version [`encode_session`] writes.
const SESSION_VERSION: u64 = 2;
/// The version [`encode_outbox`] writes.
const OUTBOX_VERSION: u64 = 3;

/// Why stored data could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Not the JSON of any known version.
    Malformed(String),
    /// Written by a newer release than this one (after a rollback, say).
    UnknownVersion(u64),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Malformed(why) => write!(f, "malformed: {why}"),
            FormatError::UnknownVersion(version) => {
                write!(f, "version {version} is newer than this app reads")
            }
        }
    }
}

impl From<serde_json::Error> for FormatError {
    fn from(error: serde_json::Error) -> Self {
        FormatError::Malformed(error.to_string())
    }
}

/// Just the version of a stored object; the rest is read once the version is known.
#[derive(Deserialize)]
struct Versioned {
    version: Option<u64>,
}

/// The version of a stored value: its `version` field, or 1 where there is none (an
/// object without one, or version 1's bare outbox array).
fn version_of(text: &str) -> Result<u64, FormatError> {
    if text.trim_start().starts_with('[') {
        return Ok(1);
    }
    let Versioned { version } = serde_json::from_str(text)?;
    Ok(version.unwrap_or(1))
}

#[derive(Deserialize)]
struct SessionV1 {
    user_id: String,
    token: String,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct SessionV2 {
    version: u64,
    user_id: String,
    token: String,
    /// Unix seconds after which the server refuses the token.
    expires_at: i64,
}

pub fn encode_session(session: &Session) -> String {
    let stored = SessionV2 {
        version: SESSION_VERSION,
        user_id: session.user_id.clone(),
        token: session.token.clone(),
        expires_at: session.expires_at,
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

pub fn decode_session(text: &str) -> Result<Session, FormatError> {
    match version_of(text)? {
        1 => {
            let SessionV1 {
                user_id,
                token,
                expires_at,
            } = serde_json::from_str(text)?;
            Ok(Session {
                user_id,
                token,
                expires_at,
            })
        }
        2 => {
            let SessionV2 {
                user_id,
                token,
                expires_at,
                ..
            } = serde_json::from_str(text)?;
            Ok(Session {
                user_id,
                token,
                expires_at,
            })
        }
        newer => Err(FormatError::UnknownVersion(newer)),
    }
}

#[derive(Deserialize)]
struct OutgoingV1 {
    client_id: String,
    chat_id: String,
    text: String,
    delivery: DeliveryV1,
}

#[derive(Deserialize)]
enum DeliveryV1 {
    Pending,
    Failed { reason: String, auto_retry: bool },
}

/// Versions 2 and 3: version 3 only adds the optional `reply_to`, so one struct reads both.
#[derive(Serialize, Deserialize)]
struct OutboxV3 {
    version: u64,
    /// Oldest first: the order they are sent in.
    messages: Vec<OutgoingV3>,
}

#[derive(Serialize, Deserialize)]
struct OutgoingV3 {
    client_id: String,
    chat_id: String,
    text: String,
    /// Set when the last attempt failed; absent while the message waits to be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed: Option<FailureV2>,
    /// The id of the message this one answers (version 3); absent for other messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct FailureV2 {
    reason: String,
    /// Sent again by itself when the connection returns (the server could not be reached),
    /// rather than waiting for the user's retry.
    retry_on_reconnect: bool,
}

pub fn encode_outbox(outbox: &[Outgoing]) -> String {
    let messages = outbox
        .iter()
        .map(|outgoing| OutgoingV3 {
            client_id: outgoing.client_id.clone(),
            chat_id: outgoing.chat_id.clone(),
            text: outgoing.text.clone(),
            reply_to: outgoing.reply_to,
            failed: match &outgoing.delivery {
                Delivery::Pending => None,
                Delivery::Failed { reason, auto_retry } => Some(FailureV2 {
                    reason: reason.clone(),
                    retry_on_reconnect: *auto_retry,
                }),
            },
        })
        .collect();
    let stored = OutboxV3 {
        version: OUTBOX_VERSION,
        messages,
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

pub fn decode_outbox(text: &str) -> Result<Vec<Outgoing>, FormatError> {
    match version_of(text)? {
        1 => {
            let messages: Vec<OutgoingV1> = serde_json::from_str(text)?;
            Ok(messages
                .into_iter()
                .map(|message| Outgoing {
                    client_id: message.client_id,
                    chat_id: message.chat_id,
                    text: message.text,
                    reply_to: None,
                    delivery: match message.delivery {
                        DeliveryV1::Pending => Delivery::Pending,
                        DeliveryV1::Failed { reason, auto_retry } => {
                            Delivery::Failed { reason, auto_retry }
                        }
                    },
                })
                .collect())
        }
        2 | 3 => {
            let stored: OutboxV3 = serde_json::from_str(text)?;
            Ok(stored
                .messages
                .into_iter()
                .map(|message| Outgoing {
                    client_id: message.client_id,
                    chat_id: message.chat_id,
                    text: message.text,
                    reply_to: message.reply_to,
                    delivery: match message.failed {
                        None => Delivery::Pending,
                        Some(FailureV2 {
                            reason,
                            retry_on_reconnect,
                        }) => Delivery::Failed {
                            reason,
                            auto_retry: retry_on_reconnect,
                        },
                    },
                })
                .collect())
        }
        newer => Err(FormatError::UnknownVersion(newer)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Exactly what the app wrote before formats had versions (serde's derive of the domain
    /// structs of that time), with both delivery states.
    const OUTBOX_V1: &str = r#"[{"client_id":"18c2f1a9b3e-0f3a9c2d41b7e580","chat_id":"7","text":"written offline\nsecond line","delivery":"Pending"},{"client_id":"18c2f1a9b40-9d04e1c2aa3f7b16","chat_id":"7","text":"refused","delivery":{"Failed":{"reason":"Message text is too long","auto_retry":false}}},{"client_id":"18c2f1a9b41-5e6f708192a3b4c5","chat_id":"9","text":"while the server was down","delivery":{"Failed":{"reason":"Cannot reach the server. Check your connection; we will keep trying.","auto_retry":true}}}]"#;
    const SESSION_V1: &str = r#"{"user_id":"alice","token":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","expires_at":1767225600}"#;

    fn outgoing(client_id: &str, chat_id: &str, text: &str, delivery: Delivery) -> Outgoing {
        Outgoing {
            client_id: client_id.into(),
            chat_id: chat_id.into(),
            text: text.into(),
            reply_to: None,
            delivery,
        }
    }

    fn outbox_v1_contents() -> Vec<Outgoing> {
        vec![
            outgoing(
                "18c2f1a9b3e-0f3a9c2d41b7e580",
                "7",
                "written offline\nsecond line",
                Delivery::Pending,
            ),
            outgoing(
                "18c2f1a9b40-9d04e1c2aa3f7b16",
                "7",
                "refused",
                Delivery::Failed {
                    reason: "Message text is too long".into(),
                    auto_retry: false,
                },
            ),
            outgoing(
                "18c2f1a9b41-5e6f708192a3b4c5",
                "9",
                "while the server was down",
                Delivery::Failed {
                    reason: "Cannot reach the server. Check your connection; we will keep trying."
                        .into(),
                    auto_retry: true,
                },
            ),
        ]
    }

    #[test]
    fn a_version_1_outbox_loads_every_message_in_order_with_its_state() {
        assert_eq!(decode_outbox(OUTBOX_V1), Ok(outbox_v1_contents()));
    }

    #[test]
    fn a_version_1_session_loads() {
        assert_eq!(
            decode_session(SESSION_V1),
            Ok(Session {
                user_id: "alice".into(),
                token: "0123456789abcdef".repeat(4),
                expires_at: 1_767_225_600,
            })
        );
    }

    #[test]
    fn what_is_written_is_the_current_version_and_reads_back_unchanged() {
        let mut outbox = outbox_v1_contents();
        outbox[1].reply_to = Some(42);
        let text = encode_outbox(&outbox);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["version"], 3);
        assert_eq!(value["messages"][1]["reply_to"], 42);
        assert!(value["messages"][0].get("reply_to").is_none());
        assert_eq!(
            value["messages"][0]["client_id"],
            "18c2f1a9b3e-0f3a9c2d41b7e580"
        );
        assert!(
            value["messages"][0].get("failed").is_none(),
            "a pending message has no failure"
        );
        assert_eq!(value["messages"][2]["failed"]["retry_on_reconnect"], true);
        assert_eq!(decode_outbox(&text), Ok(outbox));

        let session = decode_session(SESSION_V1).unwrap();
        let text = encode_session(&session);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["version"], 2);
        assert_eq!(decode_session(&text), Ok(session));
    }

    #[test]
    fn a_version_2_outbox_loads_without_replies() {
        let text = r#"{"version":2,"messages":[{"client_id":"c","chat_id":"1","text":"hi"},{"client_id":"d","chat_id":"1","text":"no","failed":{"reason":"Refused","retry_on_reconnect":false}}]}"#;
        let mut expected = vec![
            outgoing("c", "1", "hi", Delivery::Pending),
            outgoing(
                "d",
                "1",
                "no",
                Delivery::Failed {
                    reason: "Refused".into(),
                    auto_retry: false,
                },
            ),
        ];
        assert_eq!(decode_outbox(text), Ok(expected.clone()));
        expected[0].reply_to = Some(7);
        assert_eq!(decode_outbox(&encode_outbox(&expected)), Ok(expected));
    }

    #[test]
    fn fields_a_later_version_adds_are_ignored_and_an_empty_outbox_is_empty() {
        let text = r#"{"version":2,"messages":[{"client_id":"c","chat_id":"1","text":"hi","sent_from":"tab 2"}],"leader":"tab 2"}"#;
        assert_eq!(
            decode_outbox(text),
            Ok(vec![outgoing("c", "1", "hi", Delivery::Pending)])
        );
        assert_eq!(decode_outbox(&encode_outbox(&[])), Ok(Vec::new()));
        assert_eq!(decode_outbox("[]"), Ok(Vec::new()));
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors_not_panics() {
        assert_eq!(
            decode_outbox(r#"{"version":4,"messages":[]}"#),
            Err(FormatError::UnknownVersion(4))
        );
        assert_eq!(
            decode_session(r#"{"version":9,"user_id":"a"}"#),
            Err(FormatError::UnknownVersion(9))
        );
        for garbage in [
            "",
            "null",
            "{",
            r#"{"version":"2"}"#,
            r#"[{"client_id":1}]"#,
        ] {
            assert!(
                matches!(decode_outbox(garbage), Err(FormatError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }
}
