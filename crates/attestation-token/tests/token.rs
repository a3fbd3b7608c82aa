//! Issue / verify round trips and every refusal of the attestation token.

#![allow(clippy::unwrap_used)]

use attestation_token::{
    Claims, Confirmation, Expected, MAX_TOKEN_LEN, PublicKey, TOKEN_TYPE, TokenError, TokenIssuer,
    TokenVerifier, Verdict, verify_es256_jws,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

const NOW: u64 = 1_800_000_000;
const TENANT: &str = "tenant-a";
const DEVICE: &str = "device-42";

fn pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn issuer(kid: &str) -> TokenIssuer {
    TokenIssuer::new(kid, &pkcs8()).unwrap()
}

fn claims() -> Claims {
    Claims {
        iss: "attestation-1".into(),
        sub: DEVICE.into(),
        tenant: TENANT.into(),
        verdict: Verdict::Allow,
        reasons: vec![],
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 300,
        jti: "0193a6f2-7c1e-7000-8000-000000000001".into(),
        policy_version: 7,
        cnf: None,
    }
}

fn expected(now: u64) -> Expected<'static> {
    Expected {
        tenant: TENANT,
        device: DEVICE,
        now_unix: now,
        leeway_seconds: 30,
    }
}

fn setup() -> (TokenIssuer, TokenVerifier) {
    let issuer = issuer("k1");
    let verifier = TokenVerifier::new().with_key("k1", issuer.public_key());
    (issuer, verifier)
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn round_trip() {
    let (issuer, verifier) = setup();
    let mut c = claims();
    c.verdict = Verdict::Flag;
    c.reasons = vec!["PI_DEVICE_BASIC_ONLY".into(), "KA_PATCH_OLD".into()];
    let token = issuer.issue(&c).unwrap();
    let verified = verifier.verify(&token, &expected(NOW)).unwrap();
    assert_eq!(verified.kid, "k1");
    assert_eq!(verified.claims, c);

    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": "ES256", "typ": TOKEN_TYPE, "kid": "k1"})
    );
    // the primitive verifies it too
    verify_es256_jws(&token, &issuer.public_key()).unwrap();
}

#[test]
fn keys_from_pem_spki_and_sec1() {
    use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
    let der = pkcs8();
    let secret = p256::SecretKey::from_pkcs8_der(&der).unwrap();
    let pem = secret.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let issuer = TokenIssuer::from_pem("k1", &pem).unwrap();
    let public = secret.public_key();
    let spki_pem = public
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let spki_der = public.to_public_key_der().unwrap();
    let compressed = p256::EncodedPoint::from(public).compress();
    for key in [
        PublicKey::from_spki_pem(&spki_pem).unwrap(),
        PublicKey::from_spki_der(spki_der.as_bytes()).unwrap(),
        PublicKey::from_sec1(compressed.as_bytes()).unwrap(),
    ] {
        assert_eq!(key, issuer.public_key());
        let verifier = TokenVerifier::new().with_key("k1", key);
        let token = issuer.issue(&claims()).unwrap();
        verifier.verify(&token, &expected(NOW)).unwrap();
    }
    assert!(matches!(
        PublicKey::from_spki_pem(&pem),
        Err(TokenError::InvalidKey(_))
    ));
    assert!(matches!(
        PublicKey::from_sec1(&[4; 65]),
        Err(TokenError::InvalidKey(_))
    ));
    assert!(matches!(
        TokenIssuer::new("k1", b"not a key"),
        Err(TokenError::InvalidKey(_))
    ));
    assert!(matches!(
        TokenIssuer::new("", &der),
        Err(TokenError::InvalidKey(_))
    ));
}

