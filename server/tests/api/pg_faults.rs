//! PostgreSQL faults (PostgreSQL only): the database kills every connection of the servers
//! (`pg_terminate_backend`) while messages flow. Calls may fail, but only with UNAVAILABLE
//! (retry-safe); every retry with the same client id ends with one stored message; nothing
//! acknowledged is lost; and the servers recover by themselves: pooled connections and the
//! listener reconnect, and streams keep delivering.

use std::time::Duration;

use tonic::Code;

use crate::helpers::*;

/// Sends `count` messages, retrying each with its client id until acknowledged; every
/// failure must be UNAVAILABLE.
async fn send_retrying(
    server: &impl Server,
    token: &str,
    chat_id: &str,
    prefix: &str,
    count: usize,
) -> Vec<chat_core::proto::Message> {
    let mut chat = server.chat().await;
    let mut acked = Vec::with_capacity(count);
    for n in 0..count {
        let client_id = format!("{prefix}-{n}");
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 100, "{client_id} was never acknowledged");
            match within(chat.send(authed(token, send_request(chat_id, &client_id, "hi")))).await {
                Ok(response) => {
                    acked.push(response.into_inner().message.expect("a stored message"));
                    break;
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_database_connections_cost_retries_never_messages() {
    // The fault is PostgreSQL ending the servers' sessions; SQLite has no sessions.
    if !on_postgres() {
        return;
    }
    let first = spawn_process(&[]).await;
    let second = spawn_process_sharing(&first, &[]).await;
    let database = first.database().expect("a PostgreSQL database");
    let (_, alice) = signed_up(&first, "alice").await;
    let (_, bob) = signed_up(&second, "bob").await;
    let chat_id = new_chat(&first, &alice, &["alice", "bob"]).await;
    let stream = open_stream(&mut second.chat().await, &bob, &chat_id, "").await;

    let killer = async {
        let mut ended = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ended += database.terminate_connections().await;
        }
        ended
    };
    let (mut acked, ended) =
        tokio::join!(send_retrying(&first, &alice, &chat_id, "load", 100), killer);

    assert!(ended >= 5, "only {ended} sessions were ended");

    // Recovered without a restart: a new message reaches the other server's stream too.
    acked.extend(send_retrying(&first, &alice, &chat_id, "after", 1).await);
    let history = assert_history_is_acknowledged(&second, &bob, &chat_id, &acked).await;
    // Bob's stream may have broken with the faults; if it did, it resumes by cursor.
    let seen = messages_resuming(&second, stream, &bob, &chat_id, history.len()).await;
    assert_eq!(
        ids(&seen),
        ids(&history),
        "bob's stream differs from the history"
    );
}
