//! The runtime every service of the platform shares.
//!
//! A service binary reads [`CommonConfig`] from `MPOS_*` variables, starts its admin listener
//! at once (so `/readyz` answers `503` while dependencies are missing), then
//! [`Infrastructure::connect`]s to its event store and bus — retrying until they answer — and
//! runs its [`Pipelines`]: the outbox relays to the bus and to Kafka and the chain signer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use mpos_bus::Bus;
use mpos_config::{ConfigError, Vars};
use mpos_es::{ChainSigner, EventCodec, EventStore, OutboxRelay};
use mpos_telemetry::Readiness;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Variable names read by [`CommonConfig::from_vars`].
pub mod vars {
    /// The service's event store: `postgres://…[?schema=x]` or `sqlite://path`.
    pub const DATABASE_URL: &str = "MPOS_DATABASE_URL";
    /// Domain events and request-reply: `nats://host:port` or `memory://name`.
    pub const BUS_URL: &str = "MPOS_BUS_URL";
    /// Events for integrators and audit: `kafka://host:port`; unset: no Kafka relay.
    pub const KAFKA_URL: &str = "MPOS_KAFKA_URL";
    /// The service's API listener.
    pub const HTTP_ADDR: &str = "MPOS_HTTP_ADDR";
    /// The admin listener (`/livez`, `/readyz`, `/metrics`).
    pub const ADMIN_ADDR: &str = "MPOS_ADMIN_ADDR";
    /// Ed25519 seed (64 hex characters) signing the event log's checkpoints.
    pub const CHAIN_SIGNING_KEY: &str = "MPOS_CHAIN_SIGNING_KEY";
    /// How often the head of the log is signed.
    pub const CHECKPOINT_INTERVAL_MS: &str = "MPOS_CHECKPOINT_INTERVAL_MS";
    /// How often relays and projections look for events written by other processes.
    pub const POLL_INTERVAL_MS: &str = "MPOS_POLL_INTERVAL_MS";
}

/// Configuration every service reads.
#[derive(Debug)]
pub struct CommonConfig {
    /// The service's name, e.g. `terminal-management`.
    pub service: String,
    /// Event store URL.
    pub database_url: String,
    /// Bus URL.
    pub bus_url: String,
    /// Kafka URL, if events also go to Kafka.
    pub kafka_url: Option<String>,
    /// API listener.
    pub http_addr: SocketAddr,
    /// Admin listener.
    pub admin_addr: SocketAddr,
    /// Checkpoint signing key.
    pub signing_key: SigningKey,
    /// How often the log head is signed.
    pub checkpoint_interval: Duration,
    /// How often relays and projections poll for other writers' events.
    pub poll_interval: Duration,
}

impl CommonConfig {
    /// Reads and validates the common variables; `default_http` and `default_admin` are the
    /// service's default listen addresses.
    pub fn from_vars(
        vars: &Vars,
        service: &str,
        default_http: &str,
        default_admin: &str,
    ) -> Result<Self, ConfigError> {
        let database_url = vars.url(
            vars::DATABASE_URL,
            None,
            &["postgres", "postgresql", "sqlite"],
        )?;
        let bus_url = vars.url(vars::BUS_URL, None, &["nats", "memory"])?;
        let kafka_url = if vars.is_set(vars::KAFKA_URL) {
            Some(vars.url(vars::KAFKA_URL, None, &["kafka"])?.to_string())
        } else {
            None
        };
        let signing_key = match vars.hex_bytes::<32>(vars::CHAIN_SIGNING_KEY)? {
            Some(seed) => SigningKey::from_bytes(seed.expose_secret()),
            None => {
                return Err(ConfigError::missing(
                    vars::CHAIN_SIGNING_KEY,
                    "64 hexadecimal characters (an Ed25519 seed for signing log checkpoints)",
                ));
            }
        };
        Ok(Self {
            service: service.to_owned(),
            database_url: database_url.to_string(),
            bus_url: bus_url.to_string(),
            kafka_url,
            http_addr: vars.socket_addr(vars::HTTP_ADDR, default_http)?,
            admin_addr: vars.socket_addr(vars::ADMIN_ADDR, default_admin)?,
            signing_key,
            checkpoint_interval: vars.duration_ms(vars::CHECKPOINT_INTERVAL_MS, 60_000)?,
            poll_interval: vars.duration_ms(vars::POLL_INTERVAL_MS, 200)?,
        })
    }
}

/// A fresh random Ed25519 signing key (for the embedded default, persisted by the caller).
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// The connections a service needs; filled in as they come up.
#[derive(Clone, Debug, Default)]
pub struct Infrastructure {
    store: Arc<OnceCell<EventStore>>,
    bus: Arc<OnceCell<Bus>>,
    kafka: Arc<OnceCell<Bus>>,
}

