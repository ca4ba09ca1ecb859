//! The gRPC-web client side of the transport, for the Rust programs that speak it as a
//! browser does: the server's integration tests and the benchmark. (The browser app has its
//! own client over `fetch`, in `web`.)

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic_web::{GrpcWebCall, GrpcWebClientService};

/// gRPC-web over hyper: what the generated clients run on to talk as the browser UI does.
pub type WebClient = GrpcWebClientService<Client<HttpConnector, GrpcWebCall<tonic::body::Body>>>;

/// How long opening a connection may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which HTTP a [`web_client`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1: each call in flight holds a TCP connection of its own, as a browser tab's
    /// gRPC-web calls do over plain HTTP.
    Http1,
    /// HTTP/2 with prior knowledge, cleartext: every call shares one connection, as the tabs
    /// of one browser share one when they reach the server over HTTPS.
    Http2,
}

/// A gRPC-web client of the server at `addr` with a connection pool of its own, and the
/// origin to give the generated client (`ChatClient::with_origin(service, origin)`).
pub fn web_client(addr: SocketAddr, http: Http) -> (WebClient, http::Uri) {
    let mut connector = HttpConnector::new();
    // Small gRPC frames must not wait for Nagle's algorithm.
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let pool = Client::builder(TokioExecutor::new())
        .http2_only(http == Http::Http2)
        .build(connector);
    let origin = format!("http://{addr}")
        .parse()
        .expect("a socket address makes a valid URI");
    (GrpcWebClientService::new(pool), origin)
}
