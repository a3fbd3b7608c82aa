//! Wiring: the hsm-proxy on a running store and bus.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::CqrsFramework;
use cqrs_es::persist::PersistedEventStore;
use mpos_bus::Bus;
use mpos_config::{ConfigError, Vars};
use mpos_es::{CommandMetadata, EventRepository, EventStore, PLATFORM_TENANT};
use mpos_service::{CommonConfig, Infrastructure, Pipelines};
use paycrypto::SecretBytes;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router};
use crate::backend;
use crate::engine::Hsm;
use crate::health::{BackendHealth, Report};
use crate::pool::{Pool, PoolConfig};
use crate::registry::Registry;
use crate::sealing::{SealedCardData, Sealing};

/// Snapshot every this many events of a key.
const SNAPSHOT_EVERY: usize = 50;
/// How often keys past their deletion waiting period are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Variable names of the hsm-proxy.
pub mod vars {
    /// The backends, comma-separated URLs (`soft://<dir>`, `pkcs11://<module>?token=<label>`,
    /// `payshield://host:port`, each with `?id=a&site=b`).
    pub const BACKENDS: &str = "MPOS_HSM_BACKENDS";
    /// The soft:// backends' local master key: 64 hex digits (AES-256).
    pub const SOFT_LMK: &str = "MPOS_HSM_SOFT_LMK";
    /// The user PIN of the pkcs11:// backends' tokens.
    pub const PKCS11_PIN: &str = "MPOS_HSM_PKCS11_PIN";
    /// The site this instance runs at (its backends are preferred).
    pub const SITE: &str = "MPOS_HSM_SITE";
    /// An attempt slower than this (ms) fails over to another backend.
    pub const ATTEMPT_TIMEOUT_MS: &str = "MPOS_HSM_ATTEMPT_TIMEOUT_MS";
    /// How often backends are health-checked (ms).
    pub const CHECK_INTERVAL_MS: &str = "MPOS_HSM_CHECK_INTERVAL_MS";
    /// `require` or `allow` (default): whether PANs, PAN-bearing MAC messages and DUKPT
    /// `DecryptData` plaintexts must travel sealed on the bus.
    pub const SEALED_CARD_DATA: &str = "MPOS_HSM_SEALED_CARD_DATA";
}

/// The hsm-proxy's own configuration.
#[derive(Debug, Default)]
pub struct HsmConfig {
    /// Backend URLs.
    pub backends: Vec<String>,
    /// The soft backends' LMK.
    pub soft_lmk: Option<SecretBytes>,
    /// The pkcs11 backends' user PIN.
    pub pkcs11_pin: Option<SecretString>,
    /// Pool tuning.
    pub pool: PoolConfig,
    /// Whether card data must travel sealed on the bus.
    pub sealed_card_data: SealedCardData,
}

impl HsmConfig {
    /// Reads the `MPOS_HSM_*` variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let backends: Vec<String> = vars
            .string(
                vars::BACKENDS,
                None,
                "comma-separated backend URLs, e.g. soft:///var/lib/mpos/hsm",
            )?
            .split(',')
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        let soft_lmk = vars
            .hex_bytes::<32>(vars::SOFT_LMK)?
            .map(|lmk| SecretBytes::from_slice(lmk.expose_secret()));
        let pkcs11_pin = vars.optional_secret(vars::PKCS11_PIN, 4)?;
        let sealed_card_data = vars.parse(
            vars::SEALED_CARD_DATA,
            Some(SealedCardData::Allow),
            "require or allow",
        )?;
        Ok(Self {
            backends,
            soft_lmk,
            pkcs11_pin,
            pool: PoolConfig {
                local_site: vars.string(
                    vars::SITE,
                    Some("local"),
                    "the site this instance runs at",
                )?,
                attempt_timeout: vars.duration_ms(vars::ATTEMPT_TIMEOUT_MS, 500)?,
                check_interval: vars.duration_ms(vars::CHECK_INTERVAL_MS, 1_000)?,
            },
            sealed_card_data,
        })
    }
}

/// A running hsm-proxy.
#[derive(Debug)]
pub struct Running {
    /// Where the admin API listens.
    pub http_addr: SocketAddr,
    /// The service core (for in-process callers and tests).
    pub hsm: Arc<Hsm>,
    /// This process's sealer: its public key is what callers seal card data to.
    pub sealer: Arc<mpos_seal::Sealer>,
    pipelines: Pipelines,
}

