//! Play Integrity verdicts: parsing and the checks of `play_integrity::check`.
//!
//! The verdict below is written from the format documented at
//! <https://developer.android.com/google/play/integrity/verdicts> ("Integrity verdicts",
//! section "Returned integrity verdict format": requestDetails, appIntegrity, deviceIntegrity,
//! accountDetails, environmentDetails), with values of our own.

use android_attestation::play_integrity::{
    AppRecognitionVerdict, AppsDetected, DeviceActivityLevel, DeviceLabel, Expectations, Expected,
    Finding, LicensingVerdict, MAX_CLOCK_SKEW_MILLIS, MAX_VERDICT_LEN, PlayProtectVerdict,
    ReasonCode, check,
};
use android_attestation::{PlayIntegrityError, PlayIntegrityVerdict};
use proptest::prelude::*;
use serde_json::{Value, json};

const PACKAGE: &str = "org.mpos.softpos";
const REQUEST_HASH: &str = "2cp24z3jR9m8cRjKbN1Yx7X1o0k4Zq3t9wV6bD2eF5g";
const NONCE: &str = "bm9uY2UtZnJvbS10aGUtc2VydmljZS0xMjM0NTY3ODkw";
const DIGEST: &str = "Leyh4alWt2uRU3q_Nq6bQu6xCyGkazgthfIgjbM6ytY";
const TIMESTAMP: u64 = 1_765_000_000_000;
const MAX_AGE: u64 = 5 * 60 * 1000;

/// A complete standard-request verdict, every check passing against [`expectations`].
fn verdict_json() -> Value {
    json!({
        "requestDetails": {
            "requestPackageName": PACKAGE,
            "requestHash": REQUEST_HASH,
            "timestampMillis": TIMESTAMP.to_string()
        },
        "appIntegrity": {
            "appRecognitionVerdict": "PLAY_RECOGNIZED",
            "packageName": PACKAGE,
            "certificateSha256Digest": [DIGEST],
            "versionCode": "42"
        },
        "deviceIntegrity": {
            "deviceRecognitionVerdict": ["MEETS_BASIC_INTEGRITY", "MEETS_DEVICE_INTEGRITY",
                "MEETS_STRONG_INTEGRITY"],
            "recentDeviceActivity": { "deviceActivityLevel": "LEVEL_2" },
            "deviceAttributes": { "sdkVersion": 35 }
        },
        "accountDetails": { "appLicensingVerdict": "LICENSED" },
        "environmentDetails": {
            "playProtectVerdict": "NO_ISSUES",
            "appAccessRiskVerdict": { "appsDetected": ["KNOWN_INSTALLED", "UNKNOWN_INSTALLED"] }
        }
    })
}

fn expectations() -> Expectations {
    Expectations {
        package_name: PACKAGE.to_owned(),
        request_hash_or_nonce: Expected::RequestHash(REQUEST_HASH.to_owned()),
        now_millis: TIMESTAMP + 2_000,
        max_age_millis: MAX_AGE,
        allowed_certificate_digests: vec!["other".to_owned(), DIGEST.to_owned()],
        require_play_recognized: true,
        required_device_labels: vec![
            DeviceLabel::MeetsDeviceIntegrity,
            DeviceLabel::MeetsStrongIntegrity,
        ],
        require_licensed: true,
    }
}

fn parse(value: &Value) -> PlayIntegrityVerdict {
    PlayIntegrityVerdict::from_json(value.to_string().as_bytes()).expect("verdict parses")
}

fn findings(value: &Value, exp: &Expectations) -> Vec<Finding> {
    check(&parse(value), exp)
}

/// Exactly one finding, with this code; returns its detail.
fn only(value: &Value, exp: &Expectations, code: ReasonCode) -> String {
    let found = findings(value, exp);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, code, "{found:?}");
    found[0].detail.clone()
}

