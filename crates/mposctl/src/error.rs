//! The CLI's error object: `{"code": …, "message": …}` on stdout, and its exit status.

use std::io::Write;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use paycrypto::CryptoError;

/// Exit status of a caller error (`bad_request`, `unsupported`).
pub(crate) const EXIT_BAD_REQUEST: u8 = 2;
/// Exit status of a failed verification (and of internal failures).
pub(crate) const EXIT_FAILED: u8 = 1;

/// A failed command: a stable lowercase code from the shared set (or
/// [`CryptoError::code`]) and a message that never contains key bytes, PINs or PANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError {
    code: &'static str,
    message: String,
    /// The step of a multi-step command (`sim terminal`) that failed.
    step: Option<&'static str>,
    /// The full result of a check that found something (`audit verify`'s report).
    report: Option<serde_json::Value>,
}

impl CliError {
    /// `bad_request` with a message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: "bad_request",
            message: message.into(),
            step: None,
            report: None,
        }
    }

    /// `not_found`: what the arguments name does not exist (exit status 2).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: "not_found",
            message: message.into(),
            step: None,
            report: None,
        }
    }

    /// `unavailable`: the broker or database cannot be reached or failed (exit status 1).
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: "unavailable",
            message: message.into(),
            step: None,
            report: None,
        }
    }

    /// An internal failure (exit status 1).
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            code: "internal",
            message: message.into(),
            step: None,
            report: None,
        }
    }

    /// A check that found something (exit status 1), with its full report.
    pub(crate) fn verification_failed(
        message: impl Into<String>,
        report: serde_json::Value,
    ) -> Self {
        Self {
            code: "verification_failed",
            message: message.into(),
            step: None,
            report: Some(report),
        }
    }

    /// The same error, naming the step it happened in.
    pub(crate) fn in_step(mut self, step: &'static str) -> Self {
        self.step = Some(step);
        self
    }

    /// The JSON error object.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(object) = json.as_object_mut() {
            if let Some(step) = self.step {
                object.insert("step".to_owned(), step.into());
            }
            if let Some(report) = &self.report {
                object.insert("report".to_owned(), report.clone());
            }
        }
        json
    }

    /// The process exit status for this error.
    pub(crate) fn exit_status(&self) -> u8 {
        match self.code {
            "bad_request" | "unsupported" | "not_found" => EXIT_BAD_REQUEST,
            _ => EXIT_FAILED,
        }
    }
}

impl From<CryptoError> for CliError {
    fn from(err: CryptoError) -> Self {
        // CryptoError messages name the value and the rule, never the bytes.
        Self {
            code: err.code(),
            message: err.to_string(),
            step: None,
            report: None,
        }
    }
}

impl From<terminal_sim::SimError> for CliError {
    fn from(err: terminal_sim::SimError) -> Self {
        // SimError messages carry no key material, PINs or full PANs.
        Self {
            code: err.code(),
            message: err.to_string(),
            step: None,
            report: None,
        }
    }
}

/// A token the user typed is echoed only when it cannot be key material: option names and
/// short words. Anything long or hex-looking is withheld.
fn safe_token(token: &str) -> Option<&str> {
    let looks_hex = token.len() >= 8 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let short = token.len() <= 32;
    (short && !looks_hex).then_some(token)
}

fn context(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(value) => Some(value.clone()),
        ContextValue::Strings(values) => Some(values.join(", ")),
        ContextValue::StyledStr(value) => Some(value.to_string()),
        ContextValue::StyledStrs(values) => Some(
            values
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ContextValue::Number(value) => Some(value.to_string()),
        _ => None,
    }
}

/// Turns a command-line parsing error into a JSON error without echoing the values the
/// user typed (they may be keys), except option names and short words.
fn clap_message(err: &clap::Error) -> String {
    let arg = context(err, ContextKind::InvalidArg).unwrap_or_else(|| "argument".to_owned());
    match err.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let mut message = format!("invalid value for {arg}");
            if let Some(valid) = context(err, ContextKind::ValidValue) {
                message.push_str(&format!("; possible values: {valid}"));
            } else if err.kind() == ErrorKind::ValueValidation {
                // The reason comes from a value parser (ours, or std's number parsing): it
                // states the rule and never contains the value.
                if let Some(reason) = std::error::Error::source(err) {
                    message.push_str(&format!(": {reason}"));
                }
            }
            message
        }
        ErrorKind::MissingRequiredArgument => format!("missing required argument: {arg}"),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "missing subcommand (see --help)".to_owned()
        }
        ErrorKind::InvalidSubcommand => {
            match context(err, ContextKind::InvalidSubcommand)
                .as_deref()
                .and_then(safe_token)
            {
                Some(name) => format!("unknown subcommand {name:?} (see --help)"),
                None => "unknown subcommand (see --help)".to_owned(),
            }
        }
        ErrorKind::UnknownArgument => match safe_token(&arg) {
            Some(name) => format!("unexpected argument {name:?} (see --help)"),
            None => "unexpected argument (see --help)".to_owned(),
        },
        ErrorKind::ArgumentConflict => {
            let prior = context(err, ContextKind::PriorArg).unwrap_or_default();
            format!("{arg} cannot be used with {prior}")
        }
        ErrorKind::WrongNumberOfValues | ErrorKind::TooManyValues | ErrorKind::TooFewValues => {
            format!("wrong number of values for {arg}")
        }
        ErrorKind::NoEquals => format!("{arg} needs a value with '='"),
        ErrorKind::InvalidUtf8 => "arguments must be valid UTF-8".to_owned(),
        _ => "invalid command line (see --help)".to_owned(),
    }
}

/// Reports a parsing error: help and version go to stdout as clap prints them (exit 0);
/// anything else is a `bad_request` JSON object on stdout (exit 2), with the usage on stderr.
pub(crate) fn report_clap(err: &clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return match err.print() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(EXIT_FAILED),
        };
    }
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // The help text (no user input in it) helps a human at a terminal.
        let _ = err.print();
    }
    let json = CliError::bad_request(clap_message(err)).to_json();
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{json}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::from(EXIT_BAD_REQUEST),
        Err(_) => ExitCode::from(EXIT_FAILED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_tokens_are_never_echoed() {
        assert_eq!(safe_token("0123456789ABCDEFFEDCBA9876543210"), None);
        assert_eq!(safe_token("DEADBEEF"), None);
        assert_eq!(safe_token("--frobnicate"), Some("--frobnicate"));
        assert_eq!(safe_token("kvc"), Some("kvc"));
        assert_eq!(safe_token(&"x".repeat(40)), None);
    }

    #[test]
    fn crypto_errors_keep_their_code() {
        let err = CliError::from(CryptoError::VerificationFailed("MAC"));
        assert_eq!(err.exit_status(), EXIT_FAILED);
        assert_eq!(err.to_json()["code"], "verification_failed");
        let err = CliError::from(CryptoError::InvalidHex("--key"));
        assert_eq!(err.exit_status(), EXIT_BAD_REQUEST);
        assert_eq!(err.to_json()["message"], "--key: not hexadecimal");
    }
}
