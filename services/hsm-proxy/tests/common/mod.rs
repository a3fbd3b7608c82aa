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
use paycrypto::pin::{Pan, Pin, PinBlockFormat, encrypt_pin_block};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
pub const SIGNING_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
/// The soft backends' LMK in tests.
pub const LMK: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";

/// The tenant of the tests' keys.
pub const TENANT: &str = "acme";
/// ANSI X9.24-1:2009 A.4: the DUKPT test BDK, the example device's initial KSN and its initial
/// key (IPEK, "Initially Loaded PIN Entry Device Key"), as transcribed in openemv/dukpt
/// (test/dukpt_tdes_test.c).
pub const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
pub const INITIAL_KSN: &str = "FFFF9876543210E00000";
pub const IPEK: &str = "6AC292FAA1315B4D858AB3A3D7D5933A";
/// ANSI X9.24-1:2009 A.4.2: the PAN of the published DUKPT vectors.
pub const PAN: &str = "4012345678909";
/// ANSI X9.24-3-2017 supplement test vectors ("X9.24 Part 3 Test Vectors"), as transcribed in
/// openemv/dukpt test/dukpt_aes128_test.c and cited in paycrypto's tests/dukpt_aes.rs: the
/// AES-128 BDK.
pub const AES_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
/// A PIN key known to the tests, to make and open PIN blocks (psec's test key).
pub const ZPK: &str = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB";
/// A key block protection key (AES-256) the tests know.
pub const KBPK: &str = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6";

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

pub use hsm_proxy::test_support::attributes;

pub fn dukpt(ksn: &str, direction: pb::DukptDirection) -> Option<pb::Dukpt> {
    Some(pb::Dukpt {
        ksn: ksn.into(),
        direction: direction.into(),
        ..Default::default()
    })
}

pub fn pin_key(
    key: &str,
    format: pb::PinBlockFormat,
    dukpt: Option<pb::Dukpt>,
) -> Option<pb::PinBlockKey> {
    Some(pb::PinBlockKey {
        key: key.into(),
        format: format.into(),
        dukpt,
    })
}

/// An ISO format 0 PIN block of `pin` and `pan` under the clear TDES key `key` (hex).
pub fn iso0_under(key: &str, pin: &str, pan: &str) -> String {
    let block = encrypt_pin_block(
        PinBlockFormat::Iso0,
        &SecretBytes::new(h(key)),
        &Pin::new(pin).expect("pin"),
        Some(&Pan::new(pan).expect("pan")),
        &mut rand::rngs::OsRng,
    )
    .expect("pin block");
    hex::encode_upper(block)
}

/// Imports a known key (a published test key) as two clear components whose XOR is `key`
/// (`hsm_proxy::test_support::components_import`: the first all 0x11 bytes, the second `key`
/// XOR that). KCVs come from paycrypto's published-vector-tested KCV functions.
pub async fn import_known(
    service: &TestService,
    tenant: &str,
    attrs: pb::KeyAttributes,
    key_hex: &str,
    alias: &str,
) -> pb::Key {
    let request = hsm_proxy::test_support::components_import(tenant, alias, attrs, &h(key_hex))
        .expect("import request");
    service
        .call::<_, pb::Key>("ImportKey", &request)
        .await
        .expect("import")
}

/// [`BDK`] as `bdk` of [`TENANT`] (B0, derive only), with `exportability`.
pub async fn import_bdk(service: &TestService, exportability: &str) -> pb::Key {
    import_known(
        service,
        TENANT,
        attributes(pb::KeyAlgorithm::Tdes2key, "B0", "X", exportability),
        BDK,
        "bdk",
    )
    .await
}

/// [`ZPK`] as `zpk` of [`TENANT`] (P0, both ways).
pub async fn import_zpk(service: &TestService) -> pb::Key {
    import_known(
        service,
        TENANT,
        attributes(pb::KeyAlgorithm::Tdes2key, "P0", "B", ""),
        ZPK,
        "zpk",
    )
    .await
}

/// jPOS `JCESecurityModuleTest`'s Visa PVK ("4 times 12345678") as `pvk` of [`TENANT`] (V2).
pub async fn import_pvk(service: &TestService) -> pb::Key {
    import_known(
        service,
        TENANT,
        attributes(pb::KeyAlgorithm::Tdes2key, "V2", "C", ""),
        "12345678123456781234567812345678",
        "pvk",
    )
    .await
}

/// Visa PVV: jPOS `JCESecurityModuleTest.testCalculatePVVImpl1/2` (PVK "4 times 12345678",
/// PAN 1234567890123, PVKI 0, PIN 1234 → 1226). IBM 3624: psec tests/test_pin.py (PVK
/// 0123456789ABCDEFFEDCBA9876543210, decimalization table 1234567890123456, validation data
/// 1122334455667788, PIN 1234 → offset 7710). Both cited in paycrypto's tests/pinver.rs. The PIN
/// blocks are made under [`ZPK`], which the caller has imported as `zpk` for [`TENANT`].
pub async fn pin_data(service: &TestService) {
    use pb::KeyAlgorithm::Tdes2key;
    import_pvk(service).await;
    import_known(
        service,
        TENANT,
        attributes(Tdes2key, "V1", "C", ""),
        BDK,
        "ibm-pvk",
    )
    .await;
    let pvv = Some(pb::PinVerification {
        method: pb::PinVerificationMethod::VisaPvv.into(),
        pvki: 0,
        ..Default::default()
    });
    let ibm = Some(pb::PinVerification {
        method: pb::PinVerificationMethod::Ibm3624Offset.into(),
        decimalization_table: "1234567890123456".into(),
        validation_data: "1122334455667788".into(),
        ..Default::default()
    });
    for (key, verification, pan, expected, wrong) in [
        ("alias/pvk", pvv, "1234567890123", "1226", "1227"),
        ("alias/ibm-pvk", ibm, "1122334455667788", "7710", "7711"),
    ] {
        let encryption = pin_key("alias/zpk", pb::PinBlockFormat::Iso0, None);
        let pin_block = iso0_under(ZPK, "1234", pan);
        let generated: pb::GeneratePinDataResponse = service
            .call(
                "GeneratePinData",
                &pb::GeneratePinDataRequest {
                    tenant_id: TENANT.into(),
                    verification_key: key.into(),
                    verification: verification.clone(),
                    encryption: encryption.clone(),
                    pin_block: pin_block.clone(),
                    pan: pan.into(),
                    ..Default::default()
                },
            )
            .await
            .expect("generate pin data");
        assert_eq!(generated.verification_value, expected, "{key}");
        for (value, verified) in [(expected, true), (wrong, false)] {
            let response: pb::VerifyPinDataResponse = service
                .call(
                    "VerifyPinData",
                    &pb::VerifyPinDataRequest {
                        tenant_id: TENANT.into(),
                        verification_key: key.into(),
                        verification: verification.clone(),
                        encryption: encryption.clone(),
                        pin_block: pin_block.clone(),
                        pan: pan.into(),
                        verification_value: value.into(),
                        ..Default::default()
                    },
                )
                .await
                .expect("verify pin data");
            assert_eq!(response.verified, verified, "{key} {value}");
        }
    }
}
