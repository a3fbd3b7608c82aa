//! Configuration from environment variables, validated once at start-up.
//!
//! Every setting of the platform is an environment variable whose name starts with `MPOS_`.
//! A binary reads them once, through [`Vars`], into its own typed configuration struct and
//! stops before doing anything else if one is missing or malformed. The error is a single
//! line that names the variable and says what was expected:
//!
//! ```text
//! MPOS_DATABASE_URL: expected a postgres:// or sqlite:// URL, got "mysql://x"
//! MPOS_OPERATOR_TOKEN: expected at least 32 characters (value hidden)
//! MPOS_BUS_URL: expected a memory:// or nats:// URL (not set)
//! ```
//!
//! Secret values and the passwords in URLs never appear in an error.
//!
//! [`Vars`] is a plain map, so tests build one with [`Vars::from_pairs`] instead of touching
//! the process environment:
//!
//! ```
//! use mpos_config::Vars;
//!
//! let vars = Vars::from_pairs([("MPOS_HTTP_ADDR", "127.0.0.1:8080")]);
//! let addr = vars.socket_addr("MPOS_HTTP_ADDR", "0.0.0.0:8080")?;
//! assert_eq!(addr.port(), 8080);
//! let verbose = vars.bool("MPOS_VERBOSE", false)?;
//! assert!(!verbose);
//! # Ok::<(), mpos_config::ConfigError>(())
//! ```
//!
//! A variable set to the empty string counts as not set, so `MPOS_X=` falls back to the
//! default like an absent variable does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecretMut, SecretBox, SecretString};

/// The prefix of every variable [`Vars::from_env`] reads.
pub const PREFIX: &str = "MPOS_";

/// The exit status for a configuration error (`EX_CONFIG` in `sysexits.h`).
pub const EXIT_CONFIG: i32 = 78;

/// How many characters of a bad value an error echoes before cutting it short.
const MAX_ECHO_CHARS: usize = 64;

/// The `MPOS_*` variables a process was started with, by name.
///
/// `Debug` lists the names only: values may be secrets.
#[derive(Clone, Default)]
pub struct Vars {
    values: BTreeMap<String, String>,
    /// Names whose value is not valid UTF-8; reading them is an error.
    not_unicode: BTreeSet<String>,
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vars")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("not_unicode", &self.not_unicode)
            .finish()
    }
}

