//! TLS to PostgreSQL, asked for in the database URL with libpq's own parameters, so that the
//! URL a managed database's console shows works as it is:
//!
//! - `sslmode`: `disable`, `allow` and `prefer` connect without TLS (libpq would try TLS
//!   first with `allow` and `prefer`; here nothing changes for a URL that does not ask);
//!   `require` encrypts, and checks the certificate only against `sslrootcert` when the URL
//!   names one (as libpq does); `verify-ca` checks that a trusted CA issued it; `verify-full`
//!   also that it was issued for the host the URL names.
//! - `sslrootcert`: a PEM file of the CAs to trust (a managed service's bundle), or `system`
//!   for the operating system's store, which `verify-ca` and `verify-full` use when the URL
//!   names none.
//!
//! The driver reads neither value the way libpq does (it knows no `verify-*` mode and no
//! `sslrootcert`), so [`Target::parse`] takes both out of the URL before the driver reads the
//! rest, and the TLS is rustls (already the server's, for HTTPS) behind the driver's
//! `MakeTlsConnect`. SCRAM's channel binding is not offered: PostgreSQL accepts SCRAM without
//! it unless the URL says `channel_binding=require`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};

use super::rows::described;
use crate::store::StoreError;

/// A database to connect to: the driver's settings and the TLS the URL asked for.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeTls,
}

impl Target {
    /// Reads a `postgres://` URL (see the module's documentation for its TLS parameters).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Unavailable(format!("bad database URL: {reason}"));
        let (rest, asked) = take_tls_parameters(url).map_err(bad)?;
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|error| bad(described(&error)))?;
        let tls = client_config(&asked).map_err(bad)?;
        config.ssl_mode(if tls.is_some() {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        Ok(Self {
            config,
            tls: MakeTls(tls),
        })
    }
}

/// What the URL's `sslmode` asks of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS parameters of a URL.
#[derive(Debug, PartialEq, Eq)]
struct Asked {
    mode: Mode,
    /// `sslrootcert`: a file's path, or `system`.
    roots: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query; returns the URL without them.
fn take_tls_parameters(url: &str) -> Result<(String, Asked), String> {
    let mut asked = Asked {
        mode: Mode::Plain,
        roots: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), asked));
    };
    let mut kept = Vec::new();
    for parameter in query.split('&').filter(|parameter| !parameter.is_empty()) {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|value| value.into_owned())
                .map_err(|_| format!("the value of {key} is not UTF-8"))
        };
        match key {
            "sslmode" => {
                asked.mode = match decoded()?.as_str() {
                    "disable" | "allow" | "prefer" => Mode::Plain,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other} is none of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => asked.roots = Some(decoded()?),
            _ => kept.push(parameter),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, asked))
}

/// The rustls configuration for what was asked, `None` for no TLS.
fn client_config(asked: &Asked) -> Result<Option<Arc<ClientConfig>>, String> {
    let provider = Arc::new(ring::default_provider());
    let roots = match asked.roots.as_deref() {
        None => None,
        Some("system") => Some(system_roots()?),
        Some(path) => Some(roots_from_file(path)?),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (asked.mode, roots) {
        (Mode::Plain, _) => return Ok(None),
        (Mode::Require, None) => Arc::new(Unverified(Arc::clone(&provider))),
        (Mode::Require | Mode::VerifyCa, roots) => Arc::new(AnyName(web_pki(
            roots.map_or_else(system_roots, Ok)?,
            &provider,
        )?)),
        (Mode::VerifyFull, roots) => web_pki(roots.map_or_else(system_roots, Ok)?, &provider)?,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

fn web_pki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|error| error.to_string())
}

/// The CAs in the PEM file at `path`.
fn roots_from_file(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("sslrootcert={path}: {error}"))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|error| format!("sslrootcert={path}: {error}"))?;
        roots
            .add(certificate)
            .map_err(|error| format!("sslrootcert={path}: {error}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert={path}: no certificate in it"));
    }
    Ok(roots)
}

/// The operating system's trusted CAs (on Debian, /etc/ssl/certs; `SSL_CERT_FILE` overrides).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unreadable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "no trusted CA found in the system's store ({}): name the database's CA with \
             sslrootcert=<its PEM file>",
            errors.join("; ")
        ));
    }
    Ok(roots)
}

