//! BER-TLV as EMV uses it (EMV 4.3 Book 3, Annex B "Rules for BER-TLV Data Objects"): the
//! encoding of ICC data such as ISO 8583 field 55, GENERATE AC responses and FCI templates.
//! Sans-I/O: bytes in, values out, and back. [`parse`] never panics on any input.
//!
//! # What is accepted
//!
//! * **Tags** of one to three bytes (Annex B1): when the low five bits of the first byte are all
//!   set (`xxx11111`), more bytes follow while bit 8 of the last one is set. EMV's own tags use
//!   one or two bytes; a third is accepted because payment schemes use them (`9F8101`, `DF8101`).
//!   A longer tag is [`TlvError::TagTooLong`]. Bit 6 of the first byte (`0x20`) marks a
//!   constructed object, whose value is parsed as a list of objects in turn, at most
//!   [`MAX_DEPTH`] levels deep.
//! * **Lengths** (Annex B2) in the short form (`00`–`7F`) and the definite long forms `81 xx`,
//!   `82 xx xx` and `83 xx xx xx`. Non-minimal long forms (`81 05`) are accepted, as BER allows;
//!   [`encode`] always writes the minimal form. The indefinite form `80` and length fields of
//!   more than three subsequent bytes are refused ([`TlvError::IndefiniteLength`],
//!   [`TlvError::LengthTooLong`]): EMV data objects never use them.
//! * **Padding**: Book 3 Annex B lets `00` bytes without meaning occur before, between or after
//!   data objects (erased or modified objects); EMV Specification Update 69 ("Padding of BER-TLV
//!   Encoded Constructed Data Objects", 2nd edition, November 2009) restates that padding is made
//!   of `00` bytes and may occur inside templates. [`parse`] therefore skips `00` bytes wherever
//!   a tag could start, at any level. `FF` is **not** skipped: ISO/IEC 7816-4 lets `FF` pad too,
//!   but EMV does not, and `FF` is a valid (if discouraged, SU 69 warns issuers against tags
//!   beginning `FF`) first tag byte, so it is read as the start of a tag. Skipped padding is
//!   not kept, so `encode(parse(x)) == x` holds only for padding-free, minimally encoded `x`.
//!
//! Every error carries the byte offset (from the start of the input) where it was found and
//! never any value bytes.
//!
//! # Example
//!
//! ```
//! use emv_tlv::{Tag, TlvList, find, parse};
//!
//! let field_55 = TlvList::new()
//!     .push(Tag(0x9F26), [0x6E, 0xCF, 0x93, 0x47, 0xC1, 0xA9, 0x24, 0x71])
//!     .push(Tag(0x9F27), [0x80])
//!     .encode();
//! let items = parse(&field_55)?;
//! assert_eq!(find(&items, Tag(0x9F27)), Some(&[0x80][..]));
//! # Ok::<(), emv_tlv::TlvError>(())
//! ```
//!
//! This crate does not know which tags are sensitive: [`Value`]'s `Debug` prints the value in
//! hex. Callers holding track-2 equivalent data (`57`) or a PAN (`5A`) must not log it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;

/// How deeply constructed objects may nest: a top-level constructed object is at depth 1, a
/// constructed object inside it at depth 2, and so on. EMV templates nest two or three deep.
pub const MAX_DEPTH: usize = 8;

/// Longest tag, in bytes, that [`parse`] accepts.
pub const MAX_TAG_LEN: usize = 3;

/// A BER-TLV tag: its bytes, big-endian, in a `u32` (`9F26` is `Tag(0x9F26)`, `5A` is
/// `Tag(0x5A)`, `9F8101` is `Tag(0x9F8101)`).
///
/// The value is not checked on construction; [`Tag::is_well_formed`] tells whether its bytes
/// are one complete tag as [`parse`] reads them. [`Tag::parse_hex`] and [`Tag::from_bytes`]
/// only return well-formed tags.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub u32);

impl Tag {
    /// The tag's bytes as they are encoded: the big-endian bytes of the value without leading
    /// zero bytes (at least one byte, so `Tag(0)` is `[00]`).
    pub fn to_bytes(self) -> Vec<u8> {
        let bytes = self.0.to_be_bytes();
        let skip = bytes.iter().take(3).take_while(|&&b| b == 0).count();
        bytes[skip..].to_vec()
    }

    /// Number of bytes of the encoded tag (1 to 4).
    pub fn len(self) -> usize {
        self.to_bytes().len()
    }

