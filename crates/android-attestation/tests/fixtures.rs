//! The parser against android/keyattestation's test data (tests/data/testdata, see
//! tests/data/SOURCE.md): every `<name>.pem` with a `<name>.json` beside it must parse to
//! exactly that JSON; the malformed chains must give typed errors; nothing panics.

mod common;

use std::path::{Path, PathBuf};

use common::{data_dir, files, name};

use android_attestation::{AttestationError, KeyDescription, read_pem_chain};
use proptest::prelude::*;
use serde_json::Value;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// How many `<name>.pem` + `<name>.json` pairs the test data holds; the test fails if it finds
/// another number, so no fixture is silently skipped.
const EXPECTED_PAIRS: usize = 21;

/// Reads a fixture JSON file. Two upstream files carry whole-line `//` comments (upstream
/// reads them leniently); those lines are dropped. Base64 may contain `//`, so only lines
/// that start with it count.
fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read fixture JSON");
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", name(path)))
}

/// Drops upstream's `areTagsOrdered: true` from both AuthorizationLists: the flag records,
/// in android/keyattestation's lenient mode, whether the tags were in order; this parser
/// rejects out-of-order lists, so the flag would always be true and is not modelled.
/// A `false` flag could not come from a list this parser accepts, so it is left in (and the
/// comparison fails).
fn without_tags_ordered(mut value: Value) -> Value {
    for list in ["softwareEnforced", "hardwareEnforced"] {
        if let Some(map) = value.get_mut(list).and_then(Value::as_object_mut)
            && map.get("areTagsOrdered") == Some(&Value::Bool(true))
        {
            map.remove("areTagsOrdered");
        }
    }
    value
}

fn leaf_description(pem: &Path) -> KeyDescription {
    let chain = read_pem_chain(pem).unwrap_or_else(|e| panic!("{}: {e}", name(pem)));
    let leaf = chain.first().expect("a certificate");
    KeyDescription::from_certificate_der(leaf)
        .unwrap_or_else(|e| panic!("{}: {e}", name(pem)))
        .unwrap_or_else(|| panic!("{}: leaf has no key attestation extension", name(pem)))
}

/// The raw extension value of a DER certificate, if it has the key attestation extension.
fn extension_value(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(cert_der).expect("certificate");
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == android_attestation::KEY_DESCRIPTION_OID)
        .map(|e| e.value.to_vec())
}

fn pairs() -> Vec<(PathBuf, PathBuf)> {
    let mut pems = Vec::new();
    files(&data_dir(), "pem", &mut pems);
    pems.sort();
    pems.into_iter()
        .filter(|pem| !pem.components().any(|c| c.as_os_str() == "invalid"))
        .filter_map(|pem| {
            let json = pem.with_extension("json");
            json.exists().then_some((pem, json))
        })
        .collect()
}

