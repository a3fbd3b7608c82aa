//! Reading PEM and the X.509 fields the crate exposes (with `x509-parser`).

use chrono::{DateTime, Utc};
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::{self, PemObject};
use x509_parser::certificate::X509Certificate;
use x509_parser::time::ASN1Time;
use x509_parser::x509::X509Name;

use crate::{IdentityError, SerialNumber};

/// The largest certificate accepted, DER or PEM (device and CA certificates are a few KiB).
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// The largest CRL accepted, DER or PEM.
pub const MAX_CRL_BYTES: usize = 16 * 1024 * 1024;

/// Refuses inputs larger than `max`.
pub(crate) fn check_size(
    field: &'static str,
    size: usize,
    max: usize,
) -> Result<(), IdentityError> {
    if size > max {
        return Err(IdentityError::TooLarge { field, size, max });
    }
    Ok(())
}

/// The one PEM section of kind `T` in `input` (other kinds of section are skipped).
pub(crate) fn single_pem<T: PemObject>(
    field: &'static str,
    input: &[u8],
    max: usize,
) -> Result<T, IdentityError> {
    check_size(field, input.len(), max)?;
    let pem_error = |error: pem::Error| IdentityError::Pem {
        field,
        reason: match error {
            pem::Error::NoItemsFound => "no section of the expected kind".to_owned(),
            other => other.to_string(),
        },
    };
    let mut sections = T::pem_slice_iter(input);
    let first = sections
        .next()
        .ok_or(pem::Error::NoItemsFound)
        .and_then(|section| section)
        .map_err(pem_error)?;
    if sections.next().is_some() {
        return Err(IdentityError::Pem {
            field,
            reason: "holds more than one section of the expected kind".to_owned(),
        });
    }
    Ok(first)
}

/// The fields of a certificate the crate reads.
#[derive(Debug)]
pub(crate) struct CertificateFields {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) common_name: Option<String>,
    pub(crate) serial: SerialNumber,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
    /// basicConstraints present with cA TRUE.
    pub(crate) is_ca: bool,
    /// keyUsage, if present: (keyCertSign, cRLSign).
    pub(crate) key_usage: Option<(bool, bool)>,
    /// Whether the extendedKeyUsage (if present) names id-kp-clientAuth.
    pub(crate) client_auth_allowed: bool,
}

pub(crate) fn malformed(field: &'static str, reason: impl ToString) -> IdentityError {
    IdentityError::Malformed {
        field,
        reason: reason.to_string(),
    }
}

/// Reads the fields of a DER certificate; the whole input must be the certificate.
pub(crate) fn read_certificate(der: &[u8]) -> Result<CertificateFields, IdentityError> {
    check_size("certificate", der.len(), MAX_CERTIFICATE_BYTES)?;
    let (rest, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| malformed("certificate", error))?;
    if !rest.is_empty() {
        return Err(malformed("certificate", "trailing bytes after the DER"));
    }
    fields_of(&certificate)
}

fn fields_of(certificate: &X509Certificate<'_>) -> Result<CertificateFields, IdentityError> {
    let validity = certificate.validity();
    let basic_constraints = certificate
        .basic_constraints()
        .map_err(|error| malformed("basic_constraints", error))?;
    let key_usage = certificate
        .key_usage()
        .map_err(|error| malformed("key_usage", error))?;
    let extended_key_usage = certificate
        .extended_key_usage()
        .map_err(|error| malformed("extended_key_usage", error))?;
    Ok(CertificateFields {
        subject: name_text("subject", certificate.subject())?,
        issuer: name_text("issuer", certificate.issuer())?,
        common_name: common_name(certificate.subject()),
        serial: SerialNumber::from_der_integer(certificate.raw_serial()),
        not_before: to_chrono("not_before", validity.not_before)?,
        not_after: to_chrono("not_after", validity.not_after)?,
        is_ca: basic_constraints.is_some_and(|extension| extension.value.ca),
        key_usage: key_usage
            .map(|extension| (extension.value.key_cert_sign(), extension.value.crl_sign())),
        client_auth_allowed: extended_key_usage.is_none_or(|extension| extension.value.client_auth),
    })
}

/// A name as RFC 4514-style text (`CN=..., O=...`).
pub(crate) fn name_text(field: &'static str, name: &X509Name<'_>) -> Result<String, IdentityError> {
    name.to_string_with_registry(x509_parser::objects::oid_registry())
        .map_err(|error| malformed(field, error))
}

fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|attribute| attribute.as_str().ok())
        .map(str::to_owned)
}

/// An ASN.1 time as chrono.
pub(crate) fn to_chrono(
    field: &'static str,
    time: ASN1Time,
) -> Result<DateTime<Utc>, IdentityError> {
    DateTime::from_timestamp(time.timestamp(), 0)
        .ok_or_else(|| malformed(field, "time out of range"))
}

/// A chrono time as the webpki/rustls time (times before 1970 become 1970).
pub(crate) fn to_unix_time(time: DateTime<Utc>) -> UnixTime {
    let seconds = u64::try_from(time.timestamp()).unwrap_or(0);
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds))
}

/// A webpki/rustls time as chrono.
pub(crate) fn from_unix_time(time: UnixTime) -> DateTime<Utc> {
    let seconds = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// DER as PEM with 64-column base64 lines (RFC 7468 section 2).
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}
