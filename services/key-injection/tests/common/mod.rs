//! What the key-injection tests share: certificates made with rcgen and clear-component key
//! imports into the hsm-proxy.

use std::path::Path;
use std::time::Duration;

use hsm_proxy::rpc::HsmClient;
use mpos_proto::hsm as hsm_pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose, PKCS_RSA_SHA256,
    PublicKeyData, SignatureAlgorithm, date_time_ymd,
};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A public key held elsewhere (the KDH's, inside the HSM), for rcgen to certify.
pub(crate) struct HeldPublicKey(pub(crate) Vec<u8>);

impl PublicKeyData for HeldPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

/// Certificate parameters valid 2024 to 2040 with one key usage.
pub(crate) fn params(name: &str, ca: bool, usage: KeyUsagePurpose) -> CertificateParams {
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

/// Imports `key_hex` for `tenant` as two clear components (0x11… and its XOR complement),
/// each with its KCV.
pub(crate) async fn import_components(
    hsm: &HsmClient,
    tenant: &str,
    key_hex: &str,
    usage: &str,
    mode: &str,
    alias: &str,
) {
    let key = hex::decode(key_hex).expect("hex");
    let component = |byte: u8| -> Vec<u8> { key.iter().map(|k| k ^ byte).collect() };
    let kcv = |bytes: &[u8]| {
        paycrypto::kcv::tdes_kcv(&SecretBytes::from_slice(bytes))
            .expect("kcv")
            .to_hex()
    };
    let parts = [vec![0x11; key.len()], component(0x11)];
    let _: hsm_pb::Key = hsm
        .call(
            "ImportKey",
            &hsm_pb::ImportKeyRequest {
                tenant_id: tenant.into(),
                alias: alias.into(),
                material: Some(hsm_pb::import_key_request::Material::Components(
                    hsm_pb::ComponentsImport {
                        attributes: Some(hsm_pb::KeyAttributes {
                            algorithm: hsm_pb::KeyAlgorithm::Tdes2key.into(),
                            key_usage: usage.into(),
                            mode_of_use: mode.into(),
                            exportability: "N".into(),
                        }),
                        components: parts
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

/// Creates the tenant's key distribution host key pair (RSA-2048, S0) in the hsm-proxy and
/// answers its public key (PKCS #1 DER), for a certificate to be issued for it.
pub(crate) async fn create_kdh(hsm: &HsmClient, tenant: &str) -> Vec<u8> {
    let kdh: hsm_pb::Key = hsm
        .call(
            "CreateKey",
            &hsm_pb::CreateKeyRequest {
                tenant_id: tenant.into(),
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
                tenant_id: tenant.into(),
                key: kdh.key_id,
            },
        )
        .await
        .expect("public key");
    rsa::RsaPublicKey::from_public_key_der(&public.public_key)
        .expect("rsa public key")
        .to_pkcs1_der()
        .expect("pkcs1")
        .as_bytes()
        .to_vec()
}

/// Starts an hsm-proxy with one soft backend (keys in `keys`, a fixed test LMK) on its own
/// infrastructure, until `cancel`.
pub(crate) async fn start_soft_hsm(
    common: &CommonConfig,
    keys: &Path,
    token: &SecretString,
    cancel: &CancellationToken,
) -> hsm_proxy::service::Running {
    let infrastructure = Infrastructure::default();
    let (store, bus) = infrastructure
        .connect(common, cancel)
        .await
        .expect("hsm infrastructure");
    hsm_proxy::service::start(
        common,
        &hsm_proxy::service::HsmConfig {
            backends: vec![format!("soft://{}", keys.display())],
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
        token,
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        cancel,
    )
    .await
    .expect("hsm-proxy")
}
