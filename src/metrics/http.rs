//! The `/metrics` endpoint: plain HTTP, or HTTPS with the API's certificate, key and client CA
//! (Kine serves its metrics with the server's TLS settings unless told not to).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::error::{Error, Result};
use crate::server::TlsFiles;

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` (over TLS with `tls`) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app =
        axum::Router::new().route("/metrics", axum::routing::get(|| async { super::render() }));
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            let listener = TlsListener {
                listener,
                acceptor: TlsAcceptor::from(config),
            };
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The TLS configuration of `files` for the metrics endpoint: their certificate and key, and
/// with a client CA, client certificates signed by it required.
pub async fn tls_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let read = |path: std::path::PathBuf| async move {
        tokio::fs::read(&path).await.map_err(|err| {
            Error::Io(std::io::Error::new(
                err.kind(),
                format!("{}: {err}", path.display()),
            ))
        })
    };
    let invalid = |what: &str, err: &dyn std::fmt::Display| {
        Error::Io(std::io::Error::other(format!("{what}: {err}")))
    };
    let cert_pem = read(files.cert.clone()).await?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid("the server certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(&read(files.key.clone()).await?)
        .map_err(|e| invalid("the server key", &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", &e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(ca.clone()).await?) {
                let cert = cert.map_err(|e| invalid("the client CA", &e))?;
                roots.add(cert).map_err(|e| invalid("the client CA", &e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("the client CA", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid("the server certificate and key", &e))?;
    Ok(Arc::new(config))
}

/// Accepts TCP connections and completes their TLS handshake; a failed handshake is logged
/// and skipped.
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, address) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => return (stream, address),
                Ok(Err(err)) => {
                    tracing::debug!(%address, error = %err, "metrics TLS handshake failed")
                }
                Err(_) => tracing::debug!(%address, "metrics TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
