//! The Auth service: accounts are lower-cased and unique, sign-in leaks nothing about which
//! accounts exist, tokens expire and can be revoked one at a time, and neither passwords nor
//! tokens are ever written down, in the log or the database.

use std::time::Duration;

use chat_core::proto::{ListRequest, SignOutRequest};
use chat_core::reason::Reason;
use tonic::Code;

use crate::helpers::*;

/// The server's default token lifetime (`--token-ttl-secs`), 30 days.
const DEFAULT_TTL_SECS: i64 = 30 * 24 * 3600;

#[tokio::test]
async fn sign_up_creates_a_lower_cased_account_and_signs_it_in() {
    let app = spawn_app().await;
    let before = unix_now();

    let session = within(app.auth().await.sign_up(credentials("Alice", PASSWORD)))
        .await
        .expect("sign up")
        .into_inner();

    assert_eq!(session.user_id, "alice");
    assert!(
        session.token.len() >= 16,
        "token {:?} is too short to be unguessable",
        session.token
    );
    let expected = before + DEFAULT_TTL_SECS;
    assert!(
        (expected - 5..=unix_now() + DEFAULT_TTL_SECS + 5).contains(&session.expires_at),
        "expires_at {} should be about now + 30 days ({expected})",
        session.expires_at
    );
    within(
        app.chat()
            .await
            .list(authed(&session.token, ListRequest::default())),
    )
    .await
    .expect("the sign-up token should work at once");
}

