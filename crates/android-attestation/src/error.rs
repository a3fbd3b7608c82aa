//! The error type of the parser.

use thiserror::Error;

/// Why a certificate, a PEM chain or a `KeyDescription` could not be parsed.
///
/// Every variant that concerns the extension names the field it was found in, as a path of
/// the JSON names (for example `hardwareEnforced.rootOfTrust.deviceLocked`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The certificate is not a DER X.509 certificate x509-parser accepts.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The certificate carries the key attestation extension more than once.
    #[error("certificate: the key attestation extension appears more than once")]
    DuplicateExtension,
    /// The PEM text could not be read.
    #[error("PEM: {0}")]
    Pem(String),
    /// The PEM text holds no certificate.
    #[error("PEM: no certificate")]
    EmptyChain,
    /// The bytes are not valid DER where `field` was expected (truncated, bad length, a
    /// non-minimal encoding, ...).
    #[error("{field}: malformed DER: {reason}")]
    Malformed {
        /// The field being decoded.
        field: String,
        /// What the ASN.1 decoder reported.
        reason: String,
    },
    /// `field` has the wrong ASN.1 type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// The field being decoded.
        field: String,
        /// The type the schema requires.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A SEQUENCE has the wrong number of elements.
    #[error("{field}: expected {expected} elements, found {found}")]
    WrongElementCount {
        /// The SEQUENCE being decoded.
        field: String,
        /// How many elements the schema allows (e.g. "8", "3 or 4").
        expected: &'static str,
        /// How many were found.
        found: usize,
    },
    /// Bytes follow the value of `field` inside its enclosing element.
    #[error("{field}: trailing data after the value")]
    TrailingData {
        /// The field being decoded.
        field: String,
    },
    /// An ENUMERATED or INTEGER value outside the values the schema defines.
    #[error("{field}: value {value} is not defined")]
    InvalidValue {
        /// The field being decoded.
        field: String,
        /// The value found (decimal).
        value: String,
    },
    /// An OCTET STRING that must hold UTF-8 text does not.
    #[error("{field}: not UTF-8")]
    NotUtf8 {
        /// The field being decoded.
        field: String,
    },
    /// AuthorizationList tags are not in strictly ascending order (DER canonical order of a
    /// SEQUENCE of context-tagged fields; a repeated tag is also out of order).
    #[error("{list}: tag [{tag}] follows tag [{previous}]; tags must be in ascending order")]
    TagsNotAscending {
        /// `softwareEnforced` or `hardwareEnforced`.
        list: &'static str,
        /// The tag before.
        previous: u32,
        /// The offending tag.
        tag: u32,
    },
    /// An AuthorizationList tag this parser does not know.
    #[error("{list}: unknown tag [{tag}]")]
    UnknownTag {
        /// `softwareEnforced` or `hardwareEnforced`.
        list: &'static str,
        /// The tag number.
        tag: u32,
    },
    /// A SET OF holds more elements than this parser accepts.
    #[error("{field}: more than {limit} elements")]
    TooManyElements {
        /// The field being decoded.
        field: String,
        /// The limit.
        limit: usize,
    },
}

impl AttestationError {
    /// The error for an asn1-rs failure while decoding `field`.
    pub(crate) fn asn1(field: &str, err: asn1_rs::Err<asn1_rs::Error>) -> Self {
        match err {
            asn1_rs::Err::Error(e) | asn1_rs::Err::Failure(e) => Self::from_asn1_error(field, e),
            asn1_rs::Err::Incomplete(needed) => Self::Malformed {
                field: field.to_owned(),
                reason: format!("truncated ({needed:?})"),
            },
        }
    }

    fn from_asn1_error(field: &str, e: asn1_rs::Error) -> Self {
        match e {
            asn1_rs::Error::UnexpectedTag { expected, actual } => Self::WrongType {
                field: field.to_owned(),
                expected: expected.map_or("another type", tag_name),
                found: describe_tag(actual),
            },
            asn1_rs::Error::ConstructExpected | asn1_rs::Error::ConstructUnexpected => {
                Self::WrongType {
                    field: field.to_owned(),
                    expected: if matches!(e, asn1_rs::Error::ConstructExpected) {
                        "a constructed encoding"
                    } else {
                        "a primitive encoding"
                    },
                    found: e.to_string(),
                }
            }
            asn1_rs::Error::IntegerNegative | asn1_rs::Error::IntegerTooLarge => {
                Self::InvalidValue {
                    field: field.to_owned(),
                    value: e.to_string(),
                }
            }
            other => Self::Malformed {
                field: field.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

/// The schema name of a universal tag.
pub(crate) fn tag_name(tag: asn1_rs::Tag) -> &'static str {
    match tag {
        asn1_rs::Tag::Boolean => "BOOLEAN",
        asn1_rs::Tag::Integer => "INTEGER",
        asn1_rs::Tag::OctetString => "OCTET STRING",
        asn1_rs::Tag::Null => "NULL",
        asn1_rs::Tag::Enumerated => "ENUMERATED",
        asn1_rs::Tag::Sequence => "SEQUENCE",
        asn1_rs::Tag::Set => "SET",
        _ => "another type",
    }
}

/// A readable description of a universal tag that was found.
pub(crate) fn describe_tag(tag: asn1_rs::Tag) -> String {
    match tag_name(tag) {
        "another type" => format!("tag {}", tag.0),
        name => name.to_owned(),
    }
}
