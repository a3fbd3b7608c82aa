//! Wiring: the service on a running store and bus: the request-reply operations
//! ([`crate::rpc`]), the admin API, terminal-management's feed (API keys), the
//! store-and-forward worker ([`crate::forward`]) and the outbox relays that put every event
//! on NATS and Kafka.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hsm_proxy::rpc::HsmClient;
use mpos_bus::Bus;
use mpos_es::EventStore;
use mpos_feed::follow::{FeedNames, FeedSource};
use mpos_feed::tms::{TMS_SOURCE, TmsDocuments, TmsView};
use mpos_seal::Sealer;
use mpos_service::{CommonConfig, Infrastructure, Pipelines};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router as api_router};
use crate::engine::{Router, RouterSettings};
use crate::links::LinkTuning;

/// The service's own settings (`MPOS_ROUTING_*`, and the operator token).
pub mod vars {
    /// The platform operator's bearer token (at least 32 characters).
    pub const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
    /// How long a call to the hsm-proxy (MACs, PIN translation) may take, in milliseconds.
    pub const HSM_TIMEOUT_MS: &str = "MPOS_ROUTING_HSM_TIMEOUT_MS";
    /// The first pause after a failed reversal delivery, in milliseconds.
    pub const REVERSAL_BACKOFF_MIN_MS: &str = "MPOS_ROUTING_REVERSAL_BACKOFF_MIN_MS";
    /// The longest pause between reversal deliveries, in milliseconds.
    pub const REVERSAL_BACKOFF_MAX_MS: &str = "MPOS_ROUTING_REVERSAL_BACKOFF_MAX_MS";
    /// How often the store-and-forward worker looks for due reversals at least, in
    /// milliseconds.
    pub const FORWARD_POLL_MS: &str = "MPOS_ROUTING_FORWARD_POLL_MS";
    /// The first pause before an acquirer link reconnects, in milliseconds.
    pub const RECONNECT_MIN_MS: &str = "MPOS_ROUTING_RECONNECT_MIN_MS";
    /// The longest pause between reconnections of an acquirer link, in milliseconds.
    pub const RECONNECT_MAX_MS: &str = "MPOS_ROUTING_RECONNECT_MAX_MS";
    /// How long connecting to an acquirer may take, in milliseconds.
    pub const CONNECT_TIMEOUT_MS: &str = "MPOS_ROUTING_CONNECT_TIMEOUT_MS";
    /// How long a tenant's rules and acquirers, once read, serve payments, in milliseconds
    /// (0: read for every payment). A change through another replica is seen after it.
    pub const CONFIG_TTL_MS: &str = "MPOS_ROUTING_CONFIG_TTL_MS";
}

/// The feed's names.
pub const FEED: FeedNames = FeedNames {
    source: TMS_SOURCE,
    projection: "routing-tms",
    consumer: "routing-tms-feed",
    durable: "routing",
    event_type: None,
};

/// What routing needs beyond the common configuration.
pub struct RoutingOptions {
    /// The platform operator's token.
    pub operator_token: SecretString,
    /// How long a call to the hsm-proxy may take.
    pub hsm_timeout: Duration,
    /// Reversal backoff and link tuning.
    pub router: RouterSettings,
    /// How often the store-and-forward worker looks at least.
    pub forward_poll: Duration,
    /// Where terminal-management's events come from; `None`: the bus.
    pub feed: Option<FeedSource>,
    /// The process's sealing key pair; `None`: a new one at start.
    pub sealer: Option<Arc<Sealer>>,
}

impl std::fmt::Debug for RoutingOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingOptions")
            .field("hsm_timeout", &self.hsm_timeout)
            .field("router", &self.router)
            .field("forward_poll", &self.forward_poll)
            .finish_non_exhaustive()
    }
}

