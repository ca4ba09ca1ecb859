//! Abuse limits, each set low by the test through its flag: the size of a request, streams
//! per user, messages per second per user, and sign-in attempts per account and per address.
//! Every refusal is RESOURCE_EXHAUSTED (OUT_OF_RANGE for size, tonic's code) with a sentence;
//! rate limits also carry `retry-after-ms`, and waiting that long is enough.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chat_core::proto::{Credentials, Message, NewRequest, StreamRequest};
use chat_core::reason::Reason;
use chat_core::wire;
use tonic::{Code, Status};

use crate::helpers::*;

/// The retry hint of a rate-limited call, which must be there and be sensible: in gRPC's
/// standard details (`RetryInfo`, with an `ErrorInfo` naming `reason`), and the same figure in
/// the `retry-after-ms` metadata older clients read.
fn retry_after(status: &Status, reason: Reason) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let millis =
        wire::retry_after_ms(status).unwrap_or_else(|| panic!("no retry-after-ms in {status:?}"));
    assert!(millis > 0, "{status:?}");
    assert!(
        status.message().contains("try again in"),
        "the message must say when to retry: {status:?}"
    );
    let (carried, retry) = error_details(status);
    assert_eq!(carried, Some(reason), "{status:?}");
    let retry = retry.unwrap_or_else(|| panic!("no RetryInfo in {status:?}"));
    assert_eq!(
        u64::try_from(retry.as_millis().max(1)).ok(),
        Some(millis),
        "RetryInfo and retry-after-ms disagree in {status:?}"
    );
    Duration::from_millis(millis)
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_and_the_default_fits_the_largest_valid_one() {
    let small = spawn_app_with(&["--max-request-bytes", "1024"]).await;
    let (alice, chat_id) = alice_alone(&small).await;
    // 600 two-byte characters: valid text, but 1,200 bytes on the wire.
    let big = "é".repeat(600);
    let status = within(
        small
            .chat()
            .await
            .send(authed(&alice, send_request(&chat_id, "big", &big))),
    )
    .await
    .expect_err("an oversize request was accepted");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("1024"), "{status:?}");
    let status = within(
        small
            .web_chat()
            .send(authed(&alice, send_request(&chat_id, "big", &big))),
    )
    .await
    .expect_err("an oversize gRPC-web request was accepted");
    assert_eq!(status.code(), Code::OutOfRange, "gRPC-web: {status:?}");
    let mut chat = small.chat().await;
    let fits = send_text(&mut chat, &alice, &chat_id, "small", "fits").await;
    assert_eq!(history_of(&small, &alice, &chat_id).await, [fits]);

    // The default limit takes the largest request validation allows.
    let app = spawn_app().await;
    let (alice, chat_id) = alice_alone(&app).await;
    let largest = chat_core::proto::SendRequest {
        subject: "😀".repeat(chat_core::limits::SUBJECT_MAX_CHARS),
        ..send_request(
            &chat_id,
            &"c".repeat(chat_core::limits::CLIENT_ID_MAX_CHARS),
            &"😀".repeat(chat_core::limits::TEXT_MAX_CHARS),
        )
    };
    within(app.chat().await.send(authed(&alice, largest)))
        .await
        .expect("the largest valid Send");
}

