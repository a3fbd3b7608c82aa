//! The parsed `KeyDescription` and its parts, with the serde form of android/keyattestation's
//! JSON (camelCase keys, integers as decimal strings, bytes as base64, absent fields omitted).

use serde::{Deserialize, Serialize};

use crate::serde_helpers::{b64, b64_opt, b64_vec, dec, dec_opt, dec_vec_opt, is_false};

/// The Android key attestation extension (OID 1.3.6.1.4.1.11129.2.1.17) of an attestation
/// certificate: who attests (security levels and versions), the verifier's challenge, and the
/// key's authorizations split by where they are enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyDescription {
    /// `attestationVersion`: the version of the attestation schema (e.g. 3, 100, 400).
    #[serde(with = "dec")]
    pub attestation_version: u64,
    /// `attestationSecurityLevel`: where the attestation was produced.
    pub attestation_security_level: SecurityLevel,
    /// `keyMintVersion` (`keymasterVersion` before KeyMint).
    #[serde(with = "dec")]
    pub key_mint_version: u64,
    /// `keyMintSecurityLevel` (`keymasterSecurityLevel`).
    pub key_mint_security_level: SecurityLevel,
    /// `attestationChallenge`: the challenge the verifier gave the app.
    #[serde(with = "b64")]
    pub attestation_challenge: Vec<u8>,
    /// `uniqueId`: empty unless the key requested a unique ID.
    #[serde(with = "b64")]
    pub unique_id: Vec<u8>,
    /// Authorizations enforced by Android (software), not by the secure hardware.
    pub software_enforced: AuthorizationList,
    /// Authorizations enforced by the TEE or StrongBox (`teeEnforced` in older schemas).
    pub hardware_enforced: AuthorizationList,
}

/// `SecurityLevel ::= ENUMERATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityLevel {
    /// 0: Android software (no secure hardware).
    Software,
    /// 1: a Trusted Execution Environment.
    TrustedEnvironment,
    /// 2: a StrongBox secure element.
    StrongBox,
}

impl SecurityLevel {
    /// The level for an ENUMERATED value, if defined.
    pub fn from_value(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Software),
            1 => Some(Self::TrustedEnvironment),
            2 => Some(Self::StrongBox),
            _ => None,
        }
    }
}

/// `origin [702] INTEGER`: where the key came from (KeyMint `KeyOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Origin {
    /// 0: generated in the secure hardware (or Keystore for software keys).
    Generated,
    /// 1: derived inside the secure hardware.
    Derived,
    /// 2: imported in the clear.
    Imported,
    /// 3: reserved (Keymaster's `UNKNOWN`; android/keyattestation names it `RESERVED`).
    #[serde(alias = "UNKNOWN")]
    Reserved,
    /// 4: securely imported (wrapped).
    SecurelyImported,
}

impl Origin {
    /// The origin for an INTEGER value, if defined.
    pub fn from_value(value: u64) -> Option<Self> {
        match value {
            0 => Some(Self::Generated),
            1 => Some(Self::Derived),
            2 => Some(Self::Imported),
            3 => Some(Self::Reserved),
            4 => Some(Self::SecurelyImported),
            _ => None,
        }
    }
}

/// `VerifiedBootState ::= ENUMERATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifiedBootState {
    /// 0: the boot chain is verified by a key in the device (locked, stock).
    Verified,
    /// 1: verified by a user-installed key.
    SelfSigned,
    /// 2: not verified (unlocked bootloader).
    Unverified,
    /// 3: verification failed.
    Failed,
}

impl VerifiedBootState {
    /// The state for an ENUMERATED value, if defined.
    pub fn from_value(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Verified),
            1 => Some(Self::SelfSigned),
            2 => Some(Self::Unverified),
            3 => Some(Self::Failed),
            _ => None,
        }
    }
}

/// `RootOfTrust ::= SEQUENCE`: the verified boot state of the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootOfTrust {
    /// Hash of the key that verified the boot image (all zeros when unlocked).
    #[serde(with = "b64")]
    pub verified_boot_key: Vec<u8>,
    /// Whether the bootloader is locked.
    pub device_locked: bool,
    /// The verified boot state.
    pub verified_boot_state: VerifiedBootState,
    /// Digest of the verified boot data (attestation version 3 and later).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// `AttestationApplicationId`: the app(s) that own the key, from the OCTET STRING of tag 709.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationApplicationId {
    /// `packageInfos`, in their DER order.
    pub packages: Vec<AttestationPackageInfo>,
    /// `signatureDigests`: SHA-256 digests of the signing certificates, in their DER order.
    #[serde(with = "b64_vec")]
    pub signatures: Vec<Vec<u8>>,
}

/// `AttestationPackageInfo ::= SEQUENCE { packageName OCTET STRING, version INTEGER }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationPackageInfo {
    /// The package name (UTF-8).
    pub name: String,
    /// The package version code.
    #[serde(with = "dec")]
    pub version: i64,
}

