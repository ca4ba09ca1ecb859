//! Crash under load: many clients send continuously to the real `chat-server` binary, which is
//! killed with SIGKILL at random moments and restarted on the same data directory. Each client
//! retries its unacknowledged message with the same client_id until it is acknowledged.
//! After every restart, every message acknowledged before the kill must be stored, and at the
//! end History must hold every acknowledged message exactly once, in each client's order, and
//! nothing else. `CHAT_SOAK=1` runs the long version (see RELIABILITY.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat_core::proto::Message;
use chat_core::proto::chat_client::ChatClient;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Endpoint;

use crate::helpers::*;

/// How hard one run pushes.
struct Profile {
    clients: usize,
    kills: usize,
    /// How long the server runs under load before each kill.
    uptime_ms: Range<u64>,
    /// How long it stays down before the restart (clients keep retrying meanwhile).
    downtime_ms: Range<u64>,
}

impl Profile {
    fn current() -> Self {
        if soak() {
            Self {
                clients: 32,
                kills: 40,
                uptime_ms: 100..1_500,
                downtime_ms: 0..300,
            }
        } else {
            Self {
                clients: 8,
                kills: 3,
                uptime_ms: 150..600,
                downtime_ms: 0..150,
            }
        }
    }
}

/// What the clients did, shared with the test, which reads it at each kill.
#[derive(Default)]
struct Ledger {
    /// Every acknowledged message, by client id.
    acked: HashMap<String, Message>,
    /// Per client: the client id it is sending now and has not had acknowledged yet.
    pending: HashMap<usize, String>,
    attempts: u64,
    /// Failed attempts by status code: what clients see while the server dies and restarts.
    failures: BTreeMap<String, u64>,
}

/// What one kill left behind, checked after the restart.
struct KillReport {
    acked_before: usize,
    unacked_at_kill: usize,
    /// Unacknowledged messages that the restarted server had stored: their acknowledgement
    /// died with the process, and only the client_id retry keeps them from being stored twice.
    committed_unacked: usize,
    stored_after_restart: usize,
}

/// The codes a client may see while the server is killed, down or restarting; anything else
/// is a bug and fails the test.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// Client `index` sends `c<index>-<n>` for n = 0, 1, 2, ... one at a time, each retried with
/// the same client id until acknowledged, waiting at `gate` while the test inspects a
/// restarted server. It stops after the message in hand once `stop` is set.
async fn client(
    index: usize,
    server_url: String,
    token: String,
    chat_id: String,
    ledger: Arc<Mutex<Ledger>>,
    mut gate: watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
) {
    // Lazy: the channel reconnects by itself after the server comes back.
    let channel = Endpoint::from_shared(server_url)
        .expect("invalid server URL")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    let mut chat = ChatClient::new(channel);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let client_id = format!("c{index}-{n}");
        let text = format!("client {index} message {n}");
        ledger.lock().pending.insert(index, client_id.clone());
        loop {
            if gate.wait_for(|open| *open).await.is_err() {
                return;
            }
            ledger.lock().attempts += 1;
            let request = authed(&token, send_request(&chat_id, &client_id, &text));
            match chat.send(request).await {
                Ok(response) => {
                    let message = response
                        .into_inner()
                        .message
                        .expect("SendResponse carries no message");
                    let mut ledger = ledger.lock();
                    ledger.pending.remove(&index);
                    ledger.acked.insert(client_id, message);
                    break;
                }
                Err(status) if is_transient(status.code()) => {
                    *ledger
                        .lock()
                        .failures
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(status) => panic!("client {index}: {client_id} refused: {status:?}"),
            }
        }
        n += 1;
    }
}

