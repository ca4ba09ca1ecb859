//! What an unauthenticated peer can do with connections alone, against the real server: open
//! many streams on one HTTP/2 connection (the limit is advertised in SETTINGS), trickle a
//! unary request's body (cut off by the call deadline with DEADLINE_EXCEEDED, while Stream and
//! Connect live on), keep an HTTP/1.1 connection idle after one request (closed after the
//! idle timeout, while an HTTP/1.1 Stream lives on),
//! stop answering pings (dropped by the keepalive), hold sockets that send nothing or half a
//! request (closed after the first-request deadline), and open more connections than the caps
//! allow (closed at once, while another address still gets in).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_core::proto::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;

/// The HTTP/2 connection preface a client sends first, then an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];

/// A second loopback address: another client, as far as the server can tell.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A raw TCP connection to `addr` from the loopback address `local`.
async fn tcp_from(local: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(local, 0))
        .expect("bind a loopback address");
    within(socket.connect(addr)).await.expect("connect")
}

/// An HTTP/2 client connection (h2 with prior knowledge), driven by a task of its own.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = within(h2::client::handshake(tcp))
        .await
        .expect("an HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Fetches `/` over `client` (the UI, or a 404 where there is none), which must get an answer.
async fn get_root(client: &h2::client::SendRequest<Bytes>, app: &impl Server) {
    let mut client = within(client.clone().ready()).await.expect("ready");
    let request = http::Request::get(app.url("/"))
        .body(())
        .expect("a request");
    let (response, _) = client.send_request(request, true).expect("send");
    within(response).await.expect("a response");
}

/// `count` HTTP/2 connections from 127.0.0.1, each of which has been served a request.
async fn served_connections(
    app: &impl Server,
    count: usize,
) -> Vec<h2::client::SendRequest<Bytes>> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let client = h2_client(app.addr()).await;
        get_root(&client, app).await;
        held.push(client);
    }
    held
}

/// How many concurrent streams the server's SETTINGS allow this client.
async fn advertised_streams(app: &impl Server) -> usize {
    let tcp = TcpStream::connect(app.addr()).await.expect("connect");
    let (client, mut connection) = within(h2::client::handshake(tcp))
        .await
        .expect("an HTTP/2 handshake");
    let mut client = within(client.ready()).await.expect("ready");
    let request = http::Request::get(app.url("/"))
        .body(())
        .expect("a request");
    let (response, _) = client.send_request(request, true).expect("send");
    // The response comes after the server's SETTINGS, which the connection has then applied.
    within(async {
        tokio::select! {
            response = response => { response.expect("a response"); }
            ended = &mut connection => panic!("the connection ended: {ended:?}"),
        }
    })
    .await;
    connection.max_concurrent_send_streams()
}

#[tokio::test]
async fn the_stream_limit_per_connection_is_advertised_in_settings() {
    let default = spawn_app().await;
    assert_eq!(advertised_streams(&default).await, 100);
    let configured = spawn_app_with(&["--max-concurrent-streams", "7"]).await;
    assert_eq!(advertised_streams(&configured).await, 7);
}

