//! Benchmarks of the event-sourcing kernel, each figure next to a floor measured in the same
//! run on the same backend:
//!
//! * [`append`]: `EventStore::append` throughput against a raw batched `INSERT` of the same rows;
//! * [`replay`]: `ProjectionRunner::rebuild` rate against reading the same rows;
//! * [`outbox`]: commit → relay → broker → subscriber lag against a bare publish → receive;
//! * [`hsm`]: hsm-proxy `TranslatePinData` over NATS request-reply against a bare NATS echo;
//! * [`token`]: the SoftPOS attestation token verified per second on the payment path;
//! * [`attestation`]: a real device's key attestation chain examined and judged by a tenant
//!   policy per second, against `verify_chain` alone and the bare signature checks;
//! * [`ki`]: key-injection's keys injected per second for a batch of simulated devices
//!   against the bare hsm-proxy `ExportKey` of the same format;
//! * [`payments`]: authorizations per second and latency from the terminal to its answer, on
//!   `mposd` and on the services as processes, against a durable commit and a round trip.
//!
//! Run it with `cargo run --release -p mpos-bench -- [append|replay|outbox|hsm|all] [--quick]`.

pub mod append;
pub mod attestation;
mod backend;
pub mod cpu;
mod data;
pub mod hsm;
pub mod ki;
pub mod machine;
pub mod outbox;
pub mod payments;
pub mod replay;
pub mod report;
pub mod stats;
pub mod tms;
pub mod token;

pub use backend::Backend;

/// Where the backends and brokers are.
#[derive(Clone, Debug)]
pub struct Urls {
    /// PostgreSQL base URL (a fresh `bench_<uuid>` schema is created under it).
    pub postgres: String,
    /// NATS URL without namespace (a fresh namespace is added).
    pub nats: String,
    /// Kafka URL without namespace (a fresh namespace is added).
    pub kafka: String,
}

impl Urls {
    /// From `MPOS_BENCH_POSTGRES_URL`, `MPOS_BENCH_NATS_URL` and `MPOS_BENCH_KAFKA_URL`, with
    /// the local defaults.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            postgres: var(
                "MPOS_BENCH_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            nats: var("MPOS_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
            kafka: var("MPOS_BENCH_KAFKA_URL", "kafka://127.0.0.1:9092"),
        }
    }
}

/// A fresh name with a random suffix (schemas, namespaces, services).
/// The `host:port[,host:port]` of a broker URL, without scheme, path or query.
pub(crate) fn hosts_of(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned()
}

pub(crate) fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// `base` with one more query parameter.
pub(crate) fn with_param(base: &str, name: &str, value: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{name}={value}")
}
