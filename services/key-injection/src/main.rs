//! The key-injection service as its own process (distributed deployment).

use key_injection::SERVICE;
use key_injection::service::{KiOptions, Running, start, vars};
use mpos_service::ServiceBinary;

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
    // The device API's default address is this binary's, like the listeners'.
    let options = |vars: &_, token| KiOptions::from_vars(vars, token, "0.0.0.0:8444");
    mpos_service::service_main(binary, options, start, Running::join).await
}
