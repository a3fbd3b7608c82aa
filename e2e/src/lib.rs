//! The platform in one test process, for end-to-end tests of the payment path.
//!
//! [`Platform::start`] runs every service the payment path needs — hsm-proxy (soft backend),
//! terminal-management, key-injection, attestation, routing and authorization — each with its
//! own event log, on the given [`Backends`]: each service its own PostgreSQL schema and the
//! NATS bus, the feeds between services over the bus (and every log relayed to Kafka when a
//! Kafka URL is given); or SQLite files and the in-process `memory://` bus, the feeds read
//! from the followed service's log (as `mposd` runs them). Two acquirer simulators (A and B)
//! answer ISO 8583 behind recording TCP taps ([`Tap`]).
//!
//! [`Platform::provision`] then sets a tenant up through the services' own APIs only: the
//! estate and its parameters, a manufacturer CA, a PED bound and activated with its DUKPT key
//! injected (terminal-sim over mTLS, P-256 ECDH), a SoftPOS phone attested by the attestation
//! service (which activates it in terminal-management), the hsm-proxy keys (a generated BDK
//! and card token key; zone PIN and MAC keys of both acquirers imported by clear components,
//! the same values under each simulator's own tenant with its PVK and issuer master key), and
//! routing's acquirers and rules.
//!
//! [`capture`] records every bus message, log line and event of a run for the leak scan.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod capture;
pub mod processes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acquirer_link::{HsmMac, MacProvider};
use acquirer_sim::{AcquirerSim, HsmIssuer, RuleSet, RunningSim, SimConfig};
use attestation_token::{PublishedKeys, TokenIssuer};
use hsm_proxy::rpc::HsmClient;
use hsm_proxy::test_support;
use iso8583::Spec;
use iso8583::framing::{Framing, LengthPrefix};
use mpos_config::Vars;
use mpos_es::EventStore;
use mpos_feed::follow::FeedSource;
use mpos_proto::hsm as hsm_pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, Pin};
use secrecy::SecretString;
use serde_json::{Value, json};
use terminal_sim::card::TestCard;
use terminal_sim::terminal::{Terminal, TerminalConfig};
use terminal_sim::{DeviceKeyKind, ManufacturerCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The tenant.
pub const TENANT: &str = "acme";
/// The simulators' own tenants in the hsm-proxy (the issuer's side of the keys).
pub const SIM_TENANTS: [&str; 2] = ["sim-a", "sim-b"];
/// The acquirers as routing knows them.
pub const ACQUIRERS: [&str; 2] = ["acq-a", "acq-b"];
/// The PED.
pub const PED: &str = "ped-1";
/// The SoftPOS phone.
pub const PHONE: &str = "phone-1";
/// The operator token of every service.
pub const OPERATOR_TOKEN: &str = "operator-token-for-the-e2e-tests-0123456789";
/// Signs every log's checkpoints.
const CHAIN_SIGNING_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
/// The soft HSM's local master key.
pub const LMK: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
/// Zone PIN keys (P0) and zone MAC keys (M3) of acquirers A and B.
pub const ZPK: [&str; 2] = [
    "3D2CD9F1E6B0A7C4D5E37F0E2A1B9C86",
    "A1B2C3D4E5F60718293A4B5C6D7E8F90",
];
/// Zone MAC keys (M3) of acquirers A and B.
pub const ZAK: [&str; 2] = [
    "7CA110454A1A6E570131D9619DC1376E",
    "4F5E6D7C8B9A0A1B2C3D4E5F60718293",
];
/// The simulators' PIN verification key (V2).
pub const PVK: &str = "12345678123456781234567812345678";
/// The issuer master key for application cryptograms (E0): terminal-sim's test cards'.
pub const IMK: &str = terminal_sim::card::TEST_IMK_HEX;
/// The amount the simulators' issuer declines with `51`.
pub const DECLINED_AMOUNT: u64 = 90_000;
/// The floor limit in the tenant's parameters (EUR, minor units).
pub const FLOOR_LIMIT: u64 = 5_000;
/// How long the fixture waits for anything asynchronous.
pub const WAIT: Duration = Duration::from_secs(30);

/// Every clear key value of the setup, hex (the imported keys, their components, the LMK).
pub fn clear_keys() -> Vec<String> {
    let mut keys: Vec<String> = ZPK
        .iter()
        .chain(ZAK.iter())
        .chain([PVK, IMK].iter())
        .flat_map(|key| {
            let (first, second) = components(key);
            [(*key).to_owned(), first, second]
        })
        .collect();
    keys.push(LMK.to_owned());
    keys.sort();
    keys.dedup();
    keys
}

fn components(key_hex: &str) -> (String, String) {
    let [first, second] = test_support::components(&hex::decode(key_hex).expect("hex"));
    (hex::encode_upper(first), hex::encode_upper(second))
}

/// Where the logs and the bus are.
#[derive(Clone)]
pub struct Backends {
    /// The bus every service uses.
    pub bus_url: String,
    /// The NATS server and the run's namespace, when on NATS.
    pub nats: Option<(String, String)>,
    /// Every service's events relayed to Kafka too (with the run's namespace).
    pub kafka_url: Option<String>,
    /// Whether the feeds read the followed service's log (embedded) or the bus.
    pub embedded: bool,
    database: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("bus_url", &self.bus_url)
            .field("embedded", &self.embedded)
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// SQLite files in `dir` and an in-process bus.
    pub fn sqlite(dir: &Path) -> Self {
        let dir = dir.to_owned();
        Self {
            bus_url: format!("memory://e2e{}", uuid::Uuid::new_v4().simple()),
            nats: None,
            kafka_url: None,
            embedded: true,
            database: Arc::new(move |service| {
                format!("sqlite://{}", dir.join(format!("{service}.db")).display())
            }),
        }
    }

    /// PostgreSQL (a fresh schema per service and run) and NATS (a fresh namespace), and
    /// Kafka when `MPOS_TEST_KAFKA_URL` is set; `None` unless the test environment names
    /// PostgreSQL and NATS.
    pub fn postgres_and_nats() -> Option<Self> {
        let postgres = std::env::var("MPOS_TEST_POSTGRES_URL").ok()?;
        let nats = std::env::var("MPOS_TEST_NATS_URL").ok()?;
        let kafka = std::env::var("MPOS_TEST_KAFKA_URL")
            .ok()
            .filter(|url| !url.is_empty());
        Some(Self::postgres_and_nats_at(
            &postgres,
            &nats,
            kafka.as_deref(),
        ))
    }

    /// PostgreSQL at `postgres` (a fresh schema per service and run), NATS at `nats` (a fresh
    /// namespace), and Kafka at `kafka` if given (the same namespace).
    pub fn postgres_and_nats_at(postgres: &str, nats: &str, kafka: Option<&str>) -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let namespace = format!("e2e{run}");
        let postgres = postgres.to_owned();
        let kafka_url = kafka.map(|url| format!("{url}?namespace={namespace}"));
        Self {
            bus_url: format!("{nats}?namespace={namespace}"),
            nats: Some((nats.to_owned(), namespace)),
            kafka_url,
            embedded: false,
            database: Arc::new(move |service| {
                format!("{postgres}?schema={}_{run}", service.replace('-', "_"))
            }),
        }
    }

    /// The database URL of `service`'s log (what the service is given as
    /// `MPOS_DATABASE_URL`).
    pub fn database_url(&self, service: &str) -> String {
        (self.database)(service)
    }

    fn config(&self, service: &str) -> CommonConfig {
        let mut pairs = vec![
            ("MPOS_DATABASE_URL", (self.database)(service)),
            ("MPOS_BUS_URL", self.bus_url.clone()),
            ("MPOS_CHAIN_SIGNING_KEY", CHAIN_SIGNING_KEY.to_owned()),
            ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
        ];
        if let Some(kafka) = &self.kafka_url {
            pairs.push(("MPOS_KAFKA_URL", kafka.clone()));
        }
        CommonConfig::from_vars(
            &Vars::from_pairs(pairs),
            service,
            "127.0.0.1:0",
            "127.0.0.1:0",
        )
        .expect("config")
    }
}

