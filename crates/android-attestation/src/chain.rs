//! Verification of an attestation certificate chain: signatures up to a trust anchor,
//! validity, the attestation status list and the place of the key attestation extension.
//!
//! See [`verify_chain`] for what is checked and in which order.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{AttestationError, KEY_DESCRIPTION_OID, KeyDescription, pem_chain_to_der};

/// The most certificates [`verify_chain`] accepts (real chains have 3 or 4).
pub const MAX_CHAIN_LEN: usize = 10;

/// Google's hardware attestation root with the RSA-4096 key (subject
/// `serialNumber=f92009e853b6b045`), PEM.
pub const GOOGLE_RSA_ROOT_PEM: &str = include_str!("roots/google_rsa4096_root.pem");

/// Google's hardware attestation root with the EC P-384 key (`CN=Key Attestation CA1`), in use
/// since February 2026, PEM.
pub const GOOGLE_EC_ROOT_PEM: &str = include_str!("roots/google_ec_p384_root.pem");

/// Signature algorithms refused even where x509-parser would verify them (SHA-1).
const WEAK_SIGNATURE_ALGORITHMS: [&str; 3] = [
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.3.14.3.2.29",        // sha1WithRSASignature (OIW)
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
];

/// Why a chain was rejected, or why trust anchors or a status list could not be read.
///
/// Every variant about a chain names the index of the certificate concerned (0 = the leaf).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainError {
    /// Fewer than 2 certificates: a leaf alone proves nothing.
    #[error("chain: {len} certificate(s), at least 2 are required")]
    TooShort {
        /// The number of certificates given.
        len: usize,
    },
    /// More than [`MAX_CHAIN_LEN`] certificates.
    #[error("chain: {len} certificates, at most {max} are accepted")]
    TooLong {
        /// The number of certificates given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The certificate is not a DER X.509 certificate (or has bytes after it).
    #[error("certificate {index}: {reason}")]
    Certificate {
        /// The certificate's index.
        index: usize,
        /// What x509-parser reported.
        reason: String,
    },
    /// The leaf carries no key attestation extension.
    #[error("certificate {index}: no key attestation extension in the leaf")]
    MissingKeyDescription {
        /// Always 0.
        index: usize,
    },
    /// A certificate other than the leaf carries the key attestation extension: a forged
    /// extension higher up, or a chain extended past the attested key.
    #[error("certificate {index}: key attestation extension outside the leaf")]
    ExtensionOutsideLeaf {
        /// The certificate's index (≥ 1).
        index: usize,
    },
    /// The certificate's issuer name differs from the next certificate's subject name.
    #[error("certificate {index}: issuer does not match the subject of certificate {}", index + 1)]
    IssuerMismatch {
        /// The certificate's index.
        index: usize,
    },
    /// The certificate is signed with an algorithm this crate refuses (SHA-1).
    #[error("certificate {index}: weak signature algorithm {algorithm}")]
    WeakSignatureAlgorithm {
        /// The certificate's index.
        index: usize,
        /// The algorithm OID.
        algorithm: String,
    },
    /// The certificate's signature does not verify with the next certificate's key.
    #[error("certificate {index}: bad signature: {reason}")]
    BadSignature {
        /// The certificate's index.
        index: usize,
        /// What x509-parser reported (bad signature, unsupported algorithm, ...).
        reason: String,
    },
    /// The last certificate neither is a trust anchor (same SubjectPublicKeyInfo) nor is
    /// signed by one.
    #[error("certificate {index}: not a trust anchor and not signed by one")]
    UnknownRoot {
        /// The index of the last certificate.
        index: usize,
    },
    /// `now` is after the certificate's notAfter.
    #[error("certificate {index}: expired (notAfter {not_after})")]
    Expired {
        /// The certificate's index.
        index: usize,
        /// notAfter, Unix seconds.
        not_after: i64,
    },
    /// `now` is before the certificate's notBefore.
    #[error("certificate {index}: not yet valid (notBefore {not_before})")]
    NotYetValid {
        /// The certificate's index.
        index: usize,
        /// notBefore, Unix seconds.
        not_before: i64,
    },
    /// The certificate's serial number is in the status list as REVOKED or SUSPENDED.
    #[error("certificate {index}: serial {serial} is {status:?} in the status list")]
    Revoked {
        /// The certificate's index.
        index: usize,
        /// The normalised serial (see [`serial_hex`]).
        serial: String,
        /// The status found.
        status: Status,
    },
    /// The leaf's key attestation extension does not parse.
    #[error("certificate {index}: {source}")]
    KeyDescription {
        /// Always 0.
        index: usize,
        /// The parser's error.
        #[source]
        source: AttestationError,
    },
    /// A trust anchor certificate could not be read.
    #[error("trust anchor {index}: {reason}")]
    InvalidAnchor {
        /// The anchor's index in the input.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The status list JSON could not be read.
    #[error("status list: {0}")]
    StatusList(String),
}

/// One trust anchor: the certificate and the parts matched against a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Anchor {
    der: Vec<u8>,
    spki: Vec<u8>,
    subject: Vec<u8>,
}

