//! Message framing on the TCP stream: a length prefix, then an optional fixed header (e.g. a
//! TPDU), then the ISO 8583 message. The length counts the header and the message.
//!
//! This is the link's own implementation of the framing API the `iso8583` crate is to offer
//! (`iso8583::framing`: [`Framing`], [`LengthPrefix`], [`Framer`]); it is replaced by a
//! re-export once that lands.

use std::fmt;

/// The length prefix of each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LengthPrefix {
    /// Two bytes, big-endian binary (up to 65535).
    Binary2,
    /// Four bytes, big-endian binary.
    Binary4,
    /// Four ASCII decimal digits (up to 9999).
    Ascii4,
    /// Two bytes of BCD, four decimal digits (up to 9999).
    Bcd2,
    /// No prefix: each chunk handed to [`Framer::push`] is one message (datagram-like
    /// transports and tests only; a TCP stream needs a prefix).
    None,
}

impl LengthPrefix {
    fn len(self) -> usize {
        match self {
            Self::Binary2 | Self::Bcd2 => 2,
            Self::Binary4 | Self::Ascii4 => 4,
            Self::None => 0,
        }
    }

    fn max(self) -> usize {
        match self {
            Self::Binary2 => 0xFFFF,
            Self::Binary4 => usize::try_from(u32::MAX).unwrap_or(usize::MAX),
            Self::Ascii4 | Self::Bcd2 => 9_999,
            Self::None => usize::MAX,
        }
    }
}

/// A framing error: the stream is out of step and the connection should close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A message longer than the prefix can say or the receiver accepts.
    #[error("frame of {len} bytes, more than the maximum {max}")]
    TooLong {
        /// The length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A prefix that is not decimal digits (ASCII or BCD).
    #[error("invalid length prefix")]
    InvalidPrefix,
    /// A frame shorter than the header.
    #[error("frame of {len} bytes is shorter than the {header} byte header")]
    ShorterThanHeader {
        /// The frame's length.
        len: usize,
        /// The header's length.
        header: usize,
    },
}

/// How messages are delimited on the stream.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Framing {
    /// The length prefix.
    pub prefix: LengthPrefix,
    /// A fixed header between the prefix and the message (e.g. a 5-byte TPDU), sent as is
    /// and stripped (not checked) on receipt.
    pub header: Vec<u8>,
}

impl fmt::Debug for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framing")
            .field("prefix", &self.prefix)
            .field("header", &hex::encode_upper(&self.header))
            .finish()
    }
}

impl Framing {
    /// Prefix ‖ header ‖ `payload`.
    pub fn encode(&self, payload: &[u8]) -> Result<Vec<u8>, FramingError> {
        let len = self.header.len() + payload.len();
        if len > self.prefix.max() {
            return Err(FramingError::TooLong {
                len,
                max: self.prefix.max(),
            });
        }
        let mut out = Vec::with_capacity(self.prefix.len() + len);
        match self.prefix {
            LengthPrefix::Binary2 => {
                out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
            }
            LengthPrefix::Binary4 => {
                out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
            }
            LengthPrefix::Ascii4 => out.extend_from_slice(format!("{len:04}").as_bytes()),
            LengthPrefix::Bcd2 => {
                let digits = format!("{len:04}");
                let bytes = digits.as_bytes();
                out.push(((bytes[0] - b'0') << 4) | (bytes[1] - b'0'));
                out.push(((bytes[2] - b'0') << 4) | (bytes[3] - b'0'));
            }
            LengthPrefix::None => {}
        }
        out.extend_from_slice(&self.header);
        out.extend_from_slice(payload);
        Ok(out)
    }
}

/// Cuts a byte stream into messages.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    max_len: usize,
    buffer: Vec<u8>,
}

