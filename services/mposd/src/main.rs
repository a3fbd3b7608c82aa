//! `mposd`: every service of the platform in one process, on embedded defaults — a SQLite log
//! per service in a data directory, an in-process bus — so that it runs on a fresh machine
//! with nothing else installed.
//!
//! Variables (all optional): `MPOS_DATA_DIR` (default `./data`), `MPOS_HTTP_ADDR` (default
//! `127.0.0.1:8080`), `MPOS_HSM_HTTP_ADDR` (the hsm-proxy's admin API, default
//! `127.0.0.1:8085`), `MPOS_ADMIN_ADDR` (default `127.0.0.1:9090`), `MPOS_OPERATOR_TOKEN`,
//! `MPOS_CHAIN_SIGNING_KEY`, `MPOS_PARAMETER_SIGNING_KEY` and `MPOS_HSM_SOFT_LMK` (generated
//! into the data directory when absent), `MPOS_DEVICE_ADDR` (the device API, mTLS, default
//! `127.0.0.1:8443`; terminal-management's and key-injection's device routes on one listener,
//! so that a device makes one mTLS connection for its activation and its key),
//! `MPOS_DEVICE_TLS_CERT` / `MPOS_DEVICE_TLS_KEY` (default: a self-signed certificate, not for
//! production), `MPOS_HSM_BACKENDS` (default: one soft:// backend in the data directory),
//! `MPOS_KI_HTTP_ADDR` (key-injection's admin API, default `127.0.0.1:8086`), the other
//! `MPOS_KI_*` settings of key-injection (not `MPOS_KI_DEVICE_ADDR` and
//! `MPOS_KI_DEVICE_TLS_*`: refused, the device API is `MPOS_DEVICE_ADDR`),
//! `MPOS_ATT_HTTP_ADDR` (the SoftPOS attestation API, default `127.0.0.1:8087`),
//! `MPOS_ATT_TOKEN_KEY` (the attestation token signing key, a PKCS#8 PEM file of a P-256 key;
//! default: one generated once into the data directory, so tokens outlive a restart),
//! `MPOS_ATT_STATUS_LIST_CACHE` (default: a file in the data directory), the other `MPOS_ATT_*`
//! settings of attestation (`MPOS_ATT_ANCHORS`, `MPOS_ATT_STATUS_LIST`, ...), `MPOS_LOG`,
//! `MPOS_ROUTING_HTTP_ADDR` (routing's admin API, default `127.0.0.1:8088`) and the other
//! `MPOS_ROUTING_*` settings, `MPOS_AUTH_HTTP_ADDR` (authorization's admin API and the
//! SoftPOS payment routes, default `127.0.0.1:8089`; PEDs pay on `MPOS_DEVICE_ADDR`) and the
//! other `MPOS_AUTH_*` settings (not `MPOS_AUTH_DEVICE_ADDR` / `MPOS_AUTH_DEVICE_TLS_*`:
//! refused), `MPOS_CONSOLE_ADDR` (the operator console, default `127.0.0.1:8090`), `MPOS_LOG`,
//! `MPOS_LOG_FORMAT`, `MPOS_OTLP_ENDPOINT`.
//!
//! The attestation service starts even when Google's status list cannot be fetched (no
//! network) and there is no cached copy yet: with an empty list flagged stale, so verdicts
//! carry `KA_STATUS_LIST_STALE` until a refresh succeeds. The standalone `attestation` binary
//! refuses to start instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mpos_config::{Vars, exit_on_error};
use mpos_service::{CommonConfig, Launch};
use mpos_telemetry::TelemetryConfig;
use rand::RngCore;
use secrecy::SecretString;

/// mimalloc instead of glibc's malloc: request handling allocates from many threads at once
/// (ADR 12, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DATA_DIR: &str = "MPOS_DATA_DIR";
const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";
const OPERATOR_TOKEN_FILE: &str = "operator-token";
const SIGNING_KEY_FILE: &str = "chain-signing.key";
const SOFT_LMK_FILE: &str = "hsm-soft-lmk.key";
const PARAMETER_KEY_FILE: &str = "parameter-signing.key";
const HSM_HTTP_ADDR: &str = "MPOS_HSM_HTTP_ADDR";
const KI_HTTP_ADDR: &str = "MPOS_KI_HTTP_ADDR";
const ATT_HTTP_ADDR: &str = "MPOS_ATT_HTTP_ADDR";
const ROUTING_HTTP_ADDR: &str = "MPOS_ROUTING_HTTP_ADDR";
const AUTH_HTTP_ADDR: &str = "MPOS_AUTH_HTTP_ADDR";
const CONSOLE_ADDR: &str = "MPOS_CONSOLE_ADDR";
const ATT_TOKEN_KEY_FILE: &str = "attestation-token.key";
const ATT_STATUS_LIST_CACHE_FILE: &str = "attestation-status-list.json";