async fn retry<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    cancel: &CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(dependency = what, %error, retry_in_ms = backoff.as_millis(), "dependency not reachable");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Infrastructure {
    /// Registers the readiness checks (`event_store`, `bus`, and `kafka` when configured):
    /// each fails until its connection is up, and whenever a round trip fails.
    pub fn register_checks(&self, readiness: &Readiness, with_kafka: bool) {
        let store = self.store.clone();
        readiness.add_check("event_store", move || {
            let store = store.clone();
            async move {
                match store.get() {
                    Some(store) => store.check().await.map_err(|error| error.to_string()),
                    None => Err("not connected yet".to_owned()),
                }
            }
        });
        for (name, cell) in [("bus", self.bus.clone()), ("kafka", self.kafka.clone())] {
            if name == "kafka" && !with_kafka {
                continue;
            }
            readiness.add_check(name, move || {
                let cell = cell.clone();
                async move {
                    match cell.get() {
                        Some(bus) => bus
                            .publisher
                            .check()
                            .await
                            .map_err(|error| error.to_string()),
                        None => Err("not connected yet".to_owned()),
                    }
                }
            });
        }
    }

    /// Connects to the store and the bus, retrying each until it answers or `cancel` fires
    /// (then `None`). Kafka is connected in the background by [`Pipelines::start`]: it feeds
    /// integrators and audit, and must not hold the service back.
    pub async fn connect(
        &self,
        config: &CommonConfig,
        cancel: &CancellationToken,
    ) -> Option<(EventStore, Bus)> {
        let store = retry("event_store", cancel, || {
            EventStore::connect(&config.database_url, &config.service)
        })
        .await?;
        let _ = self.store.set(store.clone());
        let bus = retry("bus", cancel, || mpos_bus::connect(&config.bus_url)).await?;
        let _ = self.bus.set(bus.clone());
        Some((store, bus))
    }
}

/// The background work of a service's event log.
#[derive(Debug)]
pub struct Pipelines {
    tasks: JoinSet<()>,
}

impl Pipelines {
    /// Starts the outbox relays and the chain signer. The Kafka relay (when `MPOS_KAFKA_URL` is
    /// set) starts once Kafka answers; until then readiness reports it missing.
    pub fn start(
        store: &EventStore,
        codec: Arc<EventCodec>,
        bus: &Bus,
        infrastructure: &Infrastructure,
        config: &CommonConfig,
        cancel: &CancellationToken,
    ) -> Self {
        let mut tasks = JoinSet::new();
        let bus_sink = if config.bus_url.starts_with("memory") {
            "memory"
        } else {
            "nats"
        };
        let relay = OutboxRelay::new(
            store.clone(),
            bus.publisher.clone(),
            codec.clone(),
            bus_sink,
        );
        tasks.spawn(relay.run(config.poll_interval, cancel.clone().cancelled_owned()));
        if let Some(url) = config.kafka_url.clone() {
            let (store, cell, cancel, poll) = (
                store.clone(),
                infrastructure.kafka.clone(),
                cancel.clone(),
                config.poll_interval,
            );
            tasks.spawn(async move {
                let Some(kafka) = retry("kafka", &cancel, || mpos_bus::connect(&url)).await else {
                    return;
                };
                let _ = cell.set(kafka.clone());
                let relay = OutboxRelay::new(store, kafka.publisher.clone(), codec, "kafka");
                relay.run(poll, cancel.cancelled_owned()).await;
            });
        }
        let signer = ChainSigner::new(store.clone(), config.signing_key.clone());
        tasks.spawn(signer.run(config.checkpoint_interval, cancel.clone().cancelled_owned()));
        Self { tasks }
    }

    /// Adds another task that ends when `cancel` fires.
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Serves `app` on `listener` (HTTP/1.1) as one of the tasks, until `cancel` fires; then
    /// lets the open requests finish.
    pub fn serve(
        &mut self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        cancel: &CancellationToken,
    ) {
        let shutdown = cancel.clone().cancelled_owned();
        self.tasks.spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "api server failed");
            }
        });
    }

    /// Waits for every task to finish (after cancellation).
    pub async fn join(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "background task failed");
            }
        }
    }
}

/// The start of every service process: shutdown on SIGINT/SIGTERM, the admin listener with
/// readiness checks for the store, the bus and Kafka, and the (not yet connected)
/// infrastructure.
#[derive(Debug)]
pub struct Launch {
    /// Fires on SIGINT or SIGTERM; everything the process runs stops on it.
    pub cancel: CancellationToken,
    /// The connections, filled in by [`Infrastructure::connect`].
    pub infrastructure: Infrastructure,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Launch {
    /// Starts listening for signals and serving `/livez`, `/readyz` and `/metrics`.
    pub async fn start(
        config: &CommonConfig,
        metrics: mpos_telemetry::MetricsHandle,
    ) -> std::io::Result<Self> {
        let cancel = CancellationToken::new();
        tokio::spawn({
            let cancel = cancel.clone();
            async move {
                shutdown_signal().await;
                tracing::info!("shutdown requested");
                cancel.cancel();
            }
        });
        let readiness = Readiness::new();
        let infrastructure = Infrastructure::default();
        infrastructure.register_checks(&readiness, config.kafka_url.is_some());
        let listener = tokio::net::TcpListener::bind(config.admin_addr).await?;
        let admin_addr = listener.local_addr()?;
        let admin = tokio::spawn(mpos_telemetry::serve_admin(
            listener,
            readiness,
            metrics,
            cancel.clone().cancelled_owned(),
        ));
        Ok(Self {
            cancel,
            infrastructure,
            admin_addr,
            admin,
        })
    }

    /// Waits for the admin listener to drain (after cancellation).
    pub async fn finish(self) {
        match self.admin.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "admin listener failed"),
            Err(error) => tracing::error!(%error, "admin listener task failed"),
        }
    }
}

