//! Signed parameter sets: round trip, and every way a verification must fail.

mod common;

use common::{full, typed};
use ed25519_dalek::SigningKey;
use mpos_proto::terminal_management as pb;
use prost::Message;
use tms_params::{Level, LevelKind, SignatureError, parameter_set, resolve, sign, verify};

fn signed_set() -> (pb::ParameterSet, pb::SignedParameterSet, SigningKey) {
    let tenant = typed(&full());
    let effective = resolve(&[Level {
        kind: LevelKind::Tenant,
        node_id: "t-1",
        parameters: &tenant,
    }])
    .expect("resolves");
    let set = parameter_set("t-1", "term-1", 7, 1_764_970_000_000_000, &effective);
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let signed = sign(&set, &key, "params-2026-12");
    (set, signed, key)
}

#[test]
fn a_signed_set_verifies_and_decodes_to_the_set() {
    let (set, signed, key) = signed_set();
    assert_eq!(signed.algorithm, "Ed25519");
    assert_eq!(signed.key_id, "params-2026-12");
    assert_eq!(signed.signature.len(), 64);
    assert_eq!((signed.terminal_id.as_str(), signed.version), ("term-1", 7));
    let parameters = set.parameters.as_ref().expect("parameters");
    assert!(
        parameters.sources.is_empty(),
        "the device payload carries no provenance"
    );
    assert_eq!(parameters.transaction_currency_numeric, 978);
    assert_eq!(verify(&signed, &key.verifying_key()), Ok(set));
}

#[test]
fn the_same_set_signs_to_the_same_bytes() {
    let (_, first, _) = signed_set();
    let (_, second, _) = signed_set();
    assert_eq!(first, second, "encoding and Ed25519 are deterministic");
    let encoded = first.encode_to_vec();
    assert_eq!(
        pb::SignedParameterSet::decode(encoded.as_slice()),
        Ok(first)
    );
}

#[test]
fn a_tampered_payload_fails() {
    let (_, mut signed, key) = signed_set();
    let last = signed.payload.len() - 1;
    signed.payload[last] ^= 0x01;
    assert_eq!(
        verify(&signed, &key.verifying_key()),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn a_tampered_signature_fails() {
    let (_, mut signed, key) = signed_set();
    signed.signature[0] ^= 0x80;
    assert_eq!(
        verify(&signed, &key.verifying_key()),
        Err(SignatureError::Invalid)
    );
    signed.signature.truncate(63);
    assert_eq!(
        verify(&signed, &key.verifying_key()),
        Err(SignatureError::MalformedSignature(63))
    );
}

#[test]
fn another_key_fails() {
    let (_, signed, _) = signed_set();
    let other = SigningKey::from_bytes(&[0x43; 32]);
    assert_eq!(
        verify(&signed, &other.verifying_key()),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn another_algorithm_is_refused() {
    let (_, mut signed, key) = signed_set();
    signed.algorithm = "ed25519ph".into();
    assert_eq!(
        verify(&signed, &key.verifying_key()),
        Err(SignatureError::UnsupportedAlgorithm)
    );
}

#[test]
fn clear_copies_must_match_the_signed_payload() {
    let (_, signed, key) = signed_set();
    let mut other_terminal = signed.clone();
    other_terminal.terminal_id = "term-2".into();
    assert_eq!(
        verify(&other_terminal, &key.verifying_key()),
        Err(SignatureError::ClearFieldMismatch("terminal_id"))
    );
    let mut other_version = signed.clone();
    other_version.version = 8;
    assert_eq!(
        verify(&other_version, &key.verifying_key()),
        Err(SignatureError::ClearFieldMismatch("version"))
    );
    let mut other_tenant = signed;
    other_tenant.tenant_id = "t-2".into();
    assert_eq!(
        verify(&other_tenant, &key.verifying_key()),
        Err(SignatureError::ClearFieldMismatch("tenant_id"))
    );
}

#[test]
fn a_signed_payload_that_is_not_a_parameter_set_is_refused() {
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let payload = vec![0xFF, 0xFF, 0xFF];
    let signature = ed25519_dalek::Signer::sign(&key, &payload)
        .to_bytes()
        .to_vec();
    let signed = pb::SignedParameterSet {
        payload,
        signature,
        algorithm: "Ed25519".into(),
        ..Default::default()
    };
    assert!(matches!(
        verify(&signed, &key.verifying_key()),
        Err(SignatureError::MalformedPayload(_))
    ));
}
