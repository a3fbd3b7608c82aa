//! Wiring: the service on a running store and bus, with the hsm-proxy reached over the bus:
//! the admin API, the device API (mTLS), the terminal-management feed, the derivation
//! workers, BDK rotations and the cryptoperiod sweep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use device_identity::{ServerIdentity, TrustStore};
use hsm_proxy::rpc::HsmClient;
use mpos_bus::Bus;
use mpos_es::{EventStore, snapshot_framework};
use mpos_service::{CommonConfig, Infrastructure, Pipelines};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router};
use crate::device_api::{DeviceState, device_router};
use crate::feed::{FeedSource, TmsView};
use crate::injector::{Actor, FlowSettings, Injector};
use crate::rotation::Rotations;
use crate::slots::DeviceKeysCommand;
use crate::softpos_api::{SoftPosState, softpos_router, softpos_routes};
use attestation_keys::{KeySource, Tokens};

/// Snapshot every this many events of an aggregate (a BDK collects one per device).
const SNAPSHOT_EVERY: usize = 100;

/// The service's own settings.
pub mod vars {
    /// The platform operator's bearer token (at least 32 characters).
    pub const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
    /// The key distribution host's RSA key pair in the hsm-proxy (id or alias, usage S0).
    pub const KDH_KEY: &str = "MPOS_KI_KDH_KEY";
    /// The key distribution host's certificate (PEM file, optional) for tenants without one
    /// of their own (set with `PUT /v1/tenants/{tenant}/kdh-certificate`).
    pub const KDH_CERTIFICATE: &str = "MPOS_KI_KDH_CERTIFICATE";
    /// Extra CAs of devices' TR-34 key receiving certificates (PEM file, optional), beside
    /// the manufacturer CAs registered in terminal-management.
    pub const KRD_CAS: &str = "MPOS_KI_KRD_CAS";
    /// Where the device API (mTLS) listens.
    pub const DEVICE_ADDR: &str = "MPOS_KI_DEVICE_ADDR";
    /// The device API's server certificate chain (PEM file).
    pub const DEVICE_TLS_CERT: &str = "MPOS_KI_DEVICE_TLS_CERT";
    /// The device API's server private key (PEM file).
    pub const DEVICE_TLS_KEY: &str = "MPOS_KI_DEVICE_TLS_KEY";
    /// How many injections are derived at once.
    pub const WORKERS: &str = "MPOS_KI_WORKERS";
    /// How long an injected key may be used, in days.
    pub const CRYPTOPERIOD_DAYS: &str = "MPOS_KI_CRYPTOPERIOD_DAYS";
    /// How long an injection waits for the device's confirmation, in seconds.
    pub const CONFIRMATION_WINDOW_S: &str = "MPOS_KI_CONFIRMATION_WINDOW_S";
    /// Where SoftPOS phones ask for their key (TLS, server certificate only: the attestation
    /// token authenticates); its certificate and key are the device API's.
    pub const SOFTPOS_ADDR: &str = "MPOS_KI_SOFTPOS_ADDR";
    /// The attestation service's published token keys (`…/v1/attestation/token-keys`).
    pub const TOKEN_KEYS_URL: &str = "MPOS_KI_TOKEN_KEYS_URL";
}

/// What key-injection needs beyond the common configuration.
pub struct KiOptions {
    /// The platform operator's token.
    pub operator_token: SecretString,
    /// The KDH key pair in the hsm-proxy, per tenant the same alias (e.g. `alias/kdh`).
    pub kdh_key: String,
    /// The default KDH certificate (DER; empty: none), for tenants without their own.
    pub kdh_certificate: Vec<u8>,
    /// Extra CA certificates (DER) for devices' key receiving certificates.
    pub krd_cas: Vec<Vec<u8>>,
    /// How long a call to the hsm-proxy may take.
    pub hsm_timeout: Duration,
    /// How long an injection may wait for the device's confirmation.
    pub confirmation_window: Duration,
    /// How long an injected key may be used.
    pub cryptoperiod: Duration,
    /// Where the device API listens; `None`: no listener of its own, the caller serves
    /// [`Running::device_routes`] on its own device listener (`mposd` serves them beside
    /// terminal-management's).
    pub device_addr: Option<SocketAddr>,
    /// The device API's server identity (`None`: self-signed, not for production).
    pub device_tls: Option<ServerIdentity>,
    /// Injections derived at once.
    pub workers: usize,
    /// How often rotations and cryptoperiods are looked at.
    pub sweep_interval: Duration,
    /// How often every key's cryptoperiod is checked (alarms warn 30 days ahead).
    pub cryptoperiod_check_interval: Duration,
    /// Where terminal-management's events come from; `None`: the bus.
    pub feed: Option<FeedSource>,
    /// Where SoftPOS phones ask for their key over TLS; `None`: on the admin listener
    /// (`mposd`, whose listeners are local).
    pub softpos_addr: Option<SocketAddr>,
    /// The attestation service's token keys, which authenticate SoftPOS phones.
    pub token_keys: KeySource,
}

