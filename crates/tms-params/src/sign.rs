//! Ed25519 (RFC 8032) signatures over the exact encoded bytes of a `ParameterSet`.
//!
//! The signature covers the encoded payload, never a re-encoding: a verifier decodes the
//! bytes it checked. prost encodes a message without `map` fields deterministically, and the
//! crate builds every list in canonical order, so the same effective set at the same version
//! gives the same payload bytes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use mpos_proto::terminal_management as pb;
use prost::Message;

use crate::error::SignatureError;
use crate::resolve::Effective;

/// The value of `SignedParameterSet.algorithm`.
pub const ALGORITHM: &str = "Ed25519";

/// The payload a terminal downloads: `effective` as version `version` of `terminal_id`, in
/// its device form (values without sources, see [`Effective::to_device_proto`]).
pub fn parameter_set(
    tenant_id: &str,
    terminal_id: &str,
    version: u64,
    issued_at_micros: i64,
    effective: &Effective,
) -> pb::ParameterSet {
    pb::ParameterSet {
        tenant_id: tenant_id.to_owned(),
        terminal_id: terminal_id.to_owned(),
        version,
        issued_at: Some(mpos_proto::timestamp_from_micros(issued_at_micros)),
        parameters: Some(effective.to_device_proto()),
    }
}

/// Signs the encoding of `set` with `key`. Use a key dedicated to parameter sets: the
/// signature is over the bare payload, without a context string.
pub fn sign(set: &pb::ParameterSet, key: &SigningKey, key_id: &str) -> pb::SignedParameterSet {
    let payload = set.encode_to_vec();
    let signature = sign_payload(&payload, key);
    pb::SignedParameterSet {
        payload,
        signature: signature.to_vec(),
        key_id: key_id.to_owned(),
        algorithm: ALGORITHM.to_owned(),
        tenant_id: set.tenant_id.clone(),
        terminal_id: set.terminal_id.clone(),
        version: set.version,
    }
}

/// SHA-256 of the signed payload: what a terminal reports in
/// `ParameterSetAcknowledgement.payload_sha256`, and what the platform compares it with.
pub fn payload_digest(signed: &pb::SignedParameterSet) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(&signed.payload).into()
}

/// The Ed25519 signature of `payload`.
fn sign_payload(payload: &[u8], key: &SigningKey) -> [u8; 64] {
    key.sign(payload).to_bytes()
}

/// Checks the signature of `payload` (strict RFC 8032 verification: no malleable or
/// small-order signatures).
fn verify_payload(
    payload: &[u8],
    signature: &[u8],
    key: &VerifyingKey,
) -> Result<(), SignatureError> {
    let bytes: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::MalformedSignature(signature.len()))?;
    key.verify_strict(payload, &Signature::from_bytes(&bytes))
        .map_err(|_| SignatureError::Invalid)
}

/// Verifies `signed` under `key` and returns the decoded payload. Refuses another algorithm,
/// a bad signature, a payload that is not a `ParameterSet`, and clear-text copies (tenant,
/// terminal, version) that differ from the payload. Choosing `key` by `key_id` is the
/// caller's job.
pub fn verify(
    signed: &pb::SignedParameterSet,
    key: &VerifyingKey,
) -> Result<pb::ParameterSet, SignatureError> {
    if signed.algorithm != ALGORITHM {
        return Err(SignatureError::UnsupportedAlgorithm);
    }
    verify_payload(&signed.payload, &signed.signature, key)?;
    let set = pb::ParameterSet::decode(signed.payload.as_slice())
        .map_err(|error| SignatureError::MalformedPayload(error.to_string()))?;
    if set.tenant_id != signed.tenant_id {
        return Err(SignatureError::ClearFieldMismatch("tenant_id"));
    }
    if set.terminal_id != signed.terminal_id {
        return Err(SignatureError::ClearFieldMismatch("terminal_id"));
    }
    if set.version != signed.version {
        return Err(SignatureError::ClearFieldMismatch("version"));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<const N: usize>(text: &str) -> [u8; N] {
        let mut out = [0; N];
        hex::decode_to_slice(text, &mut out).expect("hex");
        out
    }

    /// RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
    const RFC8032_VECTORS: [(&str, &str, &str, &str); 2] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];

    #[test]
    fn the_payload_digest_is_sha256_of_the_payload() {
        // FIPS 180-2 Appendix B.1: SHA-256("abc").
        let signed = pb::SignedParameterSet {
            payload: b"abc".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            hex::encode(payload_digest(&signed)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn signing_matches_rfc8032_section_7_1_tests_1_and_2() {
        for (secret, public, message, signature) in RFC8032_VECTORS {
            let key = SigningKey::from_bytes(&bytes::<32>(secret));
            assert_eq!(key.verifying_key().to_bytes(), bytes::<32>(public));
            let message = hex::decode(message).expect("hex");
            let expected = bytes::<64>(signature);
            assert_eq!(sign_payload(&message, &key), expected);
            let verifying = VerifyingKey::from_bytes(&bytes::<32>(public)).expect("public key");
            assert_eq!(verify_payload(&message, &expected, &verifying), Ok(()));
            let mut tampered = message.clone();
            tampered.push(0);
            assert_eq!(
                verify_payload(&tampered, &expected, &verifying),
                Err(SignatureError::Invalid)
            );
        }
    }
}