    /// Always false: a tag has at least one byte. Present because of [`Tag::len`].
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether the object is constructed (bit 6, `0x20`, of the first tag byte), i.e. its value
    /// is a list of data objects (a template).
    pub fn is_constructed(self) -> bool {
        self.to_bytes()
            .first()
            .is_some_and(|first| first & 0x20 != 0)
    }

    /// Whether the tag's bytes are exactly one tag as [`parse`] reads it: not `00`, one to
    /// three bytes, more bytes exactly when the first has its low five bits set, and further
    /// bytes exactly while bit 8 of the previous one is set.
    pub fn is_well_formed(self) -> bool {
        let bytes = self.to_bytes();
        match read_tag(&bytes, 0, bytes.len()) {
            Ok((tag, len)) => tag == self && len == bytes.len() && bytes[0] != 0,
            Err(_) => false,
        }
    }

    /// Reads a tag from exactly the given bytes (`[0x9F, 0x26]`); anything but one complete,
    /// well-formed tag is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Tag, TlvError> {
        if bytes.first() == Some(&0) {
            return Err(TlvError::InvalidTag { offset: 0 });
        }
        let (tag, len) = read_tag(bytes, 0, bytes.len())?;
        if len != bytes.len() {
            return Err(TlvError::InvalidTag { offset: len });
        }
        Ok(tag)
    }

    /// Reads a tag from hex (`"9F26"`, either case); anything but one complete, well-formed tag
    /// is [`TlvError::InvalidTag`] (or the error [`Tag::from_bytes`] gives for its bytes).
    pub fn parse_hex(hex_tag: &str) -> Result<Tag, TlvError> {
        let bytes = hex::decode(hex_tag).map_err(|_| TlvError::InvalidTag { offset: 0 })?;
        if bytes.is_empty() {
            return Err(TlvError::InvalidTag { offset: 0 });
        }
        Tag::from_bytes(&bytes)
    }
}

impl fmt::Display for Tag {
    /// Uppercase hex of the tag's bytes: `9F26`, `5A`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.to_bytes() {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

/// The value of a data object.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// The bytes of a primitive object.
    Primitive(Vec<u8>),
    /// The objects inside a constructed object (a template), padding removed.
    Constructed(Vec<Tlv>),
}

impl fmt::Debug for Value {
    /// A primitive value prints as uppercase hex (`Primitive(9F02)`); this crate does not know
    /// which tags are sensitive.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Primitive(bytes) => write!(f, "Primitive({})", hex::encode_upper(bytes)),
            Value::Constructed(items) => f.debug_tuple("Constructed").field(items).finish(),
        }
    }
}

/// One BER-TLV data object.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tlv {
    /// The tag.
    pub tag: Tag,
    /// The value: bytes for a primitive tag, objects for a constructed one.
    pub value: Value,
}

impl Tlv {
    /// A primitive object.
    pub fn primitive(tag: Tag, value: impl Into<Vec<u8>>) -> Tlv {
        Tlv {
            tag,
            value: Value::Primitive(value.into()),
        }
    }

    /// A constructed object holding `items`.
    pub fn constructed(tag: Tag, items: Vec<Tlv>) -> Tlv {
        Tlv {
            tag,
            value: Value::Constructed(items),
        }
    }

    /// The bytes of a primitive object, `None` for a constructed one.
    pub fn primitive_value(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Primitive(bytes) => Some(bytes),
            Value::Constructed(_) => None,
        }
    }
}

