//! The field layout of a link, given as data: [`Spec::from_toml`] reads and validates it, and
//! [`Spec::builtin`] returns the ISO 8583:1987 layouts shipped in `specs/`.
//!
//! # Format
//!
//! ```toml
//! name = "my-host"
//! mti_encoding = "ascii"        # "ascii" (4 characters) | "bcd" (2 bytes)
//! bitmap_encoding = "binary"    # "binary" (8 bytes a bitmap) | "hex" (16 ASCII hex characters)
//!
//! [fields]
//! 2 = { name = "PAN", length = { llvar = 19 }, content = "n", encoding = "ascii", length_encoding = "ascii", sensitive = true }
//! 3 = { name = "Processing code", length = { fixed = 6 }, content = "n", encoding = "ascii" }
//! 55 = { name = "ICC data", length = { lllvar = 255 }, content = "b", encoding = "binary", length_encoding = "ascii" }
//! ```
//!
//! Every field is keyed by its number (2 to 128; 1 and 65 are the secondary and tertiary
//! bitmap indicators and cannot be defined) and has:
//!
//! * `name`: free text for people.
//! * `length`: `{ fixed = N }`, `{ llvar = MAX }` (MAX ≤ 99), `{ lllvar = MAX }` (≤ 999) or
//!   `{ llllvar = MAX }` (≤ 9999). Lengths count digits for `n` and `z`, characters for `an`
//!   and `ans`, bytes for `b`, whatever the encoding.
//! * `content`: `n` (digits), `an` (letters, digits, space), `ans` (printable ASCII, space to
//!   `~`), `b` (binary), `z` (track 2: digits and at most one separator, `=` or `D`).
//! * `encoding`: `ascii` (one byte a character; for `b`, two uppercase hex characters a byte),
//!   `bcd` (two digits a byte, `n` and `z` only; `z`'s separator is the nibble `D`) or `binary`
//!   (`b` only, the bytes as they are).
//! * `length_encoding`, variable fields only, required there: `ascii` (2, 3 or 4 digits),
//!   `bcd` (1 byte for LL, 2 bytes for LLL and LLLL) or `binary` (big-endian, 1 byte for LL,
//!   2 bytes for LLL and LLLL).
//! * `pad`, BCD fields only: where the pad nibble of an odd number of digits goes, `left` or
//!   `right`; the default is `left` for `n` and `right` for `z`. Encoding writes `0` for `n` and
//!   `F` for `z`; decoding accepts `0` or `F`.
//! * `sensitive` (default `false`): printed as `***` by [`Spec::redacted`].
//!
//! Unknown keys are errors, so a misspelt key does not silently fall back to a default.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::message::Message;

/// How the message type indicator is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtiEncoding {
    /// Four ASCII digits.
    Ascii,
    /// Four digits in two BCD bytes.
    Bcd,
}

/// How the primary and secondary bitmaps are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitmapEncoding {
    /// Eight bytes a bitmap.
    Binary,
    /// Sixteen ASCII hex characters a bitmap (uppercase when encoding, either case decoded).
    Hex,
}

/// A field's length: fixed, or variable with a length prefix of 2, 3 or 4 digits and a maximum.
/// Units: digits for `n`/`z`, characters for `an`/`ans`, bytes for `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Length {
    /// Exactly this many units.
    Fixed(u16),
    /// Up to this many units (at most 99), with a two-digit length prefix.
    Llvar(u16),
    /// Up to this many units (at most 999), with a three-digit length prefix.
    Lllvar(u16),
    /// Up to this many units (at most 9999), with a four-digit length prefix.
    Llllvar(u16),
}

impl Length {
    /// The fixed length or the maximum.
    pub fn max(self) -> usize {
        match self {
            Length::Fixed(n) | Length::Llvar(n) | Length::Lllvar(n) | Length::Llllvar(n) => {
                usize::from(n)
            }
        }
    }

