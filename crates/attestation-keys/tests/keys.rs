//! The token keys from the attestation service's published key set, over a real HTTP
//! listener: nothing verifies before the keys are fetched, a rotation is picked up, and the
//! claims are checked against the device, the tenant and the time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use attestation_keys::{KeySource, LEEWAY_SECONDS, Tokens};
use attestation_token::{Claims, PublishedKeys, TokenError, TokenIssuer, Verdict};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn issuer(kid: &str) -> TokenIssuer {
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .expect("key");
    TokenIssuer::new(kid, pkcs8.as_ref()).expect("issuer")
}

fn token(issuer: &TokenIssuer, device: &str) -> String {
    issuer
        .issue(&Claims {
            iss: "mpos:attestation".into(),
            sub: device.into(),
            tenant: "acme".into(),
            verdict: Verdict::Allow,
            reasons: Vec::new(),
            iat: 1_000,
            nbf: 1_000,
            exp: 2_000,
            jti: format!("tok-{device}"),
            policy_version: 1,
            cnf: None,
        })
        .expect("token")
}

/// An HTTP/1.1 server answering every request with the current key set.
async fn key_server(keys: Arc<Mutex<PublishedKeys>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let body = serde_json::to_string(&*keys.lock().unwrap()).unwrap();
            tokio::spawn(async move {
                let mut request = [0_u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{address}/v1/attestation/token-keys")
}

#[tokio::test]
async fn fetched_keys_verify_tokens_and_a_rotation_is_picked_up() {
    let first = issuer("att-1");
    let keys = Arc::new(Mutex::new(PublishedKeys::of([(
        first.kid(),
        &first.public_key(),
    )])));
    let url = key_server(keys.clone()).await;
    let tokens = Arc::new(Tokens::new(KeySource::Url(url)).unwrap());
    let valid = token(&first, "sp-1");
    // Nothing is trusted before the keys are fetched.
    assert!(matches!(
        tokens.verify(&valid, "acme", "sp-1", 1_500),
        Err(TokenError::UnknownKey { .. })
    ));
    tokens.refresh().await.unwrap();
    let verified = tokens.verify(&valid, "acme", "sp-1", 1_500).unwrap();
    assert_eq!(verified.kid, "att-1");
    assert_eq!(verified.claims.jti, "tok-sp-1");
    assert_eq!(
        tokens.verify(&valid, "acme", "sp-2", 1_500),
        Err(TokenError::WrongDevice)
    );
    assert_eq!(
        tokens.verify(&valid, "other", "sp-1", 1_500),
        Err(TokenError::WrongTenant)
    );
    assert!(matches!(
        tokens.verify(&valid, "acme", "sp-1", 2_000 + LEEWAY_SECONDS),
        Err(TokenError::Expired { .. })
    ));

    // The attestation service rotates: it publishes both keys and signs with the new one.
    let second = issuer("att-2");
    *keys.lock().unwrap() = PublishedKeys::of([
        (first.kid(), &first.public_key()),
        (second.kid(), &second.public_key()),
    ]);
    let rotated = token(&second, "sp-1");
    tokens.refresh().await.unwrap();
    assert_eq!(
        tokens.verify(&rotated, "acme", "sp-1", 1_500).unwrap().kid,
        "att-2"
    );
    // A key the service never published is refused, whatever the token says.
    let stranger = token(&issuer("att-2"), "sp-1");
    assert_eq!(
        tokens.verify(&stranger, "acme", "sp-1", 1_500),
        Err(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn an_unreachable_key_set_is_an_error_and_fixed_keys_need_no_fetch() {
    let tokens = Tokens::new(KeySource::Url("http://127.0.0.1:9/keys".into())).unwrap();
    assert!(tokens.refresh().await.is_err());
    let issuer = issuer("att-1");
    let fixed = Arc::new(
        Tokens::new(KeySource::Fixed(PublishedKeys::of([(
            issuer.kid(),
            &issuer.public_key(),
        )])))
        .unwrap(),
    );
    fixed.refresh().await.unwrap();
    assert!(
        fixed
            .verify(&token(&issuer, "sp-9"), "acme", "sp-9", 1_500)
            .is_ok()
    );
}

#[tokio::test]
async fn a_token_of_a_key_not_yet_fetched_waits_for_one_fetch() {
    let issuer = issuer("att-1");
    let keys = Arc::new(Mutex::new(PublishedKeys::of([(
        issuer.kid(),
        &issuer.public_key(),
    )])));
    // Never refreshed: as in a service that started before the attestation service.
    let tokens = Arc::new(Tokens::new(KeySource::Url(key_server(keys).await)).unwrap());
    let token = token(&issuer, "sp-1");
    let verified = tokens
        .verify_fetching(&token, "acme", "sp-1", 1_500)
        .await
        .unwrap();
    assert_eq!(verified.kid, "att-1");
    // A key the service does not publish stays unknown (and is not fetched again at once).
    let stranger = self::issuer("att-9");
    assert!(matches!(
        tokens
            .verify_fetching(&self::token(&stranger, "sp-1"), "acme", "sp-1", 1_500)
            .await,
        Err(TokenError::UnknownKey { .. })
    ));
}
