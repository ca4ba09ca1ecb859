//! Fuzzing (proptest): hostile input must never panic anything, and every refusal must be a
//! clear status. Four targets, from the inside out:
//! - `chat_core` validation of every field type, on arbitrary strings;
//! - every request message decoded from arbitrary bytes (random, or a valid encoding mutated)
//!   and then converted with the `TryFrom` the server uses;
//! - the running server, given arbitrary bytes as the message of every Chat and Auth RPC over
//!   native gRPC;
//! - the running server, given arbitrary gRPC-web bodies over HTTP/1.1.
//!
//! Each target runs for `CHAT_FUZZ_SECS` seconds (default: a second or two, for CI) and prints
//! how many inputs it tried; RELIABILITY.md records a long run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_core::ValidationError;
use chat_core::content::{Password, Subject, Text};
use chat_core::ids::{ChatId, ClientId, MessageId, UserId};
use chat_core::limits::*;
use chat_core::proto;
use chat_core::requests::{Credentials, HistoryQuery, Members, NewMessage, StreamQuery};
use chat_core::search::SearchQuery;
use http::Method;
use http::uri::PathAndQuery;
use http_body_util::Full;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::{Code, Status};

use crate::helpers::*;

/// How long each target runs: `CHAT_FUZZ_SECS`, or `default` seconds.
fn budget(default: f64) -> Duration {
    let seconds = std::env::var("CHAT_FUZZ_SECS")
        .ok()
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(seconds)
}

