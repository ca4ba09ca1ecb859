//! HTTPS on the one port, when the server is given a certificate: rustls (with ring),
//! offering HTTP/2 and HTTP/1.1 by ALPN. Browsers then speak HTTP/2 to the UI and gRPC-web
//! alike, so the per-origin limit of six HTTP/1.1 connections no longer applies; clients that
//! only speak HTTP/1.1 still get in.
//!
//! Handshakes run concurrently, each bounded by a timeout, so a client that connects and never
//! finishes its handshake holds up nobody.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use http::HeaderValue;
use http::header::STRICT_TRANSPORT_SECURITY;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower_http::set_header::SetResponseHeaderLayer;

/// The layer that adds `Strict-Transport-Security` to every response, so a browser that has
/// reached the server over HTTPS once uses HTTPS for it from then on, for a year, even when
/// sent to an `http://` link (which would otherwise expose the first request, bearer token
/// included, to anyone on the path). Only for an HTTPS server: over plain HTTP the header
/// means nothing (RFC 6797, 7.2). Subdomains are left alone: they may be other services.
pub(crate) fn strict_transport_security() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    )
}

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake is done and that wait for the server to take them.
const READY_CONNECTIONS: usize = 64;

/// A certificate and its key, ready to accept connections.
#[derive(Clone)]
pub struct Tls(TlsAcceptor);

/// Why the certificate or key cannot be used; says which file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl Tls {
    /// Reads the certificate chain and private key in the PEM files at `cert` and `key`.
    /// Read before anything is served, so a bad certificate stops the start-up, not a client.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let unreadable = |what: &str, path: &Path, error: &dyn std::fmt::Display| {
            TlsError(format!(
                "cannot read the {what} {}: {error}",
                path.display()
            ))
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| unreadable("certificate", cert, &error))?;
        if chain.is_empty() {
            return Err(TlsError(format!("no certificate in {}", cert.display())));
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|error| unreadable("key", key, &error))?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError(error.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| TlsError(format!("certificate and key: {error}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self(TlsAcceptor::from(Arc::new(config))))
    }
}

/// The connections of `listener` once their TLS handshake is done. Dropping the stream (the
/// server stops accepting) stops the accepting too.
pub fn incoming(
    listener: TcpListener,
    Tls(acceptor): Tls,
) -> impl Stream<Item = Result<TlsConnection, std::io::Error>> {
    let (ready, connections) = mpsc::channel(READY_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ready.closed() => return,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Small gRPC frames must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            let (acceptor, ready) = (acceptor.clone(), ready.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = ready.send(Ok(TlsConnection(tls))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(connections)
}

/// A TLS connection as the server sees it: bytes both ways, and the client's TCP address for
/// `Request::remote_addr` (which the per-address sign-in limit uses).
pub struct TlsConnection(TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
