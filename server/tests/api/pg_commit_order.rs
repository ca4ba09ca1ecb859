//! Commit order on PostgreSQL (PostgreSQL only): event ids come from the transaction that
//! stores them, with no lock between the servers' commits, so an older transaction may
//! commit after a newer one. These tests make that happen with a transaction of their own,
//! opened on the database beside the server, and check what readers see: the newer message
//! waits until the older one is in, and everyone gets both in id order, the order History
//! gives; a Send racing an uncommitted copy of itself stores one message; and a database
//! whose ids are ahead of its transaction ids (a dump restored into another cluster) still
//! gives new messages ids above the old ones.

use std::time::Duration;

use chat_core::proto::Message;
use chat_core::proto::event::Event as EventKind;

use crate::helpers::*;

/// How long the tests watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(400);

/// The internal row id of the chat `chat_id`.
async fn chat_row(database: &TestDatabase, chat_id: &str) -> String {
    database
        .query_text(&format!(
            "SELECT id::text FROM chats WHERE public_id = '{chat_id}'"
        ))
        .await
}

fn message(event: EventKind) -> Option<Message> {
    match event {
        EventKind::Message(message) => Some(message),
        _ => None,
    }
}

/// The next Message event of `stream`, skipping the others.
async fn next_message(stream: &mut tonic::Streaming<chat_core::proto::Event>) -> Message {
    loop {
        let event = within(stream.message())
            .await
            .expect("the stream failed")
            .expect("the stream ended");
        if let Some(EventKind::Message(message)) = event.event {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_commits_after_a_newer_one_reaches_every_reader_first() {
    if !on_postgres() {
        return;
    }
    let app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let mut native = app.chat().await;
    let mut bobs = open_stream(&mut native, &bob, "", "").await;
    let first = send_text(&mut native, &alice, &chat_id, "first", "first").await;
    assert_eq!(next_message(&mut bobs).await, first);

    // An older transaction takes its id and stores a message, and stays open: as a server's
    // writer would between its insert and its commit.
    let database = app.database().expect("a PostgreSQL database");
    let chat = chat_row(database, &chat_id).await;
    let (older, driver) = database.connect().await;
    older
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO messages (id, chat, sender, client_id, subject, text, sent_at, search)
             VALUES (chat_event_id(0), {chat}, 'bob', 'older', '', 'older', 0, '')"
        ))
        .await
        .expect("the older transaction's insert");

    // A newer one commits meanwhile: the Send is stored, but waits to be answered until
    // everything before it is in, and no reader sees it yet.
    let sending = tokio::spawn({
        let mut native = native.clone();
        let alice = alice.clone();
        let chat_id = chat_id.clone();
        async move { send_text(&mut native, &alice, &chat_id, "newer", "newer").await }
    });
    tokio::time::sleep(QUIET).await;
    assert!(
        !sending.is_finished(),
        "the newer Send was answered before the older message was in"
    );
    assert_no_event(
        &mut bobs,
        "a stream went past the open transaction",
        QUIET,
        message,
    )
    .await;
    let mut resumed = open_stream(&mut app.chat().await, &bob, &chat_id, &first.id).await;
    assert_no_event(
        &mut resumed,
        "a resumed stream went past the open transaction",
        QUIET,
        message,
    )
    .await;
    assert_eq!(
        ids(&history_of(&app, &bob, &chat_id).await),
        std::slice::from_ref(&first.id),
        "History went past the open transaction"
    );

    // The older transaction commits, without a notification (only the servers' writers send
    // one): the server finds out by itself.
    older
        .batch_execute("COMMIT")
        .await
        .expect("the older commit");
    drop(older);
    let _ = driver.await;
    let newer = within(sending).await.expect("the newer Send");
    let older_message = next_message(&mut bobs).await;
    assert_eq!(older_message.text, "older");
    assert!(id_number(&older_message.id) < id_number(&newer.id));
    assert_eq!(next_message(&mut bobs).await, newer);
    assert_eq!(next_message(&mut resumed).await.id, older_message.id);
    assert_eq!(next_message(&mut resumed).await, newer);
    assert_eq!(
        ids(&history_of(&app, &bob, &chat_id).await),
        [first.id, older_message.id, newer.id],
        "History's order is not the streams'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_racing_an_uncommitted_copy_of_itself_stores_one_message() {
    if !on_postgres() {
        return;
    }
    let app = spawn_app().await;
    let (alice, _bob, chat_id) = alice_and_bob(&app).await;
    let database = app.database().expect("a PostgreSQL database");
    let chat = chat_row(database, &chat_id).await;

    for (end, text) in [("COMMIT", "the copy"), ("ROLLBACK", "the retry")] {
        let client_id = format!("race-{end}");
        // Another server's batch holds the same client id, inserted but not committed.
        let (other, driver) = database.connect().await;
        other
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO messages (id, chat, sender, client_id, subject, text, sent_at,
                                       search)
                 VALUES (chat_event_id(0), {chat}, 'alice', '{client_id}', '', 'the copy', 0,
                         '')"
            ))
            .await
            .expect("the other transaction's insert");
        let sending = tokio::spawn({
            let mut native = app.chat().await;
            let (alice, chat_id, client_id) = (alice.clone(), chat_id.clone(), client_id.clone());
            async move { send_text(&mut native, &alice, &chat_id, &client_id, "the retry").await }
        });
        tokio::time::sleep(QUIET).await;
        assert!(
            !sending.is_finished(),
            "the Send did not wait for the other insert ({end})"
        );
        other
            .batch_execute(end)
            .await
            .expect("the other transaction's end");
        drop(other);
        let _ = driver.await;

        let answered = within(sending).await.expect("the Send");
        assert_eq!(answered.text, text, "after the other transaction's {end}");
        let stored: Vec<Message> = full_history(&app, &alice, &chat_id)
            .await
            .into_iter()
            .filter(|message| message.client_id == client_id)
            .collect();
        assert_eq!(stored, [answered], "after the other transaction's {end}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_whose_ids_are_ahead_of_its_transactions_gives_new_ids_above_them() {
    if !on_postgres() {
        return;
    }
    let mut app = spawn_app().await;
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let sent = send_text(&mut app.chat().await, &alice, &chat_id, "before", "before").await;
    app.stop().await;

    // As a dump restored into a cluster whose transaction ids are behind the dumped one's:
    // a message with an id far beyond what the next transaction would take.
    let database = app.database().expect("a PostgreSQL database");
    let chat = chat_row(database, &chat_id).await;
    database
        .execute(&format!(
            "INSERT INTO messages (id, chat, sender, client_id, subject, text, sent_at, search)
             VALUES (chat_horizon() + 4096::bigint * 1000000 + 7, {chat}, 'bob', 'ahead', '', 'ahead',
                     0, '')"
        ))
        .await;

    app.restart().await;
    let after = send_text(&mut app.chat().await, &alice, &chat_id, "after", "after").await;
    let history = history_of(&app, &bob, &chat_id).await;
    let texts: Vec<&str> = history
        .iter()
        .map(|message| message.text.as_str())
        .collect();
    assert_eq!(texts, ["before", "ahead", "after"]);
    assert!(id_number(&sent.id) < id_number(&history[1].id));
    assert!(
        id_number(&history[1].id) < id_number(&after.id),
        "a new message took an id below the restored ones"
    );
    let mut resumed = open_stream(&mut app.chat().await, &bob, &chat_id, &history[1].id).await;
    assert_eq!(next_message(&mut resumed).await, after);
}
