//! PostgreSQL itself restarted under load (opt-in: `CHAT_TEST_PG_RESTART=1`, PostgreSQL
//! suite only). Restarting the database server disturbs every other test using it at the same
//! moment, so CI runs this alone, after the PostgreSQL suite (`scripts/test`). Calls fail only
//! with UNAVAILABLE (retry-safe) while it is down; retries by client id store each message
//! once; nothing acknowledged is lost; and both servers recover by themselves, streams
//! included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat_core::proto::Message;
use tonic::Code;

use crate::helpers::*;

/// How long a message may take to be acknowledged across the restart.
const RECOVERY: Duration = Duration::from_secs(60);

fn enabled() -> bool {
    on_postgres() && std::env::var("CHAT_TEST_PG_RESTART").is_ok_and(|value| value == "1")
}

/// How long PostgreSQL stays down in the restart: long enough that the load's next Sends
/// certainly find it gone, however quickly this machine would restart it.
const DOWNTIME_SECS: u64 = 1;

/// Restarts the local PostgreSQL cluster (Debian's layout: /etc/postgresql/<version>/main):
/// stops it, leaves it down for [`DOWNTIME_SECS`], and starts it again. One shell command, so
/// that PostgreSQL is started again even if this test panics meanwhile: the shell runs on
/// after the test process is gone.
async fn restart_postgresql() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("no /etc/postgresql: not Debian's PostgreSQL")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .max()
        .expect("no PostgreSQL version under /etc/postgresql");
    let cluster = format!("pg_ctlcluster --skip-systemctl-redirect {version} main");
    let output = run_command(
        "sh",
        vec![
            "-c".into(),
            format!(
                "{cluster} stop; stopped=$?; sleep {DOWNTIME_SECS}; \
                 {cluster} start || exit 1; exit $stopped"
            ),
        ],
        RECOVERY,
    )
    .await;
    assert!(
        output.status.success(),
        "pg_ctlcluster stop or start failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The most messages the load sends, whatever happens: the test stays bounded.
const MAX_LOAD: usize = 20_000;

/// How many messages the load sends after the restart has finished, so that some are
/// certainly sent while the servers find their connections broken.
const AFTER_RESTART: usize = 50;

/// What a load of Sends met.
struct Load {
    acked: Vec<Message>,
    /// Sends refused (each UNAVAILABLE) and tried again.
    failures: usize,
    /// The longest a message took from its first try to its acknowledgement.
    slowest: Duration,
}

/// Sends `count` messages one after another, retrying each with its client id until it is
/// acknowledged; every failure must be UNAVAILABLE.
async fn send_retrying(
    server: &impl Server,
    token: &str,
    chat_id: &str,
    prefix: &str,
    count: usize,
) -> Vec<Message> {
    send_while(server, token, chat_id, prefix, |sent| sent < count)
        .await
        .acked
}

/// Sends messages one after another while `more(sent so far)` holds, retrying each with its
/// client id until it is acknowledged; every failure must be UNAVAILABLE.
async fn send_while(
    server: &impl Server,
    token: &str,
    chat_id: &str,
    prefix: &str,
    more: impl Fn(usize) -> bool,
) -> Load {
    let mut chat = server.chat().await;
    let mut acked = Vec::new();
    let mut failures = 0;
    let mut slowest = Duration::ZERO;
    for n in (0..MAX_LOAD).take_while(|&n| more(n)) {
        let client_id = format!("{prefix}-{n}");
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < RECOVERY,
                "{client_id} was not acknowledged within {RECOVERY:?}"
            );
            let send = chat.send(authed(token, send_request(chat_id, &client_id, "hi")));
            match tokio::time::timeout(RECOVERY, send).await {
                Err(_) => panic!("a Send hung for {RECOVERY:?}"),
                Ok(Ok(response)) => {
                    acked.push(response.into_inner().message.expect("a stored message"));
                    slowest = slowest.max(started.elapsed());
                    break;
                }
                Ok(Err(status)) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    Load {
        acked,
        failures,
        slowest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_costs_retries_never_messages() {
    if !enabled() {
        return;
    }
    let first = spawn_process(&[]).await;
    let second = spawn_process_sharing(&first, &[]).await;
    let (_, alice) = signed_up(&first, "alice").await;
    let (_, bob) = signed_up(&second, "bob").await;
    let chat_id = new_chat(&first, &alice, &["alice", "bob"]).await;
    let stream = open_stream(&mut second.chat().await, &bob, &chat_id, "").await;

    // The load runs from before the restart until well after it, however fast this machine
    // sends: a fixed count can be over before PostgreSQL even stops.
    let restarted = AtomicBool::new(false);
    let sent_at_restart = std::cell::Cell::new(None);
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        restart_postgresql().await;
        restarted.store(true, Ordering::SeqCst);
    };
    let load = send_while(&first, &alice, &chat_id, "load", |sent| {
        if !restarted.load(Ordering::SeqCst) {
            return true;
        }
        let since = sent_at_restart.get().unwrap_or(sent);
        sent_at_restart.set(Some(since));
        sent < since + AFTER_RESTART
    });
    let (load, ()) = tokio::join!(load, restart);
    // The outage met the load: a Send was refused (UNAVAILABLE), or one waited through it.
    // Which depends on the moment PostgreSQL stops: a Send whose batch committed just before
    // waits for its delivery to streams, which resumes once PostgreSQL is back.
    assert!(
        load.failures > 0 || load.slowest >= Duration::from_secs(DOWNTIME_SECS) / 2,
        "no Send met PostgreSQL's outage of {DOWNTIME_SECS} s: none failed, the slowest took \
         {:?}; {} acknowledged, {:?} of them before the restart ended",
        load.slowest,
        load.acked.len(),
        sent_at_restart.get()
    );
    println!(
        "PostgreSQL down for {DOWNTIME_SECS} s under load: {} Sends refused and retried, the \
         slowest acknowledged after {:?}",
        load.failures, load.slowest
    );
    let mut acked = load.acked;

    // Both servers are back without a restart of their own: a new message through each.
    acked.extend(send_retrying(&first, &alice, &chat_id, "after-1", 1).await);
    acked.extend(send_retrying(&second, &bob, &chat_id, "after-2", 1).await);
    let history = assert_history_is_acknowledged(&second, &bob, &chat_id, &acked).await;

    // Bob's stream on the second server may have ended with the restart; resumed by cursor,
    // it delivers the history exactly.
    let seen = messages_resuming(&second, stream, &bob, &chat_id, history.len()).await;
    assert_eq!(
        ids(&seen),
        ids(&history),
        "bob's stream differs from the history"
    );
}