impl Vars {
    /// The `MPOS_*` variables of the process environment; all others are ignored.
    pub fn from_env() -> Self {
        let mut vars = Self::default();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else {
                continue;
            };
            if !name.starts_with(PREFIX) {
                continue;
            }
            match value.into_string() {
                Ok(value) => {
                    vars.values.insert(name.to_owned(), value);
                }
                Err(_) => {
                    vars.not_unicode.insert(name.to_owned());
                }
            }
        }
        vars
    }

    /// Variables from name/value pairs, for tests and embedding. Names are taken as given,
    /// with or without the `MPOS_` prefix.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            values: pairs
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
            not_unicode: BTreeSet::new(),
        }
    }

    /// The names of the variables that are set (to a non-empty value), in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, _)| name.as_str())
            .chain(self.not_unicode.iter().map(String::as_str))
    }

    /// Whether the variable is set to a non-empty value (valid UTF-8 or not). For optional
    /// settings without a default: `if vars.is_set(NAME) { Some(vars.url(NAME, None, ..)?) }`.
    pub fn is_set(&self, name: &str) -> bool {
        self.not_unicode.contains(name)
            || self.values.get(name).is_some_and(|value| !value.is_empty())
    }

    /// The raw value, `None` if unset or empty; an error if it is not valid UTF-8.
    fn raw(&self, name: &str, expected: &str) -> Result<Option<&str>, ConfigError> {
        if self.not_unicode.contains(name) {
            return Err(ConfigError::new(name, expected, Got::NotUnicode));
        }
        Ok(self
            .values
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty()))
    }

    /// A string value; required when `default` is `None`. `expected` describes the value in
    /// the error, e.g. `"a service name"`.
    pub fn string(
        &self,
        name: &str,
        default: Option<&str>,
        expected: &str,
    ) -> Result<String, ConfigError> {
        match (self.raw(name, expected)?, default) {
            (Some(value), _) => Ok(value.to_owned()),
            (None, Some(default)) => Ok(default.to_owned()),
            (None, None) => Err(ConfigError::missing(name, expected)),
        }
    }

    /// Any value with a [`FromStr`] implementation; required when `default` is `None`.
    /// `expected` describes the value in the error, e.g. `"a number of workers from 1 to 64"`.
    /// The bad value is echoed, so do not use this for secrets.
    pub fn parse<T: FromStr>(
        &self,
        name: &str,
        default: Option<T>,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match (self.raw(name, expected)?, default) {
            (Some(value), _) => value
                .parse()
                .map_err(|_| ConfigError::invalid(name, expected, value)),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(ConfigError::missing(name, expected)),
        }
    }

    /// A file path, if the variable is set.
    pub fn optional_path(&self, name: &str) -> Result<Option<String>, ConfigError> {
        if self.is_set(name) {
            self.string(name, None, "a file path").map(Some)
        } else {
            Ok(None)
        }
    }

    /// A socket address such as `0.0.0.0:8080` or `[::1]:9090`.
    pub fn socket_addr(&self, name: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        const EXPECTED: &str = "a socket address like 0.0.0.0:8080 or [::1]:8080";
        let value = self.raw(name, EXPECTED)?.unwrap_or(default);
        value
            .parse()
            .map_err(|_| ConfigError::invalid(name, EXPECTED, value))
    }

    /// A URL whose scheme is one of `schemes` (any scheme when `schemes` is empty); required
    /// when `default` is `None`. A password in the URL is hidden in errors.
    pub fn url(
        &self,
        name: &str,
        default: Option<&str>,
        schemes: &[&str],
    ) -> Result<url::Url, ConfigError> {
        let expected = describe_url(schemes);
        let value = match (self.raw(name, &expected)?, default) {
            (Some(value), _) => value,
            (None, Some(default)) => default,
            (None, None) => return Err(ConfigError::missing(name, &expected)),
        };
        let invalid = || ConfigError::new(name, &expected, Got::Value(redact_url(value)));
        let parsed = url::Url::parse(value).map_err(|_| invalid())?;
        if !schemes.is_empty() && !schemes.contains(&parsed.scheme()) {
            return Err(invalid());
        }
        Ok(parsed)
    }

    /// A duration given as a whole number of milliseconds.
    pub fn duration_ms(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        const EXPECTED: &str = "a duration in whole milliseconds, like 1500";
        match self.raw(name, EXPECTED)? {
            Some(value) => value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| ConfigError::invalid(name, EXPECTED, value)),
            None => Ok(Duration::from_millis(default_ms)),
        }
    }

    /// A flag: `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        const EXPECTED: &str = "true or false";
        let Some(value) = self.raw(name, EXPECTED)? else {
            return Ok(default);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::invalid(name, EXPECTED, value)),
        }
    }

    /// A required secret of at least `min_len` characters. The value never appears in errors.
    pub fn secret(&self, name: &str, min_len: usize) -> Result<SecretString, ConfigError> {
        self.optional_secret(name, min_len)?
            .ok_or_else(|| ConfigError::missing(name, &describe_secret(min_len)))
    }

    /// An optional secret: `None` when unset, an error when set but shorter than `min_len`
    /// characters. The value never appears in errors.
    pub fn optional_secret(
        &self,
        name: &str,
        min_len: usize,
    ) -> Result<Option<SecretString>, ConfigError> {
        let expected = describe_secret(min_len);
        let Some(value) = self.raw(name, &expected)? else {
            return Ok(None);
        };
        if value.chars().count() < min_len {
            return Err(ConfigError::hidden(name, &expected));
        }
        Ok(Some(SecretString::from(value)))
    }

    /// An optional secret of exactly `N` bytes given as `2 * N` hexadecimal characters, e.g. a
    /// 32-byte Ed25519 seed as 64 hex characters. `None` when unset. The value never appears
    /// in errors.
    pub fn hex_bytes<const N: usize>(
        &self,
        name: &str,
    ) -> Result<Option<SecretBox<[u8; N]>>, ConfigError> {
        let expected = format!("{} hexadecimal characters ({N} bytes)", N * 2);
        let Some(value) = self.raw(name, &expected)? else {
            return Ok(None);
        };
        let mut bytes = SecretBox::new(Box::new([0_u8; N]));
        hex::decode_to_slice(value, bytes.expose_secret_mut().as_mut_slice())
            .map_err(|_| ConfigError::hidden(name, &expected))?;
        Ok(Some(bytes))
    }
}