/// Reads a secret file of the data directory, or creates it (mode 0600) with `generate()`.
/// The value is trimmed either way.
fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> std::io::Result<String>,
) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(value) => Ok(value.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let value = generate()?.trim().to_owned();
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
    /// The same settings for the hsm-proxy: its own log, its own listener.
    hsm_vars: Vars,
    /// The same settings for key-injection: its own log, its own listeners.
    ki_vars: Vars,
    /// The same settings for attestation: its own log, its own listener, its token key and
    /// status list cache in the data directory.
    att_vars: Vars,
    /// The same settings for routing: its own log, its own listener.
    routing_vars: Vars,
    /// The same settings for authorization: its own log, its own listener (admin and SoftPOS
    /// payments; PEDs pay on the shared device listener).
    auth_vars: Vars,
    operator_token: SecretString,
}

/// A service's settings: `pairs` with its own SQLite log and its listener (`addr_var`, else
/// `default_addr`).
fn service_pairs(
    environment: &Vars,
    data_dir: &Path,
    mut pairs: Vec<(String, String)>,
    service: &str,
    addr_var: &str,
    default_addr: &str,
) -> Result<Vec<(String, String)>, String> {
    pairs.retain(|(name, _)| {
        name != mpos_service::vars::DATABASE_URL && name != mpos_service::vars::HTTP_ADDR
    });
    pairs.push((
        mpos_service::vars::DATABASE_URL.to_owned(),
        format!(
            "sqlite://{}",
            data_dir.join(format!("{service}.db")).display()
        ),
    ));
    pairs.push((
        mpos_service::vars::HTTP_ADDR.to_owned(),
        environment
            .string(addr_var, Some(default_addr), "host:port")
            .map_err(|error| error.to_string())?,
    ));
    Ok(pairs)
}

