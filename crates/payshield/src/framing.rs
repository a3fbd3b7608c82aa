//! Framing: every message on the TCP stream is a 2-byte big-endian length followed by that
//! many bytes (header, command or response code, fields).
//!
//! [`Framer`] splits a byte stream into messages. It never panics: a declared length of zero or
//! above the configured maximum is a typed [`FrameError`], after which the stream is out of
//! sync and the connection should be closed.

/// Largest message the 2-byte length prefix can describe.
pub const MAX_WIRE_LEN: usize = u16::MAX as usize;

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix declares an empty message.
    #[error("frame: empty message")]
    Empty,
    /// The message is longer than the configured maximum.
    #[error("frame: {len} bytes exceed the maximum of {max}")]
    TooLong {
        /// Declared or given length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// Prefixes `message` with its 2-byte big-endian length.
pub fn encode_frame(message: &[u8]) -> Result<Vec<u8>, FrameError> {
    if message.is_empty() {
        return Err(FrameError::Empty);
    }
    let len = u16::try_from(message.len()).map_err(|_| FrameError::TooLong {
        len: message.len(),
        max: MAX_WIRE_LEN,
    })?;
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// Splits a byte stream into length-prefixed messages.
#[derive(Debug, Clone)]
pub struct Framer {
    buffer: Vec<u8>,
    max_len: usize,
}

impl Framer {
    /// A framer accepting messages of at most `max_len` bytes (capped at 65535).
    pub fn new(max_len: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max_len: max_len.min(MAX_WIRE_LEN),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Number of buffered bytes not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or an error if the
    /// length prefix is invalid (the buffer is then left as it is).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(prefix) = self.buffer.get(..2) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_len {
            return Err(FrameError::TooLong {
                len,
                max: self.max_len,
            });
        }
        if self.buffer.len() < 2 + len {
            return Ok(None);
        }
        let message = self.buffer[2..2 + len].to_vec();
        self.buffer.drain(..2 + len);
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_reassembles() {
        let mut framer = Framer::new(100);
        let mut wire = encode_frame(b"0000NC").expect("frame");
        wire.extend(encode_frame(b"0001NO00").expect("frame"));
        for byte in &wire {
            framer.push(std::slice::from_ref(byte));
        }
        assert_eq!(framer.next_frame(), Ok(Some(b"0000NC".to_vec())));
        assert_eq!(framer.next_frame(), Ok(Some(b"0001NO00".to_vec())));
        assert_eq!(framer.next_frame(), Ok(None));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn refuses_bad_lengths() {
        let mut framer = Framer::new(10);
        framer.push(&[0, 0]);
        assert_eq!(framer.next_frame(), Err(FrameError::Empty));
        let mut framer = Framer::new(10);
        framer.push(&[0, 11, 1]);
        assert_eq!(
            framer.next_frame(),
            Err(FrameError::TooLong { len: 11, max: 10 })
        );
        assert_eq!(encode_frame(&[]), Err(FrameError::Empty));
        assert!(encode_frame(&vec![0; 70_000]).is_err());
    }
}
