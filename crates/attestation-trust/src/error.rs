//! [`TrustError`]: why trust anchors or a status list could not be loaded.

use std::path::PathBuf;

use android_attestation::ChainError;
use thiserror::Error;

/// Why trust anchors or a status list could not be loaded, or a source or configuration was
/// refused.
///
/// The messages name the file or the URL (without its user information and query, which may
/// hold credentials) and never echo the content that was fetched, so they can go to the logs
/// and to [`crate::TrustStatus::last_error`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with a status other than 2xx.
    #[error("{url}: http status {status}")]
    Http {
        /// The URL, redacted (see [`crate::Source`]'s `Display`).
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The request failed before a status arrived, or the body could not be read: DNS, TCP,
    /// TLS (an untrusted server certificate, for one), the time limit.
    #[error("{url}: {reason}")]
    Unreachable {
        /// The URL, redacted.
        url: String,
        /// What the HTTP client reported.
        reason: String,
    },
    /// The content is larger than [`crate::TrustConfig::max_bytes`]; it is refused, not cut.
    #[error("{what}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// The file or the redacted URL.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// The anchors or the status list do not parse.
    #[error(transparent)]
    Parse(#[from] ChainError),
    /// The anchors source holds no certificate.
    #[error("no trust anchor: the set is empty")]
    NoAnchors,
    /// A URL source that is not `https://` (a redirect away from https is
    /// [`TrustError::Unreachable`]).
    #[error("{url}: not an https url")]
    NotHttps {
        /// The URL, redacted.
        url: String,
    },
    /// Source text that [`crate::Source::parse`] does not understand, or a source that cannot
    /// serve the purpose it is configured for (the built-in source has no status list).
    #[error("invalid source {text:?}: {reason}")]
    InvalidSource {
        /// The text or source concerned.
        text: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built (for one, [`crate::TrustConfig::extra_ca_pem`] holds
    /// no valid certificate).
    #[error("http client: {0}")]
    Client(String),
}