/// `require` without `sslrootcert`: encrypted, the certificate taken as it comes (libpq's
/// meaning). The handshake's signatures are still checked, against the certificate's key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate is not
/// compared with the host. rustls checks the chain before the name, so a certificate refused
/// only for its name has a good chain.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The driver's TLS connector: rustls with the configuration the URL asked for, or none (the
/// driver then never calls it: the URL's mode is `disable`).
#[derive(Clone)]
pub struct MakeTls(Option<Arc<ClientConfig>>);

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Encrypted<S>;
    type TlsConnect = Connect;
    type Error = Infallible;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, Infallible> {
        Ok(Connect {
            config: self.0.clone(),
            host: host.to_owned(),
        })
    }
}

/// One connection's handshake, with the host name the URL gave (checked by `verify-full`).
pub struct Connect {
    config: Option<Arc<ClientConfig>>,
    host: String,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Encrypted<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Encrypted<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::other("the database URL asked for no TLS"))?;
            let name = ServerName::try_from(self.host.clone()).map_err(|error| {
                io::Error::other(format!("{:?} cannot name a TLS server: {error}", self.host))
            })?;
            TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map(Encrypted)
                .map_err(|error| explain(error, &self.host))
        })
    }
}

/// A refused certificate, said with what to do about it.
fn explain(error: io::Error, host: &str) -> io::Error {
    let refused = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
        .and_then(|inner| match inner {
            TlsError::InvalidCertificate(reason) => Some(reason.clone()),
            _ => None,
        });
    match refused {
        Some(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => io::Error::other(format!(
            "the database's certificate was not issued for {host:?}: put the name it was \
                 issued for in the URL as the host (hostaddr=<address> can still say where to \
                 connect), or use sslmode=verify-ca"
        )),
        Some(reason) => io::Error::other(format!(
            "the database's certificate was refused ({reason:?}): name the CA that issued it \
             with sslrootcert=<its PEM file> in the database URL"
        )),
        None => error,
    }
}

/// A TLS connection to PostgreSQL.
pub struct Encrypted<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Encrypted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Encrypted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Encrypted<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(url: &str) -> (String, Asked) {
        take_tls_parameters(url).expect("a readable URL")
    }

    #[test]
    fn a_url_without_tls_parameters_is_left_as_it_is() {
        for url in [
            "postgres://chat@db/chat",
            "postgres://chat@db/chat?application_name=x&connect_timeout=3",
        ] {
            assert_eq!(
                asked(url),
                (
                    url.to_owned(),
                    Asked {
                        mode: Mode::Plain,
                        roots: None
                    }
                )
            );
        }
    }

    #[test]
    fn libpq_tls_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, tls) = asked(
            "postgres://chat:pw@db.internal:5432/chat?sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fssl%2Frds%20bundle.pem&hostaddr=10.0.0.5",
        );
        assert_eq!(
            rest,
            "postgres://chat:pw@db.internal:5432/chat?hostaddr=10.0.0.5"
        );
        assert_eq!(
            tls,
            Asked {
                mode: Mode::VerifyFull,
                roots: Some("/etc/ssl/rds bundle.pem".to_owned())
            }
        );
        for (mode, expected) in [
            ("disable", Mode::Plain),
            ("allow", Mode::Plain),
            ("prefer", Mode::Plain),
            ("require", Mode::Require),
            ("verify-ca", Mode::VerifyCa),
            ("verify-full", Mode::VerifyFull),
        ] {
            let (rest, tls) = asked(&format!("postgres://db/chat?sslmode={mode}"));
            assert_eq!((rest.as_str(), tls.mode), ("postgres://db/chat", expected));
        }
    }

    #[test]
    fn a_bad_tls_parameter_is_refused_with_what_would_do() {
        let error = Target::parse("postgres://db/chat?sslmode=verify")
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains(
                "sslmode=verify is none of disable, allow, prefer, require, verify-ca, verify-full"
            ),
            "{error}"
        );
        let error =
            Target::parse("postgres://db/chat?sslmode=verify-full&sslrootcert=/nowhere.pem")
                .err()
                .expect("refused")
                .to_string();
        assert!(error.contains("sslrootcert=/nowhere.pem"), "{error}");
        let empty = tempfile::NamedTempFile::new().expect("a file");
        let error = Target::parse(&format!(
            "postgres://db/chat?sslmode=require&sslrootcert={}",
            empty.path().display()
        ))
        .err()
        .expect("refused")
        .to_string();
        assert!(error.contains("no certificate in it"), "{error}");
    }

    #[test]
    fn the_driver_is_told_to_use_tls_only_when_asked() {
        let plain = Target::parse("postgres://db/chat?sslmode=prefer").expect("readable");
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);
        assert!(plain.tls.0.is_none());
        let encrypted = Target::parse("postgres://db/chat?sslmode=require").expect("readable");
        assert_eq!(encrypted.config.get_ssl_mode(), SslMode::Require);
        assert!(encrypted.tls.0.is_some());
    }
}
