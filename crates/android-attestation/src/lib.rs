//! Android key attestation: the `KeyDescription` extension.
//!
//! An Android app proves that a key lives in secure hardware by sending the certificate chain
//! Keystore made for it. The leaf certificate carries the key attestation extension
//! (OID `1.3.6.1.4.1.11129.2.1.17`), a DER `KeyDescription`: the attestation and KeyMint
//! versions and security levels, the verifier's challenge, and two `AuthorizationList`s (what
//! Android enforces in software and what the TEE or StrongBox enforces), including the root of
//! trust (verified boot state, bootloader lock) and the attesting app's package and signing
//! certificate digests.
//!
//! This crate parses the extension and verifies the chain; it makes no policy decision
//! (which security levels, boot states or apps to accept is the service's business).
//!
//! - [`KeyDescription::from_der`] decodes the extension value (the OCTET STRING's content),
//! - [`KeyDescription::from_certificate_der`] finds the extension in a DER certificate
//!   (x509-parser) and decodes it,
//! - [`pem_chain_to_der`] / [`read_pem_chain`] read a PEM chain (leaf first),
//! - [`verify_chain`] verifies a chain (DER, leaf first) against [`TrustAnchors`] (by default
//!   [`TrustAnchors::google`], Google's RSA-4096 and EC P-384 attestation roots) and a
//!   [`RevocationList`] (Google's attestation status list JSON), and returns the leaf's
//!   `KeyDescription` in a [`VerifiedChain`].
//!
//! - [`play_integrity`] parses a decoded Play Integrity verdict
//!   ([`PlayIntegrityVerdict::from_json`]) and checks it against one request
//!   ([`play_integrity::check`]), returning reason-coded findings.
//!
//! # Chain verification
//!
//! [`verify_chain`] checks, in order, returning the first failure as a [`ChainError`] naming
//! the certificate's index: 2 to [`MAX_CHAIN_LEN`] certificates; each is DER X.509; the key
//! attestation extension is in the leaf and in no other certificate; each certificate's issuer
//! is the next one's subject and its signature (not SHA-1) verifies with the next one's key;
//! the last certificate is a trust anchor (same SubjectPublicKeyInfo) or is signed by one;
//! every certificate is valid at the given time; no serial (lowercase hex without leading
//! zeros, [`serial_hex`]) is REVOKED or SUSPENDED in the status list; the extension parses.
//! Fetching and caching the status list and replacing the anchors at run time belong to the
//! service, not to this crate.
//!
//! # Strictness
//!
//! Decoding uses asn1-rs in DER mode (definite, minimal lengths; BOOLEAN 0x00/0xFF; minimal
//! INTEGERs). In an `AuthorizationList`, tags must be strictly ascending (DER's canonical
//! order; a repeated tag is rejected too), every field must have the type the schema gives it,
//! and a tag this parser does not know is an error ([`AttestationError::UnknownTag`]) rather
//! than skipped: an unknown tag may carry a restriction on the key, and silently dropping it
//! would let a verifier accept a key whose restrictions it never saw. This is also what
//! android/keyattestation does. Every error is typed and names the field; no input panics;
//! allocation is linear in the input and the `SET OF` fields are bounded
//! ([`MAX_SET_VALUES`], [`MAX_PACKAGES`], [`MAX_SIGNATURES`]).
//!
//! # JSON
//!
//! The types serialize (serde) to the JSON shape of android/keyattestation's test data:
//! camelCase keys, integers as decimal strings, byte strings as standard base64, enums by
//! name (`TRUSTED_ENVIRONMENT`, `GENERATED`, `UNVERIFIED`), absent fields omitted and the
//! NULL-typed flags as `true`. The upstream `areTagsOrdered` flag (its lenient mode's
//! record that a list was out of order) is not part of the model: this parser rejects such
//! lists, so the flag would always be true; on input it is ignored like any unknown key.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod chain;
mod error;
mod model;
mod parse;
pub mod play_integrity;
mod serde_helpers;

use x509_parser::prelude::{FromDer as _, X509Certificate};

pub use chain::{
    ChainError, GOOGLE_EC_ROOT_PEM, GOOGLE_RSA_ROOT_PEM, LinkCache, MAX_CHAIN_LEN, Reason,
    RevocationList, Status, StatusEntry, TrustAnchors, VerifiedChain, serial_hex, verify_chain,
    verify_chain_with,
};
pub use error::AttestationError;
pub use model::{
    AttestationApplicationId, AttestationPackageInfo, AuthorizationList, KeyDescription, Origin,
    RootOfTrust, SecurityLevel, VerifiedBootState,
};
pub use parse::{MAX_PACKAGES, MAX_SET_VALUES, MAX_SIGNATURES};
pub use play_integrity::{PlayIntegrityError, PlayIntegrityVerdict};

/// The OID of the Android key attestation extension.
pub const KEY_DESCRIPTION_OID: &str = "1.3.6.1.4.1.11129.2.1.17";

impl KeyDescription {
    /// Decodes a DER `KeyDescription`: the value of the key attestation extension (the content
    /// of the extension's `extnValue` OCTET STRING). The whole input must be the one SEQUENCE.
    pub fn from_der(extension_value: &[u8]) -> Result<KeyDescription, AttestationError> {
        parse::key_description(extension_value)
    }

    /// Parses a DER X.509 certificate and decodes its key attestation extension; `Ok(None)`
    /// when the certificate has none (e.g. the intermediate and root certificates of a chain).
    /// Bytes after the certificate, or the extension present twice, are errors.
    pub fn from_certificate_der(
        cert_der: &[u8],
    ) -> Result<Option<KeyDescription>, AttestationError> {
        let (rest, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| AttestationError::Certificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(AttestationError::Certificate(
                "trailing data after the certificate".to_owned(),
            ));
        }
        let mut found = None;
        for extension in cert.extensions() {
            if extension.oid.to_id_string() == KEY_DESCRIPTION_OID {
                if found.is_some() {
                    return Err(AttestationError::DuplicateExtension);
                }
                found = Some(extension.value);
            }
        }
        found.map(Self::from_der).transpose()
    }
}

/// The DER certificates of a PEM chain, in file order (leaf first for an attestation chain).
/// Blocks other than `CERTIFICATE` are an error; so is a text without any certificate.
pub fn pem_chain_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, AttestationError> {
    let mut chain = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| AttestationError::Pem(e.to_string()))?;
        if block.label != "CERTIFICATE" {
            return Err(AttestationError::Pem(format!(
                "unexpected block {:?}",
                block.label
            )));
        }
        chain.push(block.contents);
    }
    if chain.is_empty() {
        return Err(AttestationError::EmptyChain);
    }
    Ok(chain)
}

/// Reads a PEM chain file; see [`pem_chain_to_der`].
pub fn read_pem_chain(path: impl AsRef<std::path::Path>) -> Result<Vec<Vec<u8>>, AttestationError> {
    let path = path.as_ref();
    let pem = std::fs::read(path)
        .map_err(|e| AttestationError::Pem(format!("{}: {e}", path.display())))?;
    pem_chain_to_der(&pem)
}
