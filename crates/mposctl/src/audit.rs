//! `mposctl audit verify`: checks each service's log — the hash chain, every aggregate's
//! sequence, the head row and the signed checkpoints — with [`mpos_es::verify`], and names
//! the first position where a log stops being what its service wrote (altered, deleted,
//! inserted, reordered, a checkpoint that no longer matches or is not signed by a trusted key).
//!
//! * against the embedded `mposd`: `--data-dir DIR` (its six SQLite logs `DIR/<service>.db`;
//!   the trusted key is the public half of `DIR/chain-signing.key` unless `--trusted-key`
//!   names others);
//! * against a distributed deployment: `--database SERVICE=URL` for each log (the service's
//!   own `MPOS_DATABASE_URL`) and `--trusted-key HEX` for each checkpoint signing key.
//!
//! `--from` / `--to` (RFC 3339) check only the events that occurred in that window: from the
//! first of them (linked to the event before it) to the last, each aggregate's sequence from
//! its first event in the window on, and the checkpoints inside.
//!
//! An intact set of logs prints the report and exits 0; a finding prints the same report as
//! `{"code":"verification_failed",…,"report":…}` and exits 1. No event or checkpoint is
//! changed (connecting creates a log's tables where none exist, as a service does; an embedded
//! log is only opened if its file exists).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ed25519_dalek::{SigningKey, VerifyingKey};
use mpos_es::{EventStore, VerifyReport};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::CliError;

type Result<T> = std::result::Result<T, CliError>;

/// The logs to verify (service, store URL) and the trusted checkpoint keys.
type Logs = (Vec<(String, String)>, Vec<VerifyingKey>);

/// The services whose logs an embedded data directory holds, in the order `mposd` starts
/// them.
pub(crate) const SERVICES: [&str; 6] = [
    "terminal-management",
    "hsm-proxy",
    "key-injection",
    "attestation",
    "routing",
    "authorization",
];

/// `service` if it is one of the platform's; otherwise the `bad_request` every command gives.
pub(crate) fn check_service(service: &str) -> Result<()> {
    if SERVICES.contains(&service) {
        return Ok(());
    }
    Err(CliError::bad_request(format!(
        "--service {service:?}: not a service of the platform (one of {})",
        SERVICES.join(", ")
    )))
}

/// The URL of a service's log in an embedded data directory, `DIR/<service>.db`, which must
/// exist (connecting would create an empty one); otherwise the path that is missing.
pub(crate) fn embedded_log(dir: &Path, service: &str) -> std::result::Result<String, PathBuf> {
    let path = dir.join(format!("{service}.db"));
    if path.is_file() {
        Ok(format!("sqlite://{}", path.display()))
    } else {
        Err(path)
    }
}

/// The file in an embedded data directory that holds the chain signing key (an Ed25519 seed,
/// hex), as `mposd` writes it.
const SIGNING_KEY_FILE: &str = "chain-signing.key";

/// `mposctl audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    op: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verifies every service's hash chain and signed checkpoints; exits 1 naming the first
    /// bad position of each log that is not intact.
    Verify(VerifyArgs),
}

/// `mposctl audit verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The embedded platform's data directory (`MPOS_DATA_DIR` of `mposd`).
    #[arg(long, value_name = "DIR", conflicts_with = "database")]
    data_dir: Option<PathBuf>,
    /// A service's log in a distributed deployment, as SERVICE=URL (its MPOS_DATABASE_URL);
    /// repeat for each service.
    #[arg(long, value_name = "SERVICE=URL")]
    database: Vec<String>,
    /// A trusted checkpoint signing key: the Ed25519 public key, 64 hex characters; repeat
    /// for several. Required with --database.
    #[arg(long, value_name = "HEX")]
    trusted_key: Vec<String>,
    /// Only these services (default: every one given or found).
    #[arg(long, value_name = "SERVICE")]
    service: Vec<String>,
    /// Only the events that occurred at or after this time (RFC 3339, e.g.
    /// 2026-12-07T00:00:00Z): from the first of them, linked to the event before it.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<i64>,
    /// Only the events that occurred at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<i64>,
}

/// An RFC 3339 time as microseconds since the Unix epoch.
pub(crate) fn parse_time(value: &str) -> std::result::Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|time| time.timestamp_micros())
        .map_err(|_| "expected an RFC 3339 time, like 2026-12-07T00:00:00Z".to_owned())
}

/// The part of a log to check: all of it, or the events of a time window.
#[derive(Clone, Copy, Debug)]
struct Window {
    from_us: Option<i64>,
    to_us: Option<i64>,
}

impl Window {
    /// Whether a bound is given (otherwise the whole log is checked).
    fn is_set(self) -> bool {
        self.from_us.is_some() || self.to_us.is_some()
    }
}

