//! A simulated PIN entry device (PED) that uses exactly the device-facing HTTP APIs a real
//! terminal uses:
//!
//! * [`pki`]: a manufacturer CA and the device identities it issues (RSA-2048 for TR-34 key
//!   transport, P-256 for ECDH), saved as PEM;
//! * [`client`]: the mTLS HTTP client that presents the device certificate;
//! * [`terminal`]: the device itself: first boot on terminal-management's device API, its
//!   initial DUKPT key from key-injection (TR-34, or ECDH once wired), signed parameter
//!   downloads and their acknowledgement, a payment's P2PE card data and DUKPT PIN block
//!   under one KSN;
//! * [`card`]: the track 2 equivalent data a simulated card presents, and named test cards;
//! * [`emv`]: a simulated EMV chip (GENERATE AC: ARQC, TC, AAC; the issuer's ARPC checked);
//! * [`payment`]: payments, reversals and status over the authorization service's device
//!   API, for a PED (mTLS) and a SoftPOS phone (TLS and its attestation token);
//! * [`session`]: a whole session (boot, key, parameters, payments), step by step;
//! * [`softpos`]: a simulated SoftPOS phone's attestation evidence (Android key attestation
//!   chain from a simulator root, Play Integrity verdict, app signals) for a challenge.
//!
//! Nothing here logs or returns key material; PANs are masked in every message.

pub mod card;
pub mod client;
pub mod emv;
pub mod error;
pub mod payment;
pub mod pki;
pub mod session;
pub mod softpos;
pub mod terminal;

pub use card::{TestCard, Track2, test_card, test_cards};
pub use emv::{CardDecision, EmvCard, EmvData, EmvTransaction};
pub use error::SimError;
pub use payment::{Payment, SoftPosConfig, SoftPosTerminal, build_payment_request};
pub use pki::{DeviceIdentity, DeviceKeyKind, ManufacturerCa};
pub use softpos::{
    AppSignals, AttestOptions, AttestationPki, SoftPosProfile, encode_key_description,
    encode_key_description_at, play_integrity_verdict,
};
pub use terminal::{
    ActivationState, EncryptedCardData, EncryptedPinBlock, EncryptedTransaction, InstalledKey,
    InstalledParameters, Terminal, TerminalConfig,
};