impl std::fmt::Debug for KiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KiOptions")
            .field("kdh_key", &self.kdh_key)
            .field("device_addr", &self.device_addr)
            .field("softpos_addr", &self.softpos_addr)
            .finish_non_exhaustive()
    }
}

/// A running key-injection.
#[derive(Debug)]
pub struct Running {
    /// Where the admin API listens.
    pub http_addr: SocketAddr,
    /// Where the device API (mTLS) listens, if it has a listener of its own.
    pub device_addr: Option<SocketAddr>,
    /// Where SoftPOS phones ask for their key (TLS), if on a listener of its own.
    pub softpos_addr: Option<SocketAddr>,
    /// The device routes without a fallback, for a device listener shared with another
    /// service (they expect [`device_identity::serve`]'s verified peer certificate).
    pub device_routes: axum::Router,
    pipelines: Pipelines,
}

impl Running {
    /// Waits until the servers and background tasks stopped (after cancellation).
    pub async fn join(self) {
        self.pipelines.join().await;
    }
}

/// Starts the APIs and the background work; everything stops when `cancel` fires.
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
    let mut pipelines = Pipelines::start(
        &store,
        Arc::new(crate::codec()),
        bus,
        infrastructure,
        config,
        cancel,
    );
    let trust = TrustStore::new();
    let injector = Arc::new(Injector::new(
        snapshot_framework(&store, SNAPSHOT_EVERY),
        snapshot_framework(&store, SNAPSHOT_EVERY),
        snapshot_framework(&store, SNAPSHOT_EVERY),
        store.clone(),
        Arc::new(HsmClient::new(
            requests,
            "service:key-injection",
            options.hsm_timeout,
        )),
        trust.clone(),
        FlowSettings {
            kdh_key: options.kdh_key.clone(),
            kdh_certificate: options.kdh_certificate.clone(),
            krd_cas: options.krd_cas.clone(),
            confirmation_window: options.confirmation_window,
            cryptoperiod: options.cryptoperiod,
        },
    ));
    let view = TmsView::new(store.clone(), trust.clone(), crate::feed::PROJECTION);
    if let Err(error) = view.reload_trust().await {
        tracing::warn!(error = %error.message, "cannot load the manufacturer cas");
    }

    // Derivation workers, fed by requests and, at start, by what a crash left undone.
    let (work, queue) = mpsc::channel::<(String, String)>(1_024);
    injector.set_worker(work.clone());
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    for _ in 0..options.workers.max(1) {
        let (injector, queue, cancel) = (injector.clone(), queue.clone(), cancel.clone());
        pipelines.spawn(async move {
            let actor = Actor("service:key-injection".to_owned());
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = async { queue.lock().await.recv().await } => next,
                };
                let Some((tenant_id, injection_id)) = next else { return };
                if let Err(error) = injector.derive(&actor, &tenant_id, &injection_id).await {
                    // The device's download derives it again if needed.
                    tracing::warn!(%tenant_id, %injection_id, error = %error.message, "key derivation failed");
                }
            }
        });
    }
    {
        let injector = injector.clone();
        pipelines.spawn(async move {
            match injector.unfinished().await {
                Ok(unfinished) => {
                    if !unfinished.is_empty() {
                        tracing::info!(
                            count = unfinished.len(),
                            "resuming injections left before delivery"
                        );
                    }
                    for item in unfinished {
                        if work.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error.message, "cannot list unfinished injections");
                }
            }
        });
    }

    // terminal-management's events.
    let source = options
        .feed
        .clone()
        .unwrap_or_else(|| FeedSource::Bus(bus.subscriber.clone()));
    pipelines.spawn(crate::feed::run_from(
        store.clone(),
        view.clone(),
        source,
        injector.clone(),
        cancel.clone(),
    ));

    let rotations = Arc::new(Rotations::default());
    let state = AppState {
        injector: injector.clone(),
        view: view.clone(),
        operator: mpos_http::OperatorAuth::new(&options.operator_token),
        rotations: rotations.clone(),
    };
    {
        let (state, cancel, tick) = (state.clone(), cancel.clone(), options.sweep_interval);
        pipelines.spawn(async move { rotations.run(state, tick, cancel).await });
    }
    {
        let (injector, cancel, tick) = (
            injector.clone(),
            cancel.clone(),
            options.cryptoperiod_check_interval,
        );
        pipelines.spawn(async move { sweep_cryptoperiods(injector, tick, cancel).await });
    }

    // The device API, over mTLS with the manufacturer CAs.
    let device_state = DeviceState {
        injector: injector.clone(),
        view: view.clone(),
    };
    let device_routes = crate::device_api::device_routes(device_state.clone());
    let device_addr = match options.device_addr {
        None => None,
        Some(address) => {
            let device_listener = TcpListener::bind(address).await?;
            let device_addr = device_listener.local_addr()?;
            let ServerIdentity { chain, key } =
                ServerIdentity::or_self_signed(options.device_tls.as_ref(), "key-injection device")
                    .map_err(std::io::Error::other)?;
            let tls = Arc::new(
                device_identity::mtls_server_config(chain, key, trust.clone())
                    .map_err(std::io::Error::other)?,
            );
            let devices = device_router(device_state);
            let shutdown = cancel.clone().cancelled_owned();
            pipelines.spawn(async move {
                if let Err(error) =
                    device_identity::serve(device_listener, tls, Some(trust), devices, shutdown)
                        .await
                {
                    tracing::error!(%error, "device api server failed");
                }
            });
            tracing::info!(address = %device_addr, "key-injection device api (mtls) started");
            Some(device_addr)
        }
    };

    // The SoftPOS key API: TLS, the attestation token authenticates.
    let tokens = Arc::new(
        Tokens::new(options.token_keys.clone())
            .map_err(|error| std::io::Error::other(format!("attestation token keys: {error}")))?,
    );
    pipelines.spawn(tokens.clone().run(Duration::from_secs(300), cancel.clone()));
    let softpos_state = SoftPosState {
        injector: injector.clone(),
        view: view.clone(),
        tokens,
    };
    let softpos_addr = match options.softpos_addr {
        None => None,
        Some(address) => {
            let softpos_listener = TcpListener::bind(address).await?;
            let softpos_addr = softpos_listener.local_addr()?;
            let ServerIdentity { chain, key } = ServerIdentity::or_self_signed(
                options.device_tls.as_ref(),
                "key-injection softpos",
            )
            .map_err(std::io::Error::other)?;
            let tls = Arc::new(
                device_identity::server_config(chain, key).map_err(std::io::Error::other)?,
            );
            let phones = softpos_router(softpos_state.clone());
            let shutdown = cancel.clone().cancelled_owned();
            pipelines.spawn(async move {
                if let Err(error) =
                    device_identity::serve(softpos_listener, tls, None, phones, shutdown).await
                {
                    tracing::error!(%error, "softpos key api server failed");
                }
            });
            tracing::info!(address = %softpos_addr, "key-injection softpos key api (tls) started");
            Some(softpos_addr)
        }
    };

    let http_addr = listener.local_addr()?;
    let mut app = router(state);
    if softpos_addr.is_none() {
        app = app.merge(softpos_routes(softpos_state));
    }
    pipelines.serve(listener, app, cancel);
    tracing::info!(address = %http_addr, "key-injection api started");
    Ok(Running {
        http_addr,
        device_addr,
        softpos_addr,
        device_routes,
        pipelines,
    })
}

