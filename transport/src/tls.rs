//! HTTPS on the one port, when the server is given a certificate: rustls (with ring),
//! offering HTTP/2 and HTTP/1.1 by ALPN. Browsers then speak HTTP/2 to the UI and gRPC-web
//! alike, so the per-origin limit of six HTTP/1.1 connections no longer applies; clients that
//! only speak HTTP/1.1 still get in. Connections are accepted, capped and their handshakes bounded in `connections`.
//! The certificate's files are read again on SIGHUP, so a renewal needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderValue;
use http::header::STRICT_TRANSPORT_SECURITY;
use parking_lot::RwLock;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
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

/// A certificate and its key, ready to accept connections, and the files they came from, so
/// that a renewed certificate can be taken without a restart ([`Tls::reload`]).
#[derive(Clone)]
pub struct Tls(Arc<Files>);

struct Files {
    cert: PathBuf,
    key: PathBuf,
    /// What new connections are accepted with; replaced whole by a reload.
    acceptor: RwLock<TlsAcceptor>,
}

/// Why the certificate or key cannot be used; says which file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl Tls {
    /// Reads the certificate chain and private key in the PEM files at `cert` and `key`.
    /// Read before anything is served, so a bad certificate stops the start-up, not a client.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self(Arc::new(Files {
            acceptor: RwLock::new(acceptor(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })))
    }

    /// Reads the two files again and accepts new connections with what they hold now; open
    /// connections keep the certificate they were made with. When the files cannot be used
    /// (half written, or a key that is not the certificate's), the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let renewed = acceptor(&self.0.cert, &self.0.key)?;
        *self.0.acceptor.write() = renewed;
        Ok(())
    }

    /// Reloads the certificate on every SIGHUP (what a renewal's hook sends), logging the
    /// outcome, until `until` completes (the server stops). Nothing on other systems.
    pub async fn reload_on_hangup(self, until: impl Future<Output = ()>) {
        #[cfg(unix)]
        let reloads = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGHUP: the TLS certificate is read at start only");
                    return;
                }
            };
            while hangups.recv().await.is_some() {
                match self.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %self.0.cert.display(), "TLS certificate reloaded")
                    }
                    Err(error) => {
                        tracing::error!(%error, "TLS certificate not reloaded: the one in use stays")
                    }
                }
            }
        };
        #[cfg(not(unix))]
        let reloads = std::future::pending::<()>();
        tokio::select! {
            () = reloads => {}
            () = until => {}
        }
    }
}

/// An acceptor for the certificate chain and key in these PEM files (HTTP/2 and HTTP/1.1 by
/// ALPN).
fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
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
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| unreadable("key", key, &error))?;
    // rustls checks that the key is the certificate's (a renewal that has written one file and
    // not yet the other is refused, not served).
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsError(format!("certificate and key: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A server-side TLS connection over TCP.
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

impl Tls {
    /// Runs the server side of the TLS handshake on `tcp`, however long the client takes: the
    /// caller bounds it.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream> {
        let acceptor = self.0.acceptor.read().clone();
        acceptor.accept(tcp).await
    }
}