impl RoutingOptions {
    /// Reads the options; the operator token is handed in (mposd generates it).
    pub fn from_vars(
        vars: &mpos_config::Vars,
        operator_token: SecretString,
    ) -> Result<Self, mpos_config::ConfigError> {
        let reconnect_min = vars.duration_ms(vars::RECONNECT_MIN_MS, 100)?;
        Ok(Self {
            operator_token,
            hsm_timeout: vars.duration_ms(vars::HSM_TIMEOUT_MS, 2_000)?,
            router: RouterSettings {
                reversal_backoff_min: vars.duration_ms(vars::REVERSAL_BACKOFF_MIN_MS, 5_000)?,
                reversal_backoff_max: vars.duration_ms(vars::REVERSAL_BACKOFF_MAX_MS, 600_000)?,
                link_tuning: LinkTuning {
                    connect_timeout: vars.duration_ms(vars::CONNECT_TIMEOUT_MS, 3_000)?,
                    reconnect_min,
                    reconnect_max: vars
                        .duration_ms(vars::RECONNECT_MAX_MS, 10_000)?
                        .max(reconnect_min),
                },
                config_ttl: vars.duration_ms(vars::CONFIG_TTL_MS, 1_000)?,
            },
            forward_poll: vars.duration_ms(vars::FORWARD_POLL_MS, 1_000)?,
            feed: None,
            sealer: None,
        })
    }
}

/// A running routing service.
#[derive(Debug)]
pub struct Running {
    /// Where the admin API listens.
    pub http_addr: SocketAddr,
    /// The operations (for tests and the embedded platform).
    pub router: Arc<Router>,
    pipelines: Pipelines,
}

impl Running {
    /// Waits until the servers and background tasks stopped (after cancellation).
    pub async fn join(self) {
        self.pipelines.join().await;
    }
}

/// Starts the request-reply operations, the admin API and the background work; everything
/// stops when `cancel` fires. The bus must offer request-reply (NATS or `memory://`).
pub async fn start(
    config: &CommonConfig,
    store: EventStore,
    bus: &Bus,
    infrastructure: &Infrastructure,
    options: &RoutingOptions,
    listener: TcpListener,
    cancel: &CancellationToken,
) -> std::io::Result<Running> {
    let started_us = mpos_es::now_micros();
    let requests = bus.requests.clone().ok_or_else(|| {
        std::io::Error::other("routing needs a bus with request-reply (nats:// or memory://)")
    })?;
    let mut pipelines = Pipelines::start(
        &store,
        Arc::new(crate::codec()),
        bus,
        infrastructure,
        config,
        cancel,
    );
    let sealer = match &options.sealer {
        Some(sealer) => sealer.clone(),
        None => Arc::new(Sealer::new().map_err(std::io::Error::other)?),
    };
    let hsm = HsmClient::new(
        requests.clone(),
        format!("service:{}", crate::SERVICE),
        options.hsm_timeout,
    )
    .with_sealer(sealer.clone());
    let router = Arc::new(Router::new(
        store.clone(),
        hsm,
        sealer,
        options.router.clone(),
        cancel.child_token(),
    ));
    let handles = crate::rpc::serve(&requests, router.clone())
        .await
        .map_err(|error| std::io::Error::other(format!("routing request-reply: {error}")))?;
    {
        let cancel = cancel.clone();
        pipelines.spawn(async move {
            cancel.cancelled().await;
            for handle in handles {
                handle.stop().await;
            }
        });
    }
    pipelines.spawn(crate::forward::run(
        router.clone(),
        started_us,
        options.forward_poll,
        cancel.clone(),
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
    let state = AppState {
        router: router.clone(),
        view,
        operator: mpos_http::OperatorAuth::new(&options.operator_token),
    };
    let http_addr = listener.local_addr()?;
    let app = api_router(state).map_err(std::io::Error::other)?;
    pipelines.serve(listener, app, cancel);
    tracing::info!(address = %http_addr, "routing api started");
    Ok(Running {
        http_addr,
        router,
        pipelines,
    })
}
