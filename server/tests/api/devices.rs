//! Device keys (OWASP's "device cookies"): a browser that signed in to an account before
//! shows the device key its session came with, and its attempts then climb a ladder of their
//! own instead of sharing the account's budget with every address. So guesses from many
//! addresses, which empty that budget, slow the guessers and not the owner's own devices.

use std::net::IpAddr;
use std::time::Duration;

use chat_core::proto::{ChangePasswordRequest, Credentials, Session};
use chat_core::reason::Reason;
use chat_core::wire;
use tonic::{Code, Status};

use crate::helpers::*;

/// The longest wait of the tests' ladders: the account's budget then refills one guess per
/// 30 s, so a refusal for an empty budget is told apart from a ladder's 1 s by its length.
const SETTINGS: [&str; 4] = [
    "--sign-in-free-failures",
    "2",
    "--sign-in-max-delay-secs",
    "30",
];

/// What the account's budget allows at once with `SETTINGS`: 2 free failures, the doublings
/// below 30 s (1, 2, 4, 8 and 16 s) and one spare.
const BUDGET: u8 = 8;

fn with_device(user: &str, password: &str, device: &str) -> Credentials {
    Credentials {
        device: device.to_owned(),
        ..credentials(user, password)
    }
}

fn address(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Guesses at `user`'s password once from each of `BUDGET` addresses, which empties the
/// account's budget, and checks that it is empty: the right password from yet another
/// address, with no device key, is refused for the account.
async fn empty_the_budget(app: &impl Server, user: &str) {
    for n in 0..BUDGET {
        let mut auth = app.auth_from(address(100 + n)).await;
        let status = within(auth.sign_in(credentials(user, "a wrong guess")))
            .await
            .expect_err("a wrong guess");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "guess {n}: {status:?}"
        );
    }
    let mut auth = app.auth_from(address(99)).await;
    let status = within(auth.sign_in(credentials(user, PASSWORD)))
        .await
        .expect_err("the budget is empty");
    assert_budget_empty(&status, "an empty budget waits for its refill");
}

/// The wait of a sign-in refused for the account (its ladder or its budget).
fn budget_wait(status: &Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let (reason, _) = error_details(status);
    assert_eq!(reason, Some(Reason::AccountThrottled), "{status:?}");
    Duration::from_millis(wire::retry_after_ms(status).expect("retry-after-ms"))
}

/// Checks that `status` is a refusal for the account's empty budget (its refill is seconds
/// away), not for a ladder (a second at most here).
fn assert_budget_empty(status: &Status, what: &str) {
    let wait = budget_wait(status);
    assert!(
        wait > Duration::from_secs(5),
        "{what}: waits {wait:?}: {status:?}"
    );
}

