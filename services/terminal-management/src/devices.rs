//! Device identity: turning manufacturer CA certificates, CRLs and device certificates into
//! the facts the aggregates record, with `device-identity` doing the X.509 work.

use chrono::{DateTime, Utc};
use device_identity::{
    BulkRow, Crl, DeviceCertificate, IdentityError, ManufacturerCa, TrustStore, VerifiedDevice,
};
use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;

fn timestamp(at: DateTime<Utc>) -> Option<pbjson_types::Timestamp> {
    Some(mpos_proto::timestamp_from_micros(at.timestamp_micros()))
}

/// The refusal of a certificate named by `field`.
fn refused(field: &str, error: &IdentityError) -> ServiceError {
    ServiceError::bad_request(format!("{field}: {error}"))
}

/// Parses and checks a manufacturer CA certificate (PEM) for registration.
pub fn ca_registration(
    name: &str,
    certificate_pem: &str,
    now: DateTime<Utc>,
) -> Result<pb::ManufacturerCaRegistered, ServiceError> {
    let ca = ManufacturerCa::from_pem(certificate_pem, now)
        .map_err(|error| refused("certificate_pem", &error))?;
    Ok(pb::ManufacturerCaRegistered {
        ca_id: ca.fingerprint().to_string(),
        name: name.to_owned(),
        subject: ca.subject().to_owned(),
        certificate_der: ca.der().to_vec(),
        not_before: timestamp(ca.not_before()),
        not_after: timestamp(ca.not_after()),
    })
}

/// Parses a CRL (PEM) and checks that the registered CA signed it.
pub fn crl_update(
    ca_id: &str,
    certificate_der: &[u8],
    registered_at: DateTime<Utc>,
    crl_pem: &str,
) -> Result<pb::ManufacturerCaCrlUpdated, ServiceError> {
    let ca = ManufacturerCa::from_der(certificate_der, registered_at)
        .map_err(|error| ServiceError::internal(format!("registered CA unreadable: {error}")))?;
    let crl = Crl::from_pem(crl_pem, &ca).map_err(|error| refused("crl_pem", &error))?;
    Ok(pb::ManufacturerCaCrlUpdated {
        ca_id: ca_id.to_owned(),
        crl_der: crl.der().to_vec(),
        this_update: timestamp(crl.this_update()),
        next_update: crl.next_update().and_then(timestamp),
        revoked_count: u32::try_from(crl.revoked_count()).unwrap_or(u32::MAX),
    })
}

/// The binding of a verified device certificate (`der`: the certificate itself).
pub fn binding(verified: &VerifiedDevice, der: &[u8]) -> pb::DeviceBinding {
    pb::DeviceBinding {
        serial: verified.serial.to_string(),
        certificate_sha256: verified.fingerprint.to_string(),
        issuer_sha256: verified.ca_fingerprint.to_string(),
        subject: verified.subject.clone(),
        not_after: timestamp(verified.not_after),
        certificate_der: der.to_vec(),
    }
}

/// Checks a device certificate against the registered manufacturer CAs (chain, validity,
/// revocation) and gives its binding; `field` names it in errors.
pub fn verify_certificate(
    trust: &TrustStore,
    certificate: &DeviceCertificate,
    field: &str,
    now: DateTime<Utc>,
) -> Result<pb::DeviceBinding, ServiceError> {
    trust
        .verify(std::slice::from_ref(certificate.der()), now)
        .map(|verified| binding(&verified, certificate.der().as_ref()))
        .map_err(|error| refused(field, &error))
}

/// [`verify_certificate`] of a PEM certificate.
pub fn binding_from_pem(
    trust: &TrustStore,
    pem: &str,
    now: DateTime<Utc>,
) -> Result<pb::DeviceBinding, ServiceError> {
    let certificate =
        DeviceCertificate::from_pem(pem).map_err(|error| refused("certificate_pem", &error))?;
    verify_certificate(trust, &certificate, "certificate_pem", now)
}

/// Parses a bulk import (CSV or JSON, by content type) of serials and certificates.
pub fn parse_bulk(content_type: &str, body: &str) -> Result<Vec<BulkRow>, ServiceError> {
    let parsed = if content_type.starts_with("text/csv") {
        device_identity::parse_bulk_csv(body)
    } else if content_type.starts_with("application/json") {
        device_identity::parse_bulk_json(body)
    } else {
        return Err(ServiceError::bad_request(
            "content-type must be text/csv or application/json",
        ));
    };
    parsed.map_err(|error| ServiceError::bad_request(error.to_string()))
}