#[tokio::test]
async fn a_unary_body_that_trickles_is_cut_off_while_streams_live_on() {
    let app = spawn_app_with(&["--call-timeout-secs", "1"]).await;
    let (alice, chat_id) = alice_alone(&app).await;
    let mut chat = app.chat().await;
    let mut stream = open_stream(&mut chat, &alice, &chat_id, "").await;
    let (outbox, mut echoes) = open_connect(&mut chat, Some(&alice), &[("chat-id", &chat_id)])
        .await
        .expect("connect");

    // A SignIn whose one message announces 100 bytes, sent a byte every 200 ms: 21 s in all.
    let client = h2_client(app.addr).await;
    let mut client = within(client.ready()).await.expect("ready");
    let request = http::Request::post(app.url("/chat.Auth/SignIn"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a request");
    let (response, mut body) = client.send_request(request, false).expect("send");
    tokio::spawn(async move {
        let prefix = [0, 0, 0, 0, 100];
        for byte in prefix.into_iter().chain(std::iter::repeat(b'x')) {
            if body.send_data(Bytes::from(vec![byte]), false).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let started = Instant::now();
    let (status, message) = within(async {
        let response = response.await.expect("an answer, not a reset");
        let headers = response.headers().clone();
        let status = |map: &http::HeaderMap| {
            map.get("grpc-status")
                .map(|value| (value.clone(), map.get("grpc-message").cloned()))
        };
        if let Some(found) = status(&headers) {
            return found;
        }
        let mut body = response.into_body();
        while let Some(Ok(_)) = body.data().await {}
        let trailers = body.trailers().await.expect("trailers").expect("trailers");
        status(&trailers).expect("a grpc-status")
    })
    .await;
    let took = started.elapsed();
    assert_eq!(
        status, "4",
        "DEADLINE_EXCEEDED, not {status:?} ({message:?})"
    );
    // grpc-message is percent-encoded on the wire.
    let message = message.expect("a grpc-message");
    assert!(
        message.to_str().unwrap().contains("send%20it%20again"),
        "{message:?}"
    );
    assert!(
        took >= Duration::from_millis(800),
        "cut after {took:?}, before its deadline"
    );

    // The same over gRPC-web on HTTP/1.1, as a browser's call would trickle: the answer is a
    // gRPC-web one (its content type, the status in the headers), DEADLINE_EXCEEDED too.
    let (mut from_server, mut to_server) = TcpStream::connect(app.addr)
        .await
        .expect("connect")
        .into_split();
    to_server
        .write_all(
            b"POST /chat.Auth/SignIn HTTP/1.1\r\nHost: a\r\n\
              Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
              Content-Length: 105\r\n\r\n",
        )
        .await
        .expect("write the head");
    tokio::spawn(async move {
        let prefix = [0, 0, 0, 0, 100];
        for byte in prefix.into_iter().chain(std::iter::repeat(b'x')) {
            if to_server.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let head = within(async {
        use tokio::io::AsyncReadExt as _;
        let mut head = Vec::new();
        let mut buffer = [0; 1024];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = from_server.read(&mut buffer).await.expect("read");
            assert!(read > 0, "closed without an answer: {head:?}");
            head.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    })
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("grpc-status: 4\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/grpc-web+proto"),
        "{head}"
    );

    // Stream and Connect, opened before, are past the call deadline and still work.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let message = Message {
        client_id: "late".into(),
        text: "still here".into(),
        ..Default::default()
    };
    outbox.send(message).await.expect("Connect is open");
    let echo = take(&mut echoes, 1).await.remove(0);
    assert_eq!(echo.client_id, "late");
    assert_eq!(next_messages(&mut stream, 1).await, [echo]);
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let app = spawn_app_with(&[
        "--http2-keepalive-secs",
        "1",
        "--http2-keepalive-timeout-secs",
        "1",
    ])
    .await;
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    // The preface, SETTINGS, and one request (GET / with HPACK's static table: :method GET,
    // :scheme http, :path /, and :authority "a"), so the first-request deadline is lifted and
    // only the keepalive can close the connection; then this peer reads but never answers.
    let header_block = [0x82, 0x86, 0x84, 0x41, 1, b'a'];
    let mut headers = vec![0, 0, header_block.len() as u8, 0x1, 0x5, 0, 0, 0, 1];
    headers.extend(header_block);
    for bytes in [PREFACE, &EMPTY_SETTINGS, &headers] {
        tcp.write_all(bytes).await.expect("write");
    }
    let closed = closed_within(&mut tcp, WAIT)
        .await
        .expect("a peer that answers no ping is dropped");
    assert!(closed >= Duration::from_secs(1), "dropped after {closed:?}");
}

#[tokio::test]
async fn silent_and_half_open_sockets_are_closed_and_a_served_connection_is_not() {
    let app = spawn_app_with(&["--first-request-timeout-secs", "1"]).await;
    let half_preface = &PREFACE[..10];
    let half_request = b"POST /chat.Auth/SignIn HTTP/1.1\r\nHost: a\r\n".as_slice();
    let preface_only = [PREFACE, &EMPTY_SETTINGS].concat();
    let mut sockets = Vec::new();
    for (what, bytes) in [
        ("nothing", &[][..]),
        ("half an HTTP/2 preface", half_preface),
        ("a preface and no request", &preface_only),
        ("half an HTTP/1.1 request", half_request),
    ] {
        let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
        tcp.write_all(bytes).await.expect("write");
        sockets.push((what, tcp));
    }
    for (what, mut tcp) in sockets {
        let closed = closed_within(&mut tcp, Duration::from_secs(4))
            .await
            .unwrap_or_else(|| panic!("a socket that sent {what} is still open"));
        assert!(
            closed <= Duration::from_secs(3),
            "{what}: closed after {closed:?}"
        );
    }

    // A connection that made a request outlives the deadline.
    let client = h2_client(app.addr).await;
    get_root(&client, &app).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    get_root(&client, &app).await;
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_while_another_address_gets_in() {
    let app = spawn_process(&["--max-connections-per-address", "3"]).await;
    // Let the start-up check's connections go away first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut held = served_connections(&app, 3).await;
    for _ in 0..5 {
        let mut extra = tcp_from(local, app.addr).await;
        let closed = closed_within(&mut extra, Duration::from_secs(1)).await;
        assert!(
            closed.is_some(),
            "a fourth connection from 127.0.0.1 was let in"
        );
    }
    let mut auth = app.auth_from(ELSEWHERE).await;
    within(auth.sign_up(credentials("alice", PASSWORD)))
        .await
        .expect("a client at another address signs up");

    // One line, not one per refused connection.
    let log = app.log();
    assert_eq!(log.matches("connection limit reached").count(), 1, "{log}");
    assert!(log.contains("open-file limit"), "{log}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", app.pid()))
        .expect("the server's limits");
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open-file limit")
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(
        open_files[3], open_files[4],
        "soft limit raised to the hard one: {limits}"
    );

    // A place freed is a place to take.
    drop(held.pop());
    within(async {
        loop {
            let mut again = tcp_from(local, app.addr).await;
            again.write_all(PREFACE).await.expect("write");
            if closed_within(&mut again, Duration::from_millis(300))
                .await
                .is_none()
            {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_s_connections_are_not_capped_per_address_but_count_in_the_total() {
    // Each connection of a reverse proxy carries another client: behind one, the per-address
    // cap would shut everyone out once that many browsers had a stream open.
    let app = spawn_app_with(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-connections-per-address",
        "2",
        "--max-connections",
        "8",
    ])
    .await;
    let held = served_connections(&app, 6).await;
    for client in &held {
        get_root(client, &app).await;
    }
    // Any other address still meets the per-address cap: two in, the third closed.
    let mut elsewhere = Vec::new();
    for _ in 0..2 {
        let mut tcp = tcp_from(ELSEWHERE, app.addr).await;
        tcp.write_all(PREFACE).await.expect("write");
        assert!(
            closed_within(&mut tcp, Duration::from_millis(300))
                .await
                .is_none(),
            "a connection from 127.0.0.2 under its cap was closed"
        );
        elsewhere.push(tcp);
    }
    let mut third = tcp_from(ELSEWHERE, app.addr).await;
    assert!(
        closed_within(&mut third, Duration::from_secs(1))
            .await
            .is_some(),
        "a third connection from 127.0.0.2 was let in"
    );
    // And the total cap counts the proxy's: 6 + 2 open, a ninth from the proxy is closed.
    let mut ninth = tcp_from(IpAddr::V4(Ipv4Addr::LOCALHOST), app.addr).await;
    assert!(
        closed_within(&mut ninth, Duration::from_secs(1))
            .await
            .is_some(),
        "a connection over the total cap was let in"
    );
}

#[tokio::test]
async fn connections_over_the_total_cap_are_closed() {
    let app = spawn_app_with(&[
        "--max-connections",
        "3",
        "--max-connections-per-address",
        "100",
    ])
    .await;
    let held = served_connections(&app, 3).await;
    let mut extra = tcp_from(ELSEWHERE, app.addr).await;
    let closed = closed_within(&mut extra, Duration::from_secs(1)).await;
    assert!(closed.is_some(), "a fourth connection was let in");
    for client in &held {
        get_root(client, &app).await;
    }
}

#[tokio::test]
async fn an_http1_connection_silent_after_its_requests_is_closed_while_an_http1_stream_lives_on() {
    let app = spawn_app_with(&["--http1-idle-timeout-secs", "1"]).await;
    let (alice, chat_id) = alice_alone(&app).await;

    // Two requests on one keep-alive connection, half a second apart (kept for the second),
    // then silence.
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    for _ in 0..2 {
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write a request");
        let answer = within(async {
            use tokio::io::AsyncReadExt as _;
            let mut answer = Vec::new();
            let mut buffer = [0; 4096];
            while !String::from_utf8_lossy(&answer).contains(INDEX_HTML) {
                let read = tcp.read(&mut buffer).await.expect("read");
                assert!(read > 0, "closed before the answer");
                answer.extend_from_slice(&buffer[..read]);
            }
        });
        answer.await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let closed = closed_within(&mut tcp, Duration::from_secs(4))
        .await
        .expect("an idle HTTP/1.1 connection is still open 4 s after its last request");
    assert!(
        closed >= Duration::from_millis(400),
        "closed {closed:?} after the idle half second: before its timeout"
    );

    // A gRPC-web Stream over HTTP/1.1 is a call in progress, never idle: it outlives the
    // timeout three times over and still delivers.
    let mut stream = within(app.web_chat().stream(authed(
        &alice,
        chat_core::proto::StreamRequest {
            chat_id: chat_id.clone(),
            after_id: String::new(),
        },
    )))
    .await
    .expect("a gRPC-web stream")
    .into_inner();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = send_text(
        &mut app.chat().await,
        &alice,
        &chat_id,
        "late",
        "still here",
    )
    .await;
    let received = within(async {
        loop {
            match stream.message().await {
                Ok(Some(chat_core::proto::Event {
                    event: Some(chat_core::proto::event::Event::Message(message)),
                })) => return message,
                Ok(Some(_)) => {}
                other => panic!("the HTTP/1.1 stream ended: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(received, sent);
}

/// Sends `signal` (`-STOP`, `-CONT`) to the server's process.
fn signal(server: &ServerProcess, signal: &str) {
    let pid = server.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("cannot run kill");
    assert!(sent.success(), "kill {signal} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_connecting_at_once_waits_in_the_accept_queue_instead_of_being_dropped() {
    let server = spawn_process(&[]).await;
    // Paused, the server accepts nothing, as when a crowd reconnects faster than it accepts
    // (a server died and its clients all came here): every handshake the kernel completes
    // waits in the listening socket's queue, and a SYN beyond the queue is dropped, which
    // costs that client the SYN's retransmission one second later.
    const CROWD: usize = 500;
    // Under the retransmission's second, with room for a busy machine.
    const QUEUED_WITHIN: Duration = Duration::from_millis(900);
    signal(&server, "-STOP");
    let connects =
        (0..CROWD).map(|_| tokio::time::timeout(QUEUED_WITHIN, TcpStream::connect(server.addr())));
    let crowd = futures::future::join_all(connects).await;
    signal(&server, "-CONT");
    let connected = crowd
        .iter()
        .filter(|result| matches!(result, Ok(Ok(_))))
        .count();
    assert_eq!(
        connected,
        CROWD,
        "only {connected} of {CROWD} connections were queued while the server was paused: \
         its accept queue is too short (the kernel caps it at net.core.somaxconn, {})",
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap_or_default()
            .trim()
    );
    drop(crowd);
    // And it goes on serving.
    signed_up(&server, "alice").await;
}
