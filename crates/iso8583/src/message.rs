//! [`Mti`], [`FieldValue`] and [`Message`]: a message's content, independent of any spec.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Iso8583Error;

/// Fields whose content [`Message`]'s `Debug` never prints (`***` instead), whatever the
/// spec: PAN (2), expiry date (14), extended PAN (34), track 2 (35), track 3 (36), track 1
/// (45), PIN data (52) and ICC data (55). [`crate::Spec::redacted`] hides the fields a spec
/// marks sensitive on top of these.
pub const REDACTED_FIELDS: [u8; 8] = [2, 14, 34, 35, 36, 45, 52, 55];

/// A message type indicator: four digits (version, class, function, origin), e.g. `0200`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mti([u8; 4]);

impl Mti {
    /// Reads four ASCII digits; anything else is [`Iso8583Error::InvalidMti`].
    pub fn parse(text: &str) -> Result<Mti, Iso8583Error> {
        Mti::from_ascii(text.as_bytes()).ok_or(Iso8583Error::InvalidMti { offset: None })
    }

    pub(crate) fn from_ascii(bytes: &[u8]) -> Option<Mti> {
        let digits: [u8; 4] = bytes.try_into().ok()?;
        digits.iter().all(u8::is_ascii_digit).then_some(Mti(digits))
    }

    /// The four ASCII digits.
    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    /// The four digits as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored; the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    fn digit(&self, index: usize) -> u8 {
        self.0[index] - b'0'
    }

    /// First digit: the version of ISO 8583 (0 = 1987, 1 = 1993, 2 = 2003).
    pub fn version(&self) -> u8 {
        self.digit(0)
    }

    /// Second digit: the message class (1 authorization, 2 financial, 4 reversal, 8 network
    /// management, …).
    pub fn class(&self) -> u8 {
        self.digit(1)
    }

    /// Third digit: the message function (0 request, 1 request response, 2 advice, 3 advice
    /// response, 4 notification, 5 notification acknowledgement, 6 instruction, 7 instruction
    /// acknowledgement).
    pub fn function(&self) -> u8 {
        self.digit(2)
    }

    /// Fourth digit: the message origin (0 acquirer, 1 acquirer repeat, 2 issuer, …).
    pub fn origin(&self) -> u8 {
        self.digit(3)
    }

    /// Whether the function is one that a response or acknowledgement answers: request (0),
    /// advice (2), notification (4) or instruction (6).
    pub fn is_request(&self) -> bool {
        matches!(self.function(), 0 | 2 | 4 | 6)
    }

    /// Whether the function is a response or acknowledgement (1, 3, 5, 7).
    pub fn is_response(&self) -> bool {
        matches!(self.function(), 1 | 3 | 5 | 7)
    }

    /// The MTI answering this one: the function digit plus one (`0200` → `0210`, `0420` →
    /// `0430`, `0800` → `0810`), other digits unchanged; `None` unless [`Mti::is_request`].
    pub fn response(&self) -> Option<Mti> {
        if !self.is_request() {
            return None;
        }
        let mut digits = self.0;
        digits[2] += 1;
        Some(Mti(digits))
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

impl std::str::FromStr for Mti {
    type Err = Iso8583Error;

    fn from_str(text: &str) -> Result<Mti, Iso8583Error> {
        Mti::parse(text)
    }
}

/// A field's value: text for `n`, `an`, `ans` and `z` fields, bytes for `b` fields. Zeroized
/// when dropped (also when replaced by [`Message::set`] or dropped with its message).
///
/// Its `Debug` prints only the kind and length, never the content, because a value alone does
/// not know its field number; [`Message`]'s `Debug` prints non-sensitive content.
#[derive(Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// Characters (ASCII) of an `n`, `an`, `ans` or `z` field.
    Text(String),
    /// Bytes of a `b` field.
    Bytes(Vec<u8>),
}

impl FieldValue {
    /// The text, `None` for bytes.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            FieldValue::Text(text) => Some(text),
            FieldValue::Bytes(_) => None,
        }
    }

    /// The bytes, `None` for text.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::Text(_) => None,
            FieldValue::Bytes(bytes) => Some(bytes),
        }
    }

    fn fmt_content(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Text(text) => write!(f, "{text:?}"),
            FieldValue::Bytes(bytes) => write!(f, "0x{}", hex::encode_upper(bytes)),
        }
    }
}

