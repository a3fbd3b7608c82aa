//! The routing service's pure decision logic: which acquirer gets a card payment.
//!
//! No I/O, no async and no clock reads: the time is always passed in.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod brand;

pub use brand::{CardBrand, UnknownBrandName};
