//! Framing of ISO 8583 messages on a byte stream, sans-I/O: an optional length prefix, an
//! optional fixed header (for example a 5-byte TPDU), then the message.
//!
//! ```text
//! [length prefix][header][ISO 8583 message]
//!                 \______ length ________/
//! ```
//!
//! The length counts the header and the message. [`Framing::encode`] builds a frame;
//! [`Framer`] splits a received stream back into messages (header checked and removed). The
//! framer never panics: a declared length of zero (or no bigger than the header), above the
//! maximum, or a prefix that is not digits where digits are expected is a typed
//! [`FrameError`], after which the stream is out of sync and the connection should be closed.
//! A frame whose header does not match is consumed and reported; the stream stays in sync.
//!
//! Prefix kinds ([`LengthPrefix`], written `binary2`, `binary4`, `ascii4`, `bcd2`, `none` in
//! configuration):
//!
//! | kind | bytes | largest length |
//! |---|---|---|
//! | `binary2` | 2, big-endian | 65,535 |
//! | `binary4` | 4, big-endian | 4,294,967,295 (bounded by the framer's maximum) |
//! | `ascii4` | 4 ASCII digits | 9,999 |
//! | `bcd2` | 2 bytes, 4 BCD digits | 9,999 |
//! | `none` | none: for transports that delimit messages themselves; every [`Framer::push`] is one frame | — |
//!
//! A TPDU's addresses are usually swapped in a response: give the [`Framer`] the header it
//! should expect, not the one sent.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// The length prefix in front of every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthPrefix {
    /// Two bytes, big-endian.
    Binary2,
    /// Four bytes, big-endian.
    Binary4,
    /// Four ASCII digits.
    Ascii4,
    /// Two bytes holding four BCD digits.
    Bcd2,
    /// No prefix: the transport delimits messages, every [`Framer::push`] is one frame.
    None,
}

impl LengthPrefix {
    /// Every kind, in the order of the table in the [module documentation](self).
    pub const ALL: [LengthPrefix; 5] = [
        LengthPrefix::Binary2,
        LengthPrefix::Binary4,
        LengthPrefix::Ascii4,
        LengthPrefix::Bcd2,
        LengthPrefix::None,
    ];

    /// Bytes of the prefix.
    pub fn width(self) -> usize {
        match self {
            LengthPrefix::Binary2 | LengthPrefix::Bcd2 => 2,
            LengthPrefix::Binary4 | LengthPrefix::Ascii4 => 4,
            LengthPrefix::None => 0,
        }
    }

    /// Largest length (header plus message) the prefix can state.
    pub fn max_len(self) -> usize {
        match self {
            LengthPrefix::Binary2 => usize::from(u16::MAX),
            LengthPrefix::Binary4 => usize::try_from(u32::MAX).unwrap_or(usize::MAX),
            LengthPrefix::Ascii4 | LengthPrefix::Bcd2 => 9999,
            LengthPrefix::None => usize::MAX,
        }
    }

    /// The configuration name (`binary2`, …).
    pub fn name(self) -> &'static str {
        match self {
            LengthPrefix::Binary2 => "binary2",
            LengthPrefix::Binary4 => "binary4",
            LengthPrefix::Ascii4 => "ascii4",
            LengthPrefix::Bcd2 => "bcd2",
            LengthPrefix::None => "none",
        }
    }

    fn write(self, out: &mut Vec<u8>, len: usize) {
        match self {
            LengthPrefix::Binary2 => out.extend_from_slice(&(len as u16).to_be_bytes()),
            LengthPrefix::Binary4 => out.extend_from_slice(&(len as u32).to_be_bytes()),
            LengthPrefix::Ascii4 => out.extend(format!("{len:04}").bytes()),
            LengthPrefix::Bcd2 => {
                let digits = format!("{len:04}").into_bytes();
                out.push(((digits[0] - b'0') << 4) | (digits[1] - b'0'));
                out.push(((digits[2] - b'0') << 4) | (digits[3] - b'0'));
            }
            LengthPrefix::None => {}
        }
    }

    /// The length a prefix states, `None` if it is not digits where digits are expected.
    fn read(self, prefix: &[u8]) -> Option<usize> {
        match self {
            LengthPrefix::Binary2 | LengthPrefix::Binary4 => Some(
                prefix
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
            ),
            LengthPrefix::Ascii4 => prefix.iter().try_fold(0usize, |acc, d| {
                d.is_ascii_digit().then(|| acc * 10 + usize::from(d - b'0'))
            }),
            LengthPrefix::Bcd2 => prefix
                .iter()
                .flat_map(|b| [b >> 4, b & 0xF])
                .try_fold(0usize, |acc, nibble| {
                    (nibble <= 9).then(|| acc * 10 + usize::from(nibble))
                }),
            LengthPrefix::None => Some(0),
        }
    }
}

