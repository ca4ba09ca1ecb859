//! `--proxy-protocol-from`: behind a load balancer that passes TCP through (HAProxy in TCP
//! mode, a cloud network load balancer), every connection comes from the load balancer's
//! address, and it cannot add `X-Forwarded-For` to what it does not read. It begins each
//! connection with a PROXY protocol header naming the client instead, and the server counts
//! the client that header names for every per-address limit and cap. Here the load balancer
//! is played from 127.0.0.2, writing the header itself before the client's bytes, as HAProxy
//! does with `send-proxy` (version 1) and `send-proxy-v2`.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use chat_core::proto::Session;
use chat_core::proto::auth_client::AuthClient;
use chat_core::reason::Reason;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::Endpoint;
use tonic::{Code, Status};

use crate::helpers::*;

const LOAD_BALANCER: [u8; 4] = [127, 0, 0, 2];

/// A connection to `app` from the load balancer's address, its header already written.
async fn through_the_load_balancer(app: &TestApp, header: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::from((LOAD_BALANCER, 0)))
        .expect("bind 127.0.0.2");
    let mut tcp = within(socket.connect(app.addr)).await.expect("connect");
    tcp.write_all(header).await.expect("write the header");
    tcp
}

/// Version 1's header for a client at `client`.
fn version_1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 8080\r\n").into_bytes()
}

/// Version 2's header for an IPv6 client at `client`.
fn version_2(client: &str, port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x21, 0, 36]);
    header.extend_from_slice(&client.parse::<std::net::Ipv6Addr>().unwrap().octets());
    header.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&8080u16.to_be_bytes());
    header
}

/// A SignIn of `user` over native gRPC, on a connection of its own through the load
/// balancer with `header`. A connection the server closes fails the call (UNAVAILABLE when it
/// is closed before the channel is up).
async fn sign_in_through(app: &TestApp, header: Vec<u8>, user: &str) -> Result<Session, Status> {
    let addr = app.addr;
    let connector = tower::service_fn(move |_| {
        let header = header.clone();
        async move {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((LOAD_BALANCER, 0)))?;
            let mut tcp = socket.connect(addr).await?;
            tcp.write_all(&header).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tcp))
        }
    });
    within(async {
        let channel = Endpoint::from_shared(app.url(""))
            .expect("the server's URL")
            .connect_with_connector(connector)
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        AuthClient::new(channel)
            .sign_in(credentials(user, PASSWORD))
            .await
            .map(tonic::Response::into_inner)
    })
    .await
}

