//! Remote key injection end to end over real infrastructure: PostgreSQL logs, NATS JetStream
//! between the services, real mTLS. terminal-management and the hsm-proxy run in this
//! process; key-injection runs as its own process, so that it can be killed. 100 simulated
//! PEDs (the terminal simulator: RSA devices get TR-34, P-256 devices ECDH + TR-31 D) boot,
//! activate over mTLS and so start their injections; key-injection is killed (SIGKILL) in
//! the middle, between derivation and delivery, and restarted; every device then downloads,
//! installs and confirms its key, with no KSN handed out twice, and its first PIN block
//! translates through the hsm-proxy to the zone PIN key. Then: a wrong KCV from a device is
//! refused with an event and the terminal re-keyed on command; a blacklisted terminal's keys
//! are revoked; the tenant's API key (issued by terminal-management) reads the inventory and
//! the key matrix and cannot read another tenant's; and a BDK rotation re-keys the estate in
//! batches.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hsm_proxy::rpc::HsmClient;
use mpos_config::Vars;
use mpos_proto::hsm as hsm_pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, Pin, PinBlockFormat};
use rcgen::{Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256};
use rsa::pkcs8::EncodePrivateKey;
use secrecy::SecretString;
use serde_json::{Value, json};
use terminal_sim::pki::{DeviceKeyKind, ManufacturerCa};
use terminal_sim::terminal::{Terminal, TerminalConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod common;

use common::{HeldPublicKey, create_kdh, import_components, params, start_soft_hsm};

const TOKEN: &str = "operator-token-for-activation-test-0123456789";
/// The ANSI X9.24-1:2009 Annex A.4 test BDK, and a second one for the rotation.
const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
const BDK_2: &str = "FEDCBA98765432100123456789ABCDEF";
/// A zone PIN key (any double-length TDES key).
const ZPK: &str = "89ABCDEF0123456776543210FEDCBA98";
const DEVICES: usize = 100;
/// Of which RSA (TR-34); the others P-256 (ECDH).
const RSA_DEVICES: usize = 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A small HTTP client for the admin APIs.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, token, path, None).await
    }
}

struct KiProcess {
    child: Child,
    http: String,
}

