//! Who may do what: every Chat RPC refuses a caller without a valid token, refuses a `user_id`
//! that is not the caller's, and answers for other people's chats exactly as for chats that
//! do not exist, so nobody learns which chats exist.

use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::{
    BlockRequest, GetSettingsRequest, HistoryRequest, LeaveRequest, ListBlockedRequest,
    ListRequest, MarkReadRequest, Message, NewRequest, SendRequest, Settings, StreamRequest,
    TypingRequest,
};
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::helpers::*;

/// A well-formed chat id that no chat has.
const MISSING_CHAT: &str = "0123456789abcdef0123456789abcdef";

/// A request carrying exactly these metadata entries (`authorization`, `user-id`).
fn request<T>(metadata: &[(&'static str, &str)], message: T) -> Request<T> {
    metadata
        .iter()
        .fold(Request::new(message), |request, &(key, value)| {
            with_metadata(request, key, value)
        })
}

/// Calls each Chat RPC once with otherwise valid input and the given metadata, and returns
/// each RPC's name with its outcome. A streaming call counts as accepted once it yields an
/// item: Connect echoes the message sent on it (client id `<round>-connect`), Stream yields a
/// heartbeat within a second. Send stores client id `<round>-send`. Every other field is valid,
/// so a refusal can only be about the metadata.
async fn call_every_rpc(
    chat: &mut ChatClient<Channel>,
    chat_id: &str,
    metadata: &[(&'static str, &str)],
    round: &str,
) -> Vec<(&'static str, Result<(), Status>)> {
    let round = round.replace(' ', "-");
    let mut outcomes = Vec::new();

    let list = within(chat.list(request(metadata, ListRequest::default()))).await;
    outcomes.push(("List", list.map(drop)));

    let new = NewRequest {
        user_ids: vec!["alice".into(), "bob".into()],
    };
    let new = within(chat.new_chat(request(metadata, new))).await;
    outcomes.push(("New", new.map(drop)));

    let history = HistoryRequest {
        chat_id: chat_id.into(),
        ..Default::default()
    };
    let history = within(chat.history(request(metadata, history))).await;
    outcomes.push(("History", history.map(drop)));

    let send = send_request(chat_id, &format!("{round}-send"), "should this be stored?");
    let send = within(chat.send(request(metadata, send))).await;
    // The message MarkRead marks: the one just sent, or any id when Send was refused.
    let sent_id = send
        .as_ref()
        .ok()
        .and_then(|response| Some(response.get_ref().message.as_ref()?.id.clone()))
        .unwrap_or_else(|| "1".into());
    outcomes.push(("Send", send.map(drop)));

    let mark = MarkReadRequest {
        chat_id: chat_id.into(),
        up_to_id: sent_id,
    };
    let mark = within(chat.mark_read(request(metadata, mark))).await;
    outcomes.push(("MarkRead", mark.map(drop)));
    let typing = TypingRequest {
        chat_id: chat_id.into(),
    };
    let typing = within(chat.typing(request(metadata, typing))).await;
    outcomes.push(("Typing", typing.map(drop)));
    let settings = within(chat.get_settings(request(metadata, GetSettingsRequest {}))).await;
    outcomes.push(("GetSettings", settings.map(drop)));
    let update = Settings {
        private_receipts: Some(false),
    };
    let update = within(chat.update_settings(request(metadata, update))).await;
    outcomes.push(("UpdateSettings", update.map(drop)));

    let stream = StreamRequest {
        chat_id: chat_id.into(),
        after_id: String::new(),
    };
    let stream = match within(chat.stream(request(metadata, stream))).await {
        Err(status) => Err(status),
        Ok(response) => first_item(&mut response.into_inner()).await,
    };
    outcomes.push(("Stream", stream));

    let mut connect_metadata = metadata.to_vec();
    connect_metadata.push(("chat-id", chat_id));
    let connect = match open_connect(chat, None, &connect_metadata).await {
        Err(status) => Err(status),
        Ok((outbox, mut incoming)) => {
            let message = Message {
                client_id: format!("{round}-connect"),
                text: "should this be stored?".into(),
                ..Default::default()
            };
            // If the server already ended the stream, the send fails and the read below
            // reports why.
            let _ = outbox.send(message).await;
            first_item(&mut incoming).await
        }
    };
    outcomes.push(("Connect", connect));

    let block = BlockRequest {
        user_id: "bob".into(),
    };
    let blocked = within(chat.block(request(metadata, block.clone()))).await;
    outcomes.push(("Block", blocked.map(drop)));
    let unblocked = within(chat.unblock(request(metadata, block))).await;
    outcomes.push(("Unblock", unblocked.map(drop)));
    let listed = within(chat.list_blocked(request(metadata, ListBlockedRequest {}))).await;
    outcomes.push(("ListBlocked", listed.map(drop)));

    // Last: with a valid token it takes the caller out of the chat.
    let leave = LeaveRequest {
        chat_id: chat_id.into(),
    };
    let left = within(chat.leave(request(metadata, leave))).await;
    outcomes.push(("Leave", left.map(drop)));
    outcomes
}

/// Ok once a stream yields anything; the status if it fails first.
async fn first_item<T>(stream: &mut Streaming<T>) -> Result<(), Status> {
    match within(stream.message()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Status::unknown(
            "the stream ended without an item or a status",
        )),
        Err(status) => Err(status),
    }
}

#[tokio::test]
async fn every_chat_rpc_refuses_a_missing_or_bad_token() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let revoked = signed_in(&app, "alice").await;
    sign_out(&app, &revoked).await;

    let bad_authorizations: [(&str, Option<String>); 7] = [
        ("no authorization", None),
        ("token without Bearer", Some(alice.clone())),
        ("Basic scheme", Some(format!("Basic {alice}"))),
        ("Bearer and nothing", Some("Bearer ".into())),
        (
            "unknown token",
            Some("Bearer 3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
        (
            "token with a character changed",
            Some(format!("Bearer {}x", &alice[..alice.len() - 1])),
        ),
        ("revoked token", Some(format!("Bearer {revoked}"))),
    ];
    let mut chat = app.chat().await;
    for (case, authorization) in &bad_authorizations {
        let headers: Vec<_> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        let outcomes = call_every_rpc(&mut chat, &chat_id, &headers, case).await;
        for (rpc, outcome) in outcomes {
            match outcome {
                Err(status) => {
                    assert_eq!(
                        status.code(),
                        Code::Unauthenticated,
                        "{rpc} with {case}: {status:?}"
                    )
                }
                Ok(()) => panic!("{rpc} with {case} was accepted"),
            }
        }
    }

    // None of the refused calls stored anything.
    let history = history_of(&app, &alice, &chat_id).await;
    assert!(history.is_empty(), "a refused Send was stored: {history:?}");
}

#[tokio::test]
async fn a_valid_token_passes_every_chat_rpc() {
    // The positive control of the table above: the same calls with a good token succeed, so
    // the refusals really are about the token.
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;

    let bearer = format!("Bearer {alice}");
    let headers = [("authorization", bearer.as_str())];
    let outcomes = call_every_rpc(&mut chat, &chat_id, &headers, "valid").await;
    for (rpc, outcome) in outcomes {
        outcome.unwrap_or_else(|status| panic!("{rpc} with a valid token: {status:?}"));
    }
}

#[tokio::test]
async fn user_id_metadata_naming_someone_else_is_permission_denied_on_every_rpc() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;

    let bearer = format!("Bearer {alice}");
    let headers = [("authorization", bearer.as_str()), ("user-id", "bob")];
    let outcomes = call_every_rpc(&mut chat, &chat_id, &headers, "claims-bob").await;
    for (rpc, outcome) in outcomes {
        let status = outcome.expect_err(&format!("{rpc} as alice claiming to be bob was accepted"));
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
    }

    // Naming yourself, in any case, is the same as naming nobody.
    for me in ["alice", "Alice"] {
        let headers = [("authorization", bearer.as_str()), ("user-id", me)];
        let outcomes = call_every_rpc(&mut chat, &chat_id, &headers, me).await;
        for (rpc, outcome) in outcomes {
            outcome.unwrap_or_else(|status| panic!("{rpc} with user-id {me}: {status:?}"));
        }
    }
}

#[tokio::test]
async fn a_send_naming_another_sender_is_permission_denied_and_not_stored() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;

    let forged = SendRequest {
        user_id: "bob".into(),
        ..send_request(&chat_id, "forged", "from bob?")
    };
    let status = within(chat.send(authed(&alice, forged)))
        .await
        .expect_err("forged sender");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    for (client_id, user_id) in [("empty", ""), ("self", "alice"), ("self-upper", "ALICE")] {
        let request = SendRequest {
            user_id: user_id.into(),
            ..send_request(&chat_id, client_id, "hi")
        };
        let stored = within(chat.send(authed(&alice, request)))
            .await
            .unwrap_or_else(|status| panic!("user_id {user_id:?}: {status:?}"))
            .into_inner()
            .message
            .expect("stored message");
        assert_eq!(stored.user_id, "alice");
    }

    let history = history_of(&app, &alice, &chat_id).await;
    let client_ids: Vec<_> = history.iter().map(|m| m.client_id.as_str()).collect();
    assert_eq!(client_ids, ["empty", "self", "self-upper"]);
}

#[tokio::test]
async fn other_peoples_chats_look_exactly_like_missing_chats() {
    let app = spawn_app().await;
    let [alice, bob, _] = signed_up_all(&app, ["alice", "bob", "carol"]).await;
    let foreign = new_chat(&app, &bob, &["bob", "carol"]).await;
    let mut chat = app.chat().await;
    send_text(&mut chat, &bob, &foreign, "b1", "private").await;

    for chat_id in [foreign.as_str(), MISSING_CHAT] {
        let history = HistoryRequest {
            chat_id: chat_id.into(),
            ..Default::default()
        };
        let history = within(chat.history(authed(&alice, history)))
            .await
            .map(drop);

        let send = send_request(chat_id, "intruder", "let me in");
        let send = within(chat.send(authed(&alice, send))).await.map(drop);

        let stream = StreamRequest {
            chat_id: chat_id.into(),
            after_id: "0".into(),
        };
        let stream = streaming_failure(within(chat.stream(authed(&alice, stream))).await).await;

        let connect = match open_connect(&mut chat, Some(&alice), &[("chat-id", chat_id)]).await {
            Err(status) => status,
            Ok((_outbox, mut stream)) => failure_of(&mut stream).await,
        };

        for (rpc, outcome) in [
            ("History", history),
            ("Send", send),
            ("Stream", Err(stream)),
            ("Connect", Err(connect)),
        ] {
            let status =
                outcome.expect_err(&format!("{rpc} on {chat_id} was accepted for a non-member"));
            assert_eq!(
                status.code(),
                Code::NotFound,
                "{rpc} on {chat_id}: {status:?}"
            );
            assert_eq!(status.message(), "chat not found", "{rpc} on {chat_id}");
        }
    }

    // Alice's Send did not land in the chat she is not part of.
    let history = history_of(&app, &bob, &foreign).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].client_id, "b1");
}

