//! `chat-server migrate --to`: a populated SQLite data directory moves to PostgreSQL and a
//! server started there carries on as if nothing happened: the same history with the same ids,
//! a Stream resumed with a cursor from before the move, old passwords, old tokens (but not
//! revoked ones) and device keys, and old client ids still recognised as repeats. Runs in the PostgreSQL suite
//! (it needs both an SQLite file and a PostgreSQL database).

use std::time::Duration;

use chat_core::proto::{
    Credentials, EditRequest, ListRequest, NewRequest, ReactRequest, SignOutRequest,
};
use tonic::Code;

use crate::helpers::*;

const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Runs `chat-server migrate` from `data_dir` to `url`; returns its report (stdout).
async fn migrate(data_dir: &std::path::Path, url: &str) -> String {
    let output = run_command(
        server_binary(),
        vec![
            "--data-dir".into(),
            data_dir.display().to_string(),
            "migrate".into(),
            "--to".into(),
            url.to_owned(),
        ],
        COMMAND_LIMIT,
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "migrate failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The counts line of `table` in a migrate report: (sqlite, postgres).
fn counts(report: &str, table: &str) -> (u64, u64) {
    let line = report
        .lines()
        .find(|line| line.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no {table} line in the report:\n{report}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("a count"))
        .collect();
    assert_eq!(numbers.len(), 2, "{line}");
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_sqlite_directory_serves_from_postgresql_unchanged() {
    if !on_postgres() {
        return;
    }
    let mut sqlite = spawn_sqlite_process(&[]).await;
    let (_, alice) = signed_up(&sqlite, "alice").await;
    let (_, bob) = signed_up(&sqlite, "bob").await;
    let carols_device = within(sqlite.auth().await.sign_up(credentials("carol", PASSWORD)))
        .await
        .expect("cannot sign carol up")
        .into_inner()
        .device;
    let signed_out = signed_up(&sqlite, "dave").await.1;
    within(
        sqlite
            .auth()
            .await
            .sign_out(authed(&signed_out, SignOutRequest {})),
    )
    .await
    .expect("cannot sign out");
    let pair = new_chat(&sqlite, &alice, &["alice", "bob"]).await;
    let group = new_chat(&sqlite, &bob, &["alice", "bob", "carol"]).await;
    // More than one batch of the copy (1,000 rows).
    send_many(&sqlite, &alice, &pair, 1200, "before the first copy").await;
    send_text(
        &mut sqlite.chat().await,
        &bob,
        &group,
        "g-1",
        "to the group",
    )
    .await;

    let database = TestDatabase::for_backend()
        .await
        .expect("a PostgreSQL database");
    // A first copy while the SQLite server still runs, as an operator shortening the
    // downtime would do; then more messages, the server stopped, and the rest copied.
    let first = migrate(&sqlite.data_dir(), &database.url).await;
    assert_eq!(counts(&first, "messages"), (1201, 1201), "{first}");
    // The server still runs: the counts match, but the copy is not the last one.
    assert!(
        first.contains("NOT final") && !first.contains("verified:"),
        "a copy under a running server must not be called verified:\n{first}"
    );
    let mut chat = sqlite.chat().await;
    for n in 0..5 {
        send_text(
            &mut chat,
            &bob,
            &pair,
            &format!("late-{n}"),
            "after the first copy",
        )
        .await;
    }
    // Changes to messages move too: an edit and a reaction in the group.
    let g1 = history_of(&sqlite, &bob, &group).await.remove(0);
    let edit = EditRequest {
        chat_id: group.clone(),
        message_id: g1.id.clone(),
        subject: String::new(),
        text: "to the whole group".into(),
    };
    within(chat.edit(authed(&bob, edit))).await.expect("edit");
    let react = ReactRequest {
        chat_id: group.clone(),
        message_id: g1.id.clone(),
        emoji: "👍".into(),
        remove: false,
    };
    within(chat.react(authed(&alice, react)))
        .await
        .expect("react");
    let history = full_history(&sqlite, &alice, &pair).await;
    let group_history = full_history(&sqlite, &carol_token(&sqlite).await, &group).await;
    assert_eq!(group_history[0].text, "to the whole group");
    assert_eq!(group_history[0].reactions.len(), 1);
    let old_cursor = history[999].id.clone();
    sqlite.kill();
    // Dave left the team before the move: he stays deactivated on PostgreSQL.
    let mut deactivate = sqlite.store_args();
    deactivate.extend(["deactivate-account".to_owned(), "dave".to_owned()]);
    let deactivated = run_command(server_binary(), deactivate, Duration::from_secs(60)).await;
    assert!(
        deactivated.status.success(),
        "{}",
        String::from_utf8_lossy(&deactivated.stderr)
    );

    let second = migrate(&sqlite.data_dir(), &database.url).await;
    for (table, expected) in [
        ("accounts", 4),
        ("tokens", 4),
        // One from each sign-up and carol's sign-in; dave's went with his deactivation.
        ("devices", 4),
        ("chats", 2),
        ("chat_members", 5),
        ("messages", 1206),
        ("message_changes", 2),
        ("reactions", 1),
    ] {
        assert_eq!(counts(&second, table), (expected, expected), "{second}");
    }
    assert!(second.contains("verified:"), "{second}");
    // Running it again changes nothing and still verifies.
    let third = migrate(&sqlite.data_dir(), &database.url).await;
    assert_eq!(counts(&third, "messages"), (1206, 1206), "{third}");

    let postgres = spawn_process_on(database, &[]).await;
    assert_eq!(full_history(&postgres, &alice, &pair).await, history);
    // Carol signs in with her old password and device key (still hers: the session keeps
    // it rather than making a new one); her history of the group is unchanged.
    let carol = within(postgres.auth().await.sign_in(Credentials {
        device: carols_device.clone(),
        ..credentials("carol", PASSWORD)
    }))
    .await
    .expect("an old password no longer signs in")
    .into_inner();
    assert_eq!(carol.device, carols_device, "the device key did not move");
    let carol = carol.token;
    assert_eq!(full_history(&postgres, &carol, &group).await, group_history);
    // Bob's old token still works; Dave's revoked one does not.
    let bobs_chats = within(
        postgres
            .chat()
            .await
            .list(authed(&bob, ListRequest::default())),
    )
    .await
    .expect("an old token no longer works")
    .into_inner()
    .chats;
    assert_eq!(bobs_chats.len(), 2);
    let refused = within(
        postgres
            .chat()
            .await
            .list(authed(&signed_out, ListRequest::default())),
    )
    .await
    .expect_err("a revoked token works again after the migration");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let with_dave = NewRequest {
        user_ids: vec!["alice".into(), "dave".into()],
    };
    let refused = within(postgres.chat().await.new_chat(authed(&alice, with_dave)))
        .await
        .expect_err("a chat with dave, deactivated before the move");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // His password changed after the first copy too: the old one no longer signs in.
    let refused = within(postgres.auth().await.sign_in(credentials("dave", PASSWORD)))
        .await
        .expect_err("dave's password from before his deactivation");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // A Stream resumed with a cursor from before the move gets exactly what followed it.
    let mut stream = open_stream(&mut postgres.chat().await, &alice, &pair, &old_cursor).await;
    let after_cursor = &history[1000..];
    assert_eq!(
        next_messages(&mut stream, after_cursor.len()).await,
        after_cursor
    );
    // New messages continue after the copied ids and reach the stream; a Send retried with
    // a client id from before the move is a repeat, not a second message.
    let mut chat = postgres.chat().await;
    let next = send_text(
        &mut chat,
        &bob,
        &pair,
        "after-move",
        "hello from PostgreSQL",
    )
    .await;
    assert!(id_number(&next.id) > id_number(&history.last().expect("a history").id));
    assert_eq!(next_messages(&mut stream, 1).await, [next]);
    let repeat = send_text(&mut chat, &bob, &pair, "late-0", "after the first copy").await;
    let original = history.iter().find(|m| m.client_id == "late-0");
    assert_eq!(Some(&repeat), original);
}

/// Carol's token on `server`, for reading a chat she is in.
async fn carol_token(server: &impl Server) -> String {
    within(server.auth().await.sign_in(credentials("carol", PASSWORD)))
        .await
        .expect("carol cannot sign in")
        .into_inner()
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_left_which_chat_and_who_is_blocked_move_too_and_a_later_copy_replaces_them() {
    if !on_postgres() {
        return;
    }
    use chat_core::proto::{BlockRequest, LeaveRequest, NewRequest};
    use chat_core::reason::Reason;

    let mut sqlite = spawn_sqlite_process(&[]).await;
    let [alice, bob, carol, dave, erin] =
        signed_up_all(&sqlite, ["alice", "bob", "carol", "dave", "erin"]).await;
    let group = new_chat(&sqlite, &alice, &["alice", "bob", "carol"]).await;
    new_chat(&sqlite, &alice, &["alice", "dave"]).await;
    let mut chat = sqlite.chat().await;
    let leave = |token: &str| {
        authed(
            token,
            LeaveRequest {
                chat_id: group.clone(),
            },
        )
    };
    let block = |user: &str| BlockRequest {
        user_id: user.into(),
    };
    within(chat.leave(leave(&carol)))
        .await
        .expect("carol leaves");
    within(chat.block(authed(&alice, block("dave"))))
        .await
        .expect("alice blocks dave");

    let database = TestDatabase::for_backend()
        .await
        .expect("a PostgreSQL database");
    let first = migrate(&sqlite.data_dir(), &database.url).await;
    assert_eq!(counts(&first, "chat_departures"), (1, 1), "{first}");
    assert_eq!(counts(&first, "blocks"), (1, 1), "{first}");

    // Between the copies: carol comes back, bob leaves, dave is unblocked and erin blocked.
    assert_eq!(
        new_chat(&sqlite, &carol, &["carol", "bob", "alice"]).await,
        group
    );
    within(chat.leave(leave(&bob))).await.expect("bob leaves");
    within(chat.unblock(authed(&alice, block("dave"))))
        .await
        .expect("unblock dave");
    within(chat.block(authed(&alice, block("erin"))))
        .await
        .expect("block erin");
    sqlite.kill();

    let second = migrate(&sqlite.data_dir(), &database.url).await;
    for (table, expected) in [("chat_members", 4), ("chat_departures", 1), ("blocks", 1)] {
        assert_eq!(counts(&second, table), (expected, expected), "{second}");
    }
    assert!(second.contains("verified:"), "{second}");

    let postgres = spawn_process_on(database, &[]).await;
    let mut chat = postgres.chat().await;
    // Bob is out, and alice's New does not bring him back; carol is in.
    let history = within(chat.history(authed(
        &bob,
        chat_core::proto::HistoryRequest {
            chat_id: group.clone(),
            ..Default::default()
        },
    )))
    .await;
    assert_eq!(history.expect_err("bob left").code(), Code::NotFound);
    assert_eq!(
        new_chat(&postgres, &alice, &["alice", "bob", "carol"]).await,
        group
    );
    let listed = chats_of(&postgres, &carol).await;
    let summary = listed
        .iter()
        .find(|summary| summary.chat_id == group)
        .expect("carol is back in the group");
    assert_eq!(summary.user_ids, ["alice", "carol"]);
    // Three changes of its members on SQLite (carol left and came back, bob left), the last
    // two after the first copy: the version moved with them, so no client that saw 3 meets
    // a lower one.
    assert_eq!(summary.members_version, 3);
    // Bob alone can bring himself back.
    assert_eq!(
        new_chat(&postgres, &bob, &["alice", "bob", "carol"]).await,
        group
    );
    // Dave was unblocked, erin is blocked.
    new_chat(&postgres, &dave, &["dave", "alice", "bob"]).await;
    let refused = within(chat.new_chat(authed(
        &erin,
        NewRequest {
            user_ids: vec!["erin".into(), "alice".into()],
        },
    )))
    .await
    .expect_err("erin is blocked");
    assert_eq!(error_details(&refused), (Some(Reason::Blocked), None));
}
