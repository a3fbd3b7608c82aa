//! PostgreSQL's binary `COPY` format, read.
//!
//! `COPY (SELECT ...) TO STDOUT (FORMAT binary)` streams a result without the per-row
//! protocol framing and per-value conversions of a `SELECT`: the server's cheapest way to
//! hand over a long ordered read (an audit of a whole log). The format is the one the
//! PostgreSQL documentation gives under *COPY → Binary Format*:
//!
//! - a header: the 11-byte signature `PGCOPY\n\xff\r\n\0`, a 32-bit flags field (bit 16: OIDs
//!   included; bits 17–31 must be clear, bits 0–15 are ignored) and a 32-bit length of a
//!   header extension, which is skipped;
//! - tuples: a 16-bit field count, then per field a 32-bit length (-1 for NULL) and that many
//!   bytes of the value's binary representation (network byte order);
//! - a trailer: a field count of -1.
//!
//! [`Decoder`] is fed the bytes as they arrive, in chunks of any size (the server sends one
//! `CopyData` message per row, but nothing here relies on it), and hands out complete rows.
//! It never panics on input: anything that is not that format is a [`CopyError`].

use thiserror::Error;

/// The signature every binary COPY stream starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Flags bit 16: every tuple carries an OID first (`WITH OIDS`, gone since PostgreSQL 12).
const FLAG_OIDS: u32 = 1 << 16;
/// Flags bits 17-31: critical format changes a reader must refuse.
const FLAGS_CRITICAL: u32 = 0xfffe_0000;

/// What is wrong with a stream.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CopyError {
    /// The stream does not start with the binary COPY signature.
    #[error("not a binary COPY stream: the signature is missing")]
    Signature,
    /// The header sets a flag this reader does not understand.
    #[error("binary COPY header flags {0:#010x}: an unsupported format")]
    Flags(u32),
    /// A tuple has a different number of fields than the query selects.
    #[error("a COPY tuple has {found} fields, expected {expected}")]
    FieldCount {
        /// Fields the reader expects.
        expected: u16,
        /// Fields the tuple declares.
        found: i16,
    },
    /// A field length below -1.
    #[error("a COPY field declares length {0}")]
    FieldLength(i32),
    /// Bytes after the trailer.
    #[error("{0} bytes follow the COPY trailer")]
    TrailingData(usize),
    /// The stream ended inside the header, a tuple, or before the trailer.
    #[error("the COPY stream ended early")]
    Truncated,
    /// A field was NULL where a value is required.
    #[error("column {0} is NULL")]
    Null(usize),
    /// A field's bytes are not the type asked for.
    #[error("column {column}: {what}")]
    Value {
        /// Zero-based column.
        column: usize,
        /// What was expected.
        what: &'static str,
    },
    /// A column index past the row's fields.
    #[error("column {0} is not in the row")]
    Column(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Tuples,
    Done,
}

/// Reads a binary COPY stream fed in chunks.
#[derive(Debug)]
pub struct Decoder {
    columns: u16,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already handed out.
    consumed: usize,
    state: State,
    /// Field spans of the row last returned: `(start, end)` in `buffer`, `None` for NULL.
    spans: Vec<Option<(usize, usize)>>,
}

impl Decoder {
    /// A decoder for rows of exactly `columns` fields.
    pub fn new(columns: u16) -> Self {
        Self {
            columns,
            buffer: Vec::new(),
            consumed: 0,
            state: State::Header,
            spans: Vec::with_capacity(usize::from(columns)),
        }
    }