/// A SignIn over gRPC-web (HTTP/1.1) through the load balancer with `header`: its
/// grpc-status.
async fn web_sign_in_through(app: &TestApp, header: &[u8], user: &str) -> String {
    let tcp = through_the_load_balancer(app, header).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("an HTTP/1.1 connection");
    tokio::spawn(connection);
    let message = credentials(user, PASSWORD).encode_to_vec();
    let mut body = BytesMut::new();
    body.put_u8(0);
    body.put_u32(u32::try_from(message.len()).unwrap());
    body.put_slice(&message);
    let request = http::Request::post("/chat.Auth/SignIn")
        .header("host", "chat")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = within(sender.send_request(request))
        .await
        .expect("an answer");
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let body = within(response.into_body().collect())
        .await
        .expect("the body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body).to_ascii_lowercase();
    let status = text
        .split("grpc-status:")
        .nth(1)
        .unwrap_or_else(|| panic!("no grpc-status in {text:?}"));
    status
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

/// `GET /` over HTTP/1.1 on `tcp`, as a browser loads the UI: the response, or why the
/// connection gave none.
async fn get_root(tcp: TcpStream) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
    within(async move {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let request = http::Request::get("/")
            .header("host", "chat")
            .body(Full::default())
            .unwrap();
        sender.send_request(request).await
    })
    .await
}

#[tokio::test]
async fn the_client_a_load_balancer_names_is_the_address_of_the_per_address_limits() {
    let app = spawn_app_with(&[
        "--proxy-protocol-from",
        "127.0.0.2",
        "--sign-in-per-address-per-minute",
        "2",
    ])
    .await;
    signed_up(&app, "alice").await;

    // Two sign-ins of the client at 198.51.100.7, each on a connection of its own (with its
    // own header, as a load balancer makes one per client connection): the third is over
    // that client's limit, over native gRPC and over gRPC-web alike.
    for port in [40001, 40002] {
        sign_in_through(&app, version_1("198.51.100.7", port), "alice")
            .await
            .expect("within the client's limit");
    }
    let status = sign_in_through(&app, version_1("198.51.100.7", 40003), "alice")
        .await
        .expect_err("over the client's limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_details(&status).0, Some(Reason::AddressThrottled));
    assert_eq!(
        web_sign_in_through(&app, &version_1("198.51.100.7", 40004), "alice").await,
        "8",
        "gRPC-web: RESOURCE_EXHAUSTED for the same client"
    );

    // Another client behind the same load balancer (named by version 2, over IPv6) has a
    // limit of its own, as has anyone reaching the server directly.
    for port in [40005, 40006] {
        sign_in_through(&app, version_2("2001:db8::7", port), "alice")
            .await
            .expect("another client behind the load balancer");
    }
    assert_eq!(
        web_sign_in_through(&app, &version_1("198.51.100.8", 40007), "alice").await,
        "0",
        "gRPC-web from a third client"
    );
    within(app.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("directly, from 127.0.0.1");
}

#[tokio::test]
async fn only_the_named_load_balancers_headers_are_read_and_from_them_one_is_required() {
    let app = spawn_app_with(&["--proxy-protocol-from", "127.0.0.2"]).await;
    signed_up(&app, "alice").await;

    // From the load balancer without a header: closed, whatever follows.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((LOAD_BALANCER, 0))).unwrap();
    let tcp = within(socket.connect(app.addr)).await.expect("connect");
    let refused = get_root(tcp).await;
    assert!(refused.is_err(), "answered without a header: {refused:?}");

    // From anyone else a header is not read: it is not HTTP, and the connection fails.
    let mut direct = TcpStream::connect(app.addr).await.expect("connect");
    direct
        .write_all(&version_1("198.51.100.7", 40000))
        .await
        .expect("write");
    let refused = get_root(direct).await;
    assert!(
        refused
            .as_ref()
            .map_or(true, |response| !response.status().is_success()),
        "a header from a peer not named was taken: {refused:?}"
    );

    // A malformed header closes the connection too; a load balancer's health check
    // (`LOCAL`) is served as the load balancer's own connection.
    let malformed = b"PROXY TCP4 198.51.100.7 127.0.0.1 99999 8080\r\n";
    let closed = get_root(through_the_load_balancer(&app, malformed).await).await;
    assert!(closed.is_err(), "a malformed header was served: {closed:?}");
    let mut health_check = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    health_check.extend_from_slice(&[0x20, 0x00, 0, 0]);
    sign_in_through(&app, health_check, "alice")
        .await
        .expect("a LOCAL connection is the load balancer's own");
    // The server serves on.
    within(app.auth().await.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn the_per_address_connection_cap_counts_the_clients_a_load_balancer_names() {
    let app = spawn_app_with(&[
        "--proxy-protocol-from",
        "127.0.0.2",
        "--max-connections-per-address",
        "1",
    ])
    .await;
    // One connection of the client at 198.51.100.7 held open; a second of the same client
    // is refused, one of another client is not.
    let held = through_the_load_balancer(&app, &version_1("198.51.100.7", 40001)).await;
    // (The server reads the header on a task of its own: let it take its place first.)
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = sign_in_through(&app, version_1("198.51.100.7", 40002), "nobody")
        .await
        .expect_err("refused or answered");
    assert_ne!(
        second.code(),
        Code::Unauthenticated,
        "a second connection of one client was served: {second:?}"
    );
    let other = sign_in_through(&app, version_1("198.51.100.8", 40003), "nobody")
        .await
        .expect_err("an unknown account");
    assert_eq!(
        other.code(),
        Code::Unauthenticated,
        "another client: {other:?}"
    );
    // Once the first is closed, the client may connect again.
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = sign_in_through(&app, version_1("198.51.100.7", 40004), "nobody")
        .await
        .expect_err("an unknown account");
    assert_eq!(
        again.code(),
        Code::Unauthenticated,
        "after the first closed: {again:?}"
    );
}
