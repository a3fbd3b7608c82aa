//! The manufacturer's PKI of simulated PEDs: a CA (P-256 by default, RSA-2048 on request) and
//! the device identities it issues, saved and loaded as PEM.
//!
//! A device identity is the certificate the PED presents on the platform's device APIs
//! (mTLS, extendedKeyUsage clientAuth) and, for an RSA device, the TR-34 key receiving
//! device (KRD) certificate its initial key is wrapped for (keyUsage keyEncipherment and
//! digitalSignature); an EC device's P-256 key is for ECDH key agreement (keyAgreement and
//! digitalSignature). Private keys are PKCS #8, held in zeroizing buffers and never printed.

use std::fmt;
use std::path::Path;

use paycrypto::SecretBytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, SerialNumber, date_time_ymd,
};
use rsa::pkcs8::EncodePrivateKey;
use zeroize::Zeroizing;

use crate::SimError;

/// The CA certificate file in a CA directory.
pub const CA_CERTIFICATE_FILE: &str = "ca.pem";
/// The CA private key file in a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The device certificate file in a device directory.
pub const DEVICE_CERTIFICATE_FILE: &str = "device.pem";
/// The device private key file in a device directory.
pub const DEVICE_KEY_FILE: &str = "device.key";

/// The first and last year of the validity of every certificate made here (as the
/// terminal-management tests' CA).
const VALID_FROM: i32 = 2024;
const VALID_UNTIL: i32 = 2045;

/// The key of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKeyKind {
    /// RSA-2048: TR-34 key transport (and mTLS).
    Rsa2048,
    /// ECDSA/ECDH P-256: ECDH key agreement (and mTLS).
    P256,
}

impl DeviceKeyKind {
    /// `rsa2048` or `p256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa2048",
            Self::P256 => "p256",
        }
    }
}

/// A new key pair of `kind`, as rcgen signs with it, and its PKCS #8 DER.
fn generate_key(kind: DeviceKeyKind) -> Result<(KeyPair, SecretBytes), SimError> {
    match kind {
        DeviceKeyKind::Rsa2048 => {
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|error| SimError::pki(format!("rsa key generation: {error}")))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|error| SimError::pki(format!("rsa key encoding: {error}")))?;
            let der = SecretBytes::from_slice(der.as_bytes());
            let pair = KeyPair::from_pkcs8_der_and_sign_algo(
                &der.expose().to_vec().into(),
                &PKCS_RSA_SHA256,
            )
            .map_err(|error| SimError::pki(format!("rsa key: {error}")))?;
            Ok((pair, der))
        }
        DeviceKeyKind::P256 => {
            let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                .map_err(|error| SimError::pki(format!("p-256 key generation: {error}")))?;
            let der = SecretBytes::from_slice(pair.serialized_der());
            Ok((pair, der))
        }
    }
}

/// The kind of a PKCS #8 private key.
fn key_kind(pair: &KeyPair) -> Result<DeviceKeyKind, SimError> {
    let algorithm = pair.algorithm();
    if algorithm == &PKCS_RSA_SHA256 {
        Ok(DeviceKeyKind::Rsa2048)
    } else if algorithm == &PKCS_ECDSA_P256_SHA256 {
        Ok(DeviceKeyKind::P256)
    } else {
        Err(SimError::pki("the key is neither RSA nor P-256"))
    }
}

/// A PKCS #8 PEM key, parsed.
fn parse_key_pem(what: &str, pem: &str) -> Result<KeyPair, SimError> {
    KeyPair::from_pem(pem).map_err(|error| SimError::pki(format!("{what}: {error}")))
}

/// A manufacturer CA that issues device certificates. `Debug` shows its name only.
pub struct ManufacturerCa {
    name: String,
    certificate_pem: String,
    certificate_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for ManufacturerCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManufacturerCa")
            .field("name", &self.name)
            .field("key", &"***")
            .finish()
    }
}

impl ManufacturerCa {
    /// A new self-signed P-256 CA named `name` (common name), valid 2024 to 2045.
    pub fn generate(name: &str) -> Result<Self, SimError> {
        Self::generate_with(name, DeviceKeyKind::P256)
    }