impl fmt::Display for LengthPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LengthPrefix {
    type Err = FrameError;

    /// `binary2`, `binary4`, `ascii4`, `bcd2` or `none`.
    fn from_str(name: &str) -> Result<LengthPrefix, FrameError> {
        LengthPrefix::ALL
            .into_iter()
            .find(|prefix| prefix.name() == name)
            .ok_or_else(|| FrameError::UnknownPrefix {
                name: name.to_owned(),
            })
    }
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An empty message, or a declared length with no message bytes after the header.
    #[error("frame: empty message")]
    Empty,
    /// The length (header plus message) is above the maximum.
    #[error("frame: {len} bytes exceed the maximum of {max}")]
    TooLong {
        /// Declared or given length, header included.
        len: usize,
        /// The maximum, header included.
        max: usize,
    },
    /// An `ascii4` prefix that is not four digits, or a `bcd2` prefix with a nibble above 9.
    #[error("frame: the length prefix is not decimal digits")]
    InvalidPrefix,
    /// The frame's header is not the expected one (the frame is consumed).
    #[error("frame: the header does not match")]
    HeaderMismatch,
    /// A prefix name that is not one of `binary2`, `binary4`, `ascii4`, `bcd2`, `none`.
    #[error("frame: unknown length prefix {name:?}")]
    UnknownPrefix {
        /// The name given.
        name: String,
    },
}

fn hex_header<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    hex::decode(text.trim()).map_err(serde::de::Error::custom)
}

/// How messages are framed on a link: the length prefix and a fixed header (empty for none).
/// Deserializes from `{ prefix = "binary2", header = "6000010000" }` (header in hex, optional).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framing {
    /// The length prefix.
    pub prefix: LengthPrefix,
    /// Bytes between the prefix and the message (e.g. a 5-byte TPDU); may be empty.
    #[serde(default, deserialize_with = "hex_header")]
    pub header: Vec<u8>,
}

impl Framing {
    /// A framing with this prefix and header.
    pub fn new(prefix: LengthPrefix, header: impl Into<Vec<u8>>) -> Framing {
        Framing {
            prefix,
            header: header.into(),
        }
    }

    /// The frame for `message`: prefix (stating header plus message length), header, message.
    /// An empty message is [`FrameError::Empty`]; a length the prefix cannot state is
    /// [`FrameError::TooLong`].
    pub fn encode(&self, message: &[u8]) -> Result<Vec<u8>, FrameError> {
        if message.is_empty() {
            return Err(FrameError::Empty);
        }
        let len = self.header.len().saturating_add(message.len());
        let max = self.prefix.max_len();
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        let mut out = Vec::with_capacity(self.prefix.width() + len);
        self.prefix.write(&mut out, len);
        out.extend_from_slice(&self.header);
        out.extend_from_slice(message);
        Ok(out)
    }
}

/// Splits a received byte stream into messages (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct Framer {
    framing: Framing,
    max_len: usize,
    buffer: Vec<u8>,
    pushed: VecDeque<Vec<u8>>,
}

