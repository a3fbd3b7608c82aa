//! PIN verification data: the Visa PIN Verification Value (PVV) and the IBM 3624 PIN
//! (natural PIN, PIN offset), as the payment HSM APIs expose them through "generate PIN
//! data" and "verify PIN data".
//!
//! # Visa PVV
//!
//! The transformed security parameter (TSP) is the 11 rightmost PAN digits excluding the
//! check digit, the PIN verification key indicator ([`Pvki`]) and the 4 leftmost PIN digits:
//! 16 decimal digits, packed into 8 bytes and enciphered with TDES-ECB under the
//! double-length (or triple-length) PIN verification key (PVK). The ciphertext's 16 hex
//! digits are scanned left to right for decimal digits; if fewer than four are found, a
//! second scan takes the digits A–F minus 10. The first four digits selected are the PVV.
//!
//! Visa defines PVKI values 1 to 6 (0 is used on cards to say "no PVV"); payment HSMs do
//! not enforce that range, so [`Pvki`] accepts any single decimal digit 0–9 and
//! [`Pvki::is_visa_range`] tells whether it is in 0–6.
//!
//! # IBM 3624
//!
//! The validation data ([`ValidationData`], usually a slice of the PAN) is right-padded to
//! 16 hex digits with a pad character, packed into 8 bytes and enciphered with TDES-ECB under
//! the PVK. Each of the 16 ciphertext hex digits is mapped through a 16-digit
//! [`DecimalizationTable`]; the leftmost *n* digits are the natural (intermediate) PIN of
//! length *n*. The PIN offset is the customer PIN minus the natural PIN, digit by digit
//! modulo 10 without borrow. With a PIN check length *m* smaller than the PIN length, only
//! the rightmost *m* digits form the offset and are checked at verification.
//!
//! Single-length (8-byte) PVKs are refused: keys are TDES, 16 or 24 bytes. A legacy
//! single-DES key `K` is the TDES key `K‖K`.
//!
//! PINs, PVVs, offsets and validation data never appear in `Debug` output or error text.

use std::fmt;

use rand::{Rng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::pin::{Pan, Pin};
use crate::primitives::tdes_encrypt_ecb;
use crate::{CryptoError, SecretBytes};

/// Shortest PIN this module handles (the Visa PVV uses exactly the 4 leftmost digits).
pub const MIN_PIN_LEN: usize = 4;
/// Longest PIN this module handles (the [`Pin`] type's limit, ISO 9564-1).
pub const MAX_PIN_LEN: usize = 12;

fn check_pvk(pvk: &SecretBytes) -> Result<(), CryptoError> {
    match pvk.len() {
        16 | 24 => Ok(()),
        actual => Err(CryptoError::InvalidLength {
            what: "PIN verification key",
            expected: "16 or 24 bytes",
            actual,
        }),
    }
}

/// Packs 16 nibbles (each 0–15) into 8 bytes.
fn pack_nibbles(nibbles: &[u8; 16]) -> Zeroizing<[u8; 8]> {
    let mut out = Zeroizing::new([0_u8; 8]);
    for (byte, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
        *byte = (pair[0] << 4) | (pair[1] & 0x0F);
    }
    out
}

/// Splits 8 bytes into 16 nibbles.
fn unpack_nibbles(bytes: &[u8]) -> Zeroizing<[u8; 16]> {
    let mut out = Zeroizing::new([0_u8; 16]);
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = byte >> 4;
        pair[1] = byte & 0x0F;
    }
    out
}

fn hex_nibble(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

fn decimal_digits(
    what: &'static str,
    text: &str,
    lengths: (usize, usize),
) -> Result<Vec<u8>, CryptoError> {
    let (min, max) = lengths;
    if !(min..=max).contains(&text.len()) {
        return Err(CryptoError::OutOfRange {
            what,
            reason: if min == max {
                format!("{} digits, expected {min}", text.len())
            } else {
                format!("{} digits, expected {min} to {max}", text.len())
            },
        });
    }
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CryptoError::format(what, "not all decimal digits"));
    }
    Ok(text.bytes().map(|byte| byte - b'0').collect())
}

/// Constant-time equality of two digit strings of equal length.
fn digits_match(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && bool::from(left.ct_eq(right))
}

