//! Accepting connections without letting one peer exhaust them: a cap on open connections per
//! client address and in all (over it, a connection is closed at once), a deadline for the TLS
//! handshake, and a deadline for the first request, so a socket that sends nothing, half an
//! HTTP/2 preface or half an HTTP/1.1 request is closed instead of held forever; and an idle
//! timeout for HTTP/1.1 connections between calls (keep-alive), so one that made a request
//! and then went silent is closed too. HTTP/2 connections are left to the keepalive pings.
//!
//! Hand-written rather than tower's limits: those count requests inside a connection, and what
//! runs out here is the connections themselves (file descriptors) before any request exists.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::proxy_protocol::{self, Header};
use crate::serve::Peers;
use crate::tls::{Tls, TlsStream};

/// Connections accepted (and past their handshake) that wait for the server to take them.
const READY_CONNECTIONS: usize = 64;
/// The shortest time between two log lines about refused connections: a flood of them must
/// not become a flood of log lines.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How many connections may be open, and how long a new one may take to ask something.
#[derive(Clone)]
pub(crate) struct ConnectionLimits {
    pub per_address: usize,
    /// Peers `per_address` does not cap (trusted reverse proxies).
    pub uncapped: Peers,
    /// Peers whose connections begin with a PROXY protocol header naming the client, which
    /// the caps (and everything after them) then count as the connection's peer.
    pub proxy_protocol: Peers,
    pub total: usize,
    /// From accept to the first request (the TLS handshake included).
    pub first_request_timeout: Duration,
    /// How long an HTTP/1.1 connection may go with no call open and nothing read.
    pub http1_idle_timeout: Duration,
}

/// The open connections, counted per client address and in all, and whether each has made a
/// request yet. Shared by the accepting task, every connection (which leaves it on drop) and
/// the layer that marks a connection as having made a request.
#[derive(Default)]
pub(crate) struct Registry {
    open: Mutex<Open>,
    refusals: Refusals,
    /// Load balancers' connections closed for their PROXY protocol header.
    bad_headers: Refusals,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Keyed by the client's address and port, which name one open TCP connection.
    calls: HashMap<SocketAddr, Arc<Calls>>,
}

/// What the layer in `serve.rs` tells a connection about the calls made on it.
#[derive(Default)]
struct Calls {
    /// A request was made: the first-request deadline is lifted.
    asked: AtomicBool,
    /// Its requests are HTTP/1.1, so it may idle on keep-alive between calls.
    http1: AtomicBool,
    /// Calls whose response is not finished yet (an HTTP/1.1 Stream stays open for hours).
    open: AtomicUsize,
    /// Calls finished so far: each one restarts the idle timeout.
    finished: AtomicU64,
    /// The connection's reader, woken when a call finishes so the idle timeout starts even
    /// though no byte arrives.
    reader: AtomicWaker,
}

/// One call on a connection, from its request until its response's body is done (dropped).
pub(crate) struct OpenCall(Arc<Calls>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.reader.wake();
    }
}

/// Refused connections since the last log line, and when that line was written.
#[derive(Default)]
struct Refusals {
    since_logged: AtomicU64,
    last_logged: Mutex<Option<Instant>>,
}

impl Refusals {
    /// Counts one; when it is time for a log line (the first, then at most one per
    /// [`REFUSAL_LOG_INTERVAL`]), how many it is to report.
    fn count(&self) -> Option<u64> {
        let count = self.since_logged.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_logged.lock();
        if last.is_some_and(|at| at.elapsed() < REFUSAL_LOG_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        Some(self.since_logged.swap(0, Ordering::Relaxed).max(count))
    }
}

impl Registry {
    /// Records that the connection from `peer` made a request (which lifts its first-request
    /// deadline) of this HTTP `version`; the connection counts the call as open until the
    /// returned value is dropped. Called for every request: a lookup under an uncontended lock.
    pub(crate) fn request_started(
        &self,
        peer: SocketAddr,
        version: http::Version,
    ) -> Option<OpenCall> {
        let calls = Arc::clone(self.open.lock().calls.get(&peer)?);
        calls.asked.store(true, Ordering::Relaxed);
        if version <= http::Version::HTTP_11 {
            calls.http1.store(true, Ordering::Relaxed);
        }
        calls.open.fetch_add(1, Ordering::AcqRel);
        Some(OpenCall(calls))
    }

