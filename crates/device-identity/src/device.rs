//! Device certificates issued by manufacturers.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;

use crate::x509::{MAX_CERTIFICATE_BYTES, malformed, read_certificate, single_pem};
use crate::{Fingerprint, IdentityError, SerialNumber};

/// A manufacturer-issued device certificate (a PIN pad's TLS client certificate). Cheap to
/// clone.
///
/// Built only from an end-entity certificate (not a CA) whose extendedKeyUsage, if present,
/// allows TLS client authentication, and that `rustls-webpki` can read. Parsing does not check
/// the validity period or the issuer: [`crate::TrustStore::verify`] does, at the time of use.
#[derive(Clone)]
pub struct DeviceCertificate {
    inner: Arc<DeviceInner>,
}

struct DeviceInner {
    der: CertificateDer<'static>,
    fingerprint: Fingerprint,
    serial: SerialNumber,
    subject: String,
    common_name: Option<String>,
    issuer: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl DeviceCertificate {
    /// Reads a PEM `CERTIFICATE` (exactly one) and checks it as
    /// [`DeviceCertificate::from_der`] does.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let der: CertificateDer<'static> =
            single_pem("certificate", pem.as_bytes(), 2 * MAX_CERTIFICATE_BYTES)?;
        Self::from_der(der.as_ref())
    }

    /// Reads a DER certificate and checks that it can be a TLS client certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let fields = read_certificate(der)?;
        if fields.is_ca {
            return Err(IdentityError::NotAnEndEntity);
        }
        if !fields.client_auth_allowed {
            return Err(IdentityError::NotAClientCertificate);
        }
        let certificate = CertificateDer::from(der.to_vec());
        webpki::EndEntityCert::try_from(&certificate)
            .map_err(|error| malformed("certificate", format!("{error:?}")))?;
        Ok(Self {
            inner: Arc::new(DeviceInner {
                fingerprint: Fingerprint::of_der(der),
                serial: fields.serial,
                subject: fields.subject,
                common_name: fields.common_name,
                issuer: fields.issuer,
                not_before: fields.not_before,
                not_after: fields.not_after,
                der: certificate,
            }),
        })
    }

    /// The serial number the manufacturer gave the certificate (shown as uppercase hex).
    pub fn serial(&self) -> &SerialNumber {
        &self.inner.serial
    }

    /// The SHA-256 of the certificate's DER.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// The subject name (`CN=..., O=...`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The subject's first common name (often the device's hardware serial), if any.
    pub fn common_name(&self) -> Option<&str> {
        self.inner.common_name.as_deref()
    }

    /// The issuer name (`CN=..., O=...`).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The start of the validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.inner.not_before
    }

    /// The end of the validity.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.inner.not_after
    }

    /// Whether the certificate is within its validity at `now`.
    pub fn check_valid_at(&self, now: DateTime<Utc>) -> Result<(), IdentityError> {
        if now < self.inner.not_before {
            return Err(IdentityError::NotYetValid {
                not_before: self.inner.not_before,
            });
        }
        if now > self.inner.not_after {
            return Err(IdentityError::Expired {
                not_after: self.inner.not_after,
            });
        }
        Ok(())
    }

    /// The certificate's DER encoding.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.inner.der
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        crate::x509::to_pem("CERTIFICATE", self.inner.der.as_ref())
    }
}

impl fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCertificate")
            .field("serial", &self.inner.serial)
            .field("subject", &self.inner.subject)
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DeviceCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.inner.fingerprint == other.inner.fingerprint
    }
}

impl Eq for DeviceCertificate {}
