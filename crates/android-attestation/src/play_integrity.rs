//! Play Integrity verdicts: the decoded verdict JSON and the checks against one request.
//!
//! The app's backend receives the integrity token from the app, has Google decrypt and verify
//! it (`decodeIntegrityToken`), and gets back a plain JSON payload with the sections
//! `requestDetails`, `appIntegrity`, `deviceIntegrity`, `accountDetails` and
//! `environmentDetails` (format: <https://developer.android.com/google/play/integrity/verdicts>).
//! This module is pure (no I/O, no clock): [`PlayIntegrityVerdict::from_json`] parses that
//! payload and [`check`] compares it with what the service expected, returning one
//! [`Finding`] per failed check. An empty list means every check passed. Whether a finding
//! blocks the request or only flags it is **not** decided here: the service decides per
//! tenant rule.
//!
//! Parsing is lenient where Google may change things and strict where the value matters:
//! unknown fields are ignored, every section and field is optional (Google omits some, e.g.
//! the app details of an `UNEVALUATED` app), enum values this crate does not know are kept as
//! `Other(String)`; but integers (`timestampMillis`, `versionCode`, `sdkVersion`) must be
//! decimal integers (as a string, protobuf's JSON form of int64, or as a number), the top
//! level must be an object and the input at most [`MAX_VERDICT_LEN`] bytes.

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use subtle::ConstantTimeEq as _;
use thiserror::Error;

/// The largest verdict payload [`PlayIntegrityVerdict::from_json`] accepts, in bytes (a real
/// verdict is well under 2 KiB).
pub const MAX_VERDICT_LEN: usize = 64 * 1024;

/// How far in the future a verdict's `timestampMillis` may be before [`check`] reports
/// [`ReasonCode::FromTheFuture`]: 60 seconds. The timestamp is set by Google's servers, so this
/// only absorbs the difference between Google's clock and ours (both NTP-synchronised), with
/// a wide margin.
pub const MAX_CLOCK_SKEW_MILLIS: u64 = 60_000;

