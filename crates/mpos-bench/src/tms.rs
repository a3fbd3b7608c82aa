//! terminal-management parameter sets: recomputing and signing every terminal's effective set
//! after a tenant-level change, and device downloads over mTLS.
//!
//! Set-up: terminal-management starts in this process on a SQLite store in a temp dir and the
//! in-process bus, with the device API on mTLS (a self-signed server certificate the clients
//! trust). Over its admin API: a tenant, a manufacturer CA (rcgen), 10 merchants × 10 stores ×
//! 10 terminal groups, a complete tenant-level parameter set with 20 blocked BIN ranges and
//! 200 blocked card tokens, a merchant-level contactless limit and a store-level floor limit;
//! `devices` PEDs bound with their own device certificates and activated over mTLS. The bulk of
//! the terminals (SoftPOS kind, spread over the groups) are appended to the log directly in
//! batches of 1,000 events (bound + activated), the shape the aggregates write: only their
//! count matters to the figure, and binding 100,000 over HTTP would only time the set-up.
//!
//! Figure 1: after a tenant-level change appended to the log, the time to recompute and sign
//! every live terminal's effective set (`ParameterSets::issue_all` on every core, the code the
//! service runs after a change) over a model caught up from the log. Floor: Ed25519 signatures
//! of as many payloads of the same size on the same number of threads, without resolving.
//!
//! Figure 2: `GET /v1/devices/{id}/parameters` by the PEDs, each on its own keep-alive mTLS
//! connection, `concurrency` requests in flight for `duration`. Floor: the same clients and
//! connections asking the device API for the parameter-signing key (the same TLS, routing and
//! observation, a constant answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use ed25519_dalek::{Signer as _, SigningKey};
use mpos_config::Vars;
use mpos_es::{CommandMetadata, EventStore, NewEvent};
use mpos_proto::terminal_management as pb;
use mpos_service::{CommonConfig, Infrastructure};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use secrecy::SecretString;
use serde_json::json;
use terminal_management::model::Model;
use terminal_management::parameters::{ParameterSets, ParameterSigner};
use terminal_management::service::{DeviceTls, TmOptions};
use terminal_management::terminal::TerminalEvent;
use tokio_util::sync::CancellationToken;

use crate::report::{Report, Row, thousands};
use crate::stats::{median, min_max, percentile, rate};

/// Goal: every effective set recomputed and signed within this (100,000 terminals).
pub const RECOMPUTE_GOAL_S: f64 = 5.0;
/// Goal: device downloads per second.
pub const DOWNLOAD_GOAL: f64 = 5_000.0;

const TOKEN: &str = "bench-operator-token-0123456789abcdef";
const TENANT: &str = "bench";

/// Sizes and durations.
#[derive(Clone, Debug)]
pub struct TmsBenchConfig {
    /// Terminals in the tenant (PEDs included).
    pub terminals: usize,
    /// PEDs with certificates that download.
    pub devices: usize,
    /// Downloads in flight.
    pub concurrency: usize,
    /// Measured time per download run.
    pub duration: Duration,
    /// Repetitions of each figure.
    pub repetitions: usize,
}

impl TmsBenchConfig {
    /// The issue's sizes: 100,000 terminals.
    pub fn full() -> Self {
        Self {
            terminals: 100_000,
            devices: 64,
            concurrency: 64,
            duration: Duration::from_secs(10),
            repetitions: 3,
        }
    }

    /// A smoke run.
    pub fn quick() -> Self {
        Self {
            terminals: 5_000,
            devices: 16,
            concurrency: 16,
            duration: Duration::from_secs(2),
            repetitions: 1,
        }
    }
}

/// One download run.
#[derive(Clone, Debug)]
pub struct DownloadRun {
    /// Requests per second.
    pub rate: f64,
    /// Latency percentiles, µs.
    pub p50_us: f64,
    /// p99.
    pub p99_us: f64,
    /// Failed requests.
    pub failures: usize,
}

/// Everything measured.
#[derive(Clone, Debug)]
pub struct TmsResult {
    /// The configuration.
    pub config: TmsBenchConfig,
    /// Live terminals recomputed per repetition.
    pub recomputed: usize,
    /// Seconds per full recompute.
    pub recompute_s: Vec<f64>,
    /// Seconds per floor (raw signatures).
    pub floor_s: Vec<f64>,
    /// Bytes of one signed payload.
    pub payload_bytes: usize,
    /// Downloads.
    pub downloads: Vec<DownloadRun>,
    /// The floor runs.
    pub floor_downloads: Vec<DownloadRun>,
}