    /// Number of digits of the length prefix: 0 for a fixed field, else 2, 3 or 4.
    pub fn prefix_digits(self) -> usize {
        match self {
            Length::Fixed(_) => 0,
            Length::Llvar(_) => 2,
            Length::Lllvar(_) => 3,
            Length::Llllvar(_) => 4,
        }
    }

    fn limit(self) -> usize {
        match self {
            Length::Fixed(_) => 9999,
            Length::Llvar(_) => 99,
            Length::Lllvar(_) => 999,
            Length::Llllvar(_) => 9999,
        }
    }
}

/// What a field may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Content {
    /// Digits `0`–`9`.
    #[serde(rename = "n")]
    N,
    /// Letters, digits and space.
    #[serde(rename = "an")]
    An,
    /// Printable ASCII, space (`0x20`) to `~` (`0x7E`).
    #[serde(rename = "ans")]
    Ans,
    /// Bytes.
    #[serde(rename = "b")]
    B,
    /// Track 2 code set: digits and at most one separator (`=` or `D`).
    #[serde(rename = "z")]
    Z,
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Content::N => "n",
            Content::An => "an",
            Content::Ans => "ans",
            Content::B => "b",
            Content::Z => "z",
        })
    }
}

/// How a field's data is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One ASCII byte a character; for `b`, two uppercase hex characters a byte.
    Ascii,
    /// Two digits a byte (`n`, `z`).
    Bcd,
    /// The bytes as they are (`b`).
    Binary,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Ascii => "ascii",
            Encoding::Bcd => "bcd",
            Encoding::Binary => "binary",
        })
    }
}

/// How a variable field's length prefix is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthEncoding {
    /// 2, 3 or 4 ASCII digits.
    Ascii,
    /// BCD: one byte for LL, two bytes (a leading zero digit for LLL) for LLL and LLLL.
    Bcd,
    /// Big-endian binary: one byte for LL, two bytes for LLL and LLLL.
    Binary,
}

/// Where the pad nibble of an odd number of BCD digits goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pad {
    /// Before the first digit.
    Left,
    /// After the last digit.
    Right,
}

/// One field's definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    name: String,
    length: Length,
    content: Content,
    encoding: Encoding,
    length_encoding: Option<LengthEncoding>,
    pad: Pad,
    sensitive: bool,
}

impl FieldSpec {
    /// The field's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fixed length or maximum.
    pub fn length(&self) -> Length {
        self.length
    }

    /// What the field may contain.
    pub fn content(&self) -> Content {
        self.content
    }

    /// How the data is encoded.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// How the length prefix is encoded; `None` exactly for fixed fields.
    pub fn length_encoding(&self) -> Option<LengthEncoding> {
        self.length_encoding
    }

    /// Where the pad nibble of an odd number of BCD digits goes (meaningful for BCD only).
    pub fn pad(&self) -> Pad {
        self.pad
    }

    /// Whether [`Spec::redacted`] hides the field.
    pub fn sensitive(&self) -> bool {
        self.sensitive
    }
}

/// A validated message layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    name: String,
    mti_encoding: MtiEncoding,
    bitmap_encoding: BitmapEncoding,
    fields: BTreeMap<u8, FieldSpec>,
}