/// Why a verdict payload could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlayIntegrityError {
    /// The payload is larger than [`MAX_VERDICT_LEN`].
    #[error("Play Integrity verdict: {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit, [`MAX_VERDICT_LEN`].
        max: usize,
    },
    /// The payload is not a JSON object of the verdict's shape (invalid JSON, not an object,
    /// a field of the wrong type, an integer field that is not a decimal integer).
    #[error("Play Integrity verdict: {0}")]
    Json(String),
}

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(from = "String")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this crate does not know (kept so that a new Google value does not
            /// make the whole verdict unreadable).
            Other(String),
        }

        impl $name {
            /// The value as it appears in the verdict JSON.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Other(other) => other,
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match value.as_str() {
                    $( $text => Self::$variant, )+
                    _ => Self::Other(value),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// `appIntegrity.appRecognitionVerdict`.
    AppRecognitionVerdict {
        /// The app and certificate match a version Google Play distributes.
        PlayRecognized = "PLAY_RECOGNIZED",
        /// The certificate or package name is not one Google Play knows.
        UnrecognizedVersion = "UNRECOGNIZED_VERSION",
        /// Not evaluated (a requirement was missed, e.g. the device is not trustworthy enough).
        Unevaluated = "UNEVALUATED",
    }
}

string_enum! {
    /// A label of `deviceIntegrity.deviceRecognitionVerdict`.
    DeviceLabel {
        /// A genuine, certified Android device with Google Play services.
        MeetsDeviceIntegrity = "MEETS_DEVICE_INTEGRITY",
        /// Passes basic system integrity checks (possibly not certified, unlocked bootloader).
        MeetsBasicIntegrity = "MEETS_BASIC_INTEGRITY",
        /// Device integrity plus hardware-backed proof of boot integrity (and, in the newer
        /// verdicts, a recent security update).
        MeetsStrongIntegrity = "MEETS_STRONG_INTEGRITY",
        /// An Android emulator with Google Play services (Google Play Games for PC).
        MeetsVirtualIntegrity = "MEETS_VIRTUAL_INTEGRITY",
    }
}

string_enum! {
    /// `accountDetails.appLicensingVerdict`.
    LicensingVerdict {
        /// The user has an app entitlement (installed or bought it from Google Play).
        Licensed = "LICENSED",
        /// The user has no entitlement.
        Unlicensed = "UNLICENSED",
        /// Not evaluated.
        Unevaluated = "UNEVALUATED",
    }
}

string_enum! {
    /// `deviceIntegrity.recentDeviceActivity.deviceActivityLevel`: how many tokens the device
    /// requested in the last hour, by level.
    DeviceActivityLevel {
        /// The lowest level.
        Level1 = "LEVEL_1",
        /// Level 2.
        Level2 = "LEVEL_2",
        /// Level 3.
        Level3 = "LEVEL_3",
        /// The highest level.
        Level4 = "LEVEL_4",
        /// Not evaluated.
        Unevaluated = "UNEVALUATED",
    }
}

string_enum! {
    /// `environmentDetails.playProtectVerdict`.
    PlayProtectVerdict {
        /// Play Protect is on and found no app risk.
        NoIssues = "NO_ISSUES",
        /// Play Protect is on but has not scanned yet (no data).
        NoData = "NO_DATA",
        /// Play Protect is off.
        PossibleRisk = "POSSIBLE_RISK",
        /// Play Protect found potentially harmful apps.
        MediumRisk = "MEDIUM_RISK",
        /// Play Protect found dangerous apps.
        HighRisk = "HIGH_RISK",
        /// Not evaluated.
        Unevaluated = "UNEVALUATED",
    }
}

string_enum! {
    /// An entry of `environmentDetails.appAccessRiskVerdict.appsDetected`.
    AppsDetected {
        /// Apps installed by Google Play or preloaded.
        KnownInstalled = "KNOWN_INSTALLED",
        /// Play or system apps that can capture the screen.
        KnownCapturing = "KNOWN_CAPTURING",
        /// Play or system apps that can draw overlays.
        KnownOverlays = "KNOWN_OVERLAYS",
        /// Play or system apps that can control the device.
        KnownControlling = "KNOWN_CONTROLLING",
        /// Other apps installed.
        UnknownInstalled = "UNKNOWN_INSTALLED",
        /// Other apps that can capture the screen.
        UnknownCapturing = "UNKNOWN_CAPTURING",
        /// Other apps that can draw overlays.
        UnknownOverlays = "UNKNOWN_OVERLAYS",
        /// Other apps that can control the device.
        UnknownControlling = "UNKNOWN_CONTROLLING",
    }
}

/// A decoded Play Integrity verdict payload. Every section is optional: Google may omit them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayIntegrityVerdict {
    /// `requestDetails`: what the verdict was requested for.
    #[serde(default)]
    pub request_details: Option<RequestDetails>,
    /// `appIntegrity`: the app binary.
    #[serde(default)]
    pub app_integrity: Option<AppIntegrity>,
    /// `deviceIntegrity`: the device.
    #[serde(default)]
    pub device_integrity: Option<DeviceIntegrity>,
    /// `accountDetails`: the user's licence.
    #[serde(default)]
    pub account_details: Option<AccountDetails>,
    /// `environmentDetails`: Play Protect and app access risk (parsed, not checked here).
    #[serde(default)]
    pub environment_details: Option<EnvironmentDetails>,
}

/// `requestDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestDetails {
    /// `requestPackageName`: the package the verdict was requested for.
    #[serde(default)]
    pub request_package_name: Option<String>,
    /// `requestHash`: the developer's request hash (standard requests).
    #[serde(default)]
    pub request_hash: Option<String>,
    /// `nonce`: the developer's nonce (classic requests).
    #[serde(default)]
    pub nonce: Option<String>,
    /// `timestampMillis`: when the verdict was made, Unix milliseconds.
    #[serde(default, deserialize_with = "opt_u64")]
    pub timestamp_millis: Option<u64>,
}

