//! The simulated PED against the real hsm-proxy (in process, soft backend, in-memory bus),
//! the way key-injection drives it: the device's initial key exported by the hsm-proxy in a
//! TR-34 token (`ExportKey` / `tr34DukptInitialKey`, signed by a KDH key held in the HSM),
//! installed on the device, confirmed with the KCV the hsm-proxy reported; then the device's
//! PIN blocks go through `TranslatePinData` and its card data through `DecryptData` with the
//! BDK and the KSN. TDES (ANSI X9.24-1:2009 A.4 BDK) and AES-128 (ANSI X9.24-3-2017
//! supplement BDK) DUKPT.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use hsm_proxy::rpc::HsmClient;
use mpos_config::Vars;
use mpos_proto::hsm as hsm_pb;
use mpos_proto::key_injection as ki_pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, Pin, PinBlockFormat};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_RSA_SHA256, PublicKeyData, SignatureAlgorithm, date_time_ymd,
};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey};
use secrecy::SecretString;
use terminal_sim::Track2;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
/// The AES-128 BDK of the ANSI X9.24-3-2017 supplement test vectors.
const AES_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
/// A zone PIN key (any double-length TDES key).
const ZPK: &str = "89ABCDEF0123456776543210FEDCBA98";

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

fn ca_params(name: &str, ca: bool, usage: KeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = vec![usage];
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params
}

fn config(dir: &tempfile::TempDir, bus: &str) -> CommonConfig {
    let vars = Vars::from_pairs(vec![
        (
            "MPOS_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("hsm.db").display()),
        ),
        ("MPOS_BUS_URL", bus.to_owned()),
        ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
        ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
    ]);
    CommonConfig::from_vars(&vars, hsm_proxy::SERVICE, "127.0.0.1:0", "127.0.0.1:0")
        .expect("config")
}