#[test]
fn documented_verdict_parses_and_passes() {
    let verdict = parse(&verdict_json());
    let request = verdict.request_details.as_ref().expect("requestDetails");
    assert_eq!(request.request_package_name.as_deref(), Some(PACKAGE));
    assert_eq!(request.timestamp_millis, Some(TIMESTAMP));
    let app = verdict.app_integrity.as_ref().expect("appIntegrity");
    assert_eq!(
        app.app_recognition_verdict,
        Some(AppRecognitionVerdict::PlayRecognized)
    );
    assert_eq!(app.version_code, Some(42));
    let device = verdict.device_integrity.as_ref().expect("deviceIntegrity");
    assert_eq!(device.labels().len(), 3);
    assert_eq!(
        device
            .recent_device_activity
            .as_ref()
            .and_then(|a| a.device_activity_level.clone()),
        Some(DeviceActivityLevel::Level2)
    );
    assert_eq!(
        device
            .device_attributes
            .as_ref()
            .and_then(|a| a.sdk_version),
        Some(35)
    );
    assert_eq!(
        verdict
            .account_details
            .as_ref()
            .and_then(|a| a.app_licensing_verdict.clone()),
        Some(LicensingVerdict::Licensed)
    );
    let env = verdict
        .environment_details
        .as_ref()
        .expect("environmentDetails");
    assert_eq!(env.play_protect_verdict, Some(PlayProtectVerdict::NoIssues));
    assert_eq!(
        env.app_access_risk_verdict
            .as_ref()
            .and_then(|r| r.apps_detected.clone()),
        Some(vec![
            AppsDetected::KnownInstalled,
            AppsDetected::UnknownInstalled
        ])
    );
    assert_eq!(check(&verdict, &expectations()), Vec::new());
}

#[test]
fn classic_request_with_nonce_passes() {
    let mut v = verdict_json();
    let request = v["requestDetails"].as_object_mut().expect("object");
    request.remove("requestHash");
    request.insert("nonce".to_owned(), json!(NONCE));
    let exp = Expectations {
        request_hash_or_nonce: Expected::Nonce(NONCE.to_owned()),
        ..expectations()
    };
    assert_eq!(findings(&v, &exp), Vec::new());
}

#[test]
fn request_package_mismatch() {
    let mut v = verdict_json();
    v["requestDetails"]["requestPackageName"] = json!("com.evil.app");
    let detail = only(&v, &expectations(), ReasonCode::PackageMismatch);
    assert!(detail.contains("requestPackageName"), "{detail}");
}

#[test]
fn app_package_mismatch() {
    let mut v = verdict_json();
    v["appIntegrity"]["packageName"] = json!("com.evil.app");
    let detail = only(&v, &expectations(), ReasonCode::PackageMismatch);
    assert!(detail.contains("appIntegrity.packageName"), "{detail}");
}

#[test]
fn request_hash_mismatch_detail_hides_the_values() {
    let mut v = verdict_json();
    let other = "Zm9yZ2VkLXJlcXVlc3QtaGFzaC12YWx1ZS0xMjM0NTY";
    v["requestDetails"]["requestHash"] = json!(other);
    let detail = only(&v, &expectations(), ReasonCode::RequestHashMismatch);
    assert!(!detail.contains(other), "{detail}");
    assert!(!detail.contains(REQUEST_HASH), "{detail}");
    assert_eq!(
        ReasonCode::RequestHashMismatch.as_str(),
        "PI_REQUEST_HASH_MISMATCH"
    );
}

#[test]
fn request_hash_absent_when_expected() {
    let mut v = verdict_json();
    let request = v["requestDetails"].as_object_mut().expect("object");
    request.remove("requestHash");
    request.insert("nonce".to_owned(), json!(REQUEST_HASH));
    only(&v, &expectations(), ReasonCode::RequestHashMismatch);
}