/// `appIntegrity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppIntegrity {
    /// `appRecognitionVerdict`.
    #[serde(default)]
    pub app_recognition_verdict: Option<AppRecognitionVerdict>,
    /// `packageName`: the attested app's package (absent when `UNEVALUATED`).
    #[serde(default)]
    pub package_name: Option<String>,
    /// `certificateSha256Digest`: the SHA-256 digests of the app's signing certificates,
    /// base64url without padding (absent when `UNEVALUATED`).
    #[serde(default)]
    pub certificate_sha256_digest: Option<Vec<String>>,
    /// `versionCode` (absent when `UNEVALUATED`).
    #[serde(default, deserialize_with = "opt_u64")]
    pub version_code: Option<u64>,
}

/// `deviceIntegrity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIntegrity {
    /// `deviceRecognitionVerdict`: the labels the device meets (absent or empty: none).
    #[serde(default)]
    pub device_recognition_verdict: Option<Vec<DeviceLabel>>,
    /// `recentDeviceActivity` (opt-in).
    #[serde(default)]
    pub recent_device_activity: Option<RecentDeviceActivity>,
    /// `deviceAttributes` (opt-in).
    #[serde(default)]
    pub device_attributes: Option<DeviceAttributes>,
}

impl DeviceIntegrity {
    /// The labels of `deviceRecognitionVerdict` (empty when absent).
    pub fn labels(&self) -> &[DeviceLabel] {
        self.device_recognition_verdict.as_deref().unwrap_or(&[])
    }
}

/// `deviceIntegrity.recentDeviceActivity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentDeviceActivity {
    /// `deviceActivityLevel`.
    #[serde(default)]
    pub device_activity_level: Option<DeviceActivityLevel>,
}

/// `deviceIntegrity.deviceAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAttributes {
    /// `sdkVersion`: the device's Android SDK level.
    #[serde(default, deserialize_with = "opt_u64")]
    pub sdk_version: Option<u64>,
}

/// `accountDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetails {
    /// `appLicensingVerdict`.
    #[serde(default)]
    pub app_licensing_verdict: Option<LicensingVerdict>,
}

/// `environmentDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentDetails {
    /// `playProtectVerdict`.
    #[serde(default)]
    pub play_protect_verdict: Option<PlayProtectVerdict>,
    /// `appAccessRiskVerdict`.
    #[serde(default)]
    pub app_access_risk_verdict: Option<AppAccessRiskVerdict>,
}

/// `environmentDetails.appAccessRiskVerdict`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppAccessRiskVerdict {
    /// `appsDetected`.
    #[serde(default)]
    pub apps_detected: Option<Vec<AppsDetected>>,
}

/// An integer given as a decimal string (protobuf's JSON form of int64) or as a JSON number.
fn opt_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(text)) => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(D::Error::custom("expected a decimal integer"));
            }
            text.parse()
                .map(Some)
                .map_err(|_| D::Error::custom("integer out of range"))
        }
    }
}

impl PlayIntegrityVerdict {
    /// Parses a decoded verdict payload (the JSON `decodeIntegrityToken` returns as
    /// `tokenPayloadExternal`, or the decrypted and verified JWS payload). At most
    /// [`MAX_VERDICT_LEN`] bytes; the top level must be a JSON object.
    pub fn from_json(json: &[u8]) -> Result<Self, PlayIntegrityError> {
        if json.len() > MAX_VERDICT_LEN {
            return Err(PlayIntegrityError::TooLarge {
                len: json.len(),
                max: MAX_VERDICT_LEN,
            });
        }
        // serde's derived struct visitor also accepts a JSON array; a verdict is an object.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(PlayIntegrityError::Json("not a JSON object".to_owned()));
        }
        serde_json::from_slice(json).map_err(|e| PlayIntegrityError::Json(e.to_string()))
    }
}

/// The request hash (standard requests) or nonce (classic requests) the service expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `requestDetails.requestHash` must equal this (standard requests).
    RequestHash(String),
    /// `requestDetails.nonce` must equal this (classic requests), exactly as the app sent it.
    Nonce(String),
}

