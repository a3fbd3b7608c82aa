//! Test PKI made with rcgen: the device API's server certificate, manufacturer CAs, device
//! certificates, CRLs, and mTLS clients.

use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, date_time_ymd,
};
use terminal_management::service::DeviceTls;

/// The device API's server certificate (for `localhost`) and key, PEM, made once per test
/// binary.
fn server() -> &'static (String, String) {
    static SERVER: OnceLock<(String, String)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("server cert");
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    })
}

/// What the service serves the device API with.
pub fn server_tls() -> DeviceTls {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = server();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).expect("write");
    std::fs::write(&key_path, key).expect("write");
    DeviceTls::from_pem_files(&cert_path, &key_path).expect("device tls")
}

/// A test manufacturer CA.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
    name: String,
}

impl TestCa {
    /// A self-signed CA valid 2024 to 2045.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2045, 1, 1);
        params.use_authority_key_identifier_extension = true;
        let certificate = params.self_signed(&key).expect("CA");
        Self {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
            name: name.to_owned(),
        }
    }

    /// A device certificate valid until `until_year`.
    pub fn device_until(&self, serial: &[u8], until_year: i32) -> TestDevice {
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
        params.not_after = date_time_ymd(until_year, 1, 1);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let certificate = params.signed_by(&key, &self.issuer).expect("device");
        TestDevice {
            pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A device certificate valid 2024 to 2045.
    pub fn device(&self, serial: &[u8]) -> TestDevice {
        self.device_until(serial, 2045)
    }

    /// A CRL (PEM) revoking `serials`, issued in `year`.
    pub fn crl(&self, serials: &[&[u8]], year: i32) -> String {
        CertificateRevocationListParams {
            this_update: date_time_ymd(year, 6, 1),
            next_update: date_time_ymd(2044, 6, 1),
            crl_number: SerialNumber::from(u64::try_from(year).expect("year")),
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
        .signed_by(&self.issuer)
        .expect("crl")
        .pem()
        .expect("pem")
    }
}

/// A device certificate and its key.
pub struct TestDevice {
    pub pem: String,
    pub key_pem: String,
}

impl TestDevice {
    /// An HTTPS client that presents this device's certificate and trusts the service.
    pub fn client(&self) -> reqwest::Client {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", self.pem, self.key_pem).as_bytes())
                .expect("identity");
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(
                reqwest::Certificate::from_pem(server().0.as_bytes()).expect("server cert"),
            )
            .identity(identity)
            .build()
            .expect("client")
    }
}

/// An HTTPS client that trusts the service but presents no certificate.
pub fn anonymous_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(server().0.as_bytes()).expect("server cert"),
        )
        .build()
        .expect("client")
}
