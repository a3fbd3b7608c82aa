//! An in-process platform for routing's tests: an hsm-proxy (soft backend), two acquirer
//! simulators and the routing service, on SQLite and the in-process `memory://` bus (or on
//! Postgres and NATS), and a `RoutingClient` over the bus as the authorization service would
//! use it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use acquirer_link::MacProvider;
use acquirer_link::framing::{Framing, LengthPrefix};
use acquirer_sim::{AcquirerSim, RuleSet, RunningSim, SimConfig};
use hsm_proxy::rpc::HsmClient;
use hsm_proxy::service::HsmConfig;
use hsm_proxy::test_support::{attributes, components_import};
use iso8583::Spec;
use mpos_config::Vars;
use mpos_proto::hsm as hsm_pb;
use mpos_proto::routing as pb;
use mpos_seal::Sealer;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use routing::engine::{Actor, Router, RouterSettings};
use routing::links::LinkTuning;
use routing::rpc::RoutingClient;
use routing::service::RoutingOptions;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const TENANT: &str = "acme";
pub const TOKEN: &str = "operator-token-for-routing-tests-0123456789";
const SIGNING_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
const LMK: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
/// Bouncy Castle's ISO9797Alg3Mac test key, as the zone MAC key.
pub const MAC_KEY: &str = "7CA110454A1A6E570131D9619DC1376E";
pub const PAN: &str = "4761739001010010";
pub const WAIT: Duration = Duration::from_secs(10);

pub fn spec() -> Arc<Spec> {
    Arc::new(Spec::builtin("ascii-1987").unwrap())
}

pub fn framing() -> Framing {
    Framing {
        prefix: LengthPrefix::Binary2,
        header: Vec::new(),
    }
}