/// `AuthorizationList ::= SEQUENCE` of EXPLICIT context-tagged optional fields, each named
/// after its KeyMint tag. `None` (or `false` for the NULL-typed flags) means absent.
///
/// Integer-valued enumerations of KeyMint (purpose, algorithm, digest, padding, block mode,
/// EC curve, user auth type, ...) are kept as their numeric values, as the JSON does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationList {
    /// `purpose [1] SET OF INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_vec_opt")]
    pub purposes: Option<Vec<u64>>,
    /// `algorithm [2] INTEGER` (JSON `algorithms`).
    #[serde(
        rename = "algorithms",
        default,
        skip_serializing_if = "Option::is_none",
        with = "dec_opt"
    )]
    pub algorithm: Option<u64>,
    /// `keySize [3] INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub key_size: Option<u64>,
    /// `blockMode [4] SET OF INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_vec_opt")]
    pub block_modes: Option<Vec<u64>>,
    /// `digest [5] SET OF INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_vec_opt")]
    pub digests: Option<Vec<u64>>,
    /// `padding [6] SET OF INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_vec_opt")]
    pub paddings: Option<Vec<u64>>,
    /// `ecCurve [10] INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub ec_curve: Option<u64>,
    /// `mlDsaVariant [11] INTEGER` (KeyMint 5).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub ml_dsa_variant: Option<u64>,
    /// `rsaPublicExponent [200] INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub rsa_public_exponent: Option<u64>,
    /// `mgfDigest [203] SET OF INTEGER` (JSON `rsaOaepMgfDigests`).
    #[serde(
        rename = "rsaOaepMgfDigests",
        default,
        skip_serializing_if = "Option::is_none",
        with = "dec_vec_opt"
    )]
    pub mgf_digests: Option<Vec<u64>>,
    /// `rollbackResistance [303] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rollback_resistance: bool,
    /// `earlyBootOnly [305] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub early_boot_only: bool,
    /// `activeDateTime [400] INTEGER` (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub active_date_time: Option<u64>,
    /// `originationExpireDateTime [401] INTEGER` (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub origination_expire_date_time: Option<u64>,
    /// `usageExpireDateTime [402] INTEGER` (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub usage_expire_date_time: Option<u64>,
    /// `usageCountLimit [405] INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub usage_count_limit: Option<u64>,
    /// `noAuthRequired [503] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_auth_required: bool,
    /// `userAuthType [504] INTEGER` (bit mask of `HardwareAuthenticatorType`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub user_auth_type: Option<u64>,
    /// `authTimeout [505] INTEGER` (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub auth_timeout: Option<u64>,
    /// `allowWhileOnBody [506] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_while_on_body: bool,
    /// `trustedUserPresenceRequired [507] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trusted_user_presence_required: bool,
    /// `trustedConfirmationRequired [508] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trusted_confirmation_required: bool,
    /// `unlockedDeviceRequired [509] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unlocked_device_required: bool,
    /// `allApplications [600] NULL` (Keymaster 2/3 only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_applications: bool,
    /// `creationDateTime [701] INTEGER` (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub creation_date_time: Option<u64>,
    /// `origin [702] INTEGER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// `rollbackResistant [703] NULL` (Keymaster 2/3).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rollback_resistant: bool,
    /// `rootOfTrust [704] RootOfTrust`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_of_trust: Option<RootOfTrust>,
    /// `osVersion [705] INTEGER` (e.g. 140000 for Android 14).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub os_version: Option<u64>,
    /// `osPatchLevel [706] INTEGER` (YYYYMM).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub os_patch_level: Option<u64>,
    /// `attestationApplicationId [709] OCTET STRING`, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_application_id: Option<AttestationApplicationId>,
    /// `attestationIdBrand [710] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_brand: Option<String>,
    /// `attestationIdDevice [711] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_device: Option<String>,
    /// `attestationIdProduct [712] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_product: Option<String>,
    /// `attestationIdSerial [713] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_serial: Option<String>,
    /// `attestationIdImei [714] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_imei: Option<String>,
    /// `attestationIdMeid [715] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_meid: Option<String>,
    /// `attestationIdManufacturer [716] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_manufacturer: Option<String>,
    /// `attestationIdModel [717] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_model: Option<String>,
    /// `vendorPatchLevel [718] INTEGER` (YYYYMMDD).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub vendor_patch_level: Option<u64>,
    /// `bootPatchLevel [719] INTEGER` (YYYYMMDD, or YYYYMM on some devices).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "dec_opt")]
    pub boot_patch_level: Option<u64>,
    /// `deviceUniqueAttestation [720] NULL`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub device_unique_attestation: bool,
    /// `attestationIdSecondImei [723] OCTET STRING` (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id_second_imei: Option<String>,
    /// `moduleHash [724] OCTET STRING`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub module_hash: Option<Vec<u8>>,
}