/// Checks that `history` holds every message of `acked`, unchanged, and no message twice.
fn check_stored(history: &[Message], acked: &HashMap<String, Message>, when: &str) {
    let mut by_client_id = HashMap::new();
    let mut ids = HashSet::new();
    for message in history {
        assert!(ids.insert(&message.id), "{when}: id {} twice", message.id);
        let key = (message.user_id.as_str(), message.client_id.as_str());
        assert!(
            by_client_id.insert(key.1, message).is_none(),
            "{when}: client id {key:?} stored twice"
        );
    }
    for (client_id, message) in acked {
        match by_client_id.get(client_id.as_str()) {
            None => panic!(
                "{when}: acknowledged message {client_id} (id {}) is lost",
                message.id
            ),
            Some(stored) => assert_eq!(*stored, message, "{when}: {client_id} changed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_exactly_once() {
    let profile = Profile::current();
    let started = Instant::now();
    let mut server = spawn_process(&[]).await;
    let mut tokens = Vec::with_capacity(profile.clients);
    let mut members = Vec::with_capacity(profile.clients);
    for index in 0..profile.clients {
        let (user, token) = signed_up(&server, &format!("user{index}")).await;
        members.push(user);
        tokens.push(token);
    }
    let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let chat_id = new_chat(&server, &tokens[0], &member_refs).await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (gate, gate_seen) = watch::channel(true);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(index, token)| {
            tokio::spawn(client(
                index,
                server.url(""),
                token.clone(),
                chat_id.clone(),
                Arc::clone(&ledger),
                gate_seen.clone(),
                Arc::clone(&stop),
            ))
        })
        .collect();

    let mut reports = Vec::with_capacity(profile.kills);
    for kill in 1..=profile.kills {
        let (uptime, downtime) = {
            let mut rng = rand::rng();
            (
                rng.random_range(profile.uptime_ms.clone()),
                rng.random_range(profile.downtime_ms.clone()),
            )
        };
        tokio::time::sleep(Duration::from_millis(uptime)).await;
        server.kill();
        gate.send_replace(false);
        let (acked_before, unacked) = {
            let ledger = ledger.lock();
            let unacked: Vec<String> = ledger.pending.values().cloned().collect();
            (ledger.acked.clone(), unacked)
        };
        tokio::time::sleep(Duration::from_millis(downtime)).await;
        server.start().await;

        let history = full_history(&server, &tokens[0], &chat_id).await;
        check_stored(&history, &acked_before, &format!("after kill {kill}"));
        let stored: HashSet<&str> = history.iter().map(|m| m.client_id.as_str()).collect();
        reports.push(KillReport {
            acked_before: acked_before.len(),
            unacked_at_kill: unacked.len(),
            committed_unacked: unacked
                .iter()
                .filter(|id| stored.contains(id.as_str()))
                .count(),
            stored_after_restart: history.len(),
        });
        gate.send_replace(true);
    }

    // A last stretch of load on the final server, then every client finishes its message.
    let last = rand::rng().random_range(profile.uptime_ms.clone());
    tokio::time::sleep(Duration::from_millis(last)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        within(client).await.expect("a client panicked");
    }

    let ledger = std::mem::take(&mut *ledger.lock());
    assert!(
        ledger.pending.is_empty(),
        "clients stopped with messages unacknowledged"
    );
    let history = full_history(&server, &tokens[0], &chat_id).await;
    check_stored(&history, &ledger.acked, "at the end");
    assert_eq!(
        history.len(),
        ledger.acked.len(),
        "History holds messages nobody had acknowledged"
    );
    assert!(
        history.is_sorted_by_key(|message| id_number(&message.id)),
        "History is not in id order"
    );
    // Each client sent its messages one after another, so its numbers must appear in order,
    // starting at 0, with no gap.
    let mut next_of_client: HashMap<&str, u64> = HashMap::new();
    for message in &history {
        let (client, n) = message.client_id[1..]
            .split_once('-')
            .expect("client ids are c<index>-<n>");
        let n: u64 = n.parse().expect("a message number");
        let expected = next_of_client.entry(client).or_default();
        assert_eq!(n, *expected, "client {client}'s messages out of order");
        *expected += 1;
    }

    println!(
        "crash under load: {} clients, {} SIGKILLs, {:.1} s",
        profile.clients,
        profile.kills,
        started.elapsed().as_secs_f64()
    );
    for (kill, report) in reports.iter().enumerate() {
        println!(
            "  kill {:>2}: acknowledged before {:>6}, stored after restart {:>6}, \
             unacknowledged at the kill {:>3} (of which stored {:>3}); lost 0, duplicated 0",
            kill + 1,
            report.acked_before,
            report.stored_after_restart,
            report.unacked_at_kill,
            report.committed_unacked
        );
    }
    let sent = next_of_client.values().sum::<u64>();
    println!(
        "  total: messages sent {sent}, acknowledged {}, found in History {}, duplicates 0; \
         Send attempts {}, failed attempts by code {:?}",
        ledger.acked.len(),
        history.len(),
        ledger.attempts,
        ledger.failures
    );
}
