//! hsm-proxy: one payment-crypto API in front of pooled HSM backends.
//!
//! * [`engine::Hsm`]: the operations (keys and data plane), transport-free.
//! * [`key`]: the key registry's aggregate (metadata only); [`registry`]: its in-memory
//!   read model.
//! * [`backend`]: the backends by URL (`soft://`, `pkcs11://`, `payshield://`); [`pool`]:
//!   health checks, balancing and failover.
//! * [`rpc`]: NATS request-reply (`mpos.hsm-proxy.v1.<Operation>`); [`api`]: the admin HTTP API.
//! * [`sealing`]: card data sealed end to end on the bus (`crates/mpos-seal`).
//! * `test_support` (feature `test-support`): clear test keys entered as components, for the
//!   tests of the services that call the hsm-proxy.

pub mod api;
pub mod backend;
pub mod engine;
pub mod error;
pub mod health;
pub mod key;
pub mod pool;
pub mod registry;
pub mod rpc;
pub mod sealing;
pub mod service;
pub mod spec;
#[cfg(feature = "test-support")]
pub mod test_support;

/// The service's name: its log, its stream, its topic and its subjects are named after it.
pub const SERVICE: &str = "hsm-proxy";

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new()
        .register::<key::KeyEvent>(key::AGGREGATE_TYPE)
        .register::<health::BackendEvent>(health::AGGREGATE_TYPE)
}