#[test]
fn expired_and_within_leeway() {
    let (issuer, verifier) = setup();
    let token = issuer.issue(&claims()).unwrap();
    let exp = NOW + 300;
    // past exp but within the 30 s leeway
    verifier.verify(&token, &expected(exp)).unwrap();
    verifier.verify(&token, &expected(exp + 29)).unwrap();
    assert_eq!(
        verifier.verify(&token, &expected(exp + 30)),
        Err(TokenError::Expired { exp, now: exp + 30 })
    );
    let strict = Expected {
        leeway_seconds: 0,
        ..expected(exp)
    };
    assert!(matches!(
        verifier.verify(&token, &strict),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn not_yet_valid() {
    let (issuer, verifier) = setup();
    let token = issuer.issue(&claims()).unwrap();
    let nbf = NOW - 10;
    verifier.verify(&token, &expected(nbf - 30)).unwrap();
    assert_eq!(
        verifier.verify(&token, &expected(nbf - 31)),
        Err(TokenError::NotYetValid { nbf, now: nbf - 31 })
    );
}

#[test]
fn signature_bit_flipped() {
    let (issuer, verifier) = setup();
    let token = issuer.issue(&claims()).unwrap();
    let p = parts(&token);
    for bit in [0usize, 9, 255, 256, 511] {
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
        sig[bit / 8] ^= 1 << (bit % 8);
        let forged = format!("{}.{}.{}", p[0], p[1], b64(&sig));
        assert_eq!(
            verifier.verify(&forged, &expected(NOW)),
            Err(TokenError::BadSignature)
        );
    }
}

#[test]
fn payload_changed() {
    let (issuer, verifier) = setup();
    let token = issuer.issue(&claims()).unwrap();
    let p = parts(&token);
    let mut c = claims();
    c.exp += 86_400;
    c.reasons = vec![];
    let forged = format!(
        "{}.{}.{}",
        p[0],
        b64(&serde_json::to_vec(&c).unwrap()),
        p[2]
    );
    assert_ne!(forged, token);
    assert_eq!(
        verifier.verify(&forged, &expected(NOW)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn signed_by_another_key_with_the_same_kid() {
    let (_, verifier) = setup();
    let impostor = issuer("k1");
    let token = impostor.issue(&claims()).unwrap();
    assert_eq!(
        verifier.verify(&token, &expected(NOW)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn another_tenants_token() {
    let (issuer, verifier) = setup();
    let mut c = claims();
    c.tenant = "tenant-b".into();
    let token = issuer.issue(&c).unwrap();
    assert_eq!(
        verifier.verify(&token, &expected(NOW)),
        Err(TokenError::WrongTenant)
    );
}

#[test]
fn another_devices_token() {
    let (issuer, verifier) = setup();
    let mut c = claims();
    c.sub = "device-43".into();
    let token = issuer.issue(&c).unwrap();
    assert_eq!(
        verifier.verify(&token, &expected(NOW)),
        Err(TokenError::WrongDevice)
    );
}

#[test]
fn unknown_kid() {
    let (_, verifier) = setup();
    let other = issuer("k2");
    let token = other.issue(&claims()).unwrap();
    assert_eq!(
        verifier.verify(&token, &expected(NOW)),
        Err(TokenError::UnknownKey { kid: "k2".into() })
    );
    // a long kid is cut in the error
    let long = issuer(&"x".repeat(200));
    let token = long.issue(&claims()).unwrap();
    let err = verifier.verify(&token, &expected(NOW)).unwrap_err();
    assert_eq!(
        err,
        TokenError::UnknownKey {
            kid: "x".repeat(32)
        }
    );
}

#[test]
fn block_verdict_is_never_issued_and_refused() {
    let (issuer, verifier) = setup();
    let mut c = claims();
    c.verdict = Verdict::Block;
    assert_eq!(issuer.issue(&c), Err(TokenError::Blocked));

    // a validly signed token saying block (signed by hand with the same key)
    let der = pkcs8();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .unwrap();
    let verifier = {
        let i = TokenIssuer::new("k9", &der).unwrap();
        verifier.with_key("k9", i.public_key())
    };
    let header = b64(br#"{"alg":"ES256","typ":"mpos-attestation+jwt","kid":"k9"}"#);
    let input = format!("{header}.{}", b64(&serde_json::to_vec(&c).unwrap()));
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let token = format!("{input}.{}", b64(sig.as_ref()));
    assert_eq!(
        verifier.verify(&token, &expected(NOW)),
        Err(TokenError::Blocked)
    );
}

#[test]
fn unissuable_claims() {
    let (issuer, _) = setup();
    let mut c = claims();
    c.exp = c.nbf;
    assert!(matches!(
        issuer.issue(&c),
        Err(TokenError::InvalidClaims(_))
    ));
    let mut c = claims();
    c.tenant.clear();
    assert!(matches!(
        issuer.issue(&c),
        Err(TokenError::InvalidClaims(_))
    ));
    let mut c = claims();
    c.reasons = vec!["R".repeat(5000)];
    assert!(matches!(issuer.issue(&c), Err(TokenError::TooLarge { .. })));
}

#[test]
fn alg_none_refused() {
    let (issuer, verifier) = setup();
    let token = issuer.issue(&claims()).unwrap();
    let p = parts(&token);
    let header = b64(br#"{"alg":"none","typ":"mpos-attestation+jwt","kid":"k1"}"#);
    for forged in [
        format!("{header}.{}.", p[1]),
        format!("{header}.{}.{}", p[1], p[2]),
    ] {
        let err = verifier.verify(&forged, &expected(NOW)).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::UnsupportedAlgorithm { .. } | TokenError::Malformed(_)
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        verifier.verify(&format!("{header}.{}.{}", p[1], p[2]), &expected(NOW)),
        Err(TokenError::UnsupportedAlgorithm { alg: "none".into() })
    );
}

#[test]
fn hs256_with_the_public_key_as_secret_refused() {
    let (issuer, verifier) = setup();
    let public = issuer.public_key();
    let header = b64(br#"{"alg":"HS256","typ":"mpos-attestation+jwt","kid":"k1"}"#);
    let input = format!("{header}.{}", b64(&serde_json::to_vec(&claims()).unwrap()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public.sec1_uncompressed());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    let token = format!("{input}.{}", b64(tag.as_ref()));
    assert_eq!(
        verifier.verify(&token, &expected(NOW)),
        Err(TokenError::UnsupportedAlgorithm {
            alg: "HS256".into()
        })
    );
}

#[test]
fn wrong_typ_and_extra_header_members_refused() {
    let (issuer, verifier) = setup();
    let token = issuer.issue(&claims()).unwrap();
    let p = parts(&token);
    for (header, want) in [
        (r#"{"alg":"ES256","kid":"k1"}"#, TokenError::WrongType),
        (
            r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#,
            TokenError::WrongType,
        ),
        (
            r#"{"alg":"ES256","typ":"mpos-attestation+jwt","kid":"k1","crit":["x"]}"#,
            TokenError::Malformed("unexpected header member"),
        ),
        (
            r#"{"alg":"ES256","typ":"mpos-attestation+jwt","kid":"k1","jwk":{}}"#,
            TokenError::Malformed("unexpected header member"),
        ),
        (
            r#"{"alg":"ES256","typ":"mpos-attestation+jwt"}"#,
            TokenError::Malformed("kid missing or not a string"),
        ),
        (
            r#"{"typ":"mpos-attestation+jwt","kid":"k1"}"#,
            TokenError::UnsupportedAlgorithm { alg: String::new() },
        ),
    ] {
        let forged = format!("{}.{}.{}", b64(header.as_bytes()), p[1], p[2]);
        assert_eq!(
            verifier.verify(&forged, &expected(NOW)),
            Err(want),
            "{header}"
        );
    }
}

#[test]
fn truncated_and_garbage_tokens() {
    let (issuer, verifier) = setup();
    let token = issuer.issue(&claims()).unwrap();
    for cut in 0..token.len() {
        let err = verifier.verify(&token[..cut], &expected(NOW)).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Malformed(_)
                    | TokenError::BadSignature
                    | TokenError::UnsupportedAlgorithm { .. }
                    | TokenError::WrongType
                    | TokenError::UnknownKey { .. }
            ),
            "cut {cut}: {err:?}"
        );
    }
    for garbage in [
        "",
        ".",
        "..",
        "a.b.c",
        "a.b.c.d",
        "!!!.???.###",
        &format!("{token}."),
        &format!("{token}="),
        "eyJhbGciOiJFUzI1NiJ9",
    ] {
        let err = verifier.verify(garbage, &expected(NOW)).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Malformed(_)
                    | TokenError::BadSignature
                    | TokenError::UnsupportedAlgorithm { .. }
            ),
            "{garbage}: {err:?}"
        );
    }
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    let err = verifier.verify(&huge, &expected(NOW)).unwrap_err();
    assert_eq!(
        err,
        TokenError::TooLarge {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        }
    );
    // no error message echoes the token
    assert!(!err.to_string().contains(&huge[..64]));
}

#[test]
fn two_keys_in_rotation_both_verify() {
    let old = issuer("2026-11");
    let new = issuer("2026-12");
    let mut verifier = TokenVerifier::new()
        .with_key("2026-11", old.public_key())
        .with_key("2026-12", new.public_key());
    assert_eq!(verifier.kids().collect::<Vec<_>>(), ["2026-11", "2026-12"]);
    let from_old = old.issue(&claims()).unwrap();
    let from_new = new.issue(&claims()).unwrap();
    assert_eq!(
        verifier.verify(&from_old, &expected(NOW)).unwrap().kid,
        "2026-11"
    );
    assert_eq!(
        verifier.verify(&from_new, &expected(NOW)).unwrap().kid,
        "2026-12"
    );
    // end of the rotation
    assert!(verifier.remove_key("2026-11").is_some());
    assert_eq!(
        verifier.verify(&from_old, &expected(NOW)),
        Err(TokenError::UnknownKey {
            kid: "2026-11".into()
        })
    );
    verifier.verify(&from_new, &expected(NOW)).unwrap();
}

/// RFC 7515 Appendix A.3: "Example JWS Using ECDSA P-256 SHA-256". The JWK public key
/// (A.3.1) and the complete JWS (A.3.1, final result) are copied from the RFC. The header is
/// `{"alg":"ES256"}` (no `typ`, no `kid`), so it goes to the primitive, not to
/// `TokenVerifier::verify`.
#[test]
fn rfc7515_appendix_a3_es256_example_verifies() {
    let x = URL_SAFE_NO_PAD
        .decode("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU")
        .unwrap();
    let y = URL_SAFE_NO_PAD
        .decode("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0")
        .unwrap();
    let mut point = vec![4u8];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = PublicKey::from_sec1(&point).unwrap();
    let jws = concat!(
        "eyJhbGciOiJFUzI1NiJ9",
        ".",
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt",
        "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
        ".",
        "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA",
        "pmWQxfKTUJqPP3-Kg6NU1Q",
    );
    let payload = verify_es256_jws(jws, &key).unwrap();
    assert_eq!(
        payload,
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
    );
    // one changed signature character and it no longer verifies
    let tampered = jws.replacen("DtEh", "DtEi", 1);
    assert_eq!(
        verify_es256_jws(&tampered, &key),
        Err(TokenError::BadSignature)
    );
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic_verify(s in any::<String>()) {
        let (_, verifier) = setup();
        prop_assert!(verifier.verify(&s, &expected(NOW)).is_err());
    }

    #[test]
    fn arbitrary_three_part_tokens_never_panic_verify(
        h in "[A-Za-z0-9_-]{0,80}",
        p in "[A-Za-z0-9_-]{0,200}",
        s in "[A-Za-z0-9_-]{0,100}",
    ) {
        let (_, verifier) = setup();
        let token = format!("{h}.{p}.{s}");
        prop_assert!(verifier.verify(&token, &expected(NOW)).is_err());
    }
}

#[test]
fn published_keys_round_trip_into_a_verifier() {
    let issuer = issuer("kid-published");
    let public = issuer.public_key();
    let document = attestation_token::PublishedKeys::of([("kid-published", &public)]);
    let json = serde_json::to_string(&document).expect("json");
    let read: attestation_token::PublishedKeys = serde_json::from_str(&json).expect("read");
    let verifier = read.verifier().expect("verifier");
    assert_eq!(verifier.kids().collect::<Vec<_>>(), ["kid-published"]);
    let token = issuer.issue(&claims()).expect("token");
    assert!(verifier.verify(&token, &expected(NOW)).is_ok());
    let mut wrong = read.clone();
    wrong.keys[0].alg = "RS256".into();
    assert!(matches!(
        wrong.verifier(),
        Err(TokenError::UnsupportedAlgorithm { .. })
    ));
    let mut garbage = read;
    garbage.keys[0].sec1 = "AAAA".into();
    assert!(matches!(garbage.verifier(), Err(TokenError::InvalidKey(_))));
}

/// The first certificate of `p256_sha384_intermediate.pem` in android/keyattestation's
/// `testdata/` (copied in `crates/android-attestation/tests/data/testdata/`).
const KEYATTESTATION_TEST_LEAF: &str = "\
MIIBdzCCAR2gAwIBAgIBAjAKBggqhkjOPQQDAzAcMRowGAYDVQQDDBFUZXN0IElu\
dGVybWVkaWF0ZTAeFw0yNDAxMDEwMDAwMDBaFw0zNDAxMDEwMDAwMDBaMBQxEjAQ\
BgNVBAMMCVRlc3QgTGVhZjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBqQpJH6\
/KMGJcJyFrn1O5UFKfgFY0IpfJ6CFoijMxgd0wEkHfJxmr+raceuTykXXVVxdOpy\
UoQmZiXBmtw1PNujWDBWMBQGCisGAQQB1nkCAREEBgQEBAIFADAdBgNVHQ4EFgQU\
bIoAns4i7eKpY7/wWAY3dBcDKTcwHwYDVR0jBBgwFoAU2PaTsAJyUGeWGHR1//Xk\
G5yCfJAwCgYIKoZIzj0EAwMDSAAwRQIhAKkafkMZhoVFTrOE7T8o5oRFV79FzO0/\
P7n8s6KuwiLXAiA5qUmDUXEiI94HddoysULan5oiq73YDh2pwKOxkRv5Qw==";

#[test]
fn the_confirmation_is_the_certificates_sha256_thumbprint() {
    let der = base64::engine::general_purpose::STANDARD
        .decode(KEYATTESTATION_TEST_LEAF)
        .unwrap();
    // Expected values computed outside this crate, with OpenSSL 3.0 and coreutils:
    // `openssl x509 -outform der | sha256sum` and `| openssl dgst -sha256 -binary | basenc
    // --base64url` (RFC 8705 §3.1: base64url of the SHA-256 of the DER, without padding).
    let hex = "4909e1544c5403d84b2690939b4476c6d6f00d3f46670401feb7ed7a99a96215";
    let thumbprint = "SQnhVExUA9hLJpCTm0R2xtbwDT9GZwQB_rftepmpYhU";
    let confirmation = Confirmation::of_certificate(&der);
    assert_eq!(confirmation.x5t_s256, thumbprint);
    assert_eq!(Confirmation::of_sha256_hex(hex), Some(confirmation.clone()));
    assert_eq!(
        Confirmation::of_sha256_hex(&hex.to_ascii_uppercase()),
        Some(confirmation.clone())
    );
    assert!(confirmation.confirms(&der));
    let mut other = der.clone();
    if let Some(last) = other.last_mut() {
        *last ^= 1;
    }
    assert!(!confirmation.confirms(&other));
    for bad in ["", "4909", &hex[1..], &format!("{}g", &hex[1..])] {
        assert_eq!(Confirmation::of_sha256_hex(bad), None, "{bad}");
    }
}

#[test]
fn the_confirmation_travels_in_the_token_and_older_tokens_have_none() {
    let (issuer, verifier) = setup();
    let mut bound = claims();
    bound.cnf = Some(Confirmation::of_certificate(b"certificate"));
    let token = issuer.issue(&bound).unwrap();
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[1]).unwrap()).unwrap();
    // RFC 7800 §3.1 / RFC 8705 §3.1 member names.
    assert_eq!(
        payload["cnf"]["x5t#S256"],
        bound.cnf.as_ref().unwrap().x5t_s256.as_str()
    );
    assert_eq!(
        verifier.verify(&token, &expected(NOW)).unwrap().claims,
        bound
    );
    // A token without the claim (as issued before it existed) has no `cnf` member at all.
    let unbound = issuer.issue(&claims()).unwrap();
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&unbound)[1]).unwrap()).unwrap();
    assert!(payload.get("cnf").is_none());
    assert_eq!(
        verifier
            .verify(&unbound, &expected(NOW))
            .unwrap()
            .claims
            .cnf,
        None
    );
}
