//! gRPC-web over HTTP/1.1, as the browser speaks it: the tonic-web client for unary calls and
//! a live Stream, then raw requests for the framing and the CORS headers a browser checks.

use bytes::Bytes;
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{HistoryRequest, ListRequest, NewRequest, Session, StreamRequest};
use http::{Method, StatusCode};
use http_body_util::Full;
use prost::Message as _;
use tonic::{Code, Request};

use crate::helpers::*;

const ORIGIN: &str = "http://localhost:8080";

/// One gRPC-web data frame: flag byte 0, big-endian length, then the encoded message.
fn data_frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend((body.len() as u32).to_be_bytes());
    frame.extend(body);
    frame.into()
}

/// Splits a gRPC-web response body into its (flag, payload) frames.
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "a truncated frame header: {body:?}");
        let length = u32::from_be_bytes(body[1..5].try_into().expect("four bytes")) as usize;
        assert!(
            body.len() >= 5 + length,
            "a frame claims {length} bytes but {} remain",
            body.len() - 5
        );
        frames.push((body[0], body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    frames
}

/// The lines of a trailer frame, lower-cased and without spaces: `grpc-status:0`.
fn trailer_lines(payload: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(payload)
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| line.to_ascii_lowercase().replace(' ', ""))
        .collect()
}

/// A gRPC-web POST of one message, as a browser sends it.
fn grpc_web_post(
    app: &TestApp,
    path: &str,
    message: &impl prost::Message,
) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(Method::POST)
        .uri(app.url(path))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", ORIGIN)
        .body(Full::new(data_frame(message)))
        .expect("a valid request")
}

/// A comma-separated header as a lower-cased list.
fn header_list(head: &http::response::Parts, name: &str) -> Vec<String> {
    head.headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().expect("ASCII header").split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn unary_calls_work_over_grpc_web() {
    let app = spawn_app().await;
    let mut auth = app.web_auth();
    let alice = within(auth.sign_up(credentials("alice", PASSWORD)))
        .await
        .expect("sign up over gRPC-web")
        .into_inner()
        .token;
    within(auth.sign_up(credentials("bob", PASSWORD)))
        .await
        .expect("sign up bob");
    let mut chat = app.web_chat();

    let request = NewRequest {
        user_ids: vec!["alice".into(), "bob".into()],
    };
    let chat_id = within(chat.new_chat(authed(&alice, request)))
        .await
        .expect("new")
        .into_inner()
        .chat_id;
    let sent = within(chat.send(authed(
        &alice,
        send_request(&chat_id, "w1", "from the browser"),
    )))
    .await
    .expect("send")
    .into_inner()
    .message
    .expect("stored message");
    let history = HistoryRequest {
        chat_id: chat_id.clone(),
        ..Default::default()
    };
    let history = within(chat.history(authed(&alice, history)))
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.messages, std::slice::from_ref(&sent));
    let listed = within(chat.list(authed(&alice, ListRequest::default())))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.chats.len(), 1);
    assert_eq!(listed.chats[0].last_message, Some(sent));

    // Refusals cross as statuses, not as transport failures.
    let status = within(chat.list(Request::new(ListRequest::default())))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn a_stream_over_grpc_web_delivers_live_messages_and_heartbeats() {
    let app = spawn_app().await;
    let [alice, bob] = signed_up_all(&app, ["alice", "bob"]).await;
    let chat_id = new_chat(&app, &bob, &["alice", "bob"]).await;
    let mut web = app.web_chat();
    let request = StreamRequest {
        chat_id: String::new(),
        after_id: String::new(),
    };
    let mut stream = within(web.stream(authed(&alice, request)))
        .await
        .expect("stream over gRPC-web")
        .into_inner();

    let mut native = app.chat().await;
    let sent = send_in_order(&mut native, &bob, &chat_id, "n", 3, "from a native client").await;

    assert_eq!(next_messages(&mut stream, 3).await, sent);
    let event = within(stream.message())
        .await
        .expect("stream failed")
        .expect("stream ended");
    assert!(
        matches!(event.event, Some(EventKind::Heartbeat(_))),
        "an idle gRPC-web stream should get heartbeats, got {event:?}"
    );
}