#[test]
fn nonce_mismatch_detail_hides_the_values() {
    let mut v = verdict_json();
    let request = v["requestDetails"].as_object_mut().expect("object");
    request.remove("requestHash");
    let sent = "bm9uY2UtZnJvbS1hbi1lYXJsaWVyLXJlcXVlc3QtOTk5";
    request.insert("nonce".to_owned(), json!(sent));
    let exp = Expectations {
        request_hash_or_nonce: Expected::Nonce(NONCE.to_owned()),
        ..expectations()
    };
    let detail = only(&v, &exp, ReasonCode::NonceMismatch);
    assert!(
        !detail.contains(sent) && !detail.contains(NONCE),
        "{detail}"
    );
    assert_eq!(ReasonCode::NonceMismatch.as_str(), "PI_NONCE_MISMATCH");
}

#[test]
fn stale_verdict() {
    let v = verdict_json();
    let at_limit = Expectations {
        now_millis: TIMESTAMP + MAX_AGE,
        ..expectations()
    };
    assert_eq!(findings(&v, &at_limit), Vec::new());
    let late = Expectations {
        now_millis: TIMESTAMP + MAX_AGE + 1,
        ..expectations()
    };
    only(&v, &late, ReasonCode::Stale);
    assert_eq!(ReasonCode::Stale.as_str(), "PI_STALE");
}

#[test]
fn verdict_from_the_future() {
    let v = verdict_json();
    let within_skew = Expectations {
        now_millis: TIMESTAMP - MAX_CLOCK_SKEW_MILLIS,
        ..expectations()
    };
    assert_eq!(findings(&v, &within_skew), Vec::new());
    let beyond = Expectations {
        now_millis: TIMESTAMP - MAX_CLOCK_SKEW_MILLIS - 1,
        ..expectations()
    };
    only(&v, &beyond, ReasonCode::FromTheFuture);
    assert_eq!(ReasonCode::FromTheFuture.as_str(), "PI_FROM_THE_FUTURE");
}

#[test]
fn app_not_recognized() {
    for verdict in ["UNRECOGNIZED_VERSION", "UNEVALUATED", "SOMETHING_NEW"] {
        let mut v = verdict_json();
        v["appIntegrity"]["appRecognitionVerdict"] = json!(verdict);
        let detail = only(&v, &expectations(), ReasonCode::AppNotRecognized);
        assert!(detail.contains(verdict), "{detail}");
        let lenient = Expectations {
            require_play_recognized: false,
            ..expectations()
        };
        assert_eq!(findings(&v, &lenient), Vec::new());
    }
}

#[test]
fn certificate_unknown() {
    let mut v = verdict_json();
    v["appIntegrity"]["certificateSha256Digest"] = json!([DIGEST, "c29tZS1vdGhlci1zaWduZXI"]);
    let detail = only(&v, &expectations(), ReasonCode::CertificateUnknown);
    assert!(detail.contains("c29tZS1vdGhlci1zaWduZXI"), "{detail}");

    let mut absent = verdict_json();
    absent["appIntegrity"]
        .as_object_mut()
        .expect("object")
        .remove("certificateSha256Digest");
    only(&absent, &expectations(), ReasonCode::CertificateUnknown);

    let nothing_allowed = Expectations {
        allowed_certificate_digests: Vec::new(),
        ..expectations()
    };
    only(
        &verdict_json(),
        &nothing_allowed,
        ReasonCode::CertificateUnknown,
    );
}

#[test]
fn certificate_digest_padding_is_ignored() {
    let mut v = verdict_json();
    v["appIntegrity"]["certificateSha256Digest"] = json!(["AbCd"]);
    let exp = Expectations {
        allowed_certificate_digests: vec!["AbCd==".to_owned()],
        ..expectations()
    };
    assert_eq!(findings(&v, &exp), Vec::new());
}

