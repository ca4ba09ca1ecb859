//! HTTPS with `--tls-cert`/`--tls-key`, tested with a self-signed certificate made on the spot
//! (rcgen): the native client speaks gRPC over HTTP/2 (ALPN h2) and every call works; an
//! HTTP/1.1-only client gets the UI; a client that does not trust the certificate, or speaks
//! plain HTTP, gets nothing; half a handshake, or a handshake and silence, is closed after the
//! first-request deadline; a missing key stops the server at start-up with a clear error; a
//! renewed certificate is taken on SIGHUP without a restart (a half-written one is not); and
//! behind a load balancer that passes TLS through, its PROXY protocol header comes first.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chat_core::proto::chat_client::ChatClient;
use chat_server::config::Settings;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::transport::{Channel, Endpoint};

use crate::helpers::*;

/// A self-signed certificate for `localhost` and its key, as PEM files in `dir`.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn self_signed(dir: &std::path::Path) -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("cannot make a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).expect("write cert.pem");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key.pem");
    Certificate {
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

/// A rustls client trusting `trusted` (or nothing), offering the ALPN `protocols`.
fn tls_client(trusted: Option<&CertificateDer<'static>>, protocols: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    if let Some(cert) = trusted {
        roots.add(cert.clone()).expect("a usable certificate");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Connects to `addr` and completes a TLS handshake for the name `localhost`.
async fn handshake(connector: &TlsConnector, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a valid name");
    connector.connect(name, tcp).await
}

/// A server on HTTPS with a fresh self-signed certificate and `extra` flags; the directory
/// holding the certificate's files lives as long as the returned guard.
async fn spawn_https(extra: &[&str]) -> (TestApp, Certificate, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let certificate = self_signed(dir.path());
    let (cert, key) = (
        certificate.cert.display().to_string(),
        certificate.key.display().to_string(),
    );
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    let app = spawn_app_with(&args).await;
    (app, certificate, dir)
}

/// `GET /` over HTTP/1.1 on an established TLS connection, as a browser loads the UI.
async fn get_root(tls: TlsStream<TcpStream>) -> http::Response<hyper::body::Incoming> {
    let (mut sender, connection) = within(hyper::client::conn::http1::handshake(TokioIo::new(tls)))
        .await
        .expect("HTTP/1.1 over TLS");
    tokio::spawn(connection);
    let request = http::Request::get("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("a request");
    within(sender.send_request(request)).await.expect("GET /")
}

/// A gRPC channel over TLS, remembering which protocol each connection's ALPN chose.
async fn https_channel(
    addr: SocketAddr,
    connector: TlsConnector,
    negotiated: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint =
        Endpoint::from_shared(format!("https://localhost:{}", addr.port())).expect("a valid URL");
    let connect = tower::service_fn(move |_: http::Uri| {
        let (connector, negotiated) = (connector.clone(), Arc::clone(&negotiated));
        async move {
            let tls = handshake(&connector, addr).await?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            negotiated.lock().expect("negotiated").push(alpn);
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    within(endpoint.connect_with_connector(connect)).await
}

/// Alice signed up over `channel`, with a chat of her own: her token and the chat's id.
async fn alice_and_her_chat(channel: &Channel) -> (String, String) {
    let mut auth = chat_core::proto::auth_client::AuthClient::new(channel.clone());
    let alice = within(auth.sign_up(credentials("alice", PASSWORD)))
        .await
        .expect("sign up over HTTPS")
        .into_inner()
        .token;
    let chat_id = within(ChatClient::new(channel.clone()).new_chat(authed(
        &alice,
        chat_core::proto::NewRequest {
            user_ids: vec!["alice".into()],
        },
    )))
    .await
    .expect("New over HTTPS")
    .into_inner()
    .chat_id;
    (alice, chat_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grpc_works_over_https_with_http2() {
    let (app, certificate, _dir) = spawn_https(&["--sign-in-per-address-per-minute", "2"]).await;

    let negotiated = Arc::new(Mutex::new(Vec::new()));
    let connector = tls_client(Some(&certificate.der), &[b"h2"]);
    let channel = https_channel(app.addr, connector, Arc::clone(&negotiated))
        .await
        .expect("an HTTPS connection");
    let (alice, chat_id) = alice_and_her_chat(&channel).await;
    let mut auth = chat_core::proto::auth_client::AuthClient::new(channel.clone());
    let mut chat = ChatClient::new(channel);
    let sent = send_text(&mut chat, &alice, &chat_id, "tls-1", "over TLS").await;
    let mut stream = open_stream(&mut chat, &alice, &chat_id, "0").await;
    assert_eq!(next_messages(&mut stream, 1).await, [sent]);
    // The client's address is known behind TLS too, so the per-address limit holds.
    within(auth.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect("the second attempt from this address");
    let status = within(auth.sign_in(credentials("alice", PASSWORD)))
        .await
        .expect_err("the third attempt from this address");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        *negotiated.lock().expect("negotiated"),
        [Some(b"h2".to_vec())],
        "one connection, HTTP/2 by ALPN"
    );
}

#[tokio::test]
async fn http1_clients_get_the_ui_and_untrusting_or_plain_clients_get_nothing() {
    let (app, certificate, _dir) = spawn_https(&[]).await;

    // An HTTP/1.1-only client, as old proxies and tools are.
    let connector = tls_client(Some(&certificate.der), &[b"http/1.1"]);
    let tls = within(handshake(&connector, app.addr))
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = get_root(tls).await;
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(response.headers().contains_key("content-security-policy"));
    let body = within(response.into_body().collect())
        .await
        .expect("the body")
        .to_bytes();
    assert_eq!(body, INDEX_HTML);

    // A client that does not trust the certificate cannot even finish the handshake.
    let untrusting = tls_client(None, &[b"h2"]);
    let refused = within(handshake(&untrusting, app.addr)).await;
    assert!(refused.is_err(), "a handshake succeeded without trust");

    // Plain HTTP/2 on the TLS port: no cleartext fallback.
    let plain = within(async {
        let channel = Channel::from_shared(format!("http://{}", app.addr))
            .expect("a valid URL")
            .connect()
            .await?;
        let mut auth = chat_core::proto::auth_client::AuthClient::new(channel);
        auth.sign_in(credentials("alice", PASSWORD))
            .await
            .map_err(|status| Box::new(status) as Box<dyn std::error::Error + Send + Sync>)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .await;
    assert!(
        plain.is_err(),
        "a cleartext call was answered on the TLS port"
    );
}

/// A layer-4 load balancer at 127.0.0.2 passing TLS through: it writes the PROXY protocol
/// header (version 1, naming `client`, unless `None`), then the client's handshake follows.
async fn handshake_through_a_load_balancer(
    connector: &TlsConnector,
    addr: SocketAddr,
    client: Option<&str>,
) -> io::Result<TlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
    let mut tcp = socket.connect(addr).await?;
    if let Some(client) = client {
        let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 {}\r\n", addr.port());
        tcp.write_all(header.as_bytes()).await?;
    }
    let name = ServerName::try_from("localhost").expect("a valid name");
    connector.connect(name, tcp).await
}

#[tokio::test]
async fn a_load_balancer_passing_tls_through_sends_its_header_before_the_handshake() {
    let (app, certificate, _dir) = spawn_https(&[
        "--proxy-protocol-from",
        "127.0.0.2",
        "--max-connections-per-address",
        "1",
    ])
    .await;
    let connector = tls_client(Some(&certificate.der), &[b"http/1.1"]);
    // The header, then TLS. (The server takes the client's place under the caps before the
    // handshake, so a finished handshake holds it.)
    let held = within(handshake_through_a_load_balancer(
        &connector,
        app.addr,
        Some("198.51.100.7"),
    ))
    .await
    .expect("a handshake after the header");
    // That is 198.51.100.7's one connection: a second of the same client is refused before
    // its handshake; another client's is served the UI.
    let second = within(handshake_through_a_load_balancer(
        &connector,
        app.addr,
        Some("198.51.100.7"),
    ))
    .await;
    assert!(second.is_err(), "a second connection of one capped client");
    let other = within(handshake_through_a_load_balancer(
        &connector,
        app.addr,
        Some("198.51.100.8"),
    ))
    .await
    .expect("another client");
    assert_eq!(get_root(other).await.status(), http::StatusCode::OK);
    drop(held);
    // From the load balancer without a header, the handshake fails.
    let headless = within(handshake_through_a_load_balancer(
        &connector, app.addr, None,
    ))
    .await;
    assert!(
        headless.is_err(),
        "a handshake without the header succeeded"
    );
}

#[tokio::test]
async fn half_a_handshake_or_a_handshake_and_silence_is_closed_in_bounded_time() {
    let (app, certificate, _dir) = spawn_https(&["--first-request-timeout-secs", "1"]).await;

    // The header of a handshake record announcing a ClientHello, and nothing of it.
    let mut half = TcpStream::connect(app.addr).await.expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .expect("write");
    // A whole handshake, then no request.
    let connector = tls_client(Some(&certificate.der), &[b"h2"]);
    let mut silent = within(handshake(&connector, app.addr))
        .await
        .expect("handshake");
    let bound = Duration::from_secs(3);
    let half_closed = closed_within(&mut half, bound).await;
    assert!(
        half_closed.is_some(),
        "half a handshake held past {bound:?}"
    );
    let silent_closed = closed_within(&mut silent, bound).await;
    assert!(
        silent_closed.is_some(),
        "a silent TLS connection held past {bound:?}"
    );
}

#[tokio::test]
async fn https_responses_tell_browsers_to_stay_on_https_and_plain_http_ones_do_not() {
    let (app, certificate, _dir) = spawn_https(&[]).await;
    let hsts = |headers: &http::HeaderMap| {
        headers
            .get("strict-transport-security")
            .map(|value| value.to_str().expect("ASCII").to_owned())
    };

    // The UI over HTTPS, as a browser loads it.
    let connector = tls_client(Some(&certificate.der), &[b"http/1.1"]);
    let tls = within(handshake(&connector, app.addr))
        .await
        .expect("handshake");
    let response = get_root(tls).await;
    assert_eq!(
        hsts(response.headers()).as_deref(),
        Some("max-age=31536000"),
        "the UI over HTTPS: {:?}",
        response.headers()
    );

    // A gRPC answer over HTTPS carries it too (it is the same origin).
    let connector = tls_client(Some(&certificate.der), &[b"h2"]);
    let channel = https_channel(app.addr, connector, Arc::new(Mutex::new(Vec::new())))
        .await
        .expect("an HTTPS connection");
    let mut auth = chat_core::proto::auth_client::AuthClient::new(channel);
    let session = within(auth.sign_up(credentials("alice", PASSWORD)))
        .await
        .expect("sign up over HTTPS");
    assert_eq!(
        hsts(&session.metadata().clone().into_headers()).as_deref(),
        Some("max-age=31536000")
    );

    // Over plain HTTP the header means nothing and must not be sent (RFC 6797, 7.2).
    let plain = spawn_app().await;
    let (head, _) = http1(
        http::Request::get(plain.url("/"))
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("a request"),
    )
    .await;
    assert_eq!(hsts(&head.headers), None);
}

#[tokio::test]
async fn a_missing_or_wrong_key_stops_the_server_at_startup_saying_which_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let certificate = self_signed(dir.path());
    let cert = certificate.cert.display().to_string();
    let missing = dir.path().join("nowhere.pem").display().to_string();
    for (case, key, words) in [
        ("missing key file", missing.as_str(), "nowhere.pem"),
        ("a certificate as the key", cert.as_str(), "key"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let data = dir.path().join("data").display().to_string();
        let settings = Settings::parse_from([
            "chat-server",
            "--data-dir",
            &data,
            "--tls-cert",
            &cert,
            "--tls-key",
            key,
        ]);
        let outcome = within(chat_server::run(listener, settings, std::future::pending())).await;
        let error = outcome.expect_err(case).to_string();
        assert!(error.starts_with("TLS: "), "{case}: {error}");
        assert!(error.contains(words), "{case}: {error}");
    }
    // One without the other is refused by the flags themselves.
    assert!(Settings::try_parse_from(["chat-server", "--tls-cert", &cert]).is_err());
}

/// The `chat-server` process of a test, killed when the test ends however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGHUP to `process`, as a certificate renewal's hook does.
fn hang_up(process: &Running) {
    let pid = process.0.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("cannot run kill");
    assert!(sent.success(), "kill -HUP {pid} failed");
}

/// Whether a TLS handshake with `connector` succeeds, tried until it does or `WAIT` passes.
async fn handshake_succeeds(connector: &TlsConnector, addr: SocketAddr) -> bool {
    tokio::time::timeout(WAIT, async {
        while handshake(connector, addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_taken_on_sighup_while_open_connections_keep_theirs() {
    // A real process: the signal goes to it alone, not to the test's own.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = self_signed(dir.path());
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let server = Running(
        std::process::Command::new(server_binary())
            .args(["--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(&first.cert)
            .arg("--tls-key")
            .arg(&first.key)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("share the log"))
            .stderr(log)
            .spawn()
            .expect("start chat-server"),
    );
    let server_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let trusting_first = tls_client(Some(&first.der), &[b"h2"]);
    assert!(
        tokio::time::timeout(Duration::from_secs(15), async {
            while handshake(&trusting_first, addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok(),
        "the server did not serve HTTPS:\n{}",
        server_log()
    );

    // A person connected before the renewal, with a stream open.
    let negotiated = Arc::new(Mutex::new(Vec::new()));
    let channel = https_channel(addr, trusting_first.clone(), negotiated)
        .await
        .expect("an HTTPS connection");
    let (alice, chat_id) = alice_and_her_chat(&channel).await;
    let mut chat = ChatClient::new(channel);
    let mut stream = open_stream(&mut chat, &alice, &chat_id, "0").await;

    // The renewal: new files in place, then SIGHUP.
    let second = self_signed(dir.path());
    hang_up(&server);
    let trusting_second = tls_client(Some(&second.der), &[b"h2"]);
    assert!(
        handshake_succeeds(&trusting_second, addr).await,
        "new connections do not get the renewed certificate:\n{}",
        server_log()
    );
    assert!(
        within(handshake(&trusting_first, addr)).await.is_err(),
        "a new connection still got the old certificate"
    );
    assert!(
        server_log().contains("TLS certificate reloaded"),
        "{}",
        server_log()
    );
    // The connection made before goes on: a Send over it reaches the stream opened over it.
    let sent = send_text(&mut chat, &alice, &chat_id, "renewed-1", "still here").await;
    assert_eq!(next_messages(&mut stream, 1).await, [sent]);

    // A renewal caught half done: the certificate written, its key not yet. Refused, and
    // the certificate in use stays.
    let third =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    std::fs::write(&second.cert, third.cert.pem()).expect("write cert.pem");
    hang_up(&server);
    within(async {
        while !server_log().contains("TLS certificate not reloaded") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        handshake_succeeds(&trusting_second, addr).await,
        "the certificate in use was dropped for a broken pair:\n{}",
        server_log()
    );
}