impl Framer {
    /// A framer accepting messages (header included) of at most `max_len` bytes.
    pub fn new(framing: Framing, max_len: usize) -> Self {
        Self {
            framing,
            max_len,
            buffer: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message without prefix and header, `None` until one is complete.
    /// An error means the stream cannot be resynchronised.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let prefix = self.framing.prefix.len();
        let header = self.framing.header.len();
        let len = if self.framing.prefix == LengthPrefix::None {
            if self.buffer.is_empty() {
                return Ok(None);
            }
            self.buffer.len()
        } else {
            if self.buffer.len() < prefix {
                return Ok(None);
            }
            let raw = &self.buffer[..prefix];
            match self.framing.prefix {
                LengthPrefix::Binary2 => usize::from(u16::from_be_bytes([raw[0], raw[1]])),
                LengthPrefix::Binary4 => {
                    usize::try_from(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))
                        .unwrap_or(usize::MAX)
                }
                LengthPrefix::Ascii4 => {
                    if !raw.iter().all(u8::is_ascii_digit) {
                        return Err(FramingError::InvalidPrefix);
                    }
                    raw.iter()
                        .fold(0, |acc, digit| acc * 10 + usize::from(digit - b'0'))
                }
                LengthPrefix::Bcd2 => {
                    let nibbles = [raw[0] >> 4, raw[0] & 0xF, raw[1] >> 4, raw[1] & 0xF];
                    if nibbles.iter().any(|nibble| *nibble > 9) {
                        return Err(FramingError::InvalidPrefix);
                    }
                    nibbles
                        .iter()
                        .fold(0, |acc, nibble| acc * 10 + usize::from(*nibble))
                }
                LengthPrefix::None => 0,
            }
        };
        if len > self.max_len {
            return Err(FramingError::TooLong {
                len,
                max: self.max_len,
            });
        }
        if len < header {
            return Err(FramingError::ShorterThanHeader { len, header });
        }
        if self.buffer.len() < prefix + len {
            return Ok(None);
        }
        let frame = self.buffer[prefix + header..prefix + len].to_vec();
        self.buffer.drain(..prefix + len);
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_prefix_round_trips_in_pieces() {
        for prefix in [
            LengthPrefix::Binary2,
            LengthPrefix::Binary4,
            LengthPrefix::Ascii4,
            LengthPrefix::Bcd2,
        ] {
            let framing = Framing {
                prefix,
                header: vec![0x60, 0, 0, 0, 0],
            };
            let mut stream = framing.encode(b"0800abc").unwrap();
            stream.extend(framing.encode(b"0810").unwrap());
            let mut framer = Framer::new(framing, 1024);
            let mut frames = Vec::new();
            for byte in stream {
                framer.push(&[byte]);
                while let Some(frame) = framer.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(
                frames,
                vec![b"0800abc".to_vec(), b"0810".to_vec()],
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn known_prefixes() {
        let plain = |prefix| Framing {
            prefix,
            header: Vec::new(),
        };
        let payload = vec![0x41; 300];
        assert_eq!(
            plain(LengthPrefix::Binary2).encode(&payload).unwrap()[..2],
            [0x01, 0x2C]
        );
        assert_eq!(
            &plain(LengthPrefix::Ascii4).encode(&payload).unwrap()[..4],
            b"0300"
        );
        assert_eq!(
            plain(LengthPrefix::Bcd2).encode(&payload).unwrap()[..2],
            [0x03, 0x00]
        );
        assert!(plain(LengthPrefix::Ascii4).encode(&[0; 10_000]).is_err());
    }

    #[test]
    fn refuses_what_cannot_be_resynchronised() {
        let mut framer = Framer::new(
            Framing {
                prefix: LengthPrefix::Ascii4,
                header: Vec::new(),
            },
            100,
        );
        framer.push(b"00x1");
        assert_eq!(framer.next_frame(), Err(FramingError::InvalidPrefix));
        let mut framer = Framer::new(
            Framing {
                prefix: LengthPrefix::Binary2,
                header: Vec::new(),
            },
            100,
        );
        framer.push(&[0x01, 0x00]);
        assert!(matches!(
            framer.next_frame(),
            Err(FramingError::TooLong { .. })
        ));
    }
}
