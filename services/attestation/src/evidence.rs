//! What a device's evidence shows, before any policy: the key attestation chain verified up to
//! the trust anchors (validity, revocation status, the `KeyDescription` parsed), its challenge
//! compared with the one issued, the Play Integrity verdict checked against the request, and
//! the app signals — summarised as a [`pb::EvidenceSummary`] that the policy rules
//! ([`crate::rules::judge`]) read, now and again at every policy change. Pure: the trust
//! anchors, the status list and the time are arguments.

use android_attestation::play_integrity::{self, Expectations, Expected, PlayIntegrityVerdict};
use android_attestation::{AuthorizationList, SecurityLevel, VerifiedBootState};
use android_attestation::{LinkCache, RevocationList, TrustAnchors, verify_chain_with};
use base64::Engine as _;
use mpos_proto::attestation as pb;
use sha2::{Digest, Sha256};

use crate::rules::{self, Reason};

/// What a device sends with an attestation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// The key attestation certificate chain, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The decoded Play Integrity verdict JSON, if the app sent one.
    pub play_integrity: Option<Vec<u8>>,
    /// What the app's SDK reports.
    pub signals: pb::AppSignals,
}

/// What the chain is verified against.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// The attestation roots.
    pub anchors: &'a TrustAnchors,
    /// The revocation status list.
    pub revocations: &'a RevocationList,
    /// The status list could not be refreshed for too long.
    pub stale: bool,
    /// Link signatures already verified (the intermediates and roots devices share).
    pub links: Option<&'a LinkCache>,
}

/// The Play Integrity request hash of a challenge: its base64url form without padding (the
/// app passes it as `requestHash`).
pub fn request_hash(challenge: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge)
}

fn shown(reason: &Reason, detail: String) -> pb::Finding {
    pb::Finding {
        code: reason.code.to_owned(),
        detail,
        action: pb::RuleAction::Unspecified.into(),
        advice: reason.advice.to_owned(),
    }
}

fn level_name(level: SecurityLevel) -> &'static str {
    match level {
        SecurityLevel::Software => rules::level::SOFTWARE,
        SecurityLevel::TrustedEnvironment => rules::level::TEE,
        SecurityLevel::StrongBox => rules::level::STRONGBOX,
    }
}

fn boot_state_name(state: VerifiedBootState) -> &'static str {
    match state {
        VerifiedBootState::Verified => "verified",
        VerifiedBootState::SelfSigned => "self_signed",
        VerifiedBootState::Unverified => "unverified",
        VerifiedBootState::Failed => "failed",
    }
}

/// The first list (hardware first) that has the value.
fn either<T>(
    lists: [&AuthorizationList; 2],
    get: impl Fn(&AuthorizationList) -> Option<T>,
) -> Option<T> {
    lists.into_iter().find_map(get)
}

