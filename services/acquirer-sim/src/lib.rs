//! An ISO 8583 acquirer/issuer host simulator, for tests, demos and load. This first part:
//! the decision rules ([`rules`]), pure and tested without I/O; the host itself follows once
//! the `iso8583` codec it speaks has landed.

#![forbid(unsafe_code)]

pub mod rules;