/// A TCP tap in front of an acquirer simulator: forwards both ways and keeps every byte the
/// platform sent (the ISO 8583 requests, off the bus), so a test can show that the card data
/// the scan looks for does travel where it must.
#[derive(Debug)]
pub struct Tap {
    /// Where the platform connects.
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
    down: CancellationToken,
}

impl Tap {
    async fn start(upstream: SocketAddr, cancel: CancellationToken) -> Self {
        let down = cancel.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let recorded = sent.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = cancel.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let recorded = recorded.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let requests = async {
                        let mut buffer = vec![0_u8; 16 * 1024];
                        loop {
                            let count = match client_read.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(count) => count,
                            };
                            recorded
                                .lock()
                                .expect("tap")
                                .extend_from_slice(&buffer[..count]);
                            if server_write.write_all(&buffer[..count]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let answers = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    };
                    tokio::select! {
                        () = requests => {}
                        () = answers => {}
                        () = cancel.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, sent, down }
    }

    /// Stops listening and closes every connection: the acquirer's address refuses
    /// connections from now on.
    pub fn go_down(&self) {
        self.down.cancel();
    }

    /// Every byte the platform sent so far.
    pub fn sent(&self) -> Vec<u8> {
        self.sent.lock().expect("tap").clone()
    }
}

/// A service's log, for the scan.
#[derive(Clone, Debug)]
pub struct Log {
    /// The service.
    pub service: &'static str,
    /// Its store.
    pub store: EventStore,
}

/// The running platform.
pub struct Platform {
    /// The backends.
    pub backends: Backends,
    /// terminal-management's API.
    pub tm_api: String,
    /// The hsm-proxy's admin API.
    pub hsm_api: String,
    /// key-injection's admin API.
    pub ki_api: String,
    /// attestation's API (in process and in `mposd`: the SoftPOS device routes beside the
    /// admin routes).
    pub att_api: String,
    /// Where SoftPOS phones are attested (attestation's device routes; TLS).
    pub att_devices_url: String,
    /// routing's admin API.
    pub routing_api: String,
    /// authorization's admin API.
    pub auth_api: String,
    /// The device listener of terminal-management (PEDs: activation; in process and in
    /// `mposd` also keys and payments; mTLS).
    pub devices_url: String,
    /// Where PEDs fetch their keys (key-injection's device routes; mTLS).
    pub ki_devices_url: String,
    /// Where PEDs pay (authorization's device routes; mTLS).
    pub auth_devices_url: String,
    /// SoftPOS payments (TLS).
    pub softpos_url: String,
    /// Where SoftPOS phones receive their key (key-injection's SoftPOS key API; TLS).
    pub ki_softpos_url: String,
    /// The root the devices trust for the platform's TLS listeners (DER).
    pub server_root: Vec<u8>,
    /// The attestation service's token issuer (its public key is authorization's).
    pub token_issuer: Arc<TokenIssuer>,
    /// Acquirer simulators A and B, when they run in this process.
    pub sims: Vec<RunningSim>,
    /// The taps in front of them, when they run in this process.
    pub taps: Vec<Tap>,
    /// Where routing reaches acquirers A and B (the taps, or the simulator processes).
    pub acquirers: [SocketAddr; 2],
    /// Every service's log.
    pub logs: Vec<Log>,
    /// The HTTP client for the admin APIs.
    pub http: reqwest::Client,
    /// The simulators' SoftPOS attestation PKI (its root is trusted by attestation).
    pub attestation_pki: terminal_sim::softpos::AttestationPki,
    dir: tempfile::TempDir,
    cancel: CancellationToken,
    joins: Vec<tokio::task::JoinHandle<()>>,
    /// The service processes, when the platform runs as processes ([`processes`]).
    children: Vec<processes::Child>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// The ISO 8583 spec and framing of the simulators and routing's acquirer settings.
fn spec() -> Arc<Spec> {
    Arc::new(Spec::builtin("ascii-1987").expect("spec"))
}

fn framing() -> Framing {
    Framing {
        prefix: LengthPrefix::Binary2,
        header: Vec::new(),
    }
}

/// The simulators' rules: a declined amount, the PIN checked against the PVV on file, the
/// ARQC verified (ARPC in tag 91), else approved.
pub fn sim_rules(cards: &[(Pan, String)]) -> String {
    let cards: Vec<Value> = cards
        .iter()
        .map(|(pan, pvv)| json!({"pan": pan.expose(), "pvv": pvv, "pvki": 1}))
        .collect();
    json!({
        "cards": cards,
        "rules": [
            {"name": "declined amount", "when": {"amount_min": DECLINED_AMOUNT, "amount_max": DECLINED_AMOUNT}, "then": {"decline": "51"}},
            {"name": "pin", "when": {"mti": "0200"}, "then": "verify_pin"},
            {"name": "chip", "when": {"mti": "0200"}, "then": {"verify_arqc": {}}},
            {"name": "the rest", "when": {}, "then": "approve"}
        ]
    })
    .to_string()
}

/// The test card `visa` of the terminal simulator.
pub fn visa() -> TestCard {
    terminal_sim::card::test_card("visa").expect("visa")
}

/// A chip payment of `card` with its PIN and the card's answer to GENERATE AC; the card, to
/// check the issuer's answer.
pub fn chip(
    card: &TestCard,
    key: &str,
    amount: u64,
    decision: terminal_sim::emv::CardDecision,
    atc: u16,
) -> (terminal_sim::payment::Payment, terminal_sim::emv::EmvCard) {
    let mut emv_card = card.emv_card(atc);
    let emv = emv_card
        .generate_ac(
            &terminal_sim::emv::EmvTransaction::purchase_today(amount, 978, 276),
            decision,
        )
        .expect("generate ac");
    let mut payment =
        terminal_sim::payment::Payment::purchase(key, amount, "EUR", card.track2.clone());
    payment.pin = Some(card.pin.clone());
    payment.emv = Some(emv);
    (payment, emv_card)
}

/// [`sim_rules`] for every test card of the terminal simulator: PIN against the PVV, ARQC
/// verified, ARPC answered.
pub fn test_card_rules() -> String {
    let cards: Vec<(Pan, String)> = terminal_sim::card::test_cards()
        .iter()
        .map(|card| (card.pan().clone(), pvv(card)))
        .collect();
    sim_rules(&cards)
}

/// The Visa PVV (PVKI 1) of `card`'s PIN under [`PVK`].
pub fn pvv(card: &TestCard) -> String {
    let pvk = SecretBytes::from_hex("pvk", PVK).expect("pvk");
    let pvv = paycrypto::pinver::generate_pvv(
        &pvk,
        card.pan(),
        paycrypto::pinver::Pvki::new(1).expect("pvki"),
        &card.pin,
    )
    .expect("pvv");
    pvv.expose().to_string()
}

/// The clear ISO 9564 format 0 PIN block of `pin` on `pan`, hex.
pub fn clear_pin_block(pin: &Pin, pan: &Pan) -> String {
    let block = paycrypto::pin::encode_pin_block(
        paycrypto::pin::PinBlockFormat::Iso0,
        pin,
        Some(pan),
        &mut rand::rngs::OsRng,
    )
    .expect("pin block");
    hex::encode_upper(block.expose())
}

impl Platform {
    /// Starts every service on `backends`, the simulators with `sim_rules`.
    pub async fn start(backends: Backends, sim_rules: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let token = SecretString::from(OPERATOR_TOKEN.to_owned());
        let mut joins = Vec::new();
        let mut logs = Vec::new();

        // The platform's TLS identity for devices (a self-signed "localhost").
        let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("server certificate");
        let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        std::fs::write(&cert_path, server.cert.pem()).expect("write");
        std::fs::write(&key_path, server.signing_key.serialize_pem()).expect("write");
        let identity = device_identity::ServerIdentity::from_pem_files(&cert_path, &key_path)
            .expect("server identity");

        let connect = |service: &'static str| {
            let config = backends.config(service);
            let cancel = cancel.clone();
            async move {
                let infrastructure = Infrastructure::default();
                let (store, bus) = infrastructure
                    .connect(&config, &cancel)
                    .await
                    .expect("infrastructure");
                (config, infrastructure, store, bus)
            }
        };
        let (tm_config, tm_infra, tm_store, tm_bus) = connect(terminal_management::SERVICE).await;
        let (hsm_config, hsm_infra, hsm_store, hsm_bus) = connect(hsm_proxy::SERVICE).await;
        let (ki_config, ki_infra, ki_store, ki_bus) = connect(key_injection::SERVICE).await;
        let (att_config, att_infra, att_store, att_bus) = connect(attestation::SERVICE).await;
        let (routing_config, routing_infra, routing_store, routing_bus) =
            connect(routing::SERVICE).await;
        let (auth_config, auth_infra, auth_store, auth_bus) = connect(authorization::SERVICE).await;
        for (service, store) in [
            (terminal_management::SERVICE, &tm_store),
            (hsm_proxy::SERVICE, &hsm_store),
            (key_injection::SERVICE, &ki_store),
            (attestation::SERVICE, &att_store),
            (routing::SERVICE, &routing_store),
            (authorization::SERVICE, &auth_store),
        ] {
            logs.push(Log {
                service,
                store: store.clone(),
            });
        }
        let log_of = |store: &EventStore, codec: mpos_es::EventCodec| {
            backends.embedded.then(|| FeedSource::Store {
                store: store.clone(),
                codec: Arc::new(codec),
            })
        };

