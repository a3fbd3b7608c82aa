//! The simulated SoftPOS phone's evidence against the platform's own verifiers
//! (android-attestation): the attestation chain verifies against the simulator root and its
//! `KeyDescription` carries exactly the profile; the failure-path chains are refused with the
//! matching errors; the Play Integrity verdict parses and checks; the app signals serialize.

use std::time::{SystemTime, UNIX_EPOCH};

use android_attestation::play_integrity::{self, DeviceLabel, Expectations, Expected, ReasonCode};
use android_attestation::{
    AttestationApplicationId, AttestationPackageInfo, AuthorizationList, ChainError,
    KeyDescription, Origin, PlayIntegrityVerdict, RevocationList, RootOfTrust, TrustAnchors,
    VerifiedChain, verify_chain,
};
use base64::Engine as _;
use proptest::prelude::*;
use terminal_sim::softpos::{SecurityLevel, VerifiedBootState};
use terminal_sim::{
    AppSignals, AttestOptions, AttestationPki, SoftPosProfile, encode_key_description,
    encode_key_description_at, play_integrity_verdict,
};
use x509_parser::prelude::{FromDer as _, X509Certificate};

const CHALLENGE: &[u8] = b"fresh challenge from the attestation service, 32+ bytes";

fn now_seconds() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("seconds")
}

fn anchors(pki: &AttestationPki) -> TrustAnchors {
    TrustAnchors::from_der([pki.root_der().to_vec()]).expect("anchor")
}

fn verify(pki: &AttestationPki, chain: &[Vec<u8>]) -> Result<VerifiedChain, ChainError> {
    verify_chain(
        chain,
        &anchors(pki),
        &RevocationList::empty(),
        now_seconds(),
    )
}

fn attested_level(level: SecurityLevel) -> android_attestation::SecurityLevel {
    match level {
        SecurityLevel::Software => android_attestation::SecurityLevel::Software,
        SecurityLevel::TrustedEnvironment => android_attestation::SecurityLevel::TrustedEnvironment,
        SecurityLevel::StrongBox => android_attestation::SecurityLevel::StrongBox,
    }
}

fn attested_boot_state(state: VerifiedBootState) -> android_attestation::VerifiedBootState {
    match state {
        VerifiedBootState::Verified => android_attestation::VerifiedBootState::Verified,
        VerifiedBootState::SelfSigned => android_attestation::VerifiedBootState::SelfSigned,
        VerifiedBootState::Unverified => android_attestation::VerifiedBootState::Unverified,
        VerifiedBootState::Failed => android_attestation::VerifiedBootState::Failed,
    }
}

/// The `KeyDescription` a profile must produce for `challenge`, created at `creation_millis`.
fn expected(profile: &SoftPosProfile, challenge: &[u8], creation_millis: u64) -> KeyDescription {
    let key_properties = AuthorizationList {
        // KeyMint KeyPurpose.aidl: SIGN = 2, AGREE_KEY = 6 (the key also receives the
        // phone's DUKPT key by ECDH).
        purposes: Some(vec![2, 6]),
        algorithm: Some(3),
        key_size: Some(256),
        digests: Some(vec![4]),
        ec_curve: Some(1),
        no_auth_required: true,
        origin: Some(Origin::Generated),
        root_of_trust: Some(RootOfTrust {
            verified_boot_key: profile.verified_boot_key.to_vec(),
            device_locked: profile.device_locked,
            verified_boot_state: attested_boot_state(profile.verified_boot_state),
            verified_boot_hash: Some(profile.verified_boot_hash.to_vec()),
        }),
        os_version: Some(u64::from(profile.os_version)),
        os_patch_level: Some(u64::from(profile.os_patch_level)),
        vendor_patch_level: Some(u64::from(profile.vendor_patch_level)),
        boot_patch_level: Some(u64::from(profile.boot_patch_level)),
        ..AuthorizationList::default()
    };
    let app = AuthorizationList {
        creation_date_time: Some(creation_millis),
        attestation_application_id: Some(AttestationApplicationId {
            packages: vec![AttestationPackageInfo {
                name: profile.package_name.clone(),
                version: i64::try_from(profile.app_version_code).expect("version code"),
            }],
            signatures: vec![profile.signing_certificate_sha256.to_vec()],
        }),
        ..AuthorizationList::default()
    };
    let (software_enforced, hardware_enforced) =
        if profile.keymint_security_level == SecurityLevel::Software {
            (
                AuthorizationList {
                    creation_date_time: app.creation_date_time,
                    attestation_application_id: app.attestation_application_id,
                    ..key_properties
                },
                AuthorizationList::default(),
            )
        } else {
            (app, key_properties)
        };
    KeyDescription {
        attestation_version: profile.attestation_version,
        attestation_security_level: attested_level(profile.attestation_security_level),
        key_mint_version: profile.keymint_version,
        key_mint_security_level: attested_level(profile.keymint_security_level),
        attestation_challenge: challenge.to_vec(),
        unique_id: Vec::new(),
        software_enforced,
        hardware_enforced,
    }
}

