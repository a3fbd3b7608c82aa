//! Wiring: the service on a running store and bus: the payment API (PEDs over mTLS, SoftPOS
//! over TLS), the admin API, the three feeds (terminal-management, key-injection, routing),
//! the attestation token keys, the hsm-proxy and routing reached over the bus with card data
//! sealed, and the outbox relays that put every event on NATS and Kafka.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use device_identity::{ServerIdentity, TrustStore};
use mpos_bus::Bus;
use mpos_es::EventStore;
use mpos_feed::estate::EstateView;
use mpos_feed::follow::FeedSource;
use mpos_feed::tms::TmsView;
use mpos_service::{CommonConfig, Infrastructure, Pipelines};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, admin_router, device_router, device_routes};
use crate::engine::{Authorizer, Ports};
use crate::feeds::{KI_FEED, KeyFollower, ROUTING_FEED, RoutingFollower, TMS_FEED, TmsFollower};
use crate::keys::KeyView;
use crate::terminals::{FactsCache, ProjectedTerminals};
use crate::tokens::{KeySource, TokenPort, Tokens};

/// The service's own settings.
pub mod vars {
    /// The platform operator's bearer token (at least 32 characters).
    pub const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
    /// Where PEDs pay (mTLS with their device certificates).
    pub const DEVICE_ADDR: &str = "MPOS_AUTH_DEVICE_ADDR";
    /// Where SoftPOS phones pay (TLS; the attestation token authenticates).
    pub const SOFTPOS_ADDR: &str = "MPOS_AUTH_SOFTPOS_ADDR";
    /// The device listeners' server certificate chain (PEM file).
    pub const DEVICE_TLS_CERT: &str = "MPOS_AUTH_DEVICE_TLS_CERT";
    /// The device listeners' server private key (PEM file).
    pub const DEVICE_TLS_KEY: &str = "MPOS_AUTH_DEVICE_TLS_KEY";
    /// The attestation service's token keys (`…/v1/attestation/token-keys`).
    pub const TOKEN_KEYS_URL: &str = "MPOS_AUTH_TOKEN_KEYS_URL";
    /// The tenants' card token key in the hsm-proxy (HMAC-SHA-256, M7): id or alias, the
    /// same name for every tenant.
    pub const CARD_TOKEN_KEY: &str = "MPOS_AUTH_CARD_TOKEN_KEY";
    /// How long a call to the hsm-proxy may take, in milliseconds.
    pub const HSM_TIMEOUT_MS: &str = "MPOS_AUTH_HSM_TIMEOUT_MS";
    /// How long the routing service may take to answer (acquirer time-outs and fallbacks
    /// included), in milliseconds.
    pub const ROUTING_TIMEOUT_MS: &str = "MPOS_AUTH_ROUTING_TIMEOUT_MS";
}

/// Where the followed services' events come from (`None` for each: the bus).
#[derive(Clone, Debug, Default)]
pub struct FeedSources {
    /// terminal-management's.
    pub tms: Option<FeedSource>,
    /// key-injection's.
    pub ki: Option<FeedSource>,
    /// routing's.
    pub routing: Option<FeedSource>,
}

/// What authorization needs beyond the common configuration.
pub struct AuthOptions {
    /// The platform operator's token.
    pub operator_token: SecretString,
    /// Where PEDs pay; `None`: no listener of its own (`mposd` serves
    /// [`Running::device_routes`] on its shared device listener).
    pub device_addr: Option<SocketAddr>,
    /// Where SoftPOS phones pay over TLS; `None`: on the admin listener (`mposd` on
    /// localhost, tests).
    pub softpos_addr: Option<SocketAddr>,
    /// The device listeners' server identity (`None`: self-signed, not for production).
    pub device_tls: Option<ServerIdentity>,
    /// The attestation token keys.
    pub token_keys: KeySource,
    /// The card token key's name in the hsm-proxy.
    pub card_token_key: String,
    /// hsm-proxy calls.
    pub hsm_timeout: Duration,
    /// routing calls.
    pub routing_timeout: Duration,
    /// The feeds.
    pub feeds: FeedSources,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("device_addr", &self.device_addr)
            .field("softpos_addr", &self.softpos_addr)
            .field("card_token_key", &self.card_token_key)
            .finish_non_exhaustive()
    }
}

