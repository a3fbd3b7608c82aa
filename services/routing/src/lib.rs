//! routing: which acquirer gets a payment, and the conversation with it. Per-tenant rules
//! ([`rules`]) over BIN range, brand, currency, amount, merchant, MCC, terminal group, entry
//! mode and transaction type pick a priority list or a weighted split of the tenant's
//! acquirers ([`acquirer`]); acquirers whose error or timeout rate crosses a threshold are
//! taken out by a circuit breaker; every decision is recorded with its candidates, the rule
//! version that matched and why ([`exchange`]); the ISO 8583 messages go over the tenant's
//! acquirer links, and a payment whose outcome is in doubt is reversed and its reversal kept
//! until the acquirer acknowledges it.
//!
//! The service: [`engine::Router`] (the operations), [`rpc`] (`Decide`, `Authorize`,
//! `Reverse`, `GetSealingKey` on the bus, and [`rpc::RoutingClient`]), [`forward`]
//! (store-and-forward of reversals), [`links`] (one ISO 8583 link per acquirer), [`api`]
//! (the admin HTTP API) and [`service::start`]. See docs/routing.md.

#![forbid(unsafe_code)]

pub mod acquirer;
pub mod api;
pub mod card;
pub mod convert;
pub mod engine;
pub mod exchange;
pub mod forward;
pub mod links;
pub mod recent;
pub mod routes;
pub mod rpc;
pub mod rules;
pub mod service;
pub mod views;

/// The service's name: its log, its stream and its topic are named after it.
pub const SERVICE: &str = "routing";

/// The read models this service keeps of its own log, as fresh (empty) copies: what a
/// replay (`mposctl replay --read-model`, the console's audit page) compares with the live
/// ones.
pub fn read_models() -> Vec<Box<dyn mpos_es::ReplayedReadModel>> {
    vec![
        Box::new(mpos_es::Replayed::new(views::AcquirersProjection)),
        Box::new(mpos_es::Replayed::new(views::PendingProjection)),
    ]
}

/// How this service's events are encoded for the bus.
pub fn codec() -> mpos_es::EventCodec {
    mpos_es::EventCodec::new()
        .register::<rules::RulesEvent>(rules::AGGREGATE_TYPE)
        .register::<acquirer::AcquirerEvent>(acquirer::AGGREGATE_TYPE)
        .register::<exchange::ExchangeEvent>(exchange::AGGREGATE_TYPE)
}