// ---------------------------------------------------------------------------------------
// Visa PVV
// ---------------------------------------------------------------------------------------

/// PIN verification key indicator: one decimal digit, 0–9.
///
/// Visa defines 1–6 (with 0 meaning "no PVV" on the card); HSMs accept any digit, and so
/// does this type. See [`Pvki::is_visa_range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pvki(u8);

impl Pvki {
    /// A PVKI from its value 0–9.
    pub fn new(value: u8) -> Result<Self, CryptoError> {
        if value > 9 {
            return Err(CryptoError::OutOfRange {
                what: "PVKI",
                reason: format!("{value}, expected one decimal digit 0 to 9"),
            });
        }
        Ok(Self(value))
    }

    /// Parses a PVKI written as one ASCII digit.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        match text.as_bytes() {
            [digit] if digit.is_ascii_digit() => Ok(Self(digit - b'0')),
            _ => Err(CryptoError::format(
                "PVKI",
                "expected one decimal digit 0 to 9",
            )),
        }
    }

    /// The value 0–9.
    pub fn value(self) -> u8 {
        self.0
    }

    /// Whether the value is within 0–6, the range Visa defines.
    pub fn is_visa_range(self) -> bool {
        self.0 <= 6
    }
}

impl fmt::Display for Pvki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 4-digit Visa PIN Verification Value. Zeroized on drop; `Debug` prints no digits;
/// equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pvv([u8; 4]);

impl Pvv {
    /// Parses a PVV of exactly 4 ASCII digits.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let digits = Zeroizing::new(decimal_digits("PVV", text, (4, 4))?);
        let mut out = [0_u8; 4];
        out.copy_from_slice(&digits);
        Ok(Self(out))
    }

    /// The PVV as 4 ASCII digits, zeroized when dropped.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(
            self.0
                .iter()
                .map(|digit| char::from(b'0' + digit))
                .collect(),
        )
    }
}

impl PartialEq for Pvv {
    fn eq(&self, other: &Self) -> bool {
        digits_match(&self.0, &other.0)
    }
}

impl Eq for Pvv {}

impl fmt::Debug for Pvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pvv(****)")
    }
}

/// The Visa two-pass scan: decimal digits left to right, then (if fewer than `N` were found)
/// the digits A–F left to right, minus 10.
fn visa_decimalize<const N: usize>(nibbles: &[u8; 16]) -> [u8; N] {
    let mut out = [0_u8; N];
    let decimal = nibbles.iter().copied().filter(|nibble| *nibble <= 9);
    let letters = nibbles
        .iter()
        .copied()
        .filter(|nibble| *nibble > 9)
        .map(|nibble| nibble - 10);
    for (slot, digit) in out.iter_mut().zip(decimal.chain(letters)) {
        *slot = digit;
    }
    out
}

/// The transformed security parameter as 16 nibbles: 11 rightmost PAN digits excluding the
/// check digit, the PVKI, the 4 leftmost PIN digits.
fn visa_tsp(pan: &Pan, pvki: Pvki, pin: &Pin) -> Zeroizing<[u8; 16]> {
    let mut tsp = Zeroizing::new([0_u8; 16]);
    let digits = pan.expose().as_bytes();
    // A Pan has 12..=19 digits, so the body without the check digit has at least 11.
    let body = &digits[..digits.len() - 1];
    let eleven = &body[body.len() - 11..];
    for (slot, byte) in tsp[..11].iter_mut().zip(eleven) {
        *slot = byte - b'0';
    }
    tsp[11] = pvki.value();
    // A Pin has at least 4 digits.
    tsp[12..16].copy_from_slice(&pin.digit_values()[..4]);
    tsp
}

/// Computes the Visa PVV for `pin` on the card `pan` under the PVK selected by `pvki`.
///
/// `pvk` is the TDES PVK pair (PVK A‖PVK B, 16 bytes; 24-byte keys are accepted too). Only
/// the 4 leftmost PIN digits take part.
pub fn generate_pvv(
    pvk: &SecretBytes,
    pan: &Pan,
    pvki: Pvki,
    pin: &Pin,
) -> Result<Pvv, CryptoError> {
    check_pvk(pvk)?;
    let enciphered = Zeroizing::new(tdes_encrypt_ecb(
        pvk.expose(),
        pvv_block(pan, pvki, pin).as_ref(),
    )?);
    pvv_from_enciphered(&enciphered)
}

