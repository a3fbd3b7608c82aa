//! The one error type of the crate.

/// Why a cryptographic operation refused its input. Messages never contain key material,
/// PINs or full PANs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A value has the wrong length.
    #[error("{what}: expected {expected}, got {actual} bytes")]
    InvalidLength {
        /// What was measured (e.g. "TDES key").
        what: &'static str,
        /// What is accepted (e.g. "16 or 24 bytes").
        expected: &'static str,
        /// What was given.
        actual: usize,
    },
    /// A hex string is not valid hex.
    #[error("{0}: not hexadecimal")]
    InvalidHex(&'static str),
    /// A structure does not follow its format.
    #[error("{what}: {reason}")]
    InvalidFormat {
        /// What was parsed (e.g. "TR-31 header").
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A value is outside what the operation accepts (e.g. a DUKPT counter with too many bits).
    #[error("{what}: {reason}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A DUKPT device has used its last transaction counter (TDES `0x1FF800`, AES
    /// `0xFFFF0000`) and must cease operation; no further KSN or transaction key exists for it.
    /// Carries what is exhausted (e.g. "TDES DUKPT device").
    #[error("{0}: exhausted, its last transaction counter has been used")]
    Exhausted(&'static str),
    /// A MAC, cryptogram, check value or signature did not verify.
    #[error("{0}: verification failed")]
    VerificationFailed(&'static str),
    /// A combination the standard allows but this crate does not implement, or one it forbids.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl CryptoError {
    /// A stable lowercase code for JSON errors and the shared platform error set (all of
    /// these are caller errors: `bad_request`, except a failed verification). An exhausted
    /// DUKPT device is `bad_request` too: the caller asked for a transaction past the device's
    /// end of life.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidLength { .. }
            | Self::InvalidHex(_)
            | Self::InvalidFormat { .. }
            | Self::OutOfRange { .. }
            | Self::Exhausted(_) => "bad_request",
            Self::VerificationFailed(_) => "verification_failed",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// Shorthand for [`CryptoError::InvalidFormat`].
    pub fn format(what: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidFormat {
            what,
            reason: reason.into(),
        }
    }
}
