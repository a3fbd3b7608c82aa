//! Card numbers never leave the caller: a blocked card is stored as a keyed token,
//! HMAC-SHA-256 of the PAN digits under a per-tenant [`TokenKey`].

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::InvalidValue;

/// A primary account number: 12 to 19 digits with a valid Luhn check digit. Zeroized on drop;
/// `Debug` prints `***`. Errors never echo the digits.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Pan(String);

impl Pan {
    /// Parses 12 to 19 ASCII digits whose last digit is the Luhn check digit (ISO/IEC 7812-1).
    pub fn parse(digits: &str) -> Result<Self, InvalidValue> {
        if !(12..=19).contains(&digits.len()) {
            return Err(InvalidValue::new(format!(
                "must be 12 to 19 digits, got {} characters",
                digits.chars().count()
            )));
        }
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(InvalidValue::new("must be digits only"));
        }
        if !luhn_valid(digits.as_bytes()) {
            return Err(InvalidValue::new("check digit is wrong (Luhn)"));
        }
        Ok(Self(digits.to_owned()))
    }

    /// The first `len` digits as a number, if the PAN is longer than `len`.
    pub(crate) fn prefix(&self, len: usize) -> Option<u64> {
        if len >= self.0.len() {
            return None;
        }
        self.0.get(..len).and_then(|prefix| prefix.parse().ok())
    }

    /// The digits, zeroized when dropped. Keep it short-lived.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.clone())
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The Luhn (mod 10) check over ASCII digits, check digit last.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte.wrapping_sub(b'0'));
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A tenant's card token key: at least 32 bytes (RFC 2104 §3: not shorter than the hash
/// output). Zeroized on drop; `Debug` prints `***`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    /// The fewest key bytes.
    pub const MIN_LEN: usize = 32;

    /// A key of at least [`TokenKey::MIN_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, InvalidValue> {
        if bytes.len() < Self::MIN_LEN {
            return Err(InvalidValue::new(format!(
                "token key: {} bytes, at least {} required",
                bytes.len(),
                Self::MIN_LEN
            )));
        }
        Ok(Self(bytes.to_vec()))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// HMAC-SHA-256 (RFC 2104 with SHA-256; vectors in RFC 4231).
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A blocked card, as HMAC-SHA-256 of the PAN digits under the tenant's token key. Written as
/// 64 lowercase hexadecimal characters. The same PAN under another tenant's key gives an
/// unrelated token.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardToken([u8; 32]);

impl CardToken {
    /// The token of `pan` under `key`: HMAC-SHA-256 over the ASCII digits of the PAN.
    pub fn from_pan(key: &TokenKey, pan: &Pan) -> Self {
        Self(hmac_sha256(&key.0, pan.0.as_bytes()))
    }

    /// The token with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The token from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidValue> {
        <[u8; 32]>::try_from(bytes).map(Self).map_err(|_| {
            InvalidValue::new(format!(
                "must be 32 bytes (HMAC-SHA-256), got {} bytes",
                bytes.len()
            ))
        })
    }

    /// Parses 64 hexadecimal characters, either case.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        if text.len() != 64 {
            return Err(InvalidValue::new(format!(
                "must be 64 hexadecimal characters, got {} characters",
                text.chars().count()
            )));
        }
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| InvalidValue::new("must be 64 hexadecimal characters"))?;
        Ok(Self(bytes))
    }

    /// The token bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `pan` under `key` is this token, in constant time.
    pub fn matches(&self, key: &TokenKey, pan: &Pan) -> bool {
        use subtle::ConstantTimeEq;
        Self::from_pan(key, pan).0.ct_eq(&self.0).into()
    }
}

impl fmt::Display for CardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardToken({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc4231_test_case_2() {
        // RFC 4231 §4.3, Test Case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_card_token_is_the_hmac_of_the_pan_digits_under_the_key() {
        let key_bytes = [0x0b_u8; 32];
        let key = TokenKey::new(&key_bytes).expect("key");
        let pan = Pan::parse("4111111111111111").expect("pan");
        let token = CardToken::from_pan(&key, &pan);
        assert_eq!(token.0, hmac_sha256(&key_bytes, b"4111111111111111"));
        assert_eq!(CardToken::parse(&token.to_string()), Ok(token));
        assert!(token.matches(&key, &pan));
        let other_key = TokenKey::new(&[0x0c; 32]).expect("key");
        assert_ne!(CardToken::from_pan(&other_key, &pan), token);
        assert!(!token.matches(&other_key, &pan));
    }

    #[test]
    fn pans_are_12_to_19_digits_with_a_valid_luhn_digit() {
        for valid in [
            "4111111111111111",
            "378282246310005",
            "5555555555554444",
            "6011000990139424",
        ] {
            assert!(Pan::parse(valid).is_ok(), "{valid}");
        }
        for (invalid, contains) in [
            ("4111111111111112", "Luhn"),
            ("41111111111", "12 to 19"),
            ("41111111111111111111", "12 to 19"),
            ("4111 1111 1111 1111", "digits only"),
            ("411111111111111a", "digits only"),
        ] {
            let error = Pan::parse(invalid).expect_err(invalid);
            assert!(error.reason().contains(contains), "{error}");
            assert!(
                !error.to_string().contains("4111"),
                "the PAN is echoed: {error}"
            );
        }
    }

    #[test]
    fn secrets_print_no_digits_or_key_bytes() {
        let pan = Pan::parse("4111111111111111").expect("pan");
        assert_eq!(format!("{pan:?}"), "***");
        let key = TokenKey::new(&[0x41; 32]).expect("key");
        assert_eq!(format!("{key:?}"), "***");
        assert!(TokenKey::new(&[0; 31]).is_err());
    }
}
