//! terminal-management in process (SQLite, in-memory bus) with its device API over real
//! mTLS, and the operator steps that set up an estate.

use mpos_config::Vars;
use mpos_service::{CommonConfig, Infrastructure};
use mpos_telemetry::Readiness;
use secrecy::SecretString;
use serde_json::json;
use terminal_sim::{ManufacturerCa, Terminal, TerminalConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
pub const PARAMETER_SEED: [u8; 32] = [7; 32];

pub struct Tms {
    pub admin: String,
    pub device: String,
    pub server_root: Vec<u8>,
    client: reqwest::Client,
    cancel: CancellationToken,
    running: Option<terminal_management::service::Running>,
    _dir: tempfile::TempDir,
}

impl Tms {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("server certificate");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, server.cert.pem()).expect("write");
        std::fs::write(&key_path, server.signing_key.serialize_pem()).expect("write");
        let device_tls =
            terminal_management::service::DeviceTls::from_pem_files(&cert_path, &key_path)
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
            more_device_routes: None,
            attestation_feed: None,
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

    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.join().await;
        }
    }

    pub async fn call(
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

    pub async fn post(
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
    pub async fn estate(&self, ca: &ManufacturerCa) -> String {
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

    pub fn terminal(
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

pub async fn bind(tms: &Tms, key: &str, terminal_id: &str, pem: &str) {
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
