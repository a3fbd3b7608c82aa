//! The trust store of registered manufacturer CAs and their CRLs, and chain verification.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use rustls::pki_types::{CertificateDer, TrustAnchor};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::x509::{from_unix_time, malformed, read_certificate, to_unix_time};
use crate::{Crl, DeviceCertificate, Fingerprint, IdentityError, ManufacturerCa, SerialNumber};

/// What a successful verification established about a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedDevice {
    /// The fingerprint of the registered manufacturer CA the chain leads to.
    pub ca_fingerprint: Fingerprint,
    /// The device certificate's serial number.
    pub serial: SerialNumber,
    /// The device certificate's SHA-256 fingerprint.
    pub fingerprint: Fingerprint,
    /// The device certificate's subject name.
    pub subject: String,
    /// The device certificate's first subject common name, if any.
    pub common_name: Option<String>,
    /// The end of the device certificate's validity.
    pub not_after: DateTime<Utc>,
}

/// The registered manufacturer CAs and their CRLs, shared by the HTTP handlers that register
/// them and the TLS verifier that reads them at every handshake.
///
/// Cheap to clone (one `Arc`); every clone sees every update. Updates replace an immutable
/// snapshot, so a verification in progress uses the contents it started with, and readers never
/// wait for more than a pointer copy.
#[derive(Clone, Default)]
pub struct TrustStore {
    shared: Arc<RwLock<Arc<Snapshot>>>,
}

/// How long a successful verification of a chain is reused for the same chain, at most.
const VERIFIED_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// Chains whose verification is remembered, at most (about 0.5 KiB each).
const VERIFIED_CAPACITY: usize = 16_384;

#[derive(Default)]
struct Snapshot {
    cas: Vec<ManufacturerCa>,
    /// The CAs' trust anchors, in the same order.
    anchors: Vec<TrustAnchor<'static>>,
    /// At most one CRL per CA, each for a CA in `cas`.
    crls: Vec<Crl>,
    /// Chains verified against exactly these contents, by the SHA-256 of the chain: every
    /// change of CAs or CRLs publishes a new snapshot, so a revocation or a removed CA is
    /// never answered from here.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// A remembered successful verification.
struct Verified {
    device: VerifiedDevice,
    /// When the chain was verified: every certificate on the path was valid then.
    at: DateTime<Utc>,
    /// Until when it may be reused: [`VERIFIED_FOR`] after `at`, and never past the end of
    /// the validity of any certificate on the path (the CA's included).
    until: DateTime<Utc>,
}

impl Verified {
    fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.at <= now && now <= self.until
    }
}

impl Snapshot {
    fn with_cas(cas: Vec<ManufacturerCa>, crls: Vec<Crl>) -> Self {
        let anchors = cas.iter().map(|ca| ca.anchor().clone()).collect();
        Self {
            cas,
            anchors,
            crls,
            verified: Mutex::default(),
        }
    }

    fn remembered(&self, key: &[u8; 32], now: DateTime<Utc>) -> Option<VerifiedDevice> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified
            .get(key)
            .filter(|entry| entry.holds_at(now))
            .map(|entry| entry.device.clone())
    }

    fn remember(&self, key: [u8; 32], entry: Verified) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED_CAPACITY {
            let now = entry.at;
            verified.retain(|_, kept| kept.holds_at(now));
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(key, entry);
    }
}

/// The key a chain's verification is remembered under: SHA-256 over each certificate's
/// length and DER, in order.
fn chain_key(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for certificate in chain {
        digest.update((certificate.len() as u64).to_be_bytes());
        digest.update(certificate.as_ref());
    }
    digest.finalize().into()
}