#[test]
fn device_integrity_missing_names_each_label() {
    let mut v = verdict_json();
    v["deviceIntegrity"]["deviceRecognitionVerdict"] = json!(["MEETS_BASIC_INTEGRITY"]);
    let found = findings(&v, &expectations());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|f| f.code == ReasonCode::DeviceIntegrityMissing)
    );
    assert!(
        found[0].detail.contains("MEETS_DEVICE_INTEGRITY"),
        "{found:?}"
    );
    assert!(
        found[1].detail.contains("MEETS_STRONG_INTEGRITY"),
        "{found:?}"
    );

    let mut strong_only = verdict_json();
    strong_only["deviceIntegrity"]["deviceRecognitionVerdict"] = json!(["MEETS_DEVICE_INTEGRITY"]);
    let detail = only(
        &strong_only,
        &expectations(),
        ReasonCode::DeviceIntegrityMissing,
    );
    assert!(detail.contains("MEETS_STRONG_INTEGRITY"), "{detail}");

    // No labels at all: Google omits the list (or sends it empty).
    let mut none = verdict_json();
    none["deviceIntegrity"]
        .as_object_mut()
        .expect("object")
        .remove("deviceRecognitionVerdict");
    assert_eq!(findings(&none, &expectations()).len(), 2);
}

#[test]
fn unlicensed() {
    for verdict in ["UNLICENSED", "UNEVALUATED"] {
        let mut v = verdict_json();
        v["accountDetails"]["appLicensingVerdict"] = json!(verdict);
        let detail = only(&v, &expectations(), ReasonCode::Unlicensed);
        assert!(detail.contains(verdict), "{detail}");
        let lenient = Expectations {
            require_licensed: false,
            ..expectations()
        };
        assert_eq!(findings(&v, &lenient), Vec::new());
    }
}

#[test]
fn missing_sections_are_named_when_a_check_needs_them() {
    for section in [
        "requestDetails",
        "appIntegrity",
        "deviceIntegrity",
        "accountDetails",
    ] {
        let mut v = verdict_json();
        v.as_object_mut().expect("object").remove(section);
        let detail = only(&v, &expectations(), ReasonCode::SectionMissing);
        assert!(detail.contains(section), "{detail}");
    }
    let mut no_timestamp = verdict_json();
    no_timestamp["requestDetails"]
        .as_object_mut()
        .expect("object")
        .remove("timestampMillis");
    let detail = only(&no_timestamp, &expectations(), ReasonCode::SectionMissing);
    assert!(detail.contains("timestampMillis"), "{detail}");
}

#[test]
fn missing_sections_no_check_needs_are_fine() {
    let mut v = verdict_json();
    let top = v.as_object_mut().expect("object");
    top.remove("deviceIntegrity");
    top.remove("accountDetails");
    top.remove("environmentDetails");
    let exp = Expectations {
        required_device_labels: Vec::new(),
        require_licensed: false,
        ..expectations()
    };
    assert_eq!(findings(&v, &exp), Vec::new());
}

#[test]
fn empty_object_gives_the_needed_sections_missing() {
    let verdict = PlayIntegrityVerdict::from_json(b"{}").expect("parses");
    let codes: Vec<_> = check(&verdict, &expectations())
        .into_iter()
        .map(|f| (f.code, f.detail))
        .collect();
    assert_eq!(codes.len(), 4, "{codes:?}");
    assert!(codes.iter().all(|(c, _)| *c == ReasonCode::SectionMissing));
}

