//! Wiring: the service on a running store and bus: the API, terminal-management's feed (API
//! keys, tenants, SoftPOS terminals), the trust sources' refresh, the monitoring sweep and the
//! outbox relays that put every event on NATS and Kafka.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use attestation_token::TokenIssuer;
use attestation_trust::{Source, TrustConfig, TrustSources};
use mpos_bus::Bus;
use mpos_es::EventStore;
use mpos_feed::follow::{FeedNames, FeedSource};
use mpos_feed::tms::{TMS_SOURCE, TmsDocuments, TmsView};
use mpos_service::{CommonConfig, Infrastructure, Pipelines};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router};
use crate::engine::{Actor, Attestor, Settings};

/// The service's own settings.
pub mod vars {
    /// The platform operator's bearer token (at least 32 characters).
    pub const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
    /// The token signing key: a PKCS#8 PEM file of a P-256 key (unset: a key generated at
    /// start, so tokens do not outlive a restart; not for production).
    pub const TOKEN_KEY: &str = "MPOS_ATT_TOKEN_KEY";
    /// The token key's id (`kid`).
    pub const TOKEN_KID: &str = "MPOS_ATT_TOKEN_KID";
    /// The trust anchors: `builtin` (Google's two roots), a PEM file, or an https URL.
    pub const ANCHORS: &str = "MPOS_ATT_ANCHORS";
    /// The revocation status list: a file or an https URL (`none`: no list).
    pub const STATUS_LIST: &str = "MPOS_ATT_STATUS_LIST";
    /// Where the last good status list is kept for a start while its source is unreachable.
    pub const STATUS_LIST_CACHE: &str = "MPOS_ATT_STATUS_LIST_CACHE";
    /// How often anchors and status list are refreshed, in seconds.
    pub const REFRESH_S: &str = "MPOS_ATT_REFRESH_S";
    /// How long a challenge is valid, in seconds.
    pub const CHALLENGE_TTL_S: &str = "MPOS_ATT_CHALLENGE_TTL_S";
    /// How often missed re-attestations are looked for, in milliseconds.
    pub const MONITOR_INTERVAL_MS: &str = "MPOS_ATT_MONITOR_INTERVAL_MS";
    /// Where the device API (the SoftPOS app: challenges and evidence, over TLS) listens.
    pub const DEVICE_ADDR: &str = "MPOS_ATT_DEVICE_ADDR";
    /// The device API's server certificate chain (PEM file).
    pub const DEVICE_TLS_CERT: &str = "MPOS_ATT_DEVICE_TLS_CERT";
    /// The device API's server private key (PEM file).
    pub const DEVICE_TLS_KEY: &str = "MPOS_ATT_DEVICE_TLS_KEY";
}

/// The feed's names.
pub const FEED: FeedNames = FeedNames {
    source: TMS_SOURCE,
    projection: "att-tms",
    consumer: "att-tms-feed",
    durable: "attestation",
    event_type: None,
};

/// What attestation needs beyond the common configuration.
pub struct AttOptions {
    /// The platform operator's token.
    pub operator_token: SecretString,
    /// The token signer.
    pub token_issuer: Arc<TokenIssuer>,
    /// Trust anchors and status list.
    pub trust: TrustConfig,
    /// How long a challenge is valid.
    pub challenge_ttl: Duration,
    /// How often missed re-attestations are looked for.
    pub monitor_interval: Duration,
    /// Where terminal-management's events come from; `None`: the bus.
    pub feed: Option<FeedSource>,
    /// Where the device API listens, over TLS; `None`: the device routes are served on the
    /// HTTP listener beside the admin routes (`mposd` on localhost, tests).
    pub device_addr: Option<SocketAddr>,
    /// The device API's server identity (`None`: self-signed, not for production).
    pub device_tls: Option<device_identity::ServerIdentity>,
}

impl std::fmt::Debug for AttOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttOptions")
            .field("kid", &self.token_issuer.kid())
            .field("challenge_ttl", &self.challenge_ttl)
            .finish_non_exhaustive()
    }
}

