//! Wiring: the service on a running store and bus: the APIs, the estate model's catch-up, the
//! attestation service's verdicts ([`crate::verdicts`]) and the outbox relays.

use std::net::SocketAddr;
use std::sync::Arc;

use mpos_bus::Bus;
use mpos_es::{EventStore, ProjectionRunner, snapshot_framework};
use mpos_service::{CommonConfig, Infrastructure, Pipelines};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, Commands, device_router, router};
use crate::model::Model;
use crate::parameters::{ParameterSets, ParameterSigner};
use crate::read_model::TenantsProjection;

/// The service's own settings.
pub mod vars {
    /// The platform operator's bearer token for the admin API (at least 32 characters).
    pub const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
    /// Ed25519 seed (64 hex characters) signing terminals' parameter sets.
    pub const PARAMETER_SIGNING_KEY: &str = "MPOS_PARAMETER_SIGNING_KEY";
    /// Where the device API (mTLS) listens.
    pub const DEVICE_ADDR: &str = "MPOS_DEVICE_ADDR";
    /// The device API's server certificate chain (PEM file).
    pub const DEVICE_TLS_CERT: &str = "MPOS_DEVICE_TLS_CERT";
    /// The device API's server private key (PEM file).
    pub const DEVICE_TLS_KEY: &str = "MPOS_DEVICE_TLS_KEY";
}

/// The device API's server certificate and key.
pub type DeviceTls = device_identity::ServerIdentity;

/// What terminal-management needs beyond the common configuration.
pub struct TmOptions {
    /// The platform operator's token.
    pub operator_token: SecretString,
    /// The key signing parameter sets.
    pub parameter_signing_key: ed25519_dalek::SigningKey,
    /// Where the device API listens.
    pub device_addr: std::net::SocketAddr,
    /// Its server certificate (`None`: a self-signed one, for development only).
    pub device_tls: Option<DeviceTls>,
    /// Another service's device routes served on the same listener (`mposd`: key-injection's,
    /// so that a device makes one mTLS connection for its activation and its key). Their
    /// paths must not overlap terminal-management's, and they carry no fallback.
    pub more_device_routes: Option<axum::Router>,
    /// Where the attestation service's events come from, whose verdicts activate, suspend and
    /// resume SoftPOS terminals ([`crate::verdicts`]); `None`: its stream on the bus.
    pub attestation_feed: Option<mpos_feed::follow::FeedSource>,
}

impl std::fmt::Debug for TmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmOptions").finish_non_exhaustive()
    }
}

impl TmOptions {
    /// Reads the options; the operator token is handed in (mposd generates it).
    pub fn from_vars(
        vars: &mpos_config::Vars,
        operator_token: SecretString,
    ) -> Result<Self, mpos_config::ConfigError> {
        use secrecy::ExposeSecret;
        let Some(seed) = vars.hex_bytes::<32>(vars::PARAMETER_SIGNING_KEY)? else {
            return Err(mpos_config::ConfigError::missing(
                vars::PARAMETER_SIGNING_KEY,
                "64 hexadecimal characters (an Ed25519 seed for signing parameter sets)",
            ));
        };
        let device_tls = DeviceTls::from_vars(vars, vars::DEVICE_TLS_CERT, vars::DEVICE_TLS_KEY)?;
        Ok(Self {
            operator_token,
            parameter_signing_key: ed25519_dalek::SigningKey::from_bytes(seed.expose_secret()),
            device_addr: vars.socket_addr(vars::DEVICE_ADDR, "0.0.0.0:8443")?,
            device_tls,
            more_device_routes: None,
            attestation_feed: None,
        })
    }
}

/// Snapshot every this many events of a tenant.
const SNAPSHOT_EVERY: usize = 50;

/// A running terminal-management.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub http_addr: SocketAddr,
    /// Where the device API (mTLS) listens.
    pub device_addr: SocketAddr,
    pipelines: Pipelines,
}

impl Running {
    /// Waits until the API server and background tasks stopped (after cancellation).
    pub async fn join(self) {
        self.pipelines.join().await;
    }
}

/// Starts the API and the background work on connected infrastructure; everything stops when
/// `cancel` fires.
pub async fn start(
    config: &CommonConfig,
    store: EventStore,
    bus: &Bus,
    infrastructure: &Infrastructure,
    options: &TmOptions,
    listener: TcpListener,
    cancel: &CancellationToken,
) -> std::io::Result<Running> {
    let commands = Commands {
        tenants: snapshot_framework(&store, SNAPSHOT_EVERY),
        nodes: snapshot_framework(&store, SNAPSHOT_EVERY),
        terminals: snapshot_framework(&store, SNAPSHOT_EVERY),
        cas: snapshot_framework(&store, SNAPSHOT_EVERY),
    };
    let tenants = Arc::new(ProjectionRunner::new(store.clone(), TenantsProjection));
    let model = Arc::new(Model::new(store.clone()));
    model.catch_up().await.map_err(std::io::Error::other)?;

    let mut pipelines = Pipelines::start(
        &store,
        Arc::new(crate::codec()),
        bus,
        infrastructure,
        config,
        cancel,
    );
    {
        let tenants = tenants.clone();
        let model = model.clone();
        let cancel = cancel.clone();
        let poll = config.poll_interval;
        pipelines.spawn(async move {
            loop {
                if let Err(error) = tenants.catch_up().await {
                    tracing::warn!(%error, "tenants projection catch-up failed");
                }
                // Other instances' writes.
                if let Err(error) = model.catch_up().await {
                    tracing::warn!(%error, "estate model catch-up failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
    }

    let device_listener = TcpListener::bind(options.device_addr).await?;
    let device_addr = device_listener.local_addr()?;
    let device_identity::ServerIdentity { chain, key } =
        device_identity::ServerIdentity::or_self_signed(options.device_tls.as_ref(), "device")
            .map_err(std::io::Error::other)?;
    {
        let source = options
            .attestation_feed
            .clone()
            .unwrap_or_else(|| mpos_feed::follow::FeedSource::Bus(bus.subscriber.clone()));
        pipelines.spawn(crate::verdicts::run(
            store.clone(),
            source,
            commands.terminals.clone(),
            model.clone(),
            cancel.clone(),
        ));
    }
    let model_trust = model.trust().clone();
    let tls = Arc::new(
        device_identity::mtls_server_config(chain, key, model.trust().clone())
            .map_err(std::io::Error::other)?,
    );

    let http_addr = listener.local_addr()?;
    let state = AppState::new(
        commands,
        store,
        tenants,
        model,
        Arc::new(ParameterSets::new(ParameterSigner::new(
            options.parameter_signing_key.clone(),
        ))),
        &options.operator_token,
    );
    let mut devices = device_router(state.clone()).map_err(std::io::Error::other)?;
    if let Some(more) = &options.more_device_routes {
        devices = devices.merge(more.clone());
    }
    let app = router(state).map_err(std::io::Error::other)?;
    {
        let trust = model_trust;
        let shutdown = cancel.clone().cancelled_owned();
        pipelines.spawn(async move {
            if let Err(error) =
                device_identity::serve(device_listener, tls, Some(trust), devices, shutdown).await
            {
                tracing::error!(%error, "device api server failed");
            }
        });
    }
    tracing::info!(address = %device_addr, "terminal-management device api (mtls) started");
    pipelines.serve(listener, app, cancel);
    tracing::info!(address = %http_addr, "terminal-management api started");
    Ok(Running {
        http_addr,
        device_addr,
        pipelines,
    })
}
