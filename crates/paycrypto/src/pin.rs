//! ISO 9564-1 PIN blocks: formats 0, 1, 3 and 4.
//!
//! * Format 0 (ISO-0): `0 N P… F…` XOR `0000 ‖ 12 rightmost PAN digits excluding the check digit`.
//! * Format 1 (ISO-1): `1 N P… R…`, random fill, no PAN.
//! * Format 3 (ISO-3): like format 0 with random fill digits A–F.
//! * Format 4 (ISO-4, AES): 16-byte PIN field `4 N P… A… ‖ 8 random bytes` and 16-byte PAN
//!   field `M ‖ PAN ‖ 0…` (M = PAN length − 12); enciphered in two steps per ISO 9564-1:2017:
//!   `C = E(K, E(K, PIN field) XOR PAN field)`.
//!
//! Formats 0, 1 and 3 are enciphered with TDES (16- or 24-byte keys), format 4 with AES
//! (16-, 24- or 32-byte keys). Clear PIN fields are [`SecretBytes`]; PINs and PANs are
//! [`Pin`] and [`Pan`], both zeroized on drop and never printed in full. Random fill comes
//! from a caller-supplied [`rand::RngCore`].

use std::fmt;

use rand::{Rng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::primitives::{
    aes_decrypt_ecb, aes_encrypt_ecb, tdes_decrypt_ecb, tdes_encrypt_ecb, xor_in_place,
};
use crate::{CryptoError, SecretBytes};

/// A clear PIN of 4 to 12 decimal digits. Zeroized on drop; `Debug` prints `***`; equality
/// is constant-time for PINs of equal length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin(Vec<u8>);

impl PartialEq for Pin {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                self.0.as_slice(),
                other.0.as_slice(),
            ))
    }
}

impl Eq for Pin {}

impl Pin {
    /// Parses a PIN of 4 to 12 ASCII digits.
    pub fn new(digits: &str) -> Result<Self, CryptoError> {
        Self::from_digit_values(digits.bytes().map(|byte| byte.wrapping_sub(b'0')).collect())
    }

    /// Builds a PIN from digit values 0–9 (takes ownership; zeroized on drop).
    pub(crate) fn from_digit_values(digits: Vec<u8>) -> Result<Self, CryptoError> {
        let pin = Self(digits);
        if !(4..=12).contains(&pin.0.len()) {
            return Err(CryptoError::OutOfRange {
                what: "PIN",
                reason: format!("{} digits, expected 4 to 12", pin.0.len()),
            });
        }
        if pin.0.iter().any(|digit| *digit > 9) {
            return Err(CryptoError::format("PIN", "not all decimal digits"));
        }
        Ok(pin)
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a PIN has at least 4 digits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The digit values 0–9, for the PIN verification methods in this crate.
    pub(crate) fn digit_values(&self) -> &[u8] {
        &self.0
    }

    /// The PIN as ASCII digits, zeroized when dropped. Keep it short-lived.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(
            self.0
                .iter()
                .map(|digit| char::from(b'0' + digit))
                .collect(),
        )
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A primary account number of 12 to 19 digits. Zeroized on drop; `Debug` shows only the
/// first six and last four digits.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Pan(String);

impl Pan {
    /// Parses a PAN of 12 to 19 ASCII digits (the Luhn check digit is not checked).
    pub fn new(digits: &str) -> Result<Self, CryptoError> {
        let pan = Self(digits.to_owned());
        if !(12..=19).contains(&pan.0.len()) {
            return Err(CryptoError::OutOfRange {
                what: "PAN",
                reason: format!("{} digits, expected 12 to 19", pan.0.len()),
            });
        }
        if !pan.0.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(CryptoError::format("PAN", "not all decimal digits"));
        }
        Ok(pan)
    }

    /// Parses a PAN and also requires a valid Luhn (mod 10) check digit.
    pub fn new_luhn_checked(digits: &str) -> Result<Self, CryptoError> {
        let pan = Self::new(digits)?;
        if !pan.luhn_valid() {
            return Err(CryptoError::VerificationFailed("PAN check digit"));
        }
        Ok(pan)
    }