fn is_device_key(session: &Session) -> bool {
    session.device.len() == 64 && session.device.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_device_the_owner_signed_in_with_gets_in_while_many_addresses_have_emptied_the_budget() {
    let app = spawn_app_with(&SETTINGS).await;
    signed_up_all(&app, ["alice", "bob"]).await;
    let mut laptop = app.auth_from(address(2)).await;
    let first = within(laptop.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("the owner signs in")
        .into_inner();
    assert!(is_device_key(&first), "{:?}", first.device);
    assert_ne!(first.device, first.token);
    let bobs_device = within(app.auth().await.sign_in(credentials("bob", PASSWORD)))
        .await
        .expect("bob signs in")
        .into_inner()
        .device;

    empty_the_budget(&app, "alice").await;

    // The laptop's key gets the owner in at once, and the session keeps the same key.
    let again = within(laptop.sign_in(with_device("alice", PASSWORD, &first.device)))
        .await
        .expect("the owner's device is not kept out")
        .into_inner();
    assert_eq!(again.device, first.device);
    assert_ne!(again.token, first.token);
    // Also over gRPC-web, as the browser calls it.
    let web = within(
        app.web_auth()
            .sign_in(with_device("alice", PASSWORD, &first.device)),
    )
    .await
    .expect("the owner's device over gRPC-web")
    .into_inner();
    assert_eq!(web.device, first.device);

    // Bob's key and a made-up one count as none.
    for (what, key) in [
        ("another account's key", bobs_device.as_str()),
        ("a made-up key", &"5a".repeat(32)),
    ] {
        let status = within(laptop.sign_in(with_device("alice", PASSWORD, key)))
            .await
            .expect_err(what);
        assert_budget_empty(&status, what);
    }
    // A key in capitals is the same key.
    within(laptop.sign_in(with_device("alice", PASSWORD, &first.device.to_uppercase())))
        .await
        .expect("the key in capitals");

    // A device that guesses climbs its own ladder: its free failures, then 1 s.
    let mut thief = app.auth_from(address(3)).await;
    for n in 0..2 {
        let status = within(thief.sign_in(with_device("alice", "a wrong guess", &first.device)))
            .await
            .expect_err("a wrong password");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "guess {n}: {status:?}"
        );
    }
    let status = within(thief.sign_in(with_device("alice", PASSWORD, &first.device)))
        .await
        .expect_err("the device's ladder");
    let wait = budget_wait(&status);
    assert!(
        wait <= Duration::from_secs(1),
        "the ladder's first wait: {wait:?}"
    );
    tokio::time::sleep(wait).await;
    within(thief.sign_in(with_device("alice", PASSWORD, &first.device)))
        .await
        .expect("after the device's own wait");
}

#[tokio::test]
async fn a_malformed_device_key_is_refused_with_a_sentence_on_both_transports() {
    let app = spawn_app_with(&SETTINGS).await;
    signed_up(&app, "alice").await;
    for key in ["xyz", &"g".repeat(64), &"ab".repeat(33)] {
        let native = within(
            app.auth()
                .await
                .sign_in(with_device("alice", PASSWORD, key)),
        )
        .await;
        let web = within(app.web_auth().sign_in(with_device("alice", PASSWORD, key))).await;
        for (transport, outcome) in [("native", native), ("gRPC-web", web)] {
            let status = outcome.expect_err(transport);
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{transport}: {status:?}"
            );
            assert!(
                status.message().contains("device must be the device key"),
                "{transport}: {status:?}"
            );
        }
    }
    // Nothing was counted against the account: the free failures are all there.
    within(app.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("signs in");
}

#[tokio::test]
async fn a_password_change_from_a_known_device_gets_through_and_forgets_every_other_key() {
    let app = spawn_app_with(&SETTINGS).await;
    signed_up(&app, "alice").await;
    let mut laptop = app.auth_from(address(2)).await;
    let old = within(laptop.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("signs in")
        .into_inner();
    // A second device of hers, which the change must sign out of its key too.
    let phone = within(
        app.auth_from(address(4))
            .await
            .sign_in(credentials("alice", PASSWORD)),
    )
    .await
    .expect("signs in")
    .into_inner();
    empty_the_budget(&app, "alice").await;

    // Checking the old password is a sign-in attempt: without a key it waits for the budget,
    // with the laptop's it climbs the laptop's ladder and goes through.
    let new_password = "a new password, long enough";
    let change = |device: &str| {
        authed(
            &old.token,
            ChangePasswordRequest {
                old_password: PASSWORD.to_owned(),
                new_password: new_password.to_owned(),
                device: device.to_owned(),
            },
        )
    };
    let status = within(laptop.change_password(change("")))
        .await
        .expect_err("no key: the budget is empty");
    assert_budget_empty(&status, "refused for the budget");
    let changed = within(laptop.change_password(change(&old.device)))
        .await
        .expect("the laptop's key gets the change through")
        .into_inner();
    assert!(is_device_key(&changed), "{:?}", changed.device);
    assert_ne!(changed.device, old.device);

    // Every earlier key is forgotten, the laptop's own and the phone's; the new one works.
    for (what, key) in [
        ("the laptop's old key", &old.device),
        ("the phone's key", &phone.device),
    ] {
        let status = within(laptop.sign_in(with_device("alice", new_password, key)))
            .await
            .expect_err(what);
        assert_budget_empty(&status, what);
    }
    within(laptop.sign_in(with_device("alice", new_password, &changed.device)))
        .await
        .expect("the key of the new session");
}

#[tokio::test]
async fn an_account_keeps_its_newest_twenty_device_keys() {
    let app = spawn_app_with(&SETTINGS).await;
    signed_up(&app, "alice").await;
    let mut auth = app.auth_from(address(2)).await;
    let mut devices = Vec::new();
    for _ in 0..21 {
        let session = within(auth.sign_in(credentials("alice", PASSWORD)))
            .await
            .expect("signs in")
            .into_inner();
        devices.push(session.device);
    }
    empty_the_budget(&app, "alice").await;
    let status = within(auth.sign_in(with_device("alice", PASSWORD, &devices[0])))
        .await
        .expect_err("the oldest of 21 is forgotten");
    assert_budget_empty(&status, "refused for the budget");
    within(auth.sign_in(with_device("alice", PASSWORD, &devices[1])))
        .await
        .expect("the second oldest is kept");
}

/// On PostgreSQL, a key is the account's on every server, and so are its ladder and the budget
/// it stays out of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_key_from_one_server_is_honoured_by_another_sharing_the_database() {
    if !on_postgres() {
        return;
    }
    let first = spawn_process(&SETTINGS).await;
    let second = spawn_process_sharing(&first, &SETTINGS).await;
    signed_up(&first, "alice").await;
    let laptop = within(
        first
            .auth_from(address(2))
            .await
            .sign_in(credentials("alice", PASSWORD)),
    )
    .await
    .expect("signs in on the first")
    .into_inner();

    // The budget emptied through the second server is empty on the first too; the key the
    // first server gave the laptop gets it in on the second.
    empty_the_budget(&second, "alice").await;
    let status = within(first.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect_err("the shared budget is empty on the first server too");
    assert_budget_empty(&status, "refused for the budget");
    let again = within(second.auth_from(address(2)).await.sign_in(with_device(
        "alice",
        PASSWORD,
        &laptop.device,
    )))
    .await
    .expect("the key the first server gave out, on the second")
    .into_inner();
    assert_eq!(again.device, laptop.device);

    // The key's ladder is one for both: two failures on the first, then the second waits.
    for n in 0..2 {
        let status = within(first.auth_from(address(3)).await.sign_in(with_device(
            "alice",
            "a wrong guess",
            &laptop.device,
        )))
        .await
        .expect_err("a wrong password");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "guess {n}: {status:?}"
        );
    }
    let status = within(second.auth_from(address(3)).await.sign_in(with_device(
        "alice",
        PASSWORD,
        &laptop.device,
    )))
    .await
    .expect_err("the key's ladder, counted on the other server");
    assert!(budget_wait(&status) <= Duration::from_secs(1), "{status:?}");
}
