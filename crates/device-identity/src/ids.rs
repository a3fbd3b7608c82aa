//! Certificate fingerprints and serial numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::IdentityError;

/// The SHA-256 of a certificate's DER encoding.
///
/// Shown and serialised as 64 lowercase hex digits without separators (the form `sha256sum`
/// prints); parsing also accepts uppercase and `:` separators (the form `openssl x509
/// -fingerprint -sha256` prints).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER encoding.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads 64 hex digits, optionally separated by `:`, in either case.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|_| IdentityError::Malformed {
            field: "fingerprint",
            reason: "must be 64 hex digits (a SHA-256)".to_owned(),
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The most serial-number bytes accepted. RFC 5280 section 4.1.2.2 allows 20 octets; some
/// manufacturers exceed it, so twice that is tolerated.
pub const MAX_SERIAL_BYTES: usize = 40;

/// A certificate serial number: the bytes of the DER INTEGER without leading zero bytes.
///
/// Shown and serialised as uppercase hex, two digits a byte, without separators (the form
/// `openssl x509 -serial` prints), e.g. `0A1B`. Parsing is lenient about what humans type: either
/// case, optional `:` or space separators, an optional `0x` prefix, odd digit counts and leading
/// zeros, so `0x0a:1b`, `A1B` and `000A1B` are the same serial as `0A1B`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SerialNumber(Vec<u8>);

impl SerialNumber {
    /// The serial of a DER INTEGER's content bytes (as in the certificate).
    pub(crate) fn from_der_integer(bytes: &[u8]) -> Self {
        let first_significant = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Self(bytes[first_significant..].to_vec())
    }

    /// Reads a serial typed by a human or exported by a tool (see the type's docs).
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let malformed = |reason: &str| IdentityError::Malformed {
            field: "serial",
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let without_prefix = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: String = without_prefix
            .chars()
            .filter(|c| *c != ':' && *c != ' ')
            .collect();
        if digits.is_empty() {
            return Err(malformed("is empty"));
        }
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed("must be hex digits"));
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > 2 * MAX_SERIAL_BYTES {
            return Err(malformed("is longer than 40 bytes"));
        }
        let even = if significant.len() % 2 == 1 {
            format!("0{significant}")
        } else {
            significant.to_owned()
        };
        let bytes = hex::decode(even).map_err(|_| malformed("must be hex digits"))?;
        Ok(Self(bytes))
    }

    /// The serial's bytes, without leading zero bytes (empty for serial 0).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("00");
        }
        f.write_str(&hex::encode_upper(&self.0))
    }
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerialNumber({self})")
    }
}

impl FromStr for SerialNumber {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for SerialNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SerialNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_forms_humans_type_are_the_same_serial() {
        let canonical = SerialNumber::parse("0A1B").expect("serial");
        for form in ["0a1b", "A1B", "000A1B", "0x0a:1b", "0A 1B", " 0a1b\n"] {
            assert_eq!(SerialNumber::parse(form).expect(form), canonical, "{form}");
        }
        assert_eq!(canonical.to_string(), "0A1B");
        assert_eq!(canonical.as_bytes(), &[0x0a, 0x1b]);
    }

    #[test]
    fn serial_zero_and_der_sign_byte() {
        assert_eq!(SerialNumber::parse("0").expect("zero").to_string(), "00");
        // A DER INTEGER with the high bit set carries a leading 0x00 (X.690 section 8.3.2).
        let from_der = SerialNumber::from_der_integer(&[0x00, 0x82, 0x10]);
        assert_eq!(from_der.to_string(), "8210");
        assert_eq!(from_der, SerialNumber::parse("8210").expect("serial"));
    }

    #[test]
    fn serial_errors_name_the_field() {
        for bad in ["", "  ", "0x", "12G4", "12-34"] {
            let error = SerialNumber::parse(bad).expect_err(bad);
            assert!(
                matches!(
                    error,
                    IdentityError::Malformed {
                        field: "serial",
                        ..
                    }
                ),
                "{bad}: {error}"
            );
        }
        let too_long = "1".repeat(2 * MAX_SERIAL_BYTES + 1);
        assert!(SerialNumber::parse(&too_long).is_err());
        let longest = "1".repeat(2 * MAX_SERIAL_BYTES);
        assert!(SerialNumber::parse(&longest).is_ok());
    }

    #[test]
    fn fingerprint_forms() {
        let lower = "96bcec06264976f37460779acf28c5a7cfe8a3c0aae11a8ffcee05c0bddf08c6";
        let openssl = "96:BC:EC:06:26:49:76:F3:74:60:77:9A:CF:28:C5:A7:CF:E8:A3:C0:AA:E1:1A:8F:FC:EE:05:C0:BD:DF:08:C6";
        let fingerprint = Fingerprint::parse(openssl).expect("fingerprint");
        assert_eq!(fingerprint.to_string(), lower);
        assert_eq!(Fingerprint::parse(lower).expect("fingerprint"), fingerprint);
        assert!(Fingerprint::parse("96bc").is_err());
        assert!(Fingerprint::parse(&"g".repeat(64)).is_err());
        let json = serde_json::to_string(&fingerprint).expect("json");
        assert_eq!(json, format!("\"{lower}\""));
        let back: Fingerprint = serde_json::from_str(&json).expect("json");
        assert_eq!(back, fingerprint);
    }

    #[test]
    fn fingerprint_of_der_is_sha256() {
        // FIPS 180-4 / NIST CSRC SHA-256 example "abc".
        assert_eq!(
            Fingerprint::of_der(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