/// Checks a verified chain's `KeyDescription` is exactly the profile's, the creation time
/// within the test's window.
fn assert_matches(profile: &SoftPosProfile, verified: &VerifiedChain, before_millis: u64) {
    let parsed = &verified.key_description;
    let created = parsed
        .software_enforced
        .creation_date_time
        .expect("creationDateTime");
    let after_millis = u64::try_from(now_seconds() + 1).expect("now") * 1000;
    assert!(
        (before_millis..=after_millis).contains(&created),
        "{created}"
    );
    assert_eq!(*parsed, expected(profile, CHALLENGE, created));
}

fn millis_now() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("millis")
}

fn strongbox_unlocked_old_patch() -> SoftPosProfile {
    SoftPosProfile {
        package_name: "com.example.tap2pay".to_owned(),
        app_version_code: 7_000_000_001,
        signing_certificate_sha256: [0xA5; 32],
        attestation_security_level: SecurityLevel::StrongBox,
        keymint_security_level: SecurityLevel::StrongBox,
        attestation_version: 200,
        keymint_version: 200,
        os_version: 130_000,
        os_patch_level: 202_301,
        vendor_patch_level: 20_230_105,
        boot_patch_level: 20_230_105,
        verified_boot_state: VerifiedBootState::Unverified,
        device_locked: false,
        verified_boot_key: [0; 32],
        verified_boot_hash: [0x11; 32],
        ..SoftPosProfile::default()
    }
}

#[test]
fn the_default_profile_is_a_healthy_phone() {
    let profile = SoftPosProfile::default();
    assert_eq!(profile.package_name, "com.mpos.softpos");
    assert_eq!(profile.app_version_code, 42);
    assert_eq!(profile.app_version_name, "2.3.1");
    assert_eq!(profile.sdk_version, "1.4.0");
    let digest: [u8; 32] = {
        use sha2::Digest as _;
        sha2::Sha256::digest(b"mpos softpos release signing cert").into()
    };
    assert_eq!(profile.signing_certificate_sha256, digest);
    assert_eq!(
        profile.attestation_security_level,
        SecurityLevel::TrustedEnvironment
    );
    assert_eq!(
        profile.keymint_security_level,
        SecurityLevel::TrustedEnvironment
    );
    assert_eq!(
        (profile.attestation_version, profile.keymint_version),
        (300, 300)
    );
    assert_eq!(
        (
            profile.os_version,
            profile.os_patch_level,
            profile.vendor_patch_level,
            profile.boot_patch_level
        ),
        (150_000, 202_611, 20_261_101, 20_261_101)
    );
    assert_eq!(profile.verified_boot_state, VerifiedBootState::Verified);
    assert!(profile.device_locked);
    assert!(
        !(profile.rooted
            || profile.emulator
            || profile.debugger_attached
            || profile.hooking_framework
            || profile.app_tampered)
    );
}