/// A running authorization service.
#[derive(Debug)]
pub struct Running {
    /// Where the admin API listens (and SoftPOS payments without a listener of their own).
    pub http_addr: SocketAddr,
    /// Where PEDs pay, if on a listener of their own.
    pub device_addr: Option<SocketAddr>,
    /// Where SoftPOS phones pay, if on a listener of their own.
    pub softpos_addr: Option<SocketAddr>,
    /// The PED routes, for a device listener shared with other services.
    pub device_routes: axum::Router,
    /// The operations (tests, the embedded platform).
    pub authorizer: Arc<Authorizer>,
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
    options: &AuthOptions,
    listener: TcpListener,
    cancel: &CancellationToken,
) -> std::io::Result<Running> {
    let requests = bus.requests.clone().ok_or_else(|| {
        std::io::Error::other(
            "authorization needs a bus with request-reply to reach the hsm-proxy and routing",
        )
    })?;
    let mut pipelines = Pipelines::start(
        &store,
        Arc::new(crate::codec()),
        bus,
        infrastructure,
        config,
        cancel,
    );
    let sealer = Arc::new(
        mpos_seal::Sealer::new().map_err(|error| std::io::Error::other(error.to_string()))?,
    );
    let trust = TrustStore::new();
    let tms = TmsView::new(store.clone(), trust.clone(), TMS_FEED.projection);
    if let Err(error) = tms.reload_trust().await {
        tracing::warn!(error = %error.message, "cannot load the manufacturer cas");
    }
    let estate = EstateView::new(store.clone(), TMS_FEED.projection);
    let keys = KeyView::new(store.clone(), KI_FEED.projection);
    let tokens = Arc::new(
        Tokens::new(options.token_keys.clone())
            .map_err(|error| std::io::Error::other(format!("attestation token keys: {error}")))?,
    );
    pipelines.spawn(tokens.clone().run(Duration::from_secs(300), cancel.clone()));
    let facts_cache = Arc::new(FactsCache::default());
    let ports = Ports {
        terminals: Arc::new(ProjectedTerminals {
            tms: tms.clone(),
            estate: estate.clone(),
            keys: keys.clone(),
            cache: facts_cache.clone(),
        }),
        hsm: Arc::new(crate::adapters::HsmPort::new(
            requests.clone(),
            sealer.clone(),
            options.card_token_key.clone(),
            options.hsm_timeout,
        )),
        router: Arc::new(crate::adapters::RoutingPort::new(
            requests,
            sealer,
            options.routing_timeout,
        )),
        tokens: Arc::new(TokenPort(tokens)),
    };
    let authorizer = Arc::new(Authorizer::new(store.clone(), ports));

    let source = |given: &Option<FeedSource>| {
        given
            .clone()
            .unwrap_or_else(|| FeedSource::Bus(bus.subscriber.clone()))
    };
    pipelines.spawn(mpos_feed::follow::run(
        store.clone(),
        TMS_FEED,
        source(&options.feeds.tms),
        Arc::new(TmsFollower {
            tms: tms.clone(),
            estate,
            cache: facts_cache.clone(),
        }),
        cancel.clone(),
    ));
    pipelines.spawn(mpos_feed::follow::run(
        store.clone(),
        KI_FEED,
        source(&options.feeds.ki),
        Arc::new(KeyFollower {
            keys,
            cache: facts_cache,
        }),
        cancel.clone(),
    ));
    pipelines.spawn(mpos_feed::follow::run(
        store.clone(),
        ROUTING_FEED,
        source(&options.feeds.routing),
        Arc::new(RoutingFollower {
            authorizer: authorizer.clone(),
        }),
        cancel.clone(),
    ));

    let state = AppState::new(
        authorizer.clone(),
        tms,
        mpos_http::OperatorAuth::new(&options.operator_token),
    );
    let identity = || {
        ServerIdentity::or_self_signed(options.device_tls.as_ref(), "authorization device")
            .map_err(std::io::Error::other)
    };
    let device_addr = match options.device_addr {
        None => None,
        Some(address) => {
            let device_listener = TcpListener::bind(address).await?;
            let device_addr = device_listener.local_addr()?;
            let ServerIdentity { chain, key } = identity()?;
            let tls = Arc::new(
                device_identity::mtls_server_config(chain, key, trust.clone())
                    .map_err(std::io::Error::other)?,
            );
            let devices = device_router(state.clone()).map_err(std::io::Error::other)?;
            let shutdown = cancel.clone().cancelled_owned();
            let trust = trust.clone();
            pipelines.spawn(async move {
                if let Err(error) =
                    device_identity::serve(device_listener, tls, Some(trust), devices, shutdown)
                        .await
                {
                    tracing::error!(%error, "payment api (mtls) failed");
                }
            });
            tracing::info!(address = %device_addr, "authorization payment api (mtls) started");
            Some(device_addr)
        }
    };
    let softpos_addr = match options.softpos_addr {
        None => None,
        Some(address) => {
            let softpos_listener = TcpListener::bind(address).await?;
            let softpos_addr = softpos_listener.local_addr()?;
            let ServerIdentity { chain, key } = identity()?;
            let tls = Arc::new(
                device_identity::server_config(chain, key).map_err(std::io::Error::other)?,
            );
            let devices = device_router(state.clone()).map_err(std::io::Error::other)?;
            let shutdown = cancel.clone().cancelled_owned();
            pipelines.spawn(async move {
                if let Err(error) =
                    device_identity::serve(softpos_listener, tls, None, devices, shutdown).await
                {
                    tracing::error!(%error, "payment api (softpos, tls) failed");
                }
            });
            tracing::info!(address = %softpos_addr, "authorization payment api (softpos tls) started");
            Some(softpos_addr)
        }
    };
    let device_routes = device_routes(state.clone()).map_err(std::io::Error::other)?;
    let http_addr = listener.local_addr()?;
    let mut app = admin_router(state.clone()).map_err(std::io::Error::other)?;
    if softpos_addr.is_none() {
        app = app.merge(device_routes.clone());
    }
    pipelines.serve(listener, app, cancel);
    tracing::info!(address = %http_addr, "authorization api started");
    Ok(Running {
        http_addr,
        device_addr,
        softpos_addr,
        device_routes,
        authorizer,
        pipelines,
    })
}

