//! Starts the hsm-proxy on real infrastructure (or the embedded default), on random ports,
//! for black-box tests: NATS request-reply through `HsmClient`, the admin API over HTTP.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use hsm_proxy::rpc::HsmClient;
use hsm_proxy::sealing::SealedCardData;
use hsm_proxy::service::HsmConfig;
use mpos_config::Vars;
use mpos_es::EventStore;
use mpos_proto::hsm as pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
pub const SIGNING_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
/// The soft backends' LMK in tests.
pub const LMK: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";

pub struct TestService {
    pub base: String,
    pub store: EventStore,
    pub http: reqwest::Client,
    pub client: HsmClient,
    /// The caller's raw request-reply port (for malformed bodies).
    pub requests: std::sync::Arc<dyn mpos_bus::RequestReply>,
    pub hsm: std::sync::Arc<hsm_proxy::engine::Hsm>,
    /// The hsm-proxy process's sealer.
    pub sealer: std::sync::Arc<mpos_seal::Sealer>,
    pub dir: tempfile::TempDir,
    cancel: CancellationToken,
    running: Option<hsm_proxy::service::Running>,
}

impl TestService {
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.join().await;
        }
    }

    pub async fn event_count(&self) -> usize {
        self.store.read_after(0, 100_000).await.expect("read").len()
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Calls an operation over the bus.
    pub async fn call<Q: prost::Message, R: prost::Message + Default>(
        &self,
        operation: &str,
        request: &Q,
    ) -> Result<R, mpos_errors::ServiceError> {
        self.client
            .call(operation, request)
            .await
            .map_err(mpos_errors::ServiceError::from)
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub fn postgres_url() -> String {
    let base = std::env::var("MPOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    format!("{base}?schema={}", unique("hsm_"))
}

pub fn nats_url() -> String {
    let base =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    format!("{base}?namespace={}", unique("hsm"))
}

/// SQLite, the in-process bus and one soft backend: the embedded default.
pub async fn embedded() -> TestService {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("hsm.db").display());
    let backends = vec![format!("soft://{}", dir.path().join("keys").display())];
    start(
        dir,
        &database,
        &format!("memory://{}", unique("hsm")),
        backends,
    )
    .await
}

/// SQLite, the in-process bus and the given backend URLs (e.g. `payshield://…`).
pub async fn embedded_with(backends: Vec<String>) -> TestService {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("hsm.db").display());
    start(
        dir,
        &database,
        &format!("memory://{}", unique("hsm")),
        backends,
    )
    .await
}

/// PostgreSQL, NATS and one soft backend.
pub async fn distributed() -> TestService {
    let dir = tempfile::tempdir().expect("tempdir");
    let backends = vec![format!("soft://{}", dir.path().join("keys").display())];
    start(dir, &postgres_url(), &nats_url(), backends).await
}

pub async fn start(
    dir: tempfile::TempDir,
    database_url: &str,
    bus_url: &str,
    backends: Vec<String>,
) -> TestService {
    start_with(
        dir,
        database_url,
        bus_url,
        backends,
        None,
        Duration::from_millis(500),
    )
    .await
}

/// Like [`start`], with the pkcs11 backends' user PIN and the pool's attempt timeout.
pub async fn start_with(
    dir: tempfile::TempDir,
    database_url: &str,
    bus_url: &str,
    backends: Vec<String>,
    pkcs11_pin: Option<&str>,
    attempt_timeout: Duration,
) -> TestService {
    start_sealed(
        dir,
        database_url,
        bus_url,
        backends,
        pkcs11_pin,
        attempt_timeout,
        SealedCardData::Allow,
    )
    .await
}

/// Like [`start_with`], with the `MPOS_HSM_SEALED_CARD_DATA` setting.
pub async fn start_sealed(
    dir: tempfile::TempDir,
    database_url: &str,
    bus_url: &str,
    backends: Vec<String>,
    pkcs11_pin: Option<&str>,
    attempt_timeout: Duration,
    sealed_card_data: SealedCardData,
) -> TestService {
    let vars = Vars::from_pairs(vec![
        ("MPOS_DATABASE_URL", database_url.to_owned()),
        ("MPOS_BUS_URL", bus_url.to_owned()),
        ("MPOS_CHAIN_SIGNING_KEY", SIGNING_KEY.to_owned()),
        ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
    ]);
    let config = CommonConfig::from_vars(&vars, hsm_proxy::SERVICE, "127.0.0.1:0", "127.0.0.1:0")
        .expect("config");
    let hsm_config = HsmConfig {
        backends,
        soft_lmk: Some(SecretBytes::from_hex("lmk", LMK).expect("lmk")),
        pkcs11_pin: pkcs11_pin.map(|pin| SecretString::from(pin.to_owned())),
        pool: hsm_proxy::pool::PoolConfig {
            local_site: "local".into(),
            attempt_timeout,
            check_interval: Duration::from_millis(100),
        },
        sealed_card_data,
    };
    let cancel = CancellationToken::new();
    let infrastructure = Infrastructure::default();
    let (store, bus) = infrastructure
        .connect(&config, &cancel)
        .await
        .expect("connected");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let token = SecretString::from(TOKEN.to_owned());
    let running = hsm_proxy::service::start(
        &config,
        &hsm_config,
        store.clone(),
        &bus,
        &infrastructure,
        &token,
        listener,
        &cancel,
    )
    .await
    .expect("start");
    // A separate connection for the caller, as another service would have.
    let caller_bus = mpos_bus::connect(bus_url).await.expect("caller bus");
    let requests = caller_bus.requests.expect("request-reply");
    let client = HsmClient::new(requests.clone(), "service:test", Duration::from_secs(5));
    TestService {
        base: format!("http://{}", running.http_addr),
        store,
        http: reqwest::Client::new(),
        client,
        requests,
        hsm: running.hsm.clone(),
        sealer: running.sealer.clone(),
        dir,
        cancel,
        running: Some(running),
    }
}

pub fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).expect("hex")
}