impl TrustStore {
    /// An empty store: every chain is refused with [`IdentityError::UnknownIssuer`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `cas` and `crls` (see [`TrustStore::replace`]).
    pub fn with(cas: Vec<ManufacturerCa>, crls: Vec<Crl>) -> Result<Self, IdentityError> {
        let store = Self::new();
        store.replace(cas, crls)?;
        Ok(store)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.shared.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies `change` to a copy of the contents and publishes it.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<ManufacturerCa>, &mut Vec<Crl>) -> Result<T, IdentityError>,
    ) -> Result<T, IdentityError> {
        let mut current = self.shared.write().unwrap_or_else(PoisonError::into_inner);
        let mut cas = current.cas.clone();
        let mut crls = current.crls.clone();
        let outcome = change(&mut cas, &mut crls)?;
        *current = Arc::new(Snapshot::with_cas(cas, crls));
        Ok(outcome)
    }

    /// Replaces the whole contents, e.g. after rebuilding them from the event log. A CA given
    /// twice (same fingerprint) is kept once; for a CA with several CRLs the last one is kept.
    /// Fails, changing nothing, if a CRL belongs to none of `cas`.
    pub fn replace(&self, cas: Vec<ManufacturerCa>, crls: Vec<Crl>) -> Result<(), IdentityError> {
        self.update(|current_cas, current_crls| {
            let mut unique_cas: Vec<ManufacturerCa> = Vec::with_capacity(cas.len());
            for ca in cas {
                if !unique_cas.contains(&ca) {
                    unique_cas.push(ca);
                }
            }
            let mut unique_crls: Vec<Crl> = Vec::with_capacity(crls.len());
            for crl in crls {
                if !unique_cas.iter().any(|ca| ca.fingerprint() == crl.ca()) {
                    return Err(IdentityError::CrlWithoutCa { ca: crl.ca() });
                }
                unique_crls.retain(|kept| kept.ca() != crl.ca());
                unique_crls.push(crl);
            }
            *current_cas = unique_cas;
            *current_crls = unique_crls;
            Ok(())
        })
    }

    /// Registers a CA; returns `false` if a CA with the same fingerprint was already there.
    pub fn add_ca(&self, ca: ManufacturerCa) -> bool {
        let added = self.update(|cas, _| {
            if cas.contains(&ca) {
                return Ok(false);
            }
            cas.push(ca);
            Ok(true)
        });
        added.unwrap_or(false)
    }

    /// Removes a CA and its CRL; returns whether it was registered.
    pub fn remove_ca(&self, ca: &Fingerprint) -> bool {
        let removed = self.update(|cas, crls| {
            let before = cas.len();
            cas.retain(|kept| kept.fingerprint() != *ca);
            crls.retain(|kept| kept.ca() != *ca);
            Ok(cas.len() != before)
        });
        removed.unwrap_or(false)
    }

    /// Sets the CRL of its CA, replacing the previous one. Fails if the CA is not registered.
    pub fn set_crl(&self, crl: Crl) -> Result<(), IdentityError> {
        self.update(|cas, crls| {
            if !cas.iter().any(|ca| ca.fingerprint() == crl.ca()) {
                return Err(IdentityError::CrlWithoutCa { ca: crl.ca() });
            }
            crls.retain(|kept| kept.ca() != crl.ca());
            crls.push(crl);
            Ok(())
        })
    }

    /// Removes the CRL of a CA; returns whether there was one.
    pub fn remove_crl(&self, ca: &Fingerprint) -> bool {
        let removed = self.update(|_, crls| {
            let before = crls.len();
            crls.retain(|kept| kept.ca() != *ca);
            Ok(crls.len() != before)
        });
        removed.unwrap_or(false)
    }

    /// The registered CAs, in registration order.
    pub fn cas(&self) -> Vec<ManufacturerCa> {
        self.snapshot().cas.clone()
    }

    /// The registered CA with this fingerprint.
    pub fn ca(&self, fingerprint: &Fingerprint) -> Option<ManufacturerCa> {
        self.snapshot()
            .cas
            .iter()
            .find(|ca| ca.fingerprint() == *fingerprint)
            .cloned()
    }

    /// The CRL registered for the CA with this fingerprint.
    pub fn crl(&self, ca: &Fingerprint) -> Option<Crl> {
        self.snapshot()
            .crls
            .iter()
            .find(|crl| crl.ca() == *ca)
            .cloned()
    }

    /// How many CAs are registered.
    pub fn len(&self) -> usize {
        self.snapshot().cas.len()
    }

    /// Whether no CA is registered.
    pub fn is_empty(&self) -> bool {
        self.snapshot().cas.is_empty()
    }

    /// Verifies a presented chain (device certificate first, then any intermediates the device
    /// sent) against the current contents at `now`, with `rustls-webpki`:
    ///
    /// * the device certificate is an end entity whose extendedKeyUsage, if present, allows TLS
    ///   client authentication;
    /// * a path leads from it through the intermediates to a registered CA, every signature
    ///   verifies, and every certificate on it is within its validity, the CA included;
    /// * no certificate on the path (the CA excepted) is listed in the CRL of the CA that
    ///   issued it, where one is registered; certificates of CAs without a CRL are accepted,
    ///   and a CRL past its nextUpdate still applies (a stale list does not lock devices out).
    ///
    /// A device presents the same chain at its TLS handshake and again in its requests: a
    /// successful verification is remembered for the same chain against the same contents for
    /// at most five minutes and never past the validity of any certificate on its path; any
    /// change of CAs or CRLs forgets them all. Refusals are never remembered.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: DateTime<Utc>,
    ) -> Result<VerifiedDevice, IdentityError> {
        let (end_entity, intermediates) =
            chain.split_first().ok_or(IdentityError::NoCertificate)?;
        let snapshot = self.snapshot();
        let key = chain_key(chain);
        if let Some(device) = snapshot.remembered(&key, now) {
            return Ok(device);
        }
        let device = DeviceCertificate::from_der(end_entity.as_ref())?;
        let parsed = EndEntityCert::try_from(end_entity)
            .map_err(|error| malformed("certificate", format!("{error:?}")))?;
        let crls: Vec<&CertRevocationList<'_>> = snapshot.crls.iter().map(Crl::list).collect();
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|builder| {
            builder
                .with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        let path = parsed
            .verify_for_usage(
                crate::tls::provider().signature_verification_algorithms.all,
                &snapshot.anchors,
                intermediates,
                to_unix_time(now),
                KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map_err(|error| from_webpki(error, &device))?;
        let anchor = path.anchor();
        let mut candidates = snapshot.cas.iter().filter(|ca| {
            ca.anchor().subject == anchor.subject
                && ca.anchor().subject_public_key_info == anchor.subject_public_key_info
        });
        // Several registered certificates may carry the same name and key (a CA re-issued
        // with a longer validity): any one valid now will do.
        let first = candidates.next().ok_or(IdentityError::UnknownIssuer)?;
        let ca = if first.check_valid_at(now).is_ok() {
            first
        } else {
            candidates
                .find(|ca| ca.check_valid_at(now).is_ok())
                .unwrap_or(first)
        };
        ca.check_valid_at(now)?;
        let verified = VerifiedDevice {
            ca_fingerprint: ca.fingerprint(),
            serial: device.serial().clone(),
            fingerprint: device.fingerprint(),
            subject: device.subject().to_owned(),
            common_name: device.common_name().map(str::to_owned),
            not_after: device.not_after(),
        };
        let mut until = (now + VERIFIED_FOR)
            .min(device.not_after())
            .min(ca.not_after());
        for intermediate in path.intermediate_certificates() {
            // Parsed once already by webpki; an unreadable one is simply not remembered.
            match read_certificate(intermediate.der().as_ref()) {
                Ok(fields) => until = until.min(fields.not_after),
                Err(_) => until = now - chrono::TimeDelta::seconds(1),
            }
        }
        if now <= until {
            snapshot.remember(
                key,
                Verified {
                    device: verified.clone(),
                    at: now,
                    until,
                },
            );
        }
        Ok(verified)
    }
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("TrustStore")
            .field("cas", &snapshot.cas)
            .field("crls", &snapshot.crls)
            .finish()
    }
}