        // hsm-proxy: soft backend; card data only sealed.
        let hsm_settings = hsm_proxy::service::HsmConfig {
            backends: vec![format!("soft://{}", dir.path().join("keys").display())],
            soft_lmk: Some(SecretBytes::from_hex("lmk", LMK).expect("lmk")),
            pkcs11_pin: None,
            pool: hsm_proxy::pool::PoolConfig {
                local_site: "local".into(),
                attempt_timeout: Duration::from_secs(2),
                check_interval: Duration::from_millis(100),
            },
            sealed_card_data: hsm_proxy::sealing::SealedCardData::Require,
        };
        let hsm = hsm_proxy::service::start(
            &hsm_config,
            &hsm_settings,
            hsm_store,
            &hsm_bus,
            &hsm_infra,
            &token,
            listener().await,
            &cancel,
        )
        .await
        .expect("hsm-proxy");
        let hsm_api = format!("http://{}", hsm.http_addr);
        joins.push(tokio::spawn(hsm.join()));

        // The attestation token issuer, shared with key-injection and authorization.
        let token_issuer = Arc::new(
            attestation::service::generated_issuer("att-e2e".into()).expect("token issuer"),
        );
        let token_keys = attestation_keys::KeySource::Fixed(PublishedKeys::of([(
            token_issuer.kid(),
            &token_issuer.public_key(),
        )]));