/// Where the logs and the bus are.
#[derive(Clone)]
pub struct Backends {
    pub bus_url: String,
    /// The database URL of a service's log.
    pub database: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl Backends {
    pub fn sqlite(dir: &std::path::Path) -> Self {
        let dir = dir.to_owned();
        Self {
            bus_url: format!("memory://routing{}", uuid::Uuid::new_v4().simple()),
            database: Arc::new(move |service| {
                format!("sqlite://{}", dir.join(format!("{service}.db")).display())
            }),
        }
    }

    /// Postgres (a fresh schema per service and test) and NATS, when the test environment
    /// names them.
    pub fn postgres_and_nats() -> Option<Self> {
        let postgres = std::env::var("MPOS_TEST_POSTGRES_URL").ok()?;
        let nats = std::env::var("MPOS_TEST_NATS_URL").ok()?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let schema_run = run.clone();
        Some(Self {
            bus_url: format!("{nats}?namespace=rt{}", &run[..12]),
            database: Arc::new(move |service| {
                format!(
                    "{postgres}?schema={}_{}",
                    service.replace('-', "_"),
                    &schema_run[..12]
                )
            }),
        })
    }

    fn config(&self, service: &str) -> CommonConfig {
        let vars = Vars::from_pairs(vec![
            ("MPOS_DATABASE_URL", (self.database)(service)),
            ("MPOS_BUS_URL", self.bus_url.clone()),
            ("MPOS_CHAIN_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
        ]);
        CommonConfig::from_vars(&vars, service, "127.0.0.1:0", "127.0.0.1:0").unwrap()
    }
}

pub struct Hsm {
    pub client: HsmClient,
    cancel: CancellationToken,
    _running: hsm_proxy::service::Running,
}

impl Hsm {
    pub async fn start(backends: &Backends, dir: &std::path::Path) -> Self {
        let config = backends.config(hsm_proxy::SERVICE);
        let hsm_config = HsmConfig {
            backends: vec![format!("soft://{}", dir.join("keys").display())],
            soft_lmk: Some(SecretBytes::from_hex("lmk", LMK).unwrap()),
            pkcs11_pin: None,
            pool: hsm_proxy::pool::PoolConfig {
                local_site: "local".into(),
                attempt_timeout: Duration::from_millis(2_000),
                check_interval: Duration::from_millis(100),
            },
            ..HsmConfig::default()
        };
        let cancel = CancellationToken::new();
        let infrastructure = Infrastructure::default();
        let (store, bus) = infrastructure.connect(&config, &cancel).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let token = SecretString::from(TOKEN.to_owned());
        let running = hsm_proxy::service::start(
            &config,
            &hsm_config,
            store,
            &bus,
            &infrastructure,
            &token,
            listener,
            &cancel,
        )
        .await
        .unwrap();
        let caller = mpos_bus::connect(&backends.bus_url).await.unwrap();
        let client = HsmClient::new(
            caller.requests.unwrap(),
            "service:routing-test",
            Duration::from_secs(5),
        );
        Self {
            client,
            cancel,
            _running: running,
        }
    }

    /// Imports `key_hex` (TDES) as two clear components under `alias`, for the test tenant.
    pub async fn import(&self, usage: &str, mode: &str, key_hex: &str, alias: &str) {
        let attributes = attributes(hsm_pb::KeyAlgorithm::Tdes2key, usage, mode, "");
        let key = hex::decode(key_hex).unwrap();
        let request = components_import(TENANT, alias, attributes, &key).unwrap();
        let _: hsm_pb::Key = self.client.call("ImportKey", &request).await.unwrap();
    }
}

impl Drop for Hsm {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub async fn sim(rules: &str, mac: Option<Arc<dyn MacProvider>>) -> RunningSim {
    let mut config = SimConfig::new(spec(), framing());
    config.rules = RuleSet::from_json(rules).unwrap();
    config.mac = mac;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    AcquirerSim::start(config, listener).unwrap()
}

/// A running routing service.
pub struct Routing {
    pub router: Arc<Router>,
    pub http: String,
    pub store: mpos_es::EventStore,
    cancel: CancellationToken,
    running: Option<routing::service::Running>,
}

impl Routing {
    pub async fn start(backends: &Backends) -> Self {
        let config = backends.config(routing::SERVICE);
        let cancel = CancellationToken::new();
        let infrastructure = Infrastructure::default();
        let (store, bus) = infrastructure.connect(&config, &cancel).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = RoutingOptions {
            operator_token: SecretString::from(TOKEN.to_owned()),
            hsm_timeout: Duration::from_secs(5),
            router: RouterSettings {
                reversal_backoff_min: Duration::from_millis(100),
                reversal_backoff_max: Duration::from_millis(400),
                link_tuning: LinkTuning {
                    connect_timeout: Duration::from_millis(500),
                    reconnect_min: Duration::from_millis(20),
                    reconnect_max: Duration::from_millis(100),
                },
                config_ttl: Duration::from_secs(1),
            },
            forward_poll: Duration::from_millis(100),
            feed: None,
            sealer: None,
        };
        let running = routing::service::start(
            &config,
            store.clone(),
            &bus,
            &infrastructure,
            &options,
            listener,
            &cancel,
        )
        .await
        .unwrap();
        Self {
            router: running.router.clone(),
            http: format!("http://{}", running.http_addr),
            store,
            cancel,
            running: Some(running),
        }
    }

    /// Stops it and waits until everything stopped.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(WAIT, running.join())
                .await
                .expect("routing stops");
        }
    }
}

impl Drop for Routing {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub fn actor() -> Actor {
    Actor("operator:test".to_owned())
}

/// Settings of an acquirer at `address`, fast timeouts.
pub fn settings(address: &str) -> pb::AcquirerSettings {
    pb::AcquirerSettings {
        name: "test acquirer".into(),
        address: address.to_owned(),
        spec: "ascii-1987".into(),
        length_prefix: "binary2".into(),
        header_hex: String::new(),
        acquiring_institution_id: "12345678".into(),
        zone_pin_key: String::new(),
        zone_mac_key: String::new(),
        response_timeout_ms: 400,
        echo_interval_seconds: 3_600,
        health: None,
        disabled: false,
    }
}

/// Priority route [first, then...] for Visa, the default route the reverse.
pub fn rules(first: &str, second: &str) -> pb::RuleSet {
    let priority = |ids: &[&str]| pb::Route {
        kind: Some(pb::route::Kind::Priority(pb::PriorityRoute {
            acquirer_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        })),
    };
    pb::RuleSet {
        rules: vec![pb::Rule {
            id: "visa-first".into(),
            description: "Visa to the first acquirer".into(),
            enabled: true,
            conditions: Some(pb::Conditions {
                brands: vec!["visa".into()],
                ..pb::Conditions::default()
            }),
            route: Some(priority(&[first, second])),
        }],
        default_route: Some(priority(&[second, first])),
    }
}

pub fn decide_request(payment_id: &str, amount: u64) -> pb::DecideRequest {
    pb::DecideRequest {
        tenant_id: TENANT.into(),
        payment_id: payment_id.into(),
        transaction_type: pb::TransactionType::Purchase.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        bin: PAN[..8].into(),
        pan_length: 16,
        merchant_id: "MERCHANT0000001".into(),
        merchant_category_code: "5999".into(),
        terminal_group_id: String::new(),
        entry_mode: pb::EntryMode::Chip.into(),
    }
}

pub fn authorize_request(payment_id: &str, decision_id: &str, amount: u64) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        tenant_id: TENANT.into(),
        payment_id: payment_id.into(),
        decision_id: decision_id.into(),
        transaction_type: pb::TransactionType::Purchase.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        entry_mode: pb::EntryMode::Chip.into(),
        terminal_id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        merchant_category_code: "5999".into(),
        ..pb::AuthorizeRequest::default()
    }
}

pub fn card() -> pb::CardSecrets {
    pb::CardSecrets {
        pan: PAN.into(),
        expiry: "2812".into(),
        track2: format!("{PAN}=28122011234567"),
        pan_sequence_number: "01".into(),
    }
}

/// A routing client over its own bus connection, as the authorization service has.
pub async fn client(backends: &Backends) -> RoutingClient {
    let bus = mpos_bus::connect(&backends.bus_url).await.unwrap();
    RoutingClient::new(
        bus.requests.unwrap(),
        "service:authorization",
        Duration::from_secs(10),
        Arc::new(Sealer::new().unwrap()),
    )
}

/// Waits until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every log line of this test process from the first call on (JSON, info and above),
/// installed once: what the tests scan for card data and keys.
pub fn logs() -> LogBuffer {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    static BUFFER: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = LogBuffer::default();
            let writer = buffer.clone();
            let _ = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(move || writer.clone()),
                )
                .with(tracing_subscriber::filter::LevelFilter::INFO)
                .try_init();
            buffer
        })
        .clone()
}

/// The shared buffer behind [`logs`].
#[derive(Clone, Debug, Default)]
pub struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// The lines so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
