//! EMV terminal risk parameters for the terminal-management service: typed values that
//! validate on construction, their inheritance down the estate hierarchy (tenant → merchant →
//! store → terminal group → terminal) with the source of every effective value, and
//! Ed25519-signed parameter sets for the terminals. No I/O.
//!
//! - [`validate`] turns the protobuf partial set of one level into a [`RiskParameters`];
//!   every error names the field path (`contactless_floor_limit: must not exceed
//!   contactless_transaction_limit (500 > 400)`).
//! - [`resolve()`] combines the levels of a terminal's path, root first, into an
//!   [`Effective`] set: the deepest value wins, floor limits per currency, the allow-list is
//!   replaced, blocked BIN ranges and card tokens accumulate (a level never unblocks what a
//!   level above blocked). The combined set is checked again; errors name the level.
//! - [`sign()`] / [`verify`] put an Ed25519 signature over the encoded [`ParameterSet`]
//!   (`mpos.terminal_management.v1.ParameterSet`).
//! - A card is never stored: [`CardToken::from_pan`] is HMAC-SHA-256 of the PAN under the
//!   tenant's [`TokenKey`]. [`Pan`] and [`TokenKey`] print `***` and are zeroized on drop.
//!
//! Schema: `proto/mpos/terminal_management/v1/parameters.proto`.
//!
//! [`ParameterSet`]: mpos_proto::terminal_management::ParameterSet

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod card;
pub mod error;
pub mod params;
pub mod resolve;
pub mod sign;
pub mod values;

pub use card::{CardToken, Pan, TokenKey};
pub use error::{InvalidValue, ParameterError, SignatureError};
pub use params::{
    Field, FieldPath, MAX_BIN_RANGES, MAX_BLOCKED_CARD_TOKENS, MAX_FLOOR_LIMITS, MAX_OFFLINE_COUNT,
    OfflineLimits, RandomSelection, RiskParameters, TerminalActionCodes, validate,
};
pub use resolve::{Effective, Level, LevelKind, REQUIRED_FIELDS, Source, resolve};
pub use sign::{ALGORITHM, parameter_set, payload_digest, sign, verify};
pub use values::{
    ActionCode, Amount, BinRange, CountryCode, Currency, CvRule, CvmList, Mcc, Percent, cvm_method,
};
