//! ExportKey with `tr34DukptInitialKey`: a device's DUKPT initial key in a TR-34 one-pass key
//! token, enveloped for the device's RSA key and signed by a key distribution host key held in
//! the HSM; opened on the device side by paycrypto's TR-34 receiver, the key is the published
//! IPEK. Against `soft://`; other backends refuse with a typed error.

mod common;

use common::{INITIAL_KSN, IPEK};
use std::str::FromStr;

use base64::Engine as _;
use der::asn1::{BitString, OctetString, UtcTime};
use der::oid::AssociatedOid;
use der::{Decode, Encode};
use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;
use paycrypto::tr34::{self, Credential, ExpectedFreshness, KdhTrust};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

const CA_NAME: &str = "CN=RKI Test CA,O=mPOS Test";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn time(unix: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(std::time::Duration::from_secs(unix)).expect("utc"))
}

fn extension<T: Encode + AssociatedOid>(value: &T) -> Extension {
    Extension {
        extn_id: T::OID,
        critical: true,
        extn_value: OctetString::new(value.to_der().expect("der")).expect("octets"),
    }
}

/// An X.509 certificate for `subject_spki` (DER), signed by `issuer_key` (RSA PKCS #1 v1.5,
/// SHA-256).
fn certificate(
    subject: &str,
    serial: u8,
    ca: bool,
    usage: KeyUsage,
    subject_spki: &[u8],
    issuer_key: &RsaPrivateKey,
) -> Vec<u8> {
    let signature_algorithm = AlgorithmIdentifierOwned {
        oid: der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
        parameters: Some(der::Any::null()),
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).expect("serial"),
        signature: signature_algorithm.clone(),
        issuer: Name::from_str(CA_NAME).expect("issuer"),
        validity: Validity {
            not_before: time(now() - 3_600),
            not_after: time(now() + 365 * 24 * 3_600),
        },
        subject: Name::from_str(subject).expect("subject"),
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(subject_spki).expect("spki"),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            extension(&BasicConstraints {
                ca,
                path_len_constraint: None,
            }),
            extension(&usage),
        ]),
    };
    let hashed = Sha256::digest(tbs.to_der().expect("tbs"));
    let signature = issuer_key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &hashed)
        .expect("sign");
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm,
        signature: BitString::from_bytes(&signature).expect("bits"),
    }
    .to_der()
    .expect("certificate")
}

fn rsa_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa keygen")
}