/// A set of root certificates. A chain's root is matched by its SubjectPublicKeyInfo (the
/// key), not by its name: Google re-issued the RSA root certificate with the same key, and
/// chains carry either certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
}

impl TrustAnchors {
    /// Google's two hardware attestation roots ([`GOOGLE_RSA_ROOT_PEM`], [`GOOGLE_EC_ROOT_PEM`]).
    ///
    /// The roots are constants checked by this crate's tests; should they ever fail to parse,
    /// the set is empty and every chain is refused (fail closed) rather than panicking.
    pub fn google() -> Self {
        let mut pem = String::with_capacity(GOOGLE_RSA_ROOT_PEM.len() + GOOGLE_EC_ROOT_PEM.len());
        pem.push_str(GOOGLE_RSA_ROOT_PEM);
        pem.push_str(GOOGLE_EC_ROOT_PEM);
        Self::from_pem(pem.as_bytes()).unwrap_or_default()
    }

    /// Anchors from PEM text holding one or more `CERTIFICATE` blocks.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ChainError> {
        let ders = pem_chain_to_der(pem).map_err(|e| ChainError::InvalidAnchor {
            index: 0,
            reason: e.to_string(),
        })?;
        Self::from_der(ders)
    }

    /// Anchors from DER certificates.
    pub fn from_der(ders: impl IntoIterator<Item = Vec<u8>>) -> Result<Self, ChainError> {
        let mut anchors = Vec::new();
        for (index, der) in ders.into_iter().enumerate() {
            let cert = parse_certificate(&der)
                .map_err(|reason| ChainError::InvalidAnchor { index, reason })?;
            let spki = cert.public_key().raw.to_vec();
            let subject = cert.subject().as_raw().to_vec();
            anchors.push(Anchor { der, spki, subject });
        }
        Ok(Self { anchors })
    }

    /// The number of anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether there is no anchor (every chain is then refused).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors' DER certificates, in order.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.anchors.iter().map(|a| a.der.as_slice())
    }
}

/// The status of a serial number in the attestation status list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Revoked for good.
    Revoked,
    /// Suspended (may be lifted); refused like a revocation.
    Suspended,
}

/// Why a serial was listed (informational; every listed serial is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// The key was compromised.
    KeyCompromise,
    /// The issuing CA was compromised.
    CaCompromise,
    /// The key was replaced.
    Superseded,
    /// A software flaw.
    SoftwareFlaw,
    /// A reason this crate does not know.
    #[serde(other)]
    Other,
}

/// One entry of the status list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// REVOKED or SUSPENDED.
    pub status: Status,
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// When the entry may be dropped from the list, if given (kept as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// A free comment, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Deserialize)]
struct StatusListJson {
    entries: HashMap<String, StatusEntry>,
}

