//! Limits that must hold per user, not per server, when several real `chat-server`
//! processes share one PostgreSQL database (PostgreSQL only): a user's open streams are
//! counted across servers, and the slots of a server that dies come back once its leases
//! lapse; every rate limit and the failed sign-ins count once for all servers.

use std::time::Duration;

use chat_core::proto::StreamRequest;
use tonic::Code;

use crate::helpers::*;

/// The longest a killed server's stream slots may stay taken: the lease (15 s) plus the
/// time to notice.
const LEASES_LAPSE: Duration = Duration::from_secs(25);

/// Tries to open a Stream of every chat of `token`'s user on `server`: the stream, or the
/// status it was refused with.
async fn try_stream(
    server: &impl Server,
    token: &str,
) -> Result<tonic::codec::Streaming<chat_core::proto::Event>, tonic::Status> {
    let mut chat = server.chat().await;
    let request = authed(token, StreamRequest::default());
    let mut stream = within(chat.stream(request)).await?.into_inner();
    // A refusal can also come as the stream's first (and only) item; a live stream sends a
    // heartbeat within a second.
    match within(stream.message()).await {
        Ok(Some(_)) => Ok(stream),
        Ok(None) => Err(tonic::Status::unknown("the stream ended at once")),
        Err(status) => Err(status),
    }
}

