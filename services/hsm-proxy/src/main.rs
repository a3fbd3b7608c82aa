//! The hsm-proxy as its own process (distributed deployment).

use hsm_proxy::SERVICE;
use hsm_proxy::service::{HsmConfig, StartError};
use mpos_config::{Vars, exit_on_error};
use mpos_service::{CommonConfig, Running, Started};

/// mimalloc instead of glibc's malloc: request handling allocates from many threads at once
/// (ADR 12, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let (config, hsm_config, operator_token) = (&config, &hsm_config, &operator_token);
    mpos_service::run_process(&vars, config, |started: Started| async move {
        let running = hsm_proxy::service::start(
            config,
            hsm_config,
            started.store,
            &started.bus,
            &started.infrastructure,
            operator_token,
            started.listener,
            &started.cancel,
        )
        .await?;
        Ok::<Running, StartError>(Box::pin(running.join()))
    })
    .await
}
