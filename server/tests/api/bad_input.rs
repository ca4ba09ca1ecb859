//! Bad input, table-driven: each row is one request that must get INVALID_ARGUMENT with a
//! short message naming the offending field, and afterwards nothing may have been stored.
//! Validation comes from `chat_core`, so the limits here are its constants, not copies.

use chat_core::limits::{
    CLIENT_ID_MAX_CHARS, MEMBERS_MAX, PASSWORD_MAX_CHARS, SUBJECT_MAX_CHARS, TEXT_MAX_CHARS,
    USER_ID_MAX_CHARS,
};
use chat_core::proto::{
    Credentials, HistoryRequest, Message, NewRequest, SendRequest, StreamRequest,
};
use tonic::{Code, Status};

use crate::helpers::*;

/// One request of the table.
enum Call {
    Send(SendRequest),
    History(HistoryRequest),
    Stream(StreamRequest),
    New(Vec<String>),
    SignUp(Credentials),
    /// Connect with this metadata besides `authorization`.
    Connect(Vec<(&'static str, String)>),
}

struct Row {
    case: &'static str,
    call: Call,
    /// A word the error message must contain, compared with `-` and `_` read as spaces, so
    /// "chat_id" and "chat-id" both satisfy "chat id".
    mentions: &'static str,
}

fn row(case: &'static str, call: Call, mentions: &'static str) -> Row {
    Row {
        case,
        call,
        mentions,
    }
}

/// Every bad request, for a chat `chat_id` of which alice is a member. One row per line, so
/// the table reads as a table.
#[rustfmt::skip]
fn table(chat_id: &str) -> Vec<Row> {
    let send = |client_id: &str, text: &str| Call::Send(send_request(chat_id, client_id, text));
    let send_with = |request: SendRequest| Call::Send(request);
    let history = |chat_id: &str, limit: i32, before_id: &str| {
        Call::History(HistoryRequest { chat_id: chat_id.into(), limit, before_id: before_id.into() })
    };
    let stream = |chat_id: &str, after_id: &str| {
        Call::Stream(StreamRequest { chat_id: chat_id.into(), after_id: after_id.into() })
    };
    let sign_up = |user_id: &str, password: &str| Call::SignUp(credentials(user_id, password));
    let crowd: Vec<String> = std::iter::once("alice".to_owned())
        .chain((1..=MEMBERS_MAX).map(|n| format!("user{n}")))
        .collect();
    let base = send_request(chat_id, "ok-id", "fine");

    vec![
        row("blank text", send("t1", " \n\t "), "text"),
        row("empty text", send("t2", ""), "text"),
        row("text one character over the limit", send("t3", &"x".repeat(TEXT_MAX_CHARS + 1)), "text"),
        row("multi-byte text over the limit", send("t4", &"é".repeat(TEXT_MAX_CHARS + 1)), "text"),
        // Far over the text limit yet under the request size limit (64 KiB by default), so
        // validation, not the transport, answers; `limits` covers larger requests.
        row("text of 60,000 characters", send("t5", &"x".repeat(60_000)), "text"),
        row("control character in text", send("t6", "ring the bell\u{7}"), "text"),
        row("NUL in text", send("t7", "nul\0byte"), "text"),
        row("text of zero-width characters", send("t8", "\u{200B}\u{2060}\u{FEFF}"), "text"),
        row("text of bidi marks and spaces", send("t9", " \u{200F}\u{200E}\u{3164} "), "text"),
        row("subject of zero-width characters", send_with(SendRequest { subject: "\u{200B}\u{200D}".into(), ..base.clone() }), "subject"),
        row("subject with a newline", send_with(SendRequest { subject: "two\nlines".into(), ..base.clone() }), "subject"),
        row("subject over the limit", send_with(SendRequest { subject: "s".repeat(SUBJECT_MAX_CHARS + 1), ..base.clone() }), "subject"),
        row("missing client_id", send("", "hi"), "client id"),
        row("client_id with spaces", send("has spaces", "hi"), "client id"),
        row("client_id over the limit", send(&"c".repeat(CLIENT_ID_MAX_CHARS + 1), "hi"), "client id"),
        row("Send without chat_id", send_with(SendRequest { chat_id: String::new(), ..base.clone() }), "chat id"),
        row("malformed chat_id", send_with(SendRequest { chat_id: "not-a-chat".into(), ..base.clone() }), "chat id"),
        row("upper-case chat_id", send_with(SendRequest { chat_id: chat_id.to_uppercase(), ..base.clone() }), "chat id"),
        row("malformed user_id", send_with(SendRequest { user_id: "b@d".into(), ..base.clone() }), "username"),
        row("History without chat_id", history("", 0, ""), "chat id"),
        row("History of a malformed chat_id", history("xyz", 0, ""), "chat id"),
        row("negative limit", history(chat_id, -1, ""), "limit"),
        row("before_id not a number", history(chat_id, 0, "abc"), "before id"),
        row("before_id with a sign", history(chat_id, 0, "+5"), "before id"),
        row("negative before_id", history(chat_id, 0, "-1"), "before id"),
        row("before_id over 64 bits", history(chat_id, 0, "18446744073709551616"), "before id"),
        row("Stream of a malformed chat_id", stream("xyz", ""), "chat id"),
        row("after_id not a number", stream(chat_id, "x1"), "after id"),
        row("after_id on the all-chats stream", stream("", "1.5"), "after id"),
        row("empty user_ids", Call::New(vec![]), "user ids"),
        row("too many members", Call::New(crowd), "members"),
        row("malformed member id", Call::New(vec!["alice".into(), "b@d".into()]), "username"),
        row("user id too short", sign_up("ab", PASSWORD), "username"),
        row("user id too long", sign_up(&"u".repeat(USER_ID_MAX_CHARS + 1), PASSWORD), "username"),
        row("user id with a space", sign_up("al ice", PASSWORD), "username"),
        row("user id with a non-ASCII letter", sign_up("bøb", PASSWORD), "username"),
        row("user id starting with an underscore", sign_up("_dave", PASSWORD), "username"),
        row("short password", sign_up("dave", "short"), "password"),
        row("password over the limit", sign_up("erin", &"p".repeat(PASSWORD_MAX_CHARS + 1)), "password"),
        row("Connect without chat-id", Call::Connect(vec![]), "chat id"),
        row("Connect with a malformed chat-id", Call::Connect(vec![("chat-id", "xyz".into())]), "chat id"),
        row("Connect with a malformed after-id", Call::Connect(vec![("chat-id", chat_id.into()), ("after-id", "abc".into())]), "after id"),
    ]
}

/// Makes the call as alice and returns how it failed, or panics if it succeeded.
async fn refusal(app: &TestApp, alice: &str, case: &str, call: Call) -> Status {
    let mut chat = app.chat().await;
    let outcome = match call {
        Call::Send(request) => within(chat.send(authed(alice, request))).await.map(drop),
        Call::History(request) => within(chat.history(authed(alice, request))).await.map(drop),
        Call::New(user_ids) => within(chat.new_chat(authed(alice, NewRequest { user_ids })))
            .await
            .map(drop),
        Call::SignUp(credentials) => within(app.auth().await.sign_up(credentials))
            .await
            .map(drop),
        Call::Stream(request) => {
            Err(streaming_failure(within(chat.stream(authed(alice, request))).await).await)
        }
        Call::Connect(metadata) => {
            let metadata: Vec<(&'static str, &str)> = metadata
                .iter()
                .map(|(key, value)| (*key, value.as_str()))
                .collect();
            match open_connect(&mut chat, Some(alice), &metadata).await {
                Err(status) => Err(status),
                Ok((_outbox, mut incoming)) => Err(failure_of(&mut incoming).await),
            }
        }
    };
    outcome.expect_err(&format!("{case}: the server accepted it"))
}

#[tokio::test]
async fn bad_input_is_invalid_argument_with_a_readable_message_and_stores_nothing() {
    let app = spawn_app().await;
    let (alice, _, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let before = send_text(&mut chat, &alice, &chat_id, "before", "the only message").await;

    let mut failures = Vec::new();
    for Row {
        case,
        call,
        mentions,
    } in table(&chat_id)
    {
        let status = refusal(&app, &alice, case, call).await;
        let message = status.message().to_lowercase().replace(['-', '_'], " ");
        if status.code() != Code::InvalidArgument {
            failures.push(format!("{case}: expected InvalidArgument, got {status:?}"));
        } else if !message.contains(mentions) {
            failures.push(format!(
                "{case}: message {:?} does not mention {mentions:?}",
                status.message()
            ));
        } else if status.message().len() > 300 {
            failures.push(format!(
                "{case}: a {}-byte message is not for people",
                status.message().len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing was stored: the chat holds only the message from before, no chat was created
    // and no account either.
    assert_eq!(history_of(&app, &alice, &chat_id).await, [before]);
    let chats = chats_of(&app, &alice).await;
    assert_eq!(chats.len(), 1, "a refused New created a chat: {chats:?}");
    let mut auth = app.auth().await;
    for user in ["dave", "erin"] {
        within(auth.sign_up(credentials(user, PASSWORD)))
            .await
            .unwrap_or_else(|status| {
                panic!("a refused sign-up left an account {user}: {status:?}")
            });
    }
    for (user, password) in [
        ("ab", PASSWORD),
        ("al ice", PASSWORD),
        ("_dave", PASSWORD),
        ("dave", "short"),
    ] {
        let status = within(auth.sign_in(credentials(user, password)))
            .await
            .expect_err("a refused sign-up must not sign anyone in");
        assert!(
            matches!(status.code(), Code::InvalidArgument | Code::Unauthenticated),
            "sign in as {user:?}: {status:?}"
        );
    }
}

#[tokio::test]
async fn values_at_the_limits_are_accepted() {
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let mut chat = app.chat().await;

    let longest = SendRequest {
        client_id: "c".repeat(CLIENT_ID_MAX_CHARS),
        subject: "s".repeat(SUBJECT_MAX_CHARS),
        text: "é".repeat(TEXT_MAX_CHARS),
        ..send_request(&chat_id, "", "")
    };
    let stored = within(chat.send(authed(&alice, longest.clone())))
        .await
        .expect("a message at every limit is valid")
        .into_inner()
        .message
        .expect("stored message");
    assert_eq!(
        (stored.text, stored.subject),
        (longest.text, longest.subject)
    );
    let tabbed = send_text(
        &mut chat,
        &alice,
        &chat_id,
        "tabs",
        "line one\n\tline two\r\n",
    )
    .await;
    assert_eq!(
        tabbed.text, "line one\n\tline two\r\n",
        "line breaks and tabs are not control input"
    );

    let mut auth = app.auth().await;
    let longest_id = "u".repeat(USER_ID_MAX_CHARS);
    for (user_id, password) in [
        ("abc", "8 chars!"),
        (longest_id.as_str(), &"p".repeat(PASSWORD_MAX_CHARS)),
        ("a.b_c-d9", PASSWORD),
    ] {
        within(auth.sign_up(credentials(user_id, password)))
            .await
            .unwrap_or_else(|status| panic!("sign up {user_id:?}: {status:?}"));
    }

    // A connect message in the chat also passes at the limits.
    let (outbox, mut incoming) = open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
        .await
        .expect("connect");
    let message = Message {
        client_id: "connect-max".into(),
        text: "é".repeat(TEXT_MAX_CHARS),
        ..Default::default()
    };
    outbox.send(message).await.expect("the stream is open");
    assert_eq!(
        take(&mut incoming, 1).await[0].text.chars().count(),
        TEXT_MAX_CHARS
    );
}

#[tokio::test]
async fn right_to_left_text_with_bidi_marks_is_stored_as_written_and_invisible_text_is_not() {
    let app = spawn_app().await;
    let (_, alice) = signed_up(&app, "alice").await;
    let chat_id = new_chat(&app, &alice, &["alice"]).await;
    let mut chat = app.chat().await;
    let arabic = "\u{200F}مرحبا\u{200F} (v2.0)";
    let hebrew = "שלום\u{200E}!\u{200F}";
    let request = SendRequest {
        subject: "\u{2067}تحية\u{2069}".into(),
        ..send_request(&chat_id, "arabic", arabic)
    };
    let stored = within(chat.send(authed(&alice, request.clone())))
        .await
        .expect("Arabic with right-to-left marks")
        .into_inner()
        .message
        .expect("stored message");
    assert_eq!(
        (stored.text, stored.subject),
        (request.text, request.subject)
    );

    // Connect validates the same way: a visible message is echoed, an invisible one ends the
    // stream with the reason, and neither the invisible one nor anything after it is stored.
    let (outbox, mut incoming) = open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
        .await
        .expect("connect");
    for (client_id, text) in [("hebrew", hebrew), ("blank", "\u{2060}\u{FEFF}")] {
        let message = Message {
            client_id: client_id.into(),
            text: text.into(),
            ..Default::default()
        };
        outbox.send(message).await.expect("the stream is open");
    }
    let echoed = take(&mut incoming, 1).await;
    assert_eq!(echoed[0].text, hebrew);
    let status = failure_of(&mut incoming).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let texts: Vec<_> = history_of(&app, &alice, &chat_id)
        .await
        .into_iter()
        .map(|message| message.text)
        .collect();
    assert_eq!(texts, [arabic, hebrew]);
}
