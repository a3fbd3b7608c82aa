//! key-injection: keys injected per second for a batch of simulated devices, on the embedded
//! deployment (`mposd`'s shape).
//!
//! Set-up (not timed), per repetition in a fresh temp dir: the hsm-proxy (SQLite log,
//! `soft://` backend), terminal-management (SQLite) and key-injection (SQLite, reading
//! terminal-management's log directly, as in `mposd`) in this process on one in-process
//! `memory://` bus, key-injection's device routes served on terminal-management's device
//! listener (as `mposd` serves them); a tenant with a merchant → store → terminal group chain; a manufacturer CA
//! and `devices` PEDs bound in terminal-management (concurrent single binds, each under its
//! own device certificate); the BDK, a zone PIN key and the KDH RSA key pair in the
//! hsm-proxy, the KDH certificate (signed by an RKI CA) PUT to key-injection and the BDK
//! assigned. Device keys: P-256 (ECDH + TR-31 D delivery) or RSA-2048 (TR-34); for TR-34 the
//! certificates are distinct (serials) but share a small pool of RSA keys, since generating
//! thousands of RSA keys would only time the set-up.
//!
//! Timed: from the first device's activation over mTLS on terminal-management to the last
//! device's confirmation: every device (the terminal simulator) activates, polls
//! key-injection's device API until its key waits, downloads it, unwraps and installs it and
//! confirms it by KCV; `concurrency` devices in flight. The per-phase split comes from
//! key-injection's own log (requested → derived → delivered → confirmed).
//!
//! Floor, in the same run and process: the bare hsm-proxy `ExportKey` of the same format
//! (`ecdhDukptInitialKey` / `tr34DukptInitialKey`) over the same bus at the same concurrency,
//! the dominant server-side cost of one injection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt as _;
use hsm_proxy::rpc::HsmClient;
use mpos_config::Vars;
use mpos_proto::hsm as hsm_pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256, PublicKeyData, SerialNumber, SignatureAlgorithm,
    date_time_ymd,
};
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::{DecodePublicKey as _, EncodePrivateKey as _};
use secrecy::SecretString;
use serde_json::{Value, json};
use terminal_sim::terminal::{Terminal, TerminalConfig};
use terminal_sim::{DeviceIdentity, DeviceKeyKind, ManufacturerCa, SimError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::report::{Report, Row, thousands};
use crate::stats::{median, min_max, percentile, rate};

/// Goal: keys injected per second (2 cores, software HSM).
pub const KI_GOAL: f64 = 500.0;

const TOKEN: &str = "bench-operator-token-0123456789abcdef";
const TENANT: &str = "bench";
/// The ANSI X9.24-1:2009 Annex A.4 test BDK.
const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
/// A zone PIN key (any double-length TDES key).
const ZPK: &str = "89ABCDEF0123456776543210FEDCBA98";
const KEY_SET_ID: &str = "FFFF987654";
/// Calls of the concurrent floor.
const CONCURRENT_FLOOR_CALLS: usize = 500;

/// How the keys are delivered (the device key's kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// P-256 device keys: ECDH + TR-31 D.
    Ecdh,
    /// RSA-2048 device keys: TR-34.
    Tr34,
}

impl Delivery {
    /// How the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ecdh => "ECDH P-256 + TR-31 D",
            Self::Tr34 => "TR-34 (RSA-2048)",
        }
    }

    fn format_name(self) -> &'static str {
        match self {
            Self::Ecdh => "ecdhDukptInitialKey",
            Self::Tr34 => "tr34DukptInitialKey",
        }
    }
}

/// Sizes.
#[derive(Clone, Debug)]
pub struct KiBenchConfig {
    /// Devices injected per ECDH repetition.
    pub devices: usize,
    /// Devices injected per TR-34 repetition (0: no TR-34 run).
    pub tr34_devices: usize,
    /// RSA keys shared by the TR-34 devices' certificates.
    pub rsa_pool: usize,
    /// Devices in flight.
    pub concurrency: usize,
    /// key-injection's derivation workers (`MPOS_KI_WORKERS`).
    pub workers: usize,
    /// Repetitions (each on fresh services and devices).
    pub repetitions: usize,
    /// `ExportKey` calls of the floor (at most; never more than the devices).
    pub floor_calls: usize,
}

impl KiBenchConfig {
    /// The issue's size: 10,000 devices.
    pub fn full() -> Self {
        Self {
            devices: 10_000,
            tr34_devices: 10_000,
            rsa_pool: 16,
            concurrency: 256,
            workers: 8,
            repetitions: 1,
            floor_calls: 5_000,
        }
    }

