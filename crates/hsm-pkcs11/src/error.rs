//! Typed errors. None of them carries key material, PINs or data.

use cryptoki::error::{Error as CkError, RvError};

use crate::config::ConfigError;

/// Everything that can go wrong in this backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend URL is bad.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("pkcs#11 module {module}: {reason}")]
    Module {
        /// Module path.
        module: String,
        /// What failed.
        reason: String,
    },
    /// No initialised token carries the configured label.
    #[error("no token labelled {0:?}")]
    TokenNotFound(String),
    /// `C_Login` failed (wrong PIN, PIN locked, ...).
    #[error("login refused: {0}")]
    Login(String),
    /// The key id is not acceptable.
    #[error("invalid key id: {0}")]
    InvalidKeyId(&'static str),
    /// No key has this id.
    #[error("no key with id {0:?}")]
    KeyNotFound(String),
    /// A key with this id already exists.
    #[error("a key with id {0:?} already exists")]
    KeyExists(String),
    /// Several keys carry the id (created outside this backend).
    #[error("several keys have id {0:?}")]
    AmbiguousKey(String),
    /// The key's attributes do not allow the operation (e.g. MAC with an encrypt-only key).
    #[error("key {id:?} may not be used to {operation}")]
    KeyUseNotPermitted {
        /// Key id.
        id: String,
        /// The refused operation.
        operation: &'static str,
    },
    /// The key is of the wrong kind for the operation.
    #[error("key {id:?} is {actual}; {operation} needs {expected}")]
    WrongKeyKind {
        /// Key id.
        id: String,
        /// The operation.
        operation: &'static str,
        /// What the operation needs.
        expected: &'static str,
        /// What the key is.
        actual: String,
    },
    /// The key may not leave the token (not created with [`crate::KeyUses::EXPORT`]).
    #[error("key {0:?} is not exportable")]
    NotExportable(String),
    /// Bad caller input (lengths, sizes).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was wrong.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The token (or the cryptoki binding) cannot do this operation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// MAC verification failed.
    #[error("MAC verification failed")]
    VerificationFailed,
    /// Any other PKCS#11 failure; `rv` is the `CKR_` name, `function` the `C_` function.
    #[error("token call {function} failed: {rv}")]
    Token {
        /// The PKCS#11 function.
        function: String,
        /// The return value.
        rv: String,
    },
    /// The blocking task running the token call panicked or was cancelled.
    #[error("token task failed: {0}")]
    Task(String),
}

impl Error {
    /// The PKCS#11 return value, when the error came from the token.
    pub fn rv(&self) -> Option<&str> {
        match self {
            Self::Token { rv, .. } => Some(rv),
            _ => None,
        }
    }
}

impl From<CkError> for Error {
    fn from(e: CkError) -> Self {
        match e {
            CkError::Pkcs11(rv, function) => Self::Token {
                function: format!("{function:?}"),
                rv: format!("{rv:?}"),
            },
            other => Self::Token {
                function: "cryptoki".into(),
                rv: other.to_string(),
            },
        }
    }
}

/// The `CKR_` value of a cryptoki error, if it is one.
pub(crate) fn rv_of(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Maps an error from an operation on key `id`: usage and key-type refusals become typed errors.
pub(crate) fn key_op_error(e: CkError, id: &str, operation: &'static str) -> Error {
    match rv_of(&e) {
        Some(RvError::KeyFunctionNotPermitted) => Error::KeyUseNotPermitted {
            id: id.to_owned(),
            operation,
        },
        Some(RvError::KeyUnextractable) | Some(RvError::KeyNotWrappable) => {
            Error::NotExportable(id.to_owned())
        }
        Some(RvError::MechanismInvalid) => {
            Error::Unsupported(format!("the token refuses the mechanism for {operation}"))
        }
        _ => e.into(),
    }
}