impl Framer {
    /// A framer for messages of at most `max_len` bytes (not counting the header; further
    /// capped by what the prefix can state).
    pub fn new(framing: Framing, max_len: usize) -> Framer {
        let max_len = max_len.min(
            framing
                .prefix
                .max_len()
                .saturating_sub(framing.header.len()),
        );
        Framer {
            framing,
            max_len,
            buffer: Vec::new(),
            pushed: VecDeque::new(),
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> &Framing {
        &self.framing
    }

    /// Appends received bytes. With [`LengthPrefix::None`] every non-empty push is one frame.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.framing.prefix == LengthPrefix::None {
            if !bytes.is_empty() {
                self.pushed.push_back(bytes.to_vec());
            }
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// Number of buffered bytes not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.pushed.iter().map(Vec::len).sum::<usize>()
    }

    /// The next complete message without prefix and header, `Ok(None)` if more bytes are
    /// needed, or an error. After [`FrameError::Empty`], [`FrameError::TooLong`] or
    /// [`FrameError::InvalidPrefix`] the buffer is left as it is (the stream is out of sync);
    /// a frame with the wrong header is consumed ([`FrameError::HeaderMismatch`]).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let header_len = self.framing.header.len();
        let max = header_len.saturating_add(self.max_len);
        if self.framing.prefix == LengthPrefix::None {
            let Some(frame) = self.pushed.pop_front() else {
                return Ok(None);
            };
            return self
                .check(frame.len(), max)
                .and_then(|()| self.strip(&frame));
        }
        let width = self.framing.prefix.width();
        let Some(prefix) = self.buffer.get(..width) else {
            return Ok(None);
        };
        let len = self
            .framing
            .prefix
            .read(prefix)
            .ok_or(FrameError::InvalidPrefix)?;
        self.check(len, max)?;
        let end = width
            .checked_add(len)
            .ok_or(FrameError::TooLong { len, max })?;
        let Some(frame) = self.buffer.get(width..end) else {
            return Ok(None);
        };
        let result = self.strip(frame);
        self.buffer.drain(..end);
        result
    }

    fn check(&self, len: usize, max: usize) -> Result<(), FrameError> {
        if len <= self.framing.header.len() {
            return Err(FrameError::Empty);
        }
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        Ok(())
    }

