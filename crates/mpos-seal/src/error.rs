//! What sealing and opening can fail with, and the platform error code of each failure.

use mpos_errors::{ErrorCode, ServiceError};

/// A sealing or opening failure.
///
/// Opening answers only [`SealError::UnknownRecipient`] (the message names a key this
/// process does not hold) or [`SealError::Invalid`] (anything else: wrong key, wrong
/// context, a changed byte, a low-order sender key); it never says which check failed.
/// The messages never contain key material, plaintext or ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The sealed field names a recipient key id this process does not hold: the sender
    /// used a key of an earlier run of this process (keys are created at start and never
    /// stored) or one rotated away twice since. The sender should fetch this process's
    /// current [`SealingKey`](mpos_proto::common::SealingKey) and seal again.
    #[error(
        "sealed for a key this process does not hold; fetch its current sealing key and seal again"
    )]
    UnknownRecipient,
    /// The sealed field does not open: a wrong key or context, a changed byte, a forged
    /// or replayed-elsewhere field. Deliberately the same answer for every cause.
    #[error("the sealed field does not open")]
    Invalid,
    /// The recipient's public key is a low-order point: X25519 with it gives the all-zero
    /// value (RFC 7748 §6.1), so there is no secret to derive a key from.
    #[error("the recipient's public key is of low order and gives no shared secret")]
    WeakKey,
    /// A sealed field or sealing key in protobuf form has a field of the wrong length or
    /// form (the `&str` names which).
    #[error("malformed sealed data: {0}")]
    Malformed(&'static str),
    /// The operating system's random number generator failed (no key or nonce drawn).
    #[error("the operating system's random number generator failed")]
    Random,
    /// The plaintext or context exceeds what AES-GCM may process under one nonce
    /// (2^36 - 32 bytes of plaintext, 2^61 - 1 bytes of associated data).
    #[error("plaintext or context too long to seal")]
    TooLong,
}

impl SealError {
    /// The platform error code a service answers with.
    ///
    /// - [`UnknownRecipient`](Self::UnknownRecipient) → [`ErrorCode::Conflict`]: the
    ///   request conflicts with the recipient's current state (its key); the caller can
    ///   act on it: refresh the recipient's sealing key and send again. Not `NotFound`
    ///   (nothing the caller addressed is missing) and not retryable as is.
    /// - [`Invalid`](Self::Invalid), [`WeakKey`](Self::WeakKey),
    ///   [`Malformed`](Self::Malformed), [`TooLong`](Self::TooLong) →
    ///   [`ErrorCode::BadRequest`]: the same request will never succeed.
    /// - [`Random`](Self::Random) → [`ErrorCode::Internal`]: the platform's fault.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownRecipient => ErrorCode::Conflict,
            Self::Invalid | Self::WeakKey | Self::Malformed(_) | Self::TooLong => {
                ErrorCode::BadRequest
            }
            Self::Random => ErrorCode::Internal,
        }
    }
}

impl From<SealError> for ServiceError {
    fn from(error: SealError) -> Self {
        ServiceError::new(error.code(), error.to_string())
    }
}
