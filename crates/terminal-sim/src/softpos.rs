//! A simulated SoftPOS phone's attestation evidence: what an Android payment app sends the
//! platform's attestation service for a fresh challenge.
//!
//! * [`SoftPosProfile`]: the phone and the app (security levels, OS version and patch levels,
//!   verified boot, package and signing certificate, runtime signals); `Default` is a healthy
//!   phone;
//! * [`encode_key_description`]: the DER of the Android key attestation extension
//!   (`KeyDescription`, OID `1.3.6.1.4.1.11129.2.1.17`) for a challenge;
//! * [`AttestationPki`]: a simulated attestation root and intermediate that issue the
//!   attestation certificate chain (leaf → intermediate → root), with failure paths
//!   ([`AttestOptions`]);
//! * [`play_integrity_verdict`]: the decoded Play Integrity verdict JSON Google would return
//!   for the app's integrity token;
//! * [`AppSignals`]: what the app's own runtime checks report.
//!
//! The root is a **simulator root**: an attestation service accepts these chains only when it
//! is told to trust [`AttestationPki::root_der`]; Google's attestation roots never validate
//! them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SerialNumber, date_time_ymd,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::SimError;

/// The OID of the Android key attestation extension, as rcgen takes it.
const KEY_DESCRIPTION_OID: [u64; 10] = [1, 3, 6, 1, 4, 1, 11129, 2, 1, 17];

/// KeyMint `KeyPurpose::SIGN`.
const PURPOSE_SIGN: u64 = 2;
/// KeyMint `KeyPurpose::AGREE_KEY` (ECDH, Android 12 and later): the attested key also
/// receives the phone's DUKPT initial key.
const PURPOSE_AGREE_KEY: u64 = 6;
/// KeyMint `Algorithm::EC`.
const ALGORITHM_EC: u64 = 3;
/// KeyMint `Digest::SHA_2_256`.
const DIGEST_SHA_2_256: u64 = 4;
/// KeyMint `EcCurve::P_256`.
const EC_CURVE_P_256: u64 = 1;
/// KeyMint `KeyOrigin::GENERATED`.
const ORIGIN_GENERATED: u64 = 0;

/// A KeyMint / attestation security level (`SecurityLevel ::= ENUMERATED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityLevel {
    /// 0: Android software, no secure hardware.
    Software,
    /// 1: a Trusted Execution Environment.
    TrustedEnvironment,
    /// 2: a StrongBox secure element.
    StrongBox,
}

impl SecurityLevel {
    /// The ENUMERATED value.
    pub fn value(self) -> u32 {
        match self {
            Self::Software => 0,
            Self::TrustedEnvironment => 1,
            Self::StrongBox => 2,
        }
    }
}

/// The verified boot state of the root of trust (`VerifiedBootState ::= ENUMERATED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifiedBootState {
    /// 0: a locked device booting the manufacturer's image.
    Verified,
    /// 1: verified with a user-installed key.
    SelfSigned,
    /// 2: not verified (unlocked bootloader).
    Unverified,
    /// 3: verification failed.
    Failed,
}

impl VerifiedBootState {
    /// The ENUMERATED value.
    pub fn value(self) -> u32 {
        match self {
            Self::Verified => 0,
            Self::SelfSigned => 1,
            Self::Unverified => 2,
            Self::Failed => 3,
        }
    }
}

