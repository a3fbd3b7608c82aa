//! [`encode`] and [`decode`]: a [`Message`] to and from bytes under a [`Spec`].

use std::fmt;

use zeroize::Zeroizing;

use crate::message::{FieldValue, Message, Mti};
use crate::spec::{
    BitmapEncoding, Content, Encoding, FieldSpec, Length, LengthEncoding, MtiEncoding, Pad, Spec,
};

/// The part of a message an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Element {
    /// The message type indicator.
    Mti,
    /// The primary bitmap.
    PrimaryBitmap,
    /// The secondary bitmap.
    SecondaryBitmap,
    /// A data element.
    Field(u8),
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Mti => f.write_str("MTI"),
            Element::PrimaryBitmap => f.write_str("primary bitmap"),
            Element::SecondaryBitmap => f.write_str("secondary bitmap"),
            Element::Field(number) => write!(f, "field {number}"),
        }
    }
}

/// Which kind of [`FieldValue`] a field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// [`FieldValue::Text`], for `n`, `an`, `ans`, `z`.
    Text,
    /// [`FieldValue::Bytes`], for `b`.
    Bytes,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Text => "text",
            ValueKind::Bytes => "bytes",
        })
    }
}

/// Why a message could not be encoded or decoded. Errors name the field (or MTI/bitmap) and
/// the reason, carry the byte offset when decoding, and never contain field content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Iso8583Error {
    /// An MTI that is not four digits ([`Mti::parse`], or on the wire).
    #[error("MTI is not four digits{}", at(.offset))]
    InvalidMti {
        /// Offset of the MTI when decoding.
        offset: Option<usize>,
    },
    /// A hex bitmap with a character that is not a hex digit.
    #[error("{element} is not hex{}", at(&Some(*.offset)))]
    InvalidBitmap {
        /// Which bitmap.
        element: Element,
        /// Offset of the bitmap.
        offset: usize,
    },
    /// The secondary bitmap has bit 1 (field 65) set, announcing a tertiary bitmap, which is
    /// not supported.
    #[error("secondary bitmap announces a tertiary bitmap (field 65), not supported{}", at(&Some(*.offset)))]
    TertiaryBitmap {
        /// Offset of the secondary bitmap.
        offset: usize,
    },
    /// A field the spec does not define: in the message when encoding, or present in a bitmap
    /// when decoding (then `offset` is the bitmap's).
    #[error("field {field} is not defined by the spec{}", at(.offset))]
    UndefinedField {
        /// The field number.
        field: u8,
        /// Offset of the bitmap announcing it, when decoding.
        offset: Option<usize>,
    },
    /// A text value for a `b` field, or bytes for a text field.
    #[error("field {field} takes {expected}")]
    WrongValueKind {
        /// The field number.
        field: u8,
        /// What the spec's content type takes.
        expected: ValueKind,
    },
    /// A fixed field whose value does not have exactly the fixed length (values are never
    /// padded or truncated: the caller supplies the exact length).
    #[error("field {field} must have exactly {expected} units, has {actual}")]
    FixedLength {
        /// The field number.
        field: u8,
        /// The fixed length (digits, characters or bytes).
        expected: usize,
        /// The value's length.
        actual: usize,
    },
    /// A variable field longer than its maximum (when decoding: the length prefix says so).
    #[error("field {field} has {actual} units, more than the maximum {max}{}", at(.offset))]
    TooLong {
        /// The field number.
        field: u8,
        /// The spec's maximum.
        max: usize,
        /// The value's or the prefix's length.
        actual: usize,
        /// Offset of the length prefix, when decoding.
        offset: Option<usize>,
    },
    /// A length prefix that is not digits (ASCII) or not decimal nibbles (BCD).
    #[error("field {field} has an invalid length prefix{}", at(&Some(*.offset)))]
    InvalidLengthPrefix {
        /// The field number.
        field: u8,
        /// Offset of the length prefix.
        offset: usize,
    },
    /// Content that its content type does not allow: not digits for `n`, not letters, digits
    /// and space for `an`, not printable ASCII for `ans`, not digits and one separator for `z`,
    /// not hex for an ASCII-encoded `b` field.
    #[error("field {field} is not valid {content} content{}", at(.offset))]
    InvalidContent {
        /// The field number.
        field: u8,
        /// The content type.
        content: Content,
        /// Offset of the field's data, when decoding.
        offset: Option<usize>,
    },
    /// A BCD pad nibble that is neither `0` nor `F`.
    #[error("field {field} has an invalid BCD pad nibble{}", at(&Some(*.offset)))]
    InvalidPadding {
        /// The field number.
        field: u8,
        /// Offset of the field's data.
        offset: usize,
    },
    /// The input ends inside an element.
    #[error(
        "{element} is truncated: {needed} bytes needed at offset {offset}, {available} available"
    )]
    Truncated {
        /// The element being read.
        element: Element,
        /// Offset where it starts (or its length prefix ends).
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// Bytes left after the last field the bitmaps announce.
    #[error("{count} bytes after the last field at offset {offset}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
        /// Number of extra bytes.
        count: usize,
    },
}