#[tokio::test]
async fn a_hand_made_grpc_web_call_gets_a_data_frame_and_a_trailer_frame() {
    let app = spawn_app().await;
    signed_up(&app, "alice").await;

    let (head, body) = http1(grpc_web_post(
        &app,
        "/chat.Auth/SignIn",
        &credentials("alice", PASSWORD),
    ))
    .await;

    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, http::Version::HTTP_11);
    let content_type = head
        .headers
        .get("content-type")
        .map(|value| value.to_str().unwrap_or(""));
    assert!(
        content_type.is_some_and(|value| value.starts_with("application/grpc-web")),
        "content-type {content_type:?}"
    );
    let frames = frames(&body);
    assert_eq!(frames.len(), 2, "one message and the trailers: {frames:?}");
    assert_eq!(frames[0].0, 0, "the first frame carries data");
    let session = Session::decode(frames[0].1.as_slice()).expect("a Session");
    assert_eq!(session.user_id, "alice");
    assert!(!session.token.is_empty());
    assert_eq!(frames[1].0, 0x80, "the last frame carries the trailers");
    let trailers = trailer_lines(&frames[1].1);
    assert!(
        trailers.iter().any(|line| line == "grpc-status:0"),
        "trailers {trailers:?}"
    );
}

#[tokio::test]
async fn a_refused_grpc_web_call_reports_its_status() {
    let app = spawn_app().await;
    signed_up(&app, "alice").await;

    let wrong = credentials("alice", "not the password");
    let (head, body) = http1(grpc_web_post(&app, "/chat.Auth/SignIn", &wrong)).await;

    assert_eq!(
        head.status,
        StatusCode::OK,
        "gRPC-web errors travel as grpc-status, not HTTP status"
    );
    // A trailers-only reply puts the status in the headers; otherwise it is in a trailer frame.
    let in_headers = head
        .headers
        .get("grpc-status")
        .map(|value| value.to_str().unwrap_or("").to_owned());
    let in_trailers: Vec<String> = frames(&body)
        .into_iter()
        .filter(|(flag, _)| flag & 0x80 != 0)
        .flat_map(|(_, payload)| trailer_lines(&payload))
        .collect();
    let unauthenticated = (Code::Unauthenticated as i32).to_string();
    assert!(
        in_headers.as_deref() == Some(unauthenticated.as_str())
            || in_trailers.contains(&format!("grpc-status:{unauthenticated}")),
        "expected grpc-status {unauthenticated}; headers {:?}, trailers {in_trailers:?}",
        head.headers
    );
}

#[tokio::test]
async fn cors_lets_a_browser_on_another_origin_call_the_api() {
    let app = spawn_app().await;
    signed_up(&app, "alice").await;
    // The headers the browser UI sends; `authorization` in particular is not covered by "*".
    let wanted = [
        "authorization",
        "content-type",
        "x-grpc-web",
        "chat-id",
        "user-id",
        "x-user-agent",
        "grpc-timeout",
    ];

    let preflight = http::Request::builder()
        .method(Method::OPTIONS)
        .uri(app.url("/chat.Chat/Send"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", wanted.join(","))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let (head, _) = http1(preflight).await;

    assert!(head.status.is_success(), "preflight status {}", head.status);
    let allowed_origin = header_list(&head, "access-control-allow-origin");
    assert!(
        allowed_origin == [ORIGIN] || allowed_origin == ["*"],
        "access-control-allow-origin {allowed_origin:?}"
    );
    let allowed_headers = header_list(&head, "access-control-allow-headers");
    for header in wanted {
        assert!(
            allowed_headers.iter().any(|allowed| allowed == header),
            "{header} is not in {allowed_headers:?}"
        );
    }
    let allowed_methods = header_list(&head, "access-control-allow-methods");
    assert!(
        allowed_methods.iter().any(|method| method == "post"),
        "allow-methods {allowed_methods:?}"
    );

    let (head, _) = http1(grpc_web_post(
        &app,
        "/chat.Auth/SignIn",
        &credentials("alice", PASSWORD),
    ))
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(
        !header_list(&head, "access-control-allow-origin").is_empty(),
        "{:?}",
        head.headers
    );
    let exposed = header_list(&head, "access-control-expose-headers");
    for header in ["grpc-status", "grpc-message"] {
        assert!(
            exposed.iter().any(|name| name == header),
            "{header} is not exposed: {exposed:?}"
        );
    }

    // The chat service, which the transport calls without tonic's router, answers a browser
    // the same way, its refusals included (here: no token).
    let (head, _) = http1(grpc_web_post(
        &app,
        "/chat.Chat/List",
        &ListRequest::default(),
    ))
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.headers
            .get("grpc-status")
            .map(|value| value.as_bytes()),
        Some(&b"16"[..]),
        "{:?}",
        head.headers
    );
    assert!(
        !header_list(&head, "access-control-allow-origin").is_empty(),
        "{:?}",
        head.headers
    );
    assert!(
        header_list(&head, "access-control-expose-headers")
            .iter()
            .any(|name| name == "grpc-status"),
        "{:?}",
        head.headers
    );
}
