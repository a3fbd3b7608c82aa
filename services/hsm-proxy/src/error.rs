//! The hsm-proxy's errors and how they map to the platform's shared error codes. Messages
//! never contain key material, PINs, PIN blocks or full PANs.

use mpos_errors::ServiceError;
use paycrypto::CryptoError;

/// Why an hsm-proxy operation was refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HsmError {
    /// A request field is missing or malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as the API names it (e.g. `attributes.keyUsage`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No such key for this tenant (a key of another tenant is reported the same way).
    #[error("key not found: {0}")]
    KeyNotFound(String),
    /// The key's usage or mode of use does not allow the operation.
    #[error("wrong key usage: {0}")]
    WrongKeyUsage(String),
    /// The key's state does not allow the operation (disabled, pending deletion, deleted).
    #[error("key state: {0}")]
    KeyState(String),
    /// The alias or key exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A cryptographic check of the input failed (malformed PIN block, bad KSN, wrong KCV,
    /// key block MAC).
    #[error("{0}")]
    Crypto(CryptoError),
    /// Not supported by this service or backend.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// No backend could do the operation now; retry later.
    #[error("hsm backend unavailable: {0}")]
    Unavailable(String),
    /// A defect.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HsmError {
    /// A field-level validation error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<CryptoError> for HsmError {
    fn from(error: CryptoError) -> Self {
        Self::Crypto(error)
    }
}

impl From<HsmError> for ServiceError {
    fn from(error: HsmError) -> Self {
        let message = error.to_string();
        match error {
            HsmError::Invalid { .. }
            | HsmError::WrongKeyUsage(_)
            | HsmError::Crypto(_)
            | HsmError::Unsupported(_) => ServiceError::bad_request(message),
            HsmError::KeyNotFound(_) => ServiceError::not_found(message),
            HsmError::KeyState(_) => ServiceError::conflict(message),
            HsmError::AlreadyExists(_) => ServiceError::already_exists(message),
            HsmError::Unavailable(_) => ServiceError::unavailable(message),
            HsmError::Internal(_) => ServiceError::internal(message),
        }
    }
}