fn spki(key: &RsaPrivateKey) -> Vec<u8> {
    key.to_public_key()
        .to_public_key_der()
        .expect("spki")
        .as_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_initial_key_leaves_in_a_tr34_token_only_that_device_opens() {
    let service = common::embedded().await;
    common::import_bdk(&service, "N").await;
    // The key distribution host's key pair lives in the HSM; the platform's CA certifies it.
    let kdh: pb::Key = service
        .call(
            "CreateKey",
            &pb::CreateKeyRequest {
                tenant_id: "acme".into(),
                attributes: Some(common::attributes(
                    pb::KeyAlgorithm::Rsa2048,
                    "S0",
                    "S",
                    "N",
                )),
                alias: "kdh".into(),
            },
        )
        .await
        .expect("kdh key pair");
    let kdh_public: pb::GetPublicKeyResponse = service
        .call(
            "GetPublicKey",
            &pb::GetPublicKeyRequest {
                tenant_id: "acme".into(),
                key: kdh.key_id.clone(),
            },
        )
        .await
        .expect("public key");
    let ca_key = rsa_key();
    let ca_certificate = certificate(
        CA_NAME,
        1,
        true,
        KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        &spki(&ca_key),
        &ca_key,
    );
    let kdh_certificate = certificate(
        "CN=RKI Test KDH",
        2,
        false,
        KeyUsage(KeyUsages::DigitalSignature.into()),
        &kdh_public.public_key,
        &ca_key,
    );
    // The device (key receiving device) and its certificate.
    let krd_key = rsa_key();
    let krd_certificate = certificate(
        "CN=PED 3210E",
        3,
        false,
        KeyUsage(KeyUsages::KeyEncipherment.into()),
        &spki(&krd_key),
        &ca_key,
    );

    let export = |wrapping: &str, ksn: &str, krd: Vec<u8>| pb::ExportKeyRequest {
        tenant_id: "acme".into(),
        key: "alias/bdk".into(),
        wrapping_key: wrapping.into(),
        format: Some(pb::export_key_request::Format::Tr34DukptInitialKey(
            pb::Tr34DukptInitialKeyExport {
                ksn: ksn.into(),
                krd_certificate: krd,
                kdh_certificate: kdh_certificate.clone(),
            },
        )),
    };
    let response: pb::ExportKeyResponse = service
        .call(
            "ExportKey",
            &export("alias/kdh", INITIAL_KSN, krd_certificate.clone()),
        )
        .await
        .expect("export");
    // KCV of the published IPEK, by paycrypto's published-vector-tested KCV function.
    let expected_kcv =
        paycrypto::kcv::tdes_kcv(&SecretBytes::from_slice(&hex::decode(IPEK).expect("hex")))
            .expect("kcv")
            .to_hex();
    assert_eq!(response.kcv, expected_kcv);

    // The device opens it: the KDH chain to the CA, the signature, the signing time, then its
    // own private key.
    let token = base64::engine::general_purpose::STANDARD
        .decode(&response.key_block)
        .expect("base64");
    let krd = Credential::from_der(
        &krd_certificate,
        &SecretBytes::from_slice(krd_key.to_pkcs8_der().expect("pkcs8").as_bytes()),
    )
    .expect("krd credential");
    let received = tr34::open_key_token(
        &token,
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
    .expect("the device opens the token");
    assert_eq!(hex::encode_upper(received.key.expose()), IPEK);
    assert_eq!(received.header, "B0000B1TX00N0000");

    // Another device cannot open it.
    let other_key = rsa_key();
    let other_certificate = certificate(
        "CN=PED other",
        4,
        false,
        KeyUsage(KeyUsages::KeyEncipherment.into()),
        &spki(&other_key),
        &ca_key,
    );
    let other = Credential::from_der(
        &other_certificate,
        &SecretBytes::from_slice(other_key.to_pkcs8_der().expect("pkcs8").as_bytes()),
    )
    .expect("other credential");
    assert!(
        tr34::open_key_token(
            &token,
            &KdhTrust {
                ca_certificate: &ca_certificate,
                kdh_chain: &[&kdh_certificate],
                now_unix: now(),
            },
            &other,
            ExpectedFreshness::SigningTime {
                now_unix: now(),
                max_skew_secs: 300,
            },
        )
        .is_err()
    );

    // Typed refusals: a KEK in place of the KDH key, a KDH certificate of another key, no
    // device certificate, a malformed one; the export is an event, the refusals are not.
    let before = service.event_count().await;
    common::import_known(
        &service,
        "acme",
        common::attributes(pb::KeyAlgorithm::Tdes2key, "K0", "E", "N"),
        "11111111111111112222222222222222",
        "kek",
    )
    .await;
    let after_kek = service.event_count().await;
    assert!(after_kek > before);
    let refused = service
        .call::<_, pb::ExportKeyResponse>(
            "ExportKey",
            &export("alias/kek", INITIAL_KSN, krd_certificate.clone()),
        )
        .await
        .expect_err("a KEK is no KDH key");
    assert!(refused.message.contains("S0"), "{refused:?}");
    let mut wrong_kdh = export("alias/kdh", INITIAL_KSN, krd_certificate.clone());
    if let Some(pb::export_key_request::Format::Tr34DukptInitialKey(tr34)) = &mut wrong_kdh.format {
        tr34.kdh_certificate = other_certificate.clone();
    }
    let refused = service
        .call::<_, pb::ExportKeyResponse>("ExportKey", &wrong_kdh)
        .await
        .expect_err("the certificate is not the KDH key's");
    assert_eq!(refused.code, mpos_errors::ErrorCode::BadRequest);
    assert!(refused.message.contains("kdhCertificate"), "{refused:?}");
    for krd in [Vec::new(), b"not a certificate".to_vec()] {
        let refused = service
            .call::<_, pb::ExportKeyResponse>("ExportKey", &export("alias/kdh", INITIAL_KSN, krd))
            .await
            .expect_err("no usable device certificate");
        assert_eq!(
            refused.code,
            mpos_errors::ErrorCode::BadRequest,
            "{refused:?}"
        );
    }
    assert_eq!(
        service.event_count().await,
        after_kek,
        "refusals change nothing"
    );
    service.stop().await;
}