#[test]
fn the_encoder_output_parses_for_the_default_profile() {
    let profile = SoftPosProfile::default();
    let der = encode_key_description_at(&profile, CHALLENGE, 1_790_000_000_123);
    let parsed = KeyDescription::from_der(&der).expect("parses");
    assert_eq!(parsed, expected(&profile, CHALLENGE, 1_790_000_000_123));
    // The fixed leading bytes: SEQUENCE, attestationVersion 300, TRUSTED_ENVIRONMENT.
    assert_eq!(der.first(), Some(&0x30));
    // rootOfTrust [704] uses the high-tag-number form.
    assert!(der.windows(3).any(|w| w == [0xBF, 0x85, 0x40]));

    let before = millis_now();
    let now = KeyDescription::from_der(&encode_key_description(&profile, b"")).expect("parses");
    let created = now.software_enforced.creation_date_time.expect("created");
    assert!(created >= before && created <= millis_now());
}

#[test]
fn a_software_keymint_puts_every_property_in_software_enforced() {
    let profile = SoftPosProfile {
        attestation_security_level: SecurityLevel::Software,
        keymint_security_level: SecurityLevel::Software,
        ..SoftPosProfile::default()
    };
    let der = encode_key_description_at(&profile, CHALLENGE, 5);
    let parsed = KeyDescription::from_der(&der).expect("parses");
    assert_eq!(parsed.hardware_enforced, AuthorizationList::default());
    assert!(parsed.software_enforced.root_of_trust.is_some());
    assert_eq!(parsed, expected(&profile, CHALLENGE, 5));
}

#[test]
fn the_default_chain_verifies_against_the_simulator_root() {
    let pki = AttestationPki::new().expect("pki");
    let profile = SoftPosProfile::default();
    let before = millis_now();
    let chain = pki.attest(&profile, CHALLENGE).expect("chain");
    assert_eq!(chain.len(), 3);
    assert_eq!(
        chain.get(1).map(Vec::as_slice),
        Some(pki.intermediate_der())
    );
    assert_eq!(chain.get(2).map(Vec::as_slice), Some(pki.root_der()));
    let verified = verify(&pki, &chain).expect("verifies");
    assert!(verified.root_in_chain);
    assert_eq!(verified.anchor_index, 0);
    assert_matches(&profile, &verified, before);

    // The leaf: not a CA, the extension non-critical, valid a day ago to a year ahead.
    let (_, leaf) = X509Certificate::from_der(&chain[0]).expect("leaf");
    assert!(!leaf.is_ca());
    let extension = leaf
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == android_attestation::KEY_DESCRIPTION_OID)
        .expect("extension");
    assert!(!extension.critical);
    let now = now_seconds();
    let validity = leaf.validity();
    let (from, until) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    assert!(
        (now - 86_400 - 5..=now - 86_400 + 5).contains(&from),
        "{from}"
    );
    assert!((now + 365 * 86_400 - 5..=now + 365 * 86_400 + 5).contains(&until));
    let (_, root) = X509Certificate::from_der(pki.root_der()).expect("root");
    assert!(root.is_ca());
    assert_eq!(
        android_attestation::pem_chain_to_der(pki.root_pem().as_bytes()).expect("pem"),
        vec![pki.root_der().to_vec()]
    );

    // Two attestations: two different keys.
    let again = pki.attest(&profile, CHALLENGE).expect("chain");
    let other = verify(&pki, &again).expect("verifies");
    assert_ne!(other.leaf_public_key_der, verified.leaf_public_key_der);
    assert_ne!(other.serials[0], verified.serials[0]);
}

#[test]
fn a_strongbox_unlocked_old_patch_phone_is_attested_as_such() {
    let pki = AttestationPki::new().expect("pki");
    let profile = strongbox_unlocked_old_patch();
    let before = millis_now();
    let chain = pki.attest(&profile, CHALLENGE).expect("chain");
    let verified = verify(&pki, &chain).expect("verifies");
    assert_matches(&profile, &verified, before);
    let kd = &verified.key_description;
    assert_eq!(
        kd.attestation_security_level,
        android_attestation::SecurityLevel::StrongBox
    );
    let root = kd
        .hardware_enforced
        .root_of_trust
        .as_ref()
        .expect("root of trust");
    assert!(!root.device_locked);
    assert_eq!(
        root.verified_boot_state,
        android_attestation::VerifiedBootState::Unverified
    );
    assert_eq!(kd.hardware_enforced.os_patch_level, Some(202_301));
}