        // key-injection: PEDs on the shared device listener, phones on its own TLS listener.
        let ki_options = key_injection::service::KiOptions {
            operator_token: token.clone(),
            kdh_key: "alias/kdh".into(),
            kdh_certificate: Vec::new(),
            krd_cas: Vec::new(),
            hsm_timeout: Duration::from_secs(5),
            confirmation_window: Duration::from_secs(600),
            cryptoperiod: Duration::from_secs(365 * 86_400),
            device_addr: None,
            device_tls: Some(identity.clone()),
            workers: 2,
            sweep_interval: Duration::from_secs(1),
            cryptoperiod_check_interval: Duration::from_secs(3_600),
            feed: log_of(&tm_store, terminal_management::codec()),
            softpos_addr: Some("127.0.0.1:0".parse().expect("addr")),
            token_keys: token_keys.clone(),
        };
        let ki = key_injection::service::start(
            &ki_config,
            ki_store,
            &ki_bus,
            &ki_infra,
            &ki_options,
            listener().await,
            &cancel,
        )
        .await
        .expect("key-injection");
        let ki_api = format!("http://{}", ki.http_addr);
        let ki_softpos_url = format!(
            "https://localhost:{}",
            ki.softpos_addr.expect("softpos listener").port()
        );
        let ki_routes = ki.device_routes.clone();
        joins.push(tokio::spawn(ki.join()));

        // attestation: the simulators' attestation root trusted, an empty status list, the
        // token issuer shared with authorization.
        let attestation_pki = terminal_sim::softpos::AttestationPki::new().expect("pki");
        let anchors = dir.path().join("anchors.pem");
        std::fs::write(&anchors, attestation_pki.root_pem()).expect("write");
        let status_list = dir.path().join("status.json");
        std::fs::write(&status_list, r#"{"entries": {}}"#).expect("write");
        let att_options = attestation::service::AttOptions {
            operator_token: token.clone(),
            token_issuer: token_issuer.clone(),
            trust: attestation_trust::TrustConfig::new(
                attestation_trust::Source::File(anchors),
                Some(attestation_trust::Source::File(status_list)),
            ),
            challenge_ttl: Duration::from_secs(120),
            monitor_interval: Duration::from_secs(3_600),
            feed: log_of(&tm_store, terminal_management::codec()),
            device_addr: None,
            device_tls: None,
        };
        let att = attestation::service::start(
            &att_config,
            att_store.clone(),
            &att_bus,
            &att_infra,
            &att_options,
            listener().await,
            &cancel,
        )
        .await
        .expect("attestation");
        let att_api = format!("http://{}", att.http_addr);
        joins.push(tokio::spawn(att.join()));

        // routing.
        let routing_options = routing::service::RoutingOptions {
            operator_token: token.clone(),
            hsm_timeout: Duration::from_secs(5),
            router: routing::engine::RouterSettings {
                reversal_backoff_min: Duration::from_millis(100),
                reversal_backoff_max: Duration::from_millis(400),
                link_tuning: routing::links::LinkTuning {
                    connect_timeout: Duration::from_millis(500),
                    reconnect_min: Duration::from_millis(20),
                    reconnect_max: Duration::from_millis(100),
                },
                config_ttl: Duration::from_secs(1),
            },
            forward_poll: Duration::from_millis(100),
            feed: log_of(&tm_store, terminal_management::codec()),
            sealer: None,
        };
        let routing = routing::service::start(
            &routing_config,
            routing_store.clone(),
            &routing_bus,
            &routing_infra,
            &routing_options,
            listener().await,
            &cancel,
        )
        .await
        .expect("routing");
        let routing_api = format!("http://{}", routing.http_addr);
        joins.push(tokio::spawn(routing.join()));

        // authorization: PEDs on the shared device listener, SoftPOS phones on their own TLS
        // listener; the token key given in process.
        let auth_options = authorization::service::AuthOptions {
            operator_token: token.clone(),
            device_addr: None,
            softpos_addr: Some("127.0.0.1:0".parse().expect("addr")),
            device_tls: Some(identity.clone()),
            token_keys,
            card_token_key: "alias/card-token".into(),
            hsm_timeout: Duration::from_secs(5),
            routing_timeout: Duration::from_secs(10),
            feeds: authorization::service::FeedSources {
                tms: log_of(&tm_store, terminal_management::codec()),
                ki: log_of(&logs[2].store, key_injection::codec()),
                routing: log_of(&routing_store, routing::codec()),
            },
        };
        let auth = authorization::service::start(
            &auth_config,
            auth_store,
            &auth_bus,
            &auth_infra,
            &auth_options,
            listener().await,
            &cancel,
        )
        .await
        .expect("authorization");
        let auth_api = format!("http://{}", auth.http_addr);
        let softpos_port = auth.softpos_addr.expect("softpos listener").port();
        let auth_routes = auth.device_routes.clone();
        joins.push(tokio::spawn(auth.join()));

        // terminal-management, with key-injection's and authorization's device routes on its
        // device listener.
        let tm_options = terminal_management::service::TmOptions {
            operator_token: token.clone(),
            parameter_signing_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            device_addr: "127.0.0.1:0".parse().expect("addr"),
            device_tls: Some(identity),
            more_device_routes: Some(ki_routes.merge(auth_routes)),
            attestation_feed: log_of(&att_store, attestation::codec()),
        };
        let tm = terminal_management::service::start(
            &tm_config,
            tm_store,
            &tm_bus,
            &tm_infra,
            &tm_options,
            listener().await,
            &cancel,
        )
        .await
        .expect("terminal-management");
        let tm_api = format!("http://{}", tm.http_addr);
        let devices_url = format!("https://localhost:{}", tm.device_addr.port());
        joins.push(tokio::spawn(tm.join()));

        // The acquirer simulators, each with its own hsm-proxy caller (card data sealed).
        let sim_bus = mpos_bus::connect(&backends.bus_url).await.expect("bus");
        let sim_client = HsmClient::new(
            sim_bus.requests.clone().expect("request-reply"),
            "service:acquirer-sim",
            Duration::from_secs(5),
        )
        .with_sealer(Arc::new(mpos_seal::Sealer::new().expect("sealer")));
        let mut sims = Vec::new();
        let mut taps = Vec::new();
        for tenant in SIM_TENANTS {
            let mut config = SimConfig::new(spec(), framing());
            config.rules = RuleSet::from_json(sim_rules).expect("rules");
            let mac: Arc<dyn MacProvider> =
                Arc::new(HsmMac::new(sim_client.clone(), tenant, "alias/zak"));
            config.mac = Some(mac);
            config.issuer = Some(Arc::new(HsmIssuer {
                client: sim_client.clone(),
                tenant_id: tenant.into(),
                zpk: Some("alias/zpk".into()),
                pvk: Some("alias/pvk".into()),
                imk_ac: Some("alias/imk".into()),
            }));
            let sim = AcquirerSim::start(config, listener().await).expect("sim");
            taps.push(Tap::start(sim.addr(), cancel.child_token()).await);
            sims.push(sim);
        }
        let acquirers = [taps[0].addr, taps[1].addr];

        Self {
            backends,
            tm_api,
            hsm_api,
            ki_api,
            att_api: att_api.clone(),
            routing_api,
            auth_api,
            att_devices_url: att_api.clone(),
            ki_devices_url: devices_url.clone(),
            auth_devices_url: devices_url.clone(),
            devices_url,
            softpos_url: format!("https://localhost:{softpos_port}"),
            ki_softpos_url,
            server_root: server.cert.der().to_vec(),
            token_issuer,
            sims,
            taps,
            acquirers,
            logs,
            http: reqwest::Client::new(),
            attestation_pki,
            dir,
            cancel,
            joins,
            children: Vec::new(),
        }
    }

