//! Tenant API keys as presented: a bearer token `mpk_<key id>_<secret>`, the key id 16 hex
//! digits (public, names the key in events and logs), the secret 64 hex digits (256 random
//! bits). Services keep only the SHA-256 of the secret (terminal-management issues keys and
//! publishes `ApiKeyIssued` with that digest; other services check presented keys against it).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token prefix of tenant API keys.
pub const TOKEN_PREFIX: &str = "mpk_";

/// Whether `value` is a key id (16 lowercase hex digits).
pub fn is_key_id(value: &str) -> bool {
    value.len() == 16
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A presented token split into its key id and the digest of its secret.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedKey {
    /// The key id.
    pub key_id: String,
    secret_sha256: [u8; 32],
}

impl PresentedKey {
    /// Parses a bearer token; `None` if it is not shaped like a tenant API key.
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (key_id, secret) = rest.split_once('_')?;
        if !is_key_id(key_id)
            || secret.len() != 64
            || !secret.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        Some(Self {
            key_id: key_id.to_owned(),
            secret_sha256: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Whether the secret matches the stored hex digest (constant time).
    pub fn matches(&self, stored_hex: &str) -> bool {
        let mut stored = [0_u8; 32];
        if hex::decode_to_slice(stored_hex, &mut stored).is_err() {
            return false;
        }
        bool::from(self.secret_sha256.ct_eq(&stored))
    }
}
