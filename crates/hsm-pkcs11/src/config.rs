//! Backend configuration: the `pkcs11:` URL and the user PIN.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;

/// Sessions kept open per token when the URL does not say otherwise.
pub const DEFAULT_SESSIONS: usize = 4;
/// Largest session pool accepted from a URL.
pub const MAX_SESSIONS: usize = 64;
/// Longest token label PKCS#11 can hold (`CK_TOKEN_INFO.label` is 32 bytes, blank-padded).
pub const MAX_TOKEN_LABEL: usize = 32;

/// A bad `pkcs11:` URL. Never carries the PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    Malformed(String),
    /// The scheme is not `pkcs11`.
    #[error("scheme {0:?} is not pkcs11")]
    WrongScheme(String),
    /// A host was given (`pkcs11://host/...`); the module is a local file.
    #[error("a pkcs11 URL names a local module file, not a host ({0:?})")]
    HostNotAllowed(String),
    /// The module path is empty or relative.
    #[error("the module path must be absolute, got {0:?}")]
    ModulePath(String),
    /// `token=` is missing or empty.
    #[error("the URL has no token=<label>")]
    MissingToken,
    /// The token label is longer than PKCS#11 allows.
    #[error("token label is {0} bytes; at most 32 are allowed")]
    TokenLabelTooLong(usize),
    /// A query parameter appears twice.
    #[error("query parameter {0:?} appears more than once")]
    DuplicateParameter(String),
    /// A query parameter this backend does not know (typos must not pass silently).
    #[error("unknown query parameter {0:?}; known: token, sessions")]
    UnknownParameter(String),
    /// `sessions=` is not a number from 1 to [`MAX_SESSIONS`].
    #[error("sessions must be a number from 1 to 64, got {0:?}")]
    Sessions(String),
    /// A fragment (`#...`) was given.
    #[error("a pkcs11 URL takes no fragment")]
    Fragment,
}

/// Where the token is and how to log in.
///
/// Built from a URL of the form
/// `pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=mpos` (also `pkcs11:/usr/lib/...?token=mpos`),
/// with optional `&sessions=N` (1 to 64, default 4). The label is percent-decoded, so a label
/// with spaces is written `token=my%20token`. This is the platform's backend URL, not an
/// RFC 7512 PKCS#11 URI.
///
/// The user PIN is passed separately as a [`SecretString`]; `Debug` never shows it.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Absolute path of the PKCS#11 module (shared library).
    pub module: PathBuf,
    /// Label of the token to use (`CK_TOKEN_INFO.label`, blanks trimmed).
    pub token_label: String,
    /// The user (CKU_USER) PIN.
    pub user_pin: SecretString,
    /// How many read-write sessions to keep open at most.
    pub sessions: usize,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("user_pin", &"[REDACTED]")
            .field("sessions", &self.sessions)
            .finish()
    }
}

impl Pkcs11Config {
    /// Parses a `pkcs11:` backend URL; `user_pin` is kept as given.
    pub fn from_url(url: &str, user_pin: SecretString) -> Result<Self, ConfigError> {
        let parsed =
            url::Url::parse(url.trim()).map_err(|e| ConfigError::Malformed(e.to_string()))?;
        if parsed.scheme() != "pkcs11" {
            return Err(ConfigError::WrongScheme(parsed.scheme().to_owned()));
        }
        if let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) {
            return Err(ConfigError::HostNotAllowed(host.to_owned()));
        }
        if parsed.fragment().is_some() {
            return Err(ConfigError::Fragment);
        }
        let path = percent_decode(parsed.path())
            .ok_or_else(|| ConfigError::ModulePath(parsed.path().to_owned()))?;
        if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
            return Err(ConfigError::ModulePath(path));
        }

        let mut token: Option<String> = None;
        let mut sessions: Option<usize> = None;
        for (name, value) in parsed.query_pairs() {
            match name.as_ref() {
                "token" => {
                    if token.replace(value.into_owned()).is_some() {
                        return Err(ConfigError::DuplicateParameter("token".into()));
                    }
                }
                "sessions" => {
                    let n = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_SESSIONS).contains(n))
                        .ok_or_else(|| ConfigError::Sessions(value.clone().into_owned()))?;
                    if sessions.replace(n).is_some() {
                        return Err(ConfigError::DuplicateParameter("sessions".into()));
                    }
                }
                other => return Err(ConfigError::UnknownParameter(other.to_owned())),
            }
        }
        let token_label = token
            .filter(|t| !t.trim().is_empty())
            .ok_or(ConfigError::MissingToken)?;
        if token_label.len() > MAX_TOKEN_LABEL {
            return Err(ConfigError::TokenLabelTooLong(token_label.len()));
        }
        Ok(Self {
            module: PathBuf::from(path),
            token_label,
            user_pin,
            sessions: sessions.unwrap_or(DEFAULT_SESSIONS),
        })
    }
}