fn at(offset: &Option<usize>) -> String {
    match offset {
        Some(offset) => format!(" at offset {offset}"),
        None => String::new(),
    }
}

/// Whether `text` is valid content of type `content` (text types only).
fn text_is_valid(content: Content, text: &[u8]) -> bool {
    match content {
        Content::N => text.iter().all(u8::is_ascii_digit),
        Content::An => text.iter().all(|c| c.is_ascii_alphanumeric() || *c == b' '),
        Content::Ans => text.iter().all(|c| (0x20..=0x7E).contains(c)),
        Content::Z => {
            text.iter()
                .all(|c| c.is_ascii_digit() || *c == b'=' || *c == b'D')
                && text.iter().filter(|c| !c.is_ascii_digit()).count() <= 1
        }
        Content::B => false,
    }
}

fn push_bcd_digits(out: &mut Vec<u8>, nibbles: impl Iterator<Item = u8>) {
    let mut high = None;
    for nibble in nibbles {
        match high.take() {
            None => high = Some(nibble),
            Some(h) => out.push((h << 4) | nibble),
        }
    }
    if let Some(h) = high {
        out.push(h << 4);
    }
}

/// Writes `value` as `digits` decimal digits in the length-prefix encoding.
fn push_length_prefix(out: &mut Vec<u8>, encoding: LengthEncoding, digits: usize, value: usize) {
    match encoding {
        LengthEncoding::Ascii => {
            out.extend(format!("{value:0digits$}").bytes());
        }
        LengthEncoding::Bcd => {
            // LL in one byte, LLL (with a leading zero digit) and LLLL in two.
            let width = if digits == 2 { 2 } else { 4 };
            push_bcd_digits(out, format!("{value:0width$}").bytes().map(|d| d - b'0'));
        }
        LengthEncoding::Binary => {
            if digits == 2 {
                out.push(value as u8);
            } else {
                out.extend_from_slice(&(value as u16).to_be_bytes());
            }
        }
    }
}

fn prefix_width(encoding: LengthEncoding, digits: usize) -> usize {
    match encoding {
        LengthEncoding::Ascii => digits,
        LengthEncoding::Bcd | LengthEncoding::Binary => {
            if digits == 2 {
                1
            } else {
                2
            }
        }
    }
}