/// The transformed security parameter of the Visa PVV as the 8-byte block the PVK enciphers
/// (TDES-ECB): for a PVK that stays inside an HSM, which enciphers this block; the PVV then
/// comes from [`pvv_from_enciphered`].
pub fn pvv_block(pan: &Pan, pvki: Pvki, pin: &Pin) -> Zeroizing<[u8; 8]> {
    pack_nibbles(&visa_tsp(pan, pvki, pin))
}

/// The PVV from the [`pvv_block`] enciphered under the PVK (8 bytes): the Visa two-pass
/// decimalization.
pub fn pvv_from_enciphered(enciphered: &[u8]) -> Result<Pvv, CryptoError> {
    if enciphered.len() != 8 {
        return Err(CryptoError::InvalidLength {
            what: "enciphered TSP",
            expected: "8 bytes",
            actual: enciphered.len(),
        });
    }
    Ok(Pvv(visa_decimalize::<4>(&unpack_nibbles(enciphered))))
}

/// Verifies `pin` against a reference PVV in constant time; a mismatch is
/// [`CryptoError::VerificationFailed`].
pub fn verify_pvv(
    pvk: &SecretBytes,
    pan: &Pan,
    pvki: Pvki,
    pin: &Pin,
    pvv: &Pvv,
) -> Result<(), CryptoError> {
    let computed = generate_pvv(pvk, pan, pvki, pin)?;
    if computed == *pvv {
        Ok(())
    } else {
        Err(CryptoError::VerificationFailed("PVV"))
    }
}

// ---------------------------------------------------------------------------------------
// IBM 3624
// ---------------------------------------------------------------------------------------

/// A decimalization table: 16 decimal digits, the image of the hex digits 0–F.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecimalizationTable([u8; 16]);

impl DecimalizationTable {
    /// The common table `0123456789012345` (A–F map to 0–5).
    pub const STANDARD: Self = Self([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5]);

    /// Parses a table of exactly 16 ASCII decimal digits.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let digits = decimal_digits("decimalization table", text, (16, 16))?;
        let mut table = [0_u8; 16];
        table.copy_from_slice(&digits);
        Ok(Self(table))
    }

    /// The decimal digit for a hex digit (only the low 4 bits of `nibble` are used).
    pub fn decimalize(&self, nibble: u8) -> u8 {
        self.0[usize::from(nibble & 0x0F)]
    }
}

impl Default for DecimalizationTable {
    fn default() -> Self {
        Self::STANDARD
    }
}

impl fmt::Display for DecimalizationTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for digit in self.0 {
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DecimalizationTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecimalizationTable({self})")
    }
}

/// IBM 3624 validation data: 4 to 16 hex digits, right-padded to 16 with a pad digit.
/// Usually a slice of the PAN, so zeroized on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct ValidationData([u8; 16]);

impl ValidationData {
    fn padded(nibbles: &[u8], pad: char) -> Result<Self, CryptoError> {
        let pad = pad
            .to_digit(16)
            .and_then(|value| u8::try_from(value).ok())
            .ok_or_else(|| {
                CryptoError::format("validation data pad", "expected one hex digit 0-F")
            })?;
        if !(4..=16).contains(&nibbles.len()) {
            return Err(CryptoError::OutOfRange {
                what: "validation data",
                reason: format!("{} digits, expected 4 to 16", nibbles.len()),
            });
        }
        let mut out = [pad; 16];
        out[..nibbles.len()].copy_from_slice(nibbles);
        Ok(Self(out))
    }

    /// Validation data given directly: 4 to 16 hex digits (either case), right-padded to 16
    /// digits with `pad` (a hex digit, commonly `F`).
    pub fn parse(data: &str, pad: char) -> Result<Self, CryptoError> {
        let nibbles = Zeroizing::new(
            data.bytes()
                .map(hex_nibble)
                .collect::<Option<Vec<u8>>>()
                .ok_or(CryptoError::InvalidHex("validation data"))?,
        );
        Self::padded(&nibbles, pad)
    }

