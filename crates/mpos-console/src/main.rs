//! `mpos-console`: the operator console in front of a distributed deployment (`mposd`
//! serves it itself).
//!
//! Variables:
//! - `MPOS_CONSOLE_ADDR`: where it listens (default `0.0.0.0:8090`);
//! - `MPOS_OPERATOR_TOKEN`: the platform operator's token, the one that may verify the audit
//!   trail (at least 32 characters);
//! - `MPOS_CONSOLE_API_<SERVICE>`: each service's admin API, `http(s)://host:port`, e.g.
//!   `MPOS_CONSOLE_API_TERMINAL_MANAGEMENT=http://terminal-management:8080` (at least one);
//! - `MPOS_CONSOLE_AUDIT_DATABASE_<SERVICE>`: each service's log for audit verification (the
//!   service's own `MPOS_DATABASE_URL`, ideally with a read-only role), optional; with any of
//!   them, `MPOS_CONSOLE_TRUSTED_KEYS`: the hex Ed25519 public keys its checkpoints are signed
//!   under, comma-separated;
//! - `MPOS_LOG`, `MPOS_LOG_FORMAT`, `MPOS_OTLP_ENDPOINT` as for every service.
//!
//! A bad variable stops it with one line naming the variable and exit status 78.

use std::process::ExitCode;

use ed25519_dalek::VerifyingKey;
use mpos_config::{ConfigError, Vars, exit_on_error};
use mpos_console::{AuditLogs, Console, SERVICES};
use mpos_es::EventStore;
use mpos_http::OperatorAuth;

const ADDR: &str = "MPOS_CONSOLE_ADDR";
const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
const TRUSTED_KEYS: &str = "MPOS_CONSOLE_TRUSTED_KEYS";

/// `MPOS_CONSOLE_<what>_<SERVICE>` of a service name.
fn variable(what: &str, service: &str) -> String {
    format!(
        "MPOS_CONSOLE_{what}_{}",
        service.to_ascii_uppercase().replace('-', "_")
    )
}

fn trusted_keys(vars: &Vars) -> Result<Vec<VerifyingKey>, ConfigError> {
    const EXPECTED: &str = "comma-separated Ed25519 public keys, 64 hex characters each";
    let value = vars.string(TRUSTED_KEYS, None, EXPECTED)?;
    value
        .split(',')
        .map(str::trim)
        .map(|key| {
            let bytes: [u8; 32] = hex::decode(key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| ConfigError::invalid(TRUSTED_KEYS, EXPECTED, key))?;
            VerifyingKey::from_bytes(&bytes)
                .map_err(|_| ConfigError::invalid(TRUSTED_KEYS, EXPECTED, key))
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let vars = Vars::from_env();
    let telemetry = match mpos_telemetry::init(&exit_on_error(
        mpos_telemetry::TelemetryConfig::from_vars(&vars, "mpos-console"),
    )) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("telemetry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let address = exit_on_error(vars.socket_addr(ADDR, "0.0.0.0:8090"));
    let token = exit_on_error(vars.secret(OPERATOR_TOKEN, 32));
    let mut console = match Console::new(OperatorAuth::new(&token)) {
        Ok(console) => console,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut apis = 0;
    let mut databases = Vec::new();
    for service in SERVICES {
        let api = variable("API", service);
        if vars.is_set(&api) {
            let url = exit_on_error(vars.url(&api, None, &["http", "https"]));
            console = match console.upstream(service, url.as_str()) {
                Ok(console) => console,
                Err(error) => {
                    eprintln!("{api}: {error}");
                    return ExitCode::from(78);
                }
            };
            apis += 1;
        }
        let database = variable("AUDIT_DATABASE", service);
        if vars.is_set(&database) {
            let url = exit_on_error(vars.url(&database, None, &["postgres", "sqlite"]));
            databases.push((service, url));
        }
    }
    if apis == 0 {
        eprintln!(
            "{}: missing (at least one service's admin api, http(s)://host:port)",
            variable("API", SERVICES[0])
        );
        return ExitCode::from(78);
    }
    if !databases.is_empty() {
        let keys = exit_on_error(trusted_keys(&vars));
        let mut logs = Vec::new();
        for (service, url) in databases {
            match EventStore::connect_read_only(url.as_str(), service).await {
                Ok(store) => logs.push((service.to_owned(), store)),
                Err(error) => {
                    eprintln!("{}: {error}", variable("AUDIT_DATABASE", service));
                    return ExitCode::FAILURE;
                }
            }
        }
        console = console.audit(AuditLogs::new(logs, keys).platform_read_models());
    }
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(address = %bound, "console listening");
    println!("mpos-console: http://{bound}/console/");
    let served = axum::serve(listener, console.router())
        .with_graceful_shutdown(mpos_service::shutdown_signal())
        .await;
    drop(telemetry);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "console server failed");
            ExitCode::FAILURE
        }
    }
}