/// Raises cryptoperiod alarms: every `tick`, each terminal's keys are checked against their
/// cryptoperiod (an alarm is recorded once per severity and key).
async fn sweep_cryptoperiods(injector: Arc<Injector>, tick: Duration, cancel: CancellationToken) {
    let actor = Actor("service:key-injection".to_owned());
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        let inventories = match injector
            .store
            .read_aggregate_type(crate::slots::AGGREGATE_TYPE)
            .await
        {
            Ok(events) => {
                let mut ids: Vec<(String, String)> = events
                    .iter()
                    .map(|stored| {
                        (
                            stored.event.tenant_id.clone(),
                            stored.event.aggregate_id.clone(),
                        )
                    })
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read key slots");
                continue;
            }
        };
        for (tenant_id, aggregate_id) in inventories {
            if let Err(error) = injector
                .execute(
                    &injector.slots,
                    &actor,
                    &tenant_id,
                    &aggregate_id,
                    DeviceKeysCommand::CheckCryptoperiod {
                        now_us: mpos_es::now_micros(),
                    },
                )
                .await
            {
                tracing::warn!(%aggregate_id, error = %error.message, "cryptoperiod check failed");
            }
        }
    }
}

impl KiOptions {
    /// Reads the options; the operator token is handed in (mposd generates it), and
    /// `device_addr` is the default device API address.
    pub fn from_vars(
        vars: &mpos_config::Vars,
        operator_token: SecretString,
        device_addr: &str,
    ) -> Result<Self, mpos_config::ConfigError> {
        let keys_url = vars.string(
            vars::TOKEN_KEYS_URL,
            Some("https://attestation:8445/v1/attestation/token-keys"),
            "an https URL",
        )?;
        let token_keys = KeySource::url(keys_url).map_err(|url| {
            mpos_config::ConfigError::invalid(vars::TOKEN_KEYS_URL, "an https URL", &url)
        })?;
        use device_identity::rustls::pki_types::CertificateDer;
        use device_identity::rustls::pki_types::pem::PemObject;
        use mpos_config::ConfigError;
        let certificate = match vars.optional_path(vars::KDH_CERTIFICATE)? {
            Some(kdh_path) => CertificateDer::from_pem_file(&kdh_path)
                .map_err(|error| {
                    ConfigError::invalid(
                        vars::KDH_CERTIFICATE,
                        "a PEM certificate file",
                        &error.to_string(),
                    )
                })?
                .as_ref()
                .to_vec(),
            None => Vec::new(),
        };
        let krd_cas = match vars.optional_path(vars::KRD_CAS)? {
            Some(cas_path) => CertificateDer::pem_file_iter(&cas_path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|error| {
                    ConfigError::invalid(
                        vars::KRD_CAS,
                        "a PEM file of CA certificates",
                        &error.to_string(),
                    )
                })?
                .iter()
                .map(|ca| ca.as_ref().to_vec())
                .collect(),
            None => Vec::new(),
        };
        let device_tls =
            ServerIdentity::from_vars(vars, vars::DEVICE_TLS_CERT, vars::DEVICE_TLS_KEY)?;
        let days: u64 = vars.parse(
            vars::CRYPTOPERIOD_DAYS,
            Some(730),
            "a number of days from 1 to 7300",
        )?;
        if !(1..=7_300).contains(&days) {
            return Err(ConfigError::invalid(
                vars::CRYPTOPERIOD_DAYS,
                "a number of days from 1 to 7300",
                &days.to_string(),
            ));
        }
        let window: u64 = vars.parse(
            vars::CONFIRMATION_WINDOW_S,
            Some(3_600),
            "a number of seconds from 1 to 604800",
        )?;
        let workers: usize =
            vars.parse(vars::WORKERS, Some(8), "a number of workers from 1 to 256")?;
        Ok(Self {
            operator_token,
            kdh_key: vars.string(vars::KDH_KEY, Some("alias/kdh"), "a key id or alias")?,
            kdh_certificate: certificate,
            krd_cas,
            hsm_timeout: vars.duration_ms("MPOS_KI_HSM_TIMEOUT_MS", 5_000)?,
            confirmation_window: Duration::from_secs(window.clamp(1, 604_800)),
            cryptoperiod: Duration::from_secs(days * 24 * 3_600),
            device_addr: Some(vars.socket_addr(vars::DEVICE_ADDR, device_addr)?),
            device_tls,
            workers: workers.clamp(1, 256),
            sweep_interval: vars.duration_ms("MPOS_KI_SWEEP_INTERVAL_MS", 60_000)?,
            cryptoperiod_check_interval: vars
                .duration_ms("MPOS_KI_CRYPTOPERIOD_CHECK_INTERVAL_MS", 3_600_000)?,
            feed: None,
            softpos_addr: Some(vars.socket_addr(vars::SOFTPOS_ADDR, "0.0.0.0:8449")?),
            token_keys,
        })
    }
}