    /// Appends the next bytes of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.consumed > 0 {
            // Rows handed out are no longer borrowed (`next_row` borrows `self`).
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete row, or `None` when more bytes are needed or the trailer was read.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, CopyError> {
        if self.state == State::Header && !self.read_header()? {
            return Ok(None);
        }
        if self.state == State::Done {
            return match self.buffer.len() - self.consumed {
                0 => Ok(None),
                extra => Err(CopyError::TrailingData(extra)),
            };
        }
        let available = &self.buffer[self.consumed..];
        let Some(count) = read_i16(available, 0) else {
            return Ok(None);
        };
        if count == -1 {
            self.consumed += 2;
            self.state = State::Done;
            return match self.buffer.len() - self.consumed {
                0 => Ok(None),
                extra => Err(CopyError::TrailingData(extra)),
            };
        }
        if count != i16::try_from(self.columns).unwrap_or(i16::MAX) {
            return Err(CopyError::FieldCount {
                expected: self.columns,
                found: count,
            });
        }
        self.spans.clear();
        let mut at = 2usize;
        for _ in 0..self.columns {
            let Some(length) = read_i32(available, at) else {
                return Ok(None);
            };
            at += 4;
            match length {
                -1 => self.spans.push(None),
                length if length < -1 => return Err(CopyError::FieldLength(length)),
                length => {
                    let length =
                        usize::try_from(length).map_err(|_| CopyError::FieldLength(length))?;
                    let end = at.checked_add(length).ok_or(CopyError::Truncated)?;
                    if end > available.len() {
                        return Ok(None);
                    }
                    self.spans
                        .push(Some((self.consumed + at, self.consumed + end)));
                    at = end;
                }
            }
        }
        self.consumed += at;
        Ok(Some(Row {
            buffer: &self.buffer,
            spans: &self.spans,
        }))
    }

    /// Checks the stream ended where it should: after the trailer, with nothing left over.
    pub fn finish(&self) -> Result<(), CopyError> {
        match (self.state, self.buffer.len() - self.consumed) {
            (State::Done, 0) => Ok(()),
            (State::Done, extra) => Err(CopyError::TrailingData(extra)),
            _ => Err(CopyError::Truncated),
        }
    }

    /// Whether the trailer was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn read_header(&mut self) -> Result<bool, CopyError> {
        let available = &self.buffer[self.consumed..];
        let signature_known = available.len().min(SIGNATURE.len());
        if available[..signature_known] != SIGNATURE[..signature_known] {
            return Err(CopyError::Signature);
        }
        let (Some(flags), Some(extension)) = (
            read_i32(available, SIGNATURE.len()),
            read_i32(available, SIGNATURE.len() + 4),
        ) else {
            return Ok(false);
        };
        let flags = u32::from_be_bytes(flags.to_be_bytes());
        if flags & (FLAG_OIDS | FLAGS_CRITICAL) != 0 {
            return Err(CopyError::Flags(flags));
        }
        let extension = u32::from_be_bytes(extension.to_be_bytes());
        let length = usize::try_from(extension)
            .ok()
            .and_then(|extension| (SIGNATURE.len() + 8).checked_add(extension))
            .ok_or(CopyError::Truncated)?;
        if available.len() < length {
            return Ok(false);
        }
        self.consumed += length;
        self.state = State::Tuples;
        Ok(true)
    }
}

/// One row: its fields' binary values, borrowed from the decoder.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    buffer: &'a [u8],
    spans: &'a [Option<(usize, usize)>],
}

impl<'a> Row<'a> {
    /// The raw bytes of `column`, `None` for NULL.
    pub fn get(&self, column: usize) -> Result<Option<&'a [u8]>, CopyError> {
        let span = self.spans.get(column).ok_or(CopyError::Column(column))?;
        Ok(span.and_then(|(start, end)| self.buffer.get(start..end)))
    }

    /// The bytes of a non-NULL `column` (`bytea`, or any value's binary form).
    pub fn bytes(&self, column: usize) -> Result<&'a [u8], CopyError> {
        self.get(column)?.ok_or(CopyError::Null(column))
    }

    /// A non-NULL `bigint` (`int8`: 8 bytes, big-endian).
    pub fn int8(&self, column: usize) -> Result<i64, CopyError> {
        let bytes: [u8; 8] = self
            .bytes(column)?
            .try_into()
            .map_err(|_| CopyError::Value {
                column,
                what: "an int8 is 8 bytes",
            })?;
        Ok(i64::from_be_bytes(bytes))
    }

    /// A non-NULL `text` (its binary form is the UTF-8 bytes themselves).
    pub fn text(&self, column: usize) -> Result<&'a str, CopyError> {
        std::str::from_utf8(self.bytes(column)?).map_err(|_| CopyError::Value {
            column,
            what: "text is not UTF-8",
        })
    }
}

fn read_i16(bytes: &[u8], at: usize) -> Option<i16> {
    let slice = bytes.get(at..at.checked_add(2)?)?;
    Some(i16::from_be_bytes(slice.try_into().ok()?))
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(slice.try_into().ok()?))
}