/// What the service expects of a verdict, for [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// The app's package name (`requestDetails.requestPackageName`, and
    /// `appIntegrity.packageName` when present).
    pub package_name: String,
    /// The request hash or nonce the service issued or computed; compared in constant time.
    pub request_hash_or_nonce: Expected,
    /// The current time, Unix milliseconds.
    pub now_millis: u64,
    /// The oldest verdict accepted: `timestampMillis` older than `now_millis - max_age_millis`
    /// is [`ReasonCode::Stale`].
    pub max_age_millis: u64,
    /// The SHA-256 digests of the app's signing certificates, base64url (padding optional).
    /// Every digest in the verdict must be one of these; an empty list accepts none.
    pub allowed_certificate_digests: Vec<String>,
    /// Require `appRecognitionVerdict` `PLAY_RECOGNIZED`.
    pub require_play_recognized: bool,
    /// Device labels that must all be present in `deviceRecognitionVerdict`.
    pub required_device_labels: Vec<DeviceLabel>,
    /// Require `appLicensingVerdict` `LICENSED`.
    pub require_licensed: bool,
}

/// The stable reason code of a [`Finding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonCode {
    /// `PI_PACKAGE_MISMATCH`: `requestPackageName` or `appIntegrity.packageName` is not the
    /// expected package (or `requestPackageName` is absent).
    PackageMismatch,
    /// `PI_REQUEST_HASH_MISMATCH`: `requestHash` absent or not the expected one.
    RequestHashMismatch,
    /// `PI_NONCE_MISMATCH`: `nonce` absent or not the expected one.
    NonceMismatch,
    /// `PI_STALE`: `timestampMillis` is older than the maximum age.
    Stale,
    /// `PI_FROM_THE_FUTURE`: `timestampMillis` is more than [`MAX_CLOCK_SKEW_MILLIS`] ahead.
    FromTheFuture,
    /// `PI_APP_NOT_RECOGNIZED`: `appRecognitionVerdict` is not `PLAY_RECOGNIZED` (when
    /// required).
    AppNotRecognized,
    /// `PI_CERTIFICATE_UNKNOWN`: no certificate digest, or one not in the allow-list.
    CertificateUnknown,
    /// `PI_DEVICE_INTEGRITY_MISSING`: a required device label is missing (one finding per
    /// label, the detail names it).
    DeviceIntegrityMissing,
    /// `PI_UNLICENSED`: `appLicensingVerdict` is not `LICENSED` (when required).
    Unlicensed,
    /// `PI_SECTION_MISSING`: a section or field a check needs is absent (the detail names it).
    SectionMissing,
}

impl ReasonCode {
    /// The stable code, e.g. `PI_STALE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PackageMismatch => "PI_PACKAGE_MISMATCH",
            Self::RequestHashMismatch => "PI_REQUEST_HASH_MISMATCH",
            Self::NonceMismatch => "PI_NONCE_MISMATCH",
            Self::Stale => "PI_STALE",
            Self::FromTheFuture => "PI_FROM_THE_FUTURE",
            Self::AppNotRecognized => "PI_APP_NOT_RECOGNIZED",
            Self::CertificateUnknown => "PI_CERTIFICATE_UNKNOWN",
            Self::DeviceIntegrityMissing => "PI_DEVICE_INTEGRITY_MISSING",
            Self::Unlicensed => "PI_UNLICENSED",
            Self::SectionMissing => "PI_SECTION_MISSING",
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed check: a stable [`ReasonCode`] and a human-readable detail. The detail never
/// holds a whole request hash or nonce (at most a short prefix); values taken from the
/// verdict are quoted and truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The reason code.
    pub code: ReasonCode,
    /// What was found, for logs and operators.
    pub detail: String,
}

impl Finding {
    fn new(code: ReasonCode, detail: String) -> Self {
        Self { code, detail }
    }
}