/// Encodes `message` under `spec`: MTI, primary bitmap, secondary bitmap exactly when a field
/// from 65 to 128 is present, then the fields in number order.
///
/// Every field must be defined by the spec, be of the right kind (text or bytes), hold valid
/// content for its type, and have exactly its fixed length or at most its maximum. Nothing is
/// padded or truncated: a fixed `n` field such as field 4 must be given with all its leading
/// zeros (`"000000001000"`).
pub fn encode(spec: &Spec, message: &Message) -> Result<Vec<u8>, Iso8583Error> {
    let mut bitmap = [0u8; 16];
    let mut secondary = false;
    let mut capacity = 4 + 32;
    for (number, value) in message.fields() {
        if spec.field(number).is_none() {
            return Err(Iso8583Error::UndefinedField {
                field: number,
                offset: None,
            });
        }
        let index = usize::from(number - 1);
        bitmap[index / 8] |= 0x80 >> (index % 8);
        secondary |= number > 64;
        capacity += 4 + match value {
            FieldValue::Text(text) => text.len(),
            FieldValue::Bytes(bytes) => 2 * bytes.len(),
        };
    }
    if secondary {
        bitmap[0] |= 0x80;
    }
    // Reserve once so that the buffer holding field content is not reallocated (and copies
    // of it left behind) while it grows.
    let mut out = Vec::with_capacity(capacity);
    match spec.mti_encoding() {
        MtiEncoding::Ascii => out.extend_from_slice(message.mti().as_bytes()),
        MtiEncoding::Bcd => {
            push_bcd_digits(&mut out, message.mti().as_bytes().iter().map(|d| d - b'0'))
        }
    }
    let bitmaps = if secondary { &bitmap[..] } else { &bitmap[..8] };
    match spec.bitmap_encoding() {
        BitmapEncoding::Binary => out.extend_from_slice(bitmaps),
        BitmapEncoding::Hex => out.extend(hex::encode_upper(bitmaps).bytes()),
    }
    for (number, value) in message.fields() {
        if let Some(field) = spec.field(number) {
            encode_field(&mut out, number, field, value)?;
        }
    }
    Ok(out)
}

fn encode_field(
    out: &mut Vec<u8>,
    number: u8,
    field: &FieldSpec,
    value: &FieldValue,
) -> Result<(), Iso8583Error> {
    let units = match (field.content(), value) {
        (Content::B, FieldValue::Bytes(bytes)) => bytes.len(),
        (Content::B, FieldValue::Text(_)) => {
            return Err(Iso8583Error::WrongValueKind {
                field: number,
                expected: ValueKind::Bytes,
            });
        }
        (_, FieldValue::Bytes(_)) => {
            return Err(Iso8583Error::WrongValueKind {
                field: number,
                expected: ValueKind::Text,
            });
        }
        (content, FieldValue::Text(text)) => {
            if !text_is_valid(content, text.as_bytes()) {
                return Err(Iso8583Error::InvalidContent {
                    field: number,
                    content,
                    offset: None,
                });
            }
            text.len()
        }
    };
    match field.length() {
        Length::Fixed(_) => {
            if units != field.length().max() {
                return Err(Iso8583Error::FixedLength {
                    field: number,
                    expected: field.length().max(),
                    actual: units,
                });
            }
        }
        length => {
            if units > length.max() {
                return Err(Iso8583Error::TooLong {
                    field: number,
                    max: length.max(),
                    actual: units,
                    offset: None,
                });
            }
            if let Some(encoding) = field.length_encoding() {
                push_length_prefix(out, encoding, length.prefix_digits(), units);
            }
        }
    }
    match (value, field.encoding()) {
        (FieldValue::Bytes(bytes), Encoding::Binary) => out.extend_from_slice(bytes),
        (FieldValue::Bytes(bytes), _) => {
            for byte in bytes {
                out.extend_from_slice(&hex_pair(*byte));
            }
        }
        (FieldValue::Text(text), Encoding::Bcd) => {
            let pad = match field.content() {
                Content::Z => 0xF,
                _ => 0x0,
            };
            let digits = text.bytes().map(|c| match c {
                b'=' | b'D' => 0xD,
                digit => digit - b'0',
            });
            if text.len() % 2 == 1 && field.pad() == Pad::Left {
                push_bcd_digits(out, std::iter::once(pad).chain(digits));
            } else if text.len() % 2 == 1 {
                push_bcd_digits(out, digits.chain(std::iter::once(pad)));
            } else {
                push_bcd_digits(out, digits);
            }
        }
        (FieldValue::Text(text), _) => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

fn hex_pair(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 0xF)],
    ]
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, element: Element, count: usize) -> Result<&'a [u8], Iso8583Error> {
        let available = self.bytes.len() - self.position;
        if count > available {
            return Err(Iso8583Error::Truncated {
                element,
                offset: self.position,
                needed: count,
                available,
            });
        }
        let slice = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(slice)
    }
}

