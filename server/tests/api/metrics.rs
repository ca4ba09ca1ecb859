//! The Prometheus metrics: served on their own listener (`--metrics-listen`), never on the
//! public port, and moving with what the server does (calls, refusals, streams, deliveries,
//! commits, and on PostgreSQL the pool).

use std::time::Duration;

use bytes::Bytes;
use chat_core::proto::{SignOutRequest, StreamRequest};
use http::{Method, StatusCode};
use http_body_util::Full;
use tonic::Code;

use crate::helpers::*;

/// A free port on 127.0.0.1 for the metrics listener (bound, then freed for the server).
fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("cannot find a free port")
        .to_string()
}

/// One scrape, as Prometheus makes it: `GET /metrics` over HTTP/1.1.
async fn scrape(address: &str) -> String {
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(format!("http://{address}/metrics"))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let (head, body) = http1(request).await;
    assert_eq!(head.status, StatusCode::OK);
    let content_type = head.headers.get("content-type").expect("a content type");
    assert!(
        content_type
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{content_type:?}"
    );
    String::from_utf8(body.to_vec()).expect("the text format is UTF-8")
}

/// The value of the sample `series` (name and labels exactly as written, labels in name
/// order), or `None` when the scrape has no such sample.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a sample's value is a number"))
    })
}

