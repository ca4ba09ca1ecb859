//! A storm of sign-ins against the real binary, as an attacker sends them: many at once, for
//! accounts that do not exist (each still costs an argon2id verification against the decoy
//! hash). Hashing is bounded, so the server's memory stays within a few hashes, History keeps
//! answering quickly meanwhile, and attempts beyond the waiting queue are refused at once with
//! their reason and a retry hint.

use std::time::{Duration, Instant};

use chat_core::proto::HistoryRequest;
use chat_core::proto::auth_client::AuthClient;
use chat_core::reason::Reason;
use tonic::Code;

use crate::helpers::*;

/// What the test server may hash at once, and how many attempts may wait for a turn.
const HASHES_AT_ONCE: u64 = 2;
const QUEUE: usize = 8;
/// Sign-ins in flight at once during the storm, spread over a few HTTP/2 connections.
const ATTACKERS: usize = 48;
const CONNECTIONS: usize = 4;
const STORM: Duration = Duration::from_secs(4);
/// argon2id's memory per hash with the `argon2` crate's defaults (m = 19 MiB).
const HASH_MEMORY: u64 = 19 * 1024 * 1024;

/// How the storm's attempts ended.
#[derive(Debug, Default)]
struct Outcomes {
    /// Hashed and answered "wrong username or password".
    checked: usize,
    /// Refused at once for a full queue, with the shortest and longest retry hint seen.
    queue_full: usize,
    shortest_hint: Option<Duration>,
    longest_hint: Duration,
}

/// History calls one after another on one connection until `until`; each call's latency.
async fn history_latencies(
    server: &ServerProcess,
    token: &str,
    chat_id: &str,
    until: Instant,
) -> Vec<Duration> {
    let mut chat = server.chat().await;
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let request = HistoryRequest {
            chat_id: chat_id.into(),
            ..Default::default()
        };
        let started = Instant::now();
        let page = within(chat.history(authed(token, request)))
            .await
            .unwrap_or_else(|status| panic!("History during the storm: {status:?}"));
        latencies.push(started.elapsed());
        assert_eq!(page.into_inner().messages.len(), 20);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty(), "no History call was made");
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test]
async fn a_sign_in_storm_is_hashed_a_few_at_a_time_and_history_does_not_wait_behind_it() {
    let server = spawn_process(&[
        "--password-hash-concurrency",
        &HASHES_AT_ONCE.to_string(),
        "--password-hash-queue",
        &QUEUE.to_string(),
    ])
    .await;
    let (_, alice) = signed_up(&server, "alice").await;
    let chat_id = new_chat(&server, &alice, &["alice"]).await;
    let mut chat = server.chat().await;
    for n in 0..20 {
        send_text(&mut chat, &alice, &chat_id, &format!("m{n}"), "hello").await;
    }
    let calm = history_latencies(
        &server,
        &alice,
        &chat_id,
        Instant::now() + Duration::from_secs(1),
    )
    .await;

    server.reset_peak_rss();
    let before = server.rss_bytes();
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(server.channel().await);
    }
    let end = Instant::now() + STORM;
    let attackers = (0..ATTACKERS).map(|n| {
        let mut auth = AuthClient::new(connections[n % CONNECTIONS].clone());
        async move {
            let mut outcomes = Outcomes::default();
            let mut attempt = 0;
            while Instant::now() < end {
                attempt += 1;
                let made_up = credentials(&format!("nobody-{n}-{attempt}"), PASSWORD);
                match within(auth.sign_in(made_up)).await {
                    Err(status) if status.code() == Code::Unauthenticated => outcomes.checked += 1,
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        let (reason, hint) = error_details(&status);
                        assert_eq!(reason, Some(Reason::SignInQueueFull), "{status:?}");
                        let hint = hint.unwrap_or_else(|| panic!("no RetryInfo: {status:?}"));
                        assert!(status.metadata().get("retry-after-ms").is_some());
                        outcomes.queue_full += 1;
                        outcomes.shortest_hint =
                            Some(outcomes.shortest_hint.map_or(hint, |s| s.min(hint)));
                        outcomes.longest_hint = outcomes.longest_hint.max(hint);
                        // Waiting as told keeps the refusals themselves from being the load
                        // (a flood of cheap calls is the per-address limit's business).
                        tokio::time::sleep(hint).await;
                    }
                    other => panic!("a made-up sign-in got {other:?}"),
                }
            }
            outcomes
        }
    });
    // History starts once the storm is under way and stops with it.
    let during = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        history_latencies(&server, &alice, &chat_id, end).await
    };
    let (storm, during) = tokio::join!(futures::future::join_all(attackers), during);
    let peak = server.peak_rss_bytes();

    let checked: usize = storm.iter().map(|outcomes| outcomes.checked).sum();
    let queue_full: usize = storm.iter().map(|outcomes| outcomes.queue_full).sum();
    let shortest_hint = storm
        .iter()
        .filter_map(|outcomes| outcomes.shortest_hint)
        .min();
    let longest_hint = storm.iter().map(|outcomes| outcomes.longest_hint).max();
    let grew = peak.saturating_sub(before);
    let (calm_p50, calm_max) = (percentile(&calm, 0.5), percentile(&calm, 1.0));
    let (storm_p50, storm_p99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    println!(
        "{ATTACKERS} sign-ins at a time for {STORM:?}: {checked} hashed, {queue_full} refused \
         for a full queue (hints {shortest_hint:?} to {longest_hint:?}); RSS {:.1} MB before, \
         peak {:.1} MB (+{:.1} MB; one hash is {:.1} MB); History p50 {calm_p50:?}, max \
         {calm_max:?} calm, p50 {storm_p50:?}, p99 {storm_p99:?} in {} calls during the storm",
        before as f64 / 1e6,
        peak as f64 / 1e6,
        grew as f64 / 1e6,
        HASH_MEMORY as f64 / 1e6,
        during.len(),
    );

    assert!(checked > 0, "no sign-in was hashed during the storm");
    assert!(
        queue_full > 0,
        "{ATTACKERS} attempts at once met no full queue ({checked} hashed)"
    );
    assert!(
        shortest_hint.is_some_and(|hint| hint >= Duration::from_millis(100)),
        "{shortest_hint:?}"
    );
    // The hashes at once, and room for one more of each (allocator slack, a hash finishing
    // while the next starts): far below what 48 at once take.
    assert!(
        grew <= (HASHES_AT_ONCE + 2) * HASH_MEMORY,
        "the server grew by {:.1} MB during the storm: more than {} hashes at once",
        grew as f64 / 1e6,
        HASHES_AT_ONCE + 2
    );
    assert!(
        storm_p99 <= (calm_max * 10).max(Duration::from_millis(150)),
        "History slowed from {calm_max:?} at most to a p99 of {storm_p99:?} behind the hashing"
    );
}