/// Why a spec was refused. Errors name the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not TOML, or not of the spec's shape (a missing or unknown key, a wrong value).
    #[error("spec: {message}")]
    Toml {
        /// The TOML parser's description.
        message: String,
    },
    /// The spec has an empty name.
    #[error("spec: the name is empty")]
    EmptyName,
    /// A field key that is not a number from 2 to 128.
    #[error("spec: field key {key:?} is not a field number from 2 to 128")]
    InvalidFieldNumber {
        /// The key as written.
        key: String,
    },
    /// Field 1 (secondary bitmap) or 65 (tertiary bitmap, not supported) defined.
    #[error("spec: field {field} is reserved for a bitmap and cannot be defined")]
    ReservedField {
        /// The field number.
        field: u8,
    },
    /// A fixed length or a maximum of zero.
    #[error("spec: field {field} has a length of zero")]
    ZeroLength {
        /// The field number.
        field: u8,
    },
    /// The maximum does not fit the length prefix (99 for LL, 999 for LLL, 9999 for LLLL).
    #[error("spec: field {field}: maximum {max} does not fit the length prefix (at most {limit})")]
    MaxTooLarge {
        /// The field number.
        field: u8,
        /// The maximum given.
        max: usize,
        /// What the prefix can express.
        limit: usize,
    },
    /// The encoding does not suit the content (BCD is for `n`/`z`, binary for `b`).
    #[error("spec: field {field}: content {content} cannot be encoded as {encoding}")]
    EncodingNotAllowed {
        /// The field number.
        field: u8,
        /// The content type.
        content: Content,
        /// The encoding given.
        encoding: Encoding,
    },
    /// A variable field without `length_encoding`.
    #[error("spec: field {field} is variable but has no length_encoding")]
    MissingLengthEncoding {
        /// The field number.
        field: u8,
    },
    /// A fixed field with `length_encoding`.
    #[error("spec: field {field} is fixed and cannot have a length_encoding")]
    UnexpectedLengthEncoding {
        /// The field number.
        field: u8,
    },
    /// `pad` on a field that is not BCD.
    #[error("spec: field {field}: pad applies to BCD fields only")]
    PadNotApplicable {
        /// The field number.
        field: u8,
    },
    /// [`Spec::builtin`] with a name not in [`Spec::builtin_names`].
    #[error("spec: no built-in spec named {name:?}")]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    mti_encoding: MtiEncoding,
    bitmap_encoding: BitmapEncoding,
    #[serde(default)]
    fields: BTreeMap<String, RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    length: Length,
    content: Content,
    encoding: Encoding,
    length_encoding: Option<LengthEncoding>,
    pad: Option<Pad>,
    #[serde(default)]
    sensitive: bool,
}

const BUILTINS: [(&str, &str); 2] = [
    ("ascii-1987", include_str!("../specs/ascii-1987.toml")),
    ("bcd-1987", include_str!("../specs/bcd-1987.toml")),
];

impl Spec {
    /// Reads and validates a spec (format in the [module documentation](self)).
    pub fn from_toml(text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|error| SpecError::Toml {
            message: error.message().to_owned(),
        })?;
        if raw.name.trim().is_empty() {
            return Err(SpecError::EmptyName);
        }
        let mut fields = BTreeMap::new();
        for (key, field) in raw.fields {
            let number = key
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=128).contains(n))
                .ok_or_else(|| SpecError::InvalidFieldNumber { key: key.clone() })?;
            fields.insert(number, validate_field(number, field)?);
        }
        Ok(Spec {
            name: raw.name,
            mti_encoding: raw.mti_encoding,
            bitmap_encoding: raw.bitmap_encoding,
            fields,
        })
    }

    /// A spec shipped with the crate: `ascii-1987` (ISO 8583:1987, everything ASCII, binary
    /// bitmap) or `bcd-1987` (the same fields with BCD numerics, BCD length prefixes, BCD MTI,
    /// binary bitmap and binary `b` fields). See `specs/` in the crate.
    pub fn builtin(name: &str) -> Result<Spec, SpecError> {
        let (_, text) = BUILTINS
            .iter()
            .find(|(builtin, _)| *builtin == name)
            .ok_or_else(|| SpecError::UnknownBuiltin {
                name: name.to_owned(),
            })?;
        Spec::from_toml(text)
    }

    /// Names accepted by [`Spec::builtin`].
    pub fn builtin_names() -> &'static [&'static str] {
        &["ascii-1987", "bcd-1987"]
    }

    /// The spec's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the MTI is encoded.
    pub fn mti_encoding(&self) -> MtiEncoding {
        self.mti_encoding
    }

    /// How the bitmaps are encoded.
    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.bitmap_encoding
    }

    /// A field's definition, `None` if the spec does not define it.
    pub fn field(&self, number: u8) -> Option<&FieldSpec> {
        self.fields.get(&number)
    }

    /// Every defined field, in number order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &FieldSpec)> + '_ {
        self.fields.iter().map(|(number, field)| (*number, field))
    }

    /// A view of `message` whose `Debug` prints `***` for the fields this spec marks
    /// sensitive, in addition to the fixed list [`Message`]'s own `Debug` hides.
    pub fn redacted<'a>(&'a self, message: &'a Message) -> Redacted<'a> {
        Redacted {
            spec: self,
            message,
        }
    }
}