    /// A smoke run.
    pub fn quick() -> Self {
        Self {
            devices: 300,
            tr34_devices: 100,
            rsa_pool: 4,
            concurrency: 32,
            workers: 8,
            repetitions: 1,
            floor_calls: 300,
        }
    }
}

/// Percentiles of one phase, ms.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Phase {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl Phase {
    fn of(mut micros: Vec<u64>) -> Self {
        micros.sort_unstable();
        #[allow(clippy::cast_precision_loss)]
        Self {
            p50_ms: percentile(&micros, 50.0) as f64 / 1_000.0,
            p99_ms: percentile(&micros, 99.0) as f64 / 1_000.0,
        }
    }
}

/// One floor run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Floor {
    /// Calls in flight.
    pub concurrency: usize,
    /// Calls per second.
    pub rate: f64,
    /// Calls made.
    pub calls: usize,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// Calls refused with "the key was changed concurrently" (and retried).
    pub conflicts: usize,
}

/// One repetition.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KiRun {
    /// Devices injected (confirmed).
    pub injected: usize,
    /// Devices that failed.
    pub failures: usize,
    /// Seconds from the first activation to the last confirmation.
    pub seconds: f64,
    /// Injections per second.
    pub rate: f64,
    /// Device side: activation request.
    pub activate: Phase,
    /// Device side: from activated to confirmed (polls, download, unwrap, confirm).
    pub receive: Phase,
    /// Server side (key-injection's log): requested → key derived.
    pub requested_to_derived: Phase,
    /// Derived → delivered (the device's download).
    pub derived_to_delivered: Phase,
    /// Delivered → confirmed (unwrap, install, confirm).
    pub delivered_to_confirmed: Phase,
    /// Seconds of set-up (not timed).
    pub set_up_seconds: f64,
    /// Floor: the best bare `ExportKey` calls per second of [`KiRun::floors`].
    pub floor_rate: f64,
    /// The floor runs.
    pub floors: Vec<Floor>,
    /// Injections in key-injection's log never confirmed (failed, or superseded).
    pub failed_injections: usize,
}

/// One delivery's repetitions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KiSeries {
    /// ECDH or TR-34.
    #[serde(skip)]
    pub delivery: Option<Delivery>,
    /// Its name.
    pub name: String,
    /// Devices per repetition.
    pub devices: usize,
    /// The runs.
    pub runs: Vec<KiRun>,
}

/// A public key held elsewhere (the KDH's, inside the HSM), for rcgen to certify.
struct HeldPublicKey(Vec<u8>);

impl PublicKeyData for HeldPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

fn cert_params(name: &str, ca: bool, usage: KeyUsagePurpose) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = vec![usage];
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    Ok(params)
}

fn rsa_key_pair() -> anyhow::Result<KeyPair> {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let der = key.to_pkcs8_der()?.as_bytes().to_vec();
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &der.into(),
        &PKCS_RSA_SHA256,
    )?)
}

/// `count` device identities with distinct certificates (serials) from `vendor`: P-256 keys
/// of their own, or RSA keys shared from a pool of `pool`.
async fn identities(
    vendor: Arc<ManufacturerCa>,
    delivery: Delivery,
    count: usize,
    pool: usize,
) -> anyhow::Result<Vec<DeviceIdentity>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let keys: Arc<Vec<(KeyPair, String)>> = Arc::new(if delivery == Delivery::Tr34 {
        let mut tasks = Vec::new();
        for _ in 0..pool.max(1) {
            tasks.push(tokio::task::spawn_blocking(rsa_key_pair));
        }
        let mut keys = Vec::new();
        for task in tasks {
            let key = task.await??;
            let pem = key.serialize_pem();
            keys.push((key, pem));
        }
        keys
    } else {
        Vec::new()
    });
    let mut tasks = Vec::new();
    for part in 0..threads {
        let (vendor, keys) = (vendor.clone(), keys.clone());
        tasks.push(tokio::task::spawn_blocking(
            move || -> anyhow::Result<Vec<(usize, DeviceIdentity)>> {
                let issuer = match delivery {
                    Delivery::Tr34 => Some(Issuer::from_ca_cert_pem(
                        vendor.certificate_pem(),
                        KeyPair::from_pem(&vendor.key_pem())?,
                    )?),
                    Delivery::Ecdh => None,
                };
                let mut out = Vec::new();
                for index in (part..count).step_by(threads) {
                    let serial = u32::try_from(index + 1)?.to_be_bytes();
                    let identity = match &issuer {
                        None => vendor.issue(&serial, DeviceKeyKind::P256)?,
                        Some(issuer) => {
                            let (key, key_pem) = &keys[index % keys.len()];
                            let mut params = CertificateParams::new(Vec::<String>::new())?;
                            params.distinguished_name.push(
                                DnType::CommonName,
                                format!("PINPAD-{}", hex::encode_upper(serial)),
                            );
                            params
                                .distinguished_name
                                .push(DnType::OrganizationName, vendor.name().to_owned());
                            params.serial_number = Some(SerialNumber::from_slice(&serial));
                            params.is_ca = IsCa::ExplicitNoCa;
                            params.not_before = date_time_ymd(2024, 1, 1);
                            params.not_after = date_time_ymd(2045, 1, 1);
                            params.key_usages = vec![
                                KeyUsagePurpose::DigitalSignature,
                                KeyUsagePurpose::KeyEncipherment,
                            ];
                            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                            params.use_authority_key_identifier_extension = true;
                            let certificate = params.signed_by(key, issuer)?;
                            DeviceIdentity::from_pem(&certificate.pem(), key_pem)?
                        }
                    };
                    out.push((index, identity));
                }
                Ok(out)
            },
        ));
    }
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by_key(|(index, _)| *index);
    Ok(all.into_iter().map(|(_, identity)| identity).collect())
}

