//! ExportKey with `ecdhDukptInitialKey`: a device's DUKPT initial key delivered to its P-256
//! key by ECDH (one-time KBPK) in a TR-31 version D block; opened on the device side by
//! `paycrypto::ecdh::unwrap_on_device`, the key is the published IPEK / AES initial key.
//! Against `soft://`; the payshield backend's typed refusal is in tests/payshield.rs.

mod common;

use common::{AES_BDK, BDK, INITIAL_KSN, IPEK};
use mpos_errors::ErrorCode;
use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;
use paycrypto::tr31::{Algorithm, Exportability, KeyUsage, ModeOfUse, Version};
use rcgen::{
    CertificateParams, DnType, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
    PublicKeyData, SignatureAlgorithm,
};
use rsa::pkcs1::EncodeRsaPublicKey;

/// ANSI X9.24-3-2017 supplement test vectors ("X9.24 Part 3 Test Vectors"), as transcribed in
/// openemv/dukpt test/dukpt_aes128_test.c and cited in paycrypto's tests/dukpt_aes.rs: the
/// initial key ID 1234567890123456 and the initial key derived from it and `common::AES_BDK`.
const AES_INITIAL_KSN: &str = "123456789012345600000000";
const AES_INITIAL_KEY: &str = "1273671EA26AC29AFA4D1084127652A1";

/// A public key held as DER (an RSA public key, PKCS #1) for rcgen to certify.
struct HeldRsaPublicKey(Vec<u8>);

impl PublicKeyData for HeldRsaPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

fn params(name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = if ca {
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    } else {
        rcgen::IsCa::NoCa
    };
    params
}

/// A CA (P-256) for the device certificates.
fn ca() -> Issuer<'static, KeyPair> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("ca key");
    Issuer::new(params("PED Test CA", true), key)
}

/// A device's P-256 key pair (PKCS #8 DER) and its certificate (DER).
fn device(ca: &Issuer<'static, KeyPair>, name: &str) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("device key");
    let certificate = params(name, false)
        .signed_by(&key, ca)
        .expect("device certificate")
        .der()
        .to_vec();
    (key.serialize_der(), certificate)
}