/// One Chat call with a malformed field, made with no token: the field must not be read
/// before the caller is known, so the answer is UNAUTHENTICATED, never the validation
/// sentence (which would tell an anonymous peer how the server parses its input, and make it
/// do that work for nobody).
#[rustfmt::skip]
fn malformed_calls() -> Vec<(&'static str, Call)> {
    vec![
        ("List", Call::List),
        ("New with a malformed member", Call::New(NewRequest { user_ids: vec!["b@d".into()] })),
        ("New with no members", Call::New(NewRequest { user_ids: vec![] })),
        ("History of chat_id \"x\"", Call::History(HistoryRequest { chat_id: "x".into(), limit: -1, before_id: "abc".into() })),
        ("Send with nothing valid", Call::Send(SendRequest { chat_id: "x".into(), ..Default::default() })),
        ("Stream with a malformed after_id", Call::Stream(StreamRequest { chat_id: "x".into(), after_id: "abc".into() })),
        ("Leave of chat_id \"x\"", Call::Leave(LeaveRequest { chat_id: "x".into() })),
        ("Block of a malformed user", Call::Block(BlockRequest { user_id: "b@d".into() })),
        ("Unblock of nobody", Call::Unblock(BlockRequest { user_id: String::new() })),
        ("ListBlocked", Call::ListBlocked),
        ("MarkRead with nothing valid", Call::MarkRead(MarkReadRequest { chat_id: "x".into(), up_to_id: "abc".into() })),
        ("Typing in chat_id \"x\"", Call::Typing(TypingRequest { chat_id: "x".into() })),
        ("GetSettings", Call::GetSettings),
        ("UpdateSettings", Call::UpdateSettings),
    ]
}