    /// The 8-byte block the PVK enciphers (the 16 padded digits packed), for an HSM that
    /// enciphers it itself (e.g. a PKCS#11 token); see [`IntermediatePin::from_enciphered`].
    /// Usually PAN digits: never log it.
    pub fn block(&self) -> Zeroizing<[u8; 8]> {
        pack_nibbles(&self.0)
    }

    /// Validation data taken from the PAN: `len` digits (4 to 16) starting at digit `start`
    /// (0-based, from the left), right-padded to 16 digits with `pad`.
    pub fn from_pan(pan: &Pan, start: usize, len: usize, pad: char) -> Result<Self, CryptoError> {
        let digits = pan.expose().as_bytes();
        let slice = start
            .checked_add(len)
            .and_then(|end| digits.get(start..end))
            .ok_or_else(|| CryptoError::OutOfRange {
                what: "validation data",
                reason: format!(
                    "start {start} and length {len} do not fit a {}-digit PAN",
                    digits.len()
                ),
            })?;
        let nibbles = Zeroizing::new(slice.iter().map(|byte| byte - b'0').collect::<Vec<u8>>());
        Self::padded(&nibbles, pad)
    }
}

impl fmt::Debug for ValidationData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValidationData(***)")
    }
}

/// An IBM 3624 PIN offset of 4 to 12 decimal digits. Zeroized on drop; `Debug` prints
/// only the length; equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PinOffset(Vec<u8>);

impl PinOffset {
    /// Parses an offset of 4 to 12 ASCII digits.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        Ok(Self(decimal_digits(
            "PIN offset",
            text,
            (MIN_PIN_LEN, MAX_PIN_LEN),
        )?))
    }

    /// Number of digits (the PIN check length).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an offset has at least 4 digits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The offset as ASCII digits, zeroized when dropped.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(
            self.0
                .iter()
                .map(|digit| char::from(b'0' + digit))
                .collect(),
        )
    }
}

impl PartialEq for PinOffset {
    fn eq(&self, other: &Self) -> bool {
        digits_match(&self.0, &other.0)
    }
}

impl Eq for PinOffset {}

impl fmt::Debug for PinOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinOffset({} digits, ***)", self.0.len())
    }
}

/// The inputs of the IBM 3624 method other than the PIN: the PVK, the decimalization table
/// and the validation data.
#[derive(Clone, Copy, Debug)]
pub struct Ibm3624<'a> {
    /// PIN verification (generation) key, TDES 16 or 24 bytes.
    pub pvk: &'a SecretBytes,
    /// Decimalization table.
    pub table: &'a DecimalizationTable,
    /// Validation data (usually from the PAN).
    pub validation: &'a ValidationData,
}

impl Ibm3624<'_> {
    /// The 16-digit decimalized intermediate PIN.
    fn intermediate(&self) -> Result<IntermediatePin, CryptoError> {
        check_pvk(self.pvk)?;
        let enciphered = Zeroizing::new(tdes_encrypt_ecb(
            self.pvk.expose(),
            self.validation.block().as_ref(),
        )?);
        IntermediatePin::from_enciphered(&enciphered, self.table)
    }

    /// The natural PIN of `pin_len` digits (4 to 12).
    pub fn natural_pin(&self, pin_len: usize) -> Result<Pin, CryptoError> {
        self.intermediate()?.natural_pin(pin_len)
    }

    /// The customer PIN of `pin_len` digits that `offset` assigns: the natural PIN with the
    /// offset added (modulo 10, no carry) to its rightmost `offset.len()` digits.
    pub fn pin_from_offset(&self, offset: &PinOffset, pin_len: usize) -> Result<Pin, CryptoError> {
        self.intermediate()?.pin_from_offset(offset, pin_len)
    }

    /// The offset for a customer-selected `pin` with a PIN check length of `check_len`
    /// digits (4 to the PIN's length): the rightmost `check_len` digits of the PIN minus
    /// those of the natural PIN, modulo 10 without borrow.
    pub fn generate_offset(&self, pin: &Pin, check_len: usize) -> Result<PinOffset, CryptoError> {
        self.intermediate()?.generate_offset(pin, check_len)
    }

    /// Verifies `pin` against a reference offset: the rightmost `offset.len()` digits of the
    /// natural PIN (of the PIN's length) plus the offset must equal those of `pin`. The
    /// comparison is constant-time; a mismatch is [`CryptoError::VerificationFailed`].
    pub fn verify_offset(&self, pin: &Pin, offset: &PinOffset) -> Result<(), CryptoError> {
        self.intermediate()?.verify_offset(pin, offset)
    }
}

