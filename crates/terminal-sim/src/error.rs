//! The simulator's one error type.

use paycrypto::CryptoError;

/// Why a simulated terminal step failed. Messages never contain key material, PINs or full
/// PANs.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A cryptographic operation refused its input (a token that does not verify, a key of
    /// the wrong length, an exhausted DUKPT counter…).
    #[error("cryptography: {0}")]
    Crypto(#[from] CryptoError),
    /// A certificate or key could not be made, parsed or used.
    #[error("device pki: {0}")]
    Pki(String),
    /// Reading or writing a PEM file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed below the API (connection, TLS handshake, timeout).
    #[error("{operation}: transport: {message}")]
    Transport {
        /// The step (e.g. "activate").
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The platform answered with an error.
    #[error("{operation}: refused with {status} {code}: {message}")]
    Refused {
        /// The step.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The platform's error code (`forbidden`, `not_found`, …), empty when absent.
        code: String,
        /// The platform's message.
        message: String,
    },
    /// The platform answered something the device cannot use.
    #[error("{operation}: unexpected response: {message}")]
    Protocol {
        /// The step.
        operation: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A signed parameter set did not verify, or was not for this terminal.
    #[error("parameter set refused: {0}")]
    Parameters(String),
    /// A key delivery is not for this device, or does not match what it claims.
    #[error("key delivery refused: {0}")]
    Delivery(String),
    /// Nothing arrived before the deadline.
    #[error("{operation}: nothing before the deadline")]
    Timeout {
        /// The step.
        operation: &'static str,
    },
    /// The device has no DUKPT key yet (receive one first).
    #[error("no DUKPT key installed")]
    NoKey,
    /// The device lacks a setting the step needs (e.g. the authorization service's URL).
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    /// A step the simulator does not support (yet).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A caller-supplied value is invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl SimError {
    pub(crate) fn pki(message: impl std::fmt::Display) -> Self {
        Self::Pki(message.to_string())
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn transport(operation: &'static str, error: &reqwest::Error) -> Self {
        // The URL names the platform and the terminal only (no query, no secrets).
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Transport { operation, message }
    }

    pub(crate) fn protocol(operation: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Protocol {
            operation,
            message: message.to_string(),
        }
    }

    /// A stable lowercase code for JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Crypto(error) => error.code(),
            Self::Pki(_) | Self::InvalidInput(_) => "bad_request",
            Self::Io { .. } => "io",
            Self::Transport { .. } => "unavailable",
            Self::Refused { .. } => "refused",
            Self::Protocol { .. } => "protocol",
            Self::Parameters(_) | Self::Delivery(_) => "verification_failed",
            Self::Timeout { .. } => "timeout",
            Self::NoKey => "no_key",
            Self::Unsupported(_) => "unsupported",
            Self::NotConfigured(_) => "not_configured",
        }
    }
}