impl Zeroize for FieldValue {
    fn zeroize(&mut self) {
        match self {
            FieldValue::Text(text) => text.zeroize(),
            FieldValue::Bytes(bytes) => bytes.zeroize(),
        }
    }
}

impl Drop for FieldValue {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for FieldValue {}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Text(text) => write!(f, "Text(<{} characters>)", text.len()),
            FieldValue::Bytes(bytes) => write!(f, "Bytes(<{} bytes>)", bytes.len()),
        }
    }
}

impl From<&str> for FieldValue {
    fn from(text: &str) -> FieldValue {
        FieldValue::Text(text.to_owned())
    }
}

impl From<String> for FieldValue {
    fn from(text: String) -> FieldValue {
        FieldValue::Text(text)
    }
}

impl From<Vec<u8>> for FieldValue {
    fn from(bytes: Vec<u8>) -> FieldValue {
        FieldValue::Bytes(bytes)
    }
}

impl From<&[u8]> for FieldValue {
    fn from(bytes: &[u8]) -> FieldValue {
        FieldValue::Bytes(bytes.to_vec())
    }
}

/// An ISO 8583 message: an MTI and data elements by number. It does not know any spec:
/// any number may be set, and [`crate::encode`] refuses numbers its spec does not define
/// (always 0, 1, 65 and above 128; bitmaps are computed, never set).
///
/// Its `Debug` prints `***` for the fields of [`REDACTED_FIELDS`]. Field values are zeroized
/// when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    mti: Mti,
    fields: BTreeMap<u8, FieldValue>,
}

impl Message {
    /// A message with no fields.
    pub fn new(mti: Mti) -> Message {
        Message {
            mti,
            fields: BTreeMap::new(),
        }
    }

    /// The message type indicator.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Replaces the message type indicator.
    pub fn set_mti(&mut self, mti: Mti) -> &mut Message {
        self.mti = mti;
        self
    }

    /// Sets field `number` (a previous value is zeroized).
    pub fn set(&mut self, number: u8, value: FieldValue) -> &mut Message {
        self.fields.insert(number, value);
        self
    }

    /// Sets a text field (`n`, `an`, `ans`, `z`).
    pub fn set_text(&mut self, number: u8, text: &str) -> &mut Message {
        self.set(number, FieldValue::Text(text.to_owned()))
    }

    /// Sets a binary field (`b`).
    pub fn set_bytes(&mut self, number: u8, bytes: &[u8]) -> &mut Message {
        self.set(number, FieldValue::Bytes(bytes.to_vec()))
    }

    /// A field's value.
    pub fn get(&self, number: u8) -> Option<&FieldValue> {
        self.fields.get(&number)
    }

    /// A text field's value; `None` if absent or binary.
    pub fn get_text(&self, number: u8) -> Option<&str> {
        self.get(number).and_then(FieldValue::as_text)
    }

    /// A binary field's value; `None` if absent or text.
    pub fn get_bytes(&self, number: u8) -> Option<&[u8]> {
        self.get(number).and_then(FieldValue::as_bytes)
    }

    /// Whether field `number` is set.
    pub fn contains(&self, number: u8) -> bool {
        self.fields.contains_key(&number)
    }

    /// Removes and returns a field.
    pub fn remove(&mut self, number: u8) -> Option<FieldValue> {
        self.fields.remove(&number)
    }

    /// The fields, in number order.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (u8, &FieldValue)> + '_ {
        self.fields.iter().map(|(number, value)| (*number, value))
    }

    /// Number of fields set.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(crate) fn debug_fmt(
        &self,
        f: &mut fmt::Formatter<'_>,
        also_hide: impl Fn(u8) -> bool,
    ) -> fmt::Result {
        struct Entry<'a>(&'a FieldValue, bool);
        impl fmt::Debug for Entry<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.1 {
                    f.write_str("***")
                } else {
                    self.0.fmt_content(f)
                }
            }
        }
        struct Fields<'a, F>(&'a Message, F);
        impl<F: Fn(u8) -> bool> fmt::Debug for Fields<'_, F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.fields().map(|(number, value)| {
                        let hide = REDACTED_FIELDS.contains(&number) || (self.1)(number);
                        (number, Entry(value, hide))
                    }))
                    .finish()
            }
        }
        f.debug_struct("Message")
            .field("mti", &self.mti)
            .field("fields", &Fields(self, also_hide))
            .finish()
    }
}