/// Decodes a message under `spec`. The whole input must be one message: bytes after the last
/// field are [`Iso8583Error::TrailingBytes`]. A bit for a field the spec does not define is
/// [`Iso8583Error::UndefinedField`]; a secondary bitmap with no bit set is accepted. Content is
/// validated as [`encode`] validates it; a BCD `z` separator comes back as `=`. Never panics.
pub fn decode(spec: &Spec, bytes: &[u8]) -> Result<Message, Iso8583Error> {
    let mut reader = Reader { bytes, position: 0 };
    let mti = match spec.mti_encoding() {
        MtiEncoding::Ascii => {
            let raw = reader.take(Element::Mti, 4)?;
            Mti::from_ascii(raw)
        }
        MtiEncoding::Bcd => {
            let raw = reader.take(Element::Mti, 2)?;
            let digits: Vec<u8> = raw.iter().flat_map(|b| [b >> 4, b & 0xF]).collect();
            if digits.iter().all(|d| *d <= 9) {
                Mti::from_ascii(&digits.iter().map(|d| d + b'0').collect::<Vec<u8>>())
            } else {
                None
            }
        }
    }
    .ok_or(Iso8583Error::InvalidMti { offset: Some(0) })?;

    let primary_offset = reader.position;
    let primary = read_bitmap(&mut reader, spec.bitmap_encoding(), Element::PrimaryBitmap)?;
    let mut present: Vec<(u8, usize)> = bits(&primary, 0).map(|n| (n, primary_offset)).collect();
    if primary[0] & 0x80 != 0 {
        let secondary_offset = reader.position;
        let secondary = read_bitmap(
            &mut reader,
            spec.bitmap_encoding(),
            Element::SecondaryBitmap,
        )?;
        if secondary[0] & 0x80 != 0 {
            return Err(Iso8583Error::TertiaryBitmap {
                offset: secondary_offset,
            });
        }
        present.extend(bits(&secondary, 64).map(|n| (n, secondary_offset)));
    }

    let mut message = Message::new(mti);
    for (number, bitmap_offset) in present {
        if number == 1 {
            continue;
        }
        let field = spec.field(number).ok_or(Iso8583Error::UndefinedField {
            field: number,
            offset: Some(bitmap_offset),
        })?;
        let value = decode_field(&mut reader, number, field)?;
        message.set(number, value);
    }
    let count = bytes.len() - reader.position;
    if count > 0 {
        return Err(Iso8583Error::TrailingBytes {
            offset: reader.position,
            count,
        });
    }
    Ok(message)
}

fn read_bitmap(
    reader: &mut Reader<'_>,
    encoding: BitmapEncoding,
    element: Element,
) -> Result<[u8; 8], Iso8583Error> {
    let mut bitmap = [0u8; 8];
    match encoding {
        BitmapEncoding::Binary => bitmap.copy_from_slice(reader.take(element, 8)?),
        BitmapEncoding::Hex => {
            let offset = reader.position;
            let raw = reader.take(element, 16)?;
            for (byte, pair) in bitmap.iter_mut().zip(raw.chunks_exact(2)) {
                let (Some(high), Some(low)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                    return Err(Iso8583Error::InvalidBitmap { element, offset });
                };
                *byte = (high << 4) | low;
            }
        }
    }
    Ok(bitmap)
}

/// Field numbers (1-based, plus `base`) of the bits set in `bitmap`.
fn bits(bitmap: &[u8; 8], base: u8) -> impl Iterator<Item = u8> + '_ {
    (0u8..64)
        .filter(move |i| bitmap[usize::from(i / 8)] & (0x80 >> (i % 8)) != 0)
        .map(move |i| base + i + 1)
}