/// "a postgres:// or sqlite:// URL"
fn describe_url(schemes: &[&str]) -> String {
    let with_separator: Vec<String> = schemes
        .iter()
        .map(|scheme| format!("{scheme}://"))
        .collect();
    match with_separator.as_slice() {
        [] => "a URL".to_owned(),
        [only] => format!("a {only} URL"),
        [init @ .., last] => format!("a {} or {last} URL", init.join(", ")),
    }
}

fn describe_secret(min_len: usize) -> String {
    format!("at least {min_len} characters")
}

/// The value with the user-info part (`user:password@`) of a URL replaced by `***`.
fn redact_url(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &value[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &value[..authority_start], &rest[at..]),
        None => value.to_owned(),
    }
}

/// What was found instead of the expected value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    /// The variable is not set (or empty).
    Missing,
    /// A bad value that may be shown.
    Value(String),
    /// A bad value that must not be shown.
    Hidden,
    /// A value that is not valid UTF-8.
    NotUnicode,
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str(" (not set)"),
            Self::Hidden => f.write_str(" (value hidden)"),
            Self::NotUnicode => f.write_str(" (value is not valid UTF-8)"),
            Self::Value(value) => {
                let mut shown: String = value.chars().take(MAX_ECHO_CHARS).collect();
                if shown.len() < value.len() {
                    shown.push('…');
                }
                // Debug quotes the value and escapes control characters: always one line.
                write!(f, ", got {shown:?}")
            }
        }
    }
}

/// A missing or bad configuration value. `Display` is the one line to show the operator,
/// e.g. `MPOS_DATABASE_URL: expected a postgres:// or sqlite:// URL, got "mysql://x"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: expected {expected}{got}")]
pub struct ConfigError {
    variable: String,
    expected: String,
    got: Got,
}

impl ConfigError {
    fn new(variable: &str, expected: &str, got: Got) -> Self {
        Self {
            variable: variable.to_owned(),
            expected: expected.to_owned(),
            got,
        }
    }

    /// A required variable that is not set.
    pub fn missing(variable: &str, expected: &str) -> Self {
        Self::new(variable, expected, Got::Missing)
    }

    /// A bad value that may be shown (never use this for secrets).
    pub fn invalid(variable: &str, expected: &str, value: &str) -> Self {
        Self::new(variable, expected, Got::Value(value.to_owned()))
    }

    /// A bad value that must not be shown.
    pub fn hidden(variable: &str, expected: &str) -> Self {
        Self::new(variable, expected, Got::Hidden)
    }

    /// The name of the variable, e.g. `MPOS_DATABASE_URL`.
    pub fn variable(&self) -> &str {
        &self.variable
    }

    /// What the variable should hold, e.g. `a postgres:// or sqlite:// URL`.
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// Whether the variable was not set at all (as opposed to set to a bad value).
    pub fn is_missing(&self) -> bool {
        self.got == Got::Missing
    }
}