/// The embedded defaults, with what the environment overrides.
fn embedded_settings(environment: &Vars) -> Result<Embedded, String> {
    for separate in [
        key_injection::service::vars::DEVICE_ADDR,
        key_injection::service::vars::DEVICE_TLS_CERT,
        key_injection::service::vars::DEVICE_TLS_KEY,
        authorization::service::vars::DEVICE_ADDR,
        authorization::service::vars::DEVICE_TLS_CERT,
        authorization::service::vars::DEVICE_TLS_KEY,
    ] {
        if environment.is_set(separate) {
            return Err(format!(
                "{separate}: mposd serves key-injection's device api on {} with {} / {} (one device listener); unset it",
                terminal_management::service::vars::DEVICE_ADDR,
                terminal_management::service::vars::DEVICE_TLS_CERT,
                terminal_management::service::vars::DEVICE_TLS_KEY,
            ));
        }
    }
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
        None => load_or_create(&data_dir.join(OPERATOR_TOKEN_FILE), || Ok(random_hex(32)))
            .map(SecretString::from)
            .map_err(|error| format!("operator token file: {error}"))?,
    };
    let signing_key = if environment.is_set(mpos_service::vars::CHAIN_SIGNING_KEY) {
        None
    } else {
        Some(
            load_or_create(&data_dir.join(SIGNING_KEY_FILE), || {
                Ok(hex::encode(mpos_service::generate_signing_key().to_bytes()))
            })
            .map_err(|error| format!("signing key file: {error}"))?,
        )
    };
    let database = |service: &str| {
        format!(
            "sqlite://{}",
            data_dir.join(format!("{service}.db")).display()
        )
    };
    let soft_lmk = if environment.is_set(hsm_proxy::service::vars::SOFT_LMK) {
        None
    } else {
        Some(
            load_or_create(&data_dir.join(SOFT_LMK_FILE), || Ok(random_hex(32)))
                .map_err(|error| format!("soft hsm lmk file: {error}"))?,
        )
    };
    let parameter_key =
        if environment.is_set(terminal_management::service::vars::PARAMETER_SIGNING_KEY) {
            None
        } else {
            Some(
                load_or_create(&data_dir.join(PARAMETER_KEY_FILE), || {
                    Ok(hex::encode(mpos_service::generate_signing_key().to_bytes()))
                })
                .map_err(|error| format!("parameter signing key file: {error}"))?,
            )
        };
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
    default(mpos_service::vars::BUS_URL, "memory://mposd".to_owned());
    if let Some(key) = signing_key {
        default(mpos_service::vars::CHAIN_SIGNING_KEY, key);
    }
    if let Some(lmk) = soft_lmk {
        default(hsm_proxy::service::vars::SOFT_LMK, lmk);
    }
    default(
        terminal_management::service::vars::DEVICE_ADDR,
        "127.0.0.1:8443".to_owned(),
    );
    if let Some(key) = parameter_key {
        default(
            terminal_management::service::vars::PARAMETER_SIGNING_KEY,
            key,
        );
    }
    default(
        hsm_proxy::service::vars::BACKENDS,
        format!("soft://{}", data_dir.join("hsm-keys").display()),
    );
    let mut hsm_pairs = pairs.clone();
    let mut ki_pairs = pairs.clone();
    let att_pairs = attestation_pairs(environment, &data_dir, pairs.clone())?;
    let routing_pairs = service_pairs(
        environment,
        &data_dir,
        pairs.clone(),
        routing::SERVICE,
        ROUTING_HTTP_ADDR,
        "127.0.0.1:8088",
    )?;
    let auth_pairs = service_pairs(
        environment,
        &data_dir,
        pairs.clone(),
        authorization::SERVICE,
        AUTH_HTTP_ADDR,
        "127.0.0.1:8089",
    )?;
    ki_pairs.retain(|(name, _)| {
        name != mpos_service::vars::DATABASE_URL && name != mpos_service::vars::HTTP_ADDR
    });
    ki_pairs.push((
        mpos_service::vars::DATABASE_URL.to_owned(),
        database(key_injection::SERVICE),
    ));
    ki_pairs.push((
        mpos_service::vars::HTTP_ADDR.to_owned(),
        environment
            .string(KI_HTTP_ADDR, Some("127.0.0.1:8086"), "host:port")
            .map_err(|error| error.to_string())?,
    ));
    if !environment.is_set(mpos_service::vars::DATABASE_URL) {
        pairs.push((
            mpos_service::vars::DATABASE_URL.to_owned(),
            database(terminal_management::SERVICE),
        ));
    }
    hsm_pairs.retain(|(name, _)| {
        name != mpos_service::vars::DATABASE_URL && name != mpos_service::vars::HTTP_ADDR
    });
    hsm_pairs.push((
        mpos_service::vars::DATABASE_URL.to_owned(),
        database(hsm_proxy::SERVICE),
    ));
    hsm_pairs.push((
        mpos_service::vars::HTTP_ADDR.to_owned(),
        environment
            .string(HSM_HTTP_ADDR, Some("127.0.0.1:8085"), "host:port")
            .map_err(|error| error.to_string())?,
    ));
    Ok(Embedded {
        data_dir,
        vars: Vars::from_pairs(pairs),
        hsm_vars: Vars::from_pairs(hsm_pairs),
        ki_vars: Vars::from_pairs(ki_pairs),
        att_vars: Vars::from_pairs(att_pairs),
        routing_vars: Vars::from_pairs(routing_pairs),
        auth_vars: Vars::from_pairs(auth_pairs),
        operator_token,
    })
}

