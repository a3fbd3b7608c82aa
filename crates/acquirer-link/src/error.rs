//! The link's typed errors.

use mpos_errors::ErrorCode;

/// What can go wrong on the acquirer link. Messages never carry card data, PIN blocks or
/// keys: only field numbers, lengths and the codec's own error text.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No matching answer within the response timeout, or the connection dropped after the
    /// request was written: the outcome at the acquirer is unknown, the caller reverses.
    #[error("no answer from the acquirer in time")]
    Timeout,
    /// Not connected, or too many exchanges in flight: nothing was sent, safe to retry or
    /// route elsewhere.
    #[error("acquirer link unavailable: {0}")]
    Unavailable(String),
    /// The answer's MAC does not verify (or is missing): the answer is not trusted.
    #[error("the acquirer's answer has a bad or missing MAC")]
    BadMac,
    /// A message could not be encoded or decoded.
    #[error("iso 8583 codec: {0}")]
    Codec(#[from] iso8583::Iso8583Error),
    /// A message is well-formed but not what the profile expects (a missing or malformed
    /// field, an unexpected MTI).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The MAC provider failed (the HSM is unreachable, the key is unknown).
    #[error("mac provider: {0}")]
    Mac(String),
}

impl LinkError {
    /// The shared error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Timeout => ErrorCode::Timeout,
            Self::Unavailable(_) | Self::Mac(_) => ErrorCode::Unavailable,
            Self::BadMac => ErrorCode::Internal,
            Self::Codec(_) | Self::Protocol(_) => ErrorCode::BadRequest,
        }
    }

    /// A stable lowercase label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::BadMac => "bad_mac",
            Self::Codec(_) => "codec",
            Self::Protocol(_) => "protocol",
            Self::Mac(_) => "mac",
        }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol(message.into())
    }
}

impl From<iso8583::framing::FrameError> for LinkError {
    fn from(error: iso8583::framing::FrameError) -> Self {
        Self::Protocol(format!("framing: {error}"))
    }
}

impl From<LinkError> for mpos_errors::ServiceError {
    fn from(error: LinkError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}