/// Google's attestation status list (`{"entries": {"<serial>": {"status": ...}}}`), keyed by
/// normalised serial number (see [`serial_hex`]). Unknown fields are ignored; an unknown
/// `status` value or a key that is not hexadecimal makes the whole list invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    entries: HashMap<String, StatusEntry>,
}

impl RevocationList {
    /// A list without entries.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the status list JSON. Keys are normalised like serials (lowercase, leading
    /// zeros dropped), so `"0A"` and `"a"` name the same serial.
    pub fn from_json(json: &[u8]) -> Result<Self, ChainError> {
        let parsed: StatusListJson =
            serde_json::from_slice(json).map_err(|e| ChainError::StatusList(e.to_string()))?;
        let mut entries = HashMap::with_capacity(parsed.entries.len());
        for (key, entry) in parsed.entries {
            let serial = normalise_hex(&key)
                .ok_or_else(|| ChainError::StatusList(format!("key {key:?} is not hexadecimal")))?;
            entries.insert(serial, entry);
        }
        Ok(Self { entries })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for a serial given as hexadecimal text (any case, leading zeros allowed);
    /// `None` if it is not listed or not hexadecimal.
    pub fn entry(&self, serial: &str) -> Option<&StatusEntry> {
        normalise_hex(serial).and_then(|s| self.entries.get(&s))
    }

    /// The status of a serial given as hexadecimal text; see [`RevocationList::entry`].
    pub fn status_of(&self, serial: &str) -> Option<Status> {
        self.entry(serial).map(|e| e.status)
    }

    /// The status of a serial given as the bytes of a certificate's serial INTEGER.
    pub fn status_of_serial_bytes(&self, serial: &[u8]) -> Option<Status> {
        self.entries.get(&serial_hex(serial)).map(|e| e.status)
    }
}

/// A certificate serial number (the content bytes of its DER INTEGER, big-endian, as
/// x509-parser's `raw_serial` gives them) as the status list writes it: lowercase hex without
/// leading zeros, `"0"` for zero or no bytes. A leading 0x00 sign byte therefore disappears
/// (`00 8f 01` → `"8f01"`, `0a` → `"a"`). The bytes are read as an unsigned magnitude: a
/// (non-conforming) negative serial is not given a minus sign.
pub fn serial_hex(serial: &[u8]) -> String {
    let mut hex = String::with_capacity(serial.len() * 2);
    for byte in serial {
        hex.push_str(&format!("{byte:02x}"));
    }
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Lowercase, no leading zeros; `None` if empty or not hexadecimal.
fn normalise_hex(text: &str) -> Option<String> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// A chain that passed [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedChain {
    /// The leaf's parsed key attestation extension.
    pub key_description: KeyDescription,
    /// The leaf's SubjectPublicKeyInfo, DER: the attested key.
    pub leaf_public_key_der: Vec<u8>,
    /// The index, in the [`TrustAnchors`], of the anchor the chain ends at.
    pub anchor_index: usize,
    /// SHA-256 of that anchor's SubjectPublicKeyInfo DER.
    pub anchor_spki_sha256: [u8; 32],
    /// Whether the chain's last certificate is the anchor itself (same key) rather than a
    /// certificate signed by it.
    pub root_in_chain: bool,
    /// The certificates' serial numbers ([`serial_hex`]), leaf first.
    pub serials: Vec<String>,
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate".to_owned());
    }
    Ok(cert)
}

fn has_key_description(cert: &X509Certificate<'_>) -> bool {
    cert.extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == KEY_DESCRIPTION_OID)
}

/// Refuses SHA-1, then verifies `cert`'s signature with `key`.
fn check_signature(
    index: usize,
    cert: &X509Certificate<'_>,
    key: &SubjectPublicKeyInfo<'_>,
) -> Result<(), ChainError> {
    let algorithm = cert.signature_algorithm.algorithm.to_id_string();
    if WEAK_SIGNATURE_ALGORITHMS.contains(&algorithm.as_str()) {
        return Err(ChainError::WeakSignatureAlgorithm { index, algorithm });
    }
    cert.verify_signature(Some(key))
        .map_err(|e| ChainError::BadSignature {
            index,
            reason: e.to_string(),
        })
}

