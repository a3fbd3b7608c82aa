//! [`Source`]: where trust anchors or a status list come from, and reading one.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt as _;

use crate::TrustError;

/// Where Google publishes the attestation status list.
pub const GOOGLE_STATUS_LIST_URL: &str = "https://android.googleapis.com/attestation/status";

/// Where trust anchors (PEM certificates) or a status list (Google's JSON) come from.
///
/// `Display` shows a URL without its user information and query (which may hold
/// credentials): it is what [`crate::TrustStatus`] and the logs show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into the binary: Google's two hardware attestation roots
    /// ([`android_attestation::TrustAnchors::google`]). For anchors only: there is no
    /// built-in status list.
    Builtin,
    /// A local file.
    File(PathBuf),
    /// An `https://` URL, fetched with a GET.
    Url(String),
}

impl Source {
    /// Reads a source from configuration text (surrounding whitespace ignored):
    ///
    /// - `builtin` (any case): [`Source::Builtin`];
    /// - `file:/path`, `file:///path` or a bare absolute path: [`Source::File`]
    ///   (`file:relative/path` is taken as given, relative to the working directory);
    /// - `https://...`: [`Source::Url`].
    ///
    /// Any other URL scheme (`http://` included) is [`TrustError::NotHttps`]; anything else
    /// (a bare relative path, empty text, `file:` without a path, a `file://host/...` URL, an
    /// https URL without a host) is [`TrustError::InvalidSource`].
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let text = text.trim();
        let invalid = |reason: &str| TrustError::InvalidSource {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.eq_ignore_ascii_case("builtin") {
            return Ok(Self::Builtin);
        }
        if let Some(rest) = strip_prefix_ignore_case(text, "file:") {
            let path = match rest.strip_prefix("//") {
                Some(after) if after.starts_with('/') => after,
                Some(_) => return Err(invalid("a file URL must not name a host")),
                None => rest,
            };
            if path.is_empty() {
                return Err(invalid("no path after file:"));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if !scheme.eq_ignore_ascii_case("https") {
                return Err(TrustError::NotHttps { url: redact(text) });
            }
            let url = reqwest::Url::parse(text).map_err(|error| TrustError::InvalidSource {
                text: redact(text),
                reason: error.to_string(),
            })?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(TrustError::InvalidSource {
                    text: redact(text),
                    reason: "no host".to_owned(),
                });
            }
            return Ok(Self::Url(text.to_owned()));
        }
        if Path::new(text).is_absolute() {
            return Ok(Self::File(PathBuf::from(text)));
        }
        Err(invalid(
            "expected builtin, file:<path>, an absolute path or an https:// URL",
        ))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin => f.write_str("builtin"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Url(url) => f.write_str(&redact(url)),
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// A URL without user information, query and fragment (`?…` marks a dropped query).
pub(crate) fn redact(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "<unparsable url>".to_owned();
    };
    let mut shown = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
    if let Some(port) = parsed.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(parsed.path());
    if parsed.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

/// The error and its sources, joined with `": "`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `limit + 1` as a read limit: one byte more than allowed tells "too large" from "exactly
/// the limit".
fn read_limit(limit: usize) -> u64 {
    u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1)
}

/// Reads a file, refusing more than `max_bytes`.
pub(crate) async fn read_file(path: &Path, max_bytes: usize) -> Result<Vec<u8>, TrustError> {
    let io = |source| TrustError::Io {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut body = Vec::new();
    file.take(read_limit(max_bytes))
        .read_to_end(&mut body)
        .await
        .map_err(io)?;
    if body.len() > max_bytes {
        return Err(TrustError::TooLarge {
            what: path.display().to_string(),
            limit: max_bytes,
        });
    }
    Ok(body)
}

/// GETs an https URL, refusing a status other than 2xx and a body of more than `max_bytes`
/// (by its Content-Length before reading, or as it streams in).
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, TrustError> {
    let shown = redact(url);
    let parsed = reqwest::Url::parse(url).map_err(|error| TrustError::InvalidSource {
        text: shown.clone(),
        reason: error.to_string(),
    })?;
    if parsed.scheme() != "https" {
        return Err(TrustError::NotHttps { url: shown });
    }
    // A redirect away from https fails here too (the client is https-only).
    let unreachable = |error: reqwest::Error| TrustError::Unreachable {
        url: shown.clone(),
        reason: error_chain(&error.without_url()),
    };
    let mut response = client.get(parsed).send().await.map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        return Err(TrustError::Http {
            url: shown,
            status: status.as_u16(),
        });
    }
    let too_large = || TrustError::TooLarge {
        what: shown.clone(),
        limit: max_bytes,
    };
    let announced = response.content_length();
    if announced.is_some_and(|length| length >= read_limit(max_bytes)) {
        return Err(too_large());
    }
    let capacity = announced
        .and_then(|length| usize::try_from(length).ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len().saturating_add(chunk.len()) > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_credentials_query_and_fragment() {
        assert_eq!(
            redact("https://user:secret@example.com:8443/a/b?token=x#frag"),
            "https://example.com:8443/a/b?…"
        );
        assert_eq!(
            redact(GOOGLE_STATUS_LIST_URL),
            "https://android.googleapis.com/attestation/status"
        );
        assert_eq!(redact("not a url"), "<unparsable url>");
    }

    #[test]
    fn read_limit_is_one_more_than_the_limit() {
        assert_eq!(read_limit(0), 1);
        assert_eq!(read_limit(16), 17);
    }
}