/// A simulated SoftPOS phone and payment app. `Default` is a healthy phone: a locked,
/// verified Android 15 device with a TEE, patched November 2026, running the genuine app.
///
/// The attested key is always a P-256 signing key generated in the secure hardware (origin
/// `GENERATED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftPosProfile {
    /// The app's package name.
    pub package_name: String,
    /// The app's version code.
    pub app_version_code: u64,
    /// The app's version name.
    pub app_version_name: String,
    /// SHA-256 of the app's signing certificate.
    pub signing_certificate_sha256: [u8; 32],
    /// The SoftPOS SDK version the app embeds.
    pub sdk_version: String,
    /// `attestationVersion` (300 for KeyMint 3).
    pub attestation_version: u64,
    /// `attestationSecurityLevel`.
    pub attestation_security_level: SecurityLevel,
    /// `keyMintVersion` (300 for KeyMint 3).
    pub keymint_version: u64,
    /// `keyMintSecurityLevel`; [`SecurityLevel::Software`] puts every key property in
    /// `softwareEnforced`.
    pub keymint_security_level: SecurityLevel,
    /// `osVersion` in KeyMint's encoding (`MMmmpp`: 150000 for Android 15).
    pub os_version: u32,
    /// `osPatchLevel`, `YYYYMM`.
    pub os_patch_level: u32,
    /// `vendorPatchLevel`, `YYYYMMDD`.
    pub vendor_patch_level: u32,
    /// `bootPatchLevel`, `YYYYMMDD`.
    pub boot_patch_level: u32,
    /// `rootOfTrust.verifiedBootState`.
    pub verified_boot_state: VerifiedBootState,
    /// `rootOfTrust.deviceLocked`: the bootloader is locked.
    pub device_locked: bool,
    /// `rootOfTrust.verifiedBootKey`.
    pub verified_boot_key: [u8; 32],
    /// `rootOfTrust.verifiedBootHash`.
    pub verified_boot_hash: [u8; 32],
    /// The app detects root (su binaries, Magisk...).
    pub rooted: bool,
    /// The app detects an emulator.
    pub emulator: bool,
    /// The app detects an attached debugger.
    pub debugger_attached: bool,
    /// The app detects a hooking framework (Frida, Xposed...).
    pub hooking_framework: bool,
    /// The app detects that its own code or signature was modified.
    pub app_tampered: bool,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl Default for SoftPosProfile {
    fn default() -> Self {
        Self {
            package_name: "com.mpos.softpos".to_owned(),
            app_version_code: 42,
            app_version_name: "2.3.1".to_owned(),
            signing_certificate_sha256: sha256(b"mpos softpos release signing cert"),
            sdk_version: "1.4.0".to_owned(),
            attestation_version: 300,
            attestation_security_level: SecurityLevel::TrustedEnvironment,
            keymint_version: 300,
            keymint_security_level: SecurityLevel::TrustedEnvironment,
            os_version: 150_000,
            os_patch_level: 202_611,
            vendor_patch_level: 20_261_101,
            boot_patch_level: 20_261_101,
            verified_boot_state: VerifiedBootState::Verified,
            device_locked: true,
            verified_boot_key: sha256(b"mpos softpos verified boot key"),
            verified_boot_hash: sha256(b"mpos softpos verified boot hash"),
            rooted: false,
            emulator: false,
            debugger_attached: false,
            hooking_framework: false,
            app_tampered: false,
        }
    }
}

impl SoftPosProfile {
    /// The app's runtime signals for this phone.
    pub fn signals(&self) -> AppSignals {
        AppSignals {
            rooted: self.rooted,
            emulator: self.emulator,
            debugger_attached: self.debugger_attached,
            hooking_framework: self.hooking_framework,
            app_tampered: self.app_tampered,
            os_version: self.os_version,
            sdk_version: self.sdk_version.clone(),
            app_version: self.app_version_name.clone(),
            app_version_code: self.app_version_code,
            security_patch_level: format!(
                "{:04}-{:02}-01",
                self.os_patch_level / 100,
                self.os_patch_level % 100
            ),
            package_name: self.package_name.clone(),
        }
    }
}

/// What the SoftPOS app's own runtime checks report alongside the attestation (JSON with
/// snake_case keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSignals {
    /// Root detected.
    pub rooted: bool,
    /// Emulator detected.
    pub emulator: bool,
    /// Debugger attached.
    pub debugger_attached: bool,
    /// Hooking framework detected.
    pub hooking_framework: bool,
    /// The app's code or signature was modified.
    pub app_tampered: bool,
    /// The OS version, KeyMint encoding (150000 for Android 15).
    pub os_version: u32,
    /// The SoftPOS SDK version.
    pub sdk_version: String,
    /// The app's version name.
    pub app_version: String,
    /// The app's version code.
    pub app_version_code: u64,
    /// The security patch level, `YYYY-MM-DD` (the OS patch month, day 01).
    pub security_patch_level: String,
    /// The app's package name.
    pub package_name: String,
}