fn validate_field(number: u8, raw: RawField) -> Result<FieldSpec, SpecError> {
    if number == 1 || number == 65 {
        return Err(SpecError::ReservedField { field: number });
    }
    let length = raw.length;
    if length.max() == 0 {
        return Err(SpecError::ZeroLength { field: number });
    }
    if length.max() > length.limit() {
        return Err(SpecError::MaxTooLarge {
            field: number,
            max: length.max(),
            limit: length.limit(),
        });
    }
    let allowed = match raw.content {
        Content::N | Content::Z => matches!(raw.encoding, Encoding::Ascii | Encoding::Bcd),
        Content::An | Content::Ans => raw.encoding == Encoding::Ascii,
        Content::B => matches!(raw.encoding, Encoding::Ascii | Encoding::Binary),
    };
    if !allowed {
        return Err(SpecError::EncodingNotAllowed {
            field: number,
            content: raw.content,
            encoding: raw.encoding,
        });
    }
    match (length, raw.length_encoding) {
        (Length::Fixed(_), Some(_)) => {
            return Err(SpecError::UnexpectedLengthEncoding { field: number });
        }
        (Length::Llvar(_) | Length::Lllvar(_) | Length::Llllvar(_), None) => {
            return Err(SpecError::MissingLengthEncoding { field: number });
        }
        _ => {}
    }
    if raw.pad.is_some() && raw.encoding != Encoding::Bcd {
        return Err(SpecError::PadNotApplicable { field: number });
    }
    let pad = raw.pad.unwrap_or(match raw.content {
        Content::Z => Pad::Right,
        _ => Pad::Left,
    });
    Ok(FieldSpec {
        name: raw.name,
        length,
        content: raw.content,
        encoding: raw.encoding,
        length_encoding: raw.length_encoding,
        pad,
        sensitive: raw.sensitive,
    })
}