fn export(key: &str, ksn: &str, device_certificate: Vec<u8>) -> pb::ExportKeyRequest {
    pb::ExportKeyRequest {
        tenant_id: "acme".into(),
        key: key.into(),
        // Unused for this format.
        wrapping_key: String::new(),
        format: Some(pb::export_key_request::Format::EcdhDukptInitialKey(
            pb::EcdhDukptInitialKeyExport {
                ksn: ksn.into(),
                device_certificate,
            },
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_initial_key_reaches_only_that_devices_p256_key() {
    let service = common::embedded().await;
    common::import_bdk(&service, "N").await;
    common::import_known(
        &service,
        "acme",
        common::attributes(pb::KeyAlgorithm::Aes128, "B0", "X", "N"),
        AES_BDK,
        "aes-bdk",
    )
    .await;
    let ca = ca();
    let (device_key, device_certificate) = device(&ca, "PED 3210E");

    // TDES: the published IPEK, with the initial KSN in the KS block.
    let before = service.event_count().await;
    let response: pb::ExportKeyResponse = service
        .call(
            "ExportKey",
            &export("alias/bdk", INITIAL_KSN, device_certificate.clone()),
        )
        .await
        .expect("export");
    assert_eq!(service.event_count().await, before + 1, "an export event");
    // KCV of the published IPEK, by paycrypto's published-vector-tested KCV function (as the
    // TR-34 format reports it).
    let expected_kcv =
        paycrypto::kcv::tdes_kcv(&SecretBytes::from_slice(&hex::decode(IPEK).expect("hex")))
            .expect("kcv")
            .to_hex();
    assert_eq!(response.kcv, expected_kcv);
    assert_eq!(response.ephemeral_public_key.len(), 65);
    assert_eq!(response.ephemeral_public_key[0], 0x04);
    let (header, ipek) = paycrypto::ecdh::unwrap_on_device(
        &device_key,
        &response.ephemeral_public_key,
        &response.key_block,
    )
    .expect("the device opens the block");
    assert_eq!(hex::encode_upper(ipek.expose()), IPEK);
    assert_eq!(header.version, Version::D);
    assert_eq!(header.key_usage, KeyUsage::B1);
    assert_eq!(header.algorithm, Algorithm::Tdes);
    assert_eq!(header.mode_of_use, ModeOfUse::Derive);
    assert_eq!(header.exportability, Exportability::NonExportable);
    assert_eq!(
        header.key_set_identifier().expect("KS"),
        Some(hex::decode(INITIAL_KSN).expect("hex"))
    );

    // A second export to the same device: a fresh ephemeral key.
    let again: pb::ExportKeyResponse = service
        .call(
            "ExportKey",
            &export("alias/bdk", INITIAL_KSN, device_certificate.clone()),
        )
        .await
        .expect("export again");
    assert_ne!(again.ephemeral_public_key, response.ephemeral_public_key);

    // Another device cannot open it.
    let (other_key, _) = device(&ca, "PED other");
    assert!(
        paycrypto::ecdh::unwrap_on_device(
            &other_key,
            &response.ephemeral_public_key,
            &response.key_block,
        )
        .is_err()
    );

    // AES-128 BDK: the published AES initial key, its ID in the IK block.
    let response: pb::ExportKeyResponse = service
        .call(
            "ExportKey",
            &export("alias/aes-bdk", AES_INITIAL_KSN, device_certificate.clone()),
        )
        .await
        .expect("aes export");
    let (header, initial_key) = paycrypto::ecdh::unwrap_on_device(
        &device_key,
        &response.ephemeral_public_key,
        &response.key_block,
    )
    .expect("the device opens the aes block");
    assert_eq!(hex::encode_upper(initial_key.expose()), AES_INITIAL_KEY);
    assert_eq!(header.algorithm, Algorithm::Aes);
    assert_eq!(header.key_usage, KeyUsage::B1);
    assert_eq!(
        header.initial_key_id().expect("IK"),
        Some(hex::decode(&AES_INITIAL_KSN[..16]).expect("hex"))
    );
    let expected_kcv = paycrypto::kcv::aes_kcv_cmac(&SecretBytes::from_slice(
        &hex::decode(AES_INITIAL_KEY).expect("hex"),
    ))
    .expect("kcv")
    .to_hex();
    assert_eq!(response.kcv, expected_kcv);

    // The other formats leave the ephemeral key empty.
    common::import_known(
        &service,
        "acme",
        common::attributes(pb::KeyAlgorithm::Tdes2key, "K0", "E", "N"),
        "11111111111111112222222222222222",
        "kek",
    )
    .await;
    let tr31: pb::ExportKeyResponse = service
        .call(
            "ExportKey",
            &pb::ExportKeyRequest {
                tenant_id: "acme".into(),
                key: "alias/bdk".into(),
                wrapping_key: "alias/kek".into(),
                format: Some(pb::export_key_request::Format::DukptInitialKey(
                    pb::DukptInitialKeyExport {
                        ksn: INITIAL_KSN.into(),
                    },
                )),
            },
        )
        .await
        .expect("tr31 export");
    assert!(tr31.ephemeral_public_key.is_empty());
    assert_eq!(tr31.kcv, expected_tdes_kcv());

    // Typed refusals, none of which is an event: an RSA device certificate, none, a malformed
    // one, a key that is not a BDK, a malformed KSN.
    let before = service.event_count().await;
    let rsa_public = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .expect("rsa keygen")
        .to_public_key()
        .to_pkcs1_der()
        .expect("pkcs1")
        .as_bytes()
        .to_vec();
    let rsa_certificate = params("PED rsa", false)
        .signed_by(&HeldRsaPublicKey(rsa_public), &ca)
        .expect("rsa certificate")
        .der()
        .to_vec();
    let refusals = [
        (
            "an RSA certificate",
            export("alias/bdk", INITIAL_KSN, rsa_certificate),
            "deviceCertificate",
        ),
        (
            "no certificate",
            export("alias/bdk", INITIAL_KSN, Vec::new()),
            "deviceCertificate",
        ),
        (
            "not a certificate",
            export("alias/bdk", INITIAL_KSN, b"not a certificate".to_vec()),
            "deviceCertificate",
        ),
        (
            "a KEK",
            export("alias/kek", INITIAL_KSN, device_certificate.clone()),
            "B0",
        ),
        (
            "a bad KSN",
            export("alias/bdk", "FFFF", device_certificate.clone()),
            "ksn",
        ),
    ];
    for (what, request, names) in refusals {
        let refused = service
            .call::<_, pb::ExportKeyResponse>("ExportKey", &request)
            .await
            .expect_err(what);
        assert_eq!(refused.code, ErrorCode::BadRequest, "{what}: {refused:?}");
        assert!(
            refused.message.contains(names),
            "{what}: {}",
            refused.message
        );
        assert!(
            !refused.message.contains(BDK),
            "{what}: {}",
            refused.message
        );
    }
    assert_eq!(
        service.event_count().await,
        before,
        "refusals change nothing"
    );
    service.stop().await;
}

fn expected_tdes_kcv() -> String {
    paycrypto::kcv::tdes_kcv(&SecretBytes::from_slice(&hex::decode(IPEK).expect("hex")))
        .expect("kcv")
        .to_hex()
}

/// Exports of one BDK for many devices at once (key-injection's workers) are recorded
/// together in few appends on the key's stream; each `KeyExported` still names its own
/// request (correlation id, actor) and its own KSN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exports_are_each_recorded_with_their_own_request() {
    const DEVICES: usize = 24;
    let service = common::embedded().await;
    common::import_bdk(&service, "N").await;
    let ca = ca();
    let (_, device_certificate) = device(&ca, "PED together");
    let before = service.store.head().await.expect("head").0;
    let mut exports = tokio::task::JoinSet::new();
    for index in 0..DEVICES {
        let hsm = service.hsm.clone();
        let certificate = device_certificate.clone();
        exports.spawn(async move {
            let caller = hsm_proxy::engine::Caller::new(format!("service:test-{index}"));
            // Device `index` of key set FFFF987654, counter 0.
            let ksn = format!(
                "{:020X}",
                0xFFFF_9876_5400_0000_0000_u128 + ((index as u128) << 21)
            );
            let request = export("alias/bdk", &ksn, certificate);
            hsm.export_key(request, &caller)
                .await
                .map(|_| (caller.correlation_id.clone(), caller.actor.clone(), ksn))
        });
    }
    let mut expected = std::collections::HashSet::new();
    while let Some(done) = exports.join_next().await {
        let (correlation_id, actor, ksn) = done.expect("task").expect("export");
        assert!(!correlation_id.is_empty());
        expected.insert((correlation_id, actor, ksn));
    }
    let recorded: std::collections::HashSet<(String, String, String)> = service
        .store
        .read_after(before, 1_000)
        .await
        .expect("read")
        .iter()
        .filter(|stored| stored.event.event_type == "mpos.hsm.v1.KeyExported")
        .map(|stored| {
            let payload: serde_json::Value =
                serde_json::from_str(&stored.event.payload).expect("json");
            let text = |field: &str| payload[field].as_str().unwrap_or_default().to_owned();
            (text("correlationId"), text("actor"), text("ksn"))
        })
        .collect();
    assert_eq!(recorded.len(), DEVICES, "one event per export");
    assert_eq!(
        recorded, expected,
        "each event names its own request and KSN"
    );
}