#[tokio::test]
async fn a_taken_user_id_is_already_exists_whatever_its_case() {
    let app = spawn_app().await;
    signed_up(&app, "alice").await;
    let mut auth = app.auth().await;

    let status = within(auth.sign_up(credentials("ALICE", "another password")))
        .await
        .expect_err("a second alice must be refused");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    // The sign-up form labels the field "Username"; the sentence people read there says so.
    assert_eq!(
        status.message(),
        "the username \"alice\" is taken; choose another"
    );

    // The refused sign-up did not overwrite the account's password.
    within(auth.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("original password");
    let status = within(auth.sign_in(credentials("alice", "another password")))
        .await
        .expect_err("the refused password must not work");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn sign_in_accepts_any_case_and_issues_a_fresh_token() {
    let app = spawn_app().await;
    let (_, first_token) = signed_up(&app, "alice").await;

    let session = within(app.auth().await.sign_in(credentials("Alice", PASSWORD)))
        .await
        .expect("sign in as Alice")
        .into_inner();

    assert_eq!(session.user_id, "alice");
    assert_ne!(
        session.token, first_token,
        "each sign-in gets its own token"
    );
    assert!(session.expires_at > unix_now());
    let mut chat = app.chat().await;
    for token in [&first_token, &session.token] {
        within(chat.list(authed(token, ListRequest::default())))
            .await
            .expect("both tokens work");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    signed_up(&app, "alice").await;
    let mut auth = app.auth().await;

    let wrong_password = within(auth.sign_in(credentials("alice", "not the password")))
        .await
        .expect_err("wrong password");
    let unknown_user = within(auth.sign_in(credentials("nobody", PASSWORD)))
        .await
        .expect_err("unknown user");

    assert_eq!(
        wrong_password.code(),
        Code::Unauthenticated,
        "{wrong_password:?}"
    );
    assert_eq!(
        unknown_user.code(),
        Code::Unauthenticated,
        "{unknown_user:?}"
    );
    assert_eq!(wrong_password.message(), unknown_user.message());
    assert!(
        !wrong_password.message().is_empty(),
        "the refusal should say something"
    );
}

#[tokio::test]
async fn refusals_carry_their_reason_and_retry_hint_in_standard_error_details_on_both_transports() {
    // One failure a minute of an account's budget, one attempt per minute from an address:
    // each refusal below is met on the first or second try.
    let app = spawn_app_with(&[
        "--sign-in-free-failures",
        "1",
        "--sign-in-per-address-per-minute",
        "4",
        "--send-rate",
        "1",
        "--send-burst",
        "1",
    ])
    .await;
    let (_, alice) = signed_up(&app, "alice").await;
    let chat_id = new_chat(&app, &alice, &["alice"]).await;
    let mut native = app.auth().await;
    let mut web = app.web_auth();

    // What a client must tell apart, on the browser's transport as on the native one.
    let wrong = within(web.sign_in(credentials("alice", "not the password")))
        .await
        .expect_err("wrong password");
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    assert_eq!(
        error_details(&wrong),
        (Some(Reason::WrongCredentials), None)
    );
    let throttled = within(native.sign_in(credentials("alice", "not the password")))
        .await
        .expect_err("an attempt during the account's wait");
    assert_eq!(throttled.code(), Code::ResourceExhausted, "{throttled:?}");
    let (reason, retry) = error_details(&throttled);
    assert_eq!(reason, Some(Reason::AccountThrottled), "{throttled:?}");
    assert!(
        retry.is_some_and(|wait| wait > Duration::ZERO),
        "{throttled:?}"
    );

    let signed_out = within(app.web_chat().list(ListRequest::default()))
        .await
        .expect_err("no token");
    assert_eq!(
        error_details(&signed_out),
        (Some(Reason::TokenInvalid), None)
    );

    let mut chat = app.web_chat();
    within(chat.send(authed(&alice, send_request(&chat_id, "m1", "one"))))
        .await
        .expect("within the burst");
    let too_fast = within(chat.send(authed(&alice, send_request(&chat_id, "m2", "two"))))
        .await
        .expect_err("over the send rate");
    let (reason, retry) = error_details(&too_fast);
    assert_eq!(reason, Some(Reason::SendRate), "gRPC-web: {too_fast:?}");
    assert!(
        retry.is_some_and(|wait| wait <= Duration::from_secs(1)),
        "{too_fast:?}"
    );

    // The address has now made three attempts (sign-up, two sign-ins) of its four a minute.
    within(native.sign_in(credentials("nobody", PASSWORD)))
        .await
        .expect_err("an unknown user");
    let busy = within(web.sign_up(credentials("carol", PASSWORD)))
        .await
        .expect_err("over the address's budget");
    let (reason, retry) = error_details(&busy);
    assert_eq!(reason, Some(Reason::AddressThrottled), "gRPC-web: {busy:?}");
    assert!(retry.is_some(), "{busy:?}");
}

#[tokio::test]
async fn sign_out_revokes_only_the_token_it_was_called_with() {
    let app = spawn_app().await;
    let (_, signed_out) = signed_up(&app, "alice").await;
    let other = signed_in(&app, "alice").await;

    sign_out(&app, &signed_out).await;

    let mut chat = app.chat().await;
    let status = within(chat.list(authed(&signed_out, ListRequest::default())))
        .await
        .expect_err("a revoked token must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    within(chat.list(authed(&other, ListRequest::default())))
        .await
        .expect("the other session is untouched");
}

#[tokio::test]
async fn tokens_stop_working_when_they_expire() {
    // Two seconds, not one: the token must still be valid for the first check however close
    // to a second boundary it was issued.
    let app = spawn_app_with(&["--token-ttl-secs", "2"]).await;
    let before = unix_now();
    let session = within(app.auth().await.sign_up(credentials("alice", PASSWORD)))
        .await
        .expect("sign up")
        .into_inner();
    assert!(
        (before + 2..=unix_now() + 2).contains(&session.expires_at),
        "expires_at {} should be two seconds after sign-up ({before})",
        session.expires_at
    );
    let mut chat = app.chat().await;
    within(chat.list(authed(&session.token, ListRequest::default())))
        .await
        .expect("fresh token works");

    // Waiting for the clock to pass expires_at is the point of this test, not a race.
    while unix_now() <= session.expires_at {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let status = within(chat.list(authed(&session.token, ListRequest::default())))
        .await
        .expect_err("an expired token must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_tokens_appear_in_no_log_and_no_database_file() {
    // Distinctive, so that finding one is never a coincidence.
    let (password, wrong) = ("Pa55-unique-correct-7f3a", "Pa55-unique-wrong-9c1e");
    let mut server = spawn_process(&[]).await;
    let mut auth = server.auth().await;
    let signed_up = within(auth.sign_up(credentials("alice", password)))
        .await
        .expect("sign up")
        .into_inner();
    let signed_in = within(auth.sign_in(credentials("alice", password)))
        .await
        .expect("sign in")
        .into_inner();
    assert!(
        !signed_in.device.is_empty(),
        "a session comes with a device key"
    );
    let refused = within(auth.sign_in(credentials("alice", wrong))).await;
    assert_eq!(
        refused.expect_err("wrong password").code(),
        Code::Unauthenticated
    );
    let chat_id = new_chat(&server, &signed_in.token, &["alice"]).await;
    send_text(
        &mut server.chat().await,
        &signed_in.token,
        &chat_id,
        "m",
        "hello",
    )
    .await;
    within(auth.sign_out(authed(&signed_up.token, SignOutRequest {})))
        .await
        .expect("sign out");
    assert_eq!(server.terminate().await.code(), Some(0));

    let mut files = vec![("the log".to_owned(), server.log().into_bytes())];
    for entry in std::fs::read_dir(server.data_dir()).expect("the data directory") {
        let path = entry.expect("a directory entry").path();
        files.push((
            path.display().to_string(),
            std::fs::read(&path).expect("a file"),
        ));
    }
    if let Some(database) = server.database() {
        files.push((
            "the database".to_owned(),
            database.contents().await.into_bytes(),
        ));
    }
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    for (name, bytes) in &files {
        for (secret, what) in [
            (password, "the password"),
            (wrong, "a wrong password"),
            (signed_up.token.as_str(), "a revoked token"),
            (signed_in.token.as_str(), "a live token"),
            (signed_in.device.as_str(), "a device key"),
        ] {
            assert!(!contains(bytes, secret), "{what} is in {name}");
        }
    }
    // The accounts are there all the same, as argon2id hashes.
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, "$argon2id$")),
        "no argon2id hash in the data directory"
    );
}