/// The value, or — on a configuration error — its one line on stderr and exit with status
/// [`EXIT_CONFIG`] (78, `EX_CONFIG`). For `main` only.
pub fn exit_on_error<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(EXIT_CONFIG)
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn string_required_default_and_present() {
        let empty = vars(&[]);
        let error = empty
            .string("MPOS_SERVICE", None, "a service name")
            .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "MPOS_SERVICE: expected a service name (not set)"
        );
        assert!(error.is_missing());
        assert_eq!(error.variable(), "MPOS_SERVICE");
        assert_eq!(error.expected(), "a service name");
        assert_eq!(
            empty
                .string("MPOS_SERVICE", Some("tms"), "a service name")
                .expect("default"),
            "tms"
        );
        let set = vars(&[("MPOS_SERVICE", "gateway")]);
        assert_eq!(
            set.string("MPOS_SERVICE", Some("tms"), "a service name")
                .expect("value"),
            "gateway"
        );
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let set = vars(&[("MPOS_SERVICE", "")]);
        assert!(!set.is_set("MPOS_SERVICE"));
        assert!(vars(&[("MPOS_SERVICE", "x")]).is_set("MPOS_SERVICE"));
        assert_eq!(
            set.string("MPOS_SERVICE", Some("tms"), "x")
                .expect("default"),
            "tms"
        );
        assert!(set.string("MPOS_SERVICE", None, "x").is_err());
        assert_eq!(set.names().count(), 0);
    }

    #[test]
    fn parse_typed_values() {
        let set = vars(&[("MPOS_WORKERS", "8"), ("MPOS_BAD", "eight")]);
        assert_eq!(
            set.parse::<u16>("MPOS_WORKERS", None, "a number")
                .expect("value"),
            8
        );
        assert_eq!(
            set.parse::<u16>("MPOS_OTHER", Some(4), "a number")
                .expect("default"),
            4
        );
        assert_eq!(
            set.parse::<u16>("MPOS_BAD", Some(4), "a number of workers")
                .expect_err("bad")
                .to_string(),
            "MPOS_BAD: expected a number of workers, got \"eight\""
        );
        assert_eq!(
            set.parse::<u16>("MPOS_OTHER", None, "a number")
                .expect_err("missing")
                .to_string(),
            "MPOS_OTHER: expected a number (not set)"
        );
    }

    #[test]
    fn socket_addr_default_and_bad() {
        let set = vars(&[("MPOS_ADMIN_ADDR", "[::1]:9090"), ("MPOS_BAD", "localhost")]);
        assert_eq!(
            set.socket_addr("MPOS_ADMIN_ADDR", "0.0.0.0:9000")
                .expect("value")
                .to_string(),
            "[::1]:9090"
        );
        assert_eq!(
            set.socket_addr("MPOS_HTTP_ADDR", "0.0.0.0:8080")
                .expect("default")
                .port(),
            8080
        );
        assert_eq!(
            set.socket_addr("MPOS_BAD", "0.0.0.0:8080")
                .expect_err("bad")
                .to_string(),
            "MPOS_BAD: expected a socket address like 0.0.0.0:8080 or [::1]:8080, got \"localhost\""
        );
    }

    #[test]
    fn url_schemes_default_and_missing() {
        let set = vars(&[
            ("MPOS_DATABASE_URL", "mysql://x"),
            ("MPOS_BUS_URL", "nats://bus:4222"),
        ]);
        assert_eq!(
            set.url("MPOS_DATABASE_URL", None, &["postgres", "sqlite"])
                .expect_err("scheme")
                .to_string(),
            "MPOS_DATABASE_URL: expected a postgres:// or sqlite:// URL, got \"mysql://x\""
        );
        assert_eq!(
            set.url("MPOS_BUS_URL", None, &["memory", "nats", "kafka"])
                .expect("value")
                .host_str(),
            Some("bus")
        );
        assert_eq!(
            set.url("MPOS_OTHER_URL", Some("memory://"), &["memory", "nats"])
                .expect("default")
                .scheme(),
            "memory"
        );
        assert_eq!(
            set.url("MPOS_OTHER_URL", None, &["nats"])
                .expect_err("missing")
                .to_string(),
            "MPOS_OTHER_URL: expected a nats:// URL (not set)"
        );
        let not_a_url = vars(&[("MPOS_X", "not a url")]);
        assert_eq!(
            not_a_url
                .url("MPOS_X", None, &[])
                .expect_err("bad")
                .to_string(),
            "MPOS_X: expected a URL, got \"not a url\""
        );
        assert_eq!(
            describe_url(&["memory", "nats", "kafka"]),
            "a memory://, nats:// or kafka:// URL"
        );
    }

    #[test]
    fn url_password_is_never_echoed() {
        let set = vars(&[
            (
                "MPOS_DATABASE_URL",
                "mysql://admin:hunter2-password@db:3306/mpos",
            ),
            ("MPOS_BROKEN_URL", "postgres://admin:hunter2@db:99999/mpos"),
        ]);
        let error = set
            .url("MPOS_DATABASE_URL", None, &["postgres", "sqlite"])
            .expect_err("scheme")
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("mysql://***@db:3306/mpos"), "{error}");
        let error = set
            .url("MPOS_BROKEN_URL", None, &["postgres"])
            .expect_err("unparsable")
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn duration_ms_default_and_bad() {
        let set = vars(&[("MPOS_TIMEOUT_MS", "1500"), ("MPOS_BAD_MS", "1.5s")]);
        assert_eq!(
            set.duration_ms("MPOS_TIMEOUT_MS", 10).expect("value"),
            Duration::from_millis(1500)
        );
        assert_eq!(
            set.duration_ms("MPOS_OTHER_MS", 250).expect("default"),
            Duration::from_millis(250)
        );
        assert_eq!(
            set.duration_ms("MPOS_BAD_MS", 10)
                .expect_err("bad")
                .to_string(),
            "MPOS_BAD_MS: expected a duration in whole milliseconds, like 1500, got \"1.5s\""
        );
    }

    #[test]
    fn bool_spellings_default_and_bad() {
        for (value, expected) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("on", true),
            ("false", false),
            ("0", false),
            ("No", false),
            ("off", false),
        ] {
            let set = vars(&[("MPOS_FLAG", value)]);
            assert_eq!(set.bool("MPOS_FLAG", !expected).expect(value), expected);
        }
        let set = vars(&[("MPOS_FLAG", "maybe")]);
        assert!(set.bool("MPOS_OTHER", true).expect("default"));
        assert_eq!(
            set.bool("MPOS_FLAG", false).expect_err("bad").to_string(),
            "MPOS_FLAG: expected true or false, got \"maybe\""
        );
    }

    #[test]
    fn secret_required_short_and_hidden() {
        let short = "s3cr3t-but-too-short";
        let set = vars(&[
            ("MPOS_OPERATOR_TOKEN", short),
            ("MPOS_GOOD_TOKEN", "0123456789abcdef0123456789abcdef"),
        ]);
        let error = set
            .secret("MPOS_OPERATOR_TOKEN", 32)
            .expect_err("short")
            .to_string();
        assert_eq!(
            error,
            "MPOS_OPERATOR_TOKEN: expected at least 32 characters (value hidden)"
        );
        assert!(!error.contains(short));
        assert_eq!(
            set.secret("MPOS_MISSING_TOKEN", 32)
                .expect_err("missing")
                .to_string(),
            "MPOS_MISSING_TOKEN: expected at least 32 characters (not set)"
        );
        let good = set.secret("MPOS_GOOD_TOKEN", 32).expect("good");
        assert_eq!(good.expose_secret(), "0123456789abcdef0123456789abcdef");
        assert!(!format!("{good:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn optional_secret_absent_short_and_present() {
        let set = vars(&[("MPOS_A", "short-secret"), ("MPOS_B", "long-enough-secret")]);
        assert!(
            set.optional_secret("MPOS_NONE", 8)
                .expect("absent")
                .is_none()
        );
        let error = set
            .optional_secret("MPOS_A", 16)
            .expect_err("short")
            .to_string();
        assert_eq!(
            error,
            "MPOS_A: expected at least 16 characters (value hidden)"
        );
        assert!(!error.contains("short-secret"));
        let present = set.optional_secret("MPOS_B", 16).expect("present");
        assert_eq!(
            present.as_ref().map(ExposeSecret::expose_secret),
            Some("long-enough-secret")
        );
    }

    #[test]
    fn hex_bytes_absent_bad_and_good() {
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let bad = "zz61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let set = vars(&[
            ("MPOS_SEED", seed),
            ("MPOS_BAD_SEED", bad),
            ("MPOS_SHORT_SEED", "9d61b19d"),
        ]);
        assert!(set.hex_bytes::<32>("MPOS_NONE").expect("absent").is_none());
        let decoded = set
            .hex_bytes::<32>("MPOS_SEED")
            .expect("good")
            .expect("present");
        assert_eq!(hex::encode(decoded.expose_secret()), seed);
        for name in ["MPOS_BAD_SEED", "MPOS_SHORT_SEED"] {
            let error = set.hex_bytes::<32>(name).expect_err(name).to_string();
            assert_eq!(
                error,
                format!("{name}: expected 64 hexadecimal characters (32 bytes) (value hidden)")
            );
            assert!(!error.contains("9d61b19d"), "{error}");
        }
    }

    #[test]
    fn long_and_multiline_values_are_cut_to_one_line() {
        let long = format!("{}\nsecond line", "x".repeat(200));
        let set = vars(&[("MPOS_FLAG", long.as_str())]);
        let error = set.bool("MPOS_FLAG", false).expect_err("bad").to_string();
        assert!(!error.contains('\n'));
        assert!(error.ends_with("…\""), "{error}");
        assert!(error.len() < 150, "{error}");
    }

    #[test]
    fn debug_shows_names_not_values() {
        let set = vars(&[("MPOS_OPERATOR_TOKEN", "do-not-print-me")]);
        let debug = format!("{set:?}");
        assert!(debug.contains("MPOS_OPERATOR_TOKEN"));
        assert!(!debug.contains("do-not-print-me"));
    }

    #[test]
    fn from_env_keeps_only_the_prefix() {
        // Reads the real environment without changing it: every name kept has the prefix.
        let vars = Vars::from_env();
        assert!(vars.names().all(|name| name.starts_with(PREFIX)));
    }

    #[test]
    fn redact_url_cases() {
        assert_eq!(redact_url("nats://bus:4222"), "nats://bus:4222");
        assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://***@h/db");
        assert_eq!(redact_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
        assert_eq!(redact_url("no scheme"), "no scheme");
    }
}