/// A message printed through a spec ([`Spec::redacted`]): fields the spec marks sensitive and
/// the fixed list of [`crate::REDACTED_FIELDS`] print as `***`.
#[derive(Clone, Copy)]
pub struct Redacted<'a> {
    spec: &'a Spec,
    message: &'a Message,
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message.debug_fmt(f, |number| {
            self.spec.field(number).is_some_and(FieldSpec::sensitive)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(field: &str) -> Result<Spec, SpecError> {
        Spec::from_toml(&format!(
            "name = \"t\"\nmti_encoding = \"ascii\"\nbitmap_encoding = \"binary\"\n[fields]\n{field}\n"
        ))
    }

    #[test]
    fn builtins_load() {
        for name in Spec::builtin_names() {
            let spec = Spec::builtin(name).expect("builtin spec is valid");
            assert_eq!(spec.name(), *name);
            // Every field 2..=128 but 65.
            let numbers: Vec<u8> = spec.fields().map(|(n, _)| n).collect();
            let expected: Vec<u8> = (2..=128).filter(|n| *n != 65).collect();
            assert_eq!(numbers, expected, "{name}");
            for sensitive in [2, 14, 34, 35, 36, 45, 52, 55] {
                assert!(
                    spec.field(sensitive).is_some_and(FieldSpec::sensitive),
                    "{name} field {sensitive}"
                );
            }
        }
        assert_eq!(
            Spec::builtin("ebcdic"),
            Err(SpecError::UnknownBuiltin {
                name: "ebcdic".into()
            })
        );
    }

    #[test]
    fn validation_names_the_field() {
        let ok = r#"2 = { name = "PAN", length = { llvar = 19 }, content = "n", encoding = "bcd", length_encoding = "bcd" }"#;
        let field = spec_with(ok).expect("valid");
        let pan = field.field(2).expect("defined");
        assert_eq!(pan.pad(), Pad::Left);
        assert!(!pan.sensitive());

        let cases = [
            (
                r#"1 = { name = "x", length = { fixed = 8 }, content = "b", encoding = "binary" }"#,
                SpecError::ReservedField { field: 1 },
            ),
            (
                r#"65 = { name = "x", length = { fixed = 8 }, content = "b", encoding = "binary" }"#,
                SpecError::ReservedField { field: 65 },
            ),
            (
                r#"0 = { name = "x", length = { fixed = 8 }, content = "b", encoding = "binary" }"#,
                SpecError::InvalidFieldNumber { key: "0".into() },
            ),
            (
                r#"129 = { name = "x", length = { fixed = 8 }, content = "b", encoding = "binary" }"#,
                SpecError::InvalidFieldNumber { key: "129".into() },
            ),
            (
                r#"3 = { name = "x", length = { fixed = 0 }, content = "n", encoding = "ascii" }"#,
                SpecError::ZeroLength { field: 3 },
            ),
            (
                r#"2 = { name = "x", length = { llvar = 100 }, content = "n", encoding = "ascii", length_encoding = "ascii" }"#,
                SpecError::MaxTooLarge {
                    field: 2,
                    max: 100,
                    limit: 99,
                },
            ),
            (
                r#"43 = { name = "x", length = { fixed = 40 }, content = "ans", encoding = "bcd" }"#,
                SpecError::EncodingNotAllowed {
                    field: 43,
                    content: Content::Ans,
                    encoding: Encoding::Bcd,
                },
            ),
            (
                r#"3 = { name = "x", length = { fixed = 6 }, content = "n", encoding = "binary" }"#,
                SpecError::EncodingNotAllowed {
                    field: 3,
                    content: Content::N,
                    encoding: Encoding::Binary,
                },
            ),
            (
                r#"52 = { name = "x", length = { fixed = 8 }, content = "b", encoding = "bcd" }"#,
                SpecError::EncodingNotAllowed {
                    field: 52,
                    content: Content::B,
                    encoding: Encoding::Bcd,
                },
            ),
            (
                r#"2 = { name = "x", length = { llvar = 19 }, content = "n", encoding = "ascii" }"#,
                SpecError::MissingLengthEncoding { field: 2 },
            ),
            (
                r#"3 = { name = "x", length = { fixed = 6 }, content = "n", encoding = "ascii", length_encoding = "ascii" }"#,
                SpecError::UnexpectedLengthEncoding { field: 3 },
            ),
            (
                r#"3 = { name = "x", length = { fixed = 6 }, content = "n", encoding = "ascii", pad = "left" }"#,
                SpecError::PadNotApplicable { field: 3 },
            ),
        ];
        for (field, expected) in cases {
            assert_eq!(spec_with(field), Err(expected), "{field}");
        }
        // Unknown keys and values are TOML shape errors.
        for field in [
            r#"3 = { name = "x", length = { fixed = 6 }, content = "n", encoding = "ascii", sensitiv = true }"#,
            r#"3 = { name = "x", length = { fixed = 6 }, content = "x", encoding = "ascii" }"#,
            r#"3 = { name = "x", length = { exactly = 6 }, content = "n", encoding = "ascii" }"#,
            r#"3 = { name = "x", length = { fixed = -1 }, content = "n", encoding = "ascii" }"#,
            r#"x = { name = "x", length = { fixed = 6 }, content = "n", encoding = "ascii" }"#,
        ] {
            assert!(spec_with(field).is_err(), "{field}");
        }
        assert_eq!(
            Spec::from_toml("name = \"\"\nmti_encoding = \"bcd\"\nbitmap_encoding = \"hex\""),
            Err(SpecError::EmptyName)
        );
        assert!(matches!(
            Spec::from_toml("name = \"x\"\nmti_encoding = \"ebcdic\"\nbitmap_encoding = \"hex\""),
            Err(SpecError::Toml { .. })
        ));
    }
}
