//! The authorization service as its own process (distributed deployment).

use authorization::SERVICE;
use authorization::service::{AuthOptions, vars};
use mpos_config::{Vars, exit_on_error};
use mpos_service::{CommonConfig, Running, Started};

/// mimalloc instead of glibc's malloc, like every service (ADR 12).
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
    let token = exit_on_error(vars.secret(vars::OPERATOR_TOKEN, 32));
    let options = exit_on_error(AuthOptions::from_vars(&vars, token));
    let (config, options) = (&config, &options);
    mpos_service::run_process(&vars, config, |started: Started| async move {
        let running = authorization::service::start(
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
