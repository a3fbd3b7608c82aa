//! Payment cryptography in pure Rust, without I/O.
//!
//! Used by the hsm-proxy's software backend (embedded default and tests), by the terminal and
//! acquirer simulators (the device and issuer side of every flow), and by `mposctl calc`.
//! Production keys stay in HSMs.
//!
//! Secret material lives in [`SecretBytes`] (zeroized on drop, `Debug` prints no key bytes).
//! Every parser returns a typed [`CryptoError`] on malformed input and never panics.

#![forbid(unsafe_code)]

pub mod cvv;
pub mod dukpt;
pub mod ecdh;
pub mod emv;
pub mod error;
pub mod kcv;
pub mod mac;
pub mod pin;
pub mod pinver;
pub mod primitives;
pub mod secret;
pub mod tr31;
pub mod tr34;

pub use error::CryptoError;
pub use secret::SecretBytes;
