//! Thales payShield host-command protocol (and compatible HSMs).
//!
//! * [`framing`]: the 2-byte length prefix, [`framing::Framer`] for byte streams.
//! * [`codec`]: typed [`codec::Request`] / [`codec::Response`] for the commands the platform
//!   uses, client side ([`codec::encode`], [`codec::decode_response`]) and server side
//!   ([`codec::decode_request`], [`codec::encode_response`]). Sans-I/O, never panics.
//! * [`client`]: a tokio TCP client with per-request timeouts and a small pool.
//!
//! # Covered commands (key-block LMK)
//!
//! | Command → response | What | Options covered |
//! |---|---|---|
//! | NC → ND | diagnostics | LMK check value 16H, firmware 9A |
//! | NO → NP | status | mode `00` |
//! | A0 → A1 | generate a key | mode `0`/`1`, key type `FFF`, LMK scheme `S`, export under ZMK/TMK as `R`/`U`/`T`, `#` key block attributes without optional blocks |
//! | A6 → A7 | import ZMK → LMK | key as `R` (TR-31) or `U`/`T`, optional `#` attributes |
//! | A8 → A9 | export LMK → ZMK/TMK | optional `;` + ZMK/TMK flag, export scheme `R`/`U`/`T` |
//! | CA → CB, CC → CD | PIN translation TPK/ZPK → ZPK | PIN blocks 16H, 32H for format `48`; account 12N, full PAN for `48` |
//! | CI → CJ, G0 → G1 | PIN translation DUKPT (BDK + KSN) → ZPK | KSN descriptor 3H, KSN 10–20H; G0 with source format `01` |
//! | KQ → KR | ARQC verification / ARPC generation | modes `0`,`1`,`2`; schemes `0` (Visa), `1` (Mastercard) |
//! | M6 → M7, M8 → M9 | generate / verify a MAC | modes `0`–`3`, input formats `0`,`1`,`2`, MAC 8H/16H |
//! | M0 → M1, M2 → M3 | encrypt / decrypt data | modes `00` (ECB), `01` (CBC), binary or hex input and output |
//! | BU → BV | key check value of a key under the LMK | key type code `FF` (key block), KCV 6H (16H accepted) |
//!
//! Keys are `S` + key block (under the LMK; self-describing length), `R` + TR-31 block,
//! `U`/`X` + 32H, `T`/`Y` + 48H, or a bare 16H key. Message trailers are not supported.
//! PIN block format codes: `01` ISO 0, `05` ISO 1, `47` ISO 3, `48` ISO 4. The exact field
//! order of every command, the deviations from a real unit and the simulator's error codes are
//! in `docs/payshield.md`.
//!
//! PIN blocks, account numbers and message data are wrapped in [`codec::Sensitive`], whose
//! `Debug` prints only a length; keys in the messages are always encrypted (under the LMK or
//! a KEK). Codec errors never contain field content.

#![forbid(unsafe_code)]

pub mod client;
pub mod codec;
pub mod framing;

pub use codec::{CodecError, ErrorCode, KeyField, Request, Response, ResponseMessage};
pub use framing::{FrameError, Framer};