impl Drop for KiProcess {
    fn drop(&mut self) {
        // A failed assertion must not leave the process running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the key-injection binary and waits until it is ready.
async fn start_key_injection(
    env: &[(String, String)],
    admin_port: u16,
    http_port: u16,
) -> KiProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_key-injection"));
    command.env_clear();
    for (name, value) in env {
        command.env(name, value);
    }
    let process = KiProcess {
        child: command
            .env("MPOS_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("MPOS_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env(
                "MPOS_LOG",
                std::env::var("MPOS_TEST_KI_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log_file())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn key-injection"),
        http: format!("http://127.0.0.1:{http_port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await
            && response.status().as_u16() == 200
        {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("key-injection did not become ready");
}

/// Where the key-injection process logs: `MPOS_TEST_KI_LOG_FILE`, or nowhere.
fn log_file() -> Stdio {
    std::env::var("MPOS_TEST_KI_LOG_FILE")
        .ok()
        .and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        })
        .map_or_else(Stdio::null, Stdio::from)
}

async fn count_events(store: &mpos_es::EventStore, event_type: &str) -> usize {
    store
        .read_after(0, 1_000_000)
        .await
        .expect("read")
        .iter()
        .filter(|event| event.event.event_type == event_type)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_devices_boot_get_keys_survive_a_crash_and_are_rekeyed() {
    let postgres = std::env::var("MPOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let bus_url = format!("{nats}?namespace={}", unique("rki"));
    let tms_db = format!("{postgres}?schema={}", unique("rki_tms_"));
    let ki_db = format!("{postgres}?schema={}", unique("rki_ki_"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancellationToken::new();
    let token = SecretString::from(TOKEN.to_owned());
    let config = |service: &str, database: &str| {
        let vars = Vars::from_pairs(vec![
            ("MPOS_DATABASE_URL", database.to_owned()),
            ("MPOS_BUS_URL", bus_url.clone()),
            ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
            ("MPOS_POLL_INTERVAL_MS", "20".to_owned()),
        ]);
        CommonConfig::from_vars(&vars, service, "127.0.0.1:0", "127.0.0.1:0").expect("config")
    };

    // The platform's TLS server certificate (devices trust it) for both device APIs.
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("server");
    let server_der = server.cert.der().to_vec();
    let (server_cert, server_key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&server_cert, server.cert.pem()).expect("write");
    std::fs::write(&server_key, server.signing_key.serialize_pem()).expect("write");
    let server_identity =
        device_identity::ServerIdentity::from_pem_files(&server_cert, &server_key).expect("tls");

    // The hsm-proxy (soft backend) and terminal-management, in this process, on NATS.
    let hsm_common = config(
        hsm_proxy::SERVICE,
        &format!("sqlite://{}", dir.path().join("hsm.db").display()),
    );
    let hsm_running = start_soft_hsm(&hsm_common, &dir.path().join("keys"), &token, &cancel).await;
    let tms_common = config(terminal_management::SERVICE, &tms_db);
    let tms_infrastructure = Infrastructure::default();
    let (tms_store, tms_bus) = tms_infrastructure
        .connect(&tms_common, &cancel)
        .await
        .expect("tms infrastructure");
    let parameter_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let tms_running = terminal_management::service::start(
        &tms_common,
        tms_store,
        &tms_bus,
        &tms_infrastructure,
        &terminal_management::service::TmOptions {
            operator_token: token.clone(),
            parameter_signing_key: parameter_key.clone(),
            device_addr: "127.0.0.1:0".parse().expect("addr"),
            device_tls: Some(server_identity.clone()),
            more_device_routes: None,
            attestation_feed: None,
        },
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        &cancel,
    )
    .await
    .expect("terminal-management");
    let tms = Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", tms_running.http_addr),
    };

    // The tenants, their estate, the manufacturer CA and 100 bound PEDs.
    for tenant in ["acme", "other"] {
        let (status, body) = tms
            .post(
                TOKEN,
                "/v1/tenants",
                json!({"tenantId": tenant, "name": tenant}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = tms
        .post(
            TOKEN,
            "/v1/tenants/acme/api-keys",
            json!({"role": "API_KEY_ROLE_OPERATOR", "label": "rki"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let acme_key = body["secret"].as_str().expect("secret").to_owned();
    let (status, body) = tms
        .post(
            TOKEN,
            "/v1/tenants/other/api-keys",
            json!({"role": "API_KEY_ROLE_ADMIN", "label": "x"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let other_key = body["secret"].as_str().expect("secret").to_owned();
    for (node, kind, parent) in [
        ("m-1", "NODE_KIND_MERCHANT", ""),
        ("s-1", "NODE_KIND_STORE", "m-1"),
        ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
    ] {
        let (status, body) = tms
            .post(
                &acme_key,
                "/v1/tenants/acme/nodes",
                json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let vendor = ManufacturerCa::generate("Vendor A Device CA").expect("ca");
    let (status, body) = tms
        .post(
            TOKEN,
            "/v1/manufacturer-cas",
            json!({"name": "Vendor A", "certificatePem": vendor.certificate_pem()}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let identities: Vec<_> = {
        let vendor = std::sync::Arc::new(vendor);
        let mut tasks = Vec::new();
        for device in 0..DEVICES {
            let vendor = vendor.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let kind = if device < RSA_DEVICES {
                    DeviceKeyKind::Rsa2048
                } else {
                    DeviceKeyKind::P256
                };
                let serial = u16::try_from(device + 1).expect("serial").to_be_bytes();
                vendor.issue(&serial, kind).expect("device")
            }));
        }
        let mut identities = Vec::new();
        for task in tasks {
            identities.push(task.await.expect("join"));
        }
        identities
    };
    for (device, identity) in identities.iter().enumerate() {
        let (status, body) = tms
            .post(&acme_key, "/v1/tenants/acme/terminals", json!({"terminalId": format!("t-{device}"), "kind": "TERMINAL_KIND_PED", "parentId": "g-1", "certificatePem": identity.certificate_pem()}))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // The tenant's keys in the HSM: the BDKs, the zone PIN key, the KDH key pair certified by
    // the provider's RKI CA.
    let caller = mpos_bus::connect(&bus_url).await.expect("bus");
    let hsm = HsmClient::new(
        caller.requests.expect("request-reply"),
        "operator:test",
        Duration::from_secs(60),
    );
    import_components(&hsm, "acme", BDK, "B0", "X", "bdk").await;
    import_components(&hsm, "acme", BDK_2, "B0", "X", "bdk-2").await;
    import_components(&hsm, "acme", ZPK, "P0", "B", "zpk").await;
    let kdh_public = create_kdh(&hsm, "acme").await;
    let rki_ca_key = {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa keygen");
        let der = key.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec();
        KeyPair::from_pkcs8_der_and_sign_algo(&der.into(), &PKCS_RSA_SHA256).expect("key")
    };
    let rki_ca_params = params("Acme RKI CA", true, KeyUsagePurpose::KeyCertSign);
    let rki_ca_der = rki_ca_params
        .self_signed(&rki_ca_key)
        .expect("ca")
        .der()
        .to_vec();
    let rki_ca = Issuer::new(rki_ca_params, rki_ca_key);
    let kdh_certificate = params("Acme KDH", false, KeyUsagePurpose::DigitalSignature)
        .signed_by(&HeldPublicKey(kdh_public), &rki_ca)
        .expect("kdh certificate");

    // key-injection as its own process.
    let (ki_admin, ki_http, ki_device) = (free_port(), free_port(), free_port());
    let ki_env: Vec<(String, String)> = vec![
        ("MPOS_DATABASE_URL".into(), ki_db.clone()),
        ("MPOS_BUS_URL".into(), bus_url.clone()),
        ("MPOS_CHAIN_SIGNING_KEY".into(), "2b".repeat(32)),
        ("MPOS_OPERATOR_TOKEN".into(), TOKEN.into()),
        ("MPOS_POLL_INTERVAL_MS".into(), "20".into()),
        (
            "MPOS_KI_DEVICE_ADDR".into(),
            format!("127.0.0.1:{ki_device}"),
        ),
        (
            "MPOS_KI_DEVICE_TLS_CERT".into(),
            server_cert.display().to_string(),
        ),
        (
            "MPOS_KI_DEVICE_TLS_KEY".into(),
            server_key.display().to_string(),
        ),
        ("MPOS_KI_SWEEP_INTERVAL_MS".into(), "200".into()),
        ("MPOS_KI_HSM_TIMEOUT_MS".into(), "30000".into()),
    ];
    // Its log, read by the test (connected first: the schema is made once).
    let ki_store = mpos_es::EventStore::connect(&ki_db, key_injection::SERVICE)
        .await
        .expect("ki store");
    let mut ki = start_key_injection(&ki_env, ki_admin, ki_http).await;
    let ki_api = Api {
        client: reqwest::Client::new(),
        base: ki.http.clone(),
    };
    let (status, body) = ki_api
        .call(
            reqwest::Method::PUT,
            TOKEN,
            "/v1/tenants/acme/kdh-certificate",
            Some(json!({"certificatePem": kdh_certificate.pem()})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // A certificate of another key is refused.
    let (status, body) = ki_api
        .call(
            reqwest::Method::PUT,
            TOKEN,
            "/v1/tenants/acme/kdh-certificate",
            Some(json!({"certificatePem": vendor_free_certificate()})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // The tenant's own key assigns its BDKs (the key reached key-injection through
    // terminal-management's events: wait for it).
    let mut assigned = false;
    for _ in 0..100 {
        let (status, body) = ki_api
            .post(&acme_key, "/v1/tenants/acme/bdks", json!({"bdkId": "bdk-1", "hsmKeyId": "alias/bdk", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": "FFFF987654"}))
            .await;
        if status == 201 {
            assigned = true;
            break;
        }
        assert_eq!(status, 401, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(assigned, "the tenant's API key is known to key-injection");
    // A tenant key cannot set the KDH certificate.
    let (status, _) = ki_api
        .call(
            reqwest::Method::PUT,
            &acme_key,
            "/v1/tenants/acme/kdh-certificate",
            Some(json!({"certificatePem": kdh_certificate.pem()})),
        )
        .await;
    assert_eq!(status, 403);

    // The devices boot: activation over mTLS on terminal-management starts the injections.
    let sim_config = |device: usize| TerminalConfig {
        terminal_id: format!("t-{device}"),
        identity: identities[device].clone(),
        tms_url: format!("https://localhost:{}", tms_running.device_addr.port()),
        ki_url: format!("https://localhost:{ki_device}"),
        server_roots: vec![server_der.clone()],
        kdh_trust: rki_ca_der.clone(),
        parameter_verifying_key: Some(parameter_key.verifying_key()),
    };
    let mut terminals: Vec<Terminal> = (0..DEVICES)
        .map(|device| Terminal::new(sim_config(device)).expect("terminal"))
        .collect();
    for terminal in &mut terminals {
        let state = terminal.activate().await.expect("activate");
        assert_eq!(state.state, "TERMINAL_STATE_ACTIVE");
    }

    // Crash key-injection in the middle: after some keys were derived, before any delivery.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let derived = count_events(&ki_store, "mpos.key_injection.v1.InjectionKeyDerived").await;
        if derived >= DEVICES / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys are derived after activation ({derived})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ki.child.kill().expect("SIGKILL");
    ki.child.wait().expect("wait");
    let delivered = count_events(&ki_store, "mpos.key_injection.v1.InjectionDelivered").await;
    let derived = count_events(&ki_store, "mpos.key_injection.v1.InjectionKeyDerived").await;
    assert_eq!(delivered, 0, "killed before any device downloaded a key");
    assert!(
        derived >= DEVICES / 2,
        "killed between derivation and delivery"
    );
    let mut ki = start_key_injection(&ki_env, ki_admin, ki_http).await;

    // Every device downloads, unwraps, installs and confirms its key.
    let until = Instant::now() + Duration::from_secs(180);
    let mut tasks = Vec::new();
    for mut terminal in terminals {
        tasks.push(tokio::spawn(async move {
            let installed = terminal.receive_key(until).await;
            (terminal, installed)
        }));
    }
    let mut terminals = Vec::new();
    let mut ksns = HashSet::new();
    for task in tasks {
        let (terminal, installed) = task.await.expect("join");
        let installed = installed.expect("key");
        assert!(ksns.insert(installed.initial_key_id.clone()), "a KSN twice");
        assert!(
            installed.initial_key_id.starts_with("FFFF987654"),
            "{installed:?}"
        );
        terminals.push(terminal);
    }
    assert_eq!(ksns.len(), DEVICES);
    // The BDK's log: one identity per injection, none twice.
    let allocations: Vec<String> = ki_store
        .read_aggregate(key_injection::bdk::AGGREGATE_TYPE, "acme/bdk-1", 0)
        .await
        .expect("bdk log")
        .iter()
        .filter(|event| event.event.event_type == "mpos.key_injection.v1.DeviceIdAllocated")
        .map(|event| event.event.payload.clone())
        .collect();
    assert_eq!(
        allocations.len(),
        DEVICES,
        "one allocation per injection, the crash resumed"
    );
    assert_eq!(
        count_events(&ki_store, "mpos.key_injection.v1.InjectionConfirmed").await,
        DEVICES
    );

    // Each device's first PIN block translates through the hsm-proxy to the zone PIN key.
    let zpk = SecretBytes::from_slice(&hex::decode(ZPK).expect("hex"));
    let pan = Pan::new("4012345678909").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    // ISO format 0 has no random fill: the block under the zone PIN key is known.
    let expected_block = hex::encode_upper(
        paycrypto::pin::encrypt_pin_block(
            PinBlockFormat::Iso0,
            &zpk,
            &pin,
            Some(&pan),
            &mut rand::rngs::OsRng,
        )
        .expect("pin block"),
    );
    for terminal in &mut terminals {
        let block = terminal.pin_block(&pan, &pin).expect("pin block");
        let translated: hsm_pb::TranslatePinDataResponse = hsm
            .call(
                "TranslatePinData",
                &hsm_pb::TranslatePinDataRequest {
                    tenant_id: "acme".into(),
                    incoming: Some(block.hsm_pin_block_key("alias/bdk")),
                    outgoing: Some(hsm_pb::PinBlockKey {
                        key: "alias/zpk".into(),
                        format: hsm_pb::PinBlockFormat::Iso0.into(),
                        dukpt: None,
                    }),
                    pin_block: hex::encode_upper(&block.block),
                    pan: "4012345678909".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("translate");
        assert_eq!(
            translated.pin_block,
            expected_block,
            "{}",
            terminal.terminal_id()
        );
    }

    // The inventory, through the tenant's own key; another tenant sees nothing.
    let (status, body) = ki_api
        .get(&acme_key, "/v1/tenants/acme/terminals/t-0/keys")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slots"][0]["bdkId"], "bdk-1");
    let (status, _) = ki_api
        .get(&other_key, "/v1/tenants/acme/terminals/t-0/keys")
        .await;
    assert_eq!(status, 404, "another tenant's key sees nothing");
    let (status, body) = ki_api.get(&acme_key, "/v1/tenants/acme/key-matrix").await;
    assert_eq!(status, 200, "{body}");
    let entries = body["entries"].as_array().expect("entries");
    let usage_count = |usage: &str| {
        entries
            .iter()
            .filter(|entry| entry["keyUsage"] == usage)
            .map(|entry| {
                entry["count"]
                    .as_str()
                    .and_then(|c| c.parse::<u64>().ok())
                    .or(entry["count"].as_u64())
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    assert_eq!(usage_count("B0"), 2, "{body}");
    assert_eq!(usage_count("S0"), 1, "{body}");
    assert_eq!(usage_count("B1"), DEVICES as u64, "{body}");

    // Long poll: a download waits up to waitSeconds (at most 25) for a key, then answers 404;
    // a key made meanwhile answers it at once.
    let device_client =
        terminal_sim::client::device_client(&identities[1], std::slice::from_ref(&server_der))
            .expect("client");
    let keys_url = format!("https://localhost:{ki_device}/v1/devices/t-1/keys");
    let response = device_client
        .get(format!("{keys_url}?waitSeconds=26"))
        .send()
        .await
        .expect("download");
    assert_eq!(response.status().as_u16(), 400);
    let started = Instant::now();
    let response = device_client
        .get(format!("{keys_url}?waitSeconds=1"))
        .send()
        .await
        .expect("download");
    assert_eq!(response.status().as_u16(), 404, "nothing waits for t-1");
    assert!(started.elapsed() >= Duration::from_millis(950), "it waited");
    let waiting = {
        let (client, url) = (device_client.clone(), format!("{keys_url}?waitSeconds=20"));
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client.get(url).send().await.expect("download");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("json");
            (status, body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A wrong KCV from a device: refused, recorded; the terminal is re-keyed on command.
    let failed_before = count_events(&ki_store, "mpos.key_injection.v1.InjectionFailed").await;
    let (status, body) = ki_api
        .post(
            &acme_key,
            "/v1/tenants/acme/terminals/t-1/keys/reinject",
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let injection_id = body["injectionId"].as_str().expect("id").to_owned();
    let (status, body, waited) = waiting.await.expect("long poll");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["injectionId"], injection_id.as_str(), "{body}");
    assert!(
        waited < Duration::from_secs(15),
        "woken by the key, not the deadline: {waited:?}"
    );
    let response = device_client
        .post(format!(
            "https://localhost:{ki_device}/v1/devices/t-1/keys/{injection_id}/confirm"
        ))
        .json(&json!({"kcv": "000000"}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "bad_request", "{body}");
    assert_eq!(
        count_events(&ki_store, "mpos.key_injection.v1.InjectionFailed").await,
        failed_before + 1
    );
    let (status, _) = ki_api
        .post(
            &acme_key,
            "/v1/tenants/acme/terminals/t-1/keys/reinject",
            json!({}),
        )
        .await;
    assert_eq!(status, 202);
    let installed = terminals[1]
        .receive_key(Instant::now() + Duration::from_secs(60))
        .await
        .expect("re-injected key");
    assert!(ksns.insert(installed.initial_key_id), "a fresh KSN");

    // Blacklisting a terminal revokes its keys.
    let (status, body) = tms
        .post(
            &acme_key,
            "/v1/tenants/acme/terminals/t-2/blacklist",
            json!({"reason": "stolen"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut revoked = false;
    for _ in 0..100 {
        let (_, body) = ki_api
            .get(&acme_key, "/v1/tenants/acme/terminals/t-2/keys")
            .await;
        if body["slots"][0]["revoked"] == true {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "the blacklisted terminal's keys are revoked");

    // BDK rotation: new devices get bdk-2; the estate is re-keyed in batches of 25.
    let (status, body) = ki_api
        .post(&acme_key, "/v1/tenants/acme/bdks", json!({"bdkId": "bdk-2", "hsmKeyId": "alias/bdk-2", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": "FFFF123456"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = ki_api
        .post(
            &acme_key,
            "/v1/tenants/acme/bdks/bdk-1/rotate",
            json!({"toBdkId": "bdk-2", "batchSize": 25}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["terminals"],
        (DEVICES - 1) as u64,
        "all but the revoked terminal: {body}"
    );
    // The devices poll for keys (as a terminal does between payments), all at once.
    let until = Instant::now() + Duration::from_secs(240);
    let mut tasks = Vec::new();
    for (device, mut terminal) in terminals.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            if device == 2 {
                return None;
            }
            Some(terminal.receive_key(until).await)
        }));
    }
    let mut rekeyed = 0;
    for task in tasks {
        if let Some(installed) = task.await.expect("join") {
            let installed = installed.expect("rotated key");
            assert!(
                installed.initial_key_id.starts_with("FFFF123456"),
                "{installed:?}"
            );
            rekeyed += 1;
        }
    }
    assert_eq!(rekeyed, DEVICES - 1);
    let mut completed = false;
    for _ in 0..100 {
        let (_, body) = ki_api
            .get(&acme_key, "/v1/tenants/acme/bdks/bdk-1/rotation")
            .await;
        if body["completed"] == true {
            assert_eq!(body["rekeyed"], (DEVICES - 1) as u64, "{body}");
            completed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(completed, "the rotation completes");
    // No key material in any event.
    for event in ki_store.read_after(0, 1_000_000).await.expect("read") {
        assert!(!event.event.payload.contains("6AC292FAA1315B4D"));
    }

    ki.child.kill().expect("kill");
    ki.child.wait().expect("wait");
    cancel.cancel();
    tms_running.join().await;
    hsm_running.join().await;
}

/// A certificate of a key that is not the tenant's KDH key.
fn vendor_free_certificate() -> String {
    rcgen::generate_simple_self_signed(vec!["not-the-kdh".to_owned()])
        .expect("certificate")
        .cert
        .pem()
}
