//! Serving a router on a listener: tonic's HTTP server (hyper), HTTP/1.1 beside HTTP/2 for
//! gRPC-web and the UI, plain or TLS, with the limits that keep one peer from hurting others:
//! streams per HTTP/2 connection, keepalive pings that drop dead peers, a deadline per call
//! (which bounds a unary request's body, and ends it with DEADLINE_EXCEEDED), and the
//! connection caps, first-request deadline and HTTP/1.1 idle timeout of `connections`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tower::ServiceBuilder;

use crate::calls::Calls;
use crate::connections::{self, ConnectionLimits, Registry};
use crate::router::PortService;
use crate::tls::{self, Tls};

/// How to serve. [`Options::default`] holds the defaults the server's settings document.
pub struct Options {
    /// HTTPS only, with this certificate, when set, and every response tells browsers to stay
    /// on HTTPS (HSTS); plain HTTP otherwise.
    pub tls: Option<Tls>,
    /// Streams one HTTP/2 connection may have open at once, advertised to the client in
    /// SETTINGS (a browser multiplexes all its tabs of one origin over one connection).
    pub max_concurrent_streams: u32,
    /// Pings on HTTP/2 connections this often keep them open through NATs and detect dead
    /// peers.
    pub http2_keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// How long a call may take until its response starts: all of a unary call, its request
    /// body included. Stream and Connect start their response at once and then last as long
    /// as they like, so only their request's headers (and Stream's one message) count.
    pub call_timeout: Duration,
    /// How long a new connection may take to make its first request, the TLS handshake
    /// included; a silent or half-open socket is closed after it.
    pub first_request_timeout: Duration,
    /// How long an HTTP/1.1 connection may stay idle between calls (no call open, nothing
    /// read) before it is closed. HTTP/2 connections are watched by the keepalive pings.
    /// Past 30 s it changes nothing: hyper's header-read timeout (30 s, which tonic turns on)
    /// closes a connection whose next request has not arrived by then.
    pub http1_idle_timeout: Duration,
    /// Connections open at once from one client address (IPv4, or IPv6 /64).
    pub max_connections_per_address: usize,
    /// Peers that `max_connections_per_address` does not cap: the server's trusted reverse
    /// proxies, each of whose connections carries another client. `max_connections` still
    /// counts them.
    pub uncapped: Peers,
    /// Load balancers whose connections begin with a PROXY protocol header (version 1 or 2,
    /// `proxy_protocol`) naming the client, which everything then counts as the connection's
    /// peer (the caps, `Request::remote_addr`); from them a connection without one is closed.
    pub proxy_protocol_from: Peers,
    /// Connections open at once in all.
    pub max_connections: usize,
}

/// Which peers, by address, something applies to.
pub type Peers = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: None,
            max_concurrent_streams: 100,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            first_request_timeout: Duration::from_secs(10),
            http1_idle_timeout: Duration::from_secs(20),
            max_connections_per_address: 256,
            uncapped: Arc::new(|_| false),
            proxy_protocol_from: Arc::new(|_| false),
            max_connections: 10_000,
        }
    }
}

/// Serves `app` (the port's service, [`crate::router`]) on `listener` until `shutdown`
/// completes, then stops accepting, lets the calls in flight finish, and returns.
pub async fn serve(
    listener: TcpListener,
    app: impl PortService,
    shutdown: impl Future<Output = ()> + Send,
    options: Options,
) -> Result<(), tonic::transport::Error> {
    connections::raise_file_limit();
    let limits = ConnectionLimits {
        per_address: options.max_connections_per_address,
        uncapped: options.uncapped,
        proxy_protocol: options.proxy_protocol_from,
        total: options.max_connections,
        first_request_timeout: options.first_request_timeout,
        http1_idle_timeout: options.http1_idle_timeout,
    };
    let registry = Arc::new(Registry::default());
    let service = ServiceBuilder::new()
        .option_layer(options.tls.is_some().then(tls::strict_transport_security))
        .service(Calls::new(app, Arc::clone(&registry), options.call_timeout));
    let incoming = connections::incoming(listener, options.tls, limits, registry);
    Server::builder()
        // gRPC-web from browsers (and trunk's proxy) comes over HTTP/1.1.
        .accept_http1(true)
        .max_concurrent_streams(Some(options.max_concurrent_streams))
        .http2_keepalive_interval(Some(options.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(options.http2_keepalive_timeout))
        // No `.timeout`: tonic's answers CANCELLED "Timeout expired", outside the gRPC-web
        // translation. `deadline` answers DEADLINE_EXCEEDED in the caller's protocol instead.
        // (tonic still applies a client's own `grpc-timeout` header.)
        .serve_with_incoming_shutdown(service, incoming, shutdown)
        .await
}
