//! The listener every cartflow server runs on: hyper's HTTP/1.1 connection
//! with a header-read timeout (axum's `serve` and axum-server leave a client
//! that never finishes its headers connected forever), a cap on open
//! connections, optional TLS (rustls) with a handshake timeout, and a
//! graceful stop that lets requests in flight finish. Written here because no
//! crate bundles these four: it is hyper-util's own server loop, with limits.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::Limits;

/// Connections closed on arrival because the cap was reached.
pub const REFUSED: &str = "cartflow_http_connections_refused_total";
/// Connections being served.
pub const OPEN: &str = "cartflow_http_connections";

pub fn describe_metrics() {
    metrics::describe_counter!(REFUSED, "Connections closed on arrival because the server had max_connections open.");
    metrics::describe_gauge!(OPEN, "Connections being served.");
}

/// A certificate chain and its key, ready for handshakes.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

impl Tls {
    /// Loads PEM files: the chain (leaf first) and its private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("certificate {}: no certificate in the file", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("private key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("certificate {} with its key: {e}", cert.display()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// A bound listener, not yet serving.
pub struct Server {
    listener: std::net::TcpListener,
    local: SocketAddr,
    tls: Option<Tls>,
    limits: Limits,
}

/// Whether a server on `addr` may run without tokens: only on loopback,
/// where nobody but this machine's users can reach it.
pub fn open_mode_allowed(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Why a server did not start listening.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("binding {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("serving without API tokens (--no-auth) is allowed only on a loopback address (127.0.0.1, ::1), not {0}")]
    OpenOffLoopback(SocketAddr),
}

impl Server {
    /// Binds `addr` for a server answering `tokens`: without tokens (open
    /// mode) only on loopback, with a warning on stderr naming the address.
    pub fn bind_for(
        addr: &str,
        limits: Limits,
        tls: Option<Tls>,
        tokens: &crate::Tokens,
        what: &str,
    ) -> Result<Server, BindError> {
        let server =
            Server::bind(addr, limits, tls).map_err(|source| BindError::Io { addr: addr.to_owned(), source })?;
        if tokens.is_open() {
            if !open_mode_allowed(&server.local) {
                return Err(BindError::OpenOffLoopback(server.local));
            }
            eprintln!(
                "WARNING: {what} on {} asks no API token (--no-auth): anyone who can reach this machine's loopback \
                 may read and change everything it serves",
                server.url()
            );
        }
        Ok(server)
    }

    pub fn bind(addr: &str, limits: Limits, tls: Option<Tls>) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        Ok(Server { listener, local, tls, limits })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.local)
    }

    /// Serves `app` until `stop` completes, then lets requests in flight
    /// finish for up to five seconds. Needs a Tokio runtime.
    pub async fn serve(self, app: Router, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let app = crate::headers::common(app);
        // At zero from the start, so `rate` sees the first refusal.
        metrics::counter!(REFUSED).increment(0);
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(self.limits.max_connections.max(1)));
        let header_timeout = self.limits.header_timeout;
        let mut stop = std::pin::pin!(stop);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: wait for some to free, keep serving.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!(REFUSED).increment(1);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (app, tls, watcher) = (app.clone(), self.tls.clone(), graceful.watcher());
            tokio::spawn(async move {
                let _slot = slot;
                metrics::gauge!(OPEN).increment(1.0);
                match tls {
                    None => serve_connection(TokioIo::new(stream), app, header_timeout, watcher).await,
                    Some(Tls(acceptor)) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), app, header_timeout, watcher).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    },
                }
                metrics::gauge!(OPEN).decrement(1.0);
            });
        }
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
            tracing::warn!("requests still in flight after 5 s; stopping anyway");
        }
        Ok(())
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    app: Router,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!("connection: {e}");
    }
}