/// A running attestation service.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub http_addr: SocketAddr,
    /// Where the device API listens over TLS, if it has a listener of its own.
    pub device_addr: Option<SocketAddr>,
    /// The operations (for tests and the embedded platform).
    pub attestor: Arc<Attestor>,
    pipelines: Pipelines,
}

impl Running {
    /// Waits until the servers and background tasks stopped (after cancellation).
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
    options: &AttOptions,
    listener: TcpListener,
    cancel: &CancellationToken,
) -> std::io::Result<Running> {
    let mut pipelines = Pipelines::start(
        &store,
        Arc::new(crate::codec()),
        bus,
        infrastructure,
        config,
        cancel,
    );
    let trust = TrustSources::load(options.trust.clone())
        .await
        .map_err(|error| std::io::Error::other(format!("attestation trust: {error}")))?;
    pipelines.spawn(trust.clone().run(cancel.clone()));
    let attestor = Arc::new(Attestor::new(
        store.clone(),
        trust,
        options.token_issuer.clone(),
        Settings {
            challenge_ttl: options.challenge_ttl,
            issuer: format!("mpos:{}", crate::SERVICE),
        },
    ));
    let view = TmsView::new(
        store.clone(),
        device_identity::TrustStore::new(),
        FEED.projection,
    );
    let source = options
        .feed
        .clone()
        .unwrap_or_else(|| FeedSource::Bus(bus.subscriber.clone()));
    pipelines.spawn(mpos_feed::follow::run(
        store.clone(),
        FEED,
        source,
        Arc::new(TmsDocuments { view: view.clone() }),
        cancel.clone(),
    ));
    {
        let (attestor, cancel, tick) = (attestor.clone(), cancel.clone(), options.monitor_interval);
        pipelines.spawn(async move {
            let actor = Actor("service:attestation".to_owned());
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(tick) => {}
                }
                if let Err(error) = attestor.monitor(&actor).await {
                    tracing::warn!(error = %error.message, "monitoring sweep failed");
                }
            }
        });
    }

    let state = AppState {
        attestor: attestor.clone(),
        view,
        operator: mpos_http::OperatorAuth::new(&options.operator_token),
    };
    let device_addr = match options.device_addr {
        None => None,
        Some(address) => {
            let device_listener = TcpListener::bind(address).await?;
            let device_addr = device_listener.local_addr()?;
            let device_identity::ServerIdentity { chain, key } =
                device_identity::ServerIdentity::or_self_signed(
                    options.device_tls.as_ref(),
                    "attestation device",
                )
                .map_err(std::io::Error::other)?;
            let tls = Arc::new(
                device_identity::server_config(chain, key).map_err(std::io::Error::other)?,
            );
            let devices =
                crate::api::device_router(state.clone()).map_err(std::io::Error::other)?;
            let shutdown = cancel.clone().cancelled_owned();
            pipelines.spawn(async move {
                if let Err(error) =
                    device_identity::serve(device_listener, tls, None, devices, shutdown).await
                {
                    tracing::error!(%error, "device api server failed");
                }
            });
            tracing::info!(address = %device_addr, "attestation device api (tls) started");
            Some(device_addr)
        }
    };
    let http_addr = listener.local_addr()?;
    let app = router(state, device_addr.is_none()).map_err(std::io::Error::other)?;
    pipelines.serve(listener, app, cancel);
    tracing::info!(address = %http_addr, "attestation api started");
    Ok(Running {
        http_addr,
        device_addr,
        attestor,
        pipelines,
    })
}