    /// A place for a connection from `peer`, or `None` when a cap is reached.
    fn admit(self: &Arc<Self>, peer: SocketAddr, limits: &ConnectionLimits) -> Option<Slot> {
        let address = address_key(peer.ip());
        let mut open = self.open.lock();
        let from_there = open.per_address.get(&address).copied().unwrap_or(0);
        let refused = if open.total >= limits.total {
            Some("open connections")
        } else if from_there >= limits.per_address && !(limits.uncapped)(peer.ip()) {
            Some("open connections from one address")
        } else if open.calls.contains_key(&peer) {
            // Never two TCP connections at once, but a load balancer may name one client
            // twice (two load balancers, or a lie): the calls of each must stay their own.
            Some("one client address and port named twice")
        } else {
            None
        };
        if let Some(cap) = refused {
            drop(open);
            self.refused(cap, address, limits);
            return None;
        }
        open.total += 1;
        *open.per_address.entry(address).or_insert(0) += 1;
        let calls = Arc::new(Calls::default());
        open.calls.insert(peer, Arc::clone(&calls));
        Some(Slot {
            registry: Arc::clone(self),
            peer,
            address,
            calls,
        })
    }

    /// Counts a load balancer's connection closed for its PROXY protocol header (missing,
    /// malformed or late: a load balancer not set to send it, most likely) and logs it, as
    /// [`Registry::refused`] does.
    fn bad_header(&self, peer: SocketAddr, problem: &dyn std::fmt::Display) {
        if let Some(closed) = self.bad_headers.count() {
            tracing::warn!(
                %peer,
                %problem,
                closed,
                "closing a connection from a --proxy-protocol-from peer: it must begin with a \
                 PROXY protocol header (version 1 or 2)"
            );
        }
    }

    /// Counts a refusal and logs it, at most once per [`REFUSAL_LOG_INTERVAL`], with how many
    /// were refused since the last line.
    fn refused(&self, cap: &str, address: IpAddr, limits: &ConnectionLimits) {
        let Some(refused) = self.refusals.count() else {
            return;
        };
        tracing::warn!(
            cap,
            %address,
            refused,
            max_connections = limits.total,
            max_connections_per_address = limits.per_address,
            "connection limit reached: closing new connections at once"
        );
    }
}

/// The address a cap counts by: an IPv4 address, or the /64 network of an IPv6 address (one
/// site usually holds a whole /64, so counting single IPv6 addresses would cap nothing).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// One connection's place under the caps; leaving it (on drop) frees the place.
struct Slot {
    registry: Arc<Registry>,
    peer: SocketAddr,
    address: IpAddr,
    calls: Arc<Calls>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.per_address.remove(&self.address);
            }
        }
        open.calls.remove(&self.peer);
    }
}