/// The three services, as `mposd` runs them.
struct Services {
    tms_http: String,
    tms_device: u16,
    ki_http: String,
    ki_store: mpos_es::EventStore,
    tms_store: mpos_es::EventStore,
    bus_url: String,
    server_der: Vec<u8>,
    cancel: CancellationToken,
    tms: terminal_management::service::Running,
    hsm: hsm_proxy::service::Running,
    ki: key_injection::service::Running,
    _dir: tempfile::TempDir,
}

async fn start(workers: usize) -> anyhow::Result<Services> {
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let token = SecretString::from(TOKEN.to_owned());
    let bus_url = format!("memory://bench-ki-{}", uuid::Uuid::new_v4().simple());
    let config = |service: &str| -> anyhow::Result<CommonConfig> {
        let vars = Vars::from_pairs(vec![
            (
                "MPOS_DATABASE_URL",
                format!(
                    "sqlite://{}",
                    dir.path().join(format!("{service}.db")).display()
                ),
            ),
            ("MPOS_BUS_URL", bus_url.clone()),
            ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
            ("MPOS_POLL_INTERVAL_MS", "200".to_owned()),
        ]);
        CommonConfig::from_vars(&vars, service, "127.0.0.1:0", "127.0.0.1:0")
            .map_err(|error| anyhow::anyhow!("{error}"))
    };
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let server_der = server.cert.der().to_vec();
    let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert_path, server.cert.pem())?;
    std::fs::write(&key_path, server.signing_key.serialize_pem())?;
    let server_identity = device_identity::ServerIdentity::from_pem_files(&cert_path, &key_path)
        .map_err(|error| anyhow::anyhow!("{error}"))?;

    let hsm_common = config(hsm_proxy::SERVICE)?;
    let hsm_infrastructure = Infrastructure::default();
    let (hsm_store, hsm_bus) = hsm_infrastructure
        .connect(&hsm_common, &cancel)
        .await
        .context("hsm-proxy infrastructure")?;
    let hsm = hsm_proxy::service::start(
        &hsm_common,
        &hsm_proxy::service::HsmConfig {
            backends: vec![format!("soft://{}", dir.path().join("hsm-keys").display())],
            soft_lmk: Some(SecretBytes::from_slice(&[0x42; 32])),
            pkcs11_pin: None,
            pool: hsm_proxy::pool::PoolConfig {
                local_site: "local".into(),
                attempt_timeout: Duration::from_secs(60),
                check_interval: Duration::from_millis(200),
            },
            sealed_card_data: hsm_proxy::sealing::SealedCardData::Allow,
        },
        hsm_store,
        &hsm_bus,
        &hsm_infrastructure,
        &token,
        TcpListener::bind("127.0.0.1:0").await?,
        &cancel,
    )
    .await?;

    let tms_common = config(terminal_management::SERVICE)?;
    let tms_infrastructure = Infrastructure::default();
    let (tms_store, tms_bus) = tms_infrastructure
        .connect(&tms_common, &cancel)
        .await
        .context("terminal-management infrastructure")?;
    let ki_common = config(key_injection::SERVICE)?;
    let ki_infrastructure = Infrastructure::default();
    let (ki_store, ki_bus) = ki_infrastructure
        .connect(&ki_common, &cancel)
        .await
        .context("key-injection infrastructure")?;
    let ki = key_injection::service::start(
        &ki_common,
        ki_store.clone(),
        &ki_bus,
        &ki_infrastructure,
        &key_injection::service::KiOptions {
            operator_token: token.clone(),
            kdh_key: "alias/kdh".into(),
            kdh_certificate: Vec::new(),
            krd_cas: Vec::new(),
            hsm_timeout: Duration::from_secs(60),
            confirmation_window: Duration::from_secs(3_600),
            cryptoperiod: Duration::from_secs(730 * 24 * 3_600),
            device_addr: None,
            device_tls: None,
            workers,
            sweep_interval: Duration::from_secs(60),
            cryptoperiod_check_interval: Duration::from_secs(3_600),
            feed: Some(key_injection::feed::FeedSource::Store {
                store: tms_store.clone(),
                codec: Arc::new(terminal_management::codec()),
            }),
            softpos_addr: None,
            token_keys: attestation_keys::KeySource::Fixed(attestation_token::PublishedKeys {
                keys: Vec::new(),
            }),
        },
        TcpListener::bind("127.0.0.1:0").await?,
        &cancel,
    )
    .await?;
    let tms = terminal_management::service::start(
        &tms_common,
        tms_store.clone(),
        &tms_bus,
        &tms_infrastructure,
        &terminal_management::service::TmOptions {
            operator_token: token.clone(),
            parameter_signing_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            device_addr: "127.0.0.1:0".parse()?,
            device_tls: Some(server_identity.clone()),
            // key-injection's device API on the same listener, as mposd serves it.
            more_device_routes: Some(ki.device_routes.clone()),
            attestation_feed: None,
        },
        TcpListener::bind("127.0.0.1:0").await?,
        &cancel,
    )
    .await?;

    Ok(Services {
        tms_http: format!("http://{}", tms.http_addr),
        tms_device: tms.device_addr.port(),
        ki_http: format!("http://{}", ki.http_addr),
        ki_store,
        tms_store,
        bus_url,
        server_der,
        cancel,
        tms,
        hsm,
        ki,
        _dir: dir,
    })
}