fn read_length_prefix(
    reader: &mut Reader<'_>,
    number: u8,
    field: &FieldSpec,
    encoding: LengthEncoding,
) -> Result<usize, Iso8583Error> {
    let offset = reader.position;
    let digits = field.length().prefix_digits();
    let raw = reader.take(Element::Field(number), prefix_width(encoding, digits))?;
    let invalid = Iso8583Error::InvalidLengthPrefix {
        field: number,
        offset,
    };
    let value = match encoding {
        LengthEncoding::Ascii => {
            if !raw.iter().all(u8::is_ascii_digit) {
                return Err(invalid);
            }
            raw.iter()
                .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'))
        }
        LengthEncoding::Bcd => {
            let mut value = 0usize;
            for nibble in raw.iter().flat_map(|b| [b >> 4, b & 0xF]) {
                if nibble > 9 {
                    return Err(invalid);
                }
                value = value * 10 + usize::from(nibble);
            }
            value
        }
        LengthEncoding::Binary => raw
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
    };
    let max = field.length().max();
    if value > max {
        return Err(Iso8583Error::TooLong {
            field: number,
            max,
            actual: value,
            offset: Some(offset),
        });
    }
    Ok(value)
}

fn decode_field(
    reader: &mut Reader<'_>,
    number: u8,
    field: &FieldSpec,
) -> Result<FieldValue, Iso8583Error> {
    let units = match (field.length(), field.length_encoding()) {
        (Length::Fixed(n), _) => usize::from(n),
        (_, Some(encoding)) => read_length_prefix(reader, number, field, encoding)?,
        // A validated spec always has a length encoding for a variable field.
        (_, None) => {
            return Err(Iso8583Error::UndefinedField {
                field: number,
                offset: Some(reader.position),
            });
        }
    };
    let content = field.content();
    let data_len = match (content, field.encoding()) {
        (Content::B, Encoding::Ascii) => 2 * units,
        (_, Encoding::Bcd) => units.div_ceil(2),
        _ => units,
    };
    let offset = reader.position;
    let raw = reader.take(Element::Field(number), data_len)?;
    let invalid = Iso8583Error::InvalidContent {
        field: number,
        content,
        offset: Some(offset),
    };
    match (content, field.encoding()) {
        (Content::B, Encoding::Binary) => Ok(FieldValue::Bytes(raw.to_vec())),
        (Content::B, _) => {
            let mut bytes = Zeroizing::new(Vec::with_capacity(units));
            for pair in raw.chunks_exact(2) {
                let (Some(high), Some(low)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                    return Err(invalid);
                };
                bytes.push((high << 4) | low);
            }
            Ok(FieldValue::Bytes(std::mem::take(&mut *bytes)))
        }
        (_, Encoding::Bcd) => {
            let mut nibbles = raw.iter().flat_map(|b| [b >> 4, b & 0xF]);
            if units % 2 == 1 && field.pad() == Pad::Left {
                let pad = nibbles.next();
                if !matches!(pad, Some(0x0 | 0xF)) {
                    return Err(Iso8583Error::InvalidPadding {
                        field: number,
                        offset,
                    });
                }
            }
            let mut text = Zeroizing::new(String::with_capacity(units));
            for nibble in nibbles.by_ref().take(units) {
                match nibble {
                    0..=9 => text.push(char::from(b'0' + nibble)),
                    0xD if content == Content::Z => text.push('='),
                    _ => return Err(invalid),
                }
            }
            if units % 2 == 1
                && field.pad() == Pad::Right
                && !matches!(nibbles.next(), Some(0x0 | 0xF))
            {
                return Err(Iso8583Error::InvalidPadding {
                    field: number,
                    offset,
                });
            }
            if !text_is_valid(content, text.as_bytes()) {
                return Err(invalid);
            }
            Ok(FieldValue::Text(std::mem::take(&mut *text)))
        }
        _ => {
            if !text_is_valid(content, raw) {
                return Err(invalid);
            }
            Ok(FieldValue::Text(
                raw.iter().map(|&c| char::from(c)).collect(),
            ))
        }
    }
}
