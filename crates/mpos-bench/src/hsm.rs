//! hsm-proxy `TranslatePinData` over NATS request-reply: a closed-loop load generator with N
//! requests in flight, next to a bare NATS request-reply echo measured in the same run.
//!
//! Set-up: the hsm-proxy starts in this process (`hsm_proxy::service::start`) on a SQLite
//! store in a temp dir, the real NATS bus and a `soft://` backend in the temp dir. A TDES BDK
//! (B0, the ANSI X9.24-1 test BDK `0123456789ABCDEFFEDCBA9876543210`) and a ZPK (P0) are
//! imported through the NATS operation `ImportKey` as two clear components each (each with
//! its KCV). PIN blocks (PIN 1234, PAN 4012345678909, ISO 9564 format 0) are enciphered on
//! the device side by `paycrypto::dukpt::tdes::Device` for many KSNs; the generator checks
//! that its first device reproduces the encrypted PIN blocks published in X9.24-1:2009
//! A.4.2 before the run.
//!
//! Figure: `TranslatePinData` (DUKPT → ZPK, ISO 0 → ISO 0) through `hsm_proxy::rpc::HsmClient`
//! on a separate NATS connection, `concurrency` requests in flight for `duration` after a
//! warm-up. Every reply is checked: no error, the KCV of the ZPK, and the translated block
//! equal to the PIN block of PIN 1234 under the ZPK (format 0 has no random fill, so every
//! correct translation is the same block); every 256th reply is also deciphered under the
//! ZPK and decoded to the PIN.
//!
//! Floor: a responder in this process on a third NATS connection, served through the same
//! `mpos_bus::RequestReply` adapter as the hsm-proxy, that replies with the request payload;
//! the same concurrency, duration, request payload (the encoded `TranslatePinDataRequest`)
//! and client adapter.
//!
//! Breakdown (full runs): the parts of the hot path timed one by one with a single caller
//! (protobuf, registry, pool, DUKPT, PIN translation, the whole `Hsm::translate_pin_data`),
//! the engine under `concurrency` in-process callers, the round trips with one request in
//! flight, and three short back-to-back runs on the same connections: the echo, a minimal
//! translator (`MinimalTranslator`: only decode, DUKPT, translate, encode) and the
//! hsm-proxy. CPU time of this process and of a local `nats-server` is read from /proc.
//!
//! Both sides also go through [`Namespaced`], which prefixes every request-reply subject with
//! the run's unique namespace on top of the bus URL's `?namespace=` (which `mpos-bus` applies
//! to request-reply subjects too since the hsm-proxy work): another hsm-proxy on the same NATS
//! server (a test, a colleague's run) cannot join the queue group and answer the benchmark's
//! requests, whatever its bus URL.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use mpos_bus::{BusError, Message, RequestHandler, RequestReply, ServeHandle};
use mpos_errors::ServiceError;
use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;
use paycrypto::dukpt::tdes::{self as dukpt, DataKeyDerivation, Device, KeyUsage, Ksn};
use paycrypto::pin::{Pan, Pin, PinBlockContext, PinBlockFormat};
use prost::Message as _;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::Urls;
use crate::stats::{median, percentile, rate};

/// The ANSI X9.24-1:2009 Annex A.4 test BDK.
const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
/// X9.24-1:2009 A.4: initial KSN of the example device.
const INITIAL_KSN: &str = "FFFF9876543210E00000";
/// X9.24-1:2009 A.4: the PIN and PAN of the example.
const PIN: &str = "1234";
/// X9.24-1:2009 A.4: the PAN of the example.
const PAN: &str = "4012345678909";
/// X9.24-1:2009 A.4.2 (initial sequence): the encrypted PIN blocks of KSN …E00001, …E00002,
/// …E00003 (PIN 1234, PAN 4012345678909, ISO format 0), as transcribed in the openemv/dukpt
/// project, test/dukpt_tdes_test.c (also used by `crates/paycrypto/tests/dukpt_tdes.rs`).
const PUBLISHED_PIN_BLOCKS: [(&str, &str); 3] = [
    ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
    ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ("FFFF9876543210E00003", "18DC07B94797B466"),
];
/// A zone PIN key for the benchmark (any double-length TDES key would do).
const ZPK: &str = "89ABCDEF01234567FEDCBA9876543210";
/// The first clear component of each imported key; the second is key XOR this.
const COMPONENT_1: &str = "1C587F1C13924FEF1C587F1C13924FEF";
/// The tenant of the benchmark's keys.
const TENANT: &str = "bench";
/// Reply timeout of every request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Every this many replies, the translated block is also deciphered and decoded.
const DECODE_EVERY: usize = 256;
/// A fixed checkpoint signing seed (the benchmark's store is thrown away).
const SIGNING_SEED: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Sizes of the hsm benchmark.
#[derive(Clone, Debug)]
pub struct HsmBenchConfig {
    /// Requests in flight (closed loop: each of this many workers sends the next request
    /// when its reply arrived).
    pub concurrency: usize,
    /// Measured time per run.
    pub duration: Duration,
    /// Unmeasured time before each run (connections, caches, allocator).
    pub warmup: Duration,
    /// Repetitions (hsm and echo alternate); the medians are over these.
    pub repetitions: usize,
    /// Simulated PIN entry devices (distinct initial KSNs).
    pub devices: usize,
    /// Transactions (KSNs) per device.
    pub transactions: usize,
    /// Also time the parts of the hot path one by one (single caller, no NATS).
    pub breakdown: bool,
}