/// Why BER-TLV input was refused. Offsets count bytes from the start of the input given to
/// [`parse`]; no error contains value bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The input ends inside a multi-byte tag starting at `offset`.
    #[error("tlv: tag at offset {offset} is truncated")]
    TruncatedTag {
        /// Offset of the tag's first byte.
        offset: usize,
    },
    /// The tag starting at `offset` has more than [`MAX_TAG_LEN`] bytes.
    #[error("tlv: tag at offset {offset} is longer than {MAX_TAG_LEN} bytes")]
    TagTooLong {
        /// Offset of the tag's first byte.
        offset: usize,
    },
    /// Not one well-formed tag ([`Tag::parse_hex`], [`Tag::from_bytes`]).
    #[error("tlv: not a well-formed tag (at byte {offset})")]
    InvalidTag {
        /// Offset, within the tag's bytes, of the first byte that does not fit.
        offset: usize,
    },
    /// The input ends where a length byte is expected.
    #[error("tlv: length at offset {offset} is truncated")]
    TruncatedLength {
        /// Offset of the (first) missing length byte.
        offset: usize,
    },
    /// The indefinite length form `80`, which EMV does not use.
    #[error("tlv: indefinite length at offset {offset}")]
    IndefiniteLength {
        /// Offset of the `80` byte.
        offset: usize,
    },
    /// A long-form length with more than three subsequent bytes (`84` and above).
    #[error("tlv: length at offset {offset} has {bytes} subsequent bytes (at most 3)")]
    LengthTooLong {
        /// Offset of the first length byte.
        offset: usize,
        /// Number of subsequent length bytes it announces.
        bytes: usize,
    },
    /// The length announces more value bytes than the input (or the enclosing template) holds.
    #[error("tlv: value at offset {offset} declares {declared} bytes, {available} available")]
    ValueOverflow {
        /// Offset of the value's first byte.
        offset: usize,
        /// Length the length field declares.
        declared: usize,
        /// Bytes left in the input or enclosing template.
        available: usize,
    },
    /// Constructed objects nest deeper than [`MAX_DEPTH`].
    #[error("tlv: constructed object at offset {offset} nests deeper than {MAX_DEPTH} levels")]
    TooDeep {
        /// Offset of the tag that is one level too deep.
        offset: usize,
    },
}

/// Reads one tag from `data[offset..end]`: the tag and its length in bytes.
fn read_tag(data: &[u8], offset: usize, end: usize) -> Result<(Tag, usize), TlvError> {
    let first = *data
        .get(offset)
        .filter(|_| offset < end)
        .ok_or(TlvError::TruncatedTag { offset })?;
    let mut value = u32::from(first);
    let mut len = 1;
    if first & 0x1F == 0x1F {
        loop {
            if len == MAX_TAG_LEN {
                return Err(TlvError::TagTooLong { offset });
            }
            let position = offset + len;
            let byte = *data
                .get(position)
                .filter(|_| position < end)
                .ok_or(TlvError::TruncatedTag { offset })?;
            value = (value << 8) | u32::from(byte);
            len += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    Ok((Tag(value), len))
}

/// Reads one length field from `data[offset..end]`: the length and the size of the field.
fn read_length(data: &[u8], offset: usize, end: usize) -> Result<(usize, usize), TlvError> {
    let first = *data
        .get(offset)
        .filter(|_| offset < end)
        .ok_or(TlvError::TruncatedLength { offset })?;
    if first < 0x80 {
        return Ok((usize::from(first), 1));
    }
    if first == 0x80 {
        return Err(TlvError::IndefiniteLength { offset });
    }
    let count = usize::from(first & 0x7F);
    if count > 3 {
        return Err(TlvError::LengthTooLong {
            offset,
            bytes: count,
        });
    }
    let mut length = 0usize;
    for index in 1..=count {
        let position = offset + index;
        let byte = *data
            .get(position)
            .filter(|_| position < end)
            .ok_or(TlvError::TruncatedLength { offset: position })?;
        length = (length << 8) | usize::from(byte);
    }
    Ok((length, 1 + count))
}

/// Parses `data[start..end]` as a list of objects at nesting `depth` (0 for the top level).
fn parse_range(data: &[u8], start: usize, end: usize, depth: usize) -> Result<Vec<Tlv>, TlvError> {
    let mut items = Vec::new();
    let mut position = start;
    while position < end {
        if data.get(position) == Some(&0x00) {
            position += 1;
            continue;
        }
        let tag_offset = position;
        let (tag, tag_len) = read_tag(data, position, end)?;
        position += tag_len;
        let (length, length_len) = read_length(data, position, end)?;
        position += length_len;
        let available = end - position;
        if length > available {
            return Err(TlvError::ValueOverflow {
                offset: position,
                declared: length,
                available,
            });
        }
        let value_end = position + length;
        let value = if tag.is_constructed() {
            if depth + 1 > MAX_DEPTH {
                return Err(TlvError::TooDeep { offset: tag_offset });
            }
            Value::Constructed(parse_range(data, position, value_end, depth + 1)?)
        } else {
            Value::Primitive(data[position..value_end].to_vec())
        };
        items.push(Tlv { tag, value });
        position = value_end;
    }
    Ok(items)
}

/// Parses BER-TLV data: a list of data objects, constructed ones parsed recursively, `00`
/// padding skipped (see the crate documentation for exactly what is accepted). Never panics.
pub fn parse(bytes: &[u8]) -> Result<Vec<Tlv>, TlvError> {
    parse_range(bytes, 0, bytes.len(), 0)
}

fn push_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
        return;
    }
    let bytes = (length as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let significant = &bytes[skip..];
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

fn encode_into(out: &mut Vec<u8>, items: &[Tlv]) {
    for item in items {
        out.extend_from_slice(&item.tag.to_bytes());
        match &item.value {
            Value::Primitive(bytes) => {
                push_length(out, bytes.len());
                out.extend_from_slice(bytes);
            }
            Value::Constructed(children) => {
                let inner = encode(children);
                push_length(out, inner.len());
                out.extend_from_slice(&inner);
            }
        }
    }
}

/// Encodes data objects with minimal lengths (short form below 128 bytes, then `81`, `82`,
/// `83`) and no padding. Tags are written as their bytes ([`Tag::to_bytes`]) whether or not
/// they are well-formed, and values as they are: a [`Value::Primitive`] under a constructed tag
/// is written as its bytes. A value longer than 16,777,215 bytes gets a four-byte length
/// (`84`), which [`parse`] refuses.
pub fn encode(items: &[Tlv]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, items);
    out
}

/// The value of the first primitive object with `tag`, searching depth-first in order
/// (an object before its children, children before the next sibling).
pub fn find(items: &[Tlv], tag: Tag) -> Option<&[u8]> {
    items.iter().find_map(|item| match &item.value {
        Value::Primitive(bytes) if item.tag == tag => Some(bytes.as_slice()),
        Value::Primitive(_) => None,
        Value::Constructed(children) => find(children, tag),
    })
}

/// A small builder for a list of data objects:
/// `TlvList::new().push(Tag(0x9F27), [0x80]).push(Tag(0x9F36), [0x00, 0x05])`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlvList {
    items: Vec<Tlv>,
}

