//! Remote key injection through the real hsm-proxy (in process, soft backend, on the same
//! in-process bus as a distributed deployment would use NATS): a BDK assigned to the tenant,
//! devices each getting a fresh KSN and their initial key in a TR-34 token only they can open,
//! confirmations by KCV, a wrong KCV recorded as a failed injection.

use std::time::Duration;

use hsm_proxy::rpc::HsmClient;
use key_injection::service::KiOptions;
use mpos_config::Vars;
use mpos_proto::hsm as hsm_pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use paycrypto::dukpt::tdes::{DataKeyDerivation, Device, KeyUsage};
use paycrypto::pin::{Pan, Pin, PinBlockFormat};
use paycrypto::tr34::{self, Credential, ExpectedFreshness, KdhTrust};
use rcgen::{Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256};
use rsa::pkcs8::EncodePrivateKey;
use secrecy::SecretString;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod common;

use common::{HeldPublicKey, create_kdh, import_components, params, start_soft_hsm};

const TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
/// The ANSI X9.24-1:2009 Annex A.4 test BDK.
const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
/// A zone PIN key (any double-length TDES key).
const ZPK: &str = "89ABCDEF0123456776543210FEDCBA98";

/// An RSA key (made with the `rsa` crate) as rcgen signs with it, and its PKCS #8 DER.
fn rsa_key() -> (KeyPair, Vec<u8>) {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa keygen");
    let der = key.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec();
    let pair = KeyPair::from_pkcs8_der_and_sign_algo(&der.clone().into(), &PKCS_RSA_SHA256)
        .expect("rcgen key");
    (pair, der)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn config(dir: &tempfile::TempDir, service: &str, bus: &str) -> CommonConfig {
    let vars = Vars::from_pairs(vec![
        (
            "MPOS_DATABASE_URL",
            format!(
                "sqlite://{}",
                dir.path().join(format!("{service}.db")).display()
            ),
        ),
        ("MPOS_BUS_URL", bus.to_owned()),
        ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
        ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
    ]);
    CommonConfig::from_vars(&vars, service, "127.0.0.1:0", "127.0.0.1:0").expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_get_fresh_ksns_and_initial_keys_only_they_can_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus_url = format!("memory://rki-{}", uuid::Uuid::new_v4().simple());
    let cancel = CancellationToken::new();
    let token = SecretString::from(TOKEN.to_owned());

    // The hsm-proxy, with a soft backend.
    let hsm_common = config(&dir, hsm_proxy::SERVICE, &bus_url);
    let hsm_running = start_soft_hsm(&hsm_common, &dir.path().join("keys"), &token, &cancel).await;
    let caller = mpos_bus::connect(&bus_url).await.expect("bus");
    let hsm = HsmClient::new(
        caller.requests.expect("request-reply"),
        "operator:test",
        Duration::from_secs(60),
    );

    // The tenant's BDK and the platform's key distribution host key pair, inside the HSM;
    // the platform's RKI CA certifies the KDH's public key.
    import_components(&hsm, "acme", BDK, "B0", "X", "bdk").await;
    import_components(
        &hsm,
        "acme",
        "11111111111111112222222222222222",
        "K0",
        "E",
        "kek",
    )
    .await;
    let kdh_public = create_kdh(&hsm, "acme").await;
    let (ca_key, _) = rsa_key();
    let ca_params = params("RKI Test CA", true, KeyUsagePurpose::KeyCertSign);
    let ca_certificate = ca_params.self_signed(&ca_key).expect("ca").der().to_vec();
    let ca = Issuer::new(ca_params, ca_key);
    let kdh_certificate = params("RKI Test KDH", false, KeyUsagePurpose::DigitalSignature)
        .signed_by(&HeldPublicKey(kdh_public), &ca)
        .expect("kdh certificate")
        .der()
        .to_vec();

    // key-injection, on its own log, reaching the hsm-proxy over the bus.
    let ki_common = config(&dir, key_injection::SERVICE, &bus_url);
    let ki_infrastructure = Infrastructure::default();
    let (ki_store, ki_bus) = ki_infrastructure
        .connect(&ki_common, &cancel)
        .await
        .expect("key-injection infrastructure");
    let ki_running = key_injection::service::start(
        &ki_common,
        ki_store.clone(),
        &ki_bus,
        &ki_infrastructure,
        &KiOptions {
            operator_token: token.clone(),
            kdh_key: "alias/kdh".into(),
            kdh_certificate: kdh_certificate.clone(),
            krd_cas: vec![ca_certificate.clone()],
            hsm_timeout: Duration::from_secs(60),
            confirmation_window: Duration::from_secs(600),
            cryptoperiod: Duration::from_secs(730 * 24 * 3600),
            device_addr: Some("127.0.0.1:0".parse().expect("addr")),
            device_tls: None,
            workers: 4,
            sweep_interval: Duration::from_secs(60),
            cryptoperiod_check_interval: Duration::from_secs(3_600),
            feed: None,
            softpos_addr: None,
            token_keys: attestation_keys::KeySource::Fixed(attestation_token::PublishedKeys {
                keys: Vec::new(),
            }),
        },
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        &cancel,
    )
    .await
    .expect("key-injection");
    let base = format!("http://{}", ki_running.http_addr);
    let client = reqwest::Client::new();
    let post = |path: String, body: serde_json::Value| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let response = client
                .post(format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };

    let (status, body) = post(
        "/v1/tenants/acme/bdks".into(),
        json!({"bdkId": "bdk-1", "hsmKeyId": "alias/bdk", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": "FFFF987654"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Not a BDK: refused, typed.
    let (status, body) = post(
        "/v1/tenants/acme/bdks".into(),
        json!({"bdkId": "bdk-2", "hsmKeyId": "alias/kek", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": "FFFF987655"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );

    let bdk = SecretBytes::from_slice(&hex::decode(BDK).expect("hex"));
    let mut ksns = Vec::new();
    let mut injections = Vec::new();
    // The zone PIN key the first PIN blocks are translated to.
    import_components(&hsm, "acme", ZPK, "P0", "B", "zpk").await;
    let zpk = SecretBytes::from_slice(&hex::decode(ZPK).expect("hex"));
    let pin = Pin::new("1234").expect("pin");
    let pan = Pan::new("4012345678909").expect("pan");
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
    // Three devices with keys of their own, then 97 more sharing the third's RSA key (key
    // generation is the slow part of the test, not what it is about).
    let mut keys = Vec::new();
    let mut tokens = Vec::new();
    for device in 0..100 {
        if device < 3 {
            keys.push(rsa_key());
        }
        let (krd_key, krd_der) = &keys[device.min(2)];
        let krd_certificate = params(
            &format!("PED {device}"),
            false,
            KeyUsagePurpose::KeyEncipherment,
        )
        .signed_by(krd_key, &ca)
        .expect("krd certificate");
        let (status, body) = post(
            "/v1/tenants/acme/injections".into(),
            json!({"terminalId": format!("t-{device}"), "bdkId": "bdk-1", "krdCertificatePem": krd_certificate.pem()}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "INJECTION_STATE_DELIVERED");
        let ksn = body["initialKeyId"].as_str().expect("ksn").to_owned();
        // The device opens the token: KDH chain to the CA, signature, signing time, then its
        // own key; the key is the IPEK of its KSN.
        use base64::Engine as _;
        let token_der = base64::engine::general_purpose::STANDARD
            .decode(body["keyToken"].as_str().expect("token"))
            .expect("base64");
        let krd = Credential::from_der(krd_certificate.der(), &SecretBytes::from_slice(krd_der))
            .expect("krd credential");
        let received = tr34::open_key_token(
            &token_der,
            &KdhTrust {
                ca_certificate: &ca_certificate,
                kdh_chain: &[&kdh_certificate],
                now_unix: now(),
            },
            &krd,
            ExpectedFreshness::SigningTime {
                now_unix: now(),
                max_skew_secs: 300,
            },
        )
        .expect("the device opens its token");
        let ipek = paycrypto::dukpt::tdes::derive_ipek(
            &bdk,
            &paycrypto::dukpt::tdes::Ksn::from_hex(&ksn).expect("ksn"),
        )
        .expect("ipek");
        assert_eq!(received.key.expose(), ipek.expose(), "{ksn}");
        let kcv = paycrypto::kcv::tdes_kcv(&received.key)
            .expect("kcv")
            .to_hex();
        // The device's first transaction: its PIN block translates through the hsm-proxy to
        // the zone PIN key.
        let mut pad = Device::load_initial_key(
            &received.key,
            &paycrypto::dukpt::tdes::Ksn::from_hex(&ksn).expect("ksn"),
        )
        .expect("device");
        let transaction = pad.next_transaction().expect("transaction");
        let pin_key = transaction
            .working_key(KeyUsage::PinEncryption, DataKeyDerivation::OneWay)
            .expect("pin key");
        let block = paycrypto::pin::encrypt_pin_block(
            PinBlockFormat::Iso0,
            &pin_key,
            &pin,
            Some(&pan),
            &mut rand::rngs::OsRng,
        )
        .expect("pin block");
        let translated: hsm_pb::TranslatePinDataResponse = hsm
            .call(
                "TranslatePinData",
                &hsm_pb::TranslatePinDataRequest {
                    tenant_id: "acme".into(),
                    incoming: Some(hsm_pb::PinBlockKey {
                        key: "alias/bdk".into(),
                        format: hsm_pb::PinBlockFormat::Iso0.into(),
                        dukpt: Some(hsm_pb::Dukpt {
                            ksn: transaction.ksn().to_hex(),
                            ..hsm_pb::Dukpt::default()
                        }),
                    }),
                    outgoing: Some(hsm_pb::PinBlockKey {
                        key: "alias/zpk".into(),
                        format: hsm_pb::PinBlockFormat::Iso0.into(),
                        dukpt: None,
                    }),
                    pin_block: hex::encode_upper(block),
                    pan: "4012345678909".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("translate");
        assert_eq!(translated.pin_block, expected_block, "device {device}");
        if device < 3 {
            tokens.push(token_der);
        }
        ksns.push(ksn);
        injections.push((body["injectionId"].as_str().expect("id").to_owned(), kcv));
    }
    assert_eq!(
        ksns[..3],
        [
            "FFFF9876540000000000",
            "FFFF9876540000200000",
            "FFFF9876540000400000"
        ],
        "each device its own KSN, in order"
    );
    let distinct: std::collections::BTreeSet<&String> = ksns.iter().collect();
    assert_eq!(distinct.len(), 100, "no KSN twice");
    // A device cannot open another device's token.
    let (first_key, first_der) = &keys[0];
    let first_certificate = params("PED 0", false, KeyUsagePurpose::KeyEncipherment)
        .signed_by(first_key, &ca)
        .expect("certificate");
    let first = Credential::from_der(first_certificate.der(), &SecretBytes::from_slice(first_der))
        .expect("credential");
    assert!(
        tr34::open_key_token(
            &tokens[1],
            &KdhTrust {
                ca_certificate: &ca_certificate,
                kdh_chain: &[&kdh_certificate],
                now_unix: now(),
            },
            &first,
            ExpectedFreshness::SigningTime {
                now_unix: now(),
                max_skew_secs: 300,
            },
        )
        .is_err()
    );

    // Confirmations: the right KCV confirms, a wrong one is a failed injection, recorded.
    let (id, kcv) = &injections[0];
    let (status, body) = post(
        format!("/v1/tenants/acme/injections/{id}/confirm"),
        json!({"kcv": kcv}),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("INJECTION_STATE_CONFIRMED")),
        "{body}"
    );
    let (id, _) = &injections[1];
    let (status, body) = post(
        format!("/v1/tenants/acme/injections/{id}/confirm"),
        json!({"kcv": "000000"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("injection failed"))
    );
    let events = ki_store.read_after(0, 1_000).await.expect("read");
    let types: Vec<&str> = events.iter().map(|e| e.event.event_type.as_str()).collect();
    assert!(
        types.contains(&"mpos.key_injection.v1.InjectionFailed"),
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "mpos.key_injection.v1.DeviceIdAllocated")
            .count(),
        100
    );
    // No key material in any event: the tokens' keys and the IPEKs never appear.
    for event in &events {
        assert!(!event.event.payload.contains("6AC292FAA1315B4D"));
    }
    // A device whose certificate no trusted CA issued: refused, recorded, no KSN spent.
    let (rogue_ca_key, _) = rsa_key();
    let rogue_ca = Issuer::new(
        params("Rogue CA", true, KeyUsagePurpose::KeyCertSign),
        rogue_ca_key,
    );
    let rogue = params("PED rogue", false, KeyUsagePurpose::KeyEncipherment)
        .signed_by(&keys[0].0, &rogue_ca)
        .expect("rogue certificate");
    let (status, body) = post(
        "/v1/tenants/acme/injections".into(),
        json!({"terminalId": "t-rogue", "bdkId": "bdk-1", "krdCertificatePem": rogue.pem()}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("krd_certificate_pem: refused")),
        "{body}"
    );
    let events = ki_store.read_after(0, 1_000).await.expect("read");
    let failed = events
        .iter()
        .filter(|e| e.event.event_type == "mpos.key_injection.v1.InjectionFailed")
        .count();
    assert_eq!(failed, 2, "the wrong KCV and the refused certificate");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.event_type == "mpos.key_injection.v1.DeviceIdAllocated")
            .count(),
        100,
        "no KSN for a refused device"
    );
    // Unknown injection, unknown BDK.
    let (status, _) = post(
        "/v1/tenants/acme/injections/0123456789abcdef0123456789abcdef/confirm".into(),
        json!({"kcv": "000000"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        "/v1/tenants/acme/injections".into(),
        json!({"terminalId": "t-9", "bdkId": "nope", "krdCertificatePem": "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"}),
    )
    .await;
    assert_eq!(status, 404);

    cancel.cancel();
    ki_running.join().await;
    hsm_running.join().await;
}