    /// Whether the last digit is a correct Luhn check digit.
    pub fn luhn_valid(&self) -> bool {
        let sum: u32 = self
            .0
            .bytes()
            .rev()
            .enumerate()
            .map(|(index, byte)| {
                let digit = u32::from(byte - b'0');
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

    /// The digits. Keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a PAN has at least 12 digits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// First six and last four digits, the rest masked (`412345******2345`).
    pub fn masked(&self) -> String {
        let len = self.0.len();
        let head = self.0.get(..6).unwrap_or_default();
        let tail = self.0.get(len.saturating_sub(4)..).unwrap_or_default();
        format!("{head}{}{tail}", "*".repeat(len.saturating_sub(10)))
    }

    /// The 12 rightmost digits excluding the check digit, as digit values.
    fn rightmost_12_without_check(&self) -> [u8; 12] {
        let digits = self.0.as_bytes();
        let body = &digits[..digits.len() - 1];
        let start = body.len().saturating_sub(12);
        let mut out = [0_u8; 12];
        let take = &body[start..];
        for (slot, byte) in out[12 - take.len()..].iter_mut().zip(take) {
            *slot = byte - b'0';
        }
        out
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

/// ISO 9564-1 PIN block formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinBlockFormat {
    /// ISO format 0 (ANSI X9.8): PAN-bound, fill F. TDES.
    Iso0,
    /// ISO format 1: no PAN, random fill. TDES.
    Iso1,
    /// ISO format 3: PAN-bound, random fill A–F. TDES.
    Iso3,
    /// ISO format 4: 16-byte PIN field and PAN field, AES, two-step encipherment.
    Iso4,
}

impl PinBlockFormat {
    /// The control nibble (first nibble of the PIN field).
    pub fn control(self) -> u8 {
        match self {
            Self::Iso0 => 0,
            Self::Iso1 => 1,
            Self::Iso3 => 3,
            Self::Iso4 => 4,
        }
    }

    /// Block length in bytes (8 for formats 0/1/3, 16 for format 4).
    pub fn block_len(self) -> usize {
        if self == Self::Iso4 { 16 } else { 8 }
    }

    /// Fails with [`CryptoError::InvalidLength`] naming `what` unless `actual` is this
    /// format's block length.
    fn check_len(self, what: &'static str, actual: usize) -> Result<(), CryptoError> {
        if actual == self.block_len() {
            return Ok(());
        }
        let expected = if self == Self::Iso4 {
            "16 bytes"
        } else {
            "8 bytes"
        };
        Err(CryptoError::InvalidLength {
            what,
            expected,
            actual,
        })
    }

    /// Whether the format binds the PIN to the PAN (all but format 1).
    pub fn needs_pan(self) -> bool {
        self != Self::Iso1
    }
}

fn require_pan(format: PinBlockFormat, pan: Option<&Pan>) -> Result<Option<&Pan>, CryptoError> {
    if format.needs_pan() && pan.is_none() {
        return Err(CryptoError::format(
            "PIN block",
            format!("{format:?} needs the PAN"),
        ));
    }
    Ok(pan)
}

fn set_nibble(block: &mut [u8], index: usize, value: u8) {
    let byte = &mut block[index / 2];
    if index.is_multiple_of(2) {
        *byte = (*byte & 0x0F) | (value << 4);
    } else {
        *byte = (*byte & 0xF0) | (value & 0x0F);
    }
}

fn nibble(block: &[u8], index: usize) -> u8 {
    let byte = block[index / 2];
    if index.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0F
    }
}

/// The ISO-0/ISO-3 PAN field: `0000` then the 12 rightmost PAN digits excluding the check digit.
fn pan_field_8(pan: &Pan) -> Zeroizing<[u8; 8]> {
    let mut field = Zeroizing::new([0_u8; 8]);
    let mut digits = pan.rightmost_12_without_check();
    for (index, digit) in digits.iter().enumerate() {
        set_nibble(field.as_mut(), 4 + index, *digit);
    }
    digits.zeroize();
    field
}

/// The ISO 9564 format 4 PAN field: `M` (PAN length − 12), the PAN digits, zero padding to 32
/// nibbles (for a backend that enciphers format 4 PIN blocks with its own AES key).
pub fn pan_field_16(pan: &Pan) -> Zeroizing<[u8; 16]> {
    let mut field = Zeroizing::new([0_u8; 16]);
    let digits = pan.expose().as_bytes();
    // Pan guarantees 12..=19 digits, so M is 0..=7.
    set_nibble(field.as_mut(), 0, (digits.len() - 12) as u8);
    for (index, byte) in digits.iter().enumerate() {
        set_nibble(field.as_mut(), 1 + index, byte - b'0');
    }
    field
}

/// Encodes the clear PIN block (formats 0, 1, 3) or the clear PIN field (format 4).
///
/// Formats 0, 3 and 4 need the PAN (for format 4 it is used only at encipherment, see
/// [`encrypt_pin_block`]); format 1 ignores it. Random fill is drawn from `rng`.
pub fn encode_pin_block<R: RngCore + ?Sized>(
    format: PinBlockFormat,
    pin: &Pin,
    pan: Option<&Pan>,
    rng: &mut R,
) -> Result<SecretBytes, CryptoError> {
    let mut block = Zeroizing::new(vec![0_u8; format.block_len()]);
    set_nibble(&mut block, 0, format.control());
    // A PIN has 4..=12 digits, so its length fits a nibble.
    set_nibble(&mut block, 1, pin.len() as u8);
    for (index, digit) in pin.0.iter().enumerate() {
        set_nibble(&mut block, 2 + index, *digit);
    }
    for index in 2 + pin.len()..16 {
        let fill = match format {
            PinBlockFormat::Iso0 => 0xF,
            PinBlockFormat::Iso1 => rng.gen_range(0..16),
            PinBlockFormat::Iso3 => rng.gen_range(10..16),
            PinBlockFormat::Iso4 => 0xA,
        };
        set_nibble(&mut block, index, fill);
    }
    match format {
        PinBlockFormat::Iso0 | PinBlockFormat::Iso3 => {
            let pan = require_pan(format, pan)?
                .ok_or_else(|| CryptoError::format("PIN block", "PAN missing"))?;
            xor_in_place(&mut block, pan_field_8(pan).as_ref());
        }
        PinBlockFormat::Iso1 => {}
        PinBlockFormat::Iso4 => rng.fill_bytes(&mut block[8..16]),
    }
    Ok(SecretBytes::from_slice(&block))
}

/// Decodes a clear PIN block (formats 0, 1, 3) or clear PIN field (format 4), checking the
/// control nibble, the PIN length, the digits and the fill.
pub fn decode_pin_block(
    format: PinBlockFormat,
    block: &SecretBytes,
    pan: Option<&Pan>,
) -> Result<Pin, CryptoError> {
    format.check_len("clear PIN block", block.len())?;
    let mut field = Zeroizing::new(block.expose().to_vec());
    if matches!(format, PinBlockFormat::Iso0 | PinBlockFormat::Iso3) {
        let pan = require_pan(format, pan)?
            .ok_or_else(|| CryptoError::format("PIN block", "PAN missing"))?;
        xor_in_place(&mut field, pan_field_8(pan).as_ref());
    }
    let control = nibble(&field, 0);
    if control != format.control() {
        return Err(CryptoError::format(
            "PIN block",
            format!("control field {control:X}, expected {:?}", format),
        ));
    }
    let len = usize::from(nibble(&field, 1));
    if !(4..=12).contains(&len) {
        return Err(CryptoError::format(
            "PIN block",
            format!("PIN length {len} outside 4 to 12"),
        ));
    }
    let fill_ok = (2 + len..16).all(|index| {
        let fill = nibble(&field, index);
        match format {
            PinBlockFormat::Iso0 => fill == 0xF,
            PinBlockFormat::Iso1 => true,
            PinBlockFormat::Iso3 => fill >= 0xA,
            PinBlockFormat::Iso4 => fill == 0xA,
        }
    });
    if !fill_ok {
        return Err(CryptoError::format("PIN block", "fill digits are invalid"));
    }
    let digits: Vec<u8> = (2..2 + len).map(|index| nibble(&field, index)).collect();
    Pin::from_digit_values(digits)
        .map_err(|_| CryptoError::format("PIN block", "PIN digits are not decimal"))
}

fn tdes_or_aes_encrypt(
    format: PinBlockFormat,
    key: &SecretBytes,
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if format == PinBlockFormat::Iso4 {
        aes_encrypt_ecb(key.expose(), data)
    } else {
        tdes_encrypt_ecb(key.expose(), data)
    }
}

fn tdes_or_aes_decrypt(
    format: PinBlockFormat,
    key: &SecretBytes,
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if format == PinBlockFormat::Iso4 {
        aes_decrypt_ecb(key.expose(), data)
    } else {
        tdes_decrypt_ecb(key.expose(), data)
    }
}

/// Enciphers an already encoded clear PIN block / PIN field under `key`.
///
/// Formats 0, 1, 3: TDES-ECB. Format 4: AES, `E(K, E(K, PIN field) XOR PAN field)`.
pub fn encipher_pin_block(
    format: PinBlockFormat,
    key: &SecretBytes,
    clear: &SecretBytes,
    pan: Option<&Pan>,
) -> Result<Vec<u8>, CryptoError> {
    format.check_len("clear PIN block", clear.len())?;
    if format != PinBlockFormat::Iso4 {
        return tdes_or_aes_encrypt(format, key, clear.expose());
    }
    let pan =
        require_pan(format, pan)?.ok_or_else(|| CryptoError::format("PIN block", "PAN missing"))?;
    let mut intermediate = Zeroizing::new(aes_encrypt_ecb(key.expose(), clear.expose())?);
    xor_in_place(&mut intermediate, pan_field_16(pan).as_ref());
    aes_encrypt_ecb(key.expose(), &intermediate)
}

/// Deciphers an enciphered PIN block under `key` back to the clear PIN block / PIN field.
pub fn decipher_pin_block(
    format: PinBlockFormat,
    key: &SecretBytes,
    enciphered: &[u8],
    pan: Option<&Pan>,
) -> Result<SecretBytes, CryptoError> {
    format.check_len("enciphered PIN block", enciphered.len())?;
    let clear = Zeroizing::new(tdes_or_aes_decrypt(format, key, enciphered)?);
    if format != PinBlockFormat::Iso4 {
        return Ok(SecretBytes::from_slice(&clear));
    }
    let pan =
        require_pan(format, pan)?.ok_or_else(|| CryptoError::format("PIN block", "PAN missing"))?;
    let mut intermediate = clear;
    xor_in_place(&mut intermediate, pan_field_16(pan).as_ref());
    Ok(SecretBytes::new(aes_decrypt_ecb(
        key.expose(),
        &intermediate,
    )?))
}

/// Encodes `pin` in `format` and enciphers it under `key` (TDES for formats 0/1/3, AES for 4).
pub fn encrypt_pin_block<R: RngCore + ?Sized>(
    format: PinBlockFormat,
    key: &SecretBytes,
    pin: &Pin,
    pan: Option<&Pan>,
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    let clear = encode_pin_block(format, pin, pan, rng)?;
    encipher_pin_block(format, key, &clear, pan)
}

/// Deciphers a PIN block under `key` and decodes the PIN.
pub fn decrypt_pin_block(
    format: PinBlockFormat,
    key: &SecretBytes,
    enciphered: &[u8],
    pan: Option<&Pan>,
) -> Result<Pin, CryptoError> {
    let clear = decipher_pin_block(format, key, enciphered, pan)?;
    decode_pin_block(format, &clear, pan)
}

/// One side of a PIN translation: the format, the PIN encryption key and the PAN.
#[derive(Clone, Copy, Debug)]
pub struct PinBlockContext<'a> {
    /// PIN block format.
    pub format: PinBlockFormat,
    /// PIN encryption key (TDES for formats 0/1/3, AES for format 4).
    pub key: &'a SecretBytes,
    /// PAN, for the PAN-bound formats.
    pub pan: Option<&'a Pan>,
}

/// Translates an enciphered PIN block from one format/key to another: decrypt under the
/// source key, decode, re-encode in the destination format, encrypt under the destination
/// key. The clear PIN and PIN blocks exist only inside this function and are zeroized.
pub fn translate_pin_block<R: RngCore + ?Sized>(
    from: &PinBlockContext<'_>,
    enciphered: &[u8],
    to: &PinBlockContext<'_>,
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    let pin = decrypt_pin_block(from.format, from.key, enciphered, from.pan)?;
    encrypt_pin_block(to.format, to.key, &pin, to.pan, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let pin = Pin::new("1234").expect("pin");
        assert_eq!(format!("{pin:?}"), "***");
        let pan = Pan::new("4111111111111111").expect("pan");
        assert_eq!(format!("{pan:?}"), "Pan(411111******1111)");
    }

    #[test]
    fn pin_and_pan_validation() {
        assert!(Pin::new("123").is_err());
        assert!(Pin::new("1234567890123").is_err());
        assert!(Pin::new("12a4").is_err());
        assert!(Pan::new("12345678901").is_err());
        assert!(Pan::new("12345678901234567890").is_err());
        assert!(Pan::new("41111111111111a1").is_err());
        assert!(Pan::new_luhn_checked("4111111111111111").is_ok());
        assert!(Pan::new_luhn_checked("4111111111111112").is_err());
    }
}