struct Service {
    admin: String,
    device: String,
    store: EventStore,
    client: reqwest::Client,
    server_cert: Vec<u8>,
    cancel: CancellationToken,
    running: terminal_management::service::Running,
    _dir: tempfile::TempDir,
}

async fn start() -> anyhow::Result<Service> {
    let dir = tempfile::tempdir()?;
    let vars = Vars::from_pairs(vec![
        (
            "MPOS_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("tm.db").display()),
        ),
        (
            "MPOS_BUS_URL",
            format!("memory://bench-{}", uuid::Uuid::new_v4().simple()),
        ),
        ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
        ("MPOS_POLL_INTERVAL_MS", "200".to_owned()),
    ]);
    let config = CommonConfig::from_vars(
        &vars,
        terminal_management::SERVICE,
        "127.0.0.1:0",
        "127.0.0.1:0",
    )?;
    let cancel = CancellationToken::new();
    let infrastructure = Infrastructure::default();
    let (store, bus) = infrastructure
        .connect(&config, &cancel)
        .await
        .context("connect")?;
    let (chain, key) = device_identity::self_signed(&["localhost"])?;
    let server_cert = chain[0].to_vec();
    let options = TmOptions {
        operator_token: SecretString::from(TOKEN.to_owned()),
        parameter_signing_key: SigningKey::from_bytes(&[7; 32]),
        device_addr: "127.0.0.1:0".parse()?,
        device_tls: Some(DeviceTls { chain, key }),
        more_device_routes: None,
        attestation_feed: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = terminal_management::service::start(
        &config,
        store.clone(),
        &bus,
        &infrastructure,
        &options,
        listener,
        &cancel,
    )
    .await?;
    Ok(Service {
        admin: format!("http://{}", running.http_addr),
        device: format!("https://localhost:{}", running.device_addr.port()),
        store,
        client: reqwest::Client::new(),
        server_cert,
        cancel,
        running,
        _dir: dir,
    })
}

impl Service {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .request(method.clone(), format!("{}{path}", self.admin))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        ensure!(status.is_success(), "{method} {path}: {status} {body}");
        Ok(body)
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.call(reqwest::Method::POST, path, body).await
    }
}

struct Vendor {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Vendor {
    fn new() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Bench Vendor Device CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2045, 1, 1);
        let certificate = params.self_signed(&key)?;
        Ok(Self {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A device certificate and key, PEM.
    fn device(&self, serial: u32) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("PED-{serial:08X}"));
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial.to_be_bytes()));
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2045, 1, 1);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok((certificate.pem(), key.serialize_pem()))
    }
}

fn tenant_parameters(mcc: &str) -> serde_json::Value {
    let ranges: Vec<serde_json::Value> = (0..20)
        .map(
            |i| json!({"low": format!("4{:05}", i * 100), "high": format!("4{:05}", i * 100 + 99)}),
        )
        .collect();
    use base64::Engine as _;
    let tokens: Vec<String> = (0..200_u32)
        .map(|i| {
            let mut token = [0_u8; 32];
            token[..4].copy_from_slice(&i.to_be_bytes());
            token[31] = 0x5A;
            base64::engine::general_purpose::STANDARD.encode(token)
        })
        .collect();
    json!({
        "floorLimits": [{"currency": "EUR", "amount": "5000"}, {"currency": "USD", "amount": "5000"}],
        "terminalActionCodes": {"denial": "0010000000", "online": "FC50BCF800", "defaultCode": "FC50BCA000"},
        "randomSelection": {"threshold": "1000", "targetPercent": 20, "maxTargetPercent": 50},
        "cvmRequiredLimit": "5000",
        "contactlessTransactionLimit": "50000",
        "contactlessFloorLimit": "5000",
        "offlineLimits": {"perTransactionAmount": "2000", "maxCount": 10, "maxTotalAmount": "10000"},
        "merchantCategoryCode": mcc,
        "transactionCurrency": "EUR",
        "terminalCountryCode": "276",
        "blockedBinRanges": ranges,
        "blockedCardTokens": tokens,
    })
}

fn event(
    aggregate_id: String,
    sequence: u64,
    event: &TerminalEvent,
    metadata: &str,
) -> anyhow::Result<NewEvent> {
    use cqrs_es::DomainEvent as _;
    Ok(NewEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: TENANT.to_owned(),
        aggregate_type: terminal_management::terminal::AGGREGATE_TYPE.to_owned(),
        aggregate_id,
        sequence,
        event_type: event.event_type(),
        event_version: event.event_version(),
        payload: serde_json::to_string(&serde_json::to_value(event)?)?,
        metadata: metadata.to_owned(),
        occurred_at_us: mpos_es::now_micros(),
    })
}

