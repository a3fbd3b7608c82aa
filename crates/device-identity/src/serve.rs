//! Serving an axum router over TLS, with the device certificate as a request extension.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use chrono::Utc;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::{TrustStore, VerifiedDevice};

/// The device certificate of the connection a request came on, as a request extension: a
/// handler takes `Extension(peer): Extension<PeerCertificate>`.
#[derive(Clone, Debug)]
pub struct PeerCertificate {
    /// The chain the device presented, its own certificate first.
    pub chain: Arc<[CertificateDer<'static>]>,
    /// What verification established.
    pub verified: VerifiedDevice,
}

/// Time limits of [`serve_with`].
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// How long a client has from TCP accept to a completed TLS handshake.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long open connections have to finish their requests after shutdown is asked,
    /// before they are cut.
    pub shutdown_grace: Duration,
    /// The most connections open at once (handshaking or serving); beyond it new connections
    /// are closed at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    /// 10 s for the handshake, 30 s for headers, 30 s of grace at shutdown, 10,000
    /// connections.
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// How long to pause after `accept` fails (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// [`serve_with`] with the default [`ServeOptions`].
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    client_trust: Option<TrustStore>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with(
        listener,
        config,
        client_trust,
        router,
        shutdown,
        ServeOptions::default(),
    )
    .await
}

/// Serves `router` over TLS on `listener` (HTTP/1.1 and HTTP/2, by ALPN or preface) until
/// `shutdown` resolves, then lets open connections finish for the grace period.
///
/// Each connection runs in its own task: a failed or slow handshake drops only that
/// connection. Every request carries the client's address as `ConnectInfo<SocketAddr>`.
///
/// With `client_trust` (use the store given to [`crate::mtls_server_config`]), the client
/// certificate accepted at the handshake is verified once more against the store to name the
/// device, and every request on the connection carries it as a [`PeerCertificate`]; a
/// connection without one, or whose CA was removed in between, is closed. Without it, requests
/// carry no [`PeerCertificate`]. The certificate is checked once per connection: a revocation
/// applies to the device's next connection.
pub async fn serve_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    client_trust: Option<TrustStore>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
    options: ServeOptions,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tracing::info!(
        address = %listener.local_addr()?,
        mtls = client_trust.is_some(),
        "tls listener started"
    );
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) if connections.len() >= options.max_connections => {
                    // Debug, not warn: under a connection flood a line per refusal would flood the logs.
                    tracing::debug!(%remote, open = connections.len(), "too many connections, closing a new one");
                    drop(stream);
                }
                Ok((stream, remote)) => {
                    connections.spawn(connection(Connection {
                        stream,
                        remote,
                        acceptor: acceptor.clone(),
                        client_trust: client_trust.clone(),
                        router: router.clone(),
                        watcher: graceful.watcher(),
                        options,
                    }));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                log_panic(finished);
            }
        }
    }
    drop(listener);
    tracing::info!(open = connections.len(), "tls listener stopping");
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        graceful.shutdown().await;
        while let Some(finished) = connections.join_next().await {
            log_panic(finished);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections did not finish within the grace period"
        );
        connections.shutdown().await;
    }
    tracing::info!("tls listener stopped");
    Ok(())
}

fn log_panic(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished
        && error.is_panic()
    {
        tracing::error!(%error, "connection task panicked");
    }
}

struct Connection {
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    client_trust: Option<TrustStore>,
    router: Router,
    watcher: Watcher,
    options: ServeOptions,
}

async fn connection(connection: Connection) {
    let Connection {
        stream,
        remote,
        acceptor,
        client_trust,
        router,
        watcher,
        options,
    } = connection;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%remote, %error, "cannot set tcp nodelay");
    }
    let tls = match tokio::time::timeout(options.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "tls handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "tls handshake timed out");
            return;
        }
    };
    let peer = match &client_trust {
        None => None,
        Some(trust) => {
            let chain: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(<[CertificateDer<'static>]>::to_vec)
                .unwrap_or_default();
            match trust.verify(&chain, Utc::now()) {
                Ok(verified) => Some(PeerCertificate {
                    chain: chain.into(),
                    verified,
                }),
                Err(error) => {
                    tracing::info!(%remote, %error, "device certificate refused after the handshake");
                    return;
                }
            }
        }
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        if let Some(peer) = &peer {
            request.extensions_mut().insert(peer.clone());
        }
        tower_service::Service::call(&mut router.clone(), request)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let served = watcher
        .watch(builder.serve_connection(TokioIo::new(tls), service))
        .await;
    if let Err(error) = served {
        tracing::debug!(%remote, %error, "connection ended with an error");
    }
}
