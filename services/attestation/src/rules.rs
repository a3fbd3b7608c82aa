//! The policy rules: every reason code with its default action and advice, a tenant policy's
//! validation and defaults, and [`judge`], which turns what the evidence showed (an
//! [`pb::EvidenceSummary`]) and a policy into findings and a verdict. Pure: no I/O, the time
//! is an argument, so a policy change re-runs the same function over a device's last
//! evidence.

use mpos_proto::attestation as pb;

/// A reason code, its default action, whether a tenant may change that action, and advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    /// The stable code, e.g. `OS_VERSION_TOO_OLD`.
    pub code: &'static str,
    /// What it does unless the tenant's policy says otherwise.
    pub default: pb::RuleAction,
    /// Invalid evidence always blocks: a tenant cannot soften it.
    pub fixed: bool,
    /// What the device's owner can do about it.
    pub advice: &'static str,
}

const fn reason(code: &'static str, default: pb::RuleAction, advice: &'static str) -> Reason {
    Reason {
        code,
        default,
        fixed: false,
        advice,
    }
}

const fn invalid(code: &'static str, advice: &'static str) -> Reason {
    Reason {
        code,
        default: pb::RuleAction::Block,
        fixed: true,
        advice,
    }
}

use pb::RuleAction::{Block, Flag};

/// The key attestation chain did not verify (signature, root, validity, revocation, a
/// forged or misplaced extension, an unparsable description).
pub const KA_CHAIN_INVALID: Reason = invalid(
    "KA_CHAIN_INVALID",
    "the device's key attestation is not trustworthy: reinstall the app and attest again; if it persists, the device cannot take payments",
);
/// The attested key was not generated for the challenge presented.
pub const KA_CHALLENGE_MISMATCH: Reason = invalid(
    "KA_CHALLENGE_MISMATCH",
    "request a new challenge and attest with a key generated for it",
);
/// The revocation status list could not be refreshed for longer than allowed.
pub const KA_STATUS_LIST_STALE: Reason = reason(
    "KA_STATUS_LIST_STALE",
    Flag,
    "nothing on the device: the platform could not refresh the attestation revocation list",
);
/// The key lives in software, or in a TEE where StrongBox is required.
pub const SECURITY_LEVEL_TOO_LOW: Reason = reason(
    "SECURITY_LEVEL_TOO_LOW",
    Block,
    "use a device with a hardware-backed keystore (TEE, or StrongBox where required)",
);
/// The verified boot state is not VERIFIED.
pub const VERIFIED_BOOT_FAILED: Reason = reason(
    "VERIFIED_BOOT_FAILED",
    Block,
    "restore the manufacturer's firmware: the device does not boot a verified system",
);
/// The bootloader is unlocked.
pub const BOOTLOADER_UNLOCKED: Reason =
    reason("BOOTLOADER_UNLOCKED", Block, "lock the device's bootloader");
/// Android is older than the policy's minimum.
pub const OS_VERSION_TOO_OLD: Reason = reason(
    "OS_VERSION_TOO_OLD",
    Block,
    "update Android to the version the provider requires",
);
/// The security patch level is older than the policy's minimum.
pub const PATCH_LEVEL_TOO_OLD: Reason = reason(
    "PATCH_LEVEL_TOO_OLD",
    Flag,
    "install the latest Android security update",
);
/// The SoftPOS SDK in the app is older than the policy's minimum.
pub const SDK_VERSION_TOO_OLD: Reason =
    reason("SDK_VERSION_TOO_OLD", Block, "update the payment app");
/// The app is older than the policy's minimum.
pub const APP_VERSION_TOO_OLD: Reason =
    reason("APP_VERSION_TOO_OLD", Block, "update the payment app");