#[test]
fn unknown_enum_values_and_fields_parse() {
    let mut v = verdict_json();
    v["appIntegrity"]["appRecognitionVerdict"] = json!("PLAY_RECOGNIZED_V2");
    v["deviceIntegrity"]["deviceRecognitionVerdict"] =
        json!(["MEETS_DEVICE_INTEGRITY", "MEETS_QUANTUM_INTEGRITY"]);
    v["deviceIntegrity"]["recentDeviceActivity"]["deviceActivityLevel"] = json!("LEVEL_9");
    v["accountDetails"]["appLicensingVerdict"] = json!("MAYBE");
    v["environmentDetails"]["playProtectVerdict"] = json!("NEW_RISK");
    v["environmentDetails"]["appAccessRiskVerdict"]["appsDetected"] = json!(["NEW_KIND"]);
    v["newSection"] = json!({ "deep": [1, 2, { "x": null }] });
    v["requestDetails"]["newField"] = json!(true);
    v["deviceIntegrity"]["deviceAttributes"]["newAttribute"] = json!("x");
    v["deviceIntegrity"]["legacyDeviceRecognitionVerdict"] = json!(["MEETS_DEVICE_INTEGRITY"]);
    let verdict = parse(&v);
    let app = verdict.app_integrity.as_ref().expect("appIntegrity");
    assert_eq!(
        app.app_recognition_verdict,
        Some(AppRecognitionVerdict::Other(
            "PLAY_RECOGNIZED_V2".to_owned()
        ))
    );
    let labels = verdict.device_integrity.as_ref().expect("device").labels();
    assert_eq!(
        labels[1],
        DeviceLabel::Other("MEETS_QUANTUM_INTEGRITY".to_owned())
    );
    assert_eq!(labels[1].as_str(), "MEETS_QUANTUM_INTEGRITY");
    assert_eq!(
        verdict
            .account_details
            .as_ref()
            .and_then(|a| a.app_licensing_verdict.clone()),
        Some(LicensingVerdict::Other("MAYBE".to_owned()))
    );
    let codes: Vec<_> = check(&verdict, &expectations())
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert_eq!(
        codes,
        vec![
            ReasonCode::AppNotRecognized,
            ReasonCode::DeviceIntegrityMissing,
            ReasonCode::Unlicensed
        ]
    );
}

#[test]
fn integers_as_numbers_or_strings() {
    let mut v = verdict_json();
    v["requestDetails"]["timestampMillis"] = json!(TIMESTAMP);
    v["appIntegrity"]["versionCode"] = json!(42);
    v["deviceIntegrity"]["deviceAttributes"]["sdkVersion"] = json!("35");
    assert_eq!(findings(&v, &expectations()), Vec::new());

    let mut bad = verdict_json();
    bad["requestDetails"]["timestampMillis"] = json!("yesterday");
    assert!(matches!(
        PlayIntegrityVerdict::from_json(bad.to_string().as_bytes()),
        Err(PlayIntegrityError::Json(_))
    ));
}

#[test]
fn null_sections_are_absent() {
    let verdict = PlayIntegrityVerdict::from_json(
        br#"{"requestDetails":null,"appIntegrity":{"certificateSha256Digest":null}}"#,
    )
    .expect("parses");
    assert_eq!(verdict.request_details, None);
    assert_eq!(
        verdict
            .app_integrity
            .and_then(|a| a.certificate_sha256_digest),
        None
    );
}

#[test]
fn oversize_input_is_a_typed_error() {
    let mut big = verdict_json();
    big["padding"] = json!("x".repeat(MAX_VERDICT_LEN));
    let bytes = big.to_string().into_bytes();
    assert_eq!(
        PlayIntegrityVerdict::from_json(&bytes),
        Err(PlayIntegrityError::TooLarge {
            len: bytes.len(),
            max: MAX_VERDICT_LEN
        })
    );
    // Exactly the limit is accepted (whitespace padding keeps it valid JSON).
    let mut exact = verdict_json().to_string().into_bytes();
    exact.resize(MAX_VERDICT_LEN, b' ');
    assert!(PlayIntegrityVerdict::from_json(&exact).is_ok());
}