/// Runs `check` on inputs from `strategy` until `budget` is spent; returns how many it tried.
/// A failing input is shrunk by proptest and reported with the failure.
fn fuzz<S: Strategy>(
    name: &str,
    budget: Duration,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64 {
    const BATCH: u32 = 256;
    let started = Instant::now();
    let mut tried = 0;
    while started.elapsed() < budget {
        // A fresh runner per batch: each draws a new random seed.
        let mut runner = TestRunner::new(Config {
            cases: BATCH,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(failure) = runner.run(&strategy, &check) {
            panic!("fuzz {name}: {failure}");
        }
        tried += u64::from(BATCH);
    }
    println!(
        "fuzz {name}: {tried} inputs in {:.1} s, no panic, every refusal clear",
        started.elapsed().as_secs_f64()
    );
    tried
}

/// Strings that reach every branch of validation: anything at all, id-shaped, hex, digits,
/// control characters, and lengths around each limit. Boxed, as are the strategies built
/// from it: unboxed, their nested value trees overflow a test thread's stack.
fn hostile_string() -> SBoxedStrategy<String> {
    prop_oneof![
        ".{0,80}",
        "[A-Za-z0-9._-]{0,40}",
        "[0-9a-fA-F]{30,34}",
        "[+-]?[0-9]{0,25}",
        "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f} \t\r\n]{0,8}",
        "[\\u{1F600}-\\u{1F64F}é]{0,10}",
        (
            3_990..4_010usize,
            prop_oneof![Just('x'), Just('😀'), Just(' ')]
        )
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
        (190..210usize).prop_map(|n| "s".repeat(n)),
        (120..135usize).prop_map(|n| "p".repeat(n)),
    ]
    .sboxed()
}

/// A validation refusal must read as a sentence, short enough for a `grpc-message` header.
fn clear(error: &ValidationError) -> Result<(), TestCaseError> {
    let message = error.to_string();
    prop_assert!(!message.trim().is_empty(), "empty message for {error:?}");
    prop_assert!(message.len() <= 1024, "{} bytes: {message}", message.len());
    Ok(())
}

/// Checks one field parser: no panic; a refusal is clear; an accepted value is valid again.
fn parsed<T: PartialEq + std::fmt::Debug>(
    result: Result<T, ValidationError>,
    again: impl FnOnce(&T) -> Result<T, ValidationError>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(value) => {
            let reparsed = again(&value);
            prop_assert_eq!(
                reparsed.as_ref(),
                Ok(&value),
                "accepted once, refused after"
            );
            Ok(())
        }
        Err(error) => clear(&error),
    }
}

#[test]
fn validation_never_panics_and_explains_every_refusal() {
    fuzz(
        "chat-core validation",
        budget(1.0),
        hostile_string(),
        |input| {
            parsed(UserId::parse(&input), |id| UserId::parse(id.as_str()))?;
            if let Ok(id) = UserId::parse(&input) {
                let length = id.as_str().chars().count();
                prop_assert!((USER_ID_MIN_CHARS..=USER_ID_MAX_CHARS).contains(&length));
            }
            parsed(ChatId::parse(&input), |id| ChatId::parse(id.as_str()))?;
            parsed(ClientId::parse(&input), |id| ClientId::parse(id.as_str()))?;
            parsed(Text::parse(&input), |text| Text::parse(text.as_str()))?;
            parsed(Subject::parse(&input), |subject| {
                Subject::parse(subject.as_str())
            })?;
            match Password::parse(&input) {
                Ok(password) => prop_assert!(
                    (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS)
                        .contains(&password.expose().chars().count())
                ),
                Err(error) => clear(&error)?,
            }
            match MessageId::parse_optional("after_id", &input) {
                Ok(Some(id)) => prop_assert_eq!(id.to_string().parse::<u64>().ok(), Some(id.0)),
                Ok(None) => prop_assert!(input.is_empty()),
                Err(error) => clear(&error)?,
            }
            Ok(())
        },
    );
}

/// Every request type the server decodes, as an encoding built from hostile field values.
fn encoded_request() -> SBoxedStrategy<Vec<u8>> {
    use prost::Message as _;
    let s = hostile_string;
    prop_oneof![
        (s(), s(), s()).prop_map(|(user_id, password, device)| {
            proto::Credentials {
                user_id,
                password,
                device,
            }
            .encode_to_vec()
        }),
        proptest::collection::vec(s(), 0..110)
            .prop_map(|user_ids| proto::NewRequest { user_ids }.encode_to_vec()),
        (s(), any::<i32>(), s()).prop_map(|(chat_id, limit, before_id)| {
            proto::HistoryRequest {
                chat_id,
                limit,
                before_id,
            }
            .encode_to_vec()
        }),
        (s(), s(), s(), s(), s(), s()).prop_map(
            |(client_id, chat_id, user_id, subject, text, reply_to_id)| {
                proto::SendRequest {
                    client_id,
                    chat_id,
                    user_id,
                    subject,
                    text,
                    reply_to_id,
                }
                .encode_to_vec()
            }
        ),
        (s(), s(), any::<i32>(), s()).prop_map(|(query, chat_id, limit, page_token)| {
            proto::SearchRequest {
                query,
                chat_id,
                limit,
                page_token,
            }
            .encode_to_vec()
        }),
        (s(), s()).prop_map(|(chat_id, after_id)| {
            proto::StreamRequest { chat_id, after_id }.encode_to_vec()
        }),
        (s(), s(), s(), s(), any::<i64>(), s(), s()).prop_map(
            |(id, client_id, chat_id, user_id, sent_at, subject, text)| {
                proto::Message {
                    reply_to: Some(proto::ReplyPreview {
                        message_id: id.clone(),
                        ..Default::default()
                    }),
                    id,
                    client_id,
                    chat_id,
                    user_id,
                    sent_at,
                    subject,
                    text,
                    ..Default::default()
                }
                .encode_to_vec()
            }
        ),
    ]
    .sboxed()
}

/// Request bytes: random, or a valid encoding then damaged (bytes overwritten, cut short or
/// extended), which reaches much deeper into the decoders than noise does.
fn request_bytes() -> SBoxedStrategy<Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        encoded_request(),
        (
            encoded_request(),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            any::<prop::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(mut bytes, flips, cut, tail)| {
                if !bytes.is_empty() {
                    for (at, byte) in flips {
                        let at = at.index(bytes.len());
                        bytes[at] = byte;
                    }
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                bytes.extend(tail);
                bytes
            }),
    ]
    .sboxed()
}

/// Decodes `bytes` as `M` and, when that works, converts it as the server does.
fn decode_then<M: prost::Message + Default>(
    bytes: &[u8],
    convert: impl FnOnce(&M) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    match M::decode(bytes) {
        Ok(message) => convert(&message),
        // tonic answers this itself (INTERNAL "failed to decode Protobuf message: ...").
        Err(error) => {
            prop_assert!(!error.to_string().is_empty());
            Ok(())
        }
    }
}

fn refused_clearly<T>(result: Result<T, ValidationError>) -> Result<Option<T>, TestCaseError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) => clear(&error).map(|()| None),
    }
}

