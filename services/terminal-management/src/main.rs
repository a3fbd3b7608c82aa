//! The terminal-management service as its own process (distributed deployment).

use mpos_service::ServiceBinary;
use terminal_management::SERVICE;
use terminal_management::service::{Running, TmOptions, start, vars};

/// mimalloc instead of glibc's malloc: request handling allocates from many threads at once
/// (ADR 12, docs/benchmarks.md).
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
    mpos_service::service_main(binary, TmOptions::from_vars, start, Running::join).await
}