impl AuthOptions {
    /// Reads the options; the operator token is handed in.
    pub fn from_vars(
        vars: &mpos_config::Vars,
        operator_token: SecretString,
    ) -> Result<Self, mpos_config::ConfigError> {
        use mpos_config::ConfigError;
        let keys_url = vars.string(
            vars::TOKEN_KEYS_URL,
            Some("https://attestation:8445/v1/attestation/token-keys"),
            "an https URL",
        )?;
        let token_keys = KeySource::url(keys_url)
            .map_err(|url| ConfigError::invalid(vars::TOKEN_KEYS_URL, "an https URL", &url))?;
        Ok(Self {
            operator_token,
            device_addr: Some(vars.socket_addr(vars::DEVICE_ADDR, "0.0.0.0:8446")?),
            softpos_addr: Some(vars.socket_addr(vars::SOFTPOS_ADDR, "0.0.0.0:8447")?),
            device_tls: ServerIdentity::from_vars(
                vars,
                vars::DEVICE_TLS_CERT,
                vars::DEVICE_TLS_KEY,
            )?,
            token_keys,
            card_token_key: vars.string(
                vars::CARD_TOKEN_KEY,
                Some("alias/card-token"),
                "an hsm-proxy key id or alias",
            )?,
            hsm_timeout: vars.duration_ms(vars::HSM_TIMEOUT_MS, 2_000)?,
            routing_timeout: vars.duration_ms(vars::ROUTING_TIMEOUT_MS, 25_000)?,
            feeds: FeedSources::default(),
        })
    }
}