    /// A new self-signed CA with a key of `kind` (RSA for verifiers that check RSA
    /// certificate signatures only, like TR-34 KRD chain checks).
    pub fn generate_with(name: &str, kind: DeviceKeyKind) -> Result<Self, SimError> {
        let (key, _) = generate_key(kind)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(SimError::pki)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(VALID_FROM, 1, 1);
        params.not_after = date_time_ymd(VALID_UNTIL, 1, 1);
        params.use_authority_key_identifier_extension = true;
        let certificate = params.self_signed(&key).map_err(SimError::pki)?;
        Ok(Self {
            name: name.to_owned(),
            certificate_pem: certificate.pem(),
            certificate_der: certificate.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and PKCS #8 private key, both PEM.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, SimError> {
        let key = parse_key_pem("CA key", key_pem)?;
        let certificate_der = certificates_from_pem(certificate_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| SimError::pki("CA certificate: no certificate in the PEM"))?;
        let name = common_name(&certificate_der)?;
        let issuer = Issuer::from_ca_cert_der(&certificate_der.clone().into(), key)
            .map_err(|error| SimError::pki(format!("CA certificate: {error}")))?;
        Ok(Self {
            name,
            certificate_pem: certificate_pem.to_owned(),
            certificate_der,
            issuer,
        })
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), SimError> {
        std::fs::create_dir_all(dir).map_err(|error| SimError::io(dir, error))?;
        write_public(&dir.join(CA_CERTIFICATE_FILE), &self.certificate_pem)?;
        write_private(&dir.join(CA_KEY_FILE), &self.key_pem())
    }

    /// Reads `ca.pem` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, SimError> {
        let certificate = read(&dir.join(CA_CERTIFICATE_FILE))?;
        let key = Zeroizing::new(read(&dir.join(CA_KEY_FILE))?);
        Self::from_pem(&certificate, &key)
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The CA's private key, PKCS #8 PEM.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// Issues a device certificate with serial number `serial` (big-endian bytes, as the
    /// platform reads it back in hex) for a new key of `kind`: subject
    /// `CN=PINPAD-<serial hex>, O=<CA name>`, valid 2024 to 2045, extendedKeyUsage
    /// clientAuth; keyUsage digitalSignature and keyEncipherment (RSA: a TR-34 KRD) or
    /// keyAgreement (P-256: ECDH).
    pub fn issue(&self, serial: &[u8], kind: DeviceKeyKind) -> Result<DeviceIdentity, SimError> {
        if serial.is_empty() || serial.len() > 20 {
            return Err(SimError::InvalidInput(
                "device serial: 1 to 20 bytes".to_owned(),
            ));
        }
        let (key, private_key) = generate_key(kind)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(SimError::pki)?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("PINPAD-{}", hex::encode_upper(serial)),
        );
        if !self.name.is_empty() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, self.name.clone());
        }
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = date_time_ymd(VALID_FROM, 1, 1);
        params.not_after = date_time_ymd(VALID_UNTIL, 1, 1);
        params.key_usages = match kind {
            DeviceKeyKind::Rsa2048 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            DeviceKeyKind::P256 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyAgreement,
            ],
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(SimError::pki)?;
        Ok(DeviceIdentity {
            kind,
            certificate_pem: certificate.pem(),
            certificate_der: certificate.der().to_vec(),
            private_key,
        })
    }
}

/// The subject common name of a DER certificate (empty when it has none).
fn common_name(certificate_der: &[u8]) -> Result<String, SimError> {
    let (_, certificate) = x509_parser::parse_x509_certificate(certificate_der)
        .map_err(|error| SimError::pki(format!("certificate: {error}")))?;
    Ok(certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .unwrap_or_default()
        .to_owned())
}

/// A device's certificate and private key. `Debug` shows the key kind and the certificate
/// size only.
#[derive(Clone)]
pub struct DeviceIdentity {
    kind: DeviceKeyKind,
    certificate_pem: String,
    certificate_der: Vec<u8>,
    private_key: SecretBytes,
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("kind", &self.kind)
            .field("certificate_der_len", &self.certificate_der.len())
            .field("private_key", &"***")
            .finish()
    }
}

