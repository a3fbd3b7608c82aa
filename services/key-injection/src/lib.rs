//! key-injection: remote key injection (RKI) at a terminal's first boot. This first part is the
//! domain: every device's DUKPT identity allocated from the tenant's BDKs, never twice
//! ([`device_id`], [`bdk`]), one injection as a resumable state machine ([`injection`]), and
//! when a key slot needs attention ([`alarms`]: counters near exhaustion, cryptoperiods,
//! failing injections).
//! The service around it (the hsm-proxy export, the device API, the key slot inventory and
//! alarms, the terminal simulator) comes next.

pub mod alarms;
pub mod bdk;
pub mod device_id;
pub mod injection;

/// The service's name: its log, its stream and its topic are named after it.
pub const SERVICE: &str = "key-injection";

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new()
        .register::<bdk::BdkEvent>(bdk::AGGREGATE_TYPE)
        .register::<injection::InjectionEvent>(injection::AGGREGATE_TYPE)
}