/// Verifies an attestation certificate chain (DER, leaf first) and returns the leaf's
/// `KeyDescription`.
///
/// The checks, in this order (the first failure is returned):
///
/// 1. between 2 and [`MAX_CHAIN_LEN`] certificates;
/// 2. every certificate is a DER X.509 certificate with nothing after it;
/// 3. the leaf (index 0) carries the key attestation extension and no other certificate
///    does ([`ChainError::ExtensionOutsideLeaf`]: a forged extension higher up, or a chain
///    extended past the attested key with a new leaf signed by it);
/// 4. the last certificate has the SubjectPublicKeyInfo of an anchor, or its issuer name is
///    an anchor's subject and its (not SHA-1) signature verifies with that anchor's key
///    ([`ChainError::UnknownRoot`]); checked before the links so that a chain from another
///    PKI is reported as such whatever its algorithms;
/// 5. for each certificate but the last: its issuer name equals the next certificate's
///    subject name (byte for byte), its signature algorithm is not SHA-1 based, and its
///    signature verifies with the next certificate's public key (x509-parser with ring:
///    ECDSA P-256/P-384 with SHA-256/384, RSA PKCS#1 and PSS of 2048 bits or more);
/// 6. `now_unix_seconds` is within every certificate's validity (notBefore ≤ now ≤ notAfter);
/// 7. no certificate's serial ([`serial_hex`]) is REVOKED or SUSPENDED in `revocations`;
/// 8. the leaf's extension parses ([`KeyDescription::from_certificate_der`]).
///
/// Not checked: basicConstraints, key usage and name constraints (Android attestation
/// leaves are routinely not CA certificates and chains are not uniform enough), and the
/// validity of an anchor that is not itself in the chain.
pub fn verify_chain(
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    revocations: &RevocationList,
    now_unix_seconds: i64,
) -> Result<VerifiedChain, ChainError> {
    verify_chain_with(chain, anchors, revocations, now_unix_seconds, None)
}

/// Link signatures that verified, so that the links many devices share (a batch or
/// provisioning intermediate and Google's roots above it, where the slow ECDSA P-384 and
/// RSA-4096 signatures are) are verified once.
///
/// A link is named by the SHA-256 of the signed certificate's DER and of its issuer's
/// SubjectPublicKeyInfo: a signature over fixed bytes with a fixed key verifies forever, so
/// a remembered link needs no expiry. Only what depends on time or on the lists is checked
/// at every call: validity, the status list, the anchors. The leaf's own link (one per
/// device) is never remembered, nor are failures. At most `capacity` links; when full, it
/// starts again empty.
#[derive(Debug)]
pub struct LinkCache {
    verified: Mutex<HashSet<[u8; 32]>>,
    capacity: usize,
}

impl LinkCache {
    /// An empty cache of at most `capacity` links.
    pub fn new(capacity: usize) -> Self {
        Self {
            verified: Mutex::new(HashSet::new()),
            capacity: capacity.max(1),
        }
    }

    /// How many links are remembered.
    pub fn len(&self) -> usize {
        self.verified.lock().map(|set| set.len()).unwrap_or(0)
    }

    /// Whether no link is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(cert_der: &[u8], issuer_spki_der: &[u8]) -> [u8; 32] {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(
            &u64::try_from(cert_der.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        context.update(cert_der);
        context.update(issuer_spki_der);
        let mut key = [0_u8; 32];
        key.copy_from_slice(context.finish().as_ref());
        key
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.verified.lock().is_ok_and(|set| set.contains(key))
    }