/// A minimal DER writer: definite lengths, minimal INTEGERs, sorted SET OF.
mod der {
    /// Appends a definite length (short form below 128, long form otherwise).
    fn push_length(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            // Lossless: checked just above.
            out.push(len as u8);
            return;
        }
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        // At most 8 length bytes: 0x81..=0x88.
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }

    /// A TLV with identifier octets `identifier`.
    pub(super) fn tlv(identifier: &[u8], content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(identifier.len() + 9 + content.len());
        out.extend_from_slice(identifier);
        push_length(&mut out, content.len());
        out.extend_from_slice(content);
        out
    }

    /// The identifier octets of a constructed context-specific tag `[number]`: one octet
    /// below 31, the high-tag-number form (base 128, most significant group first) above.
    pub(super) fn context_constructed(number: u32) -> Vec<u8> {
        const CONTEXT_CONSTRUCTED: u8 = 0xA0;
        if number < 31 {
            // Lossless: below 31.
            return vec![CONTEXT_CONSTRUCTED | number as u8];
        }
        let mut groups = Vec::new();
        let mut rest = number;
        loop {
            groups.push((rest & 0x7F) as u8);
            rest >>= 7;
            if rest == 0 {
                break;
            }
        }
        let mut out = vec![CONTEXT_CONSTRUCTED | 0x1F];
        let last = groups.len() - 1;
        for (i, group) in groups.iter().rev().enumerate() {
            out.push(if i == last { *group } else { group | 0x80 });
        }
        out
    }

    /// `[number] EXPLICIT` around an encoded value.
    pub(super) fn explicit(number: u32, inner: &[u8]) -> Vec<u8> {
        tlv(&context_constructed(number), inner)
    }

    /// The minimal two's complement content of a non-negative integer.
    fn unsigned_content(value: u64) -> Vec<u8> {
        let bytes = value.to_be_bytes();
        let skip = bytes
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(bytes.len() - 1);
        let significant = bytes.get(skip..).unwrap_or_default();
        let mut content = Vec::with_capacity(9);
        if significant.first().is_some_and(|b| b & 0x80 != 0) {
            content.push(0);
        }
        content.extend_from_slice(significant);
        content
    }

    /// INTEGER.
    pub(super) fn integer(value: u64) -> Vec<u8> {
        tlv(&[0x02], &unsigned_content(value))
    }

    /// ENUMERATED.
    pub(super) fn enumerated(value: u32) -> Vec<u8> {
        tlv(&[0x0A], &unsigned_content(u64::from(value)))
    }

    /// BOOLEAN (DER: FF or 00).
    pub(super) fn boolean(value: bool) -> Vec<u8> {
        tlv(&[0x01], &[if value { 0xFF } else { 0x00 }])
    }

    /// NULL.
    pub(super) fn null() -> Vec<u8> {
        vec![0x05, 0x00]
    }

    /// OCTET STRING.
    pub(super) fn octet_string(bytes: &[u8]) -> Vec<u8> {
        tlv(&[0x04], bytes)
    }

    /// SEQUENCE of encoded elements, in order.
    pub(super) fn sequence(elements: &[Vec<u8>]) -> Vec<u8> {
        tlv(&[0x30], &elements.concat())
    }

    /// SET OF encoded elements, sorted as DER requires (X.690 11.6: ascending encodings, the
    /// shorter padded with trailing zero octets).
    pub(super) fn set_of(mut elements: Vec<Vec<u8>>) -> Vec<u8> {
        elements.sort_by(|a, b| {
            let len = a.len().max(b.len());
            padded(a, len).cmp(padded(b, len))
        });
        tlv(&[0x31], &elements.concat())
    }

    /// `bytes` followed by zero octets up to `len`.
    fn padded(bytes: &[u8], len: usize) -> impl Iterator<Item = u8> + '_ {
        bytes.iter().copied().chain(std::iter::repeat(0)).take(len)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lengths_integers_and_tags() {
            assert_eq!(integer(0), [0x02, 0x01, 0x00]);
            assert_eq!(integer(127), [0x02, 0x01, 0x7F]);
            assert_eq!(integer(128), [0x02, 0x02, 0x00, 0x80]);
            assert_eq!(integer(256), [0x02, 0x02, 0x01, 0x00]);
            assert_eq!(
                integer(u64::MAX),
                [
                    0x02, 0x09, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
                ]
            );
            assert_eq!(context_constructed(1), [0xA1]);
            assert_eq!(context_constructed(30), [0xBE]);
            assert_eq!(context_constructed(31), [0xBF, 0x1F]);
            assert_eq!(context_constructed(704), [0xBF, 0x85, 0x40]);
            assert_eq!(context_constructed(503), [0xBF, 0x83, 0x77]);
            let long = octet_string(&[7; 200]);
            assert_eq!(long.get(..3), Some(&[0x04, 0x81, 200][..]));
            let longer = octet_string(&[7; 300]);
            assert_eq!(longer.get(..4), Some(&[0x04, 0x82, 0x01, 0x2C][..]));
            assert_eq!(
                set_of(vec![integer(256), integer(2), integer(1)]),
                [
                    0x31, 0x0A, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02, 0x02, 0x02, 0x01, 0x00
                ]
            );
        }
    }
}

