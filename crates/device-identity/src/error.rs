//! Why a certificate, CRL or chain was refused.

use chrono::{DateTime, Utc};

use crate::{Fingerprint, SerialNumber};

/// Why a manufacturer CA, CRL, device certificate or presented chain was refused, or a TLS
/// configuration could not be built.
///
/// Messages name the offending field and never contain key material (certificates are public).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The input is not PEM, or holds no (or more than one) item of the expected kind.
    #[error("{field}: not a PEM document: {reason}")]
    Pem {
        /// What was being read (`certificate`, `crl`, `private_key`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of the DER structure cannot be read, or holds a value the crate refuses.
    #[error("{field}: malformed: {reason}")]
    Malformed {
        /// The field (`certificate`, `serial`, `validity`, `basic_constraints`, `crl`...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The input is larger than any sane certificate or CRL.
    #[error("{field}: {size} bytes is more than the {max} allowed")]
    TooLarge {
        /// What was being read.
        field: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A certificate registered as a manufacturer CA is not allowed to issue certificates.
    #[error("not a CA certificate: {reason}")]
    NotACa {
        /// Which extension says so (`basicConstraints` or `keyUsage`).
        reason: &'static str,
    },
    /// A CA certificate was presented or imported as a device certificate.
    #[error("a CA certificate cannot be a device certificate")]
    NotAnEndEntity,
    /// The certificate's extended key usage does not allow TLS client authentication.
    #[error("extendedKeyUsage does not allow TLS client authentication")]
    NotAClientCertificate,
    /// The certificate (or one in its chain) is past its notAfter.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// The notAfter of the expired certificate.
        not_after: DateTime<Utc>,
    },
    /// The certificate (or one in its chain) is before its notBefore.
    #[error("certificate is not valid before {not_before}")]
    NotYetValid {
        /// The notBefore of the certificate.
        not_before: DateTime<Utc>,
    },
    /// The manufacturer CA the chain leads to is past its notAfter.
    #[error("manufacturer CA {ca} expired at {not_after}")]
    CaExpired {
        /// The CA's fingerprint.
        ca: Fingerprint,
        /// Its notAfter.
        not_after: DateTime<Utc>,
    },
    /// The manufacturer CA the chain leads to is before its notBefore.
    #[error("manufacturer CA {ca} is not valid before {not_before}")]
    CaNotYetValid {
        /// The CA's fingerprint.
        ca: Fingerprint,
        /// Its notBefore.
        not_before: DateTime<Utc>,
    },
    /// The chain does not lead to a registered manufacturer CA.
    #[error("certificate is not issued by a registered manufacturer CA")]
    UnknownIssuer,
    /// The certificate (or an intermediate) is listed in its CA's CRL.
    #[error("certificate {serial} is revoked by its manufacturer CA")]
    Revoked {
        /// The device certificate's serial (the revoked one may be an intermediate).
        serial: SerialNumber,
    },
    /// A signature in the chain (or on a CRL) does not verify.
    #[error("{field}: signature does not verify")]
    BadSignature {
        /// Whose signature (`certificate` or `crl`).
        field: &'static str,
    },
    /// A signature algorithm the platform does not accept (e.g. SHA-1).
    #[error("{field}: unsupported signature algorithm")]
    UnsupportedAlgorithm {
        /// Whose signature (`certificate` or `crl`).
        field: &'static str,
    },
    /// A CRL's issuer is not the CA it is registered for.
    #[error("crl: issued by {crl_issuer}, not by the CA {ca_subject}")]
    CrlIssuerMismatch {
        /// The CRL's issuer name.
        crl_issuer: String,
        /// The CA's subject name.
        ca_subject: String,
    },
    /// A CRL names a CA that is not in the trust store.
    #[error("crl: its manufacturer CA {ca} is not registered")]
    CrlWithoutCa {
        /// The fingerprint of the CA the CRL belongs to.
        ca: Fingerprint,
    },
    /// No certificate was presented.
    #[error("no client certificate presented")]
    NoCertificate,
    /// The chain was refused for another reason given by the path validator.
    #[error("certificate chain refused: {reason}")]
    Chain {
        /// The validator's reason.
        reason: String,
    },
    /// The server certificate, key or TLS settings cannot be used.
    #[error("tls configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}