/// The attesting app's package is not allowed.
pub const PACKAGE_NOT_ALLOWED: Reason = reason(
    "PACKAGE_NOT_ALLOWED",
    Block,
    "install the provider's payment app from its official store",
);
/// The app is signed with a certificate that is not allowed.
pub const SIGNING_CERTIFICATE_NOT_ALLOWED: Reason = reason(
    "SIGNING_CERTIFICATE_NOT_ALLOWED",
    Block,
    "install the provider's payment app from its official store",
);
/// The SDK reports a rooted device.
pub const SIGNAL_ROOTED: Reason = reason(
    "SIGNAL_ROOTED",
    Block,
    "remove root access or use another device",
);
/// The SDK reports an emulator.
pub const SIGNAL_EMULATOR: Reason = reason(
    "SIGNAL_EMULATOR",
    Block,
    "payments are taken on a real phone only",
);
/// The SDK reports a debugger attached.
pub const SIGNAL_DEBUGGER: Reason = reason(
    "SIGNAL_DEBUGGER",
    Block,
    "disconnect the debugger and disable USB debugging",
);
/// The SDK reports a hooking framework (Frida, Xposed…).
pub const SIGNAL_HOOKING_FRAMEWORK: Reason = reason(
    "SIGNAL_HOOKING_FRAMEWORK",
    Block,
    "remove the hooking framework or use another device",
);
/// The SDK reports a tampered app.
pub const SIGNAL_APP_TAMPERED: Reason = reason(
    "SIGNAL_APP_TAMPERED",
    Block,
    "reinstall the payment app from its official store",
);
/// The Play Integrity verdict could not be read.
pub const PI_INVALID: Reason = invalid(
    "PI_INVALID",
    "attest again with a fresh Play Integrity verdict",
);
/// A Play Integrity verdict was due and none came.
pub const PI_DUE: Reason = reason(
    "PI_DUE",
    Flag,
    "attest again when the app asks for a Play Integrity verdict",
);
/// Play Integrity does not see the device labels the policy requires.
pub const PI_DEVICE_INTEGRITY_MISSING: Reason = reason(
    "PI_DEVICE_INTEGRITY_MISSING",
    Block,
    "use a device that passes Google Play's device integrity checks",
);
/// The device did not re-attest within its interval.
pub const REATTESTATION_MISSED: Reason = reason(
    "REATTESTATION_MISSED",
    Block,
    "open the payment app so that it attests again",
);

/// Play Integrity's own checks (`android_attestation::play_integrity::ReasonCode`): the
/// mismatches say the verdict is not for this request, so they are invalid evidence.
const PLAY_INTEGRITY: [Reason; 10] = [
    invalid(
        "PI_PACKAGE_MISMATCH",
        "attest again from the provider's payment app",
    ),
    invalid(
        "PI_REQUEST_HASH_MISMATCH",
        "attest again with a fresh Play Integrity verdict",
    ),
    invalid(
        "PI_NONCE_MISMATCH",
        "attest again with a fresh Play Integrity verdict",
    ),
    reason(
        "PI_STALE",
        Block,
        "attest again with a fresh Play Integrity verdict",
    ),
    reason(
        "PI_FROM_THE_FUTURE",
        Block,
        "set the device's clock automatically",
    ),
    reason(
        "PI_APP_NOT_RECOGNIZED",
        Block,
        "install the payment app from Google Play",
    ),
    reason(
        "PI_CERTIFICATE_UNKNOWN",
        Block,
        "install the payment app from Google Play",
    ),
    reason(
        "PI_DEVICE_INTEGRITY_MISSING",
        Block,
        "use a device that passes Google Play's device integrity checks",
    ),
    reason(
        "PI_UNLICENSED",
        Flag,
        "install the payment app from Google Play",
    ),
    reason(
        "PI_SECTION_MISSING",
        Block,
        "attest again with a fresh Play Integrity verdict",
    ),
];

