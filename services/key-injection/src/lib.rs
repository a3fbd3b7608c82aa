//! key-injection: remote key injection (RKI) at a terminal's first boot. This first part is the
//! domain: every device's DUKPT identity allocated from the tenant's BDKs, never twice
//! ([`device_id`], [`bdk`]), one injection as a resumable state machine ([`injection`]), and
//! when a key slot needs attention ([`alarms`]: counters near exhaustion, cryptoperiods,
//! failing injections).
//! Around it, [`service`] and [`api`]: BDK assignment (checked against the hsm-proxy) and
//! remote key injection through the hsm-proxy's TR-34 export. [`slots`]: every terminal's key
//! slot inventory (which key each slot holds, revocations, the alarms raised). The
//! device-facing endpoints and the terminal simulator come next.

pub mod alarms;
pub mod api;
pub mod bdk;
pub mod device_api;
pub mod device_id;
pub mod feed;
pub mod injection;
pub mod injector;
pub mod matrix;
pub mod rotation;
pub mod service;
pub mod slots;
pub mod softpos_api;

/// The service's name: its log, its stream and its topic are named after it.
pub const SERVICE: &str = "key-injection";

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new()
        .register::<bdk::BdkEvent>(bdk::AGGREGATE_TYPE)
        .register::<injection::InjectionEvent>(injection::AGGREGATE_TYPE)
        .register::<slots::DeviceKeysEvent>(slots::AGGREGATE_TYPE)
}