enum Call {
    List,
    New(NewRequest),
    History(HistoryRequest),
    Send(SendRequest),
    Stream(StreamRequest),
    Leave(LeaveRequest),
    Block(BlockRequest),
    Unblock(BlockRequest),
    ListBlocked,
    MarkRead(MarkReadRequest),
    Typing(TypingRequest),
    GetSettings,
    UpdateSettings,
}

/// Makes `call` without a token on `chat`, over whichever transport it speaks.
macro_rules! refusal_without_token {
    ($chat:expr, $call:expr) => {
        match $call {
            Call::List => within($chat.list(ListRequest::default())).await.map(drop),
            Call::New(request) => within($chat.new_chat(request)).await.map(drop),
            Call::History(request) => within($chat.history(request)).await.map(drop),
            Call::Send(request) => within($chat.send(request)).await.map(drop),
            Call::Stream(request) => {
                Err(streaming_failure(within($chat.stream(request)).await).await)
            }
            Call::Leave(request) => within($chat.leave(request)).await.map(drop),
            Call::Block(request) => within($chat.block(request)).await.map(drop),
            Call::Unblock(request) => within($chat.unblock(request)).await.map(drop),
            Call::ListBlocked => within($chat.list_blocked(ListBlockedRequest {}))
                .await
                .map(drop),
            Call::MarkRead(request) => within($chat.mark_read(request)).await.map(drop),
            Call::Typing(request) => within($chat.typing(request)).await.map(drop),
            Call::GetSettings => within($chat.get_settings(GetSettingsRequest {}))
                .await
                .map(drop),
            Call::UpdateSettings => within($chat.update_settings(Settings::default()))
                .await
                .map(drop),
        }
    };
}