impl AttOptions {
    /// Reads the options; the operator token is handed in (mposd generates it).
    pub fn from_vars(
        vars: &mpos_config::Vars,
        operator_token: SecretString,
    ) -> Result<Self, mpos_config::ConfigError> {
        use mpos_config::ConfigError;
        let kid = vars.string(vars::TOKEN_KID, Some("att-1"), "a key id")?;
        let token_issuer = match vars.optional_path(vars::TOKEN_KEY)? {
            Some(path) => {
                let pem = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::invalid(vars::TOKEN_KEY, "a readable PEM file", &error.to_string())
                })?;
                TokenIssuer::from_pem(kid, &pem).map_err(|error| {
                    ConfigError::invalid(
                        vars::TOKEN_KEY,
                        "a PKCS#8 PEM file of a P-256 key",
                        &error.to_string(),
                    )
                })?
            }
            None => {
                tracing::warn!(
                    "no attestation token key configured: a key generated now signs tokens until the next restart"
                );
                generated_issuer(kid)
                    .map_err(|error| ConfigError::invalid(vars::TOKEN_KEY, "a key", &error))?
            }
        };
        let source = |name: &str, default: &str| -> Result<Option<Source>, ConfigError> {
            let text = vars.string(name, Some(default), "builtin, a file path or an https URL")?;
            if text == "none" {
                return Ok(None);
            }
            Source::parse(&text).map(Some).map_err(|error| {
                ConfigError::invalid(
                    name,
                    "builtin, a file path or an https URL",
                    &error.to_string(),
                )
            })
        };
        let anchors = source(vars::ANCHORS, "builtin")?.unwrap_or(Source::Builtin);
        let status_list = source(vars::STATUS_LIST, attestation_trust::GOOGLE_STATUS_LIST_URL)?;
        let refresh_s: u64 =
            vars.parse(vars::REFRESH_S, Some(3_600), "seconds from 10 to 86400")?;
        let ttl_s: u64 = vars.parse(vars::CHALLENGE_TTL_S, Some(300), "seconds from 10 to 3600")?;
        let mut trust = TrustConfig::new(anchors, status_list);
        trust.refresh_every = Duration::from_secs(refresh_s.clamp(10, 86_400));
        trust.cache_path = vars
            .optional_path(vars::STATUS_LIST_CACHE)?
            .map(PathBuf::from);
        Ok(Self {
            operator_token,
            token_issuer: Arc::new(token_issuer),
            trust,
            challenge_ttl: Duration::from_secs(ttl_s.clamp(10, 3_600)),
            monitor_interval: vars.duration_ms(vars::MONITOR_INTERVAL_MS, 60_000)?,
            feed: None,
            device_addr: Some(vars.socket_addr(vars::DEVICE_ADDR, "0.0.0.0:8445")?),
            device_tls: device_identity::ServerIdentity::from_vars(
                vars,
                vars::DEVICE_TLS_CERT,
                vars::DEVICE_TLS_KEY,
            )?,
        })
    }
}

/// A P-256 private key generated now, as a PKCS#8 PEM (`PRIVATE KEY`) that
/// [`TokenIssuer::from_pem`] reads: for a key kept in a file (`mposd` keeps one in its data
/// directory, so tokens outlive a restart).
pub fn generated_key_pem() -> Result<String, String> {
    use base64::Engine as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .map_err(|_| "cannot generate a P-256 key".to_owned())?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    // Base64 is ASCII: every 64-byte chunk is a valid string.
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

/// A token issuer with a P-256 key generated now.
pub fn generated_issuer(kid: String) -> Result<TokenIssuer, String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .map_err(|_| "cannot generate a P-256 key".to_owned())?;
    TokenIssuer::new(kid, pkcs8.as_ref()).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_generated_key_pem_makes_an_issuer_and_differs_each_time() {
        let pem = super::generated_key_pem().expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        assert!(pem.lines().all(|line| line.len() <= 64), "{pem}");
        let issuer = attestation_token::TokenIssuer::from_pem("k", &pem).expect("issuer");
        let other = super::generated_key_pem().expect("pem");
        let again = attestation_token::TokenIssuer::from_pem("k", &other).expect("issuer");
        assert_ne!(issuer.public_key(), again.public_key());
    }
}