impl HsmBenchConfig {
    /// 64 in flight, 10 s after a 2 s warm-up, 3 repetitions, 32 devices × 128 KSNs, with the
    /// breakdown.
    pub fn full() -> Self {
        Self {
            concurrency: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            repetitions: 3,
            devices: 32,
            transactions: 128,
            breakdown: true,
        }
    }

    /// 64 in flight, 2 s after a 0.5 s warm-up, once, without the breakdown.
    pub fn quick() -> Self {
        Self {
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            repetitions: 1,
            breakdown: false,
            ..Self::full()
        }
    }

    /// 4 in flight, 1 s after a 0.2 s warm-up, once, 4 devices × 16 KSNs: the smoke test.
    pub fn smoke() -> Self {
        Self {
            concurrency: 4,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(200),
            repetitions: 1,
            devices: 4,
            transactions: 16,
            breakdown: false,
        }
    }
}

/// One closed-loop run.
#[derive(Clone, Debug)]
pub struct LoadRun {
    /// Replies received and checked within the measured window.
    pub completed: usize,
    /// Failed requests (errors, timeouts, wrong replies), warm-up included.
    pub failures: usize,
    /// The first failure, if any (never key material, PINs or PANs).
    pub first_failure: Option<String>,
    /// Replies also deciphered and decoded to the PIN (hsm only).
    pub decoded: usize,
    /// Requests per second within the measured window.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Largest latency, µs.
    pub max_us: f64,
    /// CPU time of this process (client + hsm-proxy or echo responder) per request, µs.
    pub cpu_us_per_request: f64,
    /// CPU time of the local `nats-server` process per request, µs (NaN if not found).
    pub nats_cpu_us_per_request: f64,
}

