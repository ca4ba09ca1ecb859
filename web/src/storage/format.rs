//! The formats the app writes to localStorage, each version read and written here field by
//! field (with the small `json` module), apart from the domain types, so that changing
//! `Session` or `Outgoing` never makes stored data unreadable.
//!
//! - Version 1 carries no version field: the session as `{"user_id", "token", "expires_at"}`,
//!   the outbox as a bare array of `{"client_id", "chat_id", "text", "delivery"}`, where
//!   `delivery` is `"Pending"` or `{"Failed": {"reason", "auto_retry"}}`.
//! - Version 2 is a JSON object with `"version": 2`; the session is still written so.
//! - Version 3 adds `"reply_to"` (the id of the message answered) to a message that is a
//!   reply. Version 2 reads as version 3 without replies.
//! - Version 4 (the outbox written now) stores each message under a key of its own (see
//!   `super`), as version 3's message object with `"version": 4` and `"queued_at"` (when it
//!   was written, in browser milliseconds, which orders the outbox). Versions 1 to 3 were
//!   one list under one key; their messages read with `queued_at` their place in the list.
//!
//! To change a format, add the next version beside these and read every earlier version into the
//! domain type; a version once released is never edited. Reading ignores fields it does not
//! know, and a version newer than this app reads is an error, never a panic.

use super::json::{self, Value};
use crate::api::Session;
use crate::live::model::{Delivery, Outgoing};

/// The version [`encode_session`] writes.
const SESSION_VERSION: u64 = 2;
/// The version [`encode_outgoing`] writes.
const OUTGOING_VERSION: u64 = 4;

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

fn malformed(why: &str) -> FormatError {
    FormatError::Malformed(why.to_owned())
}

/// The member `key` of `object`, read by `read`: an error names the field when it is missing
/// or of the wrong type.
fn field<'a, T>(
    object: &'a Value,
    key: &str,
    read: impl FnOnce(&'a Value) -> Option<T>,
) -> Result<T, FormatError> {
    object
        .get(key)
        .and_then(read)
        .ok_or_else(|| FormatError::Malformed(format!("field `{key}` is missing or invalid")))
}

/// An optional member: absent and `null` are `None`; any other value must read.
fn optional<'a, T>(
    object: &'a Value,
    key: &str,
    read: impl FnOnce(&'a Value) -> Option<T>,
) -> Result<Option<T>, FormatError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => field(object, key, read).map(Some),
    }
}