    /// Stops every service and waits for them.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        for join in std::mem::take(&mut self.joins) {
            let _ = tokio::time::timeout(WAIT, join).await;
        }
        for child in std::mem::take(&mut self.children) {
            child.stop().await;
        }
    }

    /// The operator console in front of this platform: each service's admin API, and the
    /// audit trail of the six logs under the platform's checkpoint key.
    pub fn console(&self) -> mpos_console::Console {
        let operator = mpos_http::OperatorAuth::new(&SecretString::from(OPERATOR_TOKEN.to_owned()));
        let mut console = mpos_console::Console::new(operator).expect("console");
        for (service, api) in [
            (terminal_management::SERVICE, &self.tm_api),
            (hsm_proxy::SERVICE, &self.hsm_api),
            (key_injection::SERVICE, &self.ki_api),
            (attestation::SERVICE, &self.att_api),
            (routing::SERVICE, &self.routing_api),
            (authorization::SERVICE, &self.auth_api),
        ] {
            console = console.upstream(service, api).expect("upstream");
        }
        let key = ed25519_dalek::SigningKey::from_bytes(
            &<[u8; 32]>::try_from(hex::decode(CHAIN_SIGNING_KEY).expect("hex")).expect("seed"),
        );
        console.audit(
            mpos_console::AuditLogs::new(
                self.logs
                    .iter()
                    .map(|log| (log.service.to_owned(), log.store.clone()))
                    .collect(),
                vec![key.verifying_key()],
            )
            .platform_read_models(),
        )
    }

    /// Where the test may keep files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A service's log.
    pub fn store(&self, service: &str) -> &EventStore {
        &self
            .logs
            .iter()
            .find(|log| log.service == service)
            .expect("service")
            .store
    }

    /// Sends `body` with the operator token; the answer's JSON, asserting a 2xx status.
    pub async fn call(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
        let (status, value) = self.try_call(method, url, body).await;
        assert!((200..300).contains(&status), "{url}: {status} {value}");
        value
    }