/// Single-caller costs of the parts of the hot path, µs per request (medians of 5 passes).
#[derive(Clone, Debug)]
pub struct Breakdown {
    /// Encode + decode of the request and of the response (client and server side).
    pub protobuf_us: f64,
    /// `Registry::resolve` of the two keys.
    pub registry_us: f64,
    /// `Pool::run` around a no-op attempt (ranking, outstanding count, timeout, metrics).
    pub pool_us: f64,
    /// TDES DUKPT PIN key from the BDK (IPEK + transaction key + PIN variant), paycrypto.
    pub dukpt_us: f64,
    /// `paycrypto::pin::translate_pin_block` ISO 0 → ISO 0 with both keys known.
    pub translate_us: f64,
    /// `Hsm::translate_pin_data` in process (everything but the transport).
    pub engine_us: f64,
    /// `Hsm::translate_pin_data` in process with `concurrency` callers: requests/s.
    pub engine_rate: f64,
    /// NATS echo round trip, one request in flight, µs (median).
    pub echo_rtt_us: f64,
    /// hsm-proxy `TranslatePinData` over NATS, one request in flight, µs (median).
    pub hsm_rtt_us: f64,
    /// Same-conditions runs (`concurrency` in flight, 3 s each, back to back): the NATS echo,
    /// a minimal translator (decode, DUKPT, translate, encode in the responder: the crypto
    /// without the hsm-proxy's engine) and the hsm-proxy.
    pub side_by_side: [(&'static str, LoadRun); 3],
}

/// Everything the hsm benchmark measured.
#[derive(Clone, Debug)]
pub struct HsmResult {
    /// The configuration.
    pub config: HsmBenchConfig,
    /// Bytes of an encoded request (the echo's payload).
    pub payload_len: usize,
    /// Distinct KSNs in the request mix.
    pub ksns: usize,
    /// `TranslatePinData` runs.
    pub hsm: Vec<LoadRun>,
    /// Echo runs.
    pub echo: Vec<LoadRun>,
    /// The hot path part by part, if asked for.
    pub breakdown: Option<Breakdown>,
}

impl HsmResult {
    /// Median of the per-repetition ratios hsm rate / echo rate.
    pub fn ratio(&self) -> f64 {
        let ratios: Vec<f64> = self
            .hsm
            .iter()
            .zip(&self.echo)
            .map(|(hsm, echo)| hsm.rate / echo.rate)
            .collect();
        median(&ratios)
    }

    /// Failures over every run.
    pub fn failures(&self) -> usize {
        self.hsm
            .iter()
            .chain(&self.echo)
            .map(|run| run.failures)
            .sum()
    }
}

/// Prefixes every request-reply subject with a namespace (see the module documentation).
#[derive(Debug)]
pub struct Namespaced {
    inner: Arc<dyn RequestReply>,
    prefix: String,
}

impl Namespaced {
    /// `inner` with every subject prefixed by `namespace.`.
    pub fn new(inner: Arc<dyn RequestReply>, namespace: &str) -> Self {
        Self {
            inner,
            prefix: format!("{namespace}."),
        }
    }
}

#[async_trait::async_trait]
impl RequestReply for Namespaced {
    async fn request(
        &self,
        subject: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        self.inner
            .request(&format!("{}{subject}", self.prefix), request, timeout)
            .await
    }

    async fn serve(
        &self,
        subject: &str,
        queue_group: &str,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<ServeHandle, BusError> {
        self.inner
            .serve(&format!("{}{subject}", self.prefix), queue_group, handler)
            .await
    }
}

/// Replies with the request's payload.
pub(crate) struct Echo;

#[async_trait::async_trait]
impl RequestHandler for Echo {
    async fn handle(&self, request: Message) -> Result<Message, ServiceError> {
        Ok(Message::new(request.payload))
    }
}

/// The subject of the echo responder (under the run's namespace).
const ECHO_SUBJECT: &str = "mpos.bench.v1.Echo";
/// The subject of the minimal translator (under the run's namespace).
const MINIMAL_SUBJECT: &str = "mpos.bench.v1.MinimalTranslate";

/// The least a NATS PIN translator must do: decode the request, derive the DUKPT PIN key from
/// the BDK, translate ISO 0 → ISO 0 to the ZPK, encode the reply. No registry, pool, key
/// store or checks of key usage: a lower bound for the hsm-proxy on the same transport.
struct MinimalTranslator {
    bdk: SecretBytes,
    zpk: SecretBytes,
    zpk_kcv: String,
    pan: Pan,
}

#[async_trait::async_trait]
impl RequestHandler for MinimalTranslator {
    async fn handle(&self, request: Message) -> Result<Message, ServiceError> {
        let bad = |error: &dyn std::fmt::Display| ServiceError::bad_request(error.to_string());
        let request = pb::TranslatePinDataRequest::decode(request.payload.as_ref())
            .map_err(|error| bad(&error))?;
        let ksn = request
            .incoming
            .as_ref()
            .and_then(|incoming| incoming.dukpt.as_ref())
            .map(|dukpt| dukpt.ksn.as_str())
            .unwrap_or_default();
        let ksn = Ksn::from_hex(ksn).map_err(|error| bad(&error))?;
        let key = dukpt::host_working_key(
            &self.bdk,
            &ksn,
            KeyUsage::PinEncryption,
            DataKeyDerivation::OneWay,
        )
        .map_err(|error| bad(&error))?;
        let block = hex::decode(&request.pin_block).map_err(|error| bad(&error))?;
        let translated = paycrypto::pin::translate_pin_block(
            &PinBlockContext {
                format: PinBlockFormat::Iso0,
                key: &key,
                pan: Some(&self.pan),
            },
            &block,
            &PinBlockContext {
                format: PinBlockFormat::Iso0,
                key: &self.zpk,
                pan: Some(&self.pan),
            },
            &mut rand::rngs::OsRng,
        )
        .map_err(|error| bad(&error))?;
        Ok(Message::new(
            pb::TranslatePinDataResponse {
                pin_block: hex::encode_upper(translated),
                kcv: self.zpk_kcv.clone(),
            }
            .encode_to_vec(),
        ))
    }
}

/// The request mix and what every reply must be.
struct Workload {
    requests: Vec<pb::TranslatePinDataRequest>,
    payloads: Vec<prost::bytes::Bytes>,
    expected_block: String,
    zpk_kcv: String,
}

/// A running hsm-proxy, the client and echo connections, and what to clean up.
struct Fixture {
    cancel: CancellationToken,
    running: Option<hsm_proxy::service::Running>,
    store: mpos_es::EventStore,
    client: hsm_proxy::rpc::HsmClient,
    client_requests: Arc<dyn RequestReply>,
    echo: Option<ServeHandle>,
    echo_requests: Arc<dyn RequestReply>,
    bdk_id: String,
    zpk_id: String,
    dir: Option<tempfile::TempDir>,
}

/// Runs the hsm benchmark.
pub async fn run(config: &HsmBenchConfig, urls: &Urls) -> anyhow::Result<HsmResult> {
    ensure!(config.concurrency > 0, "concurrency must be at least 1");
    ensure!(
        config.devices > 0 && config.transactions > 0,
        "at least one device and one transaction"
    );
    let namespace = crate::unique("bench");
    let mut fixture = Fixture::start(urls, &namespace).await?;
    let outcome = measure(config, &fixture).await;
    fixture.stop().await;
    cleanup(&urls.nats, &namespace).await;
    outcome
}

async fn measure(config: &HsmBenchConfig, fixture: &Fixture) -> anyhow::Result<HsmResult> {
    let workload = Arc::new(workload(config, fixture)?);
    let payload_len = workload
        .payloads
        .first()
        .map_or(0, prost::bytes::Bytes::len);
    let mut result = HsmResult {
        config: config.clone(),
        payload_len,
        ksns: workload.requests.len(),
        hsm: Vec::new(),
        echo: Vec::new(),
        breakdown: None,
    };
    // One request each way first: a broken set-up fails here, not as a run of failures.
    let first = fixture
        .client
        .translate_pin_data(&workload.requests[0])
        .await
        .context("first TranslatePinData")?;
    ensure!(
        first.pin_block == workload.expected_block,
        "the first translated PIN block is not the PIN block of PIN {PIN} under the ZPK"
    );
    fixture
        .client_requests
        .request(
            ECHO_SUBJECT,
            Message::new(workload.payloads[0].clone()),
            REQUEST_TIMEOUT,
        )
        .await
        .context("first echo")?;

    for repetition in 0..config.repetitions {
        // Alternate which side runs first.
        for side in 0..2 {
            if (side + repetition) % 2 == 0 {
                eprintln!(
                    "hsm: TranslatePinData, {} in flight, repetition {} …",
                    config.concurrency,
                    repetition + 1
                );
                result.hsm.push(hsm_run(config, fixture, &workload).await);
            } else {
                eprintln!(
                    "hsm: NATS echo floor, {} in flight, repetition {} …",
                    config.concurrency,
                    repetition + 1
                );
                result.echo.push(echo_run(config, fixture, &workload).await);
            }
        }
    }
    if config.breakdown {
        eprintln!("hsm: breakdown of the hot path …");
        result.breakdown = Some(breakdown(config, fixture, &workload).await?);
    }
    Ok(result)
}

impl Fixture {
    async fn start(urls: &Urls, namespace: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let database_url = format!("sqlite://{}", dir.path().join("hsm-proxy.db").display());
        let bus_url = crate::with_param(&urls.nats, "namespace", namespace);
        let vars = mpos_config::Vars::from_pairs([
            ("MPOS_DATABASE_URL", database_url.clone()),
            ("MPOS_BUS_URL", bus_url.clone()),
            ("MPOS_CHAIN_SIGNING_KEY", SIGNING_SEED.to_owned()),
            ("MPOS_POLL_INTERVAL_MS", "200".to_owned()),
        ]);
        let config = mpos_service::CommonConfig::from_vars(
            &vars,
            hsm_proxy::SERVICE,
            "127.0.0.1:0",
            "127.0.0.1:0",
        )
        .context("hsm-proxy configuration")?;
        let store = mpos_es::EventStore::connect(&database_url, hsm_proxy::SERVICE)
            .await
            .context("opening the SQLite store")?;
        let namespaced = |bus: &mpos_bus::Bus| -> anyhow::Result<Arc<dyn RequestReply>> {
            let requests = bus
                .requests
                .clone()
                .context("the bus has no request-reply")?;
            Ok(Arc::new(Namespaced::new(requests, namespace)))
        };
        let connect = |what: &'static str| {
            let url = bus_url.clone();
            async move {
                mpos_bus::connect(&url)
                    .await
                    .with_context(|| format!("{what}: connecting to {url} (is NATS running?)"))
            }
        };
        let server_bus = connect("hsm-proxy").await?;
        let server_bus = mpos_bus::Bus {
            requests: Some(namespaced(&server_bus)?),
            ..server_bus
        };
        let soft_dir = dir.path().join("soft");
        let hsm_config = hsm_proxy::service::HsmConfig {
            pkcs11_pin: None,
            backends: vec![format!(
                "soft://{}?id=soft-a&site=local",
                soft_dir.display()
            )],
            soft_lmk: Some(SecretBytes::new(
                uuid::Uuid::new_v4()
                    .as_bytes()
                    .iter()
                    .chain(uuid::Uuid::new_v4().as_bytes())
                    .copied()
                    .collect(),
            )),
            pool: hsm_proxy::pool::PoolConfig::default(),
            sealed_card_data: hsm_proxy::sealing::SealedCardData::Allow,
        };
        let cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("admin API listener")?;
        let token = SecretString::from(crate::unique("operator-token-for-the-benchmark"));
        let running = hsm_proxy::service::start(
            &config,
            &hsm_config,
            store.clone(),
            &server_bus,
            &mpos_service::Infrastructure::default(),
            &token,
            listener,
            &cancel,
        )
        .await
        .context("starting the hsm-proxy")?;

        let client_bus = connect("client").await?;
        let client_requests = namespaced(&client_bus)?;
        let client = hsm_proxy::rpc::HsmClient::new(
            client_requests.clone(),
            "service:mpos-bench",
            REQUEST_TIMEOUT,
        );
        let echo_bus = connect("echo responder").await?;
        let echo_requests = namespaced(&echo_bus)?;
        let echo = echo_requests
            .serve(ECHO_SUBJECT, "mpos-bench-echo", Arc::new(Echo))
            .await
            .context("serving the echo")?;

        let mut fixture = Self {
            cancel,
            running: Some(running),
            store,
            client,
            client_requests,
            echo: Some(echo),
            echo_requests,
            bdk_id: String::new(),
            zpk_id: String::new(),
            dir: Some(dir),
        };
        let imported = async {
            fixture.bdk_id = fixture
                .import("B0", BDK)
                .await
                .context("importing the BDK")?;
            fixture.zpk_id = fixture
                .import("P0", ZPK)
                .await
                .context("importing the ZPK")?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = imported {
            fixture.stop().await;
            return Err(error);
        }
        Ok(fixture)
    }

    /// Imports `key` (hex) with key usage `usage` as two clear components through the NATS
    /// operation `ImportKey`; returns the key id.
    async fn import(&self, usage: &str, key: &str) -> anyhow::Result<String> {
        let key = SecretBytes::new(hex::decode(key)?);
        let first = SecretBytes::new(hex::decode(COMPONENT_1)?);
        let mut second = key.expose().to_vec();
        paycrypto::primitives::xor_in_place(&mut second, first.expose());
        let second = SecretBytes::new(second);
        let component = |value: &SecretBytes| -> anyhow::Result<pb::KeyComponent> {
            Ok(pb::KeyComponent {
                value: hex::encode_upper(value.expose()),
                kcv: paycrypto::kcv::tdes_kcv(value)?.to_hex(),
            })
        };
        let request = pb::ImportKeyRequest {
            tenant_id: TENANT.to_owned(),
            alias: String::new(),
            material: Some(pb::import_key_request::Material::Components(
                pb::ComponentsImport {
                    attributes: Some(pb::KeyAttributes {
                        algorithm: pb::KeyAlgorithm::Tdes2key.into(),
                        key_usage: usage.to_owned(),
                        mode_of_use: String::new(),
                        exportability: String::new(),
                    }),
                    components: vec![component(&first)?, component(&second)?],
                    kcv: paycrypto::kcv::tdes_kcv(&key)?.to_hex(),
                },
            )),
        };
        let created: pb::Key = self.client.call("ImportKey", &request).await?;
        Ok(created.key_id)
    }

    async fn stop(&mut self) {
        if let Some(echo) = self.echo.take() {
            echo.stop().await;
        }
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.join().await;
        }
        self.store.close().await;
        if let Some(dir) = self.dir.take()
            && let Err(error) = dir.close()
        {
            eprintln!("hsm: cannot delete the temp dir: {error}");
        }
    }
}

/// Deletes the run's JetStream stream (the key registry's events went there).
async fn cleanup(base: &str, namespace: &str) {
    let hosts = crate::hosts_of(base);
    let addresses: Vec<String> = hosts
        .split(',')
        .map(|host| format!("nats://{host}"))
        .collect();
    let stream = mpos_bus::stream_name(Some(namespace), hsm_proxy::SERVICE);
    match async_nats::connect(addresses).await {
        Ok(client) => {
            let jetstream = async_nats::jetstream::new(client);
            if let Err(error) = jetstream.delete_stream(&stream).await {
                eprintln!("hsm: cannot delete NATS stream {stream}: {error}");
            }
        }
        Err(error) => eprintln!("hsm: cannot delete NATS stream {stream}: {error}"),
    }
}

/// The PIN blocks of `devices × transactions` KSNs, enciphered on the device side, and the
/// reply every request must get.
fn workload(config: &HsmBenchConfig, fixture: &Fixture) -> anyhow::Result<Workload> {
    let bdk = SecretBytes::new(hex::decode(BDK)?);
    let zpk = SecretBytes::new(hex::decode(ZPK)?);
    let pin = Pin::new(PIN)?;
    let pan = Pan::new(PAN)?;
    let blocks = device_pin_blocks(&bdk, &pin, &pan, config.devices, config.transactions)?;
    for (ksn, published) in PUBLISHED_PIN_BLOCKS {
        let generated = blocks
            .iter()
            .find(|(generated_ksn, _)| generated_ksn == ksn)
            .map(|(_, block)| block.as_str());
        if generated.is_some_and(|block| block != published) {
            bail!("the device simulation does not reproduce X9.24-1 A.4.2 for KSN {ksn}");
        }
    }
    let requests: Vec<pb::TranslatePinDataRequest> = blocks
        .into_iter()
        .map(|(ksn, pin_block)| pb::TranslatePinDataRequest {
            tenant_id: TENANT.to_owned(),
            incoming: Some(pb::PinBlockKey {
                key: fixture.bdk_id.clone(),
                format: pb::PinBlockFormat::Iso0.into(),
                dukpt: Some(pb::Dukpt {
                    ksn,
                    ..pb::Dukpt::default()
                }),
            }),
            outgoing: Some(pb::PinBlockKey {
                key: fixture.zpk_id.clone(),
                format: pb::PinBlockFormat::Iso0.into(),
                dukpt: None,
            }),
            pin_block,
            pan: PAN.to_owned(),
            ..Default::default()
        })
        .collect();
    let payloads = requests
        .iter()
        .map(|request| prost::bytes::Bytes::from(request.encode_to_vec()))
        .collect();
    // ISO format 0 has no random fill: every correct translation is this block (the random
    // source is never drawn from).
    let expected = paycrypto::pin::encrypt_pin_block(
        PinBlockFormat::Iso0,
        &zpk,
        &pin,
        Some(&pan),
        &mut rand::rngs::OsRng,
    )?;
    Ok(Workload {
        requests,
        payloads,
        expected_block: hex::encode_upper(expected),
        zpk_kcv: paycrypto::kcv::tdes_kcv(&zpk)?.to_hex(),
    })
}

/// `(KSN, hex enciphered PIN block)` of `transactions` transactions on each of `devices`
/// simulated PIN pads. Device 0 is the X9.24-1 A.4 example device (initial KSN
/// `FFFF9876543210E00000`); device `i` changes the device id's last byte to `0x10 + i`.
pub fn device_pin_blocks(
    bdk: &SecretBytes,
    pin: &Pin,
    pan: &Pan,
    devices: usize,
    transactions: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let initial = Ksn::from_hex(INITIAL_KSN)?;
    let mut blocks = Vec::with_capacity(devices * transactions);
    for device in 0..devices {
        let mut bytes = *initial.as_bytes();
        bytes[6] = bytes[6].wrapping_add(u8::try_from(device % 256)?);
        let ksn = Ksn::from_bytes(&bytes)?;
        let ipek = dukpt::derive_ipek(bdk, &ksn)?;
        let mut pad = Device::load_initial_key(&ipek, &ksn)?;
        for _ in 0..transactions {
            let transaction = pad.next_transaction()?;
            let key =
                transaction.working_key(KeyUsage::PinEncryption, DataKeyDerivation::OneWay)?;
            let block = paycrypto::pin::encrypt_pin_block(
                PinBlockFormat::Iso0,
                &key,
                pin,
                Some(pan),
                &mut rand::rngs::OsRng,
            )?;
            blocks.push((transaction.ksn().to_hex(), hex::encode_upper(block)));
        }
    }
    Ok(blocks)
}

/// Collects latencies and failures of one closed-loop run.
#[derive(Default)]
struct Tally {
    latencies: Vec<u64>,
    completed: usize,
    failures: usize,
    first_failure: Option<String>,
    decoded: usize,
}

/// CPU time (user + system) of process `pid` ("self" for this one), from /proc.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every mainstream Linux configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The pid of a local `nats-server`, if one runs on this machine.
fn nats_server_pid() -> Option<String> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "nats-server").then_some(name)
        })
}