/// The crate's error for a `rustls-webpki` refusal of `device`'s chain. (The deprecated
/// context-free variants are no longer produced by `rustls-webpki` 0.103.)
fn from_webpki(error: webpki::Error, device: &DeviceCertificate) -> IdentityError {
    use webpki::Error;
    match error {
        Error::UnknownIssuer => IdentityError::UnknownIssuer,
        Error::CertExpired { not_after, .. } => IdentityError::Expired {
            not_after: from_unix_time(not_after),
        },
        Error::CertNotValidYet { not_before, .. } => IdentityError::NotYetValid {
            not_before: from_unix_time(not_before),
        },
        Error::CertRevoked => IdentityError::Revoked {
            serial: device.serial().clone(),
        },
        Error::InvalidSignatureForPublicKey => IdentityError::BadSignature {
            field: "certificate",
        },
        Error::InvalidCrlSignatureForPublicKey => IdentityError::BadSignature { field: "crl" },
        Error::UnsupportedSignatureAlgorithmContext(_)
        | Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            IdentityError::UnsupportedAlgorithm {
                field: "certificate",
            }
        }
        Error::UnsupportedCrlSignatureAlgorithmContext(_)
        | Error::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => {
            IdentityError::UnsupportedAlgorithm { field: "crl" }
        }
        Error::RequiredEkuNotFoundContext(_) => IdentityError::NotAClientCertificate,
        Error::CaUsedAsEndEntity => IdentityError::NotAnEndEntity,
        Error::BadDer
        | Error::BadDerTime
        | Error::TrailingData(_)
        | Error::MalformedExtensions
        | Error::ExtensionValueInvalid
        | Error::InvalidSerialNumber
        | Error::UnsupportedCertVersion => malformed("certificate", format!("{error:?}")),
        other => IdentityError::Chain {
            reason: format!("{other:?}"),
        },
    }
}
