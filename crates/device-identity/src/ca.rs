//! Manufacturer CAs and their CRLs.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor};
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};

use crate::x509::{
    MAX_CERTIFICATE_BYTES, MAX_CRL_BYTES, check_size, malformed, name_text, read_certificate,
    single_pem, to_chrono,
};
use crate::{Fingerprint, IdentityError, SerialNumber};

/// A manufacturer CA certificate registered by a platform operator: the trust anchor for the
/// device certificates of one manufacturer (or one of its production lines).
///
/// Cheap to clone. Built only from a certificate that is a CA (basicConstraints cA TRUE), may
/// sign certificates (keyUsage, if present, has keyCertSign) and is within its validity at the
/// time given. The CA need not be self-signed: a manufacturer's issuing CA may be registered
/// without its root.
#[derive(Clone)]
pub struct ManufacturerCa {
    inner: Arc<CaInner>,
}

struct CaInner {
    der: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
    fingerprint: Fingerprint,
    subject: String,
    common_name: Option<String>,
    serial: SerialNumber,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    /// keyUsage absent, or present with cRLSign.
    may_sign_crls: bool,
}

impl ManufacturerCa {
    /// Reads a PEM `CERTIFICATE` (exactly one) and checks it as [`ManufacturerCa::from_der`]
    /// does.
    pub fn from_pem(pem: &str, now: DateTime<Utc>) -> Result<Self, IdentityError> {
        let der: CertificateDer<'static> =
            single_pem("certificate", pem.as_bytes(), 2 * MAX_CERTIFICATE_BYTES)?;
        Self::from_der(der.as_ref(), now)
    }

    /// Reads a DER certificate and checks that it is a CA allowed to sign certificates and
    /// valid at `now`.
    ///
    /// When rebuilding a trust store from an event log, pass the time the CA was registered
    /// (the event's time), so replay does not depend on the clock: a CA that has expired since
    /// is kept and refused at verification time with [`IdentityError::CaExpired`].
    pub fn from_der(der: &[u8], now: DateTime<Utc>) -> Result<Self, IdentityError> {
        let fields = read_certificate(der)?;
        if !fields.is_ca {
            return Err(IdentityError::NotACa {
                reason: "basicConstraints is absent or cA is not TRUE",
            });
        }
        let (may_sign_certificates, may_sign_crls) = fields.key_usage.unwrap_or((true, true));
        if !may_sign_certificates {
            return Err(IdentityError::NotACa {
                reason: "keyUsage does not include keyCertSign",
            });
        }
        let certificate = CertificateDer::from(der.to_vec());
        let anchor = webpki::anchor_from_trusted_cert(&certificate)
            .map_err(|error| malformed("certificate", format!("{error:?}")))?
            .to_owned();
        let ca = Self {
            inner: Arc::new(CaInner {
                fingerprint: Fingerprint::of_der(der),
                anchor,
                subject: fields.subject,
                common_name: fields.common_name,
                serial: fields.serial,
                not_before: fields.not_before,
                not_after: fields.not_after,
                may_sign_crls,
                der: certificate,
            }),
        };
        ca.check_valid_at(now)?;
        Ok(ca)
    }

    /// Whether the CA is within its validity at `now`.
    pub fn check_valid_at(&self, now: DateTime<Utc>) -> Result<(), IdentityError> {
        if now < self.inner.not_before {
            return Err(IdentityError::CaNotYetValid {
                ca: self.inner.fingerprint,
                not_before: self.inner.not_before,
            });
        }
        if now > self.inner.not_after {
            return Err(IdentityError::CaExpired {
                ca: self.inner.fingerprint,
                not_after: self.inner.not_after,
            });
        }
        Ok(())
    }

    /// The SHA-256 of the certificate's DER: the CA's identity in the trust store and events.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// The subject name (`CN=..., O=...`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The subject's first common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.inner.common_name.as_deref()
    }

    /// The CA certificate's serial number.
    pub fn serial(&self) -> &SerialNumber {
        &self.inner.serial
    }

    /// The start of the validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.inner.not_before
    }

    /// The end of the validity.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.inner.not_after
    }

    /// The certificate's DER encoding.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.inner.der
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        crate::x509::to_pem("CERTIFICATE", self.inner.der.as_ref())
    }

    pub(crate) fn anchor(&self) -> &TrustAnchor<'static> {
        &self.inner.anchor
    }
}

impl fmt::Debug for ManufacturerCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManufacturerCa")
            .field("subject", &self.inner.subject)
            .field("fingerprint", &self.inner.fingerprint)
            .field("not_after", &self.inner.not_after)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ManufacturerCa {
    fn eq(&self, other: &Self) -> bool {
        self.inner.fingerprint == other.inner.fingerprint
    }
}

impl Eq for ManufacturerCa {}

/// A certificate revocation list of one manufacturer CA, checked to be issued and signed by
/// that CA. Cheap to clone.
///
/// Only complete, direct CRLs are accepted (no delta or indirect CRLs), as `rustls-webpki`
/// requires. A CRL past its nextUpdate still revokes what it lists: verification does not
/// refuse devices because a CRL is stale (see [`Crl::next_update`] to monitor staleness).
#[derive(Clone)]
pub struct Crl {
    inner: Arc<CrlInner>,
}