impl TlvList {
    /// An empty list.
    pub fn new() -> TlvList {
        TlvList::default()
    }

    /// Appends a primitive object. Use [`TlvList::push_constructed`] for a constructed tag.
    pub fn push(mut self, tag: Tag, value: impl AsRef<[u8]>) -> TlvList {
        self.items.push(Tlv::primitive(tag, value.as_ref()));
        self
    }

    /// Appends a constructed object holding the objects of `children`.
    pub fn push_constructed(mut self, tag: Tag, children: TlvList) -> TlvList {
        self.items.push(Tlv::constructed(tag, children.items));
        self
    }

    /// Appends an object.
    pub fn push_tlv(mut self, item: Tlv) -> TlvList {
        self.items.push(item);
        self
    }

    /// The objects so far.
    pub fn as_slice(&self) -> &[Tlv] {
        &self.items
    }

    /// The objects, as [`parse`] returns them.
    pub fn build(self) -> Vec<Tlv> {
        self.items
    }

    /// The objects encoded with [`encode`].
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.items)
    }
}

impl From<Vec<Tlv>> for TlvList {
    fn from(items: Vec<Tlv>) -> TlvList {
        TlvList { items }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(Tag(0x9F26).to_string(), "9F26");
        assert_eq!(Tag(0x5A).to_string(), "5A");
        assert_eq!(format!("{:?}", Tag(0x9F8101)), "Tag(9F8101)");
        assert_eq!(Tag::parse_hex("9f26"), Ok(Tag(0x9F26)));
        assert_eq!(Tag::parse_hex("DF8101"), Ok(Tag(0xDF8101)));
        assert!(Tag::parse_hex("9F").is_err());
        assert!(Tag::parse_hex("9F26 ").is_err());
        assert!(Tag::parse_hex("9F2601").is_err());
        assert!(Tag::parse_hex("9F818101").is_err());
        assert!(Tag::parse_hex("").is_err());
        assert!(Tag::parse_hex("00").is_err());
        assert!(Tag(0x70).is_constructed());
        assert!(Tag(0xBF0C).is_constructed());
        assert!(!Tag(0x9F26).is_constructed());
        assert!(Tag(0x9F26).is_well_formed());
        assert!(!Tag(0x9F).is_well_formed());
        assert!(!Tag(0x5A01).is_well_formed());
        assert!(!Tag(0).is_well_formed());
        assert_eq!(Tag(0).to_bytes(), vec![0]);
        assert_eq!(Tag(0x9F8101).len(), 3);
    }