fn string(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn parse(text: &str) -> Result<Value, FormatError> {
    json::parse(text).map_err(FormatError::Malformed)
}

/// The version of a stored value: its `version` field, or 1 where there is none (an
/// object without one, or version 1's bare outbox array).
fn version_of(value: &Value) -> Result<u64, FormatError> {
    match value {
        Value::Array(_) => Ok(1),
        Value::Object(_) => Ok(optional(value, "version", Value::as_u64)?.unwrap_or(1)),
        _ => Err(malformed("not an object")),
    }
}

// Version 1 of the session: `{"user_id", "token", "expires_at"}`; version 2 adds
// `"version": 2`. Both read the same way.
pub fn encode_session(session: &Session) -> String {
    let mut out = String::from("{");
    json::write_key(&mut out, "version");
    out.push_str(&SESSION_VERSION.to_string());
    json::write_key(&mut out, "user_id");
    json::write_str(&mut out, &session.user_id);
    json::write_key(&mut out, "token");
    json::write_str(&mut out, &session.token);
    // Unix seconds after which the server refuses the token.
    json::write_key(&mut out, "expires_at");
    out.push_str(&session.expires_at.to_string());
    out.push('}');
    out
}

pub fn decode_session(text: &str) -> Result<Session, FormatError> {
    let value = parse(text)?;
    match version_of(&value)? {
        1 | 2 if matches!(value, Value::Object(_)) => Ok(Session {
            user_id: field(&value, "user_id", string)?,
            token: field(&value, "token", string)?,
            expires_at: field(&value, "expires_at", Value::as_i64)?,
        }),
        1 | 2 => Err(malformed("a session is an object")),
        newer => Err(FormatError::UnknownVersion(newer)),
    }
}

/// Version 1's `delivery`: `"Pending"` or `{"Failed": {"reason", "auto_retry"}}`.
fn delivery_v1(value: &Value) -> Result<Delivery, FormatError> {
    if value.as_str() == Some("Pending") {
        return Ok(Delivery::Pending);
    }
    match value {
        Value::Object(members) if members.len() == 1 && members[0].0 == "Failed" => {
            let failed = &members[0].1;
            Ok(Delivery::Failed {
                reason: field(failed, "reason", string)?,
                auto_retry: field(failed, "auto_retry", Value::as_bool)?,
            })
        }
        _ => Err(malformed("unknown delivery")),
    }
}

/// A message of versions 2 and 3: version 3 only adds the optional `reply_to` (the id of
/// the message answered), so one reader takes both. `failed` is set when the last attempt
/// failed, absent while the message waits to be sent.
fn outgoing_v3(value: &Value) -> Result<Outgoing, FormatError> {
    let delivery = match value.get("failed") {
        None | Some(Value::Null) => Delivery::Pending,
        Some(failed) => Delivery::Failed {
            reason: field(failed, "reason", string)?,
            // Sent again by itself when the connection returns (the server could not be
            // reached), rather than waiting for the user's retry.
            auto_retry: field(failed, "retry_on_reconnect", Value::as_bool)?,
        },
    };
    Ok(Outgoing {
        client_id: field(value, "client_id", string)?,
        chat_id: field(value, "chat_id", string)?,
        text: field(value, "text", string)?,
        reply_to: optional(value, "reply_to", Value::as_u64)?,
        delivery,
        queued_at: 0,
    })
}

/// The members of a message of versions 3 and 4 after the version: a pending message has
/// no `failed`, and only a reply has `reply_to`.
fn write_message(out: &mut String, outgoing: &Outgoing) {
    json::write_key(out, "client_id");
    json::write_str(out, &outgoing.client_id);
    json::write_key(out, "chat_id");
    json::write_str(out, &outgoing.chat_id);
    json::write_key(out, "text");
    json::write_str(out, &outgoing.text);
    if let Delivery::Failed { reason, auto_retry } = &outgoing.delivery {
        json::write_key(out, "failed");
        out.push('{');
        json::write_key(out, "reason");
        json::write_str(out, reason);
        json::write_key(out, "retry_on_reconnect");
        out.push_str(if *auto_retry { "true" } else { "false" });
        out.push('}');
    }
    if let Some(reply_to) = outgoing.reply_to {
        json::write_key(out, "reply_to");
        out.push_str(&reply_to.to_string());
    }
}

/// Version 3, as the release before per-message keys wrote it: `{"version": 3, "messages":
/// [...]}`, oldest first. The app no longer writes it; the tests check it reads back.
#[cfg(test)]
pub fn encode_outbox(outbox: &[Outgoing]) -> String {
    let mut out = String::from("{");
    json::write_key(&mut out, "version");
    out.push('3');
    json::write_key(&mut out, "messages");
    out.push('[');
    for (index, outgoing) in outbox.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('{');
        write_message(&mut out, outgoing);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// Version 4: one message, `{"version": 4, "queued_at", "client_id", ...}`.
pub fn encode_outgoing(outgoing: &Outgoing) -> String {
    let mut out = String::from("{");
    json::write_key(&mut out, "version");
    out.push_str(&OUTGOING_VERSION.to_string());
    json::write_key(&mut out, "queued_at");
    out.push_str(&outgoing.queued_at.to_string());
    write_message(&mut out, outgoing);
    out.push('}');
    out
}

/// One message stored under its own key: version 4 only (earlier versions were lists).
pub fn decode_outgoing(text: &str) -> Result<Outgoing, FormatError> {
    let value = parse(text)?;
    match version_of(&value)? {
        OUTGOING_VERSION => Ok(Outgoing {
            queued_at: field(&value, "queued_at", Value::as_u64)?,
            ..outgoing_v3(&value)?
        }),
        newer if newer > OUTGOING_VERSION => Err(FormatError::UnknownVersion(newer)),
        _ => Err(malformed("a stored message is version 4")),
    }
}

/// The one list of versions 1 to 3, oldest first.
pub fn decode_outbox(text: &str) -> Result<Vec<Outgoing>, FormatError> {
    let value = parse(text)?;
    let outbox: Result<Vec<Outgoing>, FormatError> = match version_of(&value)? {
        1 => {
            let Value::Array(messages) = &value else {
                return Err(malformed("a version 1 outbox is an array"));
            };
            messages
                .iter()
                .map(|message| {
                    Ok(Outgoing {
                        client_id: field(message, "client_id", string)?,
                        chat_id: field(message, "chat_id", string)?,
                        text: field(message, "text", string)?,
                        reply_to: None,
                        delivery: delivery_v1(field(message, "delivery", Some)?)?,
                        queued_at: 0,
                    })
                })
                .collect()
        }
        2 | 3 => match field(&value, "messages", Some)? {
            Value::Array(messages) => messages.iter().map(outgoing_v3).collect(),
            _ => Err(malformed("`messages` is not an array")),
        },
        newer => Err(FormatError::UnknownVersion(newer)),
    };
    let mut outbox = outbox?;
    for (place, outgoing) in (0..).zip(&mut outbox) {
        outgoing.queued_at = place;
    }
    Ok(outbox)
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
            queued_at: 0,
        }
    }

    /// `outbox` as read from one list: each message's `queued_at` is its place in it.
    fn in_order(mut outbox: Vec<Outgoing>) -> Vec<Outgoing> {
        for (place, outgoing) in (0..).zip(&mut outbox) {
            outgoing.queued_at = place;
        }
        outbox
    }

    fn outbox_v1_contents() -> Vec<Outgoing> {
        in_order(vec![
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
        ])
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
        for (outgoing, queued_at) in outbox.iter_mut().zip([1_764_000_000_000, 5, u64::MAX]) {
            outgoing.queued_at = queued_at;
            let text = encode_outgoing(outgoing);
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["version"], 4);
            assert_eq!(value["queued_at"], queued_at);
            assert_eq!(value["client_id"], outgoing.client_id.as_str());
            assert_eq!(decode_outgoing(&text).as_ref(), Ok(&*outgoing));
        }
        let text = encode_outgoing(&outbox[1]);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["reply_to"], 42);
        assert_eq!(value["failed"]["retry_on_reconnect"], false);
        assert!(
            serde_json::from_str::<Value>(&encode_outgoing(&outbox[0])).unwrap()["failed"]
                .is_null(),
            "a pending message has no failure"
        );
        let outbox = in_order(outbox);

        // Version 3, as the release before wrote it, reads back the same.
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
        let mut expected = in_order(vec![
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
        ]);
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

    /// Exactly what the release before this reader wrote (serde's derive of the version 3
    /// and 2 structs): it loads, and the same data is written byte for byte the same.
    #[test]
    fn what_serde_wrote_for_versions_3_and_2_loads_and_is_written_the_same() {
        let outbox = r#"{"version":3,"messages":[{"client_id":"c","chat_id":"1","text":"hi \"quoted\"\n\u0001é","reply_to":7},{"client_id":"d","chat_id":"1","text":"no","failed":{"reason":"Refused","retry_on_reconnect":false},"reply_to":18446744073709551615}]}"#;
        let mut expected = in_order(vec![
            outgoing("c", "1", "hi \"quoted\"\n\u{1}é", Delivery::Pending),
            outgoing(
                "d",
                "1",
                "no",
                Delivery::Failed {
                    reason: "Refused".into(),
                    auto_retry: false,
                },
            ),
        ]);
        expected[0].reply_to = Some(7);
        expected[1].reply_to = Some(u64::MAX);
        assert_eq!(decode_outbox(outbox), Ok(expected.clone()));
        assert_eq!(encode_outbox(&expected), outbox);

        let session = r#"{"version":2,"user_id":"alice","token":"t0k","expires_at":-1}"#;
        let decoded = decode_session(session).unwrap();
        assert_eq!(decoded.expires_at, -1);
        assert_eq!(encode_session(&decoded), session);
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors_not_panics() {
        assert_eq!(
            decode_outbox(r#"{"version":4,"messages":[]}"#),
            Err(FormatError::UnknownVersion(4))
        );
        assert_eq!(
            decode_outgoing(r#"{"version":5,"queued_at":1}"#),
            Err(FormatError::UnknownVersion(5))
        );
        for garbage in [
            r#"{"version":3,"messages":[]}"#,
            r#"{"version":4,"client_id":"c","chat_id":"1","text":"hi"}"#,
            r#"{"version":4,"queued_at":-1,"client_id":"c","chat_id":"1","text":"hi"}"#,
            "[]",
        ] {
            assert!(
                matches!(decode_outgoing(garbage), Err(FormatError::Malformed(_))),
                "{garbage:?}"
            );
        }
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