/// Appends `count` live SoftPOS terminals spread over the groups.
async fn append_terminals(
    store: &EventStore,
    count: usize,
    groups: &[String],
) -> anyhow::Result<()> {
    let metadata = metadata()?;
    let mut batch = Vec::with_capacity(1_000);
    for index in 0..count {
        let terminal_id = format!("sp-{index:06}");
        let aggregate_id = format!("{TENANT}/{terminal_id}");
        batch.push(event(
            aggregate_id.clone(),
            1,
            &TerminalEvent::Bound(pb::TerminalBound {
                tenant_id: TENANT.to_owned(),
                terminal_id: terminal_id.clone(),
                kind: pb::TerminalKind::Softpos.into(),
                parent_id: groups[index % groups.len()].clone(),
                device: None,
                replaces_terminal_id: String::new(),
                label: String::new(),
            }),
            &metadata,
        )?);
        batch.push(event(
            aggregate_id,
            2,
            &TerminalEvent::Activated(pb::TerminalActivated {
                tenant_id: TENANT.to_owned(),
                terminal_id,
                method: pb::ActivationMethod::Attestation.into(),
                evidence: format!("verdict-{index}"),
            }),
            &metadata,
        )?);
        if batch.len() >= 1_000 {
            store.append(std::mem::take(&mut batch), None).await?;
        }
    }
    if !batch.is_empty() {
        store.append(batch, None).await?;
    }
    Ok(())
}

fn metadata() -> anyhow::Result<String> {
    Ok(serde_json::to_string(&serde_json::to_value(
        CommandMetadata {
            tenant_id: TENANT.to_owned(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: String::new(),
            traceparent: String::new(),
            actor: "operator:platform".to_owned(),
        }
        .into_map(),
    )?)?)
}

/// A tenant-level change appended to the log as the tenant aggregate writes it (validated
/// and canonical), so that the service does not re-sign in the background while the figure
/// is measured.
async fn change_tenant_parameters(store: &EventStore, mcc: &str) -> anyhow::Result<()> {
    use cqrs_es::DomainEvent as _;
    let request: pb::RiskParameters = serde_json::from_value(tenant_parameters(mcc))?;
    let parameters = tms_params::validate(&request)
        .map_err(|error| anyhow::anyhow!("{error}"))?
        .to_proto();
    let sequence = store
        .read_aggregate(terminal_management::tenant::AGGREGATE_TYPE, TENANT, 0)
        .await?
        .last()
        .map_or(0, |event| event.event.sequence);
    let event = terminal_management::tenant::TenantEvent::ParametersSet(pb::ParametersSet {
        tenant_id: TENANT.to_owned(),
        level: pb::ParameterLevel::Tenant.into(),
        node_id: TENANT.to_owned(),
        parameters: Some(parameters),
    });
    store
        .append(
            vec![NewEvent {
                event_id: uuid::Uuid::now_v7().to_string(),
                tenant_id: TENANT.to_owned(),
                aggregate_type: terminal_management::tenant::AGGREGATE_TYPE.to_owned(),
                aggregate_id: TENANT.to_owned(),
                sequence: sequence + 1,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_string(&serde_json::to_value(&event)?)?,
                metadata: metadata()?,
                occurred_at_us: mpos_es::now_micros(),
            }],
            None,
        )
        .await?;
    Ok(())
}

fn device_client(cert: &[u8], device_pem: &str, key_pem: &str) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_der(cert)?)
        .identity(reqwest::Identity::from_pem(
            format!("{device_pem}{key_pem}").as_bytes(),
        )?)
        .pool_max_idle_per_host(4)
        .build()?)
}

async fn load(
    clients: &[(reqwest::Client, String, String)],
    concurrency: usize,
    duration: Duration,
    floor: bool,
) -> DownloadRun {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, download, signing_key) = clients[worker % clients.len()].clone();
        let url = if floor { signing_key } else { download };
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_success() => {
                        if response.bytes().await.is_err() {
                            failures += 1;
                        }
                    }
                    _ => failures += 1,
                }
                latencies.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            (latencies, failures)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        if let Ok((mut part, failed)) = task.await {
            latencies.append(&mut part);
            failures += failed;
        }
    }
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    DownloadRun {
        rate: rate(latencies.len(), elapsed),
        p50_us: percentile(&latencies, 50.0) as f64,
        p99_us: percentile(&latencies, 99.0) as f64,
        failures,
    }
}

