//! The platform's side of an ISO 8583 acquirer link.
//!
//! * [`profile`]: the platform's ISO 8583:1987 messages, built from and read into domain
//!   structs ([`AuthorizationRequest`], [`AuthorizationResponse`]), so the routing service
//!   never handles raw fields; the reverse direction for the acquirer simulator.
//! * [`mac`]: the MAC of field 64/128 and its providers ([`HsmMac`] through the hsm-proxy,
//!   [`SoftMac`] with a clear key, [`NoMac`]).
//! * [`link`]: the tokio connector ([`Link`]): one TCP connection, many exchanges in flight,
//!   matched by MTI class, STAN and RRN; timeouts, reconnection with backoff, echo tests.
//!
//! Card data (PAN, track 2, PIN block) lives in masking types whose `Debug` hides it, and
//! never appears in logs, errors or metric labels.

#![forbid(unsafe_code)]

pub mod error;
pub mod link;
pub mod mac;
pub mod profile;
mod wire;

pub use error::LinkError;
/// Length prefix and header framing, from the codec crate.
pub use iso8583::framing;
pub use link::{Link, LinkConfig, LinkState};
pub use mac::{HsmMac, MacProvider, NoMac, SoftMac};
pub use profile::{
    AuthorizationRequest, AuthorizationResponse, EntryMode, HostRequest, NetworkCode, OriginalData,
    OriginalTransaction, PinBlock, RequestKind, ResponseCode, Reversal, ReversalReason, Track2Data,
};
