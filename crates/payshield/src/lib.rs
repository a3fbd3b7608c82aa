//! Thales payShield host-command protocol (and compatible HSMs).
//!
//! * [`framing`]: the 2-byte length prefix, [`framing::Framer`] for byte streams.
//! * [`codec`]: typed [`codec::Request`] / [`codec::Response`] for the commands the platform
//!   uses, client side ([`codec::encode`], [`codec::decode_response`]) and server side
//!   ([`codec::decode_request`], [`codec::encode_response`]). Sans-I/O, never panics.
//! * [`client`]: a tokio TCP client with per-request timeouts and a small pool.
//!
//! See `docs/payshield.md` for the covered commands and field options.

#![forbid(unsafe_code)]

pub mod client;
pub mod codec;
pub mod framing;

pub use codec::{CodecError, ErrorCode, KeyField, Request, Response, ResponseMessage};
pub use framing::{FrameError, Framer};