    fn strip(&self, frame: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        match frame.split_at_checked(self.framing.header.len()) {
            Some((header, message)) if header == self.framing.header.as_slice() => {
                Ok(Some(message.to_vec()))
            }
            _ => Err(FrameError::HeaderMismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPDU: [u8; 5] = [0x60, 0x00, 0x01, 0x00, 0x00];

    #[test]
    fn prefixes_on_the_wire() {
        let message = b"0800";
        let cases: [(LengthPrefix, &[u8]); 5] = [
            (LengthPrefix::Binary2, &[0x00, 0x09]),
            (LengthPrefix::Binary4, &[0x00, 0x00, 0x00, 0x09]),
            (LengthPrefix::Ascii4, b"0009"),
            (LengthPrefix::Bcd2, &[0x00, 0x09]),
            (LengthPrefix::None, &[]),
        ];
        for (prefix, expected) in cases {
            let framing = Framing::new(prefix, TPDU);
            let frame = framing.encode(message).expect("frame");
            assert_eq!(&frame[..prefix.width()], expected, "{prefix}");
            assert_eq!(&frame[prefix.width()..prefix.width() + 5], &TPDU);
            let mut framer = Framer::new(framing, 100);
            framer.push(&frame);
            assert_eq!(framer.next_frame(), Ok(Some(message.to_vec())), "{prefix}");
            assert_eq!(framer.next_frame(), Ok(None));
            assert_eq!(framer.buffered(), 0);
        }
        // 1234 bytes: BCD 12 34, ASCII "1234", binary 04 D2.
        let long = vec![b'x'; 1234];
        assert_eq!(
            &Framing::new(LengthPrefix::Bcd2, [])
                .encode(&long)
                .expect("frame")[..2],
            &[0x12, 0x34]
        );
        assert_eq!(
            &Framing::new(LengthPrefix::Ascii4, [])
                .encode(&long)
                .expect("frame")[..4],
            b"1234"
        );
        assert_eq!(
            &Framing::new(LengthPrefix::Binary2, [])
                .encode(&long)
                .expect("frame")[..2],
            &[0x04, 0xD2]
        );
    }

    #[test]
    fn reassembles_byte_by_byte() {
        let framing = Framing::new(LengthPrefix::Ascii4, []);
        let mut wire = framing.encode(b"first").expect("frame");
        wire.extend(framing.encode(b"second").expect("frame"));
        let mut framer = Framer::new(framing, 100);
        let mut frames = Vec::new();
        for byte in &wire {
            framer.push(std::slice::from_ref(byte));
            while let Some(frame) = framer.next_frame().expect("valid stream") {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![b"first".to_vec(), b"second".to_vec()]);
    }

    #[test]
    fn refuses_bad_frames() {
        let framing = Framing::new(LengthPrefix::Binary2, TPDU);
        assert_eq!(framing.encode(&[]), Err(FrameError::Empty));
        assert_eq!(
            Framing::new(LengthPrefix::Ascii4, []).encode(&vec![0; 10_000]),
            Err(FrameError::TooLong {
                len: 10_000,
                max: 9999
            })
        );

        let mut framer = Framer::new(framing.clone(), 10);
        framer.push(&[0, 0]);
        assert_eq!(framer.next_frame(), Err(FrameError::Empty));
        let mut framer = Framer::new(framing.clone(), 10);
        framer.push(&[0, 5, 0x60, 0, 1, 0, 0]);
        assert_eq!(framer.next_frame(), Err(FrameError::Empty));
        let mut framer = Framer::new(framing.clone(), 10);
        framer.push(&[0, 16]);
        assert_eq!(
            framer.next_frame(),
            Err(FrameError::TooLong { len: 16, max: 15 })
        );

        let mut framer = Framer::new(Framing::new(LengthPrefix::Ascii4, []), 10);
        framer.push(b"00x1");
        assert_eq!(framer.next_frame(), Err(FrameError::InvalidPrefix));
        let mut framer = Framer::new(Framing::new(LengthPrefix::Bcd2, []), 10);
        framer.push(&[0x00, 0x0A]);
        assert_eq!(framer.next_frame(), Err(FrameError::InvalidPrefix));

        // A wrong header is consumed; the next frame is read.
        let mut framer = Framer::new(framing.clone(), 10);
        framer.push(&[0, 6, 0x60, 0, 0, 0, 1, b'A']);
        framer.push(&framing.encode(b"B").expect("frame"));
        assert_eq!(framer.next_frame(), Err(FrameError::HeaderMismatch));
        assert_eq!(framer.next_frame(), Ok(Some(b"B".to_vec())));

        let mut framer = Framer::new(Framing::new(LengthPrefix::None, TPDU), 3);
        framer.push(&[]);
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(&TPDU);
        framer.push(&[0x60, 0, 1, 0, 0, 1, 2, 3, 4]);
        framer.push(&[0x61, 0, 1, 0, 0, 1]);
        assert_eq!(framer.next_frame(), Err(FrameError::Empty));
        assert_eq!(
            framer.next_frame(),
            Err(FrameError::TooLong { len: 9, max: 8 })
        );
        assert_eq!(framer.next_frame(), Err(FrameError::HeaderMismatch));
    }

    #[test]
    fn configuration() {
        for prefix in LengthPrefix::ALL {
            assert_eq!(prefix.name().parse::<LengthPrefix>(), Ok(prefix));
        }
        assert_eq!(
            "binary3".parse::<LengthPrefix>(),
            Err(FrameError::UnknownPrefix {
                name: "binary3".into()
            })
        );
        let framing: Framing =
            toml::from_str("prefix = \"bcd2\"\nheader = \"6000010000\"").expect("valid framing");
        assert_eq!(framing, Framing::new(LengthPrefix::Bcd2, TPDU));
        let framing: Framing = toml::from_str("prefix = \"none\"").expect("valid framing");
        assert_eq!(framing, Framing::new(LengthPrefix::None, []));
        assert!(toml::from_str::<Framing>("prefix = \"binary2\"\nheader = \"6G\"").is_err());
        assert!(toml::from_str::<Framing>("prefix = \"binary8\"").is_err());
    }
}