#[test]
fn every_request_decodes_and_validates_without_panic() {
    let chat = ChatId::from_random(7);
    fuzz("request decoding", budget(1.0), request_bytes(), |bytes| {
        decode_then::<proto::Credentials>(&bytes, |request| {
            refused_clearly(Credentials::try_from(request)).map(drop)
        })?;
        decode_then::<proto::NewRequest>(&bytes, |request| {
            if let Some(members) = refused_clearly(Members::try_from(request))? {
                let ids = members.as_slice();
                prop_assert!((1..=MEMBERS_MAX).contains(&ids.len()));
                prop_assert!(
                    ids.windows(2).all(|pair| pair[0] < pair[1]),
                    "sorted, no twins"
                );
            }
            Ok(())
        })?;
        decode_then::<proto::HistoryRequest>(&bytes, |request| {
            if let Some(query) = refused_clearly(HistoryQuery::try_from(request))? {
                prop_assert!((1..=HISTORY_MAX_PAGE).contains(&query.limit));
            }
            Ok(())
        })?;
        decode_then::<proto::SendRequest>(&bytes, |request| {
            if let Some(message) = refused_clearly(NewMessage::try_from(request.clone()))? {
                prop_assert!(message.text.as_str().chars().count() <= TEXT_MAX_CHARS);
                prop_assert!(!message.text.as_str().trim().is_empty());
            }
            Ok(())
        })?;
        decode_then::<proto::SearchRequest>(&bytes, |request| {
            if let Some(query) = refused_clearly(SearchQuery::try_from(request))? {
                prop_assert!((1..=SEARCH_MAX_PAGE).contains(&query.limit));
                let words = query.terms.words();
                prop_assert!((1..=SEARCH_MAX_WORDS).contains(&words.len()));
                for word in words {
                    prop_assert_eq!(chat_core::search::words(word).count(), 1, "{:?}", word);
                }
            }
            Ok(())
        })?;
        decode_then::<proto::StreamRequest>(&bytes, |request| {
            refused_clearly(StreamQuery::try_from(request)).map(drop)
        })?;
        decode_then::<proto::Message>(&bytes, |message| {
            refused_clearly(NewMessage::from_connect(message, &chat)).map(drop)
        })?;
        Ok(())
    });
}

/// A well-formed token nobody holds, for SignOut.
const THROWAWAY_TOKEN: &str = "00000000000000000000000000000000000000000000000000000000000000ff";

/// The RPCs taking one request message, by path.
const UNARY: [&str; 8] = [
    "/chat.Chat/New",
    "/chat.Chat/History",
    "/chat.Chat/Send",
    "/chat.Chat/List",
    "/chat.Chat/Search",
    "/chat.Auth/SignIn",
    "/chat.Auth/SignUp",
    "/chat.Auth/SignOut",
];