/// Attestation's settings: `pairs` with its own SQLite log, its listener
/// (`MPOS_ATT_HTTP_ADDR`), and, unless set, the token key file (generated once) and the status
/// list cache in the data directory.
fn attestation_pairs(
    environment: &Vars,
    data_dir: &Path,
    mut pairs: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    use attestation::service::vars;
    pairs.retain(|(name, _)| {
        name != mpos_service::vars::DATABASE_URL && name != mpos_service::vars::HTTP_ADDR
    });
    pairs.push((
        mpos_service::vars::DATABASE_URL.to_owned(),
        format!(
            "sqlite://{}",
            data_dir
                .join(format!("{}.db", attestation::SERVICE))
                .display()
        ),
    ));
    pairs.push((
        mpos_service::vars::HTTP_ADDR.to_owned(),
        environment
            .string(ATT_HTTP_ADDR, Some("127.0.0.1:8087"), "host:port")
            .map_err(|error| error.to_string())?,
    ));
    if !environment.is_set(vars::TOKEN_KEY) {
        let path = data_dir.join(ATT_TOKEN_KEY_FILE);
        load_or_create(&path, || {
            attestation::service::generated_key_pem().map_err(std::io::Error::other)
        })
        .map_err(|error| format!("attestation token key file: {error}"))?;
        pairs.push((vars::TOKEN_KEY.to_owned(), path.display().to_string()));
    }
    if !environment.is_set(vars::STATUS_LIST_CACHE) {
        pairs.push((
            vars::STATUS_LIST_CACHE.to_owned(),
            data_dir
                .join(ATT_STATUS_LIST_CACHE_FILE)
                .display()
                .to_string(),
        ));
    }
    Ok(pairs)
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

    let hsm_common = exit_on_error(CommonConfig::from_vars(
        &embedded.hsm_vars,
        hsm_proxy::SERVICE,
        "127.0.0.1:8085",
        "127.0.0.1:9090",
    ));
    let tm_options = exit_on_error(terminal_management::service::TmOptions::from_vars(
        vars,
        embedded.operator_token.clone(),
    ));
    let hsm_config = exit_on_error(hsm_proxy::service::HsmConfig::from_vars(&embedded.hsm_vars));
    let ki_common = exit_on_error(CommonConfig::from_vars(
        &embedded.ki_vars,
        key_injection::SERVICE,
        "127.0.0.1:8086",
        "127.0.0.1:9090",
    ));
    let mut ki_options = exit_on_error(key_injection::service::KiOptions::from_vars(
        &embedded.ki_vars,
        embedded.operator_token.clone(),
        "127.0.0.1:8444",
    ));
    // Served on terminal-management's device listener.
    ki_options.device_addr = None;
    let att_common = exit_on_error(CommonConfig::from_vars(
        &embedded.att_vars,
        attestation::SERVICE,
        "127.0.0.1:8087",
        "127.0.0.1:9090",
    ));
    let mut att_options = exit_on_error(attestation::service::AttOptions::from_vars(
        &embedded.att_vars,
        embedded.operator_token.clone(),
    ));
    // One machine, maybe without network: start without Google's status list rather than not
    // at all (flagged stale in every verdict until a refresh succeeds).
    att_options.trust.start_without_list = true;
    // The attestation token key, known before any service starts: key-injection (SoftPOS
    // keys) and authorization (SoftPOS payments) verify tokens with it in process.
    let token_keys = attestation_token::PublishedKeys::of([(
        att_options.token_issuer.kid(),
        &att_options.token_issuer.public_key(),
    )]);
    // Phones ask for their key on key-injection's local listener.
    ki_options.softpos_addr = None;
    ki_options.token_keys = attestation_keys::KeySource::Fixed(token_keys.clone());
    let routing_common = exit_on_error(CommonConfig::from_vars(
        &embedded.routing_vars,
        routing::SERVICE,
        "127.0.0.1:8088",
        "127.0.0.1:9090",
    ));
    let mut routing_options = exit_on_error(routing::service::RoutingOptions::from_vars(
        &embedded.routing_vars,
        embedded.operator_token.clone(),
    ));
    let auth_common = exit_on_error(CommonConfig::from_vars(
        &embedded.auth_vars,
        authorization::SERVICE,
        "127.0.0.1:8089",
        "127.0.0.1:9090",
    ));
    let mut auth_options = exit_on_error(authorization::service::AuthOptions::from_vars(
        &embedded.auth_vars,
        embedded.operator_token.clone(),
    ));
    // PEDs pay on the shared device listener, SoftPOS phones on authorization's own.
    auth_options.device_addr = None;
    auth_options.softpos_addr = None;
    let console_addr = exit_on_error(environment.socket_addr(CONSOLE_ADDR, "127.0.0.1:8090"));
    let mut listeners = Vec::new();
    for address in [
        console_addr,
        config.http_addr,
        hsm_common.http_addr,
        ki_common.http_addr,
        att_common.http_addr,
        routing_common.http_addr,
        auth_common.http_addr,
    ] {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listeners.push(listener),
            Err(error) => {
                eprintln!("cannot listen on {address}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (
        Some(auth_listener),
        Some(routing_listener),
        Some(att_listener),
        Some(ki_listener),
        Some(hsm_listener),
        Some(api_listener),
        Some(console_listener),
    ) = (
        listeners.pop(),
        listeners.pop(),
        listeners.pop(),
        listeners.pop(),
        listeners.pop(),
        listeners.pop(),
        listeners.pop(),
    )
    else {
        return ExitCode::FAILURE;
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
    // The hsm-proxy: its own SQLite log, the same in-process bus, a soft:// backend.
    let hsm_infrastructure = mpos_service::Infrastructure::default();
    let Some((hsm_store, hsm_bus)) = hsm_infrastructure.connect(&hsm_common, &cancel).await else {
        return ExitCode::SUCCESS;
    };
    let hsm = match hsm_proxy::service::start(
        &hsm_common,
        &hsm_config,
        hsm_store.clone(),
        &hsm_bus,
        &hsm_infrastructure,
        &embedded.operator_token,
        hsm_listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot start hsm-proxy: {error}");
            cancel.cancel();
            return ExitCode::FAILURE;
        }
    };

    // key-injection: its own SQLite log; terminal-management's events read from its log.
    ki_options.feed = Some(key_injection::feed::FeedSource::Store {
        store: store.clone(),
        codec: std::sync::Arc::new(terminal_management::codec()),
    });
    let ki_infrastructure = mpos_service::Infrastructure::default();
    let Some((ki_store, ki_bus)) = ki_infrastructure.connect(&ki_common, &cancel).await else {
        return ExitCode::SUCCESS;
    };
    let ki = match key_injection::service::start(
        &ki_common,
        ki_store.clone(),
        &ki_bus,
        &ki_infrastructure,
        &ki_options,
        ki_listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot start key-injection: {error}");
            cancel.cancel();
            hsm.join().await;
            return ExitCode::FAILURE;
        }
    };

    // attestation: its own SQLite log; terminal-management's events read from its log; the
    // SoftPOS device routes beside the admin routes on its local listener (MPOS_ATT_HTTP_ADDR).
    att_options.device_addr = None;
    att_options.feed = Some(mpos_feed::follow::FeedSource::Store {
        store: store.clone(),
        codec: std::sync::Arc::new(terminal_management::codec()),
    });
    let att_infrastructure = mpos_service::Infrastructure::default();
    let Some((att_store, att_bus)) = att_infrastructure.connect(&att_common, &cancel).await else {
        return ExitCode::SUCCESS;
    };
    let att = match attestation::service::start(
        &att_common,
        att_store.clone(),
        &att_bus,
        &att_infrastructure,
        &att_options,
        att_listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot start attestation: {error}");
            cancel.cancel();
            hsm.join().await;
            ki.join().await;
            return ExitCode::FAILURE;
        }
    };

    // routing: its own SQLite log; terminal-management's events (API keys) read from its log.
    routing_options.feed = Some(mpos_feed::follow::FeedSource::Store {
        store: store.clone(),
        codec: std::sync::Arc::new(terminal_management::codec()),
    });
    let routing_infrastructure = mpos_service::Infrastructure::default();
    let Some((routing_store, routing_bus)) = routing_infrastructure
        .connect(&routing_common, &cancel)
        .await
    else {
        return ExitCode::SUCCESS;
    };
    let routing = match routing::service::start(
        &routing_common,
        routing_store.clone(),
        &routing_bus,
        &routing_infrastructure,
        &routing_options,
        routing_listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot start routing: {error}");
            cancel.cancel();
            hsm.join().await;
            ki.join().await;
            att.join().await;
            return ExitCode::FAILURE;
        }
    };

    // authorization: its own SQLite log; terminal-management's, key-injection's and
    // routing's events read from their logs; attestation's token key handed over in process.
    auth_options.token_keys = attestation_keys::KeySource::Fixed(token_keys);
    auth_options.feeds = authorization::service::FeedSources {
        tms: Some(mpos_feed::follow::FeedSource::Store {
            store: store.clone(),
            codec: std::sync::Arc::new(terminal_management::codec()),
        }),
        ki: Some(mpos_feed::follow::FeedSource::Store {
            store: ki_store.clone(),
            codec: std::sync::Arc::new(key_injection::codec()),
        }),
        routing: Some(mpos_feed::follow::FeedSource::Store {
            store: routing_store.clone(),
            codec: std::sync::Arc::new(routing::codec()),
        }),
    };
    let auth_infrastructure = mpos_service::Infrastructure::default();
    let Some((auth_store, auth_bus)) = auth_infrastructure.connect(&auth_common, &cancel).await
    else {
        return ExitCode::SUCCESS;
    };
    let auth = match authorization::service::start(
        &auth_common,
        auth_store.clone(),
        &auth_bus,
        &auth_infrastructure,
        &auth_options,
        auth_listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot start authorization: {error}");
            cancel.cancel();
            hsm.join().await;
            ki.join().await;
            att.join().await;
            routing.join().await;
            return ExitCode::FAILURE;
        }
    };

    // terminal-management, with key-injection's and authorization's device routes on its
    // device listener.
    let tm_options = terminal_management::service::TmOptions {
        more_device_routes: Some(ki.device_routes.clone().merge(auth.device_routes.clone())),
        ..tm_options
    };
    let running = match terminal_management::service::start(
        &config,
        store.clone(),
        &bus,
        &infrastructure,
        &tm_options,
        api_listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            eprintln!("cannot start terminal-management: {error}");
            cancel.cancel();
            hsm.join().await;
            ki.join().await;
            att.join().await;
            routing.join().await;
            auth.join().await;
            return ExitCode::FAILURE;
        }
    };

    // The operator console: the page, each service's admin API behind it, and the audit
    // trail of the six logs verified under this process's checkpoint key.
    let console = console(
        &embedded.operator_token,
        &[
            (terminal_management::SERVICE, running.http_addr),
            (hsm_proxy::SERVICE, hsm.http_addr),
            (key_injection::SERVICE, ki.http_addr),
            (attestation::SERVICE, att.http_addr),
            (routing::SERVICE, routing.http_addr),
            (authorization::SERVICE, auth.http_addr),
        ],
        mpos_console::AuditLogs::new(
            vec![
                (terminal_management::SERVICE.to_owned(), store.clone()),
                (hsm_proxy::SERVICE.to_owned(), hsm_store.clone()),
                (key_injection::SERVICE.to_owned(), ki_store.clone()),
                (attestation::SERVICE.to_owned(), att_store.clone()),
                (routing::SERVICE.to_owned(), routing_store.clone()),
                (authorization::SERVICE.to_owned(), auth_store.clone()),
            ],
            vec![config.signing_key.verifying_key()],
        )
        .platform_read_models(),
    );
    let console = match console {
        Ok(console) => console,
        Err(error) => {
            eprintln!("cannot start the console: {error}");
            cancel.cancel();
            return ExitCode::FAILURE;
        }
    };
    let console_addr = console_listener.local_addr().unwrap_or(console_addr);
    let console_server = {
        let shutdown = cancel.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(console_listener, console.router())
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "console server failed");
            }
        })
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
        "mposd: devices https://{}  (device api: activation, parameters and keys; mtls with manufacturer-issued certificates; self-signed server certificate unless MPOS_DEVICE_TLS_CERT is set)",
        running.device_addr
    );
    println!(
        "mposd: hsm   http://{}  (hsm-proxy admin api; backend soft://, a software hsm: not for production)",
        hsm.http_addr
    );
    println!(
        "mposd: keys  http://{}  (key-injection admin api; softpos phones receive their key here with their attestation token)",
        ki.http_addr
    );
    println!(
        "mposd: attest http://{}  (softpos attestation api: challenges, verdicts, tokens; public token keys at /v1/attestation/token-keys)",
        att.http_addr
    );
    println!(
        "mposd: routing http://{}  (routing admin api: rules, acquirers, health, decisions)",
        routing.http_addr
    );
    println!(
        "mposd: payments http://{}  (payments admin api; softpos payments; peds pay on the device api)",
        auth.http_addr
    );
    println!(
        "mposd: console http://{console_addr}/console/  (operator console; log in with the operator bearer token or a tenant api key)"
    );
    println!(
        "mposd: admin http://{}  (/livez /readyz /metrics)",
        launch.admin_addr
    );
    println!("mposd: ready; press Ctrl-C to stop");
    let _ = std::io::stdout().flush();

    running.join().await;
    hsm.join().await;
    ki.join().await;
    att.join().await;
    routing.join().await;
    auth.join().await;
    let _ = console_server.await;
    launch.finish().await;
    store.close().await;
    hsm_store.close().await;
    ki_store.close().await;
    att_store.close().await;
    routing_store.close().await;
    auth_store.close().await;
    println!("mposd: stopped");
    ExitCode::SUCCESS
}

/// The console over the services listening at `apis` (an unspecified address is reached on
/// the loopback).
fn console(
    token: &SecretString,
    apis: &[(&str, std::net::SocketAddr)],
    audit: mpos_console::AuditLogs,
) -> Result<mpos_console::Console, mpos_console::ConsoleError> {
    let mut console = mpos_console::Console::new(mpos_http::OperatorAuth::new(token))?;
    for (service, address) in apis {
        let mut address = *address;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        console = console.upstream(service, &format!("http://{address}"))?;
    }
    Ok(console.audit(audit))
}