/// The connections of `listener` that fit under the caps, after their TLS handshake when
/// `tls` is set. Dropping the stream (the server stops accepting) stops the accepting too.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Option<Tls>,
    limits: ConnectionLimits,
    registry: Arc<Registry>,
) -> impl Stream<Item = Result<Connection, std::io::Error>> {
    let (ready, connections) = mpsc::channel(READY_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ready.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Small gRPC frames must not wait for Nagle's algorithm (40 ms against delayed
            // ACKs).
            let _ = tcp.set_nodelay(true);
            let deadline = Box::pin(tokio::time::sleep(limits.first_request_timeout));
            if (limits.proxy_protocol)(peer.ip()) {
                // Read off the accepting loop, so a load balancer slow to send its header
                // holds up no other connection; the first-request deadline bounds it.
                let (tls, ready, limits) = (tls.clone(), ready.clone(), limits.clone());
                let registry = Arc::clone(&registry);
                tokio::spawn(async move {
                    let (mut tcp, mut deadline) = (tcp, deadline);
                    let header = tokio::select! {
                        header = proxy_protocol::read_header(&mut tcp) => header,
                        () = &mut deadline => {
                            registry.bad_header(peer, &"no header before the deadline");
                            return;
                        }
                    };
                    let client = match header {
                        Ok(Header::Proxied(client)) => client,
                        Ok(Header::Local) => peer,
                        Err(error) => return registry.bad_header(peer, &error),
                    };
                    // Over a cap: dropped here, before a byte of the client's is read.
                    if let Some(slot) = registry.admit(client, &limits) {
                        let _ = hand_over(tcp, slot, deadline, tls, &ready, &limits).await;
                    }
                });
                continue;
            }
            // Over a cap: dropped here, which closes it before a byte is read.
            let Some(slot) = registry.admit(peer, &limits) else {
                continue;
            };
            if hand_over(tcp, slot, deadline, tls.clone(), &ready, &limits)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    ReceiverStream::new(connections)
}

/// Gives a connection admitted under the caps to the server: at once when it is plain, after
/// its TLS handshake otherwise. Handshakes run concurrently, so a client that never finishes
/// its own holds up nobody; `deadline` (the first request's) bounds it too. `Err` when the
/// server no longer takes connections.
async fn hand_over(
    tcp: TcpStream,
    slot: Slot,
    deadline: Pin<Box<Sleep>>,
    tls: Option<Tls>,
    ready: &mpsc::Sender<Result<Connection, std::io::Error>>,
    limits: &ConnectionLimits,
) -> Result<(), ()> {
    let Some(tls) = tls else {
        let connection = Connection::new(Io::Plain(tcp), slot, deadline, limits);
        return ready.send(Ok(connection)).await.map_err(drop);
    };
    let (ready, limits) = (ready.clone(), limits.clone());
    tokio::spawn(async move {
        let mut deadline = deadline;
        tokio::select! {
            handshake = tls.accept(tcp) => match handshake {
                Ok(stream) => {
                    let io = Io::Tls(Box::new(stream));
                    let connection = Connection::new(io, slot, deadline, &limits);
                    let _ = ready.send(Ok(connection)).await;
                }
                Err(error) => tracing::debug!(%error, "TLS handshake failed"),
            },
            () = &mut deadline => tracing::debug!("TLS handshake timed out"),
        }
    });
    Ok(())
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// An accepted connection as the server sees it: bytes both ways (plain or TLS), the client's
/// TCP address for `Request::remote_addr` (which the per-address sign-in limit uses), its
/// place under the caps, its first-request deadline (a read after that deadline, before any
/// request, fails, and the server closes the connection) and, once it speaks HTTP/1.1, its
/// idle timeout (likewise, a read while no call is open and nothing arrived for that long).
pub(crate) struct Connection {
    io: Io,
    slot: Slot,
    first_request: Option<Pin<Box<Sleep>>>,
    idle_timeout: Duration,
    /// When the connection counts as idle for too long, started afresh by every call that
    /// finishes and every byte read; `None` until the first idle moment.
    idle: Option<Pin<Box<Sleep>>>,
    /// The number of finished calls `idle` was started after.
    idle_after: u64,
}

impl Connection {
    fn new(io: Io, slot: Slot, deadline: Pin<Box<Sleep>>, limits: &ConnectionLimits) -> Self {
        Self {
            io,
            slot,
            first_request: Some(deadline),
            idle_timeout: limits.http1_idle_timeout,
            idle: None,
            idle_after: 0,
        }
    }

    /// Whether this HTTP/1.1 connection has been idle (no call open, nothing read) for longer
    /// than its timeout; otherwise arranges to be polled again when that could change.
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let calls = &self.slot.calls;
        if !calls.http1.load(Ordering::Relaxed) {
            return false;
        }
        calls.reader.register(cx.waker());
        if calls.open.load(Ordering::Acquire) > 0 {
            return false;
        }
        let finished = calls.finished.load(Ordering::Acquire);
        let fresh = self.idle.is_none() || self.idle_after != finished;
        let timeout = self.idle_timeout;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if fresh {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + self.idle_timeout);
            self.idle_after = finished;
        }
        idle.as_mut().poll(cx).is_ready()
    }

    fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    /// The peer is the client: the TCP peer, or the client a load balancer named in its PROXY
    /// protocol header.
    fn connect_info(&self) -> Self::ConnectInfo {
        TcpConnectInfo {
            local_addr: self.tcp().local_addr().ok(),
            remote_addr: Some(self.slot.peer),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.first_request {
            if this.slot.calls.asked.load(Ordering::Relaxed) {
                this.first_request = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                tracing::debug!(peer = %this.slot.peer, "no request in time: closing");
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        if this.first_request.is_none() && this.idle_too_long(cx) {
            tracing::debug!(peer = %this.slot.peer, "idle HTTP/1.1 connection: closing");
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        let filled = buf.filled().len();
        let read = match &mut this.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        };
        if buf.filled().len() > filled {
            // Bytes arrived (a request on its way): the idle time starts over.
            this.idle = None;
        }
        read
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

/// Raises this process's limit of open files to the hard limit, so the connection caps, not
/// the operating system, decide how many clients get in; logs the limit in force.
pub(crate) fn raise_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read or write the struct passed to them.
        let raised = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
                return;
            }
            let soft = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            soft == limit.rlim_max || libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        };
        if raised {
            tracing::info!(open_files = limit.rlim_cur, "open-file limit");
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_slash_64() {
        let key = |text: &str| address_key(text.parse().expect("an address"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    }
}
