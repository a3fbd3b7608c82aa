//! The routing service's pure decision logic: which acquirer gets a card payment.
//!
//! No I/O, no async and no clock reads: the time is always passed in.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod brand;
pub mod health;
pub mod rules;

pub use brand::{CardBrand, UnknownBrandName};
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
