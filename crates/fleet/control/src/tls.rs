//! The API over TLS, for kubectl: Kubernetes clients send a bearer token only over a TLS
//! connection, so the control plane serves the same router on a second, secure port (as
//! kube-apiserver's secure port) with a certificate its kubeconfig names as the authority.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::debug;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid TLS certificate or key: {0}")]
pub struct TlsError(String);

/// A TLS acceptor from a PEM certificate chain and a PEM private key.
pub fn acceptor(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError(format!("key: {e}")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS until `stop` turns true; open connections end with it.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut stopping = stop.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    debug!("TLS accept failed: {e}");
                    continue;
                }
            },
            _ = stopping.wait_for(|s| *s) => return,
        };
        let (acceptor, app, mut stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                r = conn => if let Err(e) = r { debug!(%peer, "TLS connection: {e}"); },
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}