/// What a service's start function is given by [`run_process`].
#[derive(Debug)]
pub struct Started {
    /// The service's event store, connected.
    pub store: EventStore,
    /// The bus, connected.
    pub bus: Bus,
    /// The connections (Kafka joins later), for the pipelines and readiness.
    pub infrastructure: Infrastructure,
    /// The API listener, bound to `MPOS_HTTP_ADDR`.
    pub listener: tokio::net::TcpListener,
    /// Fires on SIGINT or SIGTERM.
    pub cancel: CancellationToken,
}

/// A running service: resolves when everything it started has stopped.
pub type Running = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The life of a service process, the same for every service binary: telemetry from `vars`,
/// the admin listener, the store and bus (retried until they answer or a signal comes), the
/// API listener, then `start`; on SIGINT/SIGTERM it waits for the service to stop (the future
/// `start` answers, e.g. a [`Running`]) and closes the store. Returns the process's exit
/// status.
pub async fn run_process<F, Fut, R, E>(
    vars: &Vars,
    config: &CommonConfig,
    start: F,
) -> std::process::ExitCode
where
    F: FnOnce(Started) -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
    R: std::future::Future<Output = ()>,
    E: std::fmt::Display,
{
    let telemetry_config = mpos_config::exit_on_error(mpos_telemetry::TelemetryConfig::from_vars(
        vars,
        &config.service,
    ));
    let telemetry = match mpos_telemetry::init(&telemetry_config) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("telemetry: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let launch = match Launch::start(config, telemetry.metrics()).await {
        Ok(launch) => launch,
        Err(error) => {
            tracing::error!(address = %config.admin_addr, %error, "cannot start the admin listener");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (cancel, infrastructure) = (launch.cancel.clone(), launch.infrastructure.clone());
    let Some((store, bus)) = infrastructure.connect(config, &cancel).await else {
        return std::process::ExitCode::SUCCESS;
    };
    let listener = match tokio::net::TcpListener::bind(config.http_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(address = %config.http_addr, %error, "cannot bind api listener");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = Started {
        store: store.clone(),
        bus,
        infrastructure,
        listener,
        cancel,
    };
    let running = match start(started).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    running.await;
    launch.finish().await;
    store.close().await;
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}

/// What the `main` of a service run by [`service_main`] names: the service, its default
/// listen addresses and the variable holding the platform operator's token.
#[derive(Clone, Copy, Debug)]
pub struct ServiceBinary<'a> {
    /// The service's name, e.g. `routing`.
    pub service: &'a str,
    /// The API listener's default address.
    pub default_http: &'a str,
    /// The admin listener's default address.
    pub default_admin: &'a str,
    /// The variable holding the platform operator's bearer token (at least 32 characters).
    pub operator_token: &'a str,
}

/// The whole `main` of a service whose options are read from the variables and the operator
/// token, and whose start function takes the common configuration, the connections, its
/// options and the API listener: reads [`CommonConfig`], the token and the options (exiting
/// with the configuration error if one is wrong), then runs [`run_process`] with `start`,
/// waiting for `join` of what `start` answers. Returns the process's exit status.
///
/// ```ignore
/// mpos_service::service_main(
///     ServiceBinary { service: SERVICE, default_http: "0.0.0.0:8080", /* … */ },
///     RoutingOptions::from_vars,
///     routing::service::start,
///     routing::service::Running::join,
/// )
/// .await
/// ```
pub async fn service_main<O, R, E>(
    binary: ServiceBinary<'_>,
    options: impl FnOnce(&Vars, secrecy::SecretString) -> Result<O, ConfigError>,
    start: impl AsyncFnOnce(
        &CommonConfig,
        EventStore,
        &Bus,
        &Infrastructure,
        &O,
        tokio::net::TcpListener,
        &CancellationToken,
    ) -> Result<R, E>,
    join: impl AsyncFnOnce(R),
) -> std::process::ExitCode
where
    E: std::fmt::Display,
{
    use mpos_config::exit_on_error;
    let vars = Vars::from_env();
    let config = exit_on_error(CommonConfig::from_vars(
        &vars,
        binary.service,
        binary.default_http,
        binary.default_admin,
    ));
    let token = exit_on_error(vars.secret(binary.operator_token, 32));
    let options = exit_on_error(options(&vars, token));
    let (config, options) = (&config, &options);
    run_process(&vars, config, |started: Started| async move {
        let running = start(
            config,
            started.store,
            &started.bus,
            &started.infrastructure,
            options,
            started.listener,
            &started.cancel,
        )
        .await?;
        Ok::<_, E>(join(running))
    })
    .await
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for sigterm");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
