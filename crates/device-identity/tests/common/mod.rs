//! Test manufacturer CAs, device certificates and CRLs made with rcgen.

#![allow(dead_code, unreachable_pub)]

use chrono::{DateTime, TimeZone, Utc};
use device_identity::{Crl, DeviceCertificate, ManufacturerCa};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A time inside every "valid" test certificate (2024-01-01 to 2045-01-01).
pub fn inside_validity() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0)
        .single()
        .expect("date")
}

/// A test manufacturer CA that can issue certificates and CRLs.
pub struct TestCa {
    pub name: String,
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub key_der: Vec<u8>,
    pub issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A self-signed CA valid 2024 to 2045, with keyCertSign and cRLSign.
    pub fn new(name: &str) -> Self {
        Self::with(name, |_| {})
    }

    /// A self-signed CA whose parameters `adjust` changes.
    pub fn with(name: &str, adjust: impl FnOnce(&mut CertificateParams)) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = ca_params(name);
        adjust(&mut params);
        let certificate = params.self_signed(&key).expect("self-signed CA");
        Self {
            name: name.to_owned(),
            der: certificate.der().clone(),
            pem: certificate.pem(),
            key_der: key.serialize_der(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA issued by this CA.
    pub fn intermediate(&self, name: &str) -> Self {
        self.intermediate_with(name, |_| {})
    }

    /// An intermediate CA issued by this CA, whose parameters `adjust` changes.
    pub fn intermediate_with(
        &self,
        name: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = ca_params(name);
        adjust(&mut params);
        let certificate = params.signed_by(&key, &self.issuer).expect("intermediate");
        Self {
            name: name.to_owned(),
            der: certificate.der().clone(),
            pem: certificate.pem(),
            key_der: key.serialize_der(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A copy of the CA's key.
    pub fn key(&self) -> KeyPair {
        KeyPair::try_from(self.key_der.as_slice()).expect("key")
    }

    /// This CA as the crate reads it.
    pub fn manufacturer_ca(&self) -> ManufacturerCa {
        ManufacturerCa::from_der(self.der.as_ref(), inside_validity()).expect("manufacturer CA")
    }

    /// A device certificate valid 2024 to 2045 for TLS client authentication.
    pub fn device(&self, serial: &[u8]) -> TestDevice {
        self.device_with(serial, |_| {})
    }

    /// A device certificate whose parameters `adjust` changes.
    pub fn device_with(
        &self,
        serial: &[u8],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> TestDevice {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("PINPAD-{}", hex::encode_upper(serial)),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.name.clone());
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2045, 1, 1);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        adjust(&mut params);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("device certificate");
        TestDevice {
            der: certificate.der().clone(),
            pem: certificate.pem(),
            key_der: key.serialize_der(),
        }
    }

    /// A CRL of this CA revoking `serials`, valid 2024 to 2044.
    pub fn crl(&self, serials: &[&[u8]]) -> Vec<u8> {
        crl_params(serials)
            .signed_by(&self.issuer)
            .expect("crl")
            .der()
            .to_vec()
    }

    /// That CRL as the crate reads it.
    pub fn checked_crl(&self, serials: &[&[u8]]) -> Crl {
        Crl::from_der(&self.crl(serials), &self.manufacturer_ca()).expect("crl")
    }
}

pub fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Test Terminals Ltd");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2045, 1, 1);
    params.use_authority_key_identifier_extension = true;
    params
}

pub fn crl_params(serials: &[&[u8]]) -> CertificateRevocationListParams {
    CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 6, 1),
        next_update: date_time_ymd(2044, 6, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: date_time_ymd(2024, 5, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
}

/// A device certificate and its key.
pub struct TestDevice {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub key_der: Vec<u8>,
}

impl TestDevice {
    pub fn certificate(&self) -> DeviceCertificate {
        DeviceCertificate::from_der(self.der.as_ref()).expect("device certificate")
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }
}
