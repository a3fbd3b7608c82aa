//! ISO 8583 messages for the platform's acquirer links, sans-I/O: bytes in, bytes out, no
//! sockets, no async.
//!
//! * [`Spec`]: the field layout as data, read from TOML ([`Spec::from_toml`]) and validated,
//!   with every error naming the field. Two layouts ship with the crate
//!   ([`Spec::builtin`]): `ascii-1987` (ISO 8583:1987, everything ASCII, binary bitmap) and
//!   `bcd-1987` (the same fields with BCD numerics and length prefixes, BCD MTI, binary bitmap
//!   and binary `b` fields, the style of many host-to-host links). Both define every field from
//!   2 to 128 (65, the tertiary bitmap indicator, is not supported).
//! * [`Message`]: an [`Mti`] and field values by number ([`FieldValue::Text`] for `n`, `an`,
//!   `ans`, `z`; [`FieldValue::Bytes`] for `b`), independent of any spec.
//! * [`encode`] / [`decode`]: a message to and from bytes under a spec. The primary bitmap is
//!   always present, the secondary exactly when a field from 65 to 128 is. Content is
//!   validated both ways, fixed lengths are exact (nothing is padded or truncated: the caller
//!   supplies `"000000001000"`, not `"1000"`), a field the spec does not define and bytes after
//!   the last field are errors. [`decode`] never panics.
//! * [`framing`]: the length prefix (`binary2`, `binary4`, `ascii4`, `bcd2`, `none`) and
//!   header (e.g. a TPDU) around each message on the wire, and a [`framing::Framer`] that
//!   splits a received stream.
//!
//! # Sensitive data
//!
//! [`Message`]'s `Debug` prints `***` for fields 2, 14, 34, 35, 36, 45, 52 and 55
//! ([`REDACTED_FIELDS`]: PAN, expiry, extended PAN, tracks 1–3, PIN block, ICC data) whatever
//! the spec, because a message does not know its spec; [`Spec::redacted`] also hides the
//! fields a spec marks `sensitive`. [`FieldValue`]'s own `Debug` prints only a length. Errors
//! ([`Iso8583Error`], [`SpecError`], [`framing::FrameError`]) name fields, offsets and lengths,
//! never content. Field values are zeroized when dropped; the encoded bytes belong to the
//! caller.
//!
//! # Example
//!
//! ```
//! use iso8583::{Message, Mti, Spec, decode, encode};
//!
//! let spec = Spec::builtin("bcd-1987")?;
//! let mut request = Message::new(Mti::parse("0200")?);
//! request
//!     .set_text(2, "4761739001010010")
//!     .set_text(3, "000000")
//!     .set_text(4, "000000001000")
//!     .set_text(11, "000001")
//!     .set_text(22, "051")
//!     .set_bytes(55, &[0x9F, 0x27, 0x01, 0x80]);
//! let bytes = encode(&spec, &request)?;
//! let decoded = decode(&spec, &bytes)?;
//! assert_eq!(decoded, request);
//! assert_eq!(decoded.get_text(4), Some("000000001000"));
//! assert_eq!(request.mti().response().map(|mti| mti.to_string()), Some("0210".into()));
//! // The PAN and the ICC data never reach a log.
//! assert!(!format!("{decoded:?}").contains("4761739001010010"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
pub mod framing;
mod message;
pub mod spec;

pub use codec::{Element, Iso8583Error, ValueKind, decode, encode};
pub use message::{FieldValue, Message, Mti, REDACTED_FIELDS};
pub use spec::{
    BitmapEncoding, Content, Encoding, FieldSpec, Length, LengthEncoding, MtiEncoding, Pad,
    Redacted, Spec, SpecError,
};
