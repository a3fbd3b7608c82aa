//! authorization: the payment path. A terminal submits a payment with P2PE-encrypted card
//! data and a DUKPT-encrypted PIN block; the service checks the terminal (its state and
//! parameters, and for SoftPOS its attestation token), deciphers the card data and translates
//! the PIN block inside the HSM, has the routing service pick the tenant's acquirer and
//! exchange the ISO 8583 messages, records the outcome on the payment ([`payment`]) and
//! answers the terminal; if anything fails half-way after the request went out, the payment
//! is reversed.

pub mod adapters;
pub mod api;
pub mod card;
pub mod checks;
pub mod engine;
pub mod feeds;
pub mod keys;
pub mod listing;
pub mod payment;
pub mod ports;
pub mod routes;
pub mod service;
pub mod terminals;
pub mod tokens;

/// The service's name: its log, its stream and its topic are named after it.
pub const SERVICE: &str = "authorization";

/// The read models this service keeps of its own log, as fresh (empty) copies: what a
/// replay (`mposctl replay --read-model`, the console's audit page) compares with the live
/// ones.
pub fn read_models() -> Vec<Box<dyn mpos_es::ReplayedReadModel>> {
    vec![Box::new(mpos_es::Replayed::new(
        listing::PaymentsProjection,
    ))]
}

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new().register::<payment::PaymentEvent>(payment::AGGREGATE_TYPE)
}
