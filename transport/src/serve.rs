//! Serving a router on a listener: tonic's HTTP server (hyper), HTTP/1.1 beside HTTP/2 for
//! gRPC-web and the UI, keepalive pings, and every connection with TCP_NODELAY, plain or TLS.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::tls::{self, Tls};

/// Pings on idle HTTP/2 connections keep them open through NATs and detect dead peers.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How to serve, beyond what every server of the project does the same way.
#[derive(Default)]
pub struct Options {
    /// HTTPS only, with this certificate, when set, and every response tells browsers to stay
    /// on HTTPS (HSTS); plain HTTP otherwise.
    pub tls: Option<Tls>,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets the
/// calls in flight finish, and returns.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
    options: Options,
) -> Result<(), tonic::transport::Error> {
    let server = Server::builder()
        // gRPC-web from browsers (and trunk's proxy) comes over HTTP/1.1.
        .accept_http1(true)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT));
    match options.tls {
        Some(tls) => {
            let router = router.layer(tls::strict_transport_security());
            server
                .serve_with_incoming_shutdown(router, tls::incoming(listener, tls), shutdown)
                .await
        }
        None => {
            server
                .serve_with_incoming_shutdown(
                    router,
                    // TCP_NODELAY on the incoming itself: tonic ignores the builder's
                    // `tcp_nodelay` with a custom incoming, and Nagle's algorithm against
                    // delayed ACKs stalls small responses by 40 ms.
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
        }
    }
}