/// Whether a refusal is one of the clear ones: validation (INVALID_ARGUMENT), a body that is
/// not protobuf at all (tonic's INTERNAL "failed to decode Protobuf message", which is what
/// gRPC's status code guide gives for an unparseable request), one over the size limit
/// (OUT_OF_RANGE), or what the input asked for (no such chat, account taken or wrong, a
/// sign-in that must wait).
fn is_clear(status: &Status) -> bool {
    let message = status.message();
    let understood = match status.code() {
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::Unauthenticated => {
            true
        }
        Code::ResourceExhausted => message.contains("try again in"),
        Code::OutOfRange => message.contains("length too large"),
        Code::Internal => message.contains("failed to decode Protobuf message"),
        _ => false,
    };
    understood && !message.trim().is_empty() && message.len() <= 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_arbitrary_request_bytes_with_a_clear_status() {
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let channel = app.channel().await;
    let codes = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let runtime = tokio::runtime::Handle::current();

    let case = {
        let codes = Arc::clone(&codes);
        let (alice, chat_id) = (alice.clone(), chat_id.clone());
        move |(rpc, bytes): (usize, Vec<u8>)| -> Result<(), TestCaseError> {
            let channel = channel.clone();
            // The fuzzer runs on a blocking thread, so it may wait for the async call.
            let outcome = runtime.block_on(call(channel, rpc, bytes, &alice, &chat_id));
            let key = match &outcome {
                Ok(()) => "OK".to_owned(),
                Err(status) => {
                    prop_assert!(is_clear(status), "unclear refusal: {status:?}");
                    format!("{:?}", status.code())
                }
            };
            *codes.lock().expect("codes").entry(key).or_default() += 1;
            Ok(())
        }
    };
    let strategy = (0..UNARY.len() + 2, request_bytes());
    let tried = tokio::task::spawn_blocking(move || {
        fuzz("server, native gRPC", budget(2.0), strategy, case)
    })
    .await
    .expect("the fuzzer panicked");

    // Still serving.
    let mut chat = app.chat().await;
    send_text(&mut chat, &alice, &chat_id, "after", "still here").await;
    println!(
        "  {tried} calls; outcomes by code: {:?}",
        codes.lock().expect("codes")
    );
}

/// One call with `bytes` as its request message: a unary RPC, Stream (index `UNARY.len()`)
/// or Connect (the next), with alice's token. Stream decodes its request before it answers,
/// so its answer is the call's; Connect answers first and reads messages after, so its
/// answer is the first item or status on the stream: an echo, or the refusal.
async fn call(
    channel: tonic::transport::Channel,
    rpc: usize,
    bytes: Vec<u8>,
    token: &str,
    chat_id: &str,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let bytes = Bytes::from(bytes);
    match UNARY.get(rpc) {
        Some(path) => {
            // SignOut with alice's token would end her session, and every call after it
            // would stop at authentication: it gets a token of its own.
            let token = if path.ends_with("SignOut") {
                THROWAWAY_TOKEN
            } else {
                token
            };
            let path = PathAndQuery::from_static(path);
            grpc.unary(authed(token, bytes), path, RawCodec)
                .await
                .map(drop)
        }
        None if rpc == UNARY.len() => {
            let path = PathAndQuery::from_static("/chat.Chat/Stream");
            grpc.server_streaming(authed(token, bytes), path, RawCodec)
                .await
                .map(drop)
        }
        None => {
            let path = PathAndQuery::from_static("/chat.Chat/Connect");
            let request = with_metadata(
                authed(token, futures::stream::iter([bytes])),
                "chat-id",
                chat_id,
            );
            let mut stream = grpc.streaming(request, path, RawCodec).await?.into_inner();
            match tokio::time::timeout(Duration::from_secs(3), stream.message()).await {
                Ok(item) => item.map(drop),
                Err(_) => Err(Status::deadline_exceeded(
                    "no echo and no status within 3 s",
                )),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_arbitrary_grpc_web_bodies_with_a_grpc_status() {
    let app = spawn_app().await;
    let (_, alice) = signed_up(&app, "alice").await;
    let runtime = tokio::runtime::Handle::current();
    let url = app.url("");
    let statuses = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));

    // A gRPC-web body: frames of [flag, 4-byte length, payload], possibly lying about either.
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (any::<u8>(), any::<u32>(), request_bytes()).prop_map(|(flag, length, payload)| {
            let mut body = vec![flag];
            body.extend(length.to_be_bytes());
            body.extend(payload);
            body
        }),
        request_bytes().prop_map(|payload| {
            let mut body = vec![0];
            body.extend(
                u32::try_from(payload.len())
                    .unwrap_or(u32::MAX)
                    .to_be_bytes(),
            );
            body.extend(payload);
            body
        }),
    ];
    let case = {
        let statuses = Arc::clone(&statuses);
        let alice = alice.clone();
        move |(rpc, body): (usize, Vec<u8>)| -> Result<(), TestCaseError> {
            let path = UNARY[rpc % UNARY.len()];
            let token = if path.ends_with("SignOut") {
                THROWAWAY_TOKEN
            } else {
                &alice
            };
            let request = http::Request::builder()
                .method(Method::POST)
                .uri(format!("{url}{path}"))
                .header("content-type", "application/grpc-web+proto")
                .header("x-grpc-web", "1")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::from(body)))
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            let (head, body) = runtime.block_on(http1(request));
            prop_assert_eq!(head.status, http::StatusCode::OK, "HTTP status");
            let status = grpc_web_status(&head, &body);
            prop_assert!(status.is_some(), "no grpc-status in headers or trailers");
            *statuses
                .lock()
                .expect("statuses")
                .entry(status.unwrap_or_default())
                .or_default() += 1;
            Ok(())
        }
    };
    let strategy = (0..UNARY.len(), body);
    let tried = tokio::task::spawn_blocking(move || {
        fuzz("server, gRPC-web bodies", budget(2.0), strategy, case)
    })
    .await
    .expect("the fuzzer panicked");
    // Still serving.
    chats_of(&app, &alice).await;
    println!(
        "  {tried} requests; grpc-status values: {:?}",
        statuses.lock().expect("statuses")
    );
}

/// The grpc-status of a gRPC-web response: a header (trailers-only answer) or in the
/// trailer frame (flag 0x80) of the body.
fn grpc_web_status(head: &http::response::Parts, body: &[u8]) -> Option<String> {
    if let Some(status) = head.headers.get("grpc-status") {
        return status.to_str().ok().map(str::to_owned);
    }
    let mut rest = body;
    while rest.len() >= 5 {
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let frame = rest.get(5..5 + length)?;
        if rest[0] & 0x80 != 0 {
            let trailers = String::from_utf8_lossy(frame);
            return trailers.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("grpc-status")
                    .then(|| value.trim().to_owned())
            });
        }
        rest = &rest[5 + length..];
    }
    None
}