/// Runs `mposctl audit`.
pub(crate) fn run(args: AuditArgs) -> Result<Value> {
    match args.op {
        AuditCommand::Verify(args) => verify(&args),
    }
}

fn verify(args: &VerifyArgs) -> Result<Value> {
    let (logs, keys) = match &args.data_dir {
        Some(dir) => embedded(dir, &args.trusted_key)?,
        None => distributed(&args.database, &args.trusted_key)?,
    };
    let logs: Vec<(String, String)> = if args.service.is_empty() {
        logs
    } else {
        for wanted in &args.service {
            if !logs.iter().any(|(service, _)| service == wanted) {
                return Err(CliError::bad_request(format!(
                    "--service {wanted:?}: no log given for it"
                )));
            }
        }
        logs.into_iter()
            .filter(|(service, _)| args.service.contains(service))
            .collect()
    };
    let window = Window {
        from_us: args.from,
        to_us: args.to,
    };
    if let (Some(from), Some(to)) = (window.from_us, window.to_us)
        && from > to
    {
        return Err(CliError::bad_request("--from is after --to"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::failed(format!("cannot start the runtime: {error}")))?;
    let mut services = Vec::new();
    let mut findings = Vec::new();
    for (service, url) in &logs {
        let (report, positions) = runtime.block_on(verify_one(service, url, &keys, window))?;
        if let Some(tamper) = &report.tamper {
            findings.push(format!("{service}: {tamper}"));
        }
        let mut json = report_json(service, &report);
        if window.is_set() {
            json["window_positions"] =
                positions.map_or(Value::Null, |(first, last)| json!([first, last]));
        }
        services.push(json);
    }
    let mut report = json!({
        "intact": findings.is_empty(),
        "trusted_keys": keys.iter().map(|key| hex::encode(key.as_bytes())).collect::<Vec<_>>(),
        "services": services,
    });
    if window.is_set() {
        report["window"] = json!({ "from_us": window.from_us, "to_us": window.to_us });
    }
    if findings.is_empty() {
        Ok(report)
    } else {
        Err(CliError::verification_failed(
            format!("the audit trail is not intact: {}", findings.join("; ")),
            report,
        ))
    }
}

/// Verifies one log, or its events of `window`; with a window, also the positions it
/// covered (`None`: no event in it, nothing to check).
async fn verify_one(
    service: &str,
    url: &str,
    keys: &[VerifyingKey],
    window: Window,
) -> Result<(VerifyReport, Option<(u64, u64)>)> {
    let store = EventStore::connect_read_only(url, service)
        .await
        .map_err(|error| CliError::unavailable(format!("{service}: {error}")))?;
    let failed = |error: mpos_es::StoreError| CliError::failed(format!("{service}: {error}"));
    let result = async {
        if !window.is_set() {
            return Ok((mpos_es::verify(&store, keys).await.map_err(failed)?, None));
        }
        let positions = store
            .positions_between(
                window.from_us.unwrap_or(i64::MIN),
                window.to_us.unwrap_or(i64::MAX),
            )
            .await
            .map_err(failed)?;
        let Some((first, last)) = positions else {
            let empty = VerifyReport {
                events_checked: 0,
                checkpoints_checked: 0,
                last_position: 0,
                tamper: None,
            };
            return Ok((empty, None));
        };
        // Without --to the window is open: the end of the log is checked too.
        let last = if window.to_us.is_some() {
            last
        } else {
            u64::MAX
        };
        let report = mpos_es::verify_range(&store, keys, first, last)
            .await
            .map_err(failed)?;
        Ok((report, positions))
    }
    .await;
    store.close().await;
    result
}

fn report_json(service: &str, report: &VerifyReport) -> Value {
    let mut value = json!({
        "service": service,
        "intact": report.is_intact(),
        "events_checked": report.events_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "last_position": report.last_position,
    });
    if let Some(tamper) = &report.tamper {
        value["finding"] = json!({
            "kind": tamper.kind(),
            "position": tamper.position(),
            "message": tamper.explain(),
        });
    }
    value
}

/// The six logs of an embedded data directory, and the trusted keys: those given, else the
/// public half of the directory's chain signing key.
fn embedded(dir: &Path, given: &[String]) -> Result<Logs> {
    if !dir.is_dir() {
        return Err(CliError::bad_request(format!(
            "--data-dir {}: not a directory",
            dir.display()
        )));
    }
    let mut logs = Vec::new();
    for service in SERVICES {
        if let Ok(url) = embedded_log(dir, service) {
            logs.push((service.to_owned(), url));
        }
    }
    if logs.is_empty() {
        return Err(CliError::bad_request(format!(
            "--data-dir {}: no service log (<service>.db) in it",
            dir.display()
        )));
    }
    let keys = if given.is_empty() {
        let path = dir.join(SIGNING_KEY_FILE);
        let seed = Zeroizing::new(std::fs::read_to_string(&path).map_err(|error| {
            CliError::bad_request(format!(
                "{}: cannot read the chain signing key ({error}); name the trusted keys with --trusted-key",
                path.display()
            ))
        })?);
        let mut bytes = Zeroizing::new([0_u8; 32]);
        hex::decode_to_slice(seed.trim(), bytes.as_mut_slice()).map_err(|_| {
            CliError::bad_request(format!(
                "{}: expected an Ed25519 seed of 64 hex characters",
                path.display()
            ))
        })?;
        vec![SigningKey::from_bytes(&bytes).verifying_key()]
    } else {
        trusted_keys(given)?
    };
    Ok((logs, keys))
}

/// The logs named by `--database SERVICE=URL`, and the trusted keys given.
fn distributed(databases: &[String], given: &[String]) -> Result<Logs> {
    if databases.is_empty() {
        return Err(CliError::bad_request(
            "name the logs: --data-dir DIR (embedded) or --database SERVICE=URL for each service",
        ));
    }
    let mut logs: Vec<(String, String)> = Vec::new();
    for database in databases {
        let Some((service, url)) = database.split_once('=') else {
            return Err(CliError::bad_request(
                "--database: expected SERVICE=URL, like routing=postgres://host/db?schema=routing",
            ));
        };
        if service.is_empty() || url.is_empty() {
            return Err(CliError::bad_request(
                "--database: expected SERVICE=URL with neither empty",
            ));
        }
        if logs.iter().any(|(known, _)| known == service) {
            return Err(CliError::bad_request(format!(
                "--database: {service:?} is given twice"
            )));
        }
        logs.push((service.to_owned(), url.to_owned()));
    }
    if given.is_empty() {
        return Err(CliError::bad_request(
            "--trusted-key: name at least one checkpoint signing key (Ed25519 public key, hex)",
        ));
    }
    Ok((logs, trusted_keys(given)?))
}

fn trusted_keys(given: &[String]) -> Result<Vec<VerifyingKey>> {
    given
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let mut bytes = [0_u8; 32];
            hex::decode_to_slice(key.trim(), &mut bytes).map_err(|_| {
                CliError::bad_request(format!(
                    "--trusted-key #{}: expected an Ed25519 public key of 64 hex characters",
                    index + 1
                ))
            })?;
            VerifyingKey::from_bytes(&bytes).map_err(|_| {
                CliError::bad_request(format!(
                    "--trusted-key #{}: not a valid Ed25519 public key",
                    index + 1
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_arguments_are_checked() {
        let key = hex::encode(SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes());
        for (databases, keys, wanted) in [
            (vec![], vec![key.clone()], "name the logs"),
            (vec!["routing".to_owned()], vec![key.clone()], "SERVICE=URL"),
            (
                vec!["=sqlite://x".to_owned()],
                vec![key.clone()],
                "neither empty",
            ),
            (
                vec!["a=sqlite://x".to_owned(), "a=sqlite://y".to_owned()],
                vec![key.clone()],
                "given twice",
            ),
            (vec!["a=sqlite://x".to_owned()], vec![], "at least one"),
            (
                vec!["a=sqlite://x".to_owned()],
                vec!["00".to_owned()],
                "64 hex",
            ),
        ] {
            let error = distributed(&databases, &keys).expect_err(wanted);
            assert_eq!(error.exit_status(), crate::error::EXIT_BAD_REQUEST);
            let message = error.to_json()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains(wanted), "{message:?} lacks {wanted:?}");
        }
        let (logs, keys) =
            distributed(&["routing=sqlite://r.db".to_owned()], &[key]).expect("valid");
        assert_eq!(
            logs,
            vec![("routing".to_owned(), "sqlite://r.db".to_owned())]
        );
        assert_eq!(keys.len(), 1);
    }

    /// A key that is not on the curve is refused, and never echoed.
    #[test]
    fn an_invalid_public_key_is_refused_without_echo() {
        // About half of all 32-byte strings are not the encoding of a curve point; take the
        // first that the Ed25519 implementation itself refuses.
        let bytes = (0_u8..=255)
            .map(|first| {
                let mut bytes = [0_u8; 32];
                bytes[0] = first;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("a non-point among 256 candidates");
        let typed = hex::encode(bytes);
        let error = trusted_keys(std::slice::from_ref(&typed)).expect_err("invalid point");
        let json = error.to_json().to_string();
        assert!(json.contains("not a valid Ed25519 public key"), "{json}");
        assert!(!json.contains(&typed), "{json}");
    }
}