/// Runs the benchmark.
pub async fn run(config: &TmsBenchConfig) -> anyhow::Result<TmsResult> {
    let service = start().await?;
    let result = measure(config, &service).await;
    service.cancel.cancel();
    service.running.join().await;
    service.store.close().await;
    result
}

async fn measure(config: &TmsBenchConfig, service: &Service) -> anyhow::Result<TmsResult> {
    eprintln!("mpos-bench: tms set-up: tenant, vendor CA, 1,110 estate nodes …");
    service
        .post("/v1/tenants", json!({"tenantId": TENANT, "name": "Bench"}))
        .await?;
    let vendor = Vendor::new()?;
    service
        .post(
            "/v1/manufacturer-cas",
            json!({"name": "Bench Vendor", "certificatePem": vendor.pem}),
        )
        .await?;
    let mut groups = Vec::new();
    for m in 0..10 {
        let merchant = format!("m-{m}");
        service
            .post(
                &format!("/v1/tenants/{TENANT}/nodes"),
                json!({"nodeId": merchant, "kind": "NODE_KIND_MERCHANT", "name": merchant}),
            )
            .await?;
        for s in 0..10 {
            let store = format!("s-{m}-{s}");
            service
                .post(&format!("/v1/tenants/{TENANT}/nodes"), json!({"nodeId": store, "kind": "NODE_KIND_STORE", "parentId": merchant, "name": store}))
                .await?;
            for g in 0..10 {
                let group = format!("g-{m}-{s}-{g}");
                service
                    .post(&format!("/v1/tenants/{TENANT}/nodes"), json!({"nodeId": group, "kind": "NODE_KIND_TERMINAL_GROUP", "parentId": store, "name": group}))
                    .await?;
                groups.push(group);
            }
        }
    }
    service
        .call(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{TENANT}/parameters"),
            tenant_parameters("5411"),
        )
        .await?;
    service
        .call(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{TENANT}/nodes/m-0/parameters"),
            json!({"contactlessTransactionLimit": "40000"}),
        )
        .await?;
    service
        .call(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{TENANT}/nodes/s-0-0/parameters"),
            json!({"floorLimits": [{"currency": "EUR", "amount": "3000"}]}),
        )
        .await?;

    eprintln!(
        "mpos-bench: tms set-up: {} PEDs bound and activated over mTLS …",
        config.devices
    );
    let mut clients = Vec::new();
    for index in 0..config.devices {
        let serial = u32::try_from(index + 1)?;
        let (pem, key) = vendor.device(serial)?;
        let terminal = format!("ped-{index:04}");
        service
            .post(
                &format!("/v1/tenants/{TENANT}/terminals"),
                json!({"terminalId": terminal, "kind": "TERMINAL_KIND_PED", "parentId": groups[index % groups.len()], "certificatePem": pem}),
            )
            .await?;
        let client = device_client(&service.server_cert, &pem, &key)?;
        let response = client
            .post(format!("{}/v1/devices/activate", service.device))
            .json(&json!({}))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "activation: {}",
            response.status()
        );
        clients.push((
            client,
            format!("{}/v1/devices/{terminal}/parameters", service.device),
            format!("{}/v1/parameter-signing-key", service.device),
        ));
    }
    let bulk = config.terminals.saturating_sub(config.devices);
    eprintln!("mpos-bench: tms set-up: {bulk} terminals appended to the log …");
    append_terminals(&service.store, bulk, &groups).await?;

    let model = Model::new(service.store.clone());
    let caught = Instant::now();
    model.catch_up().await?;
    eprintln!(
        "mpos-bench: tms: estate model caught up from the log in {:.2} s",
        caught.elapsed().as_secs_f64()
    );
    let sets = ParameterSets::new(ParameterSigner::new(SigningKey::from_bytes(&[7; 32])));
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut recompute_s = Vec::new();
    let mut floor_s = Vec::new();
    let mut recomputed = 0;
    let mut payload_bytes = 0;
    for repetition in 0..config.repetitions {
        change_tenant_parameters(
            &service.store,
            if repetition % 2 == 0 { "5812" } else { "5411" },
        )
        .await?;
        model.catch_up().await?;
        let started = Instant::now();
        let (signed, refused) = {
            let (model, sets) = (&model, &sets);
            tokio::task::block_in_place(|| sets.issue_all(model, TENANT, threads))
        };
        recompute_s.push(started.elapsed().as_secs_f64());
        ensure!(refused == 0, "{refused} sets refused");
        recomputed = signed;
        let sample = sets
            .issue(&model, TENANT, "ped-0000")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        payload_bytes = sample.signed.payload.len();
        // Floor: as many bare signatures of a payload that size, on as many threads.
        let payload = sample.signed.payload.clone();
        let key = SigningKey::from_bytes(&[7; 32]);
        let started = Instant::now();
        tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..signed.div_ceil(threads) {
                            std::hint::black_box(key.sign(std::hint::black_box(&payload)));
                        }
                    });
                }
            });
        });
        floor_s.push(started.elapsed().as_secs_f64());
        eprintln!(
            "mpos-bench: tms: {signed} sets in {:.2} s (floor {:.2} s)",
            recompute_s.last().copied().unwrap_or_default(),
            floor_s.last().copied().unwrap_or_default()
        );
    }
    if recomputed + config.devices < config.terminals {
        bail!(
            "only {recomputed} of {} terminals recomputed",
            config.terminals
        );
    }

    eprintln!("mpos-bench: tms: downloads …");
    // Warm-up: every PED's set signed in the service, connections open.
    load(&clients, config.concurrency, Duration::from_secs(1), false).await;
    load(&clients, config.concurrency, Duration::from_secs(1), true).await;
    let mut downloads = Vec::new();
    let mut floor_downloads = Vec::new();
    for _ in 0..config.repetitions {
        downloads.push(load(&clients, config.concurrency, config.duration, false).await);
        floor_downloads.push(load(&clients, config.concurrency, config.duration, true).await);
    }
    Ok(TmsResult {
        config: config.clone(),
        recomputed,
        recompute_s,
        floor_s,
        payload_bytes,
        downloads,
        floor_downloads,
    })
}