    fn insert(&self, key: [u8; 32]) {
        if let Ok(mut set) = self.verified.lock() {
            if set.len() >= self.capacity {
                set.clear();
            }
            set.insert(key);
        }
    }
}

/// [`verify_chain`], with the link signatures above the leaf looked up in and added to
/// `links` ([`LinkCache`]); every other check runs at every call.
pub fn verify_chain_with(
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    revocations: &RevocationList,
    now_unix_seconds: i64,
    links: Option<&LinkCache>,
) -> Result<VerifiedChain, ChainError> {
    // 1. Length.
    if chain.len() < 2 {
        return Err(ChainError::TooShort { len: chain.len() });
    }
    if chain.len() > MAX_CHAIN_LEN {
        return Err(ChainError::TooLong {
            len: chain.len(),
            max: MAX_CHAIN_LEN,
        });
    }

    // 2. Parse.
    let mut certs = Vec::with_capacity(chain.len());
    for (index, der) in chain.iter().enumerate() {
        let cert =
            parse_certificate(der).map_err(|reason| ChainError::Certificate { index, reason })?;
        certs.push(cert);
    }

    // 3. The extension only in the leaf.
    for (index, cert) in certs.iter().enumerate() {
        let has = has_key_description(cert);
        if index == 0 && !has {
            return Err(ChainError::MissingKeyDescription { index });
        }
        if index > 0 && has {
            return Err(ChainError::ExtensionOutsideLeaf { index });
        }
    }

    // 4. The root: an anchor, or signed by one.
    let last_index = certs.len() - 1;
    let last = certs
        .last()
        .ok_or(ChainError::TooShort { len: certs.len() })?;
    let (anchor_index, root_in_chain) = find_anchor(last_index, last, anchors)?;
    let anchor = anchors
        .anchors
        .get(anchor_index)
        .ok_or(ChainError::UnknownRoot { index: last_index })?;

    // 5. Names and signatures, link by link.
    for (index, pair) in certs.windows(2).enumerate() {
        let [cert, issuer] = pair else {
            continue;
        };
        if cert.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(ChainError::IssuerMismatch { index });
        }
        let remembered = match (links, index) {
            (Some(cache), 1..) => {
                let der = chain.get(index).map(Vec::as_slice).unwrap_or_default();
                Some((cache, LinkCache::key(der, issuer.public_key().raw)))
            }
            _ => None,
        };
        if let Some((cache, key)) = &remembered
            && cache.contains(key)
        {
            continue;
        }
        check_signature(index, cert, issuer.public_key())?;
        if let Some((cache, key)) = remembered {
            cache.insert(key);
        }
    }

    // 6. Validity.
    for (index, cert) in certs.iter().enumerate() {
        let validity = cert.validity();
        let not_before = validity.not_before.timestamp();
        let not_after = validity.not_after.timestamp();
        if now_unix_seconds < not_before {
            return Err(ChainError::NotYetValid { index, not_before });
        }
        if now_unix_seconds > not_after {
            return Err(ChainError::Expired { index, not_after });
        }
    }

    // 7. Status list.
    let serials: Vec<String> = certs.iter().map(|c| serial_hex(c.raw_serial())).collect();
    for (index, serial) in serials.iter().enumerate() {
        if let Some(entry) = revocations.entries.get(serial) {
            return Err(ChainError::Revoked {
                index,
                serial: serial.clone(),
                status: entry.status,
            });
        }
    }

    // 8. The KeyDescription.
    let leaf_der = chain.first().ok_or(ChainError::TooShort { len: 0 })?;
    let key_description = KeyDescription::from_certificate_der(leaf_der)
        .map_err(|source| ChainError::KeyDescription { index: 0, source })?
        .ok_or(ChainError::MissingKeyDescription { index: 0 })?;
    let leaf_public_key_der = certs
        .first()
        .map(|c| c.public_key().raw.to_vec())
        .unwrap_or_default();

    let digest = ring::digest::digest(&ring::digest::SHA256, &anchor.spki);
    let mut anchor_spki_sha256 = [0u8; 32];
    anchor_spki_sha256.copy_from_slice(digest.as_ref());

    Ok(VerifiedChain {
        key_description,
        leaf_public_key_der,
        anchor_index,
        anchor_spki_sha256,
        root_in_chain,
        serials,
    })
}