    #[test]
    fn lengths() {
        for (length, expected) in [
            (0usize, vec![0x00]),
            (0x7F, vec![0x7F]),
            (0x80, vec![0x81, 0x80]),
            (0xFF, vec![0x81, 0xFF]),
            (0x100, vec![0x82, 0x01, 0x00]),
            (0xFFFF, vec![0x82, 0xFF, 0xFF]),
            (0x1_0000, vec![0x83, 0x01, 0x00, 0x00]),
        ] {
            let mut out = Vec::new();
            push_length(&mut out, length);
            assert_eq!(out, expected, "{length}");
            assert_eq!(read_length(&out, 0, out.len()), Ok((length, out.len())));
        }
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(parse(&[0x9F]), Err(TlvError::TruncatedTag { offset: 0 }));
        assert_eq!(
            parse(&[0x5A, 0x00, 0x9F, 0x81, 0x81, 0x01, 0x00]),
            Err(TlvError::TagTooLong { offset: 2 })
        );
        assert_eq!(parse(&[0x5A]), Err(TlvError::TruncatedLength { offset: 1 }));
        assert_eq!(
            parse(&[0x5A, 0x82, 0x01]),
            Err(TlvError::TruncatedLength { offset: 3 })
        );
        assert_eq!(
            parse(&[0x5A, 0x80]),
            Err(TlvError::IndefiniteLength { offset: 1 })
        );
        assert_eq!(
            parse(&[0x5A, 0x84, 0, 0, 0, 1, 0]),
            Err(TlvError::LengthTooLong {
                offset: 1,
                bytes: 4
            })
        );
        assert_eq!(
            parse(&[0x5A, 0x03, 0x01]),
            Err(TlvError::ValueOverflow {
                offset: 2,
                declared: 3,
                available: 1
            })
        );
        // A child may not run past its template even if the input goes on.
        assert_eq!(
            parse(&[0x70, 0x03, 0x5A, 0x02, 0x01, 0x02]),
            Err(TlvError::ValueOverflow {
                offset: 4,
                declared: 2,
                available: 1
            })
        );
    }

    #[test]
    fn depth_limit() {
        let mut nested = vec![Tlv::primitive(Tag(0x5A), [1])];
        for _ in 0..MAX_DEPTH {
            nested = vec![Tlv::constructed(Tag(0x70), nested)];
        }
        let ok = encode(&nested);
        assert_eq!(parse(&ok), Ok(nested.clone()));
        let too_deep = encode(&[Tlv::constructed(Tag(0x70), nested)]);
        assert_eq!(
            parse(&too_deep),
            Err(TlvError::TooDeep {
                offset: 2 * MAX_DEPTH
            })
        );
    }

    #[test]
    fn padding_is_skipped_ff_is_not() {
        let padded = [
            0x00, 0x5A, 0x01, 0x12, 0x00, 0x00, 0x70, 0x04, 0x00, 0x5A, 0x00, 0x00,
        ];
        assert_eq!(
            parse(&padded),
            Ok(vec![
                Tlv::primitive(Tag(0x5A), [0x12]),
                Tlv::constructed(Tag(0x70), vec![Tlv::primitive(Tag(0x5A), [])]),
            ])
        );
        // FF starts a (constructed, private-class) tag: FF 01 is the tag, 00 its length.
        assert_eq!(
            parse(&[0xFF, 0x01, 0x00]),
            Ok(vec![Tlv::constructed(Tag(0xFF01), vec![])])
        );
        assert_eq!(parse(&[0xFF]), Err(TlvError::TruncatedTag { offset: 0 }));
    }

    #[test]
    fn find_depth_first() {
        let items = TlvList::new()
            .push_constructed(
                Tag(0x70),
                TlvList::new()
                    .push_constructed(Tag(0xA5), TlvList::new().push(Tag(0x50), b"inner"))
                    .push(Tag(0x50), b"second"),
            )
            .push(Tag(0x50), b"outer")
            .build();
        assert_eq!(find(&items, Tag(0x50)), Some(&b"inner"[..]));
        assert_eq!(find(&items, Tag(0x70)), None);
        assert_eq!(find(&items, Tag(0x9F26)), None);
    }

    #[test]
    fn debug_prints_hex() {
        let item = Tlv::primitive(Tag(0x9F27), [0x80]);
        assert_eq!(
            format!("{item:?}"),
            "Tlv { tag: Tag(9F27), value: Primitive(80) }"
        );
    }
}