/// Examines `evidence` for the issued `challenge` at `now_ms` (Unix milliseconds).
pub fn examine(
    evidence: &Evidence,
    challenge: &[u8],
    trust: Trust<'_>,
    policy: &pb::Policy,
    now_ms: u64,
) -> pb::EvidenceSummary {
    let mut summary = pb::EvidenceSummary {
        signals: Some(evidence.signals.clone()),
        ..pb::EvidenceSummary::default()
    };
    let mut findings = Vec::new();

    // Key attestation.
    if let Some(leaf) = evidence.chain.first() {
        summary.leaf_sha256 = hex::encode(Sha256::digest(leaf));
    }
    let now_s = i64::try_from(now_ms / 1_000).unwrap_or(i64::MAX);
    match verify_chain_with(
        &evidence.chain,
        trust.anchors,
        trust.revocations,
        now_s,
        trust.links,
    ) {
        Err(error) => findings.push(shown(&rules::KA_CHAIN_INVALID, error.to_string())),
        Ok(verified) => {
            let description = &verified.key_description;
            summary.anchor_sha256 = hex::encode(verified.anchor_spki_sha256);
            summary.attestation_security_level =
                level_name(description.attestation_security_level).to_owned();
            summary.keymint_security_level =
                level_name(description.key_mint_security_level).to_owned();
            if description.attestation_challenge.as_slice() != challenge {
                findings.push(shown(
                    &rules::KA_CHALLENGE_MISMATCH,
                    "the attested key was generated for another challenge".into(),
                ));
            }
            let lists = [
                &description.hardware_enforced,
                &description.software_enforced,
            ];
            if let Some(root) = either(lists, |l| l.root_of_trust.clone()) {
                summary.verified_boot_state = boot_state_name(root.verified_boot_state).to_owned();
                summary.device_locked = root.device_locked;
            }
            summary.os_version = either(lists, |l| l.os_version)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0);
            summary.os_patch_level = either(lists, |l| l.os_patch_level)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0);
            if let Some(app) = either(lists, |l| l.attestation_application_id.clone()) {
                summary.packages = app.packages.into_iter().map(|p| p.name).collect();
                summary.signing_digests = app.signatures.iter().map(hex::encode).collect();
            }
        }
    }
    if trust.stale {
        findings.push(shown(
            &rules::KA_STATUS_LIST_STALE,
            "the revocation status list is out of date".into(),
        ));
    }

    // Play Integrity.
    if let Some(json) = &evidence.play_integrity {
        summary.play_integrity = true;
        match PlayIntegrityVerdict::from_json(json) {
            Err(error) => findings.push(shown(&rules::PI_INVALID, error.to_string())),
            Ok(verdict) => {
                summary.device_labels = verdict
                    .device_integrity
                    .as_ref()
                    .map(|d| d.labels().iter().map(|l| l.as_str().to_owned()).collect())
                    .unwrap_or_default();
                let package = summary
                    .packages
                    .first()
                    .cloned()
                    .unwrap_or_else(|| evidence.signals.package_name.clone());
                let digests: Vec<String> = if policy.allowed_signing_digests.is_empty() {
                    summary.signing_digests.clone()
                } else {
                    policy.allowed_signing_digests.clone()
                };
                let expectations = Expectations {
                    package_name: package,
                    request_hash_or_nonce: Expected::RequestHash(request_hash(challenge)),
                    now_millis: now_ms,
                    max_age_millis: rules::Effective::of(policy)
                        .play_integrity_max_age_s
                        .saturating_mul(1_000),
                    allowed_certificate_digests: digests
                        .iter()
                        .filter_map(|digest| hex::decode(digest).ok())
                        .map(|bytes| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
                        .collect(),
                    require_play_recognized: true,
                    required_device_labels: Vec::new(),
                    require_licensed: true,
                };
                for found in play_integrity::check(&verdict, &expectations) {
                    let reason = rules::lookup(found.code.as_str()).unwrap_or(rules::PI_INVALID);
                    findings.push(shown(&reason, found.detail));
                }
            }
        }
    }
    summary.evidence_findings = findings;
    summary
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn codes(summary: &pb::EvidenceSummary) -> Vec<&str> {
        summary
            .evidence_findings
            .iter()
            .map(|f| f.code.as_str())
            .collect()
    }

    #[test]
    fn missing_evidence_is_invalid_and_a_stale_list_is_said() {
        let anchors = TrustAnchors::google();
        let revocations = RevocationList::empty();
        let trust = Trust {
            anchors: &anchors,
            revocations: &revocations,
            stale: true,
            links: None,
        };
        let summary = examine(
            &Evidence {
                play_integrity: Some(b"{not json".to_vec()),
                ..Evidence::default()
            },
            &[1; 32],
            trust,
            &pb::Policy::default(),
            1_800_000_000_000,
        );
        assert_eq!(
            codes(&summary),
            ["KA_CHAIN_INVALID", "KA_STATUS_LIST_STALE", "PI_INVALID"]
        );
        assert!(summary.play_integrity);
        assert!(summary.attestation_security_level.is_empty());
        let (_, verdict) = rules::judge(
            &summary,
            &pb::Policy::default(),
            rules::Situation {
                now_s: 1_800_000_000,
                last_play_integrity_s: 0,
                reattestation_missed: false,
            },
        );
        assert_eq!(verdict, pb::Verdict::Block);
    }

    /// A real device's chain (a Pixel's StrongBox key under Google's 2026 EC root, from the
    /// android/keyattestation test data) examined with its own challenge, inside its validity.
    #[test]
    fn a_real_strongbox_chain_gives_its_attested_facts() {
        let data = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../crates/android-attestation/tests/data/testdata/tegu/sdk36/SB_EC_2026_ROOT.pem"
        );
        let chain = android_attestation::read_pem_chain(data).expect("fixture chain");
        let description = android_attestation::KeyDescription::from_certificate_der(&chain[0])
            .expect("parsed")
            .expect("extension");
        let mut latest_start = 0;
        for der in &chain {
            let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate");
            latest_start = latest_start.max(cert.validity().not_before.timestamp());
        }
        let now_ms = u64::try_from(latest_start + 60).expect("time") * 1_000;
        let anchors = TrustAnchors::google();
        let revocations = RevocationList::empty();
        let trust = Trust {
            anchors: &anchors,
            revocations: &revocations,
            stale: false,
            links: None,
        };
        let evidence = Evidence {
            chain: chain.clone(),
            ..Evidence::default()
        };
        let summary = examine(
            &evidence,
            &description.attestation_challenge,
            trust,
            &pb::Policy::default(),
            now_ms,
        );
        assert!(summary.evidence_findings.is_empty(), "{summary:?}");
        assert_eq!(summary.attestation_security_level, rules::level::STRONGBOX);
        assert_eq!(summary.keymint_security_level, rules::level::STRONGBOX);
        let root = description
            .hardware_enforced
            .root_of_trust
            .clone()
            .expect("root of trust");
        assert_eq!(summary.device_locked, root.device_locked);
        assert_eq!(
            u64::from(summary.os_patch_level),
            description
                .hardware_enforced
                .os_patch_level
                .expect("patch level")
        );
        assert_eq!(summary.leaf_sha256, hex::encode(Sha256::digest(&chain[0])));
        // The same chain for another challenge is a mismatch.
        let other = examine(&evidence, &[0; 32], trust, &pb::Policy::default(), now_ms);
        assert_eq!(codes(&other), ["KA_CHALLENGE_MISMATCH"]);
        // The token vouches for the verified leaf, and for no key attested for another
        // challenge.
        let bound = crate::engine::attested_key(&summary).expect("bound");
        assert!(bound.confirms(&chain[0]));
        assert_eq!(crate::engine::attested_key(&other), None);
    }

    proptest! {
        /// Whatever a device sends, examining it never panics, and evidence that is not a
        /// chain blocks.
        #[test]
        fn arbitrary_evidence_never_panics_and_blocks(
            chain in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
            verdict in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            challenge in proptest::collection::vec(any::<u8>(), 0..64),
            package in "[a-z.]{0,20}",
        ) {
            let anchors = TrustAnchors::google();
            let revocations = RevocationList::empty();
            let evidence = Evidence {
                chain,
                play_integrity: verdict,
                signals: pb::AppSignals { package_name: package, ..pb::AppSignals::default() },
            };
            let trust = Trust { anchors: &anchors, revocations: &revocations, stale: false, links: None };
            let summary = examine(&evidence, &challenge, trust, &pb::Policy::default(), 1_800_000_000_000);
            prop_assert!(codes(&summary).contains(&"KA_CHAIN_INVALID"));
            let situation = rules::Situation { now_s: 1_800_000_000, last_play_integrity_s: 0, reattestation_missed: false };
            prop_assert_eq!(rules::judge(&summary, &pb::Policy::default(), situation).1, pb::Verdict::Block);
        }
    }
}