pub fn attributes(
    algorithm: pb::KeyAlgorithm,
    usage: &str,
    mode: &str,
    exportability: &str,
) -> pb::KeyAttributes {
    pb::KeyAttributes {
        algorithm: algorithm.into(),
        key_usage: usage.into(),
        mode_of_use: mode.into(),
        exportability: exportability.into(),
    }
}

/// Imports a known key (a published test key) as two clear components whose XOR is `key`:
/// the first is all 0x11 bytes, the second `key` XOR that. KCVs come from paycrypto's
/// published-vector-tested KCV functions.
pub async fn import_known(
    service: &TestService,
    tenant: &str,
    attrs: pb::KeyAttributes,
    key_hex: &str,
    alias: &str,
) -> pb::Key {
    let key = h(key_hex);
    let first = vec![0x11_u8; key.len()];
    let second: Vec<u8> = key.iter().zip(&first).map(|(a, b)| a ^ b).collect();
    let algorithm = pb::KeyAlgorithm::try_from(attrs.algorithm).expect("algorithm");
    let kcv = |bytes: &[u8]| -> String {
        let secret = SecretBytes::from_slice(bytes);
        match algorithm {
            pb::KeyAlgorithm::Aes128 | pb::KeyAlgorithm::Aes192 | pb::KeyAlgorithm::Aes256 => {
                paycrypto::kcv::aes_kcv_cmac(&secret).expect("kcv").to_hex()
            }
            pb::KeyAlgorithm::HmacSha256 => {
                let mac = paycrypto::mac::MacAlgorithm::HmacSha256
                    .generate(&secret, &[0_u8; 16], 32)
                    .expect("hmac");
                hex::encode_upper(&mac[..3])
            }
            _ => paycrypto::kcv::tdes_kcv(&secret).expect("kcv").to_hex(),
        }
    };
    let request = pb::ImportKeyRequest {
        tenant_id: tenant.into(),
        alias: alias.into(),
        material: Some(pb::import_key_request::Material::Components(
            pb::ComponentsImport {
                attributes: Some(attrs),
                components: vec![
                    pb::KeyComponent {
                        value: hex::encode_upper(&first),
                        kcv: kcv(&first),
                    },
                    pb::KeyComponent {
                        value: hex::encode_upper(&second),
                        kcv: kcv(&second),
                    },
                ],
                kcv: kcv(&key),
            },
        )),
    };
    service
        .call::<_, pb::Key>("ImportKey", &request)
        .await
        .expect("import")
}