#[tokio::test]
async fn streams_per_user_are_counted_across_servers_and_a_killed_servers_slots_come_back() {
    if !on_postgres() {
        return;
    }
    let limit = ["--max-streams-per-user", "2"];
    let mut first = spawn_process(&limit).await;
    let second = spawn_process_sharing(&first, &limit).await;
    let third = spawn_process_sharing(&first, &limit).await;
    let (_, alice) = signed_up(&first, "alice").await;
    let (_, bob) = signed_up(&first, "bob").await;

    let on_first = try_stream(&first, &alice).await.expect("a first stream");
    let on_second = try_stream(&second, &alice).await.expect("a second stream");
    for server in [&first, &second, &third] {
        let status = try_stream(server, &alice)
            .await
            .expect_err("a third stream on any server is one too many");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    // Another user's budget is their own.
    let _bobs = try_stream(&third, &bob).await.expect("bob's stream");

    // A closed stream gives its slot back to every server.
    drop(on_second);
    let reopened = within(async {
        loop {
            match try_stream(&third, &alice).await {
                Ok(stream) => return stream,
                Err(status) if status.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("{status:?}"),
            }
        }
    })
    .await;
    let status = try_stream(&second, &alice).await.expect_err("full again");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // The first server dies holding one of alice's slots: once its lease lapses, the slot is
    // hers again on the others.
    first.kill();
    drop(on_first);
    let started = std::time::Instant::now();
    let back = tokio::time::timeout(LEASES_LAPSE, async {
        loop {
            match try_stream(&second, &alice).await {
                Ok(stream) => return stream,
                Err(status) if status.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status) => panic!("{status:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the killed server's slot did not come back in {LEASES_LAPSE:?}"));
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the slot came back before its lease could lapse: was it given back by a dead server?"
    );
    drop((reopened, back));
}

#[tokio::test]
async fn streams_opened_at_once_on_every_server_take_exactly_the_users_slots() {
    if !on_postgres() {
        return;
    }
    let limit = ["--max-streams-per-user", "4"];
    let first = spawn_process(&limit).await;
    let second = spawn_process_sharing(&first, &limit).await;
    let third = spawn_process_sharing(&first, &limit).await;
    let (_, alice) = signed_up(&first, "alice").await;

    // Fifteen of alice's devices reconnect at once, five to each server.
    let servers = [&first, &second, &third];
    let tries = (0..15).map(|n| try_stream(servers[n % 3], &alice));
    let outcomes = futures::future::join_all(tries).await;
    let mut open = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(stream) => open.push(stream),
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert_eq!(open.len(), 4, "streams opened at once with 4 slots");

    // Every slot is taken for good: a later try on any server is refused too.
    for server in servers {
        let status = try_stream(server, &alice).await.expect_err("no slot left");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
}

#[tokio::test]
async fn the_send_rate_and_sign_ins_per_address_do_not_multiply_by_the_number_of_servers() {
    if !on_postgres() {
        return;
    }
    let limits = [
        "--send-rate",
        "1",
        "--send-burst",
        "3",
        "--sign-in-per-address-per-minute",
        "3",
    ];
    let first = spawn_process(&limits).await;
    let second = spawn_process_sharing(&first, &limits).await;
    let third = spawn_process_sharing(&first, &limits).await;
    let servers = [&first, &second, &third];

    // Three attempts from this address, one on each server, use up its budget of three...
    let (_, alice) = signed_up(&first, "alice").await;
    let (_, _bob) = signed_up(&second, "bob").await;
    signed_in(&third, "alice").await;
    // ...so the next is refused on every server, each of which alone has seen at most one.
    for server in servers {
        let refused = within(server.auth().await.sign_in(credentials("alice", PASSWORD)))
            .await
            .expect_err("a fourth attempt from one address within the minute");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert_eq!(
            error_details(&refused).0,
            Some(chat_core::reason::Reason::AddressThrottled),
            "{refused:?}"
        );
    }

    // Alice's burst of three Sends, one on each server, uses up her budget...
    let chat_id = new_chat(&first, &alice, &["alice", "bob"]).await;
    for (n, server) in servers.iter().enumerate() {
        send_text(
            &mut server.chat().await,
            &alice,
            &chat_id,
            &format!("m{n}"),
            "hi",
        )
        .await;
    }
    // ...so a fourth right after is refused wherever it goes, with a wait under a second.
    for (n, server) in servers.iter().enumerate() {
        let request = authed(&alice, send_request(&chat_id, &format!("over{n}"), "hi"));
        let refused = within(server.chat().await.send(request))
            .await
            .expect_err("a fourth Send within the burst");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        let (_, retry_after) = error_details(&refused);
        let retry_after = retry_after.expect("a retry hint");
        assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_on_every_server_take_exactly_the_burst_per_user() {
    // Each server charges the budgets of every Send it has waiting in one statement, a user's
    // several cells at once: at once from three servers, a burst of 5 still lets 5 through.
    if !on_postgres() {
        return;
    }
    const BURST: usize = 5;
    const PER_SERVER: usize = 12;
    let limits = ["--send-rate", "1", "--send-burst", "5"];
    let first = spawn_process(&limits).await;
    let second = spawn_process_sharing(&first, &limits).await;
    let third = spawn_process_sharing(&first, &limits).await;
    let [alice, bob] = signed_up_all(&first, ["alice", "bob"]).await;
    let chat_id = new_chat(&first, &alice, &["alice", "bob"]).await;

    let start = std::time::Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (n, server) in [&first, &second, &third].into_iter().enumerate() {
        for (who, token) in [("alice", &alice), ("bob", &bob)] {
            for m in 0..PER_SERVER {
                let mut chat = server.chat().await;
                let request = authed(
                    token,
                    send_request(&chat_id, &format!("{who}{n}-{m}"), "hi"),
                );
                sends.spawn(async move { (who, within(chat.send(request)).await) });
            }
        }
    }
    let mut accepted = std::collections::HashMap::<&str, usize>::new();
    while let Some(joined) = sends.join_next().await {
        let (who, outcome) = joined.expect("a send task");
        match outcome {
            Ok(_) => *accepted.entry(who).or_default() += 1,
            Err(refused) => {
                assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
                let retry_after = error_details(&refused).1.expect("a retry hint");
                assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
            }
        }
    }
    // One more cell a second: a slow run may see a few more, never fewer.
    let refilled = usize::try_from(start.elapsed().as_secs()).unwrap_or(usize::MAX);
    for who in ["alice", "bob"] {
        let taken = accepted.get(who).copied().unwrap_or(0);
        assert!(
            (BURST..=BURST + refilled).contains(&taken),
            "{who}: {taken} of {} Sends accepted at a burst of {BURST} in {:?}",
            3 * PER_SERVER,
            start.elapsed()
        );
    }
}

/// Asserts that `result` is a RESOURCE_EXHAUSTED refusal for `reason`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    reason: chat_core::reason::Reason,
    what: &str,
) {
    let refused = result.expect_err(what);
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{what}: {refused:?}"
    );
    assert_eq!(
        error_details(&refused).0,
        Some(reason),
        "{what}: {refused:?}"
    );
}

#[tokio::test]
async fn failed_sign_ins_sign_outs_and_new_chats_do_not_multiply_by_the_number_of_servers() {
    use chat_core::proto::{NewRequest, SignOutRequest};
    use chat_core::reason::Reason;

    if !on_postgres() {
        return;
    }
    let limits = [
        "--sign-in-free-failures",
        "1",
        "--sign-in-max-delay-secs",
        "60",
        "--sign-out-per-address-per-minute",
        "3",
        "--new-chat-per-minute",
        "3",
    ];
    let first = spawn_process(&limits).await;
    let second = spawn_process_sharing(&first, &limits).await;
    let third = spawn_process_sharing(&first, &limits).await;
    let servers = [&first, &second, &third];
    let (_, alice) = signed_up(&first, "alice").await;
    signed_up(&second, "bob").await;
    signed_up(&third, "carol").await;

    // One wrong password from this address, on the first server, uses the account's one free
    // failure from here: the next attempt waits, on every server, each of which alone has
    // seen at most one.
    let wrong = within(
        first
            .auth()
            .await
            .sign_in(credentials("alice", "not her password")),
    )
    .await
    .expect_err("a wrong password");
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    for server in [&second, &third] {
        assert_refused(
            within(
                server
                    .auth()
                    .await
                    .sign_in(credentials("alice", "a second guess")),
            )
            .await,
            Reason::AccountThrottled,
            "a second guess right after, on another server",
        );
    }
    // The owner, after the wait, signs in on the third server; that forgives this address's
    // failures on every server: a wrong password on the second is a plain wrong password
    // again, not a wait.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    signed_in(&third, "alice").await;
    let wrong = within(
        second
            .auth()
            .await
            .sign_in(credentials("alice", "one typo too many")),
    )
    .await
    .expect_err("a wrong password");
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");

    // Three SignOuts from this address, one on each server, use up its minute...
    for (n, server) in servers.iter().enumerate() {
        within(
            server
                .auth()
                .await
                .sign_out(authed(&format!("{n:064x}"), SignOutRequest {})),
        )
        .await
        .expect("a sign-out within the limit");
    }
    // ...so a fourth is refused wherever it goes.
    for server in servers {
        assert_refused(
            within(
                server
                    .auth()
                    .await
                    .sign_out(authed(&format!("{:064x}", 4), SignOutRequest {})),
            )
            .await,
            Reason::AddressThrottled,
            "a fourth sign-out from one address within the minute",
        );
    }

    // Alice's three New calls, one on each server, use up her minute...
    let member_sets: [&[&str]; 3] = [
        &["alice", "bob"],
        &["alice", "carol"],
        &["alice", "bob", "carol"],
    ];
    for (server, members) in servers.iter().zip(member_sets) {
        let request = NewRequest {
            user_ids: members.iter().map(|m| m.to_string()).collect(),
        };
        within(server.chat().await.new_chat(authed(&alice, request)))
            .await
            .expect("a New within the limit");
    }
    // ...so a fourth is refused wherever it goes (also one that would find an existing chat:
    // every New counts).
    for server in servers {
        let request = NewRequest {
            user_ids: vec!["alice".into(), "bob".into()],
        };
        assert_refused(
            within(server.chat().await.new_chat(authed(&alice, request))).await,
            Reason::NewChatRate,
            "a fourth New within the minute",
        );
    }
}
