//! Who may do what: the platform operator, and tenant-scoped API keys with roles.
//!
//! A tenant API key is a bearer token `mpk_<key id>_<secret>`: the key id is 16 hex digits
//! (public, names the key in events and logs), the secret 64 hex digits (256 random bits).
//! Only the SHA-256 of the secret is kept: a 256-bit random secret cannot be guessed from
//! its digest, so a slow password hash would add latency to every request and no security.

use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use mpos_http::api_key::{PresentedKey, TOKEN_PREFIX, is_key_id};

/// What a tenant API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything in the tenant, API keys included.
    Admin,
    /// Estate, terminal and parameter changes.
    Operator,
    /// Reads only.
    ReadOnly,
}

impl Role {
    /// From the API's enum; unspecified is an error.
    pub fn from_proto(value: i32) -> Result<Self, ServiceError> {
        match pb::ApiKeyRole::try_from(value) {
            Ok(pb::ApiKeyRole::Admin) => Ok(Self::Admin),
            Ok(pb::ApiKeyRole::Operator) => Ok(Self::Operator),
            Ok(pb::ApiKeyRole::ReadOnly) => Ok(Self::ReadOnly),
            _ => Err(ServiceError::bad_request(
                "role must be API_KEY_ROLE_ADMIN, API_KEY_ROLE_OPERATOR or API_KEY_ROLE_READ_ONLY",
            )),
        }
    }

    /// The API's enum.
    pub fn to_proto(self) -> pb::ApiKeyRole {
        match self {
            Self::Admin => pb::ApiKeyRole::Admin,
            Self::Operator => pb::ApiKeyRole::Operator,
            Self::ReadOnly => pb::ApiKeyRole::ReadOnly,
        }
    }

    fn grants(self, need: Need) -> bool {
        match need {
            Need::Read => true,
            Need::Change => matches!(self, Self::Admin | Self::Operator),
            Need::ManageKeys => self == Self::Admin,
            Need::Platform => false,
        }
    }
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Read the tenant's data.
    Read,
    /// Change the tenant's estate, terminals or parameters.
    Change,
    /// Issue or revoke the tenant's API keys.
    ManageKeys,
    /// Platform-wide administration (tenants, manufacturer CAs): the platform operator only.
    Platform,
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator (operator token).
    Operator,
    /// A tenant API key.
    ApiKey {
        /// The key's tenant.
        tenant_id: String,
        /// The key's id.
        key_id: String,
        /// Its role.
        role: Role,
    },
    /// A terminal, identified by its device certificate on the device API (mTLS).
    Device {
        /// Its tenant.
        tenant_id: String,
        /// The terminal.
        terminal_id: String,
    },
}

impl Principal {
    /// The actor recorded in events.
    pub fn actor(&self) -> String {
        match self {
            Self::Operator => "operator:platform".to_owned(),
            Self::ApiKey { key_id, .. } => format!("api-key:{key_id}"),
            Self::Device { terminal_id, .. } => format!("device:{terminal_id}"),
        }
    }

    /// Allows the request or says why not. A key of another tenant is refused exactly like a
    /// missing resource would be (`not_found`), so that tenants cannot probe each other.
    pub fn authorize(&self, tenant_id: Option<&str>, need: Need) -> Result<(), ServiceError> {
        match self {
            Self::Operator => Ok(()),
            Self::Device { .. } => Err(ServiceError::forbidden(
                "devices use the device API, not the admin API",
            )),
            Self::ApiKey {
                tenant_id: own,
                role,
                ..
            } => {
                if need == Need::Platform {
                    return Err(ServiceError::forbidden(
                        "only the platform operator may do this",
                    ));
                }
                if tenant_id.is_some_and(|tenant| tenant != own) {
                    return Err(ServiceError::not_found("tenant not found"));
                }
                if !role.grants(need) {
                    return Err(ServiceError::forbidden(format!(
                        "the api key's role ({}) does not allow this",
                        role.to_proto().as_str_name()
                    )));
                }
                Ok(())
            }
        }
    }
}

