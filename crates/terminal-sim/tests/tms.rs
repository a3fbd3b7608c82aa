//! The simulated PED against an in-process terminal-management over real mTLS: a manufacturer
//! CA registered by the operator, the PED bound by its certificate, first boot, a signed
//! parameter download verified on the device and its acknowledgement recorded by the
//! platform.

use std::time::{Duration, Instant};

use mpos_config::Vars;
use mpos_service::{CommonConfig, Infrastructure};
use mpos_telemetry::Readiness;
use secrecy::SecretString;
use serde_json::json;
use terminal_sim::{DeviceKeyKind, ManufacturerCa, SimError, Terminal, TerminalConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
const PARAMETER_SEED: [u8; 32] = [7; 32];

struct Tms {
    admin: String,
    device: String,
    server_root: Vec<u8>,
    client: reqwest::Client,
    cancel: CancellationToken,
    running: Option<terminal_management::service::Running>,
    _dir: tempfile::TempDir,
}

impl Tms {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("server certificate");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, server.cert.pem()).expect("write");
        std::fs::write(&key_path, server.signing_key.serialize_pem()).expect("write");
        let device_tls = terminal_management::service::DeviceTls::from_files(&cert_path, &key_path)
            .expect("device tls");
        let vars = Vars::from_pairs(vec![
            (
                "MPOS_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("tm.db").display()),
            ),
            (
                "MPOS_BUS_URL",
                format!("memory://sim-{}", uuid::Uuid::new_v4().simple()),
            ),
            ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
            ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
        ]);
        let config = CommonConfig::from_vars(
            &vars,
            terminal_management::SERVICE,
            "127.0.0.1:0",
            "127.0.0.1:0",
        )
        .expect("config");
        let cancel = CancellationToken::new();
        let infrastructure = Infrastructure::default();
        infrastructure.register_checks(&Readiness::new(), false);
        let (store, bus) = infrastructure
            .connect(&config, &cancel)
            .await
            .expect("infrastructure");
        let options = terminal_management::service::TmOptions {
            operator_token: SecretString::from(TOKEN.to_owned()),
            parameter_signing_key: ed25519_dalek::SigningKey::from_bytes(&PARAMETER_SEED),
            device_addr: "127.0.0.1:0".parse().expect("addr"),
            device_tls: Some(device_tls),
        };
        let running = terminal_management::service::start(
            &config,
            store,
            &bus,
            &infrastructure,
            &options,
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            &cancel,
        )
        .await
        .expect("terminal-management");
        Self {
            admin: format!("http://{}", running.http_addr),
            device: format!("https://localhost:{}", running.device_addr.port()),
            server_root: server.cert.der().to_vec(),
            client: reqwest::Client::new(),
            cancel,
            running: Some(running),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.join().await;
        }
    }

    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.admin))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    async fn post(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call(token, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// The operator registers `ca`; tenant acme with m-1 → s-1 → g-1 and complete
    /// parameters; returns an operator key of acme.
    async fn estate(&self, ca: &ManufacturerCa) -> String {
        let (status, body) = self
            .post(
                TOKEN,
                "/v1/manufacturer-cas",
                json!({"name": ca.name(), "certificatePem": ca.certificate_pem()}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .post(
                TOKEN,
                "/v1/tenants",
                json!({"tenantId": "acme", "name": "acme"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .post(
                TOKEN,
                "/v1/tenants/acme/api-keys",
                json!({"role": "API_KEY_ROLE_OPERATOR", "label": "tests"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let key = body["secret"].as_str().expect("secret").to_owned();
        for (node, kind, parent) in [
            ("m-1", "NODE_KIND_MERCHANT", ""),
            ("s-1", "NODE_KIND_STORE", "m-1"),
            ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
        ] {
            let (status, body) = self
                .post(
                    &key,
                    "/v1/tenants/acme/nodes",
                    json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        let (status, body) = self
            .call(
                &key,
                reqwest::Method::PUT,
                "/v1/tenants/acme/parameters",
                Some(json!({
                    "floorLimits": [{"currency": "EUR", "amount": "5000"}],
                    "terminalActionCodes": {"denial": "0010000000", "online": "FC50BCF800", "defaultCode": "FC50BCA000"},
                    "merchantCategoryCode": "5411",
                    "transactionCurrency": "EUR",
                    "terminalCountryCode": "276"
                })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        key
    }

    fn terminal(
        &self,
        terminal_id: &str,
        identity: terminal_sim::DeviceIdentity,
        parameter_key: Option<ed25519_dalek::VerifyingKey>,
    ) -> Terminal {
        Terminal::new(TerminalConfig {
            terminal_id: terminal_id.to_owned(),
            identity,
            tms_url: self.device.clone(),
            // No key-injection in these tests.
            ki_url: self.device.clone(),
            server_roots: vec![self.server_root.clone()],
            kdh_trust: Vec::new(),
            parameter_verifying_key: parameter_key,
        })
        .expect("terminal")
    }
}

async fn bind(tms: &Tms, key: &str, terminal_id: &str, pem: &str) {
    let (status, body) = tms
        .post(
            key,
            "/v1/tenants/acme/terminals",
            json!({"terminalId": terminal_id, "kind": "TERMINAL_KIND_PED", "parentId": "g-1", "certificatePem": pem}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "TERMINAL_STATE_BOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_ped_activates_over_mtls_and_installs_signed_parameters() {
    let tms = Tms::start().await;
    let vendor = ManufacturerCa::generate("Sim Vendor Device CA").expect("ca");
    let key = tms.estate(&vendor).await;
    let preloaded = ed25519_dalek::SigningKey::from_bytes(&PARAMETER_SEED).verifying_key();

    // An RSA PED (TR-34 capable) and a P-256 PED (ECDH capable) both authenticate.
    let rsa = vendor
        .issue(&[0x5A, 0x01], DeviceKeyKind::Rsa2048)
        .expect("rsa device");
    let ec = vendor
        .issue(&[0x5A, 0x02], DeviceKeyKind::P256)
        .expect("ec device");
    bind(&tms, &key, "t-1", rsa.certificate_pem()).await;
    bind(&tms, &key, "t-2", ec.certificate_pem()).await;

    let mut t1 = tms.terminal("t-1", rsa, Some(preloaded));
    let state = t1.activate().await.expect("activate");
    assert_eq!(
        (
            state.tenant_id.as_str(),
            state.terminal_id.as_str(),
            state.state.as_str()
        ),
        ("acme", "t-1", "TERMINAL_STATE_ACTIVE")
    );
    assert_eq!(
        state.activation_method,
        "ACTIVATION_METHOD_DEVICE_CERTIFICATE"
    );
    // A second boot changes nothing.
    assert_eq!(t1.activate().await.expect("again"), state);

    let installed = t1.download_parameters().await.expect("parameters");
    assert!(installed.version > 0);
    assert_eq!(installed.status.installed_version, installed.version);
    assert!(!installed.status.behind);
    assert_eq!(installed.set.terminal_id, "t-1");
    let values = installed
        .set
        .parameters
        .as_ref()
        .and_then(|p| p.values.as_ref())
        .expect("values");
    assert_eq!(values.merchant_category_code.as_deref(), Some("5411"));
    assert_eq!(t1.installed_parameter_version(), installed.version);

    // The platform records the acknowledgement.
    let (status, body) = tms
        .call(
            &key,
            reqwest::Method::GET,
            "/v1/tenants/acme/parameter-status",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let t1_status = body["terminals"]
        .as_array()
        .expect("terminals")
        .iter()
        .find(|terminal| terminal["terminalId"] == "t-1")
        .expect("t-1")
        .clone();
    assert_eq!(
        t1_status["installedVersion"].as_str(),
        Some(installed.version.to_string().as_str()),
        "{body}"
    );

    // The EC device fetches the key from the platform (no preloaded key) and works too.
    let mut t2 = tms.terminal("t-2", ec, None);
    t2.activate().await.expect("activate t-2");
    let installed = t2.download_parameters().await.expect("parameters t-2");
    assert_eq!(installed.set.terminal_id, "t-2");
    assert!(!installed.key_id.is_empty());

    // The device has no key yet: no PIN block.
    assert!(matches!(
        t2.pin_block(
            &paycrypto::pin::Pan::new("4012345678909").expect("pan"),
            &paycrypto::pin::Pin::new("1234").expect("pin")
        ),
        Err(SimError::NoKey)
    ));
    tms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ped_refuses_parameters_under_another_key_and_the_platform_refuses_strangers() {
    let tms = Tms::start().await;
    let vendor = ManufacturerCa::generate("Sim Vendor Device CA").expect("ca");
    let key = tms.estate(&vendor).await;
    let device = vendor
        .issue(&[0x5B, 0x01], DeviceKeyKind::P256)
        .expect("device");
    bind(&tms, &key, "t-1", device.certificate_pem()).await;

    // A device preloaded with another signing key refuses the set and acknowledges nothing.
    let wrong = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let mut terminal = tms.terminal("t-1", device.clone(), Some(wrong));
    terminal.activate().await.expect("activate");
    let error = terminal.download_parameters().await.expect_err("wrong key");
    assert!(matches!(error, SimError::Parameters(_)), "{error}");
    assert_eq!(terminal.installed_parameter_version(), 0);
    let (_, body) = tms
        .call(
            &key,
            reqwest::Method::GET,
            "/v1/tenants/acme/parameter-status",
            None,
        )
        .await;
    assert!(body["upToDate"].as_u64().is_none(), "{body}");

    // A device configured for another terminal than it is bound to stops at activation.
    let mut confused = tms.terminal("t-9", device, None);
    let error = confused.activate().await.expect_err("other terminal");
    assert!(matches!(error, SimError::Protocol { .. }), "{error}");

    // An unbound device of the trusted vendor: refused by the API.
    let unbound = vendor
        .issue(&[0x5B, 0x02], DeviceKeyKind::P256)
        .expect("device");
    let mut stranger = tms.terminal("t-2", unbound, None);
    let error = stranger.activate().await.expect_err("unbound");
    assert!(
        matches!(error, SimError::Refused { status: 403, ref code, .. } if code == "forbidden"),
        "{error}"
    );
    // A device of an unregistered vendor: no TLS session at all.
    let rogue = ManufacturerCa::generate("Rogue CA")
        .expect("rogue ca")
        .issue(&[0x5B, 0x03], DeviceKeyKind::P256)
        .expect("rogue device");
    let mut rogue = tms.terminal("t-3", rogue, None);
    let error = rogue.activate().await.expect_err("unknown vendor");
    assert!(matches!(error, SimError::Transport { .. }), "{error}");
    // No key-injection is listening here: waiting for a key ends with the platform's answer.
    let error = terminal
        .receive_key(Instant::now() + Duration::from_secs(2))
        .await
        .expect_err("no key-injection");
    assert!(
        matches!(error, SimError::Refused { .. } | SimError::Timeout { .. }),
        "{error}"
    );
    tms.stop().await;
}
