//! The test PKI shared by the key tests: the platform's RKI CA and its key distribution host
//! (KDH), a vendor CA and two RSA PEDs (RSA key generation is slow: made once per binary), and
//! TR-34 key tokens built as the hsm-proxy builds them.

#![allow(dead_code, unreachable_pub)]

pub mod ki;
pub mod tms;

use std::sync::OnceLock;

use mpos_proto::key_injection as ki_pb;
use paycrypto::SecretBytes;
use paycrypto::tr34::{
    self, ContentEncryption, Credential, Freshness, KeyTransport, SignatureScheme,
};
use terminal_sim::{DeviceIdentity, DeviceKeyKind, ManufacturerCa, Terminal, TerminalConfig};

pub const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
pub const INITIAL_KSN: &str = "FFFF9876543210E00000";
pub const IPEK: &str = "6AC292FAA1315B4D858AB3A3D7D5933A";
pub const AES_INITIAL_KEY_ID: &str = "1234567890123456";
pub const AES_INITIAL_KEY: &str = "1273671EA26AC29AFA4D1084127652A1";
/// The TR-34 key block headers the hsm-proxy uses for DUKPT initial keys.
pub const TDES_HEADER: &str = "B0000B1TX00N0000";
pub const AES_HEADER: &str = "D0000B1AX00N0000";

pub fn secret(text: &str) -> SecretBytes {
    SecretBytes::from_hex("test key", text).expect("hex")
}

pub fn h(text: &str) -> Vec<u8> {
    hex::decode(text).expect("hex")
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The PKCS #8 DER of an identity's key (through its PEM, as a file would hold it).
pub fn key_der(identity: &DeviceIdentity) -> SecretBytes {
    let pem = identity.private_key_pem().expect("pem");
    let (_, der) = pem_rfc7468::decode_vec(pem.as_bytes()).expect("pem");
    SecretBytes::new(der)
}

/// The platform's RKI CA and its key distribution host, and the vendor's PEDs (RSA key
/// generation is slow: made once).
pub struct Pki {
    pub rki_ca: ManufacturerCa,
    pub kdh: Credential,
    pub vendor: ManufacturerCa,
    pub ped: DeviceIdentity,
    pub other_ped: DeviceIdentity,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let rki_ca =
            ManufacturerCa::generate_with("Sim RKI CA", DeviceKeyKind::Rsa2048).expect("rki ca");
        // An RSA identity of the RKI CA serves as the KDH (digitalSignature is what TR-34
        // asks of a KDH certificate).
        let kdh_identity = rki_ca
            .issue(&[0x0D, 0x01], DeviceKeyKind::Rsa2048)
            .expect("kdh");
        let kdh = Credential::from_der(kdh_identity.certificate_der(), &key_der(&kdh_identity))
            .expect("kdh credential");
        let vendor = ManufacturerCa::generate("Sim Vendor CA").expect("vendor");
        let ped = vendor
            .issue(&[0x7E, 0x01], DeviceKeyKind::Rsa2048)
            .expect("ped");
        let other_ped = vendor
            .issue(&[0x7E, 0x02], DeviceKeyKind::Rsa2048)
            .expect("other");
        Pki {
            rki_ca,
            kdh,
            vendor,
            ped,
            other_ped,
        }
    })
}

pub fn terminal(identity: &DeviceIdentity, kdh_trust: &[u8]) -> Terminal {
    terminal_at(
        identity,
        kdh_trust,
        "https://localhost:1",
        pki().vendor.certificate_der(),
    )
}

/// A terminal whose key-injection API is `ki_url`, trusting the TLS root `server_root`.
pub fn terminal_at(
    identity: &DeviceIdentity,
    kdh_trust: &[u8],
    ki_url: &str,
    server_root: &[u8],
) -> Terminal {
    Terminal::new(TerminalConfig {
        terminal_id: "t-1".to_owned(),
        identity: identity.clone(),
        tms_url: "https://localhost:1".to_owned(),
        ki_url: ki_url.to_owned(),
        server_roots: vec![server_root.to_vec()],
        kdh_trust: kdh_trust.to_vec(),
        parameter_verifying_key: None,
    })
    .expect("terminal")
}

pub fn token(kdh: &Credential, krd_certificate: &[u8], key: &SecretBytes, header: &str) -> Vec<u8> {
    tr34::build_key_token(
        &mut rand::rngs::OsRng,
        kdh,
        krd_certificate,
        &tr34::KeyTokenRequest {
            key,
            header,
            freshness: Freshness::SigningTime(now()),
            key_transport: KeyTransport::RsaOaepSha256,
            content_encryption: ContentEncryption::Aes128Cbc,
            signature: SignatureScheme::Pkcs1v15Sha256,
        },
    )
    .expect("token")
}

pub fn delivery(
    algorithm: ki_pb::DukptAlgorithm,
    initial_key_id: &str,
    key_token: Vec<u8>,
) -> ki_pb::DeviceKeyDelivery {
    ki_pb::DeviceKeyDelivery {
        injection_id: "0123456789abcdef0123456789abcdef".to_owned(),
        method: ki_pb::DeliveryMethod::Tr34.into(),
        algorithm: algorithm.into(),
        initial_key_id: initial_key_id.to_owned(),
        key_token,
        kdh_certificate: pki().kdh.certificate_der().to_vec(),
        ..ki_pb::DeviceKeyDelivery::default()
    }
}
