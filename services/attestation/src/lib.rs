//! attestation: the SoftPOS attestation & monitoring (A&M) service. A SoftPOS phone asks for a
//! one-time challenge, answers it with evidence (an Android key attestation chain, a Play
//! Integrity verdict when asked, the SDK's app signals); the service verifies the evidence
//! ([`evidence`]), judges it by the tenant's policy ([`rules`], [`policy`]), records the
//! verdict on the device ([`device`]) and, when payments are allowed, issues a signed
//! attestation token that the authorization service verifies offline. Monitoring re-judges
//! devices that miss their re-attestation, and every policy edit re-judges the tenant's
//! devices.

pub mod api;
pub mod dashboard;
pub mod device;
pub mod engine;
pub mod evidence;
pub mod policy;
pub mod routes;
pub mod rules;
pub mod service;

/// The service's name: its log, its stream and its topic are named after it.
pub const SERVICE: &str = "attestation";

/// The read models this service keeps of its own log, as fresh (empty) copies: what a
/// replay (`mposctl replay --read-model`, the console's audit page) compares with the live
/// ones.
pub fn read_models() -> Vec<Box<dyn mpos_es::ReplayedReadModel>> {
    vec![
        Box::new(mpos_es::Replayed::new(dashboard::DevicesProjection)),
        Box::new(mpos_es::Replayed::new(dashboard::AdoptionProjection)),
    ]
}

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new()
        .register::<policy::PolicyEvent>(policy::AGGREGATE_TYPE)
        .register::<device::DeviceEvent>(device::AGGREGATE_TYPE)
}