/// Adds the rows.
pub fn add_to(report: &mut Report, result: &TmsResult) {
    let recompute = median(&result.recompute_s);
    let floor = median(&result.floor_s);
    let (low, high) = min_max(&result.recompute_s);
    report.rows.push(Row {
        benchmark: "tms".into(),
        case: format!(
            "recompute + sign every effective set after a tenant-level change, {} terminals, {} B payload ({} reps)",
            thousands(result.recomputed as f64),
            result.payload_bytes,
            result.recompute_s.len()
        ),
        figure: format!("{recompute:.2} s ({low:.2}–{high:.2})"),
        floor: format!("bare Ed25519 signatures {floor:.2} s"),
        ratio: format!("{:.2}", floor / recompute),
        goal: format!("< {RECOMPUTE_GOAL_S:.0} s for 100,000"),
        verdict: if recompute < RECOMPUTE_GOAL_S && result.recomputed + result.config.devices >= 100_000 {
            "met".into()
        } else if recompute < RECOMPUTE_GOAL_S {
            "met (smaller size)".into()
        } else {
            "MISSED".into()
        },
    });
    let rates: Vec<f64> = result.downloads.iter().map(|run| run.rate).collect();
    let floor_rates: Vec<f64> = result.floor_downloads.iter().map(|run| run.rate).collect();
    let p99 = median(
        &result
            .downloads
            .iter()
            .map(|run| run.p99_us / 1_000.0)
            .collect::<Vec<_>>(),
    );
    let p50 = median(
        &result
            .downloads
            .iter()
            .map(|run| run.p50_us / 1_000.0)
            .collect::<Vec<_>>(),
    );
    let floor_p99 = median(
        &result
            .floor_downloads
            .iter()
            .map(|run| run.p99_us / 1_000.0)
            .collect::<Vec<_>>(),
    );
    let failures: usize = result.downloads.iter().map(|run| run.failures).sum();
    let rate = median(&rates);
    report.rows.push(Row {
        benchmark: "tms".into(),
        case: format!(
            "device downloads over mTLS, {} PEDs, {} in flight, {} s ({} reps)",
            result.config.devices,
            result.config.concurrency,
            result.config.duration.as_secs(),
            rates.len()
        ),
        figure: format!(
            "{} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
            thousands(rate)
        ),
        floor: format!(
            "signing-key GET {} req/s, p99 {floor_p99:.2} ms",
            thousands(median(&floor_rates))
        ),
        ratio: format!("{:.2}", rate / median(&floor_rates)),
        goal: format!("≥ {} req/s", thousands(DOWNLOAD_GOAL)),
        verdict: match (rate >= DOWNLOAD_GOAL, failures) {
            (true, 0) => "met".into(),
            (false, 0) => "MISSED".into(),
            (_, failures) => format!("{failures} failures"),
        },
    });
}