/// The IBM 3624 intermediate PIN: the validation data enciphered under the PVK, decimalized
/// (16 digits). [`Ibm3624`] computes it with a clear PVK; a caller whose PVK stays inside an
/// HSM has the HSM encipher [`ValidationData::block`] and builds it with
/// [`IntermediatePin::from_enciphered`]. Zeroized on drop; `Debug` prints no digit.
#[derive(Clone)]
pub struct IntermediatePin(Zeroizing<[u8; 16]>);

impl fmt::Debug for IntermediatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntermediatePin(***)")
    }
}

impl IntermediatePin {
    /// From the validation data block enciphered under the PVK (8 bytes).
    pub fn from_enciphered(
        enciphered: &[u8],
        table: &DecimalizationTable,
    ) -> Result<Self, CryptoError> {
        if enciphered.len() != 8 {
            return Err(CryptoError::InvalidLength {
                what: "enciphered validation data",
                expected: "8 bytes",
                actual: enciphered.len(),
            });
        }
        let mut digits = unpack_nibbles(enciphered);
        for digit in digits.iter_mut() {
            *digit = table.decimalize(*digit);
        }
        Ok(Self(digits))
    }

    /// The natural PIN of `pin_len` digits (4 to 12).
    pub fn natural_pin(&self, pin_len: usize) -> Result<Pin, CryptoError> {
        check_pin_len(pin_len)?;
        Pin::from_digit_values(self.0[..pin_len].to_vec())
    }

    /// See [`Ibm3624::pin_from_offset`].
    pub fn pin_from_offset(&self, offset: &PinOffset, pin_len: usize) -> Result<Pin, CryptoError> {
        check_pin_len(pin_len)?;
        check_offset_fits(offset.len(), pin_len)?;
        let mut digits = self.0[..pin_len].to_vec();
        let start = pin_len - offset.len();
        for (digit, add) in digits[start..].iter_mut().zip(&offset.0) {
            *digit = (*digit + add) % 10;
        }
        Pin::from_digit_values(digits)
    }

    /// See [`Ibm3624::generate_offset`].
    pub fn generate_offset(&self, pin: &Pin, check_len: usize) -> Result<PinOffset, CryptoError> {
        check_pin_len(check_len).map_err(|_| CryptoError::OutOfRange {
            what: "PIN check length",
            reason: format!("{check_len}, expected {MIN_PIN_LEN} to the PIN length"),
        })?;
        check_offset_fits(check_len, pin.len())?;
        let start = pin.len() - check_len;
        let offset = pin.digit_values()[start..]
            .iter()
            .zip(&self.0[start..pin.len()])
            .map(|(customer, natural)| (customer + 10 - natural) % 10)
            .collect();
        Ok(PinOffset(offset))
    }

    /// See [`Ibm3624::verify_offset`].
    pub fn verify_offset(&self, pin: &Pin, offset: &PinOffset) -> Result<(), CryptoError> {
        let expected = self.pin_from_offset(offset, pin.len())?;
        let start = pin.len() - offset.len();
        if digits_match(
            &expected.digit_values()[start..],
            &pin.digit_values()[start..],
        ) {
            Ok(())
        } else {
            Err(CryptoError::VerificationFailed("PIN offset"))
        }
    }
}

fn check_pin_len(pin_len: usize) -> Result<(), CryptoError> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin_len) {
        Ok(())
    } else {
        Err(CryptoError::OutOfRange {
            what: "PIN length",
            reason: format!("{pin_len}, expected {MIN_PIN_LEN} to {MAX_PIN_LEN}"),
        })
    }
}

fn check_offset_fits(offset_len: usize, pin_len: usize) -> Result<(), CryptoError> {
    if offset_len <= pin_len {
        Ok(())
    } else {
        Err(CryptoError::OutOfRange {
            what: "PIN offset",
            reason: format!("{offset_len} digits, longer than the {pin_len}-digit PIN"),
        })
    }
}

