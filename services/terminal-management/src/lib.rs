//! terminal-management: tenants (payment service providers), and — in later increments —
//! merchants, stores, manufacturer CAs, terminals and their parameter sets.

pub mod api;
pub mod read_model;
pub mod service;
pub mod tenant;

/// The service's name: its log, its stream and its topic are named after it.
pub const SERVICE: &str = "terminal-management";

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new().register::<tenant::TenantEvent>(tenant::AGGREGATE_TYPE)
}