/// At most 6 characters and at most half of a secret-ish value, followed by `…`.
fn prefix(value: &str) -> String {
    let count = value.chars().count();
    let shown: String = value.chars().take((count / 2).min(6)).collect();
    format!("{shown:?}…")
}

/// A value from the verdict, quoted and cut to 64 characters, for a detail.
fn quoted(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn ct_equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn section_missing(name: &str) -> Finding {
    Finding::new(ReasonCode::SectionMissing, format!("{name} is absent"))
}

/// Checks a verdict against what the service expected; one [`Finding`] per failed check, an
/// empty list when every check passed. Pure: the time is `expectations.now_millis`.
///
/// Checks: `requestDetails` (package, request hash or nonce in constant time, timestamp
/// neither older than `max_age_millis` nor more than [`MAX_CLOCK_SKEW_MILLIS`] ahead);
/// `appIntegrity` (recognition when required, `packageName` when present, every certificate
/// digest allow-listed); `deviceIntegrity` when labels are required (one finding per missing
/// label); `accountDetails` when a licence is required. A section a check needs that is absent
/// gives one [`ReasonCode::SectionMissing`] naming it, instead of that section's findings.
/// `environmentDetails` is parsed but not checked. Deciding what a finding means (block or
/// flag) is the service's, per tenant rule.
pub fn check(verdict: &PlayIntegrityVerdict, expectations: &Expectations) -> Vec<Finding> {
    let mut findings = Vec::new();
    check_request(verdict, expectations, &mut findings);
    check_app(verdict, expectations, &mut findings);
    check_device(verdict, expectations, &mut findings);
    check_account(verdict, expectations, &mut findings);
    findings
}

fn check_request(verdict: &PlayIntegrityVerdict, exp: &Expectations, out: &mut Vec<Finding>) {
    let Some(request) = &verdict.request_details else {
        out.push(section_missing("requestDetails"));
        return;
    };
    match &request.request_package_name {
        Some(name) if *name == exp.package_name => {}
        Some(name) => out.push(Finding::new(
            ReasonCode::PackageMismatch,
            format!(
                "requestDetails.requestPackageName is {}, expected {}",
                quoted(name),
                quoted(&exp.package_name)
            ),
        )),
        None => out.push(Finding::new(
            ReasonCode::PackageMismatch,
            "requestDetails.requestPackageName is absent".to_owned(),
        )),
    }
    let (code, field, got, expected) = match &exp.request_hash_or_nonce {
        Expected::RequestHash(h) => (
            ReasonCode::RequestHashMismatch,
            "requestHash",
            &request.request_hash,
            h,
        ),
        Expected::Nonce(n) => (ReasonCode::NonceMismatch, "nonce", &request.nonce, n),
    };
    match got {
        Some(got) if ct_equal(got, expected) => {}
        Some(got) => out.push(Finding::new(
            code,
            format!(
                "requestDetails.{field} does not match: got {}, expected {}",
                prefix(got),
                prefix(expected)
            ),
        )),
        None => out.push(Finding::new(
            code,
            format!("requestDetails.{field} is absent"),
        )),
    }
    match request.timestamp_millis {
        None => out.push(section_missing("requestDetails.timestampMillis")),
        Some(ts) if ts > exp.now_millis.saturating_add(MAX_CLOCK_SKEW_MILLIS) => {
            out.push(Finding::new(
                ReasonCode::FromTheFuture,
                format!(
                    "requestDetails.timestampMillis {ts} is {} ms ahead of now ({}); at most {MAX_CLOCK_SKEW_MILLIS} ms allowed",
                    ts - exp.now_millis,
                    exp.now_millis
                ),
            ))
        }
        Some(ts) if exp.now_millis.saturating_sub(ts) > exp.max_age_millis => {
            out.push(Finding::new(
                ReasonCode::Stale,
                format!(
                    "requestDetails.timestampMillis {ts} is {} ms old; at most {} ms allowed",
                    exp.now_millis - ts,
                    exp.max_age_millis
                ),
            ))
        }
        Some(_) => {}
    }
}

/// A base64url digest without its padding, for comparison.
fn unpadded(digest: &str) -> &str {
    digest.trim_end_matches('=')
}

fn check_app(verdict: &PlayIntegrityVerdict, exp: &Expectations, out: &mut Vec<Finding>) {
    let Some(app) = &verdict.app_integrity else {
        out.push(section_missing("appIntegrity"));
        return;
    };
    if exp.require_play_recognized
        && app.app_recognition_verdict != Some(AppRecognitionVerdict::PlayRecognized)
    {
        let got = app
            .app_recognition_verdict
            .as_ref()
            .map_or_else(|| "absent".to_owned(), |v| quoted(v.as_str()));
        out.push(Finding::new(
            ReasonCode::AppNotRecognized,
            format!("appIntegrity.appRecognitionVerdict is {got}, PLAY_RECOGNIZED required"),
        ));
    }
    if let Some(name) = &app.package_name
        && *name != exp.package_name
    {
        out.push(Finding::new(
            ReasonCode::PackageMismatch,
            format!(
                "appIntegrity.packageName is {}, expected {}",
                quoted(name),
                quoted(&exp.package_name)
            ),
        ));
    }
    let digests = app.certificate_sha256_digest.as_deref().unwrap_or(&[]);
    if digests.is_empty() {
        out.push(Finding::new(
            ReasonCode::CertificateUnknown,
            "appIntegrity.certificateSha256Digest is absent or empty".to_owned(),
        ));
    } else if let Some(unknown) = digests.iter().find(|d| {
        !exp.allowed_certificate_digests
            .iter()
            .any(|a| unpadded(a) == unpadded(d))
    }) {
        out.push(Finding::new(
            ReasonCode::CertificateUnknown,
            format!(
                "appIntegrity.certificateSha256Digest {} is not allowed",
                quoted(unknown)
            ),
        ));
    }
}

fn check_device(verdict: &PlayIntegrityVerdict, exp: &Expectations, out: &mut Vec<Finding>) {
    if exp.required_device_labels.is_empty() {
        return;
    }
    let Some(device) = &verdict.device_integrity else {
        out.push(section_missing("deviceIntegrity"));
        return;
    };
    for label in &exp.required_device_labels {
        if !device.labels().contains(label) {
            out.push(Finding::new(
                ReasonCode::DeviceIntegrityMissing,
                format!(
                    "deviceIntegrity.deviceRecognitionVerdict lacks {}",
                    quoted(label.as_str())
                ),
            ));
        }
    }
}

fn check_account(verdict: &PlayIntegrityVerdict, exp: &Expectations, out: &mut Vec<Finding>) {
    if !exp.require_licensed {
        return;
    }
    let Some(account) = &verdict.account_details else {
        out.push(section_missing("accountDetails"));
        return;
    };
    if account.app_licensing_verdict != Some(LicensingVerdict::Licensed) {
        let got = account
            .app_licensing_verdict
            .as_ref()
            .map_or_else(|| "absent".to_owned(), |v| quoted(v.as_str()));
        out.push(Finding::new(
            ReasonCode::Unlicensed,
            format!("accountDetails.appLicensingVerdict is {got}, LICENSED required"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_never_shows_the_whole_value() {
        for value in ["", "a", "ab", "abcdef", "aGVsbG8gd29scmQgdGhlcmU"] {
            let shown = prefix(value);
            assert!(value.is_empty() || !shown.contains(value), "{shown}");
        }
        assert_eq!(prefix("aGVsbG8gd29scmQgdGhlcmU"), "\"aGVsbG\"…");
    }

    #[test]
    fn opt_u64_rejects_signs_and_blanks() {
        for bad in [
            r#""+5""#, r#""-5""#, r#""""#, r#"" 5""#, r#""1e3""#, "-5", "1.5",
        ] {
            let json = format!(r#"{{"requestDetails":{{"timestampMillis":{bad}}}}}"#);
            assert!(
                PlayIntegrityVerdict::from_json(json.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }
}