/// The current time, Unix milliseconds (0 if the clock is before 1970).
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The DER `KeyDescription` (the key attestation extension's value) the phone's KeyMint would
/// produce for a P-256 signing key generated for `challenge`, created now. See
/// [`encode_key_description_at`].
pub fn encode_key_description(profile: &SoftPosProfile, challenge: &[u8]) -> Vec<u8> {
    encode_key_description_at(profile, challenge, now_millis())
}

/// The DER `KeyDescription` with `creationDateTime` = `creation_millis` (Unix ms).
///
/// `hardwareEnforced` (or `softwareEnforced` when the KeyMint security level is
/// [`SecurityLevel::Software`]) holds purpose {SIGN}, algorithm EC, keySize 256,
/// digest {SHA-256}, ecCurve P-256, noAuthRequired, origin GENERATED, the root of trust,
/// osVersion, osPatchLevel, vendorPatchLevel and bootPatchLevel; `softwareEnforced` holds
/// creationDateTime and the attestationApplicationId (the package with its version code and
/// the signing certificate digest). Each list is in ascending tag order; uniqueId is empty.
/// A version code above `i64::MAX` is encoded as is, and refused by parsers reading it as
/// a signed 64-bit integer.
pub fn encode_key_description_at(
    profile: &SoftPosProfile,
    challenge: &[u8],
    creation_millis: u64,
) -> Vec<u8> {
    let root_of_trust = der::sequence(&[
        der::octet_string(&profile.verified_boot_key),
        der::boolean(profile.device_locked),
        der::enumerated(profile.verified_boot_state.value()),
        der::octet_string(&profile.verified_boot_hash),
    ]);
    let key_properties: Vec<(u32, Vec<u8>)> = vec![
        (
            1,
            der::set_of(vec![
                der::integer(PURPOSE_SIGN),
                der::integer(PURPOSE_AGREE_KEY),
            ]),
        ),
        (2, der::integer(ALGORITHM_EC)),
        (3, der::integer(256)),
        (5, der::set_of(vec![der::integer(DIGEST_SHA_2_256)])),
        (10, der::integer(EC_CURVE_P_256)),
        (503, der::null()),
        (702, der::integer(ORIGIN_GENERATED)),
        (704, root_of_trust),
        (705, der::integer(u64::from(profile.os_version))),
        (706, der::integer(u64::from(profile.os_patch_level))),
        (718, der::integer(u64::from(profile.vendor_patch_level))),
        (719, der::integer(u64::from(profile.boot_patch_level))),
    ];
    let application_id = der::sequence(&[
        der::set_of(vec![der::sequence(&[
            der::octet_string(profile.package_name.as_bytes()),
            der::integer(profile.app_version_code),
        ])]),
        der::set_of(vec![der::octet_string(&profile.signing_certificate_sha256)]),
    ]);
    let mut software: Vec<(u32, Vec<u8>)> = vec![
        (701, der::integer(creation_millis)),
        (709, der::octet_string(&application_id)),
    ];
    let mut hardware = Vec::new();
    if profile.keymint_security_level == SecurityLevel::Software {
        software.extend(key_properties);
    } else {
        hardware = key_properties;
    }
    der::sequence(&[
        der::integer(profile.attestation_version),
        der::enumerated(profile.attestation_security_level.value()),
        der::integer(profile.keymint_version),
        der::enumerated(profile.keymint_security_level.value()),
        der::octet_string(challenge),
        der::octet_string(&[]),
        authorization_list(software),
        authorization_list(hardware),
    ])
}

/// An `AuthorizationList` SEQUENCE of `[tag] EXPLICIT` fields, in ascending tag order.
fn authorization_list(mut fields: Vec<(u32, Vec<u8>)>) -> Vec<u8> {
    fields.sort_by_key(|(tag, _)| *tag);
    let encoded: Vec<Vec<u8>> = fields
        .iter()
        .map(|(tag, value)| der::explicit(*tag, value))
        .collect();
    der::sequence(&encoded)
}

/// The decoded Play Integrity verdict JSON (the payload `decodeIntegrityToken` returns) for
/// the profile's app, a standard request with `request_hash`, made at `timestamp_millis`.
///
/// `appRecognitionVerdict` is `PLAY_RECOGNIZED` (`UNRECOGNIZED_VERSION` when the app is
/// tampered); `deviceRecognitionVerdict` is `MEETS_DEVICE_INTEGRITY`, plus
/// `MEETS_STRONG_INTEGRITY` when the attestation security level is StrongBox; only
/// `MEETS_BASIC_INTEGRITY` for a rooted phone or one whose bootloader is unlocked or boot not
/// verified; empty for an emulator. The licence is `LICENSED`; integers are decimal strings
/// (protobuf's JSON form of int64).
pub fn play_integrity_verdict(
    profile: &SoftPosProfile,
    request_hash: &str,
    timestamp_millis: u64,
) -> String {
    let boot_compromised =
        !profile.device_locked || profile.verified_boot_state != VerifiedBootState::Verified;
    let labels: Vec<&str> = if profile.emulator {
        Vec::new()
    } else if profile.rooted || boot_compromised {
        vec!["MEETS_BASIC_INTEGRITY"]
    } else if profile.attestation_security_level == SecurityLevel::StrongBox {
        vec!["MEETS_DEVICE_INTEGRITY", "MEETS_STRONG_INTEGRITY"]
    } else {
        vec!["MEETS_DEVICE_INTEGRITY"]
    };
    let recognition = if profile.app_tampered {
        "UNRECOGNIZED_VERSION"
    } else {
        "PLAY_RECOGNIZED"
    };
    serde_json::json!({
        "requestDetails": {
            "requestPackageName": profile.package_name,
            "requestHash": request_hash,
            "timestampMillis": timestamp_millis.to_string(),
        },
        "appIntegrity": {
            "appRecognitionVerdict": recognition,
            "packageName": profile.package_name,
            "certificateSha256Digest": [URL_SAFE_NO_PAD.encode(profile.signing_certificate_sha256)],
            "versionCode": profile.app_version_code.to_string(),
        },
        "deviceIntegrity": {
            "deviceRecognitionVerdict": labels,
        },
        "accountDetails": {
            "appLicensingVerdict": "LICENSED",
        },
    })
    .to_string()
}

/// The key a SoftPOS app generates in Android Keystore and has attested (P-256, purposes
/// SIGN and AGREE_KEY): the simulator keeps its private key (PKCS#8 DER) in memory. `Debug`
/// shows no key.
pub struct AttestedKey {
    pkcs8: paycrypto::SecretBytes,
}

impl fmt::Debug for AttestedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestedKey").finish_non_exhaustive()
    }
}

