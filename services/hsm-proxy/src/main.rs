//! The hsm-proxy as its own process (distributed deployment).

use hsm_proxy::SERVICE;
use hsm_proxy::service::HsmConfig;
use mpos_config::{Vars, exit_on_error};
use mpos_service::{CommonConfig, Launch};
use mpos_telemetry::TelemetryConfig;

/// The platform operator's bearer token for the admin API (at least 32 characters).
const OPERATOR_TOKEN: &str = "MPOS_OPERATOR_TOKEN";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let vars = Vars::from_env();
    let config = exit_on_error(CommonConfig::from_vars(
        &vars,
        SERVICE,
        "0.0.0.0:8085",
        "0.0.0.0:9095",
    ));
    let hsm_config = exit_on_error(HsmConfig::from_vars(&vars));
    let operator_token = exit_on_error(vars.secret(OPERATOR_TOKEN, 32));
    let telemetry_config = exit_on_error(TelemetryConfig::from_vars(&vars, SERVICE));
    let telemetry = match mpos_telemetry::init(&telemetry_config) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("telemetry: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };

    let launch = match Launch::start(&config, telemetry.metrics()).await {
        Ok(launch) => launch,
        Err(error) => {
            tracing::error!(address = %config.admin_addr, %error, "cannot start the admin listener");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (cancel, infrastructure) = (launch.cancel.clone(), launch.infrastructure.clone());

    let Some((store, bus)) = infrastructure.connect(&config, &cancel).await else {
        return std::process::ExitCode::SUCCESS;
    };
    let listener = match tokio::net::TcpListener::bind(config.http_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(address = %config.http_addr, %error, "cannot bind api listener");
            return std::process::ExitCode::FAILURE;
        }
    };
    let running = match hsm_proxy::service::start(
        &config,
        &hsm_config,
        store.clone(),
        &bus,
        &infrastructure,
        &operator_token,
        listener,
        &cancel,
    )
    .await
    {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    running.join().await;
    launch.finish().await;
    store.close().await;
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}