#[track_caller]
fn value(scrape: &str, series: &str) -> f64 {
    sample(scrape, series).unwrap_or_else(|| panic!("no sample {series} in:\n{scrape}"))
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_move_with_calls() {
    let metrics = free_address();
    let app = spawn_app_with(&[
        "--metrics-listen",
        &metrics,
        "--max-streams-per-user",
        "1",
        "--sign-out-per-address-per-minute",
        "1",
    ])
    .await;

    // The first calls also show the server is up (its listeners are bound by then).
    let (alice, bob, chat_id) = alice_and_bob(&app).await;
    let before = scrape(&metrics).await;
    assert_eq!(value(&before, "chat_open_streams"), 0.0);
    assert_eq!(value(&before, "chat_deliveries_total"), 0.0);
    assert_eq!(
        sample(
            &before,
            r#"chat_requests_total{code="OK",rpc="chat.Chat/Send"}"#
        ),
        None,
        "no Send yet"
    );

    let mut chat = app.chat().await;
    let mut stream = open_stream(&mut chat, &alice, &chat_id, "").await;
    send_text(&mut chat, &bob, &chat_id, "m1", "hello").await;
    next_messages(&mut stream, 1).await;
    // A second stream of alice's is one more than her limit.
    let refused = within(chat.stream(authed(&alice, StreamRequest::default()))).await;
    let status = match refused {
        Err(status) => status,
        Ok(response) => failure_of(&mut response.into_inner()).await,
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Two SignOuts from one address, with a limit of one a minute: the second is refused.
    let mut auth = app.auth().await;
    let nobodys = format!("{:064x}", 7);
    within(auth.sign_out(authed(&nobodys, SignOutRequest {})))
        .await
        .expect("the first SignOut");
    let refused = within(auth.sign_out(authed(&nobodys, SignOutRequest {}))).await;
    assert_eq!(
        refused.expect_err("the second SignOut").code(),
        Code::ResourceExhausted
    );

    let during = scrape(&metrics).await;
    let send_ok = r#"chat_requests_total{code="OK",rpc="chat.Chat/Send"}"#;
    assert_eq!(value(&during, send_ok), 1.0);
    assert_eq!(
        value(
            &during,
            r#"chat_request_duration_seconds_count{rpc="chat.Chat/Send"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            r#"chat_requests_total{code="ResourceExhausted",rpc="chat.Chat/Stream"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            r#"chat_requests_total{code="OK",rpc="chat.Auth/SignUp"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &during,
            r#"chat_rate_limit_refusals_total{reason="streams_per_user"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            r#"chat_rate_limit_refusals_total{reason="address_sign_outs"}"#
        ),
        1.0
    );
    assert_eq!(value(&during, "chat_open_streams"), 1.0);
    assert_eq!(value(&during, "chat_deliveries_total"), 1.0);
    assert!(value(&during, "chat_store_commit_batch_size_count") >= 1.0);
    assert!(value(&during, "chat_store_commit_batch_size_sum") >= 1.0);
    assert!(value(&during, "chat_store_commit_duration_seconds_count") >= 1.0);
    if on_postgres() {
        assert!(value(&during, r#"chat_database_pool_connections{state="max"}"#) >= 2.0);
        assert!(value(&during, r#"chat_database_pool_connections{state="open"}"#) >= 1.0);
    } else {
        assert_eq!(
            sample(&during, r#"chat_database_pool_connections{state="max"}"#),
            None,
            "SQLite has no pool to show"
        );
    }

    // The client goes away: its stream is no longer open, and the call ends as cancelled.
    drop(stream);
    let after = within(async {
        loop {
            let now = scrape(&metrics).await;
            if sample(&now, "chat_open_streams") == Some(0.0) {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        value(
            &after,
            r#"chat_requests_total{code="Canceled",rpc="chat.Chat/Stream"}"#
        ),
        1.0
    );

    // The public port does not serve them.
    let public = http::Request::builder()
        .method(Method::GET)
        .uri(app.url("/metrics"))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let (_, body) = http1(public).await;
    assert!(
        !String::from_utf8_lossy(&body).contains("chat_requests_total"),
        "the public port serves metrics"
    );
}

/// Writes to the token table so far: on SQLite, the single writer's committed batches (every
/// write goes through it, so a write that changes nothing still counts); on PostgreSQL, the
/// statements a test trigger saw (statement triggers fire even when no row matches).
struct TokenWrites<'a> {
    metrics: &'a str,
    postgres: Option<tokio_postgres::Client>,
}

impl<'a> TokenWrites<'a> {
    async fn watch(app: &TestApp, metrics: &'a str) -> Self {
        let Some(database) = app.database() else {
            return Self {
                metrics,
                postgres: None,
            };
        };
        let (client, connection) = within(tokio_postgres::connect(
            &database.url,
            tokio_postgres::NoTls,
        ))
        .await
        .expect("cannot connect to the test database");
        tokio::spawn(connection);
        within(client.batch_execute(
            "CREATE TABLE test_token_writes (n BIGINT NOT NULL);
             INSERT INTO test_token_writes VALUES (0);
             CREATE FUNCTION test_count_token_write() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN UPDATE test_token_writes SET n = n + 1; RETURN NULL; END $$;
             CREATE TRIGGER test_token_writes AFTER INSERT OR UPDATE OR DELETE ON tokens
               FOR EACH STATEMENT EXECUTE FUNCTION test_count_token_write();",
        ))
        .await
        .expect("cannot install the trigger");
        Self {
            metrics,
            postgres: Some(client),
        }
    }

    async fn count(&self) -> f64 {
        match &self.postgres {
            None => value(
                &scrape(self.metrics).await,
                "chat_store_commit_batch_size_count",
            ),
            Some(client) => {
                let n: i64 = within(client.query_one("SELECT n FROM test_token_writes", &[]))
                    .await
                    .expect("the trigger's count")
                    .get(0);
                n as f64
            }
        }
    }
}

#[tokio::test]
async fn a_sign_out_with_an_unknown_or_revoked_token_costs_no_write() {
    use chat_core::proto::SignOutRequest;

    let metrics = free_address();
    let app = spawn_app_with(&["--metrics-listen", &metrics]).await;
    let (_, alice) = signed_up(&app, "alice").await;
    let revoked = signed_in(&app, "alice").await;
    sign_out(&app, &revoked).await;
    let writes = TokenWrites::watch(&app, &metrics).await;
    let before = writes.count().await;

    // Well-formed (64 hex digits, as SignIn issues them) but issued to nobody.
    let unknown = "ab".repeat(32);
    let mut native = app.auth().await;
    let mut web = app.web_auth();
    for token in [&unknown, &revoked, &unknown, &revoked] {
        within(native.sign_out(authed(token, SignOutRequest {})))
            .await
            .expect("signing out an unknown token is not an error");
        within(web.sign_out(authed(token, SignOutRequest {})))
            .await
            .expect("over gRPC-web either");
    }
    assert_eq!(
        writes.count().await,
        before,
        "a SignOut that revoked nothing wrote"
    );

    // The positive control: a real sign-out is one write, and the count sees it.
    sign_out(&app, &alice).await;
    assert_eq!(writes.count().await, before + 1.0);
}

/// How many events `metrics`' server's tailer has read from PostgreSQL.
async fn tailer_reads(metrics: &str) -> f64 {
    value(
        &scrape(metrics).await,
        "chat_store_tailer_events_read_total",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_server_reads_back_the_other_servers_messages_and_not_its_own() {
    if !on_postgres() {
        return;
    }
    let (metrics_a, metrics_b) = (free_address(), free_address());
    let a = spawn_process(&["--metrics-listen", &metrics_a, "--send-rate", "0"]).await;
    let b = spawn_process_sharing(&a, &["--metrics-listen", &metrics_b, "--send-rate", "0"]).await;
    let (alice, bob, chat_id) = alice_and_bob(&a).await;
    let (mut on_a, mut on_b) = (a.chat().await, b.chat().await);
    let (before_a, before_b) = (
        tailer_reads(&metrics_a).await,
        tailer_reads(&metrics_b).await,
    );

    // One after another, so each is a batch of its own, and each server's notifications
    // reach the other while its own writer commits too.
    let (mine, theirs) = (100, 20);
    for n in 0..mine {
        send_text(&mut on_a, &alice, &chat_id, &format!("a-{n}"), "from a").await;
        if n % (mine / theirs) == 0 {
            send_text(&mut on_b, &bob, &chat_id, &format!("b-{n}"), "from b").await;
        }
    }
    // Each tailer publishes the other's messages once it has read them: wait for that.
    let read = |metrics: String, before: f64, at_least: f64| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let read = tailer_reads(&metrics).await - before;
            if read >= at_least || tokio::time::Instant::now() > deadline {
                return read;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let read_by_a = read(metrics_a.clone(), before_a, theirs as f64).await;
    let read_by_b = read(metrics_b.clone(), before_b, mine as f64).await;
    // A safety tick (one a second) that falls between a commit and the writer's hand-off
    // reads that one batch back: a few at most in a run of a few seconds.
    let slack = 3.0;
    assert!(
        (theirs as f64..=theirs as f64 + slack).contains(&read_by_a),
        "server a read {read_by_a} events for the {theirs} messages sent on b"
    );
    assert!(
        (mine as f64..=mine as f64 + slack).contains(&read_by_b),
        "server b read {read_by_b} events for the {mine} messages sent on a"
    );
}