impl AttestedKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SimError> {
        let key = p256_key()?;
        Ok(Self {
            pkcs8: paycrypto::SecretBytes::new(key.serialize_der()),
        })
    }

    /// The private key, PKCS#8 DER.
    pub(crate) fn private_key_der(&self) -> &[u8] {
        self.pkcs8.expose()
    }

    fn key_pair(&self) -> Result<KeyPair, SimError> {
        KeyPair::from_pkcs8_der_and_sign_algo(
            &self.pkcs8.expose().to_vec().into(),
            &PKCS_ECDSA_P256_SHA256,
        )
        .map_err(|error| SimError::pki(format!("attested key: {error}")))
    }
}

/// Failure paths for [`AttestationPki::attest_with`], for an attestation service's negative
/// tests. `Default` is a good chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttestOptions {
    /// The leaf expired a day ago (valid from two years ago): refused as expired (index 0).
    pub leaf_expired: bool,
    /// The intermediate (a fresh one, signed by the root) carries the key attestation
    /// extension too: refused as an extension outside the leaf (index 1).
    pub extension_on_intermediate: bool,
    /// The chain is extended past the attested key: a certificate for a new key, signed by
    /// the attested key and carrying a copy of the extension, is put before the leaf. The
    /// attested leaf is then at index 1 and is refused as an extension outside the leaf.
    pub extended_past_leaf: bool,
    /// One bit of the leaf's signature is flipped: refused as a bad signature (index 0).
    pub corrupt_leaf_signature: bool,
}