/// Every reason code the service gives, in the order of docs/attestation.md.
pub fn all() -> Vec<Reason> {
    let mut all = vec![
        KA_CHAIN_INVALID,
        KA_CHALLENGE_MISMATCH,
        KA_STATUS_LIST_STALE,
        SECURITY_LEVEL_TOO_LOW,
        VERIFIED_BOOT_FAILED,
        BOOTLOADER_UNLOCKED,
        OS_VERSION_TOO_OLD,
        PATCH_LEVEL_TOO_OLD,
        SDK_VERSION_TOO_OLD,
        APP_VERSION_TOO_OLD,
        PACKAGE_NOT_ALLOWED,
        SIGNING_CERTIFICATE_NOT_ALLOWED,
        SIGNAL_ROOTED,
        SIGNAL_EMULATOR,
        SIGNAL_DEBUGGER,
        SIGNAL_HOOKING_FRAMEWORK,
        SIGNAL_APP_TAMPERED,
        PI_INVALID,
        PI_DUE,
        REATTESTATION_MISSED,
    ];
    all.extend(PLAY_INTEGRITY);
    all
}

/// The reason with this code, if the service knows it.
pub fn lookup(code: &str) -> Option<Reason> {
    all().into_iter().find(|reason| reason.code == code)
}

/// Defaults of a policy's zero values.
pub mod defaults {
    /// Re-attestation interval: 24 hours.
    pub const REATTESTATION_INTERVAL_S: u64 = 24 * 3_600;
    /// Oldest Play Integrity verdict accepted: 5 minutes.
    pub const PLAY_INTEGRITY_MAX_AGE_S: u64 = 300;
    /// Verdict and token validity: 15 minutes.
    pub const VERDICT_VALIDITY_S: u64 = 900;
    /// Play Integrity calls per app and day (Google's default quota).
    pub const PLAY_INTEGRITY_DAILY_QUOTA: u32 = 10_000;
}

/// A policy with its zero values resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective<'a> {
    /// The policy as published.
    pub policy: &'a pb::Policy,
    /// Re-attestation interval, seconds.
    pub reattestation_interval_s: u64,
    /// Oldest Play Integrity verdict accepted, seconds.
    pub play_integrity_max_age_s: u64,
    /// Verdict validity, seconds (never past the re-attestation deadline).
    pub verdict_validity_s: u64,
    /// Play Integrity calls per day.
    pub play_integrity_daily_quota: u32,
}

impl<'a> Effective<'a> {
    /// Resolves `policy`'s zero values.
    pub fn of(policy: &'a pb::Policy) -> Self {
        let or = |value: u64, default: u64| if value == 0 { default } else { value };
        let reattestation_interval_s = or(
            policy.reattestation_interval_seconds,
            defaults::REATTESTATION_INTERVAL_S,
        );
        Self {
            policy,
            reattestation_interval_s,
            play_integrity_max_age_s: or(
                policy.play_integrity_max_age_seconds,
                defaults::PLAY_INTEGRITY_MAX_AGE_S,
            ),
            verdict_validity_s: or(
                policy.verdict_validity_seconds,
                defaults::VERDICT_VALIDITY_S,
            )
            .min(reattestation_interval_s),
            play_integrity_daily_quota: if policy.play_integrity_daily_quota == 0 {
                defaults::PLAY_INTEGRITY_DAILY_QUOTA
            } else {
                policy.play_integrity_daily_quota
            },
        }
    }

