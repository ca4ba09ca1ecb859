//! Backups taken under load restore everything acknowledged before they began. On SQLite the
//! backup is `chat-server backup FILE`, run as its own process beside the running server; on
//! PostgreSQL it is what the README recommends, `pg_dump -Fc` and `pg_restore`. Either way the
//! restored history is a consistent snapshot: exactly the first messages of the live history,
//! with nothing torn or invented.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::proto::Message;
use chat_core::proto::chat_client::ChatClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::helpers::*;

/// How long a backup or restore command may take in the test.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Senders that keep sending until stopped, recording every acknowledged message.
struct Load {
    acked: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(chat: ChatClient<Channel>, token: &str, chat_id: &str, senders: usize) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let senders = (0..senders)
            .map(|sender| {
                let (mut chat, acked, stop) = (chat.clone(), acked.clone(), stop.clone());
                let (token, chat_id) = (token.to_owned(), chat_id.to_owned());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let client_id = format!("load-{sender}-{n}");
                        let text = format!("message {n} of sender {sender}");
                        let message =
                            send_text(&mut chat, &token, &chat_id, &client_id, &text).await;
                        acked.lock().expect("acked poisoned").push(message);
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            acked,
            stop,
            senders,
        }
    }

    fn acked(&self) -> Vec<Message> {
        self.acked.lock().expect("acked poisoned").clone()
    }

    async fn wait_for(&self, count: usize) {
        within(async {
            while self.acked.lock().expect("acked poisoned").len() < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    async fn stop(self) -> Vec<Message> {
        self.stop.store(true, Ordering::Relaxed);
        for sender in self.senders {
            within(sender).await.expect("a sender panicked");
        }
        self.acked.lock().expect("acked poisoned").clone()
    }
}

/// Checks a restored history against the live one and what was acknowledged before the
/// backup began.
fn check_restored(restored: &[Message], live: &[Message], acked_before: &[Message]) {
    assert!(
        restored.len() <= live.len() && restored == &live[..restored.len()],
        "the restored history ({} messages) is not the start of the live one ({})",
        restored.len(),
        live.len()
    );
    let mut missing: Vec<&str> = acked_before
        .iter()
        .filter(|acked| !restored.contains(acked))
        .map(|acked| acked.id.as_str())
        .collect();
    missing.truncate(10);
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing after the restore: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_everything_acknowledged_before_it() {
    let mut server = spawn_process(&[]).await;
    let (_, alice) = signed_up(&server, "alice").await;
    signed_up(&server, "bob").await;
    let chat_id = new_chat(&server, &alice, &["alice", "bob"]).await;
    let load = Load::start(server.chat().await, &alice, &chat_id, 4);
    load.wait_for(200).await;

    let backup_file = server.data_dir().with_file_name("backup.db");
    let acked_before = load.acked();
    let backup = match server.database() {
        None => {
            run_command(
                server_binary(),
                vec![
                    "--data-dir".into(),
                    server.data_dir().display().to_string(),
                    "backup".into(),
                    backup_file.display().to_string(),
                ],
                COMMAND_LIMIT,
            )
            .await
        }
        Some(database) => {
            run_command(
                "pg_dump",
                vec![
                    "-Fc".into(),
                    "-f".into(),
                    backup_file.display().to_string(),
                    "-d".into(),
                    database.url.clone(),
                ],
                COMMAND_LIMIT,
            )
            .await
        }
    };
    assert!(
        backup.status.success(),
        "the backup failed: {}{}",
        String::from_utf8_lossy(&backup.stdout),
        String::from_utf8_lossy(&backup.stderr)
    );
    // The server kept taking messages while the backup ran, and after it.
    let during = load.acked().len();
    load.wait_for(during + 50).await;
    let all_acked = load.stop().await;
    let live = full_history(&server, &alice, &chat_id).await;
    let live_ids: Vec<u64> = live.iter().map(|m| id_number(&m.id)).collect();
    let mut acked_ids: Vec<u64> = all_acked.iter().map(|m| id_number(&m.id)).collect();
    acked_ids.sort_unstable();
    assert_eq!(
        live_ids, acked_ids,
        "the live history is not what was acknowledged"
    );

    let restored_server = match server.database() {
        None => {
            // An operator's restore: stop the server, put the copy in place of the database
            // (dropping the old write-ahead log with it), start again.
            server.kill();
            let data = server.data_dir();
            for stale in ["chat.db-wal", "chat.db-shm"] {
                let _ = std::fs::remove_file(data.join(stale));
            }
            std::fs::copy(&backup_file, data.join("chat.db")).expect("cannot restore the copy");
            server.start().await;
            None
        }
        Some(_) => {
            let fresh = TestDatabase::for_backend()
                .await
                .expect("a PostgreSQL database");
            let restore = run_command(
                "pg_restore",
                vec![
                    "--no-owner".into(),
                    "--exit-on-error".into(),
                    "-d".into(),
                    fresh.url.clone(),
                    backup_file.display().to_string(),
                ],
                COMMAND_LIMIT,
            )
            .await;
            assert!(
                restore.status.success(),
                "pg_restore failed: {}",
                String::from_utf8_lossy(&restore.stderr)
            );
            Some(spawn_process_on(fresh, &[]).await)
        }
    };
    let restored_server = restored_server.as_ref().unwrap_or(&server);
    let restored = full_history(restored_server, &alice, &chat_id).await;
    check_restored(&restored, &live, &acked_before);

    // The restored store goes on from where the copy ends: a new message gets a later id and
    // an old client id is still recognised as a repeat.
    let mut chat = restored_server.chat().await;
    let newest = restored.last().expect("the restored history is empty");
    let next = send_text(&mut chat, &alice, &chat_id, "after-restore", "hello again").await;
    assert!(id_number(&next.id) > id_number(&newest.id));
    let repeat = send_text(&mut chat, &alice, &chat_id, &newest.client_id, &newest.text).await;
    assert_eq!(
        &repeat, newest,
        "a retry of a restored message stored it again"
    );
}