/// Percent-decodes a URL path (the `url` crate keeps paths encoded). `None` when the result is
/// not UTF-8 or an escape is broken.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pin() -> SecretString {
        SecretString::from("1234")
    }

    #[test]
    fn parses_triple_slash_and_single_slash_forms() {
        let c =
            Pkcs11Config::from_url("pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=mpos", pin())
                .unwrap();
        assert_eq!(c.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(c.token_label, "mpos");
        assert_eq!(c.sessions, DEFAULT_SESSIONS);
        let c = Pkcs11Config::from_url("pkcs11:/opt/my%20hsm/lib.so?token=a%20b&sessions=8", pin())
            .unwrap();
        assert_eq!(c.module, PathBuf::from("/opt/my hsm/lib.so"));
        assert_eq!(c.token_label, "a b");
        assert_eq!(c.sessions, 8);
    }

    #[test]
    fn rejects_bad_urls_with_typed_errors() {
        let bad = |u: &str| Pkcs11Config::from_url(u, pin()).unwrap_err();
        assert!(matches!(bad("not a url"), ConfigError::Malformed(_)));
        assert!(matches!(
            bad("https:///x.so?token=a"),
            ConfigError::WrongScheme(_)
        ));
        assert!(matches!(
            bad("pkcs11://host/x.so?token=a"),
            ConfigError::HostNotAllowed(_)
        ));
        assert!(matches!(
            bad("pkcs11:x.so?token=a"),
            ConfigError::ModulePath(_)
        ));
        assert!(matches!(
            bad("pkcs11:///?token=a"),
            ConfigError::ModulePath(_)
        ));
        assert!(matches!(bad("pkcs11:///x.so"), ConfigError::MissingToken));
        assert!(matches!(
            bad("pkcs11:///x.so?token="),
            ConfigError::MissingToken
        ));
        assert!(matches!(
            bad("pkcs11:///x.so?token=a&token=b"),
            ConfigError::DuplicateParameter(_)
        ));
        assert!(matches!(
            bad("pkcs11:///x.so?token=a&pin=1234"),
            ConfigError::UnknownParameter(_)
        ));
        assert!(matches!(
            bad("pkcs11:///x.so?token=a&sessions=0"),
            ConfigError::Sessions(_)
        ));
        assert!(matches!(
            bad("pkcs11:///x.so?token=a&sessions=65"),
            ConfigError::Sessions(_)
        ));
        assert!(matches!(
            bad("pkcs11:///x.so?token=a#frag"),
            ConfigError::Fragment
        ));
        assert!(matches!(
            bad(&format!("pkcs11:///x.so?token={}", "x".repeat(33))),
            ConfigError::TokenLabelTooLong(33)
        ));
    }

    #[test]
    fn debug_never_prints_the_pin() {
        let c = Pkcs11Config::from_url("pkcs11:///x.so?token=a", SecretString::from("s3cr3t-pin"))
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = Pkcs11Config::from_url(&s, pin());
        }
    }
}
