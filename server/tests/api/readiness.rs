//! Readiness, for load balancers and orchestrators: `GET /readyz` beside `/metrics` and the
//! gRPC health service on the API port say whether the server's store answers. A server cut
//! off from PostgreSQL says so within seconds, and is ready again by itself once the
//! database lets it in.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;

/// How long a change of the database's state may take to show: two checks (every 2 s) and
/// a check's patience (5 s), with room to spare on a busy machine.
const NOTICED: Duration = Duration::from_secs(20);

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("cannot find a free port")
        .to_string()
}

/// `GET /readyz` on the metrics listener: its status and text.
async fn readyz(metrics: &str) -> (StatusCode, String) {
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(format!("http://{metrics}/readyz"))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let (head, body) = http1(request).await;
    (head.status, String::from_utf8_lossy(&body).into_owned())
}

/// The health service's status of the whole server ("") and of `chat.Chat`.
async fn health(server: &impl Server) -> [ServingStatus; 2] {
    let mut client = HealthClient::new(server.channel().await);
    let mut statuses = [ServingStatus::Unknown; 2];
    for (status, service) in statuses.iter_mut().zip(["", "chat.Chat"]) {
        *status = within(client.check(HealthCheckRequest {
            service: service.to_owned(),
        }))
        .await
        .expect("health check")
        .into_inner()
        .status();
    }
    statuses
}

/// Waits until `GET /readyz` answers `status`; returns its text and how long it took.
async fn until_readyz(metrics: &str, status: StatusCode) -> (String, Duration) {
    let began = Instant::now();
    loop {
        let (now, text) = readyz(metrics).await;
        if now == status {
            return (text, began.elapsed());
        }
        assert!(
            began.elapsed() < NOTICED,
            "/readyz still {now} after {NOTICED:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_whose_store_answers_is_ready_on_both_channels() {
    let metrics = free_address();
    let server = spawn_process(&["--metrics-listen", &metrics]).await;

    assert_eq!(
        readyz(&metrics).await,
        (StatusCode::OK, "ready\n".to_owned())
    );
    assert_eq!(health(&server).await, [ServingStatus::Serving; 2]);
    // Still so after the first checks have run.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(
        readyz(&metrics).await,
        (StatusCode::OK, "ready\n".to_owned())
    );
    assert_eq!(health(&server).await, [ServingStatus::Serving; 2]);
}

#[tokio::test]
async fn a_server_cut_off_from_postgresql_is_not_ready_until_the_database_lets_it_in_again() {
    if !on_postgres() {
        return;
    }
    let metrics = free_address();
    let server = spawn_process(&["--metrics-listen", &metrics]).await;
    let (alice, chat) = alice_alone(&server).await;
    let database = server.database().expect("a database");

    database.cut_off().await;
    let (said, took) = until_readyz(&metrics, StatusCode::SERVICE_UNAVAILABLE).await;
    println!("not ready {took:?} after the cut: {said}");
    assert!(
        said.starts_with("not ready: the database does not answer: ")
            && said.contains("connections"),
        "{said}"
    );
    assert_eq!(health(&server).await, [ServingStatus::NotServing; 2]);
    let refused = within(
        server
            .chat()
            .await
            .send(authed(&alice, send_request(&chat, "c1", "while cut off"))),
    )
    .await
    .expect_err("a Send while the database refuses the server");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    database.reconnect().await;
    let (said, took) = until_readyz(&metrics, StatusCode::OK).await;
    println!("ready {took:?} after the database let it in");
    assert_eq!(said, "ready\n");
    assert_eq!(health(&server).await, [ServingStatus::Serving; 2]);
    send_text(
        &mut server.chat().await,
        &alice,
        &chat,
        "c1",
        "while cut off",
    )
    .await;
    assert_eq!(history_of(&server, &alice, &chat).await.len(), 1);
}