impl DeviceIdentity {
    /// A device identity from its certificate and PKCS #8 private key, both PEM.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, SimError> {
        let pair = parse_key_pem("device key", key_pem)?;
        let kind = key_kind(&pair)?;
        let certificate_der = certificates_from_pem(certificate_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| SimError::pki("device certificate: no certificate in the PEM"))?;
        let private_key = SecretBytes::from_slice(pair.serialized_der());
        if kind == DeviceKeyKind::Rsa2048 {
            // Checks that the key is the certificate's.
            paycrypto::tr34::Credential::from_der(&certificate_der, &private_key)?;
        }
        Ok(Self {
            kind,
            certificate_pem: certificate_pem.to_owned(),
            certificate_der,
            private_key,
        })
    }

    /// Writes `device.pem` and `device.key` (mode 0600) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), SimError> {
        std::fs::create_dir_all(dir).map_err(|error| SimError::io(dir, error))?;
        write_public(&dir.join(DEVICE_CERTIFICATE_FILE), &self.certificate_pem)?;
        write_private(&dir.join(DEVICE_KEY_FILE), &self.private_key_pem()?)
    }

    /// Reads `device.pem` and `device.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, SimError> {
        let certificate = read(&dir.join(DEVICE_CERTIFICATE_FILE))?;
        let key = Zeroizing::new(read(&dir.join(DEVICE_KEY_FILE))?);
        Self::from_pem(&certificate, &key)
    }

    /// The key kind.
    pub fn kind(&self) -> DeviceKeyKind {
        self.kind
    }

    /// The certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The certificate's serial number, big-endian bytes.
    pub fn serial(&self) -> Result<Vec<u8>, SimError> {
        Ok(paycrypto::tr34::CertificateId::of_certificate(&self.certificate_der)?.serial)
    }

    /// The private key, PKCS #8 PEM.
    pub fn private_key_pem(&self) -> Result<Zeroizing<String>, SimError> {
        pem_rfc7468::encode_string(
            "PRIVATE KEY",
            pem_rfc7468::LineEnding::LF,
            self.private_key.expose(),
        )
        .map(Zeroizing::new)
        .map_err(|error| SimError::pki(format!("device key PEM: {error}")))
    }

    /// The private key, PKCS #8 DER (for the TR-34 and ECDH unwrapping inside the device).
    pub(crate) fn private_key_der(&self) -> &SecretBytes {
        &self.private_key
    }
}

/// Every `CERTIFICATE` block of a PEM text, DER.
pub fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, SimError> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let block = &rest[start..];
        let end = block
            .find(END)
            .ok_or_else(|| SimError::pki("PEM: unterminated certificate"))?
            + END.len();
        let (label, der) = pem_rfc7468::decode_vec(&block.as_bytes()[..end])
            .map_err(|error| SimError::pki(format!("PEM: {error}")))?;
        if label != "CERTIFICATE" {
            return Err(SimError::pki("PEM: not a certificate"));
        }
        certificates.push(der);
        rest = &block[end..];
    }
    if certificates.is_empty() {
        return Err(SimError::pki("PEM: no certificate"));
    }
    Ok(certificates)
}

fn read(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|error| SimError::io(path, error))
}

fn write_public(path: &Path, text: &str) -> Result<(), SimError> {
    std::fs::write(path, text).map_err(|error| SimError::io(path, error))
}

fn write_private(path: &Path, text: &str) -> Result<(), SimError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|error| SimError::io(path, error))?;
    file.write_all(text.as_bytes())
        .map_err(|error| SimError::io(path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_pem_files_without_printing_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ManufacturerCa::generate("Sim Vendor CA").expect("ca");
        ca.save(&dir.path().join("ca")).expect("save ca");
        let loaded = ManufacturerCa::load(&dir.path().join("ca")).expect("load ca");
        assert_eq!(loaded.name(), "Sim Vendor CA");
        assert_eq!(loaded.certificate_der(), ca.certificate_der());
        assert!(!format!("{loaded:?}").contains("PRIVATE"));

        let device = loaded
            .issue(&[0x0A, 0x01], DeviceKeyKind::P256)
            .expect("device");
        device.save(&dir.path().join("dev")).expect("save device");
        let back = DeviceIdentity::load(&dir.path().join("dev")).expect("load device");
        assert_eq!(back.kind(), DeviceKeyKind::P256);
        assert_eq!(back.serial().expect("serial"), vec![0x0A, 0x01]);
        assert_eq!(back.certificate_der(), device.certificate_der());
        let printed = format!("{back:?}");
        assert!(
            printed.contains("***") && !printed.contains("PRIVATE"),
            "{printed}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("dev").join(DEVICE_KEY_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key file is private");
        }
    }

    #[test]
    fn rsa_devices_are_tr34_key_receiving_devices() {
        let ca = ManufacturerCa::generate("Sim Vendor CA").expect("ca");
        let device = ca.issue(&[0x42], DeviceKeyKind::Rsa2048).expect("device");
        let key = device.private_key_pem().expect("pem");
        let back = DeviceIdentity::from_pem(device.certificate_pem(), &key).expect("parse");
        assert_eq!(back.kind(), DeviceKeyKind::Rsa2048);
        paycrypto::tr34::Credential::from_der(back.certificate_der(), back.private_key_der())
            .expect("a KRD credential");
        // A key that is not the certificate's is refused.
        let other = ca.issue(&[0x43], DeviceKeyKind::Rsa2048).expect("other");
        let other_key = other.private_key_pem().expect("pem");
        assert!(DeviceIdentity::from_pem(device.certificate_pem(), &other_key).is_err());
    }
}