#[test]
fn failure_path_chains_are_refused_with_the_matching_errors() {
    let pki = AttestationPki::new().expect("pki");
    let profile = SoftPosProfile::default();
    let attest = |options: AttestOptions| {
        pki.attest_with(&profile, CHALLENGE, &options)
            .expect("chain")
    };

    let expired = attest(AttestOptions {
        leaf_expired: true,
        ..AttestOptions::default()
    });
    assert!(matches!(
        verify(&pki, &expired),
        Err(ChainError::Expired { index: 0, .. })
    ));

    let on_intermediate = attest(AttestOptions {
        extension_on_intermediate: true,
        ..AttestOptions::default()
    });
    assert_ne!(on_intermediate[1], pki.intermediate_der());
    assert_eq!(
        verify(&pki, &on_intermediate),
        Err(ChainError::ExtensionOutsideLeaf { index: 1 })
    );

    let extended = attest(AttestOptions {
        extended_past_leaf: true,
        ..AttestOptions::default()
    });
    assert_eq!(extended.len(), 4);
    assert_eq!(
        verify(&pki, &extended),
        Err(ChainError::ExtensionOutsideLeaf { index: 1 })
    );
    // Without the extra certificate the rest is a good chain: the extra one is signed by the
    // attested key.
    let attested = verify(&pki, &extended[1..]).expect("the attested part verifies");
    let (_, extra) = X509Certificate::from_der(&extended[0]).expect("extra");
    let (_, leaf) = X509Certificate::from_der(&extended[1]).expect("leaf");
    assert_eq!(
        leaf.public_key().raw,
        attested.leaf_public_key_der.as_slice()
    );
    assert!(extra.verify_signature(Some(leaf.public_key())).is_ok());

    let corrupt = attest(AttestOptions {
        corrupt_leaf_signature: true,
        ..AttestOptions::default()
    });
    assert!(matches!(
        verify(&pki, &corrupt),
        Err(ChainError::BadSignature { index: 0, .. })
    ));

    // The simulator root is not Google's, nor another simulator's.
    let good = pki.attest(&profile, CHALLENGE).expect("chain");
    assert_eq!(
        verify_chain(
            &good,
            &TrustAnchors::google(),
            &RevocationList::empty(),
            now_seconds()
        ),
        Err(ChainError::UnknownRoot { index: 2 })
    );
    let other = AttestationPki::new().expect("pki");
    assert_eq!(
        verify_chain(
            &good,
            &anchors(&other),
            &RevocationList::empty(),
            now_seconds()
        ),
        Err(ChainError::UnknownRoot { index: 2 })
    );
}

fn expectations(profile: &SoftPosProfile, hash: &str, now: u64) -> Expectations {
    Expectations {
        package_name: profile.package_name.clone(),
        request_hash_or_nonce: Expected::RequestHash(hash.to_owned()),
        now_millis: now,
        max_age_millis: 60_000,
        allowed_certificate_digests: vec![
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(profile.signing_certificate_sha256),
        ],
        require_play_recognized: true,
        required_device_labels: vec![DeviceLabel::MeetsDeviceIntegrity],
        require_licensed: true,
    }
}

#[test]
fn the_verdict_parses_and_passes_the_checks() {
    let profile = SoftPosProfile::default();
    let now = 1_790_000_000_000;
    let hash = "2cp24z4_-RUq1XL3cMzYpkk4JIDkNPHSGBDTGBPCjGw";
    let json = play_integrity_verdict(&profile, hash, now - 1_000);
    let verdict = PlayIntegrityVerdict::from_json(json.as_bytes()).expect("parses");
    assert_eq!(
        play_integrity::check(&verdict, &expectations(&profile, hash, now)),
        vec![]
    );
    let app = verdict.app_integrity.as_ref().expect("app");
    assert_eq!(app.version_code, Some(42));
    assert_eq!(
        verdict.device_integrity.as_ref().expect("device").labels(),
        [DeviceLabel::MeetsDeviceIntegrity]
    );
    let raw: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(raw["requestDetails"]["timestampMillis"], "1789999999000");
    assert_eq!(raw["appIntegrity"]["versionCode"], "42");
    assert_eq!(raw["accountDetails"]["appLicensingVerdict"], "LICENSED");

    // StrongBox: strong integrity too.
    let strong = SoftPosProfile {
        attestation_security_level: SecurityLevel::StrongBox,
        keymint_security_level: SecurityLevel::StrongBox,
        ..SoftPosProfile::default()
    };
    let verdict =
        PlayIntegrityVerdict::from_json(play_integrity_verdict(&strong, hash, now).as_bytes())
            .expect("parses");
    let mut exp = expectations(&strong, hash, now);
    exp.required_device_labels
        .push(DeviceLabel::MeetsStrongIntegrity);
    assert_eq!(play_integrity::check(&verdict, &exp), vec![]);
}