/// A freshly generated API key.
#[derive(Debug)]
pub struct NewApiKey {
    /// Its public id.
    pub key_id: String,
    /// The whole bearer token, shown once.
    pub token: SecretString,
    /// Hex SHA-256 of its secret, for the log.
    pub secret_sha256: String,
}

/// Generates an API key from the operating system's random source.
pub fn generate() -> NewApiKey {
    let mut id = [0_u8; 8];
    let mut secret = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret_hex = hex::encode(secret);
    let secret_sha256 = hex::encode(Sha256::digest(secret_hex.as_bytes()));
    NewApiKey {
        token: SecretString::from(format!("{TOKEN_PREFIX}{key_id}_{secret_hex}")),
        key_id,
        secret_sha256,
    }
}

/// The token of a [`NewApiKey`], for the one response that shows it.
pub fn reveal(key: &NewApiKey) -> String {
    key.token.expose_secret().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_only_its_own_digest() {
        let key = generate();
        let token = reveal(&key);
        assert!(token.starts_with("mpk_"));
        assert_eq!(token.len(), 4 + 16 + 1 + 64);
        let presented = PresentedKey::parse(&token).expect("parses");
        assert_eq!(presented.key_id, key.key_id);
        assert!(presented.matches(&key.secret_sha256));
        let other = generate();
        assert!(!presented.matches(&other.secret_sha256));
        assert!(!presented.matches("not hex"));
        assert!(
            !format!("{key:?}").contains(&token[21..]),
            "debug masks the token"
        );
    }

    #[test]
    fn the_digest_is_sha256_of_the_secret_text() {
        // FIPS 180-2 appendix B.1: SHA-256("abc").
        let token = format!("mpk_{}_{}", "0".repeat(16), "ab".repeat(32));
        let presented = PresentedKey::parse(&token).expect("parses");
        let expected = hex::encode(Sha256::digest("ab".repeat(32).as_bytes()));
        assert!(presented.matches(&expected));
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for token in [
            "",
            "mpk_",
            "mpk_0123456789abcdef",
            "mpk_0123456789ABCDEF_".to_owned().as_str(),
            &format!("mpk_0123456789abcde_{}", "a".repeat(64)),
            &format!("mpk_0123456789abcdef_{}", "a".repeat(63)),
            &format!("mpk_0123456789abcdef_{}", "g".repeat(64)),
            &format!("xyz_0123456789abcdef_{}", "a".repeat(64)),
        ] {
            assert_eq!(PresentedKey::parse(token), None, "{token}");
        }
    }

    #[test]
    fn roles_grant_what_they_say_and_never_another_tenant() {
        let key = |role| Principal::ApiKey {
            tenant_id: "acme".into(),
            key_id: "0123456789abcdef".into(),
            role,
        };
        for (role, read, change, keys) in [
            (Role::Admin, true, true, true),
            (Role::Operator, true, true, false),
            (Role::ReadOnly, true, false, false),
        ] {
            let principal = key(role);
            assert_eq!(principal.authorize(Some("acme"), Need::Read).is_ok(), read);
            assert_eq!(
                principal.authorize(Some("acme"), Need::Change).is_ok(),
                change
            );
            assert_eq!(
                principal.authorize(Some("acme"), Need::ManageKeys).is_ok(),
                keys
            );
            assert_eq!(
                principal
                    .authorize(Some("globex"), Need::Read)
                    .map_err(|e| e.code),
                Err(mpos_errors::ErrorCode::NotFound)
            );
            assert!(principal.authorize(None, Need::Platform).is_err());
        }
        assert!(Principal::Operator.authorize(None, Need::Platform).is_ok());
        assert_eq!(key(Role::ReadOnly).actor(), "api-key:0123456789abcdef");
        assert_eq!(Principal::Operator.actor(), "operator:platform");
    }
}