/// A simulated key attestation PKI: a self-signed EC P-384 root (CA) and an EC P-256
/// intermediate (CA) that issue attestation leaves. The keys are random and live only in
/// memory; `Debug` shows no key.
pub struct AttestationPki {
    root_pem: String,
    root_der: Vec<u8>,
    root: Issuer<'static, KeyPair>,
    intermediate_der: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
}

impl fmt::Debug for AttestationPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestationPki")
            .field("root_der_len", &self.root_der.len())
            .field("intermediate_der_len", &self.intermediate_der.len())
            .field("keys", &"***")
            .finish()
    }
}

/// The subject of the root.
const ROOT_NAME: &str = "mPOS Simulated Key Attestation Root";
/// The subject of the intermediate.
const INTERMEDIATE_NAME: &str = "mPOS Simulated Key Attestation Intermediate";
/// The organisation of the simulator's certificates.
const ORGANISATION: &str = "mPOS terminal simulator";
/// The subject Android Keystore gives attestation leaves.
const LEAF_NAME: &str = "Android Keystore Key";

const DAY: Duration = Duration::from_secs(86_400);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// A random positive serial of 16 bytes.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7F;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Sets a certificate's validity from Unix seconds (through rcgen's own date function, so
/// that the `time` crate is not a direct dependency).
fn set_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) {
    let epoch = date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ca_params(name: &str, now: u64) -> Result<CertificateParams, SimError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(SimError::pki)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANISATION);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    set_validity(
        &mut params,
        now.saturating_sub(DAY.as_secs()),
        now + 20 * YEAR.as_secs(),
    );
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn leaf_params(
    extension: CustomExtension,
    not_before: u64,
    not_after: u64,
) -> Result<CertificateParams, SimError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(SimError::pki)?;
    params
        .distinguished_name
        .push(DnType::CommonName, LEAF_NAME);
    params.is_ca = IsCa::ExplicitNoCa;
    // As Keystore writes it for a key with the purposes SIGN and AGREE_KEY.
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, not_before, not_after);
    params.custom_extensions = vec![extension];
    Ok(params)
}

fn p256_key() -> Result<KeyPair, SimError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|error| SimError::pki(format!("p-256 key generation: {error}")))
}