#[tokio::test]
async fn streams_per_user_are_limited_and_a_closed_one_frees_its_slot() {
    let app = spawn_app_with(&["--max-streams-per-user", "2"]).await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;

    let first = open_stream(&mut chat, &alice, "", "").await;
    let _connect = open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
        .await
        .expect("a Connect within the limit");
    let request = StreamRequest::default();
    let status = streaming_failure(within(chat.stream(authed(&alice, request))).await).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("close one"), "{status:?}");
    assert_eq!(
        error_details(&status).0,
        Some(Reason::TooManyStreams),
        "{status:?}"
    );
    let status = match open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)]).await {
        Err(status) => status,
        Ok((_outbox, mut incoming)) => failure_of(&mut incoming).await,
    };
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "Connect: {status:?}"
    );
    // Others are not affected.
    let _bobs = open_stream(&mut chat, &bob, "", "").await;

    drop(first);
    // The server learns of the close when the client's reset arrives: retry briefly.
    within(async {
        loop {
            let request = StreamRequest::default();
            match chat.stream(authed(&alice, request)).await {
                Ok(_) => break,
                Err(status) if status.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => panic!("{status:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn sending_faster_than_the_rate_is_refused_with_a_hint_that_works() {
    let app = spawn_app_with(&["--send-rate", "2", "--send-burst", "3"]).await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let mut sent = send_in_order(&mut chat, &alice, &chat_id, "m", 3, "burst").await;

    let status = within(chat.send(authed(&alice, send_request(&chat_id, "m3", "too fast"))))
        .await
        .expect_err("a send over the rate was accepted");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("2 messages per second"),
        "{status:?}"
    );
    let wait = retry_after(&status, Reason::SendRate);
    assert!(
        wait <= Duration::from_millis(500),
        "{wait:?} at 2 per second"
    );
    assert_eq!(
        history_of(&app, &alice, &chat_id).await,
        sent,
        "nothing stored"
    );
    // The limit is per user.
    send_text(&mut chat, &bob, &chat_id, "b0", "my own budget").await;

    tokio::time::sleep(wait).await;
    sent.push(send_text(&mut chat, &alice, &chat_id, "m3", "too fast").await);
}

#[tokio::test]
async fn the_other_calls_share_one_budget_per_user_refused_with_a_hint_that_works() {
    use chat_core::proto::{
        BlockRequest, GetSettingsRequest, HistoryRequest, ListBlockedRequest, ListRequest,
        MarkReadRequest, SearchRequest,
    };

    let app = spawn_app_with(&["--call-rate", "2", "--call-burst", "6"]).await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut chat = app.chat().await;
    let sent = send_text(&mut chat, &alice, &chat_id, "m0", "hello").await;

    // Reads, a read mark, the settings and a block (a write each) draw on one budget of 6.
    let history = || HistoryRequest {
        chat_id: chat_id.clone(),
        ..Default::default()
    };
    within(chat.history(authed(&alice, history())))
        .await
        .expect("History");
    within(chat.list(authed(&alice, ListRequest::default())))
        .await
        .expect("List");
    let search = SearchRequest {
        query: "hello".to_owned(),
        ..Default::default()
    };
    within(chat.search(authed(&alice, search)))
        .await
        .expect("Search");
    let mark = MarkReadRequest {
        chat_id: chat_id.clone(),
        up_to_id: sent.id.clone(),
    };
    within(chat.mark_read(authed(&alice, mark)))
        .await
        .expect("MarkRead");
    within(chat.get_settings(authed(&alice, GetSettingsRequest::default())))
        .await
        .expect("GetSettings");
    let block = BlockRequest {
        user_id: "carol".to_owned(),
    };
    let refused = within(chat.block(authed(&alice, block)))
        .await
        .map(drop)
        .err();
    // Carol has no account: refused by the store, but the call still counted.
    assert!(refused.is_none_or(|status| status.code() != Code::ResourceExhausted));

    // The seventh is refused, natively and over gRPC-web, with a sentence and a wait.
    let status = within(chat.list_blocked(authed(&alice, ListBlockedRequest::default())))
        .await
        .expect_err("a call over the budget was answered");
    assert!(
        status.message().contains("more than 2 requests per second"),
        "{status:?}"
    );
    let wait = retry_after(&status, Reason::CallRate);
    assert!(
        wait <= Duration::from_millis(500),
        "{wait:?} at 2 per second"
    );
    let status = within(app.web_chat().history(authed(&alice, history())))
        .await
        .expect_err("a gRPC-web call over the budget was answered");
    retry_after(&status, Reason::CallRate);

    // Sending is not one of these calls, and the budget is per user.
    send_text(&mut chat, &alice, &chat_id, "m1", "still sending").await;
    within(chat.history(authed(&bob, history())))
        .await
        .expect("Bob's own budget");

    tokio::time::sleep(wait).await;
    let page = within(chat.history(authed(&alice, history())))
        .await
        .expect("History after the wait")
        .into_inner();
    assert_eq!(page.messages.len(), 2);
}

/// What a flood of Block, Unblock and Search calls from one account got, and what another
/// user's Sends took meanwhile.
struct Flood {
    answered: usize,
    refused: usize,
    seconds: f64,
    sends: Vec<Duration>,
}

/// Mallory floods the server for `FLOOD` with Block, Unblock (a write each) and Search calls
/// from 16 tasks, while Bob sends a message every 50 ms.
async fn flood(server: &ServerProcess) -> Flood {
    use chat_core::proto::{BlockRequest, SearchRequest};
    const FLOOD: Duration = Duration::from_secs(2);

    let [mallory, bob] = signed_up_all(server, ["mallory", "bob"]).await;
    signed_up(server, "victim").await;
    let chat_id = new_chat(server, &bob, &["bob"]).await;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (mut chat, mallory) = (server.chat().await, mallory.clone());
        tasks.push(tokio::spawn(async move {
            let (mut answered, mut refused) = (0, 0);
            let mut turn = task;
            while began.elapsed() < FLOOD {
                turn += 1;
                let block = || {
                    authed(
                        &mallory,
                        BlockRequest {
                            user_id: "victim".to_owned(),
                        },
                    )
                };
                let outcome = match turn % 3 {
                    0 => chat.block(block()).await.map(drop),
                    1 => chat.unblock(block()).await.map(drop),
                    _ => {
                        let search = SearchRequest {
                            query: "me".to_owned(),
                            ..Default::default()
                        };
                        chat.search(authed(&mallory, search)).await.map(drop)
                    }
                };
                match outcome {
                    Ok(()) => answered += 1,
                    Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
                    Err(status) => panic!("the flood got {status:?}"),
                }
            }
            (answered, refused)
        }));
    }
    let mut chat = server.chat().await;
    let mut sends = Vec::new();
    let mut next = 0;
    while began.elapsed() < FLOOD {
        let sent = Instant::now();
        send_text(
            &mut chat,
            &bob,
            &chat_id,
            &format!("b{next}"),
            "amid the flood",
        )
        .await;
        sends.push(sent.elapsed());
        next += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut answered, mut refused) = (0, 0);
    for task in tasks {
        let (a, r) = task.await.expect("a flooding task");
        (answered, refused) = (answered + a, refused + r);
    }
    sends.sort();
    Flood {
        answered,
        refused,
        seconds: began.elapsed().as_secs_f64(),
        sends,
    }
}

fn report(label: &str, flood: &Flood) {
    let at = |q: f64| flood.sends[((flood.sends.len() - 1) as f64 * q) as usize];
    println!(
        "{label}: flood answered {} and refused {} in {:.1} s; Bob's {} Sends p50 {:?}, max {:?}",
        flood.answered,
        flood.refused,
        flood.seconds,
        flood.sends.len(),
        at(0.5),
        at(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_flooding_blocks_and_searches_is_held_to_its_budget() {
    // Without the budget (as before it existed): for the record, not judged.
    let unlimited = spawn_process(&["--call-rate", "0"]).await;
    report("no budget", &flood(&unlimited).await);
    drop(unlimited);

    // With the default budget (20 a second, 100 at once): the flood gets at most what the
    // budget allows over its length, and the rest is refused before it costs anything.
    let server = spawn_process(&["--call-rate", "20", "--call-burst", "100"]).await;
    let held = flood(&server).await;
    report("default budget", &held);
    let allowed = 100.0 + 20.0 * held.seconds;
    assert!(
        held.answered as f64 <= allowed + 1.0,
        "{} calls answered in {:.1} s",
        held.answered,
        held.seconds
    );
    assert!(held.refused > 0, "nothing refused");
}

#[tokio::test]
async fn starting_chats_faster_than_the_rate_is_refused_with_a_hint_and_creates_nothing() {
    let app = spawn_app_with(&["--new-chat-per-minute", "3"]).await;
    let [mallory, victim, _, _, _] =
        signed_up_all(&app, ["mallory", "victim", "pup1", "pup2", "pup3"]).await;
    for puppet in ["pup1", "pup2", "pup3"] {
        new_chat(&app, &mallory, &["mallory", "victim", puppet]).await;
    }

    let mut chat = app.chat().await;
    let fourth = NewRequest {
        user_ids: vec!["mallory".into(), "victim".into()],
    };
    let status = within(chat.new_chat(authed(&mallory, fourth.clone())))
        .await
        .expect_err("a New over the rate was accepted");
    assert!(
        status.message().contains("3 chats per minute"),
        "{status:?}"
    );
    let wait = retry_after(&status, Reason::NewChatRate);
    assert!(
        (Duration::from_secs(10)..=Duration::from_secs(20)).contains(&wait),
        "{wait:?} at 3 per minute"
    );
    assert_eq!(chats_of(&app, &victim).await.len(), 3, "nothing created");

    // The limit is per user, and refused over gRPC-web the same way.
    new_chat(&app, &victim, &["victim", "pup1"]).await;
    let status = within(app.web_chat().new_chat(authed(&mallory, fourth)))
        .await
        .expect_err("a New over the rate was accepted over gRPC-web");
    retry_after(&status, Reason::NewChatRate);
}

#[tokio::test]
async fn connect_is_slowed_down_to_the_rate_not_cut_off() {
    const MESSAGES: usize = 6;
    let app = spawn_app_with(&["--send-rate", "5", "--send-burst", "1"]).await;
    let (alice, chat_id) = alice_alone(&app).await;
    let mut chat = app.chat().await;
    let (outbox, mut incoming) = open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
        .await
        .expect("connect");

    let started = Instant::now();
    for n in 0..MESSAGES {
        let message = Message {
            client_id: format!("c{n}"),
            text: "quick".into(),
            ..Default::default()
        };
        within(outbox.send(message))
            .await
            .expect("the stream closed");
    }
    let echoes = take(&mut incoming, MESSAGES).await;
    let elapsed = started.elapsed();
    let client_ids: Vec<_> = echoes.iter().map(|m| m.client_id.as_str()).collect();
    assert_eq!(client_ids, ["c0", "c1", "c2", "c3", "c4", "c5"]);
    // One at once, then one every 200 ms.
    assert!(
        elapsed >= Duration::from_millis(900),
        "{MESSAGES} messages at 5 per second took only {elapsed:?}"
    );
}

#[tokio::test]
async fn failed_sign_ins_slow_an_account_down_without_locking_its_owner_out() {
    let app = spawn_app_with(&[
        "--sign-in-free-failures",
        "2",
        "--sign-in-max-delay-secs",
        "1",
    ])
    .await;
    signed_up_all(&app, ["alice", "bob"]).await;
    let mut auth = app.auth().await;
    for _ in 0..2 {
        let status = within(auth.sign_in(credentials("alice", "wrong password")))
            .await
            .expect_err("a wrong password");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // Now even the right password waits: the attempt is not even checked.
    let status = within(auth.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect_err("an attempt during the wait");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("for this account"), "{status:?}");
    let wait = retry_after(&status, Reason::AccountThrottled);
    assert!(
        wait <= Duration::from_secs(1),
        "{wait:?} over the configured maximum"
    );
    within(auth.sign_in(credentials("bob", PASSWORD)))
        .await
        .expect("another account is not affected");

    // Attempts in parallel cannot all slip through before the failures are counted.
    tokio::time::sleep(wait).await;
    let attempts = (0..10).map(|_| {
        let mut auth = auth.clone();
        async move { within(auth.sign_in(credentials("alice", "wrong again"))).await }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let checked = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(status) if status.code() == Code::Unauthenticated))
        .count();
    assert!(
        checked <= 1,
        "{checked} of 10 parallel attempts had their password checked"
    );

    // The owner waits at most the maximum delay, then gets in, which forgives the failures.
    tokio::time::sleep(Duration::from_secs(1)).await;
    within(auth.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("the owner signs in after the wait");
    let status = within(auth.sign_in(credentials("alice", "a typo, again")))
        .await
        .expect_err("a wrong password");
    assert_eq!(status.code(), Code::Unauthenticated, "forgiven: {status:?}");
}

/// What one attacker learns while guessing at `account`'s password from `address` as fast as
/// the server lets them (retrying the moment each wait ends) until `deadline`: the moments
/// their guesses were checked (answered "wrong credentials") since `start`.
async fn guess_until(
    app: &TestApp,
    address: IpAddr,
    account: &str,
    start: Instant,
    deadline: Instant,
) -> Vec<Duration> {
    let mut auth = app.auth_from(address).await;
    let mut checked = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        match within(auth.sign_in(credentials(account, &format!("guess number {n}")))).await {
            Err(status) if status.code() == Code::Unauthenticated => {
                checked.push(start.elapsed());
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                let wait = retry_after(&status, Reason::AccountThrottled);
                tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
            other => panic!("guess {n} from {address}: {other:?}"),
        }
    }
    checked
}

/// The most guesses one account's failure ladder lets through within `window`: `free` at
/// once, then one each time the wait (1 s, doubling, at most `max_delay`) ends.
fn ladder_allows(free: u32, max_delay: Duration, window: Duration) -> usize {
    let (mut guesses, mut at, mut delay) = (free as usize, Duration::ZERO, Duration::from_secs(1));
    loop {
        at += delay.min(max_delay);
        if at >= window {
            return guesses;
        }
        guesses += 1;
        delay *= 2;
    }
}

/// The most guesses an account's budget lets through within `window`, however many addresses
/// guess: at once, one more than a single address's ladder allows before its waits reach the
/// longest; then one per longest wait.
fn account_budget_allows(free: u32, max_delay: Duration, window: Duration) -> usize {
    let mut doublings = 0;
    while Duration::from_secs(1 << doublings) < max_delay {
        doublings += 1;
    }
    let refills = (window.as_secs_f64() / max_delay.as_secs_f64()).floor() as usize;
    free as usize + doublings + 1 + refills
}

#[tokio::test]
async fn an_attacker_at_one_address_cannot_keep_the_owner_at_another_out_nor_guess_faster() {
    const FREE: u32 = 2;
    const MAX_DELAY: Duration = Duration::from_secs(2);
    let app = spawn_app_with(&[
        "--sign-in-free-failures",
        "2",
        "--sign-in-max-delay-secs",
        "2",
    ])
    .await;
    signed_up(&app, "alice").await;
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let owner: IpAddr = "127.0.0.2".parse().unwrap();
    let accomplice: IpAddr = "127.0.0.3".parse().unwrap();

    // The attacker guesses for 5 s. From 2 s on, when every wait is the longest one and the
    // attacker renews it the moment it ends, the owner signs in with the right password from
    // another address, five times.
    let window = Duration::from_secs(5);
    let start = Instant::now();
    let attack = guess_until(&app, attacker, "alice", start, start + window);
    let owner_signs_in = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut auth = app.auth_from(owner).await;
        let mut refused = Vec::new();
        for _ in 0..5 {
            if let Err(status) = within(auth.sign_in(credentials("alice", PASSWORD))).await {
                refused.push(status);
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        refused
    };
    let (guesses, refused) = tokio::join!(attack, owner_signs_in);
    assert!(
        refused.is_empty(),
        "the owner was refused {} of 5 times while one address guessed: {:?}",
        refused.len(),
        refused
            .iter()
            .map(|status| status.message())
            .collect::<Vec<_>>()
    );
    // The attacker guessed as slowly as one account's ladder allows, the owner's sign-ins
    // forgiving nothing of theirs.
    let allowed = ladder_allows(FREE, MAX_DELAY, window);
    assert!(
        guesses.len() <= allowed,
        "{} guesses checked in {window:?} (at {guesses:?}); the ladder allows {allowed}",
        guesses.len()
    );
    assert!(
        guesses.len() >= FREE as usize,
        "the attack never ran: {guesses:?}"
    );

    // Two addresses guessing together get no more than one address did before the ladders
    // were per address, beyond the account-wide budget's allowance of one extra guess and
    // what its refill adds in the ladder's first doublings (both in RELIABILITY.md).
    let bob = "bob";
    signed_up(&app, bob).await;
    let start = Instant::now();
    let (first, second) = tokio::join!(
        guess_until(&app, attacker, bob, start, start + window),
        guess_until(&app, accomplice, bob, start, start + window),
    );
    let together = first.len() + second.len();
    let account_budget = account_budget_allows(FREE, MAX_DELAY, window);
    println!(
        "in {window:?}: one address had {} guesses checked (its ladder allows {allowed}) and \
         the owner elsewhere got in 5 of 5 times; two addresses together had {together} \
         ({} + {}; the account budget allows {account_budget})",
        guesses.len(),
        first.len(),
        second.len()
    );
    assert!(
        together <= account_budget,
        "two addresses had {together} guesses checked in {window:?} ({first:?} and {second:?}); \
         the account-wide budget allows {account_budget}"
    );
}

#[tokio::test]
async fn sign_in_and_sign_up_attempts_per_address_are_limited() {
    let app = spawn_app_with(&["--sign-in-per-address-per-minute", "3"]).await;
    let (_, alice) = signed_up(&app, "alice").await;
    let mut auth = app.auth().await;
    within(auth.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("second attempt");
    let status = within(auth.sign_in(credentials("nobody", PASSWORD)))
        .await
        .expect_err("an unknown account");
    assert_eq!(status.code(), Code::Unauthenticated);

    for (what, outcome) in [
        (
            "sign-in",
            within(auth.sign_in(credentials("alice", PASSWORD))).await,
        ),
        (
            "sign-up",
            within(auth.sign_up(credentials("carol", PASSWORD))).await,
        ),
    ] {
        let status = outcome.expect_err(what);
        assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
        assert!(status.message().contains("from your address"), "{status:?}");
        let wait = retry_after(&status, Reason::AddressThrottled);
        assert!(
            wait <= Duration::from_secs(20),
            "{what}: {wait:?} at 3 per minute"
        );
    }
    // Signed-in work goes on.
    assert!(chats_of(&app, &alice).await.is_empty());
}

/// A sign-in of `user` that a proxy says it made for `forwarded_for` (its `X-Forwarded-For`).
fn forwarded(user: &str, forwarded_for: &str) -> tonic::Request<Credentials> {
    let mut request = tonic::Request::new(credentials(user, PASSWORD));
    request
        .metadata_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    request
}

#[tokio::test]
async fn behind_a_trusted_proxy_sign_ins_count_per_forwarded_client_on_both_transports() {
    // The tests' clients connect from 127.0.0.1: here, that is the proxy.
    let app = spawn_app_with(&[
        "--sign-in-per-address-per-minute",
        "2",
        "--trusted-proxies",
        "10.0.0.0/8, 127.0.0.1",
    ])
    .await;
    let mut auth = app.auth().await;
    let unknown_account = |outcome: Result<_, Status>, what: &str| {
        let status = outcome.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    };
    for n in 0..2 {
        let outcome = within(auth.sign_in(forwarded("nobody", "203.0.113.7"))).await;
        unknown_account(outcome, &format!("attempt {n} of 203.0.113.7"));
    }
    // The third from that client is refused, also when it writes another address into the
    // header itself (the proxy appends the one it saw), or comes through a second proxy.
    for header in [
        "203.0.113.7",
        "198.51.100.1, 203.0.113.7",
        "198.51.100.1, 203.0.113.7, 10.1.2.3",
    ] {
        let status = within(auth.sign_in(forwarded("nobody", header)))
            .await
            .expect_err(header);
        retry_after(&status, Reason::AddressThrottled);
        assert!(status.message().contains("from your address"), "{status:?}");
    }

    // Another client behind the same proxy has a budget of its own, shared by both transports.
    unknown_account(
        within(app.web_auth().sign_in(forwarded("nobody", "203.0.113.8"))).await,
        "gRPC-web from 203.0.113.8",
    );
    unknown_account(
        within(auth.sign_in(forwarded("nobody", "203.0.113.8"))).await,
        "native gRPC from 203.0.113.8",
    );
    let status = within(app.web_auth().sign_in(forwarded("nobody", "203.0.113.8")))
        .await
        .expect_err("the third from 203.0.113.8");
    retry_after(&status, Reason::AddressThrottled);
    // A call without the header counts as the proxy's own.
    unknown_account(
        within(auth.sign_in(credentials("nobody", PASSWORD))).await,
        "the proxy itself",
    );
}

#[tokio::test]
async fn a_forwarded_address_counts_only_from_a_trusted_proxy() {
    let app = spawn_app_with(&[
        "--sign-in-per-address-per-minute",
        "2",
        "--trusted-proxies",
        "10.0.0.5",
    ])
    .await;
    let mut auth = app.auth().await;
    // 127.0.0.1 is not a trusted proxy: every attempt is its own, whatever the header says.
    for header in ["203.0.113.1", "203.0.113.2"] {
        let status = within(auth.sign_in(forwarded("nobody", header)))
            .await
            .expect_err(header);
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let status = within(auth.sign_in(forwarded("nobody", "203.0.113.3")))
        .await
        .expect_err("the third from 127.0.0.1");
    retry_after(&status, Reason::AddressThrottled);
}
