//! Shared test setup: each test gets its OWN fresh SoftHSM2 token (unique label, initialised in
//! the free slot with C_InitToken, user PIN set), using the default /etc/softhsm/softhsm2.conf.
//! Run `bash infra/softhsm.sh` first (installs the Debian package `softhsm2`).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hsm_pkcs11::{KeyKind, KeyUses, Pkcs11Config, SecretBytes, Token, init_token};
use secrecy::SecretString;

/// The SoftHSM2 module on Debian; override with MPOS_PKCS11_MODULE.
pub fn module_path() -> String {
    std::env::var("MPOS_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".to_owned())
}

pub const USER_PIN: &str = "user-1234";
pub const SO_PIN: &str = "so-5678";

/// A fresh unique token label (at most 32 bytes).
pub fn unique_label(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut label = format!("mt{:x}-{}-{n}-{tag}", secs & 0xff_ffff, std::process::id());
    label.truncate(32);
    label
}

/// Initialises a new token and opens it with `sessions` pooled sessions.
pub async fn fresh_token_with(tag: &str, sessions: usize) -> Token {
    let module = module_path();
    assert!(
        std::path::Path::new(&module).exists(),
        "{module} is missing: run `bash infra/softhsm.sh` first"
    );
    let label = unique_label(tag);
    let (m, l) = (module.clone(), label.clone());
    tokio::task::spawn_blocking(move || {
        init_token(
            std::path::Path::new(&m),
            &l,
            &SecretString::from(SO_PIN),
            &SecretString::from(USER_PIN),
        )
    })
    .await
    .unwrap()
    .expect("init token");
    let url = format!("pkcs11://{module}?token={label}&sessions={sessions}");
    let config = Pkcs11Config::from_url(&url, SecretString::from(USER_PIN)).unwrap();
    Token::open(config).await.expect("open token")
}

pub async fn fresh_token(tag: &str) -> Token {
    fresh_token_with(tag, 4).await
}

pub fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).expect("hex")
}

pub fn secret(text: &str) -> SecretBytes {
    SecretBytes::new(h(text))
}

/// Imports a published clear key.
pub async fn import(token: &Token, id: &str, kind: KeyKind, uses: KeyUses, value_hex: &str) {
    token
        .import_clear_key(id, id, kind, uses, &secret(value_hex))
        .await
        .expect("import");
}
