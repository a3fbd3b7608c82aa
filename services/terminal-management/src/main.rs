//! The terminal-management service as its own process (distributed deployment).

use mpos_config::{Vars, exit_on_error};
use mpos_service::{CommonConfig, Running, Started};
use terminal_management::SERVICE;

/// mimalloc instead of glibc's malloc: request handling allocates from many threads at once
/// (ADR 12, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let vars = Vars::from_env();
    let config = exit_on_error(CommonConfig::from_vars(
        &vars,
        SERVICE,
        "0.0.0.0:8080",
        "0.0.0.0:9090",
    ));
    let operator_token =
        exit_on_error(vars.secret(terminal_management::service::vars::OPERATOR_TOKEN, 32));
    let options = exit_on_error(terminal_management::service::TmOptions::from_vars(
        &vars,
        operator_token,
    ));
    let (config, options) = (&config, &options);
    mpos_service::run_process(&vars, config, |started: Started| async move {
        let running = terminal_management::service::start(
            config,
            started.store,
            &started.bus,
            &started.infrastructure,
            options,
            started.listener,
            &started.cancel,
        )
        .await?;
        Ok::<Running, std::io::Error>(Box::pin(running.join()))
    })
    .await
}