impl Running {
    /// Waits until the API server and background tasks stopped (after cancellation).
    pub async fn join(self) {
        self.pipelines.join().await;
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backend could not be opened.
    #[error("backend: {0}")]
    Backend(#[from] crate::error::HsmError),
    /// The registry could not be read from the log.
    #[error("event store: {0}")]
    Store(#[from] mpos_es::StoreError),
    /// Request-reply could not be served.
    #[error("bus: {0}")]
    Bus(#[from] mpos_bus::BusError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// No sealing key could be made (the operating system's generator failed).
    #[error("sealing key: {0}")]
    Seal(#[from] mpos_seal::SealError),
}

/// Starts the API, the request-reply servers and the background work on connected
/// infrastructure; everything stops when `cancel` fires.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: &CommonConfig,
    hsm_config: &HsmConfig,
    store: EventStore,
    bus: &Bus,
    infrastructure: &Infrastructure,
    operator_token: &SecretString,
    listener: TcpListener,
    cancel: &CancellationToken,
) -> Result<Running, StartError> {
    if hsm_config.backends.is_empty() {
        return Err(StartError::Backend(crate::error::HsmError::invalid(
            vars::BACKENDS,
            "name at least one backend",
        )));
    }
    let secrets = backend::BackendSecrets {
        soft_lmk: hsm_config.soft_lmk.clone(),
        pkcs11_pin: hsm_config.pkcs11_pin.clone(),
    };
    let mut backends = Vec::new();
    for url in &hsm_config.backends {
        backends.push(backend::connect(url, &secrets).await?);
    }
    let (pool, mut health_changes) = Pool::new(backends, hsm_config.pool.clone());
    let pool = Arc::new(pool);

    let repository = EventRepository::new(store.clone());
    let cqrs = Arc::new(CqrsFramework::new(
        PersistedEventStore::new_snapshot_store(repository.clone(), SNAPSHOT_EVERY),
        vec![],
        (),
    ));
    let health_cqrs = Arc::new(CqrsFramework::<BackendHealth, _>::new(
        PersistedEventStore::new_event_store(repository),
        vec![],
        (),
    ));
    let registry = Arc::new(Registry::new(store.clone()));
    registry.catch_up().await?;
    let hsm = Arc::new(Hsm::new(cqrs, registry.clone(), pool.clone()));
    // One sealer for the process: a new key pair at every start, never stored.
    let sealer = Arc::new(mpos_seal::Sealer::new()?);

    let mut pipelines = Pipelines::start(
        &store,
        Arc::new(crate::codec()),
        bus,
        infrastructure,
        config,
        cancel,
    );
    pipelines.spawn(pool.clone().run_health_checks(cancel.clone()));
    {
        let cancel = cancel.clone();
        pipelines.spawn(async move {
            loop {
                let change = tokio::select! {
                    () = cancel.cancelled() => break,
                    change = health_changes.recv() => change,
                };
                let Some(change) = change else { break };
                let metadata = CommandMetadata {
                    tenant_id: PLATFORM_TENANT.to_owned(),
                    correlation_id: uuid::Uuid::now_v7().to_string(),
                    causation_id: String::new(),
                    traceparent: String::new(),
                    actor: "service:hsm-proxy".to_owned(),
                };
                let command = (
                    change.backend_id.clone(),
                    Report {
                        site: change.site,
                        healthy: change.healthy,
                        reason: change.reason,
                    },
                );
                if let Err(error) = health_cqrs
                    .execute_with_metadata(&change.backend_id, command, metadata.into_map())
                    .await
                {
                    tracing::warn!(backend = %change.backend_id, %error, "cannot record backend health");
                }
            }
        });
    }
    {
        let (registry, cancel, poll) = (registry.clone(), cancel.clone(), config.poll_interval);
        pipelines.spawn(async move {
            loop {
                if let Err(error) = registry.catch_up().await {
                    tracing::warn!(%error, "key registry catch-up failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
    }
    {
        let (hsm, cancel) = (hsm.clone(), cancel.clone());
        pipelines.spawn(async move {
            loop {
                if let Err(error) = hsm.purge_due(mpos_es::now_micros()).await {
                    tracing::warn!(%error, "deleting keys past their waiting period failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(PURGE_INTERVAL) => {}
                }
            }
        });
    }

    if let Some(requests) = &bus.requests {
        let sealing = Arc::new(Sealing::new(sealer.clone(), hsm_config.sealed_card_data));
        let handles = crate::rpc::serve(requests, hsm.clone(), sealing).await?;
        let cancel = cancel.clone();
        pipelines.spawn(async move {
            cancel.cancelled().await;
            for handle in handles {
                handle.stop().await;
            }
        });
    } else {
        tracing::warn!("the bus has no request-reply; only the admin http api is served");
    }

    let http_addr = listener.local_addr()?;
    let app = router(AppState::new(hsm.clone(), operator_token));
    pipelines.serve(listener, app, cancel);
    tracing::info!(
        address = %http_addr,
        backends = hsm_config.backends.len(),
        sealing_key_id = %sealer.key_id(),
        sealed_card_data = hsm_config.sealed_card_data.as_str(),
        "hsm-proxy started"
    );
    Ok(Running {
        http_addr,
        hsm,
        sealer,
        pipelines,
    })
}