/// IBM 3624 natural PIN of `pin_len` digits. See [`Ibm3624::natural_pin`].
pub fn ibm3624_natural_pin(
    pvk: &SecretBytes,
    table: &DecimalizationTable,
    validation: &ValidationData,
    pin_len: usize,
) -> Result<Pin, CryptoError> {
    Ibm3624 {
        pvk,
        table,
        validation,
    }
    .natural_pin(pin_len)
}

/// IBM 3624 PIN offset of `check_len` digits for a customer-selected PIN. See
/// [`Ibm3624::generate_offset`].
pub fn generate_ibm3624_offset(
    pvk: &SecretBytes,
    table: &DecimalizationTable,
    validation: &ValidationData,
    pin: &Pin,
    check_len: usize,
) -> Result<PinOffset, CryptoError> {
    Ibm3624 {
        pvk,
        table,
        validation,
    }
    .generate_offset(pin, check_len)
}

/// Verifies a PIN against an IBM 3624 PIN offset. See [`Ibm3624::verify_offset`].
pub fn verify_ibm3624_offset(
    pvk: &SecretBytes,
    table: &DecimalizationTable,
    validation: &ValidationData,
    pin: &Pin,
    offset: &PinOffset,
) -> Result<(), CryptoError> {
    Ibm3624 {
        pvk,
        table,
        validation,
    }
    .verify_offset(pin, offset)
}

// ---------------------------------------------------------------------------------------
// Random PINs
// ---------------------------------------------------------------------------------------

/// A uniformly random PIN of `len` digits (4 to 12) drawn from `rng`.
pub fn random_pin<R: RngCore + ?Sized>(len: usize, rng: &mut R) -> Result<Pin, CryptoError> {
    check_pin_len(len)?;
    let digits = (0..len).map(|_| rng.gen_range(0..10_u8)).collect();
    Pin::from_digit_values(digits)
}

/// A random PIN of `len` digits and its Visa PVV.
pub fn generate_random_pin_with_pvv<R: RngCore + ?Sized>(
    pvk: &SecretBytes,
    pan: &Pan,
    pvki: Pvki,
    len: usize,
    rng: &mut R,
) -> Result<(Pin, Pvv), CryptoError> {
    let pin = random_pin(len, rng)?;
    let pvv = generate_pvv(pvk, pan, pvki, &pin)?;
    Ok((pin, pvv))
}

/// A random PIN of `len` digits and its IBM 3624 offset (check length = `len`).
pub fn generate_random_pin_with_offset<R: RngCore + ?Sized>(
    ibm: &Ibm3624<'_>,
    len: usize,
    rng: &mut R,
) -> Result<(Pin, PinOffset), CryptoError> {
    let pin = random_pin(len, rng)?;
    let offset = ibm.generate_offset(&pin, len)?;
    Ok((pin, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visa_decimalize_scans_twice() {
        // All letters: the second scan takes A–F minus 10.
        let nibbles = [
            0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0xA, 0xB, 0xC, 0xD,
        ];
        assert_eq!(visa_decimalize::<4>(&nibbles), [0, 1, 2, 3]);
        // Two decimal digits, then letters from the left.
        let nibbles = [
            0xF, 7, 0xE, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 3,
        ];
        assert_eq!(visa_decimalize::<4>(&nibbles), [7, 3, 5, 4]);
    }

    #[test]
    fn nibble_packing_round_trips() {
        let nibbles = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0];
        let packed = pack_nibbles(&nibbles);
        assert_eq!(*packed, [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]);
        assert_eq!(*unpack_nibbles(packed.as_ref()), nibbles);
    }

    #[test]
    fn debug_hides_verification_data() {
        let pvv = Pvv::parse("1234").expect("pvv");
        assert_eq!(format!("{pvv:?}"), "Pvv(****)");
        let offset = PinOffset::parse("9876").expect("offset");
        assert_eq!(format!("{offset:?}"), "PinOffset(4 digits, ***)");
        let data = ValidationData::parse("4111111111111111", 'F').expect("data");
        assert_eq!(format!("{data:?}"), "ValidationData(***)");
    }
}
