//! Wiring: the service on a running store and bus, with the hsm-proxy reached over the bus.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hsm_proxy::rpc::HsmClient;
use mpos_bus::Bus;
use mpos_es::{EventStore, snapshot_framework};
use mpos_service::{CommonConfig, Infrastructure, Pipelines};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router};
use crate::bdk::Bdk;
use crate::injection::Injection;

/// Snapshot every this many events of an aggregate (a BDK collects one per device).
const SNAPSHOT_EVERY: usize = 100;

/// The service's own settings.
pub mod vars {
    /// The platform operator's bearer token (at least 32 characters).
    pub const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
    /// The key distribution host's RSA key pair in the hsm-proxy (id or alias, usage S0).
    pub const KDH_KEY: &str = "MPOS_KI_KDH_KEY";
    /// The key distribution host's certificate (PEM file).
    pub const KDH_CERTIFICATE: &str = "MPOS_KI_KDH_CERTIFICATE";
    /// The CAs of devices' TR-34 key receiving certificates (PEM file, one or more).
    pub const KRD_CAS: &str = "MPOS_KI_KRD_CAS";
}

/// What key-injection needs beyond the common configuration.
pub struct KiOptions {
    /// The platform operator's token.
    pub operator_token: SecretString,
    /// The KDH key pair in the hsm-proxy, per tenant the same alias (e.g. `alias/kdh`).
    pub kdh_key: String,
    /// The KDH certificate, DER.
    pub kdh_certificate: Vec<u8>,
    /// The CA certificates (DER) whose key receiving device certificates are accepted: a
    /// device's TR-34 certificate must chain to one of them.
    pub krd_cas: Vec<Vec<u8>>,
    /// How long a call to the hsm-proxy may take.
    pub hsm_timeout: Duration,
    /// How long an injection may wait for the device's confirmation.
    pub confirmation_window: Duration,
}

impl std::fmt::Debug for KiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KiOptions")
            .field("kdh_key", &self.kdh_key)
            .finish_non_exhaustive()
    }
}

/// A running key-injection.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub http_addr: SocketAddr,
    pipelines: Pipelines,
}

impl Running {
    /// Waits until the API server and background tasks stopped (after cancellation).
    pub async fn join(self) {
        self.pipelines.join().await;
    }
}

/// Starts the API and the background work; everything stops when `cancel` fires.
pub async fn start(
    config: &CommonConfig,
    store: EventStore,
    bus: &Bus,
    infrastructure: &Infrastructure,
    options: &KiOptions,
    listener: TcpListener,
    cancel: &CancellationToken,
) -> std::io::Result<Running> {
    let requests = bus.requests.clone().ok_or_else(|| {
        std::io::Error::other("key-injection needs a bus with request-reply to reach the hsm-proxy")
    })?;
    let pipelines = Pipelines::start(
        &store,
        Arc::new(crate::codec()),
        bus,
        infrastructure,
        config,
        cancel,
    );
    let state = AppState {
        bdks: snapshot_framework::<Bdk>(&store, SNAPSHOT_EVERY),
        injections: snapshot_framework::<Injection>(&store, SNAPSHOT_EVERY),
        store,
        hsm: Arc::new(HsmClient::new(
            requests,
            "service:key-injection",
            options.hsm_timeout,
        )),
        operator: mpos_http::OperatorAuth::new(&options.operator_token),
        kdh_key: options.kdh_key.clone(),
        kdh_certificate: Arc::new(options.kdh_certificate.clone()),
        krd_cas: Arc::new(options.krd_cas.clone()),
        confirmation_window: options.confirmation_window,
        bdk_cache: Arc::new(Mutex::new(HashMap::new())),
    };
    let http_addr = listener.local_addr()?;
    let app = router(state);
    let shutdown = cancel.clone().cancelled_owned();
    let mut pipelines = pipelines;
    pipelines.spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "api server failed");
        }
    });
    tracing::info!(address = %http_addr, "key-injection api started");
    Ok(Running {
        http_addr,
        pipelines,
    })
}