#[test]
fn every_fixture_serializes_to_its_json() {
    let pairs = pairs();
    let mut failures = Vec::new();
    for (pem, json) in &pairs {
        let parsed = leaf_description(pem);
        let actual = serde_json::to_value(&parsed).expect("serialize");
        let raw_expected = read_json(json);
        let expected = without_tags_ordered(raw_expected.clone());
        if actual != expected {
            failures.push(format!(
                "fixture {}:\n--- expected\n{}\n+++ actual\n{}",
                name(pem),
                serde_json::to_string_pretty(&expected).unwrap_or_default(),
                serde_json::to_string_pretty(&actual).unwrap_or_default(),
            ));
            continue;
        }
        // And the other way: the fixture JSON (as upstream wrote it) deserializes to the value
        // parsed from the certificate.
        let from_json: KeyDescription = serde_json::from_value(raw_expected)
            .unwrap_or_else(|e| panic!("{}: deserialize: {e}", name(json)));
        if from_json != parsed {
            failures.push(format!(
                "fixture {}: the JSON deserializes to a different value",
                name(pem)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(
        pairs.len(),
        EXPECTED_PAIRS,
        "fixture pairs found: {:?}",
        pairs.iter().map(|(p, _)| name(p)).collect::<Vec<_>>()
    );
}

#[test]
fn every_fixture_json_has_its_chain() {
    let mut jsons = Vec::new();
    files(&data_dir(), "json", &mut jsons);
    let orphans: Vec<String> = jsons
        .iter()
        .filter(|json| {
            json.file_name()
                .is_some_and(|n| n != "complete_authlist.json")
        })
        .filter(|json| !json.with_extension("pem").exists())
        .map(|json| name(json))
        .collect();
    assert!(orphans.is_empty(), "JSON without PEM: {orphans:?}");
    assert_eq!(jsons.len(), EXPECTED_PAIRS + 1);
}

#[test]
fn only_the_leaf_carries_the_extension() {
    let mut pems = Vec::new();
    files(&data_dir(), "pem", &mut pems);
    let mut checked = 0;
    for pem in pems
        .iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "invalid"))
    {
        let chain = read_pem_chain(pem).expect("chain");
        for (i, cert) in chain.iter().enumerate().skip(1) {
            assert_eq!(
                KeyDescription::from_certificate_der(cert).expect("parse"),
                None,
                "{} certificate {i}",
                name(pem)
            );
            checked += 1;
        }
    }
    assert!(
        checked > 2 * EXPECTED_PAIRS,
        "checked {checked} certificates"
    );
}

#[test]
fn allow_while_on_body_chain() {
    let parsed = leaf_description(&data_dir().join("allow_while_on_body.pem"));
    assert!(
        parsed.hardware_enforced.allow_while_on_body
            || parsed.software_enforced.allow_while_on_body,
        "{parsed:?}"
    );
}

#[test]
fn tags_not_in_ascending_order_is_a_typed_error() {
    let chain =
        read_pem_chain(data_dir().join("invalid/tags_not_in_ascending_order.pem")).expect("chain");
    let err = KeyDescription::from_certificate_der(&chain[0]).expect_err("must fail");
    eprintln!("{err}");
    assert!(
        matches!(err, AttestationError::TagsNotAscending { .. }),
        "{err:?}"
    );
}

#[test]
fn malformed_root_of_trust_device_locked_is_a_typed_error() {
    let chain =
        read_pem_chain(data_dir().join("invalid/malformed_rot_device_locked.pem")).expect("chain");
    let err = KeyDescription::from_certificate_der(&chain[0]).expect_err("must fail");
    eprintln!("{err}");
    match &err {
        AttestationError::WrongType { field, .. } | AttestationError::Malformed { field, .. } => {
            assert!(field.ends_with("rootOfTrust.deviceLocked"), "{err:?}");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn complete_authlist_round_trips() {
    let expected = read_json(&data_dir().join("complete_authlist.json"));
    let parsed: KeyDescription = serde_json::from_value(expected.clone()).expect("deserialize");
    assert_eq!(serde_json::to_value(&parsed).expect("serialize"), expected);
}

#[test]
fn garbage_and_truncations_are_errors() {
    assert!(KeyDescription::from_der(&[]).is_err());
    assert!(KeyDescription::from_der(&[0x30, 0x00]).is_err());
    assert!(KeyDescription::from_certificate_der(b"not a certificate").is_err());
    let chain = read_pem_chain(data_dir().join("akita/sdk34/TEE_EC_NONE.pem")).expect("chain");
    let value = extension_value(&chain[0]).expect("extension");
    assert!(KeyDescription::from_der(&value).is_ok());
    for cut in 0..value.len() {
        assert!(
            KeyDescription::from_der(&value[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut trailing = value.clone();
    trailing.push(0);
    assert!(KeyDescription::from_der(&trailing).is_err());
}

/// The leaf extension values of every fixture pair, read once.
fn fixture_extensions() -> &'static [Vec<u8>] {
    static EXTENSIONS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    EXTENSIONS.get_or_init(|| {
        pairs()
            .iter()
            .map(|(pem, _)| {
                let chain = read_pem_chain(pem).expect("chain");
                extension_value(&chain[0]).expect("extension")
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = KeyDescription::from_der(&bytes);
        let _ = KeyDescription::from_certificate_der(&bytes);
    }

    #[test]
    fn mutated_fixture_extensions_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let extensions = fixture_extensions();
        let mut value = extensions[which.index(extensions.len())].clone();
        for (at, byte, kind) in edits {
            if value.is_empty() {
                break;
            }
            let i = at.index(value.len());
            match kind {
                0 => value[i] = byte,
                1 => value.insert(i, byte),
                _ => { value.remove(i); }
            }
        }
        if let Ok(parsed) = KeyDescription::from_der(&value) {
            // Whatever parses serializes and reads back to the same value.
            let json = serde_json::to_value(&parsed).expect("serialize");
            let back: KeyDescription = serde_json::from_value(json).expect("deserialize");
            prop_assert_eq!(back, parsed);
        }
    }
}

/// A root of trust whose `deviceLocked` is an empty element of another tag, found by the
/// `android_key_description` fuzz target (asn1-rs 0.7.2's DER check of a BOOLEAN read the
/// first content byte before checking the tag and the length, and panicked): a typed error
/// naming the field.
#[test]
fn an_empty_boolean_is_a_typed_error_not_a_panic() {
    let der = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/regressions/empty_boolean_device_locked.der"),
    )
    .expect("read");
    let err = KeyDescription::from_der(&der).expect_err("must fail");
    match &err {
        AttestationError::WrongType {
            field, expected, ..
        } => {
            assert!(field.ends_with("rootOfTrust.deviceLocked"), "{err:?}");
            assert_eq!(*expected, "BOOLEAN");
        }
        other => panic!("unexpected error {other:?}"),
    }
}