#[test]
fn a_compromised_phone_gets_the_matching_findings() {
    let now = 1_790_000_000_000;
    let hash = "request-hash";
    let findings = |profile: &SoftPosProfile| {
        let json = play_integrity_verdict(profile, hash, now);
        let verdict = PlayIntegrityVerdict::from_json(json.as_bytes()).expect("parses");
        let labels = verdict
            .device_integrity
            .as_ref()
            .map(|d| d.labels().to_vec())
            .unwrap_or_default();
        let codes: Vec<ReasonCode> =
            play_integrity::check(&verdict, &expectations(profile, hash, now))
                .into_iter()
                .map(|f| f.code)
                .collect();
        (labels, codes)
    };

    let rooted = SoftPosProfile {
        rooted: true,
        ..SoftPosProfile::default()
    };
    assert_eq!(
        findings(&rooted),
        (
            vec![DeviceLabel::MeetsBasicIntegrity],
            vec![ReasonCode::DeviceIntegrityMissing]
        )
    );
    let unlocked = strongbox_unlocked_old_patch();
    assert_eq!(
        findings(&unlocked),
        (
            vec![DeviceLabel::MeetsBasicIntegrity],
            vec![ReasonCode::DeviceIntegrityMissing]
        )
    );
    let emulator = SoftPosProfile {
        emulator: true,
        ..SoftPosProfile::default()
    };
    assert_eq!(
        findings(&emulator),
        (vec![], vec![ReasonCode::DeviceIntegrityMissing])
    );
    let tampered = SoftPosProfile {
        app_tampered: true,
        ..SoftPosProfile::default()
    };
    assert_eq!(
        findings(&tampered),
        (
            vec![DeviceLabel::MeetsDeviceIntegrity],
            vec![ReasonCode::AppNotRecognized]
        )
    );
}

#[test]
fn app_signals_serialize_with_snake_case_keys() {
    let profile = SoftPosProfile {
        hooking_framework: true,
        ..SoftPosProfile::default()
    };
    let signals = profile.signals();
    let json = serde_json::to_value(&signals).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "rooted": false,
            "emulator": false,
            "debugger_attached": false,
            "hooking_framework": true,
            "app_tampered": false,
            "os_version": 150000,
            "sdk_version": "1.4.0",
            "app_version": "2.3.1",
            "app_version_code": 42,
            "security_patch_level": "2026-11-01",
            "package_name": "com.mpos.softpos",
        })
    );
    let back: AppSignals = serde_json::from_value(json).expect("back");
    assert_eq!(back, signals);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_challenge_round_trips(
        challenge in proptest::collection::vec(any::<u8>(), 0..=128),
        os_version in any::<u32>(),
        version_code in 0..=i64::MAX as u64,
        created in any::<u64>(),
        locked in any::<bool>(),
    ) {
        let profile = SoftPosProfile {
            os_version,
            app_version_code: version_code,
            device_locked: locked,
            ..SoftPosProfile::default()
        };
        let der = encode_key_description_at(&profile, &challenge, created);
        let parsed = KeyDescription::from_der(&der).expect("parses");
        prop_assert_eq!(&parsed.attestation_challenge, &challenge);
        prop_assert_eq!(parsed, expected(&profile, &challenge, created));
    }
}