impl Services {
    async fn stop(self) {
        self.cancel.cancel();
        self.ki.join().await;
        self.tms.join().await;
        self.hsm.join().await;
        self.ki_store.close().await;
        self.tms_store.close().await;
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let response = client
        .request(method, url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn post_ok(client: &reqwest::Client, url: String, body: Value) -> anyhow::Result<()> {
    let (status, answer) = call(client, reqwest::Method::POST, url.clone(), body).await?;
    ensure!(status == 201, "POST {url}: {status} {answer}");
    Ok(())
}

async fn import(
    hsm: &HsmClient,
    key_hex: &str,
    usage: &str,
    mode: &str,
    alias: &str,
) -> anyhow::Result<()> {
    let key = hex::decode(key_hex)?;
    let kcv = |bytes: &[u8]| -> anyhow::Result<String> {
        Ok(paycrypto::kcv::tdes_kcv(&SecretBytes::from_slice(bytes))
            .map_err(|error| anyhow::anyhow!("{error}"))?
            .to_hex())
    };
    let parts = [
        vec![0x11; key.len()],
        key.iter().map(|k| k ^ 0x11).collect(),
    ];
    let mut components = Vec::new();
    for part in &parts {
        components.push(hsm_pb::KeyComponent {
            value: hex::encode_upper(part),
            kcv: kcv(part)?,
        });
    }
    let _: hsm_pb::Key = hsm
        .call(
            "ImportKey",
            &hsm_pb::ImportKeyRequest {
                tenant_id: TENANT.into(),
                alias: alias.into(),
                material: Some(hsm_pb::import_key_request::Material::Components(
                    hsm_pb::ComponentsImport {
                        attributes: Some(hsm_pb::KeyAttributes {
                            algorithm: hsm_pb::KeyAlgorithm::Tdes2key.into(),
                            key_usage: usage.into(),
                            mode_of_use: mode.into(),
                            exportability: "N".into(),
                        }),
                        components,
                        kcv: kcv(&key)?,
                    },
                )),
            },
        )
        .await
        .map_err(|error| anyhow::anyhow!("import {alias}: {error}"))?;
    Ok(())
}

/// The tenant's keys in the hsm-proxy and the KDH certificate; answers the RKI CA (DER, the
/// devices' KDH trust) and the KDH certificate (DER).
async fn hsm_keys(hsm: &HsmClient) -> anyhow::Result<(Vec<u8>, Vec<u8>, String)> {
    import(hsm, BDK, "B0", "X", "bdk").await?;
    import(hsm, ZPK, "P0", "B", "zpk").await?;
    let kdh: hsm_pb::Key = hsm
        .call(
            "CreateKey",
            &hsm_pb::CreateKeyRequest {
                tenant_id: TENANT.into(),
                attributes: Some(hsm_pb::KeyAttributes {
                    algorithm: hsm_pb::KeyAlgorithm::Rsa2048.into(),
                    key_usage: "S0".into(),
                    mode_of_use: "S".into(),
                    exportability: "N".into(),
                }),
                alias: "kdh".into(),
            },
        )
        .await
        .map_err(|error| anyhow::anyhow!("kdh: {error}"))?;
    let public: hsm_pb::GetPublicKeyResponse = hsm
        .call(
            "GetPublicKey",
            &hsm_pb::GetPublicKeyRequest {
                tenant_id: TENANT.into(),
                key: kdh.key_id,
            },
        )
        .await
        .map_err(|error| anyhow::anyhow!("kdh public key: {error}"))?;
    let kdh_public = rsa::RsaPublicKey::from_public_key_der(&public.public_key)?
        .to_pkcs1_der()?
        .as_bytes()
        .to_vec();
    let ca_key = tokio::task::spawn_blocking(rsa_key_pair).await??;
    let ca_params = cert_params("Bench RKI CA", true, KeyUsagePurpose::KeyCertSign)?;
    let ca_der = ca_params.self_signed(&ca_key)?.der().to_vec();
    let ca = Issuer::new(ca_params, ca_key);
    let kdh_certificate = cert_params("Bench KDH", false, KeyUsagePurpose::DigitalSignature)?
        .signed_by(&HeldPublicKey(kdh_public), &ca)?;
    Ok((
        ca_der,
        kdh_certificate.der().to_vec(),
        kdh_certificate.pem(),
    ))
}

/// Waits until key-injection's feed has applied terminal-management's whole log.
async fn feed_caught_up(services: &Services) -> anyhow::Result<()> {
    let (head, _) = services.tms_store.head().await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let position = services
            .ki_store
            .consumer_position(key_injection::feed::CONSUMER)
            .await?;
        if position >= head {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "feed stuck at {position} of {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tdes_ksn(index: u64) -> String {
    // Key set id (5 bytes), then device number << 21 (the counter bits), 5 bytes.
    let low = (index << 21).to_be_bytes();
    format!("{KEY_SET_ID}{}", hex::encode_upper(&low[3..]))
}

/// One repetition on fresh services and devices.
async fn run_one(
    config: &KiBenchConfig,
    delivery: Delivery,
    devices: usize,
) -> anyhow::Result<KiRun> {
    let services = start(config.workers).await?;
    let result = measure(config, delivery, devices, &services).await;
    services.stop().await;
    result
}

#[allow(clippy::too_many_lines)]
async fn measure(
    config: &KiBenchConfig,
    delivery: Delivery,
    devices: usize,
    services: &Services,
) -> anyhow::Result<KiRun> {
    let set_up = Instant::now();
    let client = reqwest::Client::new();
    let tms = services.tms_http.clone();
    post_ok(
        &client,
        format!("{tms}/v1/tenants"),
        json!({"tenantId": TENANT, "name": "Bench"}),
    )
    .await?;
    for (node, kind, parent) in [
        ("m-1", "NODE_KIND_MERCHANT", ""),
        ("s-1", "NODE_KIND_STORE", "m-1"),
        ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
    ] {
        post_ok(
            &client,
            format!("{tms}/v1/tenants/{TENANT}/nodes"),
            json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
        )
        .await?;
    }
    let vendor = match delivery {
        Delivery::Ecdh => ManufacturerCa::generate("Bench Vendor CA")?,
        Delivery::Tr34 => ManufacturerCa::generate_with("Bench Vendor CA", DeviceKeyKind::Rsa2048)?,
    };
    post_ok(
        &client,
        format!("{tms}/v1/manufacturer-cas"),
        json!({"name": "Bench Vendor", "certificatePem": vendor.certificate_pem()}),
    )
    .await?;
    eprintln!(
        "mpos-bench: ki {}: {devices} device identities …",
        delivery.name()
    );
    let identities = identities(Arc::new(vendor), delivery, devices, config.rsa_pool).await?;
    eprintln!("mpos-bench: ki: binding {devices} PEDs in terminal-management …");
    let binds = futures::stream::iter(identities.iter().enumerate().map(|(index, identity)| {
        let (client, tms) = (client.clone(), tms.clone());
        let pem = identity.certificate_pem().to_owned();
        async move {
            post_ok(
                &client,
                format!("{tms}/v1/tenants/{TENANT}/terminals"),
                json!({"terminalId": format!("t-{index:05}"), "kind": "TERMINAL_KIND_PED", "parentId": "g-1", "certificatePem": pem}),
            )
            .await
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    for bound in binds {
        bound?;
    }

    let caller = mpos_bus::connect(&services.bus_url)
        .await
        .map_err(|error| anyhow::anyhow!("bus: {error}"))?;
    let hsm = Arc::new(HsmClient::new(
        caller
            .requests
            .clone()
            .context("the bus has no request-reply")?,
        "operator:bench",
        Duration::from_secs(60),
    ));
    let (rki_ca_der, kdh_der, kdh_pem) = hsm_keys(&hsm).await?;
    let ki = services.ki_http.clone();
    let (status, body) = call(
        &client,
        reqwest::Method::PUT,
        format!("{ki}/v1/tenants/{TENANT}/kdh-certificate"),
        json!({"certificatePem": kdh_pem}),
    )
    .await?;
    ensure!(status == 204, "kdh certificate: {status} {body}");
    let mut assigned = false;
    for _ in 0..600 {
        let (status, body) = call(
            &client,
            reqwest::Method::POST,
            format!("{ki}/v1/tenants/{TENANT}/bdks"),
            json!({"bdkId": "bdk-1", "hsmKeyId": "alias/bdk", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": KEY_SET_ID}),
        )
        .await?;
        if status == 201 {
            assigned = true;
            break;
        }
        ensure!(status == 404 || status == 401, "bdk: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(assigned, "the tenant never reached key-injection");
    feed_caught_up(services).await?;

    let sim = |index: usize, identity: DeviceIdentity| TerminalConfig {
        terminal_id: format!("t-{index:05}"),
        identity,
        tms_url: format!("https://localhost:{}", services.tms_device),
        ki_url: format!("https://localhost:{}", services.tms_device),
        server_roots: vec![services.server_der.clone()],
        kdh_trust: rki_ca_der.clone(),
        parameter_verifying_key: None,
    };
    let certificates: Vec<Vec<u8>> = identities
        .iter()
        .take(config.floor_calls.min(devices))
        .map(|identity| identity.certificate_der().to_vec())
        .collect();
    let mut terminals = Vec::with_capacity(devices);
    for (index, identity) in identities.into_iter().enumerate() {
        terminals.push(Terminal::new(sim(index, identity))?);
    }
    let set_up_seconds = set_up.elapsed().as_secs_f64();
    eprintln!(
        "mpos-bench: ki: set-up done in {set_up_seconds:.1} s; {devices} devices activate and receive their keys, {} in flight …",
        config.concurrency
    );

    // Timed.
    let started = Instant::now();
    let until = started + Duration::from_secs(3_600);
    let outcomes = futures::stream::iter(terminals.into_iter().map(|mut terminal| async move {
        let begin = Instant::now();
        let activated = terminal.activate().await;
        let activate_us = u64::try_from(begin.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Err(error) = activated {
            return Err(format!("activate: {error}"));
        }
        let middle = Instant::now();
        // key-injection learns of the activation through its feed of terminal-management's
        // log; until then its device API answers 403 "the terminal is bound": retry as the
        // simulator does on 404.
        let mut wait = Duration::from_millis(20);
        let installed = loop {
            match terminal.receive_key(until).await {
                Err(SimError::Refused {
                    status: 403,
                    message,
                    ..
                }) if message.contains("is bound") && Instant::now() < until => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                other => break other,
            }
        };
        let receive_us = u64::try_from(middle.elapsed().as_micros()).unwrap_or(u64::MAX);
        match installed {
            Ok(installed) => Ok((activate_us, receive_us, installed.initial_key_id)),
            Err(error) => Err(format!("receive key: {error}")),
        }
    }))
    .buffer_unordered(config.concurrency)
    .collect::<Vec<_>>()
    .await;
    let elapsed = started.elapsed();

    let mut activate = Vec::new();
    let mut receive = Vec::new();
    let mut ksns = std::collections::HashSet::new();
    let mut failures = 0;
    let mut first_error = None;
    for outcome in outcomes {
        match outcome {
            Ok((a, r, ksn)) => {
                activate.push(a);
                receive.push(r);
                if !ksns.insert(ksn) {
                    bail!("a KSN handed out twice");
                }
            }
            Err(error) => {
                failures += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = &first_error {
        eprintln!("mpos-bench: ki: {failures} devices failed; first: {error}");
    }
    let injected = ksns.len();
    eprintln!(
        "mpos-bench: ki: {injected} keys injected in {:.2} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        rate(injected, elapsed)
    );

    // The per-phase split from key-injection's log.
    let mut times: HashMap<String, [i64; 4]> = HashMap::new();
    let mut after = 0;
    loop {
        let events = services.ki_store.read_after(after, 10_000).await?;
        let Some(last) = events.last() else { break };
        after = last.global_position;
        for stored in &events {
            let slot = match stored.event.event_type.as_str() {
                "mpos.key_injection.v1.InjectionRequested" => 0,
                "mpos.key_injection.v1.InjectionKeyDerived" => 1,
                "mpos.key_injection.v1.InjectionDelivered" => 2,
                "mpos.key_injection.v1.InjectionConfirmed" => 3,
                _ => continue,
            };
            times.entry(stored.event.aggregate_id.clone()).or_default()[slot] =
                stored.event.occurred_at_us;
        }
    }
    let span = |from: usize, to: usize| -> Vec<u64> {
        times
            .values()
            .filter(|t| t[from] > 0 && t[to] > 0)
            .map(|t| u64::try_from(t[to] - t[from]).unwrap_or(0))
            .collect()
    };

    // Floors: bare ExportKey of the same format over the same bus, at the same concurrency
    // and one at a time (the hsm-proxy serialises exports of one BDK).
    let kdh_der = Arc::new(kdh_der);
    let floors = vec![
        floor(
            &hsm,
            delivery,
            &certificates[..certificates.len().min(CONCURRENT_FLOOR_CALLS)],
            &kdh_der,
            config.concurrency,
            300_000,
        )
        .await?,
        floor(&hsm, delivery, &certificates, &kdh_der, 1, 400_000).await?,
    ];
    #[allow(clippy::cast_precision_loss)]
    Ok(KiRun {
        injected,
        failures,
        seconds: elapsed.as_secs_f64(),
        rate: rate(injected, elapsed),
        activate: Phase::of(activate),
        receive: Phase::of(receive),
        requested_to_derived: Phase::of(span(0, 1)),
        derived_to_delivered: Phase::of(span(1, 2)),
        delivered_to_confirmed: Phase::of(span(2, 3)),
        set_up_seconds,
        floor_rate: floors.iter().map(|floor| floor.rate).fold(0.0, f64::max),
        floors,
        failed_injections: times.values().filter(|t| t[3] == 0).count(),
    })
}

/// The floor: `certificates.len()` bare `ExportKey` calls of `delivery`'s format over the bus,
/// `concurrency` in flight; calls refused because another export of the BDK was recorded
/// meanwhile are retried and counted.
async fn floor(
    hsm: &Arc<HsmClient>,
    delivery: Delivery,
    certificates: &[Vec<u8>],
    kdh_der: &Arc<Vec<u8>>,
    concurrency: usize,
    ksn_base: u64,
) -> anyhow::Result<Floor> {
    let floor_count = certificates.len();
    let floor_started = Instant::now();
    let latencies = futures::stream::iter(certificates.iter().cloned().enumerate().map(
        |(index, certificate)| {
            let (hsm, kdh_der) = (hsm.clone(), kdh_der.clone());
            async move {
                let ksn = tdes_ksn(ksn_base + index as u64);
                let format = match delivery {
                    Delivery::Tr34 => hsm_pb::export_key_request::Format::Tr34DukptInitialKey(
                        hsm_pb::Tr34DukptInitialKeyExport {
                            ksn,
                            krd_certificate: certificate,
                            kdh_certificate: kdh_der.as_ref().clone(),
                        },
                    ),
                    Delivery::Ecdh => hsm_pb::export_key_request::Format::EcdhDukptInitialKey(
                        hsm_pb::EcdhDukptInitialKeyExport {
                            ksn,
                            device_certificate: certificate,
                        },
                    ),
                };
                let request = hsm_pb::ExportKeyRequest {
                    tenant_id: TENANT.to_owned(),
                    key: "alias/bdk".to_owned(),
                    wrapping_key: "alias/kdh".to_owned(),
                    format: Some(format),
                };
                let begin = Instant::now();
                // The hsm-proxy records every export on the BDK's key aggregate: concurrent
                // exports of one BDK conflict ("the key was changed concurrently; retry").
                let mut conflicts = 0_usize;
                loop {
                    let answer: Result<hsm_pb::ExportKeyResponse, _> =
                        hsm.call("ExportKey", &request).await;
                    match answer {
                        Ok(_) => {
                            break Ok((
                                u64::try_from(begin.elapsed().as_micros()).unwrap_or(u64::MAX),
                                conflicts,
                            ));
                        }
                        Err(error) if error.to_string().contains("changed concurrently") => {
                            conflicts += 1;
                        }
                        Err(error) => break Err(format!("{error}")),
                    }
                }
            }
        },
    ))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    let floor_elapsed = floor_started.elapsed();
    let mut floor_latencies = Vec::new();
    let mut floor_conflicts = 0;
    for latency in latencies {
        let (latency, conflicts) =
            latency.map_err(|error| anyhow::anyhow!("floor ExportKey: {error}"))?;
        floor_latencies.push(latency);
        floor_conflicts += conflicts;
    }
    floor_latencies.sort_unstable();
    let floor_rate = rate(floor_count, floor_elapsed);
    eprintln!(
        "mpos-bench: ki: floor {floor_count} ExportKey {} at {concurrency} in flight in {:.2} s ({floor_rate:.0}/s, {floor_conflicts} conflicts retried)",
        delivery.format_name(),
        floor_elapsed.as_secs_f64()
    );
    #[allow(clippy::cast_precision_loss)]
    Ok(Floor {
        concurrency,
        rate: floor_rate,
        calls: floor_count,
        p50_ms: percentile(&floor_latencies, 50.0) as f64 / 1_000.0,
        conflicts: floor_conflicts,
    })
}

/// Runs the benchmark: the ECDH series, then the TR-34 series.
pub async fn run(config: &KiBenchConfig) -> anyhow::Result<Vec<KiSeries>> {
    let mut series = Vec::new();
    for (delivery, devices) in [
        (Delivery::Ecdh, config.devices),
        (Delivery::Tr34, config.tr34_devices),
    ] {
        if devices == 0 {
            continue;
        }
        let mut runs = Vec::new();
        for repetition in 0..config.repetitions {
            eprintln!(
                "mpos-bench: ki {} repetition {}/{} …",
                delivery.name(),
                repetition + 1,
                config.repetitions
            );
            runs.push(run_one(config, delivery, devices).await?);
        }
        series.push(KiSeries {
            delivery: Some(delivery),
            name: delivery.name().to_owned(),
            devices,
            runs,
        });
    }
    Ok(series)
}

/// Adds the rows and the notes.
pub fn add_to(report: &mut Report, config: &KiBenchConfig, series: &[KiSeries]) {
    for one in series {
        let rates: Vec<f64> = one.runs.iter().map(|run| run.rate).collect();
        let floors: Vec<f64> = one.runs.iter().map(|run| run.floor_rate).collect();
        let (rate, floor) = (median(&rates), median(&floors));
        let (low, high) = min_max(&rates);
        let failures: usize = one.runs.iter().map(|run| run.failures).sum();
        let format = one.delivery.map_or("", Delivery::format_name);
        report.rows.push(Row {
            benchmark: "ki".into(),
            case: format!(
                "{}, embedded (SQLite, memory:// bus, soft HSM), {} devices, {} in flight, {} workers ({} reps)",
                one.name,
                thousands(one.devices as f64),
                config.concurrency,
                config.workers,
                one.runs.len()
            ),
            figure: if one.runs.len() > 1 {
                format!("{} inj/s ({}–{})", thousands(rate), thousands(low), thousands(high))
            } else {
                format!("{} inj/s", thousands(rate))
            },
            floor: format!(
                "bare ExportKey {format}, best of 1 and {} in flight: {} calls/s ({:.2} ms of hsm-proxy per key)",
                config.concurrency,
                thousands(floor),
                1_000.0 / floor
            ),
            ratio: format!("{:.2}", rate / floor),
            goal: format!("≥ {} inj/s", thousands(KI_GOAL)),
            verdict: match (rate >= KI_GOAL, failures) {
                (true, 0) if one.devices >= 10_000 => "met".into(),
                (true, 0) => "met (smaller size)".into(),
                (false, 0) => "MISSED".into(),
                (_, failures) => format!("{failures} failures"),
            },
        });
        for (index, run) in one.runs.iter().enumerate() {
            report.notes.push(format!(
                "ki {} rep {}: {} injected, {} devices failed ({} injections in key-injection's log unconfirmed) in {:.2} s (set-up {:.0} s, not timed); device side p50/p99: activate {:.1}/{:.1} ms, activated → confirmed {:.1}/{:.1} ms; key-injection's log p50/p99: requested → derived {:.1}/{:.1} ms, derived → delivered {:.1}/{:.1} ms, delivered → confirmed {:.1}/{:.1} ms; floors: {}",
                one.name,
                index + 1,
                run.injected,
                run.failures,
                run.failed_injections,
                run.seconds,
                run.set_up_seconds,
                run.activate.p50_ms,
                run.activate.p99_ms,
                run.receive.p50_ms,
                run.receive.p99_ms,
                run.requested_to_derived.p50_ms,
                run.requested_to_derived.p99_ms,
                run.derived_to_delivered.p50_ms,
                run.derived_to_delivered.p99_ms,
                run.delivered_to_confirmed.p50_ms,
                run.delivered_to_confirmed.p99_ms,
                run.floors
                    .iter()
                    .map(|floor| format!(
                        "{} ExportKey at {} in flight {:.0}/s, p50 {:.2} ms, {} conflicts retried",
                        floor.calls, floor.concurrency, floor.rate, floor.p50_ms, floor.conflicts
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if let Ok(json) = serde_json::to_string(one) {
            report.notes.push(format!("ki json: {json}"));
        }
    }
}
