//! Errors of the event-sourcing kernel, each mapped to the shared error codes.

use mpos_errors::{ErrorCode, ServiceError};

/// What can go wrong in the event store.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not one the kernel understands.
    #[error("invalid event store url: {0}")]
    InvalidUrl(String),
    /// Another writer appended to the same aggregate first (optimistic concurrency).
    #[error("conflicting append to {aggregate_type} {aggregate_id} at sequence {sequence}")]
    Conflict {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
        /// The sequence another writer took first.
        sequence: u64,
    },
    /// The database cannot be reached or failed.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// An event or document could not be encoded or decoded.
    #[error("event encoding: {0}")]
    Encoding(String),
    /// A stored row violates an invariant of the log.
    #[error("event log corrupt: {0}")]
    Corrupt(String),
    /// A write on a store opened read-only ([`crate::EventStore::connect_read_only`]).
    #[error("event store read-only: {0}")]
    ReadOnly(String),
}

impl StoreError {
    /// The shared error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidUrl(_) => ErrorCode::BadRequest,
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Encoding(_) | Self::Corrupt(_) => ErrorCode::Internal,
            Self::ReadOnly(_) => ErrorCode::Forbidden,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        ServiceError::new(error.code(), error.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. } => Self::Corrupt(error.to_string()),
            _ => Self::Unavailable(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        Self::Encoding(error.to_string())
    }
}

impl From<StoreError> for cqrs_es::persist::PersistenceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Self::OptimisticLockError,
            StoreError::Unavailable(_) | StoreError::InvalidUrl(_) => {
                Self::ConnectionError(Box::new(error))
            }
            StoreError::Encoding(_) => Self::DeserializationError(Box::new(error)),
            StoreError::Corrupt(_) | StoreError::ReadOnly(_) => Self::UnknownError(Box::new(error)),
        }
    }
}