    /// As [`Platform::call`], whatever the status.
    pub async fn try_call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, url).bearer_auth(OPERATOR_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or_default();
        (status, value)
    }

    async fn post(&self, url: String, body: Value) -> Value {
        self.call(reqwest::Method::POST, &url, Some(body)).await
    }

    async fn put(&self, url: String, body: Value) -> Value {
        self.call(reqwest::Method::PUT, &url, Some(body)).await
    }

    /// Imports `key_hex` as two clear components under `alias` for `tenant`, through the
    /// hsm-proxy's admin API (off the bus).
    pub async fn import_key(
        &self,
        tenant: &str,
        usage: &str,
        mode: &str,
        key_hex: &str,
        alias: &str,
    ) {
        let attributes = test_support::attributes(hsm_pb::KeyAlgorithm::Tdes2key, usage, mode, "");
        let key = hex::decode(key_hex).expect("hex");
        let request =
            test_support::components_import(tenant, alias, attributes, &key).expect("request");
        self.post(
            format!("{}/v1/tenants/{tenant}/keys/import", self.hsm_api),
            serde_json::to_value(&request).expect("json"),
        )
        .await;
    }

    /// Sets the tenant up (see the crate documentation); answers the activated PED with its
    /// key (the SoftPOS phone is [`PHONE`], active; [`Platform::phone`] pays as it).
    pub async fn provision(&self) -> Terminal {
        let tm = &self.tm_api;
        self.post(
            format!("{tm}/v1/tenants"),
            json!({"tenantId": TENANT, "name": "Acme Pay"}),
        )
        .await;
        for (node, kind, parent) in [
            ("m-1", "NODE_KIND_MERCHANT", ""),
            ("s-1", "NODE_KIND_STORE", "m-1"),
            ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
        ] {
            self.post(
                format!("{tm}/v1/tenants/{TENANT}/nodes"),
                json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
            )
            .await;
        }
        let (low, high) = terminal_sim::card::BLOCKED_BIN_RANGE;
        self.put(
            format!("{tm}/v1/tenants/{TENANT}/parameters"),
            json!({
                "floorLimits": [{"currency": "EUR", "amount": FLOOR_LIMIT.to_string()}],
                "terminalActionCodes": {"denial": "0010000000", "online": "FC50BCF800", "defaultCode": "FC50BCA000"},
                "merchantCategoryCode": "5411",
                "transactionCurrency": "EUR",
                "terminalCountryCode": "276",
                "contactlessTransactionLimit": "15000",
                "contactlessFloorLimit": "5000",
                "cvmRequiredLimit": "5000",
                "randomSelection": {"threshold": "1000", "targetPercent": 10, "maxTargetPercent": 50},
                "offlineLimits": {"perTransactionAmount": "2000", "maxCount": 20, "maxTotalAmount": "20000"},
                "blockedBinRanges": [{"low": low, "high": high}]
            }),
        )
        .await;
        let vendor = ManufacturerCa::generate("Vendor P CA").expect("vendor CA");
        self.post(
            format!("{tm}/v1/manufacturer-cas"),
            json!({"name": "Vendor P", "certificatePem": vendor.certificate_pem()}),
        )
        .await;
        let identity = vendor
            .issue(&[0x70, 0x01], DeviceKeyKind::P256)
            .expect("device");
        self.post(
            format!("{tm}/v1/tenants/{TENANT}/terminals"),
            json!({"terminalId": PED, "kind": "TERMINAL_KIND_PED", "parentId": "g-1", "certificatePem": identity.certificate_pem()}),
        )
        .await;
        self.post(
            format!("{tm}/v1/tenants/{TENANT}/terminals"),
            json!({"terminalId": PHONE, "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "s-1"}),
        )
        .await;

        // The hsm-proxy's keys: generated BDK and card token key; the zone keys imported under
        // the tenant and, with the issuer keys, under each simulator's tenant.
        let hsm = &self.hsm_api;
        for (alias, algorithm, usage, mode) in [
            ("bdk", "KEY_ALGORITHM_TDES_2KEY", "B0", "X"),
            ("card-token", "KEY_ALGORITHM_HMAC_SHA256", "M7", "C"),
        ] {
            self.post(
                format!("{hsm}/v1/tenants/{TENANT}/keys"),
                json!({"attributes": {"algorithm": algorithm, "keyUsage": usage, "modeOfUse": mode}, "alias": alias}),
            )
            .await;
        }
        for (index, suffix) in ["a", "b"].iter().enumerate() {
            self.import_key(TENANT, "P0", "B", ZPK[index], &format!("zpk-{suffix}"))
                .await;
            self.import_key(TENANT, "M3", "C", ZAK[index], &format!("zak-{suffix}"))
                .await;
            let sim = SIM_TENANTS[index];
            self.import_key(sim, "P0", "B", ZPK[index], "zpk").await;
            self.import_key(sim, "M3", "C", ZAK[index], "zak").await;
            self.import_key(sim, "V2", "C", PVK, "pvk").await;
            self.import_key(sim, "E0", "X", IMK, "imk").await;
        }
        self.post(
            format!("{}/v1/tenants/{TENANT}/bdks", self.ki_api),
            json!({"bdkId": "bdk-1", "hsmKeyId": "alias/bdk", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": "FFFF987654"}),
        )
        .await;

        // routing: both acquirers (behind the taps), every card to A then B.
        for (index, acquirer) in ACQUIRERS.iter().enumerate() {
            let suffix = ["a", "b"][index];
            self.put(
                format!(
                    "{}/v1/tenants/{TENANT}/acquirers/{acquirer}",
                    self.routing_api
                ),
                json!({
                    "name": format!("acquirer {suffix}"),
                    "address": self.acquirers[index].to_string(),
                    "spec": "ascii-1987",
                    "lengthPrefix": "binary2",
                    "acquiringInstitutionId": "12345678",
                    "zonePinKey": format!("alias/zpk-{suffix}"),
                    "zoneMacKey": format!("alias/zak-{suffix}"),
                    "responseTimeoutMs": 1000,
                    "echoIntervalSeconds": 3600,
                }),
            )
            .await;
        }
        let priority = json!({"priority": {"acquirerIds": ACQUIRERS}});
        self.put(
            format!(
                "{}/v1/tenants/{TENANT}/routing-rules?expected_version=0",
                self.routing_api
            ),
            json!({
                "rules": [{"id": "visa", "description": "Visa to A, then B", "enabled": true,
                           "conditions": {"brands": ["visa"]}, "route": priority}],
                "defaultRoute": priority,
            }),
        )
        .await;

        // The PED: activation and its key over mTLS.
        let terminal = self.activate_ped(PED, identity).await;

        // The phone: attested by the attestation service, which activates it.
        let verdict = self.attest_phone().await;
        assert_eq!(verdict["verdict"], "VERDICT_ALLOW", "{verdict}");
        self.wait_for_terminal_state(PHONE, "TERMINAL_STATE_ACTIVE")
            .await;

        // authorization has followed terminal-management and key-injection to their heads.
        self.wait_for_feeds().await;
        terminal
    }

    /// A PED of `identity`, bound as `terminal_id`: activated over mTLS, its DUKPT key
    /// injected (P-256 ECDH); the terminal, ready to pay.
    pub async fn activate_ped(
        &self,
        terminal_id: &str,
        identity: terminal_sim::DeviceIdentity,
    ) -> Terminal {
        let mut terminal = Terminal::new(TerminalConfig {
            terminal_id: terminal_id.to_owned(),
            identity,
            tms_url: self.devices_url.clone(),
            ki_url: self.ki_devices_url.clone(),
            server_roots: vec![self.server_root.clone()],
            kdh_trust: Vec::new(),
            parameter_verifying_key: None,
        })
        .expect("terminal")
        .with_auth_url(self.auth_devices_url.clone());
        let activated = terminal.activate().await.expect("activated");
        assert_eq!(activated.state, "TERMINAL_STATE_ACTIVE");
        // key-injection knows the device once it has followed terminal-management this far
        // (over the bus, when they are separate processes).
        self.wait_for_feed(
            key_injection::SERVICE,
            key_injection::feed::CONSUMER,
            terminal_management::SERVICE,
        )
        .await;
        tokio::time::timeout(
            Duration::from_secs(60),
            terminal.receive_key(Instant::now() + Duration::from_secs(55)),
        )
        .await
        .expect("the key in time")
        .expect("key installed");
        terminal
    }

    /// `count` more PEDs of a vendor of their own (`p0000001` …), bound under the terminal
    /// group of [`Platform::provision`] (which must have run), activated and keyed,
    /// `concurrency` at a time; authorization has followed them when this returns.
    pub async fn add_peds(&self, count: usize, concurrency: usize) -> Vec<Terminal> {
        use futures::StreamExt as _;
        let tm = &self.tm_api;
        let vendor = ManufacturerCa::generate("Vendor Q CA").expect("vendor CA");
        self.post(
            format!("{tm}/v1/manufacturer-cas"),
            json!({"name": "Vendor Q", "certificatePem": vendor.certificate_pem()}),
        )
        .await;
        let terminals: Vec<Terminal> = futures::stream::iter(0..count)
            .map(|index| {
                let vendor = &vendor;
                async move {
                    let serial = u32::try_from(index + 1).expect("count").to_be_bytes();
                    let identity = vendor
                        .issue(&[0x71, serial[0], serial[1], serial[2], serial[3]], DeviceKeyKind::P256)
                        .expect("device");
                    // Eight characters: the terminal id goes into field 41 as it is.
                    let terminal_id = format!("p{:07}", index + 1);
                    self.post(
                        format!("{tm}/v1/tenants/{TENANT}/terminals"),
                        json!({"terminalId": terminal_id, "kind": "TERMINAL_KIND_PED", "parentId": "g-1", "certificatePem": identity.certificate_pem()}),
                    )
                    .await;
                    self.activate_ped(&terminal_id, identity).await
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        self.wait_for_feeds().await;
        terminals
    }

    /// The phone's challenge and evidence (for a key of its own it does not keep) against
    /// the attestation API; the answer.
    pub async fn attest_phone(&self) -> Value {
        let key = terminal_sim::softpos::AttestedKey::generate().expect("key");
        self.attest_phone_with(&key).await.0
    }

    /// The phone's challenge and evidence for its key `key` against the attestation API;
    /// the answer and the attested certificate (the chain's leaf).
    pub async fn attest_phone_with(
        &self,
        key: &terminal_sim::softpos::AttestedKey,
    ) -> (Value, Vec<u8>) {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let device = format!(
            "{}/v1/tenants/{TENANT}/devices/{PHONE}",
            self.att_devices_url
        );
        // The phone trusts the platform's TLS root.
        let http = if self.att_devices_url.starts_with("https://") {
            terminal_sim::client::server_auth_client(std::slice::from_ref(&self.server_root))
                .expect("client")
        } else {
            self.http.clone()
        };
        let deadline = Instant::now() + WAIT;
        let challenge: Value = loop {
            let response = http
                .post(format!("{device}/challenges"))
                .json(&json!({}))
                .send()
                .await
                .expect("challenge");
            if response.status().as_u16() == 200 {
                break response.json().await.expect("json");
            }
            assert!(
                Instant::now() < deadline,
                "the phone never reached attestation"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let profile = terminal_sim::softpos::SoftPosProfile::default();
        let bytes = engine
            .decode(challenge["challenge"].as_str().expect("challenge"))
            .expect("base64");
        let chain = self
            .attestation_pki
            .attest_key(&profile, &bytes, key)
            .expect("chain");
        let leaf = chain.first().cloned().expect("leaf");
        let chain: Vec<String> = chain.iter().map(|der| engine.encode(der)).collect();
        let signals = serde_json::to_value(profile.signals()).expect("signals");
        let body = json!({
            "challengeId": challenge["challengeId"],
            "keyAttestationChain": chain,
            "signals": {
                "rooted": signals["rooted"], "emulator": signals["emulator"],
                "debuggerAttached": signals["debugger_attached"], "hookingFramework": signals["hooking_framework"],
                "appTampered": signals["app_tampered"], "osVersion": signals["os_version"],
                "sdkVersion": signals["sdk_version"], "appVersion": signals["app_version"],
                "appVersionCode": signals["app_version_code"].to_string(),
                "securityPatchLevel": signals["security_patch_level"], "packageName": signals["package_name"],
            },
        });
        let response = http
            .post(format!("{device}/attestations"))
            .json(&body)
            .send()
            .await
            .expect("attest");
        assert_eq!(response.status().as_u16(), 200);
        (response.json().await.expect("json"), leaf)
    }

    /// The SoftPOS phone attested with a key of its own, which receives its DUKPT initial
    /// key from key-injection (ECDH to the attested key, the attestation token as its
    /// credential); once authorization has followed key-injection, ready to pay.
    pub async fn keyed_phone(&self) -> terminal_sim::payment::SoftPosTerminal {
        let key = terminal_sim::softpos::AttestedKey::generate().expect("key");
        let (verdict, leaf) = self.attest_phone_with(&key).await;
        let mut phone = self.softpos_terminal();
        phone.set_attestation_token(verdict["token"].as_str().expect("token"));
        // key-injection knows the phone as an active SoftPOS terminal from its feed.
        self.wait_for_feed(
            key_injection::SERVICE,
            key_injection::feed::CONSUMER,
            terminal_management::SERVICE,
        )
        .await;
        phone.receive_key(&key, &leaf).await.expect("softpos key");
        self.wait_for_feeds().await;
        phone
    }

    /// The SoftPOS phone's payment side, without a key.
    pub fn softpos_terminal(&self) -> terminal_sim::payment::SoftPosTerminal {
        terminal_sim::payment::SoftPosTerminal::new(terminal_sim::payment::SoftPosConfig {
            terminal_id: PHONE.into(),
            tenant_id: TENANT.into(),
            auth_url: self.softpos_url.clone(),
            ki_url: self.ki_softpos_url.clone(),
            server_roots: vec![self.server_root.clone()],
        })
        .expect("phone")
    }

    /// Waits until terminal-management reports `terminal` in `state`.
    pub async fn wait_for_terminal_state(&self, terminal: &str, state: &str) {
        let url = format!("{}/v1/tenants/{TENANT}/terminals/{terminal}", self.tm_api);
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.try_call(reqwest::Method::GET, &url, None).await;
            if status == 200 && body["state"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{terminal} never {state}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `follower`'s feed `consumer` has applied `followed`'s log up to its current
    /// head.
    pub async fn wait_for_feed(&self, follower: &str, consumer: &str, followed: &str) {
        let head = head(self.store(followed)).await;
        let store = self.store(follower);
        let deadline = Instant::now() + WAIT;
        while store.consumer_position(consumer).await.expect("position") < head {
            assert!(
                Instant::now() < deadline,
                "{follower}'s {consumer} never reached {followed}'s {head}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until authorization's feeds have applied terminal-management's and
    /// key-injection's logs up to their current heads.
    pub async fn wait_for_feeds(&self) {
        for (followed, consumer) in [
            (
                terminal_management::SERVICE,
                authorization::feeds::TMS_FEED.consumer,
            ),
            (
                key_injection::SERVICE,
                authorization::feeds::KI_FEED.consumer,
            ),
        ] {
            self.wait_for_feed(authorization::SERVICE, consumer, followed)
                .await;
        }
    }

    /// routing's record of a payment's exchange (admin API).
    pub async fn exchange(&self, payment_id: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!(
                "{}/v1/tenants/{TENANT}/payments/{payment_id}/routing",
                self.routing_api
            ),
            None,
        )
        .await
    }

    /// authorization's record of a payment (admin API).
    pub async fn payment(&self, payment_id: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!(
                "{}/v1/tenants/{TENANT}/payments/{payment_id}",
                self.auth_api
            ),
            None,
        )
        .await
    }

    /// A PED whose certificate an unknown vendor issued, pointed at the device listener.
    pub fn stranger(&self) -> Terminal {
        let other = ManufacturerCa::generate("Other Vendor CA").expect("vendor CA");
        let mut terminal = Terminal::new(TerminalConfig {
            terminal_id: "stranger-1".to_owned(),
            identity: other
                .issue(&[0x70, 0x02], DeviceKeyKind::P256)
                .expect("device"),
            tms_url: self.devices_url.clone(),
            ki_url: self.ki_devices_url.clone(),
            server_roots: vec![self.server_root.clone()],
            kdh_trust: Vec::new(),
            parameter_verifying_key: None,
        })
        .expect("terminal")
        .with_auth_url(self.auth_devices_url.clone());
        terminal
            .load_initial_key(
                mpos_proto::key_injection::DukptAlgorithm::Tdes,
                &SecretBytes::from_hex("ipek", "6AC292FAA1315B4D858AB3A3D7D5933A").expect("hex"),
                "FFFF9876543210E00000",
            )
            .expect("key");
        terminal
    }

    /// The SoftPOS phone's payment side, with a DUKPT key loaded locally that the platform
    /// never issued (for payments refused before the key matters; [`Platform::keyed_phone`]
    /// receives a real one).
    pub fn phone(&self) -> terminal_sim::payment::SoftPosTerminal {
        let mut phone = self.softpos_terminal();
        phone
            .load_initial_key(
                mpos_proto::key_injection::DukptAlgorithm::Tdes,
                &SecretBytes::from_hex("ipek", "6AC292FAA1315B4D858AB3A3D7D5933A").expect("hex"),
                "FFFF9876543210E00000",
            )
            .expect("key");
        phone
    }

    /// Every event of every service's log.
    pub async fn all_events(&self) -> Vec<(String, mpos_es::StoredEvent)> {
        let mut all = Vec::new();
        for log in &self.logs {
            let mut position = 0;
            loop {
                let events = log.store.read_after(position, 1_000).await.expect("read");
                let Some(last) = events.last() else { break };
                position = last.global_position;
                all.extend(
                    events
                        .into_iter()
                        .map(|event| (log.service.to_owned(), event)),
                );
            }
        }
        all
    }
}

/// The last position of a log.
pub async fn head(store: &EventStore) -> u64 {
    let mut position = 0;
    loop {
        let events = store.read_after(position, 10_000).await.expect("read");
        match events.last() {
            Some(last) => position = last.global_position,
            None => return position,
        }
    }
}
