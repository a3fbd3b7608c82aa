//! `acquirer-sim`: the ISO 8583 acquirer/issuer host simulator as a process, configured by
//! `MPOS_ACQSIM_*` variables (see `acquirer_sim::config::vars`), until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use acquirer_sim::AcquirerSim;
use acquirer_sim::config::Settings;
use mpos_config::{Vars, exit_on_error};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let vars = Vars::from_env();
    let telemetry = exit_on_error(mpos_telemetry::TelemetryConfig::from_vars(
        &vars,
        "acquirer-sim",
    ));
    let _telemetry = match mpos_telemetry::init(&telemetry) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("acquirer-sim: telemetry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let settings = exit_on_error(Settings::from_vars(&vars));
    let config = match settings.sim_config().await {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(error = %error, "acquirer-sim cannot start");
            return ExitCode::FAILURE;
        }
    };
    let (listener, admin) = match (
        TcpListener::bind(settings.listen).await,
        TcpListener::bind(settings.admin).await,
    ) {
        (Ok(listener), Ok(admin)) => (listener, admin),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(error = %error, "acquirer-sim cannot bind");
            return ExitCode::FAILURE;
        }
    };
    let sim = match AcquirerSim::start(config, listener) {
        Ok(sim) => sim,
        Err(error) => {
            tracing::error!(error = %error, "acquirer-sim cannot start");
            return ExitCode::FAILURE;
        }
    };
    let cancel = CancellationToken::new();
    let admin_addr = settings.admin;
    let admin_task = tokio::spawn(acquirer_sim::admin::serve(
        admin,
        sim.controls(),
        cancel.clone(),
    ));
    tracing::info!(iso8583 = %sim.addr(), admin = %admin_addr, "acquirer-sim ready");
    mpos_service::shutdown_signal().await;
    cancel.cancel();
    let _ = admin_task.await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}