/// Runs `concurrency` workers in a closed loop: each calls `call(index)` and, once it
/// returned, the next index; `call` returns `Ok(decoded)` or the failure.
async fn closed_loop<F, Fut>(config: &HsmBenchConfig, call: F) -> LoadRun
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, String>> + Send + 'static,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let measure_from = started + config.warmup;
    let measure_until = measure_from + config.duration;
    let nats_pid = nats_server_pid();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency {
        let (call, next, tally) = (call.clone(), next.clone(), tally.clone());
        workers.spawn(async move {
            let mut local = Tally::default();
            loop {
                let sent = Instant::now();
                if sent >= measure_until {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                let outcome = call(index).await;
                let received = Instant::now();
                match outcome {
                    Ok(decoded) => {
                        if sent >= measure_from && received < measure_until {
                            local.completed += 1;
                            local.decoded += usize::from(decoded);
                            let nanos = received.duration_since(sent).as_nanos();
                            local
                                .latencies
                                .push(u64::try_from(nanos).unwrap_or(u64::MAX));
                        }
                    }
                    Err(failure) => {
                        local.failures += 1;
                        if local.first_failure.is_none() {
                            local.first_failure = Some(failure);
                        }
                    }
                }
            }
            if let Ok(mut total) = tally.lock() {
                total.completed += local.completed;
                total.decoded += local.decoded;
                total.failures += local.failures;
                total.latencies.append(&mut local.latencies);
                if total.first_failure.is_none() {
                    total.first_failure = local.first_failure;
                }
            }
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_self = cpu_time("self");
    let cpu_nats = nats_pid.as_deref().and_then(cpu_time);
    tokio::time::sleep_until(measure_until.into()).await;
    let cpu_self_end = cpu_time("self");
    let cpu_nats_end = nats_pid.as_deref().and_then(cpu_time);
    while workers.join_next().await.is_some() {}

    let mut tally = tally
        .lock()
        .map(|mut tally| std::mem::take(&mut *tally))
        .unwrap_or_default();
    tally.latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let us = |nanos: u64| nanos as f64 / 1_000.0;
    #[allow(clippy::cast_precision_loss)]
    let per_request = |start: Option<Duration>, end: Option<Duration>| match (start, end) {
        (Some(start), Some(end)) if tally.completed > 0 => {
            end.saturating_sub(start).as_secs_f64() * 1e6 / tally.completed as f64
        }
        _ => f64::NAN,
    };
    LoadRun {
        completed: tally.completed,
        failures: tally.failures,
        first_failure: tally.first_failure,
        decoded: tally.decoded,
        rate: rate(tally.completed, config.duration),
        p50_us: us(percentile(&tally.latencies, 50.0)),
        p99_us: us(percentile(&tally.latencies, 99.0)),
        p999_us: us(percentile(&tally.latencies, 99.9)),
        max_us: us(tally.latencies.last().copied().unwrap_or(0)),
        cpu_us_per_request: per_request(cpu_self, cpu_self_end),
        nats_cpu_us_per_request: per_request(cpu_nats, cpu_nats_end),
    }
}

/// Checks one `TranslatePinData` reply; `Ok(true)` if it was also deciphered and decoded.
fn check_reply(
    workload: &Workload,
    index: usize,
    reply: &pb::TranslatePinDataResponse,
) -> Result<bool, String> {
    if reply.kcv != workload.zpk_kcv {
        return Err("reply names another key (KCV differs from the ZPK's)".to_owned());
    }
    if reply.pin_block != workload.expected_block {
        return Err(
            "translated PIN block is not the PIN block of the expected PIN under the ZPK".into(),
        );
    }
    if !index.is_multiple_of(DECODE_EVERY) {
        return Ok(false);
    }
    let decoded = (|| {
        let zpk = SecretBytes::new(hex::decode(ZPK).ok()?);
        let block = hex::decode(&reply.pin_block).ok()?;
        let pan = Pan::new(PAN).ok()?;
        let pin = paycrypto::pin::decrypt_pin_block(PinBlockFormat::Iso0, &zpk, &block, Some(&pan))
            .ok()?;
        Some(pin.expose().as_str() == PIN)
    })();
    match decoded {
        Some(true) => Ok(true),
        _ => Err("translated PIN block does not decode to the expected PIN".to_owned()),
    }
}

async fn hsm_run(config: &HsmBenchConfig, fixture: &Fixture, workload: &Arc<Workload>) -> LoadRun {
    let (client, workload) = (fixture.client.clone(), workload.clone());
    closed_loop(config, move |index| {
        let (client, workload) = (client.clone(), workload.clone());
        async move {
            let request = &workload.requests[index % workload.requests.len()];
            match client.translate_pin_data(request).await {
                Ok(reply) => check_reply(&workload, index, &reply),
                Err(error) => Err(format!("TranslatePinData: {error}")),
            }
        }
    })
    .await
}

async fn echo_run(config: &HsmBenchConfig, fixture: &Fixture, workload: &Arc<Workload>) -> LoadRun {
    let (requests, workload) = (fixture.client_requests.clone(), workload.clone());
    closed_loop(config, move |index| {
        let (requests, workload) = (requests.clone(), workload.clone());
        async move {
            let payload = workload.payloads[index % workload.payloads.len()].clone();
            let message = Message::new(payload.clone())
                .with_header(hsm_proxy::rpc::ACTOR_HEADER, "service:mpos-bench");
            match requests
                .request(ECHO_SUBJECT, message, REQUEST_TIMEOUT)
                .await
            {
                Ok(reply) if reply.payload == payload => Ok(false),
                Ok(_) => Err("echo reply differs from the request".to_owned()),
                Err(error) => Err(format!("echo: {error}")),
            }
        }
    })
    .await
}

/// Median over 5 passes of the mean µs per call of `body` over `count` sequential calls.
async fn time_per_call<F, Fut>(count: usize, mut body: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut passes = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = Instant::now();
        for index in 0..count {
            body(index).await?;
        }
        #[allow(clippy::cast_precision_loss)]
        passes.push(start.elapsed().as_secs_f64() * 1e6 / count as f64);
    }
    Ok(median(&passes))
}

async fn breakdown(
    config: &HsmBenchConfig,
    fixture: &Fixture,
    workload: &Arc<Workload>,
) -> anyhow::Result<Breakdown> {
    let running = fixture
        .running
        .as_ref()
        .context("the hsm-proxy is not running")?;
    let hsm = running.hsm.clone();
    let requests = &workload.requests;
    let n = requests.len();
    let count = n.clamp(1, 2_000);

    let protobuf_us = time_per_call(count, |index| {
        let request = &requests[index % n];
        async move {
            let bytes = request.encode_to_vec();
            let decoded = pb::TranslatePinDataRequest::decode(bytes.as_slice())?;
            let response = pb::TranslatePinDataResponse {
                pin_block: decoded.pin_block,
                kcv: workload.zpk_kcv.clone(),
            };
            let bytes = response.encode_to_vec();
            pb::TranslatePinDataResponse::decode(bytes.as_slice())?;
            Ok(())
        }
    })
    .await?;

    let registry = hsm.registry().clone();
    let registry_us = time_per_call(count, |_| {
        let registry = registry.clone();
        async move {
            registry.resolve(TENANT, &fixture.bdk_id)?;
            registry.resolve(TENANT, &fixture.zpk_id)?;
            Ok(())
        }
    })
    .await?;

    let pool = hsm.pool().clone();
    let pool_us = time_per_call(count, |_| {
        let pool = pool.clone();
        async move {
            pool.run(
                "BenchNoop",
                &|_: &hsm_proxy::pool::Member| true,
                |_member| async { Ok::<(), hsm_proxy::error::HsmError>(()) },
            )
            .await?;
            Ok(())
        }
    })
    .await?;

    let bdk = SecretBytes::new(hex::decode(BDK)?);
    let zpk = SecretBytes::new(hex::decode(ZPK)?);
    let pan = Pan::new(PAN)?;
    let ksns: Vec<Ksn> = requests
        .iter()
        .map(|request| {
            let ksn = request
                .incoming
                .as_ref()
                .and_then(|incoming| incoming.dukpt.as_ref())
                .map(|dukpt| dukpt.ksn.as_str())
                .unwrap_or_default();
            Ksn::from_hex(ksn)
        })
        .collect::<Result<_, _>>()?;
    let dukpt_us = time_per_call(count, |index| {
        let result = dukpt::host_working_key(
            &bdk,
            &ksns[index % n],
            KeyUsage::PinEncryption,
            DataKeyDerivation::OneWay,
        );
        async move {
            result?;
            Ok(())
        }
    })
    .await?;
    let pin_keys: Vec<SecretBytes> = ksns
        .iter()
        .map(|ksn| {
            dukpt::host_working_key(
                &bdk,
                ksn,
                KeyUsage::PinEncryption,
                DataKeyDerivation::OneWay,
            )
        })
        .collect::<Result<_, _>>()?;
    let blocks: Vec<Vec<u8>> = requests
        .iter()
        .map(|request| hex::decode(&request.pin_block))
        .collect::<Result<_, _>>()?;
    let translate_us = time_per_call(count, |index| {
        let result = paycrypto::pin::translate_pin_block(
            &PinBlockContext {
                format: PinBlockFormat::Iso0,
                key: &pin_keys[index % n],
                pan: Some(&pan),
            },
            &blocks[index % n],
            &PinBlockContext {
                format: PinBlockFormat::Iso0,
                key: &zpk,
                pan: Some(&pan),
            },
            &mut rand::rngs::OsRng,
        );
        async move {
            result?;
            Ok(())
        }
    })
    .await?;

    let engine_us = time_per_call(count, |index| {
        let (hsm, request) = (hsm.clone(), requests[index % n].clone());
        async move {
            hsm.translate_pin_data(request).await?;
            Ok(())
        }
    })
    .await?;

    let short = HsmBenchConfig {
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        ..config.clone()
    };
    let engine_run = {
        let (hsm, workload) = (hsm.clone(), workload.clone());
        closed_loop(&short, move |index| {
            let (hsm, workload) = (hsm.clone(), workload.clone());
            async move {
                let request = workload.requests[index % workload.requests.len()].clone();
                match hsm.translate_pin_data(request).await {
                    Ok(reply) => check_reply(&workload, index, &reply),
                    Err(error) => Err(format!("TranslatePinData in process: {error}")),
                }
            }
        })
        .await
    };
    ensure!(
        engine_run.failures == 0,
        "in-process TranslatePinData failed: {}",
        engine_run.first_failure.unwrap_or_default()
    );
    let single = HsmBenchConfig {
        concurrency: 1,
        ..short
    };
    let echo_rtt = echo_run(&single, fixture, workload).await;
    let hsm_rtt = hsm_run(&single, fixture, workload).await;
    ensure!(
        echo_rtt.failures == 0 && hsm_rtt.failures == 0,
        "single-request runs failed: {}",
        echo_rtt
            .first_failure
            .or(hsm_rtt.first_failure)
            .unwrap_or_default()
    );

    let minimal = fixture
        .echo_requests
        .serve(
            MINIMAL_SUBJECT,
            "mpos-bench-minimal",
            Arc::new(MinimalTranslator {
                bdk: bdk.clone(),
                zpk: zpk.clone(),
                zpk_kcv: workload.zpk_kcv.clone(),
                pan: pan.clone(),
            }),
        )
        .await?;
    let echo_side = echo_run(&short, fixture, workload).await;
    let minimal_side = minimal_run(&short, fixture, workload).await;
    let hsm_side = hsm_run(&short, fixture, workload).await;
    minimal.stop().await;
    for run in [&echo_side, &minimal_side, &hsm_side] {
        ensure!(
            run.failures == 0,
            "side-by-side run failed: {}",
            run.first_failure.clone().unwrap_or_default()
        );
    }
    Ok(Breakdown {
        protobuf_us,
        registry_us,
        pool_us,
        dukpt_us,
        translate_us,
        engine_us,
        engine_rate: engine_run.rate,
        echo_rtt_us: echo_rtt.p50_us,
        hsm_rtt_us: hsm_rtt.p50_us,
        side_by_side: [
            ("NATS echo", echo_side),
            ("minimal translator", minimal_side),
            ("hsm-proxy", hsm_side),
        ],
    })
}

async fn minimal_run(
    config: &HsmBenchConfig,
    fixture: &Fixture,
    workload: &Arc<Workload>,
) -> LoadRun {
    let (requests, workload) = (fixture.client_requests.clone(), workload.clone());
    closed_loop(config, move |index| {
        let (requests, workload) = (requests.clone(), workload.clone());
        async move {
            let request = &workload.requests[index % workload.requests.len()];
            let message = Message::new(request.encode_to_vec())
                .with_header(hsm_proxy::rpc::ACTOR_HEADER, "service:mpos-bench");
            let reply = requests
                .request(MINIMAL_SUBJECT, message, REQUEST_TIMEOUT)
                .await
                .map_err(|error| format!("minimal translator: {error}"))?;
            let reply = pb::TranslatePinDataResponse::decode(reply.payload.as_ref())
                .map_err(|error| format!("minimal translator reply: {error}"))?;
            check_reply(&workload, index, &reply)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The device simulation reproduces X9.24-1:2009 A.4.2: KSN FFFF9876543210E00001 →
    /// 1B9C1845EB993A7A, …E00002 → 10A01C8D02C69107, …E00003 → 18DC07B94797B466 (BDK
    /// 0123456789ABCDEFFEDCBA9876543210, PIN 1234, PAN 4012345678909, ISO format 0; as
    /// transcribed in openemv/dukpt test/dukpt_tdes_test.c).
    #[test]
    fn the_generated_pin_blocks_match_x9_24_1_a_4_2() {
        let bdk = SecretBytes::new(hex::decode(BDK).unwrap());
        let blocks =
            device_pin_blocks(&bdk, &Pin::new(PIN).unwrap(), &Pan::new(PAN).unwrap(), 2, 3)
                .unwrap();
        assert_eq!(blocks.len(), 6);
        for (generated, (ksn, block)) in blocks.iter().zip(PUBLISHED_PIN_BLOCKS) {
            assert_eq!(generated.0, ksn);
            assert_eq!(generated.1, block);
        }
        // The second device has its own KSNs.
        assert_eq!(blocks[3].0, "FFFF9876543211E00001");
    }
}