impl fmt::Debug for Message {
    /// `Message { mti: Mti(0200), fields: {2: ***, 3: "000000", 64: 0x0102…} }`: the fields
    /// of [`REDACTED_FIELDS`] print as `***`, other text quoted, bytes in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug_fmt(f, |_| false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mti() {
        let mti = Mti::parse("0200").expect("valid");
        assert_eq!(mti.to_string(), "0200");
        assert_eq!(
            (mti.version(), mti.class(), mti.function(), mti.origin()),
            (0, 2, 0, 0)
        );
        assert!(mti.is_request() && !mti.is_response());
        assert_eq!(mti.response(), Some(Mti::parse("0210").expect("valid")));
        for (request, response) in [
            ("0100", "0110"),
            ("0420", "0430"),
            ("0800", "0810"),
            ("1200", "1210"),
            ("0221", "0231"),
        ] {
            assert_eq!(
                Mti::parse(request)
                    .expect("valid")
                    .response()
                    .map(|m| m.to_string()),
                Some(response.to_owned())
            );
        }
        assert_eq!(Mti::parse("0210").expect("valid").response(), None);
        assert_eq!(Mti::parse("0280").expect("valid").response(), None);
        for bad in ["", "020", "02000", "02a0", "０２００", "0x00"] {
            assert_eq!(
                Mti::parse(bad),
                Err(Iso8583Error::InvalidMti { offset: None }),
                "{bad}"
            );
        }
        assert_eq!(format!("{mti:?}"), "Mti(0200)");
    }

    #[test]
    fn debug_hides_sensitive_fields() {
        let mut message = Message::new(Mti::parse("0200").expect("valid"));
        message
            .set_text(2, "4761739001010010")
            .set_text(3, "000000")
            .set_text(14, "2512")
            .set_text(34, "476173900101001000000")
            .set_text(35, "4761739001010010=25122011143804400000")
            .set_text(36, "011234567890=1234")
            .set_text(45, "B4761739001010010^DOE/JOHN^2512")
            .set_bytes(52, &[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0])
            .set_bytes(55, &[0x9F, 0x26, 0x01, 0x55])
            .set_bytes(64, &[0xAB, 0xCD]);
        let printed = format!("{message:?}");
        for secret in [
            "4761739001010010",
            "2512",
            "476173900101001000000",
            "011234567890",
            "DOE",
            "123456789ABCDEF0",
            "9F260155",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert_eq!(
            printed,
            "Message { mti: Mti(0200), fields: {2: ***, 3: \"000000\", 14: ***, 34: ***, 35: ***, 36: ***, 45: ***, 52: ***, 55: ***, 64: 0xABCD} }"
        );
        let value = message.get(2).expect("set");
        assert_eq!(format!("{value:?}"), "Text(<16 characters>)");
        assert_eq!(message.get_text(2), Some("4761739001010010"));
        assert_eq!(message.get_bytes(2), None);
        assert_eq!(message.get_bytes(64), Some(&[0xAB, 0xCD][..]));
        assert_eq!(
            message.fields().map(|(n, _)| n).collect::<Vec<_>>(),
            vec![2, 3, 14, 34, 35, 36, 45, 52, 55, 64]
        );
        assert!(message.remove(64).is_some());
        assert!(!message.contains(64));
    }

    #[test]
    fn zeroize_clears_values() {
        let mut value = FieldValue::Text("4761739001010010".into());
        value.zeroize();
        assert_eq!(value, FieldValue::Text(String::new()));
        let mut value = FieldValue::Bytes(vec![1, 2, 3]);
        value.zeroize();
        assert_eq!(value, FieldValue::Bytes(Vec::new()));
    }
}