impl AttestationPki {
    /// A new PKI with random keys: the root and the intermediate are valid from a day ago
    /// for 20 years.
    pub fn new() -> Result<Self, SimError> {
        let now = now_seconds();
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)
            .map_err(|error| SimError::pki(format!("p-384 key generation: {error}")))?;
        let root_params = ca_params(ROOT_NAME, now)?;
        let root_certificate = root_params.self_signed(&root_key).map_err(SimError::pki)?;
        let root = Issuer::new(root_params, root_key);
        let intermediate_key = p256_key()?;
        let intermediate_params = ca_params(INTERMEDIATE_NAME, now)?;
        let intermediate_certificate = intermediate_params
            .signed_by(&intermediate_key, &root)
            .map_err(SimError::pki)?;
        Ok(Self {
            root_pem: root_certificate.pem(),
            root_der: root_certificate.der().to_vec(),
            root,
            intermediate_der: intermediate_certificate.der().to_vec(),
            intermediate: Issuer::new(intermediate_params, intermediate_key),
        })
    }

    /// The root certificate, PEM: what the attestation service must be told to trust.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The attestation chain (DER, leaf → intermediate → root) for a fresh P-256 key
    /// attested for `challenge`: the leaf (not a CA, valid from a day ago for a year)
    /// carries [`encode_key_description`] as a non-critical extension.
    pub fn attest(
        &self,
        profile: &SoftPosProfile,
        challenge: &[u8],
    ) -> Result<Vec<Vec<u8>>, SimError> {
        self.attest_with(profile, challenge, &AttestOptions::default())
    }

    /// [`AttestationPki::attest`] with the failure paths of `options`.
    pub fn attest_with(
        &self,
        profile: &SoftPosProfile,
        challenge: &[u8],
        options: &AttestOptions,
    ) -> Result<Vec<Vec<u8>>, SimError> {
        self.attest_key_with(profile, challenge, options, &AttestedKey::generate()?)
    }

    /// [`AttestationPki::attest`] for the phone's own key (`key`), which the phone keeps:
    /// the leaf certifies its public key, so that the platform can deliver the phone's DUKPT
    /// initial key to it ([`crate::payment::SoftPosTerminal::receive_key`]).
    pub fn attest_key(
        &self,
        profile: &SoftPosProfile,
        challenge: &[u8],
        key: &AttestedKey,
    ) -> Result<Vec<Vec<u8>>, SimError> {
        self.attest_key_with(profile, challenge, &AttestOptions::default(), key)
    }

    fn attest_key_with(
        &self,
        profile: &SoftPosProfile,
        challenge: &[u8],
        options: &AttestOptions,
        key: &AttestedKey,
    ) -> Result<Vec<Vec<u8>>, SimError> {
        let now = now_seconds();
        let key_description = encode_key_description(profile, challenge);
        let extension = CustomExtension::from_oid_content(&KEY_DESCRIPTION_OID, key_description);
        let (not_before, not_after) = if options.leaf_expired {
            (
                now.saturating_sub(2 * YEAR.as_secs()),
                now.saturating_sub(DAY.as_secs()),
            )
        } else {
            (now.saturating_sub(DAY.as_secs()), now + YEAR.as_secs())
        };

        let (intermediate_der, forged_intermediate);
        let intermediate = if options.extension_on_intermediate {
            let key = p256_key()?;
            let mut params = ca_params(INTERMEDIATE_NAME, now)?;
            params.custom_extensions = vec![extension.clone()];
            intermediate_der = params
                .signed_by(&key, &self.root)
                .map_err(SimError::pki)?
                .der()
                .to_vec();
            forged_intermediate = Issuer::new(params, key);
            &forged_intermediate
        } else {
            intermediate_der = self.intermediate_der.clone();
            &self.intermediate
        };

        let leaf_key = key.key_pair()?;
        let params = leaf_params(extension.clone(), not_before, not_after)?;
        let mut leaf_der = params
            .signed_by(&leaf_key, intermediate)
            .map_err(SimError::pki)?
            .der()
            .to_vec();
        if options.corrupt_leaf_signature
            && let Some(last) = leaf_der.last_mut()
        {
            // The last octet of the signature's `s`: the DER stays well formed.
            *last ^= 0x01;
        }

        let mut chain = Vec::with_capacity(4);
        if options.extended_past_leaf {
            let leaf_issuer = Issuer::new(params, leaf_key);
            let extra = leaf_params(extension, not_before, not_after)?
                .signed_by(&p256_key()?, &leaf_issuer)
                .map_err(SimError::pki)?;
            chain.push(extra.der().to_vec());
        }
        chain.push(leaf_der);
        chain.push(intermediate_der);
        chain.push(self.root_der.clone());
        tracing::debug!(
            certificates = chain.len(),
            challenge_len = challenge.len(),
            "softpos attestation chain issued"
        );
        Ok(chain)
    }
}