/// Imports `key_hex` as two clear components, each with its KCV.
async fn import(
    hsm: &HsmClient,
    key_hex: &str,
    algorithm: hsm_pb::KeyAlgorithm,
    usage: &str,
    mode: &str,
    alias: &str,
) {
    let key = hex::decode(key_hex).expect("hex");
    let kcv = |bytes: &[u8]| {
        let secret = SecretBytes::from_slice(bytes);
        match algorithm {
            hsm_pb::KeyAlgorithm::Aes128 => paycrypto::kcv::aes_kcv_cmac(&secret),
            _ => paycrypto::kcv::tdes_kcv(&secret),
        }
        .expect("kcv")
        .to_hex()
    };
    let first = vec![0x11; key.len()];
    let second: Vec<u8> = key.iter().map(|k| k ^ 0x11).collect();
    let _: hsm_pb::Key = hsm
        .call(
            "ImportKey",
            &hsm_pb::ImportKeyRequest {
                tenant_id: "acme".into(),
                alias: alias.into(),
                material: Some(hsm_pb::import_key_request::Material::Components(
                    hsm_pb::ComponentsImport {
                        attributes: Some(hsm_pb::KeyAttributes {
                            algorithm: algorithm.into(),
                            key_usage: usage.into(),
                            mode_of_use: mode.into(),
                            exportability: "N".into(),
                        }),
                        components: [first, second]
                            .iter()
                            .map(|part| hsm_pb::KeyComponent {
                                value: hex::encode_upper(part),
                                kcv: kcv(part),
                            })
                            .collect(),
                        kcv: kcv(&key),
                    },
                )),
            },
        )
        .await
        .expect("import");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_exported_by_the_hsm_proxy_install_and_its_dukpt_operations_accept_the_device_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus_url = format!("memory://sim-hsm-{}", uuid::Uuid::new_v4().simple());
    let cancel = CancellationToken::new();
    let common = config(&dir, &bus_url);
    let infrastructure = Infrastructure::default();
    let (store, bus) = infrastructure
        .connect(&common, &cancel)
        .await
        .expect("infrastructure");
    let running = hsm_proxy::service::start(
        &common,
        &hsm_proxy::service::HsmConfig {
            backends: vec![format!("soft://{}", dir.path().join("keys").display())],
            soft_lmk: Some(SecretBytes::from_slice(&[0x42; 32])),
            pkcs11_pin: None,
            pool: hsm_proxy::pool::PoolConfig {
                local_site: "local".into(),
                attempt_timeout: Duration::from_secs(60),
                check_interval: Duration::from_millis(200),
            },
            sealed_card_data: hsm_proxy::sealing::SealedCardData::Allow,
        },
        store,
        &bus,
        &infrastructure,
        &SecretString::from(TOKEN.to_owned()),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        &cancel,
    )
    .await
    .expect("hsm-proxy");
    let caller = mpos_bus::connect(&bus_url).await.expect("bus");
    let hsm = HsmClient::new(
        caller.requests.expect("request-reply"),
        "operator:test",
        Duration::from_secs(60),
    );

    import(&hsm, BDK, hsm_pb::KeyAlgorithm::Tdes2key, "B0", "X", "bdk").await;
    import(
        &hsm,
        AES_BDK,
        hsm_pb::KeyAlgorithm::Aes128,
        "B0",
        "X",
        "aes-bdk",
    )
    .await;
    import(&hsm, ZPK, hsm_pb::KeyAlgorithm::Tdes2key, "P0", "B", "zpk").await;
    // The KDH key pair inside the HSM, certified by the platform's RKI CA.
    let _: hsm_pb::Key = hsm
        .call(
            "CreateKey",
            &hsm_pb::CreateKeyRequest {
                tenant_id: "acme".into(),
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
        .expect("kdh");
    let public: hsm_pb::GetPublicKeyResponse = hsm
        .call(
            "GetPublicKey",
            &hsm_pb::GetPublicKeyRequest {
                tenant_id: "acme".into(),
                key: "alias/kdh".into(),
            },
        )
        .await
        .expect("public key");
    let kdh_public = rsa::RsaPublicKey::from_public_key_der(&public.public_key)
        .expect("rsa public key")
        .to_pkcs1_der()
        .expect("pkcs1")
        .as_bytes()
        .to_vec();
    let ca_private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa");
    let ca_der = ca_private
        .to_pkcs8_der()
        .expect("pkcs8")
        .as_bytes()
        .to_vec();
    let ca_key =
        KeyPair::from_pkcs8_der_and_sign_algo(&ca_der.into(), &PKCS_RSA_SHA256).expect("ca key");
    let root_params = ca_params("Sim RKI CA", true, KeyUsagePurpose::KeyCertSign);
    let ca_certificate = root_params.self_signed(&ca_key).expect("ca").der().to_vec();
    let ca = Issuer::new(root_params, ca_key);
    let kdh_certificate = ca_params("Sim KDH", false, KeyUsagePurpose::DigitalSignature)
        .signed_by(&HeldPublicKey(kdh_public), &ca)
        .expect("kdh certificate")
        .der()
        .to_vec();

    let pki = pki();
    let pan = Pan::new("4012345678909").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let track = Track2::parse("4012345678909D2512101").expect("track 2");
    let zpk = SecretBytes::from_slice(&hex::decode(ZPK).expect("hex"));
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
    for (bdk, algorithm, ksn, initial_key_id) in [
        (
            "alias/bdk",
            ki_pb::DukptAlgorithm::Tdes,
            INITIAL_KSN,
            INITIAL_KSN,
        ),
        (
            "alias/aes-bdk",
            ki_pb::DukptAlgorithm::Aes128,
            "123456789012345600000000",
            AES_INITIAL_KEY_ID,
        ),
    ] {
        // What key-injection asks of the hsm-proxy for this device.
        let export: hsm_pb::ExportKeyResponse = hsm
            .call(
                "ExportKey",
                &hsm_pb::ExportKeyRequest {
                    tenant_id: "acme".into(),
                    key: bdk.into(),
                    wrapping_key: "alias/kdh".into(),
                    format: Some(hsm_pb::export_key_request::Format::Tr34DukptInitialKey(
                        hsm_pb::Tr34DukptInitialKeyExport {
                            ksn: ksn.into(),
                            krd_certificate: pki.ped.certificate_der().to_vec(),
                            kdh_certificate: kdh_certificate.clone(),
                        },
                    )),
                },
            )
            .await
            .expect("export");
        let mut ped = terminal(&pki.ped, &ca_certificate);
        let installed = ped
            .install_delivery(&ki_pb::DeviceKeyDelivery {
                injection_id: "0123456789abcdef0123456789abcdef".into(),
                method: ki_pb::DeliveryMethod::Tr34.into(),
                algorithm: algorithm.into(),
                initial_key_id: initial_key_id.into(),
                key_token: base64::engine::general_purpose::STANDARD
                    .decode(&export.key_block)
                    .expect("base64"),
                kdh_certificate: kdh_certificate.clone(),
                ..ki_pb::DeviceKeyDelivery::default()
            })
            .expect("install");
        assert_eq!(
            installed.kcv, export.kcv,
            "{algorithm:?}: the KCV key-injection checks"
        );

        let block = ped.pin_block(&pan, &pin).expect("pin block");
        let translated: hsm_pb::TranslatePinDataResponse = hsm
            .call(
                "TranslatePinData",
                &hsm_pb::TranslatePinDataRequest {
                    tenant_id: "acme".into(),
                    incoming: Some(block.hsm_pin_block_key(bdk)),
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
        assert_eq!(translated.pin_block, expected_block, "{algorithm:?}");

        let card = ped.encrypt_card_data(&track).expect("card data");
        let decrypted: hsm_pb::DecryptDataResponse = hsm
            .call("DecryptData", &card.hsm_decrypt_request("acme", bdk))
            .await
            .expect("decrypt");
        let clear = b"4012345678909D2512101";
        assert_eq!(&decrypted.plaintext[..clear.len()], clear, "{algorithm:?}");
        assert!(decrypted.plaintext[clear.len()..].iter().all(|b| *b == 0));

        // A payment: card data and PIN block under ONE KSN, both accepted by the hsm-proxy
        // with the BDK and that KSN.
        let payment = ped
            .encrypt_transaction(&track, Some(&pin))
            .expect("transaction");
        let block = payment.pin_block().expect("pin block");
        assert_eq!(block.ksn, payment.ksn);
        let translated: hsm_pb::TranslatePinDataResponse = hsm
            .call(
                "TranslatePinData",
                &hsm_pb::TranslatePinDataRequest {
                    tenant_id: "acme".into(),
                    incoming: Some(block.hsm_pin_block_key(bdk)),
                    outgoing: Some(hsm_pb::PinBlockKey {
                        key: "alias/zpk".into(),
                        format: hsm_pb::PinBlockFormat::Iso0.into(),
                        dukpt: None,
                    }),
                    pin_block: payment.encrypted_pin_block.clone().expect("pin block"),
                    pan: "4012345678909".into(),
                    ..hsm_pb::TranslatePinDataRequest::default()
                },
            )
            .await
            .expect("translate");
        assert_eq!(
            translated.pin_block, expected_block,
            "{algorithm:?}: one KSN"
        );
        let decrypted: hsm_pb::DecryptDataResponse = hsm
            .call(
                "DecryptData",
                &payment.card_data().hsm_decrypt_request("acme", bdk),
            )
            .await
            .expect("decrypt");
        assert_eq!(
            &decrypted.plaintext[..clear.len()],
            clear,
            "{algorithm:?}: one KSN"
        );
    }
    cancel.cancel();
    running.join().await;
}
