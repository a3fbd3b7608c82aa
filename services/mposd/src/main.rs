//! `mposd`: every service of the platform in one process, on embedded defaults — a SQLite log
//! per service in a data directory, an in-process bus — so that it runs on a fresh machine
//! with nothing else installed.
//!
//! Variables (all optional): `MPOS_DATA_DIR` (default `./data`), `MPOS_HTTP_ADDR` (default
//! `127.0.0.1:8080`), `MPOS_ADMIN_ADDR` (default `127.0.0.1:9090`), `MPOS_OPERATOR_TOKEN`,
//! `MPOS_CHAIN_SIGNING_KEY` (generated into the data directory when absent), `MPOS_LOG`,
//! `MPOS_LOG_FORMAT`, `MPOS_OTLP_ENDPOINT`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mpos_config::{Vars, exit_on_error};
use mpos_service::{CommonConfig, Launch};
use mpos_telemetry::TelemetryConfig;
use rand::RngCore;
use secrecy::SecretString;

const DATA_DIR: &str = "MPOS_DATA_DIR";
const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
const OPERATOR_TOKEN_FILE: &str = "operator-token";
const SIGNING_KEY_FILE: &str = "chain-signing.key";

/// Reads a secret file of the data directory, or creates it (mode 0600) with `generate()`.
fn load_or_create(path: &Path, generate: impl FnOnce() -> String) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(value) => Ok(value.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let value = generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path)?;
            file.write_all(value.as_bytes())?;
            file.write_all(b"\n")?;
            Ok(value)
        }
        Err(error) => Err(error),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0_u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

struct Embedded {
    data_dir: PathBuf,
    vars: Vars,
    operator_token: SecretString,
}

/// The embedded defaults, with what the environment overrides.
fn embedded_settings(environment: &Vars) -> Result<Embedded, String> {
    let data_dir = PathBuf::from(
        environment
            .string(DATA_DIR, Some("./data"), "a directory path")
            .map_err(|error| error.to_string())?,
    );
    std::fs::create_dir_all(&data_dir)
        .map_err(|error| format!("{DATA_DIR}: cannot create {}: {error}", data_dir.display()))?;
    let operator_token = match environment
        .optional_secret(OPERATOR_TOKEN, 32)
        .map_err(|error| error.to_string())?
    {
        Some(token) => token,
        None => load_or_create(&data_dir.join(OPERATOR_TOKEN_FILE), || random_hex(32))
            .map(SecretString::from)
            .map_err(|error| format!("operator token file: {error}"))?,
    };
    let signing_key = if environment.is_set(mpos_service::vars::CHAIN_SIGNING_KEY) {
        None
    } else {
        Some(
            load_or_create(&data_dir.join(SIGNING_KEY_FILE), || {
                hex::encode(mpos_service::generate_signing_key().to_bytes())
            })
            .map_err(|error| format!("signing key file: {error}"))?,
        )
    };
    let database = format!(
        "sqlite://{}",
        data_dir
            .join(format!("{}.db", terminal_management::SERVICE))
            .display()
    );
    let mut pairs: Vec<(String, String)> = environment
        .names()
        .filter_map(|name| {
            environment
                .string(name, None, "")
                .ok()
                .map(|value| (name.to_owned(), value))
        })
        .collect();
    let mut default = |name: &str, value: String| {
        if !environment.is_set(name) {
            pairs.push((name.to_owned(), value));
        }
    };
    default(mpos_service::vars::DATABASE_URL, database);
    default(mpos_service::vars::BUS_URL, "memory://mposd".to_owned());
    if let Some(key) = signing_key {
        default(mpos_service::vars::CHAIN_SIGNING_KEY, key);
    }
    Ok(Embedded {
        data_dir,
        vars: Vars::from_pairs(pairs),
        operator_token,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let environment = Vars::from_env();
    let embedded = match embedded_settings(&environment) {
        Ok(embedded) => embedded,
        Err(line) => {
            eprintln!("{line}");
            return ExitCode::from(78);
        }
    };
    let vars = &embedded.vars;
    let config = exit_on_error(CommonConfig::from_vars(
        vars,
        terminal_management::SERVICE,
        "127.0.0.1:8080",
        "127.0.0.1:9090",
    ));
    let telemetry =
        match mpos_telemetry::init(&exit_on_error(TelemetryConfig::from_vars(vars, "mposd"))) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("telemetry: {error}");
                return ExitCode::FAILURE;
            }
        };

    let api_listener = match tokio::net::TcpListener::bind(config.http_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", config.http_addr);
            return ExitCode::FAILURE;
        }
    };
    let launch = match Launch::start(&config, telemetry.metrics()).await {
        Ok(launch) => launch,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", config.admin_addr);
            return ExitCode::FAILURE;
        }
    };
    let (cancel, infrastructure) = (launch.cancel.clone(), launch.infrastructure.clone());
    let Some((store, bus)) = infrastructure.connect(&config, &cancel).await else {
        return ExitCode::SUCCESS;
    };
    let running = match terminal_management::service::start(
        &config,
        store.clone(),
        &bus,
        &infrastructure,
        &embedded.operator_token,
        api_listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot start terminal-management: {error}");
            return ExitCode::FAILURE;
        }
    };

    let token_hint = if environment.is_set(OPERATOR_TOKEN) {
        format!("from {OPERATOR_TOKEN}")
    } else {
        format!(
            "in {}",
            embedded.data_dir.join(OPERATOR_TOKEN_FILE).display()
        )
    };
    println!("mposd: data in {}", embedded.data_dir.display());
    println!(
        "mposd: api   http://{}  (operator bearer token {token_hint})",
        running.http_addr
    );
    println!(
        "mposd: admin http://{}  (/livez /readyz /metrics)",
        launch.admin_addr
    );
    println!("mposd: ready; press Ctrl-C to stop");
    let _ = std::io::stdout().flush();

    running.join().await;
    launch.finish().await;
    store.close().await;
    println!("mposd: stopped");
    ExitCode::SUCCESS
}