#[test]
fn invalid_json_is_a_typed_error() {
    for input in [
        &b""[..],
        b"not json",
        b"{",
        b"[]",
        b"[null, null]",
        b"null",
        b"\"verdict\"",
        br#"{"requestDetails": 5}"#,
        br#"{"deviceIntegrity": {"deviceRecognitionVerdict": "MEETS_DEVICE_INTEGRITY"}}"#,
        br#"{"requestDetails": {}} trailing"#,
        b"\xff\xfe{}",
    ] {
        assert!(
            matches!(
                PlayIntegrityVerdict::from_json(input),
                Err(PlayIntegrityError::Json(_))
            ),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn reason_codes_are_stable() {
    let all = [
        (ReasonCode::PackageMismatch, "PI_PACKAGE_MISMATCH"),
        (ReasonCode::RequestHashMismatch, "PI_REQUEST_HASH_MISMATCH"),
        (ReasonCode::NonceMismatch, "PI_NONCE_MISMATCH"),
        (ReasonCode::Stale, "PI_STALE"),
        (ReasonCode::FromTheFuture, "PI_FROM_THE_FUTURE"),
        (ReasonCode::AppNotRecognized, "PI_APP_NOT_RECOGNIZED"),
        (ReasonCode::CertificateUnknown, "PI_CERTIFICATE_UNKNOWN"),
        (
            ReasonCode::DeviceIntegrityMissing,
            "PI_DEVICE_INTEGRITY_MISSING",
        ),
        (ReasonCode::Unlicensed, "PI_UNLICENSED"),
        (ReasonCode::SectionMissing, "PI_SECTION_MISSING"),
    ];
    for (code, text) in all {
        assert_eq!(code.as_str(), text);
        assert_eq!(code.to_string(), text);
    }
}

fn arb_expectations() -> impl Strategy<Value = Expectations> {
    (
        ".{0,12}",
        any::<bool>(),
        ".{0,24}",
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(".{0,8}", 0..3),
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(package, hash, value, now, age, digests, (play, licensed))| Expectations {
                package_name: package,
                request_hash_or_nonce: if hash {
                    Expected::RequestHash(value)
                } else {
                    Expected::Nonce(value)
                },
                now_millis: now,
                max_age_millis: age,
                allowed_certificate_digests: digests,
                require_play_recognized: play,
                required_device_labels: vec![
                    DeviceLabel::MeetsDeviceIntegrity,
                    DeviceLabel::Other("X".to_owned()),
                ],
                require_licensed: licensed,
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = PlayIntegrityVerdict::from_json(&bytes);
    }

    #[test]
    fn mutated_verdicts_never_panic(
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        exp in arb_expectations(),
    ) {
        let mut bytes = verdict_json().to_string().into_bytes();
        let at = index.index(bytes.len());
        bytes[at] = byte;
        if let Ok(verdict) = PlayIntegrityVerdict::from_json(&bytes) {
            let _ = check(&verdict, &exp);
        }
    }

    #[test]
    fn any_parsed_verdict_checks_without_panicking(
        timestamp in prop_oneof![Just(json!(null)), any::<u64>().prop_map(|t| json!(t.to_string()))],
        labels in proptest::collection::vec(".{0,24}", 0..4),
        recognition in ".{0,24}",
        digests in proptest::collection::vec(".{0,16}", 0..3),
        hash in ".{0,16}",
        exp in arb_expectations(),
    ) {
        let v = json!({
            "requestDetails": { "requestPackageName": "p", "requestHash": hash, "nonce": hash,
                "timestampMillis": timestamp },
            "appIntegrity": { "appRecognitionVerdict": recognition,
                "certificateSha256Digest": digests },
            "deviceIntegrity": { "deviceRecognitionVerdict": labels },
            "accountDetails": { "appLicensingVerdict": recognition }
        });
        let verdict = PlayIntegrityVerdict::from_json(v.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for finding in check(&verdict, &exp) {
            // The detail never carries a whole expected hash or nonce longer than the
            // prefix shown (at most 6 characters).
            let expected = match &exp.request_hash_or_nonce {
                Expected::RequestHash(h) | Expected::Nonce(h) => h.as_str(),
            };
            let is_hash_finding = matches!(
                finding.code,
                ReasonCode::RequestHashMismatch | ReasonCode::NonceMismatch
            );
            if is_hash_finding && expected.chars().count() > 6 {
                prop_assert!(!finding.detail.contains(expected), "{}", finding.detail);
            }
        }
    }
}
