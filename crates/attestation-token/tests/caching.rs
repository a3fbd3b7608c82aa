//! The caching verifier: a token verified once is answered from memory, but its claims are
//! checked at every call, and anything else is verified in full.

#![allow(clippy::unwrap_used)]

use attestation_token::{
    CachingVerifier, Claims, Expected, TokenError, TokenIssuer, TokenVerifier, Verdict,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

const NOW: u64 = 1_800_000_000;

fn new_issuer() -> TokenIssuer {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    TokenIssuer::new("k1", pkcs8.as_ref()).unwrap()
}

fn claims(device: &str) -> Claims {
    Claims {
        iss: "attestation-1".into(),
        sub: device.into(),
        tenant: "tenant-a".into(),
        verdict: Verdict::Flag,
        reasons: vec!["PI_UNLICENSED".into()],
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 300,
        jti: format!("jti-{device}"),
        policy_version: 3,
        cnf: None,
    }
}

fn expected<'a>(tenant: &'a str, device: &'a str, now: u64) -> Expected<'a> {
    Expected {
        tenant,
        device,
        now_unix: now,
        leeway_seconds: 0,
    }
}

#[test]
fn a_remembered_token_is_checked_again_at_every_call() {
    let issuer = new_issuer();
    let verifier =
        CachingVerifier::new(TokenVerifier::new().with_key("k1", issuer.public_key()), 16);
    let token = issuer.issue(&claims("device-1")).unwrap();
    let first = verifier
        .verify(&token, &expected("tenant-a", "device-1", NOW))
        .unwrap();
    assert_eq!(verifier.remembered(), 1);
    let again = verifier
        .verify(&token, &expected("tenant-a", "device-1", NOW + 1))
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(verifier.remembered(), 1);
    // Remembered, but for another tenant or device, expired, or not yet valid: refused.
    assert_eq!(
        verifier.verify(&token, &expected("tenant-b", "device-1", NOW)),
        Err(TokenError::WrongTenant)
    );
    assert_eq!(
        verifier.verify(&token, &expected("tenant-a", "device-2", NOW)),
        Err(TokenError::WrongDevice)
    );
    assert!(matches!(
        verifier.verify(&token, &expected("tenant-a", "device-1", NOW + 300)),
        Err(TokenError::Expired { .. })
    ));
    assert!(matches!(
        verifier.verify(&token, &expected("tenant-a", "device-1", NOW - 3_600)),
        Err(TokenError::NotYetValid { .. })
    ));
}

#[test]
fn another_text_is_verified_in_full() {
    let issuer = new_issuer();
    let verifier =
        CachingVerifier::new(TokenVerifier::new().with_key("k1", issuer.public_key()), 16);
    let token = issuer.issue(&claims("device-1")).unwrap();
    verifier
        .verify(&token, &expected("tenant-a", "device-1", NOW))
        .unwrap();
    // One character of the signature changed: not remembered, and the signature fails.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        verifier.verify(&tampered, &expected("tenant-a", "device-1", NOW)),
        Err(TokenError::BadSignature)
    );
    // A token signed by another key under the same kid is not remembered either.
    let stranger = new_issuer();
    let forged = stranger.issue(&claims("device-1")).unwrap();
    assert_eq!(
        verifier.verify(&forged, &expected("tenant-a", "device-1", NOW)),
        Err(TokenError::BadSignature)
    );
    // Refusals are not remembered.
    assert_eq!(verifier.remembered(), 1);
}

#[test]
fn a_full_memory_forgets_expired_tokens_first_and_everything_if_none_expired() {
    let issuer = new_issuer();
    let verifier =
        CachingVerifier::new(TokenVerifier::new().with_key("k1", issuer.public_key()), 3);
    let mut short = claims("device-0");
    short.exp = NOW + 5;
    let short = issuer.issue(&short).unwrap();
    verifier
        .verify(&short, &expected("tenant-a", "device-0", NOW))
        .unwrap();
    for device in ["device-1", "device-2"] {
        let token = issuer.issue(&claims(device)).unwrap();
        verifier
            .verify(&token, &expected("tenant-a", device, NOW))
            .unwrap();
    }
    assert_eq!(verifier.remembered(), 3);
    // Full at NOW + 10: the expired token makes room.
    let token = issuer.issue(&claims("device-3")).unwrap();
    verifier
        .verify(&token, &expected("tenant-a", "device-3", NOW + 10))
        .unwrap();
    assert_eq!(verifier.remembered(), 3);
    // Full with nothing expired: everything is forgotten, the new token kept.
    let token = issuer.issue(&claims("device-4")).unwrap();
    verifier
        .verify(&token, &expected("tenant-a", "device-4", NOW + 10))
        .unwrap();
    assert_eq!(verifier.remembered(), 1);
}

#[test]
fn rotating_keys_means_a_new_verifier_that_remembers_nothing() {
    let old = new_issuer();
    let token = old.issue(&claims("device-1")).unwrap();
    let verifier = CachingVerifier::new(TokenVerifier::new().with_key("k1", old.public_key()), 16);
    verifier
        .verify(&token, &expected("tenant-a", "device-1", NOW))
        .unwrap();
    let new = new_issuer();
    let rotated = CachingVerifier::new(TokenVerifier::new().with_key("k1", new.public_key()), 16);
    assert_eq!(
        rotated.verify(&token, &expected("tenant-a", "device-1", NOW)),
        Err(TokenError::BadSignature)
    );
}
