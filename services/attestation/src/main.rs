//! The attestation service as its own process (distributed deployment).

use attestation::SERVICE;
use attestation::service::{AttOptions, Running, start, vars};
use mpos_service::ServiceBinary;

/// mimalloc instead of glibc's malloc, like every service (ADR 12).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let binary = ServiceBinary {
        service: SERVICE,
        default_http: "0.0.0.0:8080",
        default_admin: "0.0.0.0:9090",
        operator_token: vars::OPERATOR_TOKEN,
    };
    mpos_service::service_main(binary, AttOptions::from_vars, start, Running::join).await
}