/// The anchor the last certificate is (same key) or is signed by: (its index, whether it is
/// the certificate itself).
fn find_anchor(
    index: usize,
    last: &X509Certificate<'_>,
    anchors: &TrustAnchors,
) -> Result<(usize, bool), ChainError> {
    let spki = last.public_key().raw;
    if let Some(position) = anchors.anchors.iter().position(|a| a.spki == spki) {
        return Ok((position, true));
    }
    let algorithm = last.signature_algorithm.algorithm.to_id_string();
    if WEAK_SIGNATURE_ALGORITHMS.contains(&algorithm.as_str()) {
        return Err(ChainError::WeakSignatureAlgorithm { index, algorithm });
    }
    for (position, anchor) in anchors.anchors.iter().enumerate() {
        if anchor.subject != last.issuer().as_raw() {
            continue;
        }
        let Ok((_, key)) = SubjectPublicKeyInfo::from_der(&anchor.spki) else {
            continue;
        };
        if last.verify_signature(Some(&key)).is_ok() {
            return Ok((position, false));
        }
    }
    Err(ChainError::UnknownRoot { index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_is_lowercase_without_leading_zeros() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x0a]), "a");
        assert_eq!(serial_hex(&[0x00, 0x00, 0x10]), "10");
        assert_eq!(serial_hex(&[0xe8, 0xfa, 0x19, 0x63]), "e8fa1963");
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(serial_hex(&[]), "0");
    }

    #[test]
    fn status_list_parses_and_normalises_keys() {
        let json = br#"{
            "entries": {
                "2c8cdddfd5e03bfc": {"status": "REVOKED", "reason": "KEY_COMPROMISE",
                                     "expires": "2030-01-01", "comment": "test"},
                "00C8966FCB2FBE32": {"status": "SUSPENDED"},
                "ab": {"status": "REVOKED", "reason": "SOMETHING_NEW", "extra": 1}
            },
            "unknownTopLevel": true
        }"#;
        let list = RevocationList::from_json(json).expect("parses");
        assert_eq!(list.len(), 3);
        assert_eq!(list.status_of("2c8cdddfd5e03bfc"), Some(Status::Revoked));
        assert_eq!(list.status_of("2C8CDDDFD5E03BFC"), Some(Status::Revoked));
        assert_eq!(list.status_of("c8966fcb2fbe32"), Some(Status::Suspended));
        assert_eq!(
            list.status_of_serial_bytes(&[0x00, 0xc8, 0x96, 0x6f, 0xcb, 0x2f, 0xbe, 0x32]),
            Some(Status::Suspended)
        );
        assert_eq!(
            list.entry("2c8cdddfd5e03bfc").and_then(|e| e.reason),
            Some(Reason::KeyCompromise)
        );
        assert_eq!(list.entry("ab").and_then(|e| e.reason), Some(Reason::Other));
        assert_eq!(list.status_of("ac"), None);
        assert_eq!(list.status_of("not hex"), None);
        assert!(RevocationList::empty().is_empty());
    }

    #[test]
    fn status_list_rejects_bad_input() {
        for bad in [
            &br#"{}"#[..],
            br#"{"entries": {"ab": {"status": "MAYBE"}}}"#,
            br#"{"entries": {"xyz": {"status": "REVOKED"}}}"#,
            br#"{"entries": {"ab": {}}}"#,
            b"not json",
        ] {
            assert!(
                matches!(
                    RevocationList::from_json(bad),
                    Err(ChainError::StatusList(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn google_anchors_are_the_two_roots() {
        let anchors = TrustAnchors::google();
        assert_eq!(anchors.len(), 2);
    }
}
