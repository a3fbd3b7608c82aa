//! terminal-management: tenants (payment service providers) and their API keys, their
//! estates (merchants, stores, terminal groups) and terminals with their lifecycle, SoftPOS
//! terminals following the attestation service's verdicts ([`verdicts`]).

pub mod access;
pub mod api;
pub mod devices;
pub mod estate;
pub mod manufacturer;
pub mod model;
pub mod parameters;
pub mod read_model;
pub mod service;
pub mod tenant;
pub mod terminal;
pub mod verdicts;

/// The service's name: its log, its stream and its topic are named after it.
pub const SERVICE: &str = "terminal-management";

/// The read models this service keeps of its own log, as fresh (empty) copies: what a
/// replay (`mposctl replay --read-model`, the console's audit page) compares with the live
/// ones.
pub fn read_models() -> Vec<Box<dyn mpos_es::ReplayedReadModel>> {
    vec![Box::new(mpos_es::Replayed::new(
        read_model::TenantsProjection,
    ))]
}

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new()
        .register::<tenant::TenantEvent>(tenant::AGGREGATE_TYPE)
        .register::<estate::NodeEvent>(estate::AGGREGATE_TYPE)
        .register::<terminal::TerminalEvent>(terminal::AGGREGATE_TYPE)
        .register::<manufacturer::CaEvent>(manufacturer::AGGREGATE_TYPE)
}