#[tokio::test]
async fn every_chat_rpc_authenticates_before_it_validates() {
    let app = spawn_app().await;
    let (_, alice) = signed_up(&app, "alice").await;
    let chat_id = new_chat(&app, &alice, &["alice"]).await;
    let mut native = app.chat().await;
    let mut web = app.web_chat();
    // Every row is tried before the verdict, so a failure lists all the calls that validate
    // first, not just the first one met.
    let mut answers = Vec::new();
    for (case, call) in malformed_calls() {
        let outcome = refusal_without_token!(native, call);
        answers.push((format!("native {case}"), outcome));
    }
    for (case, call) in malformed_calls() {
        let outcome = refusal_without_token!(web, call);
        answers.push((format!("gRPC-web {case}"), outcome));
    }
    // Connect is native only (gRPC-web has no client streaming); its fields are metadata.
    for metadata in [
        vec![("chat-id", "x")],
        vec![("chat-id", chat_id.as_str()), ("after-id", "abc")],
        vec![],
    ] {
        let outcome = match open_connect(&mut native, None, &metadata).await {
            Err(status) => Err(status),
            Ok((_outbox, mut incoming)) => Err(failure_of(&mut incoming).await),
        };
        answers.push((format!("native Connect with {metadata:?}"), outcome));
    }
    let wrong: Vec<String> = answers
        .into_iter()
        .filter_map(|(case, outcome)| match outcome {
            Ok(()) => Some(format!("{case}: accepted")),
            Err(status) if status.code() == Code::Unauthenticated => None,
            Err(status) => Some(format!(
                "{case}: {:?} {:?}",
                status.code(),
                status.message()
            )),
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "not UNAUTHENTICATED:\n{}",
        wrong.join("\n")
    );
}