    /// What `reason` does under this policy.
    pub fn action(&self, reason: &Reason) -> pb::RuleAction {
        if reason.fixed {
            return pb::RuleAction::Block;
        }
        match self
            .policy
            .actions
            .get(reason.code)
            .and_then(|value| pb::RuleAction::try_from(*value).ok())
        {
            None | Some(pb::RuleAction::Unspecified) => reason.default,
            Some(action) => action,
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn dotted(field: &str, value: &str) -> Result<(), PolicyError> {
    if value.is_empty() || parse_dotted(value).is_some() {
        Ok(())
    } else {
        Err(PolicyError(format!(
            "{field}: a dotted version of up to 4 numbers, e.g. \"1.4.0\""
        )))
    }
}

/// A dotted version (`1.4.0`, at most 4 numbers) as numbers, padded to 4 for comparison.
pub fn parse_dotted(value: &str) -> Option<[u32; 4]> {
    let mut parts = [0_u32; 4];
    for (index, part) in value.split('.').enumerate() {
        let slot = parts.get_mut(index)?;
        if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    Some(parts)
}

/// Checks a policy a tenant wants to publish: every field in range, every action on a known
/// code, no fixed code softened.
pub fn validate(policy: &pb::Policy) -> Result<(), PolicyError> {
    if policy.min_os_version > 990_000 {
        return Err(PolicyError(
            "min_os_version: KeyMint encoding, e.g. 140000 for Android 14".into(),
        ));
    }
    if policy.min_patch_level != 0 && !valid_yyyymm(policy.min_patch_level) {
        return Err(PolicyError("min_patch_level: YYYYMM, e.g. 202601".into()));
    }
    dotted("min_sdk_version", &policy.min_sdk_version)?;
    for package in &policy.allowed_packages {
        let valid = (1..=255).contains(&package.len())
            && package
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'));
        if !valid {
            return Err(PolicyError(
                "allowed_packages: Android package names (letters, digits, '.', '_')".into(),
            ));
        }
    }
    for digest in &policy.allowed_signing_digests {
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(PolicyError(
                "allowed_signing_digests: SHA-256 digests as 64 lowercase hexadecimal digits"
                    .into(),
            ));
        }
    }
    if pb::RequiredSecurityLevel::try_from(policy.required_security_level).is_err() {
        return Err(PolicyError("required_security_level: unknown value".into()));
    }
    let day = 86_400;
    let within = |field: &str, value: u64, min: u64, max: u64| {
        if value == 0 || (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(PolicyError(format!(
                "{field}: 0 (the default) or {min} to {max} seconds"
            )))
        }
    };
    within(
        "reattestation_interval_seconds",
        policy.reattestation_interval_seconds,
        60,
        30 * day,
    )?;
    within(
        "play_integrity_interval_seconds",
        policy.play_integrity_interval_seconds,
        300,
        30 * day,
    )?;
    within(
        "play_integrity_max_age_seconds",
        policy.play_integrity_max_age_seconds,
        10,
        day,
    )?;
    within(
        "verdict_validity_seconds",
        policy.verdict_validity_seconds,
        30,
        day,
    )?;
    for label in &policy.required_device_labels {
        if !matches!(
            label.as_str(),
            "MEETS_BASIC_INTEGRITY"
                | "MEETS_DEVICE_INTEGRITY"
                | "MEETS_STRONG_INTEGRITY"
                | "MEETS_VIRTUAL_INTEGRITY"
        ) {
            return Err(PolicyError(format!(
                "required_device_labels: {:?} is not a Play Integrity device label",
                label.chars().take(40).collect::<String>()
            )));
        }
    }
    for (code, action) in &policy.actions {
        let Some(reason) = lookup(code) else {
            return Err(PolicyError(format!(
                "actions: {:?} is not a reason code",
                code.chars().take(40).collect::<String>()
            )));
        };
        let action = pb::RuleAction::try_from(*action)
            .map_err(|_| PolicyError(format!("actions.{code}: unknown action")))?;
        if reason.fixed && !matches!(action, pb::RuleAction::Block | pb::RuleAction::Unspecified) {
            return Err(PolicyError(format!(
                "actions.{code}: invalid evidence always blocks"
            )));
        }
    }
    Ok(())
}

fn valid_yyyymm(value: u32) -> bool {
    let (year, month) = (value / 100, value % 100);
    (2000..=2100).contains(&year) && (1..=12).contains(&month)
}

/// What [`judge`] needs besides the evidence and the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// Now, Unix seconds.
    pub now_s: i64,
    /// When the device last sent a Play Integrity verdict that passed (Unix seconds; 0:
    /// never).
    pub last_play_integrity_s: i64,
    /// The device missed its re-attestation (monitoring).
    pub reattestation_missed: bool,
}

fn finding(reason: &Reason, detail: String, action: pb::RuleAction) -> pb::Finding {
    pb::Finding {
        code: reason.code.to_owned(),
        detail,
        action: action.into(),
        advice: reason.advice.to_owned(),
    }
}

fn rank(action: pb::RuleAction) -> u8 {
    match action {
        pb::RuleAction::Block => 2,
        pb::RuleAction::Flag => 1,
        _ => 0,
    }
}

/// The verdict of a set of findings: BLOCK if any blocks, FLAG if any flags, else ALLOW.
pub fn verdict_of(findings: &[pb::Finding]) -> pb::Verdict {
    let worst = findings
        .iter()
        .map(|f| rank(pb::RuleAction::try_from(f.action).unwrap_or(pb::RuleAction::Block)))
        .max()
        .unwrap_or(0);
    match worst {
        0 => pb::Verdict::Allow,
        1 => pb::Verdict::Flag,
        _ => pb::Verdict::Block,
    }
}

/// Security level names as the summary writes them.
pub mod level {
    /// Software only.
    pub const SOFTWARE: &str = "software";
    /// Trusted Execution Environment.
    pub const TEE: &str = "trusted_environment";
    /// StrongBox.
    pub const STRONGBOX: &str = "strong_box";
}

/// Applies `policy` to what the evidence showed: the findings (each with the action the
/// policy gives it; ignored rules give none) and the verdict.
pub fn judge(
    summary: &pb::EvidenceSummary,
    policy: &pb::Policy,
    situation: Situation,
) -> (Vec<pb::Finding>, pb::Verdict) {
    let effective = Effective::of(policy);
    let mut findings = Vec::new();
    let mut add = |reason: &Reason, detail: String| {
        let action = effective.action(reason);
        if matches!(action, pb::RuleAction::Flag | pb::RuleAction::Block) {
            findings.push(finding(reason, detail, action));
        }
    };

    // What the evidence itself showed.
    for shown in &summary.evidence_findings {
        let known = lookup(&shown.code).unwrap_or(KA_CHAIN_INVALID);
        let required = match known.code {
            "PI_APP_NOT_RECOGNIZED" => policy.require_play_recognized,
            "PI_UNLICENSED" => policy.require_licensed,
            // Labels are judged below, from the labels themselves.
            "PI_DEVICE_INTEGRITY_MISSING" => false,
            "PI_CERTIFICATE_UNKNOWN" => !policy.allowed_signing_digests.is_empty(),
            _ => true,
        };
        if required {
            add(&known, shown.detail.clone());
        }
    }

    // Security level.
    let required = pb::RequiredSecurityLevel::try_from(policy.required_security_level)
        .unwrap_or(pb::RequiredSecurityLevel::Tee);
    let levels = [
        summary.attestation_security_level.as_str(),
        summary.keymint_security_level.as_str(),
    ];
    // Only a chain that verified has these facts.
    let attested = !summary.attestation_security_level.is_empty();
    if attested {
        let weakest = if levels.contains(&level::SOFTWARE) || levels.contains(&"") {
            0
        } else if levels.contains(&level::TEE) {
            1
        } else {
            2
        };
        let needed = if required == pb::RequiredSecurityLevel::Strongbox {
            2
        } else {
            1
        };
        if weakest < needed {
            add(
                &SECURITY_LEVEL_TOO_LOW,
                format!(
                    "attestation {:?}, keymint {:?}; {} required",
                    summary.attestation_security_level,
                    summary.keymint_security_level,
                    if needed == 2 {
                        "strong_box"
                    } else {
                        "trusted_environment"
                    }
                ),
            );
        }
    }

    // Verified boot.
    if policy.require_verified_boot && attested {
        if summary.verified_boot_state != "verified" {
            add(
                &VERIFIED_BOOT_FAILED,
                format!("verified boot state {:?}", summary.verified_boot_state),
            );
        }
        if !summary.device_locked {
            add(&BOOTLOADER_UNLOCKED, "the bootloader is unlocked".into());
        }
    }

    // Versions.
    let signals = summary.signals.clone().unwrap_or_default();
    let os_version = if summary.os_version == 0 {
        signals.os_version
    } else {
        summary.os_version
    };
    if policy.min_os_version != 0 && os_version < policy.min_os_version {
        add(
            &OS_VERSION_TOO_OLD,
            format!(
                "os version {os_version}, at least {} required",
                policy.min_os_version
            ),
        );
    }
    let patch = if summary.os_patch_level == 0 {
        patch_from_signal(&signals.security_patch_level)
    } else {
        summary.os_patch_level
    };
    if policy.min_patch_level != 0 && patch < policy.min_patch_level {
        add(
            &PATCH_LEVEL_TOO_OLD,
            format!(
                "patch level {patch}, at least {} required",
                policy.min_patch_level
            ),
        );
    }
    if let Some(minimum) = parse_dotted(&policy.min_sdk_version) {
        let sdk = parse_dotted(&signals.sdk_version).unwrap_or([0; 4]);
        if sdk < minimum {
            add(
                &SDK_VERSION_TOO_OLD,
                format!(
                    "sdk {:?}, at least {:?} required",
                    signals.sdk_version.chars().take(20).collect::<String>(),
                    policy.min_sdk_version
                ),
            );
        }
    }
    if policy.min_app_version_code != 0 && signals.app_version_code < policy.min_app_version_code {
        add(
            &APP_VERSION_TOO_OLD,
            format!(
                "app version code {}, at least {} required",
                signals.app_version_code, policy.min_app_version_code
            ),
        );
    }

    // The app's identity.
    if !policy.allowed_packages.is_empty() {
        let packages: Vec<&String> = if summary.packages.is_empty() {
            vec![&signals.package_name]
        } else {
            summary.packages.iter().collect()
        };
        if packages.is_empty()
            || !packages
                .iter()
                .all(|package| policy.allowed_packages.contains(package))
        {
            add(
                &PACKAGE_NOT_ALLOWED,
                format!(
                    "package {:?} is not allowed",
                    packages
                        .first()
                        .map(|p| p.chars().take(80).collect::<String>())
                        .unwrap_or_default()
                ),
            );
        }
    }
    if !policy.allowed_signing_digests.is_empty() {
        let allowed = !summary.signing_digests.is_empty()
            && summary
                .signing_digests
                .iter()
                .all(|digest| policy.allowed_signing_digests.contains(digest));
        if !allowed {
            add(
                &SIGNING_CERTIFICATE_NOT_ALLOWED,
                "the app's signing certificate is not allowed".into(),
            );
        }
    }

    // App signals.
    for (on, reason) in [
        (signals.rooted, &SIGNAL_ROOTED),
        (signals.emulator, &SIGNAL_EMULATOR),
        (signals.debugger_attached, &SIGNAL_DEBUGGER),
        (signals.hooking_framework, &SIGNAL_HOOKING_FRAMEWORK),
        (signals.app_tampered, &SIGNAL_APP_TAMPERED),
    ] {
        if on {
            add(reason, "reported by the app".into());
        }
    }

    // Play Integrity.
    if summary.play_integrity && !policy.required_device_labels.is_empty() {
        for label in &policy.required_device_labels {
            if !summary.device_labels.contains(label) {
                add(&PI_DEVICE_INTEGRITY_MISSING, format!("{label} missing"));
            }
        }
    }
    let interval = i64::try_from(policy.play_integrity_interval_seconds).unwrap_or(i64::MAX);
    if interval > 0
        && !summary.play_integrity
        && situation
            .now_s
            .saturating_sub(situation.last_play_integrity_s)
            > interval
    {
        add(
            &PI_DUE,
            "no Play Integrity verdict within the policy's interval".into(),
        );
    }

    if situation.reattestation_missed {
        add(
            &REATTESTATION_MISSED,
            "the device did not attest again within its interval".into(),
        );
    }

    let verdict = verdict_of(&findings);
    (findings, verdict)
}

/// `YYYY-MM-DD` (or `YYYY-MM`) as YYYYMM; 0 if unreadable.
pub fn patch_from_signal(value: &str) -> u32 {
    let mut parts = value.split('-');
    let (Some(year), Some(month)) = (parts.next(), parts.next()) else {
        return 0;
    };
    match (year.parse::<u32>(), month.parse::<u32>()) {
        (Ok(year), Ok(month)) if year < 10_000 && (1..=12).contains(&month) => year * 100 + month,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn healthy() -> pb::EvidenceSummary {
        pb::EvidenceSummary {
            leaf_sha256: "ab".repeat(32),
            attestation_security_level: level::TEE.into(),
            keymint_security_level: level::TEE.into(),
            verified_boot_state: "verified".into(),
            device_locked: true,
            os_version: 150_000,
            os_patch_level: 202_611,
            packages: vec!["com.mpos.softpos".into()],
            signing_digests: vec!["cd".repeat(32)],
            signals: Some(pb::AppSignals {
                sdk_version: "1.4.0".into(),
                app_version_code: 42,
                ..pb::AppSignals::default()
            }),
            ..pb::EvidenceSummary::default()
        }
    }

    const NOW: Situation = Situation {
        now_s: 1_800_000_000,
        last_play_integrity_s: 0,
        reattestation_missed: false,
    };

    fn codes(findings: &[pb::Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn a_healthy_device_is_allowed_by_a_strict_policy() {
        let policy = pb::Policy {
            min_os_version: 140_000,
            min_patch_level: 202_601,
            min_sdk_version: "1.4".into(),
            min_app_version_code: 40,
            allowed_packages: vec!["com.mpos.softpos".into()],
            allowed_signing_digests: vec!["cd".repeat(32)],
            require_verified_boot: true,
            ..pb::Policy::default()
        };
        validate(&policy).expect("valid");
        assert_eq!(
            judge(&healthy(), &policy, NOW),
            (vec![], pb::Verdict::Allow)
        );
    }

    #[test]
    fn each_rule_finds_its_reason_with_its_default_action() {
        let policy = pb::Policy {
            min_os_version: 160_000,
            min_patch_level: 202_612,
            min_sdk_version: "2.0.0".into(),
            min_app_version_code: 50,
            allowed_packages: vec!["com.other".into()],
            allowed_signing_digests: vec!["ef".repeat(32)],
            required_security_level: pb::RequiredSecurityLevel::Strongbox.into(),
            require_verified_boot: true,
            ..pb::Policy::default()
        };
        let mut summary = healthy();
        summary.device_locked = false;
        summary.verified_boot_state = "unverified".into();
        summary.signals = Some(pb::AppSignals {
            rooted: true,
            emulator: true,
            debugger_attached: true,
            hooking_framework: true,
            app_tampered: true,
            sdk_version: "1.4.0".into(),
            app_version_code: 42,
            ..pb::AppSignals::default()
        });
        let (findings, verdict) = judge(&summary, &policy, NOW);
        assert_eq!(
            codes(&findings),
            [
                "SECURITY_LEVEL_TOO_LOW",
                "VERIFIED_BOOT_FAILED",
                "BOOTLOADER_UNLOCKED",
                "OS_VERSION_TOO_OLD",
                "PATCH_LEVEL_TOO_OLD",
                "SDK_VERSION_TOO_OLD",
                "APP_VERSION_TOO_OLD",
                "PACKAGE_NOT_ALLOWED",
                "SIGNING_CERTIFICATE_NOT_ALLOWED",
                "SIGNAL_ROOTED",
                "SIGNAL_EMULATOR",
                "SIGNAL_DEBUGGER",
                "SIGNAL_HOOKING_FRAMEWORK",
                "SIGNAL_APP_TAMPERED",
            ]
        );
        let patch = &findings[4];
        assert_eq!(patch.action, i32::from(pb::RuleAction::Flag));
        assert!(!patch.advice.is_empty());
        assert_eq!(verdict, pb::Verdict::Block);
    }

    #[test]
    fn a_tenant_chooses_flag_block_or_ignore_per_rule() {
        let mut summary = healthy();
        summary.signals = Some(pb::AppSignals {
            debugger_attached: true,
            ..healthy().signals.unwrap_or_default()
        });
        let with = |action: pb::RuleAction| pb::Policy {
            actions: [("SIGNAL_DEBUGGER".to_owned(), action.into())]
                .into_iter()
                .collect(),
            ..pb::Policy::default()
        };
        assert_eq!(
            judge(&summary, &with(pb::RuleAction::Unspecified), NOW).1,
            pb::Verdict::Block
        );
        assert_eq!(
            judge(&summary, &with(pb::RuleAction::Flag), NOW).1,
            pb::Verdict::Flag
        );
        assert_eq!(
            judge(&summary, &with(pb::RuleAction::Ignore), NOW),
            (vec![], pb::Verdict::Allow)
        );
    }

    #[test]
    fn invalid_evidence_blocks_whatever_the_policy() {
        let mut summary = healthy();
        summary.evidence_findings = vec![pb::Finding {
            code: "KA_CHALLENGE_MISMATCH".into(),
            ..pb::Finding::default()
        }];
        let lenient = pb::Policy {
            actions: [(
                "KA_CHALLENGE_MISMATCH".to_owned(),
                pb::RuleAction::Ignore.into(),
            )]
            .into_iter()
            .collect(),
            ..pb::Policy::default()
        };
        assert!(validate(&lenient).is_err());
        assert_eq!(judge(&summary, &lenient, NOW).1, pb::Verdict::Block);
    }

    #[test]
    fn play_integrity_is_due_after_its_interval() {
        let policy = pb::Policy {
            play_integrity_interval_seconds: 86_400,
            ..pb::Policy::default()
        };
        let recent = Situation {
            last_play_integrity_s: NOW.now_s - 3_600,
            ..NOW
        };
        assert_eq!(judge(&healthy(), &policy, recent).1, pb::Verdict::Allow);
        let (findings, verdict) = judge(&healthy(), &policy, NOW);
        assert_eq!(codes(&findings), ["PI_DUE"]);
        assert_eq!(verdict, pb::Verdict::Flag);
    }

    #[test]
    fn dotted_versions_compare_numerically() {
        assert!(parse_dotted("1.10.0") > parse_dotted("1.9.9"));
        assert_eq!(parse_dotted("1.4"), parse_dotted("1.4.0"));
        for bad in ["", "1..2", "1.2.3.4.5", "v1", "1.-2", "1234567890"] {
            assert_eq!(parse_dotted(bad), None, "{bad}");
        }
        assert_eq!(patch_from_signal("2026-11-05"), 202_611);
        assert_eq!(patch_from_signal("2026-13-05"), 0);
    }

    #[test]
    fn every_code_is_unique_and_advised() {
        let all = all();
        let mut seen = std::collections::HashSet::new();
        for reason in &all {
            assert!(seen.insert(reason.code), "{} twice", reason.code);
            assert!(!reason.advice.is_empty());
            assert!(!reason.fixed || reason.default == pb::RuleAction::Block);
        }
    }

    proptest! {
        #[test]
        fn judging_never_panics_and_blocks_if_any_finding_blocks(
            os in any::<u32>(), patch in any::<u32>(), sdk in "[0-9.]{0,12}",
            rooted in any::<bool>(), min_os in 0_u32..200_000,
        ) {
            let mut summary = healthy();
            summary.os_version = os;
            summary.os_patch_level = patch;
            summary.signals = Some(pb::AppSignals { rooted, sdk_version: sdk, ..pb::AppSignals::default() });
            let policy = pb::Policy { min_os_version: min_os, min_sdk_version: "1.0".into(), ..pb::Policy::default() };
            let (findings, verdict) = judge(&summary, &policy, NOW);
            let blocks = findings.iter().any(|f| f.action == i32::from(pb::RuleAction::Block));
            prop_assert_eq!(verdict == pb::Verdict::Block, blocks);
            prop_assert_eq!(rooted, codes(&findings).contains(&"SIGNAL_ROOTED"));
        }
    }
}