struct CrlInner {
    der: CertificateRevocationListDer<'static>,
    list: CertRevocationList<'static>,
    ca: Fingerprint,
    this_update: DateTime<Utc>,
    next_update: Option<DateTime<Utc>>,
    revoked_count: usize,
}

impl Crl {
    /// Reads a PEM `X509 CRL` (exactly one) and checks it as [`Crl::from_der`] does.
    pub fn from_pem(pem: &str, ca: &ManufacturerCa) -> Result<Self, IdentityError> {
        let der: CertificateRevocationListDer<'static> =
            single_pem("crl", pem.as_bytes(), 2 * MAX_CRL_BYTES)?;
        Self::from_der(der.as_ref(), ca)
    }

    /// Reads a DER CRL and checks that `ca` issued it: its issuer is the CA's subject, the CA
    /// may sign CRLs, and the signature verifies with the CA's key.
    pub fn from_der(der: &[u8], ca: &ManufacturerCa) -> Result<Self, IdentityError> {
        check_size("crl", der.len(), MAX_CRL_BYTES)?;
        let (rest, parsed) =
            x509_parser::parse_x509_crl(der).map_err(|error| malformed("crl", error))?;
        if !rest.is_empty() {
            return Err(malformed("crl", "trailing bytes after the DER"));
        }
        let (_, ca_certificate) = x509_parser::parse_x509_certificate(ca.der().as_ref())
            .map_err(|error| malformed("certificate", error))?;
        if parsed.issuer().as_raw() != ca_certificate.subject().as_raw() {
            return Err(IdentityError::CrlIssuerMismatch {
                crl_issuer: name_text("crl_issuer", parsed.issuer())?,
                ca_subject: ca.subject().to_owned(),
            });
        }
        if !ca.inner.may_sign_crls {
            return Err(IdentityError::NotACa {
                reason: "keyUsage does not include cRLSign, so it cannot issue CRLs",
            });
        }
        let algorithm = &parsed.signature_algorithm.algorithm;
        if *algorithm == OID_PKCS1_SHA1WITHRSA || *algorithm == OID_SHA1_WITH_RSA {
            return Err(IdentityError::UnsupportedAlgorithm { field: "crl" });
        }
        parsed
            .verify_signature(ca_certificate.public_key())
            .map_err(|error| match error {
                X509Error::SignatureVerificationError => {
                    IdentityError::BadSignature { field: "crl" }
                }
                X509Error::SignatureUnsupportedAlgorithm => {
                    IdentityError::UnsupportedAlgorithm { field: "crl" }
                }
                other => malformed("crl", other),
            })?;
        let list = OwnedCertRevocationList::from_der(der)
            .map_err(|error| malformed("crl", format!("{error:?}")))?;
        let next_update = parsed
            .next_update()
            .map(|time| to_chrono("crl_next_update", time))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(CrlInner {
                der: CertificateRevocationListDer::from(der.to_vec()),
                list: CertRevocationList::from(list),
                ca: ca.fingerprint(),
                this_update: to_chrono("crl_this_update", parsed.last_update())?,
                next_update,
                revoked_count: parsed.iter_revoked_certificates().count(),
            }),
        })
    }

    /// The fingerprint of the CA that issued the CRL.
    pub fn ca(&self) -> Fingerprint {
        self.inner.ca
    }

    /// When the CRL was issued.
    pub fn this_update(&self) -> DateTime<Utc> {
        self.inner.this_update
    }

    /// When the CA promised the next CRL, if it said.
    pub fn next_update(&self) -> Option<DateTime<Utc>> {
        self.inner.next_update
    }

    /// How many certificates the CRL revokes.
    pub fn revoked_count(&self) -> usize {
        self.inner.revoked_count
    }

    /// Whether the CRL lists `serial`.
    pub fn is_revoked(&self, serial: &SerialNumber) -> bool {
        // The CRL keeps serials as DER INTEGER contents: with a leading zero byte when the
        // high bit is set.
        let mut der_integer = serial.as_bytes().to_vec();
        if der_integer.first().is_none_or(|byte| byte & 0x80 != 0) {
            der_integer.insert(0, 0);
        }
        matches!(self.inner.list.find_serial(&der_integer), Ok(Some(_)))
    }

    /// The CRL's DER encoding.
    pub fn der(&self) -> &CertificateRevocationListDer<'static> {
        &self.inner.der
    }

    /// The CRL as PEM.
    pub fn to_pem(&self) -> String {
        crate::x509::to_pem("X509 CRL", self.inner.der.as_ref())
    }

    pub(crate) fn list(&self) -> &CertRevocationList<'static> {
        &self.inner.list
    }
}

impl PartialEq for Crl {
    fn eq(&self, other: &Self) -> bool {
        self.inner.ca == other.inner.ca && self.inner.der == other.inner.der
    }
}

impl Eq for Crl {}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("ca", &self.inner.ca)
            .field("this_update", &self.inner.this_update)
            .field("next_update", &self.inner.next_update)
            .field("revoked_count", &self.inner.revoked_count)
            .finish_non_exhaustive()
    }
}
