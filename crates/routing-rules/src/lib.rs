//! The routing service's pure decision logic: which acquirer gets a card payment, why, and
//! which acquirers are healthy enough to get one. No I/O, no async and no clock reads: the
//! time is always passed in.
//!
//! - [`rules`]: a tenant's [`RuleSet`] (JSON with camelCase fields), checked by
//!   [`RuleSet::validate`] which returns every [`RuleError`] by rule and field, and
//!   [`explain_match`] for a dry run of one rule.
//! - [`brand`]: [`CardBrand::from_bin`] from the published IIN ranges.
//! - [`health`]: per-acquirer outcome counts over a sliding window and a circuit breaker
//!   ([`AcquirerHealth`], [`HealthBook`]).
//! - [`decide()`](decide::decide): the first enabled rule that matches (else the default
//!   route), its acquirers less those whose breaker is open, ordered by priority or by a
//!   weighted split on a reproducible [`draw_from`] the payment id, with a human-readable
//!   trail.
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use routing_rules::*;
//!
//! let rules = RuleSet {
//!     version: 1,
//!     rules: vec![Rule {
//!         id: "eu-visa".into(),
//!         description: "EUR Visa split 70/30".into(),
//!         conditions: Conditions {
//!             brands: vec![CardBrand::Visa],
//!             currencies: vec!["EUR".into()],
//!             ..Conditions::default()
//!         },
//!         route: Route::Split(vec![
//!             WeightedAcquirer::new("acq-a", 70),
//!             WeightedAcquirer::new("acq-b", 30),
//!         ]),
//!         enabled: true,
//!     }],
//!     default_route: Some(Route::Priority(vec!["acq-a".into()])),
//! };
//! let known = ["acq-a", "acq-b"].map(String::from).into();
//! assert_eq!(rules.validate(&known), Ok(()));
//!
//! let payment = RouteInput {
//!     bin: "41111111",
//!     pan_length: 16,
//!     currency: "EUR",
//!     amount_minor: 1_250,
//!     merchant_id: "m-1",
//!     mcc: "5411",
//!     terminal_group: None,
//!     entry_mode: EntryMode::Contactless,
//!     transaction_type: TransactionType::Purchase,
//! };
//! let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
//! let mut health = HealthBook::default();
//! let decision = decide(&rules, &payment, &mut health, draw_from(b"payment-1"), now);
//! assert_eq!(decision.matched_rule.as_deref(), Some("eu-visa"));
//! assert_eq!(decision.candidates.len(), 2);
//! // … send to decision.candidates[0], then:
//! health.record(&decision.candidates[0].acquirer, Outcome::Success, now);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod brand;
pub mod decide;
pub mod health;
pub mod rules;

pub use brand::{CardBrand, UnknownBrandName};
pub use decide::{
    Admitted, Candidate, Decision, DecisionOutcome, Elimination, EliminationReason, NoRouteReason,
    decide, draw_from,
};
pub use health::{
    AcquirerHealth, Admission, BreakerState, HealthBook, HealthPolicy, HealthSnapshot,
    HealthTransition, ManualReason, Outcome, PolicyError, Rate, Rejection, StateChange, StateName,
    TransitionCause, TripReason,
};
pub use rules::{
    BinRange, BinRangeProblem, ConditionField, Conditions, EntryMode, MAX_CONDITIONS,
    MAX_ROUTE_ACQUIRERS, MAX_RULE_ID_CHARS, MAX_RULES, RangeEnd, Route, RouteInput, RouteRef, Rule,
    RuleError, RuleRef, RuleSet, TransactionType, WeightedAcquirer, explain_match,
    is_valid_rule_id,
};
