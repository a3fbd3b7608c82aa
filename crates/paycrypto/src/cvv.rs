//! Card validation values: CVV/CVC, CVV2, iCVV (the Visa CVV method, also used for Mastercard CVC).
//!
//! Input: the PAN, the expiry date (4 digits, normally YYMM — pass MMYY if the issuer uses it)
//! and the service code (3 digits; `000` for CVV2, `999` for iCVV), concatenated and
//! right-padded with zeros to 32 nibbles. Block 1 (left 8 bytes) is DES-enciphered under
//! CVK A, XORed with block 2, then enciphered with TDES under CVK A‖CVK B. The result is
//! decimalized: first its decimal digits left to right, then its hex digits A–F minus 10;
//! the CVV is the leftmost 3 digits.
//!
//! CVV values are sensitive authentication data: they are returned in [`Zeroizing`] strings.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::pin::Pan;
use crate::primitives::{des_encrypt_block, tdes_encrypt_ecb, xor_in_place};
use crate::{CryptoError, SecretBytes};

/// Service code used for CVV2 (the value printed on the card).
pub const CVV2_SERVICE_CODE: &str = "000";
/// Service code used for iCVV (the CVV in chip track-2 equivalent data).
pub const ICVV_SERVICE_CODE: &str = "999";

fn digits(what: &'static str, text: &str, len: usize) -> Result<(), CryptoError> {
    if text.len() != len || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CryptoError::format(
            what,
            format!("expected {len} decimal digits"),
        ));
    }
    Ok(())
}

/// Computes a card verification value of `len` digits (1 to 16; 3 for CVV/CVV2/iCVV).
///
/// `cvk` is CVK A‖CVK B (16 bytes).
pub fn generate_cvv_digits(
    cvk: &SecretBytes,
    pan: &Pan,
    expiry: &str,
    service_code: &str,
    len: usize,
) -> Result<Zeroizing<String>, CryptoError> {
    if cvk.len() != 16 {
        return Err(CryptoError::InvalidLength {
            what: "CVK pair",
            expected: "16 bytes",
            actual: cvk.len(),
        });
    }
    digits("expiry date", expiry, 4)?;
    digits("service code", service_code, 3)?;
    if !(1..=16).contains(&len) {
        return Err(CryptoError::OutOfRange {
            what: "CVV length",
            reason: format!("{len}, expected 1 to 16"),
        });
    }
    let mut text = Zeroizing::new(String::with_capacity(32));
    text.push_str(pan.expose());
    text.push_str(expiry);
    text.push_str(service_code);
    while text.len() < 32 {
        text.push('0');
    }
    // PAN (≤ 19) + 4 + 3 ≤ 26 nibbles, all decimal: the hex decode cannot fail.
    let data = Zeroizing::new(
        hex::decode(text.as_bytes()).map_err(|_| CryptoError::InvalidHex("CVV data"))?,
    );
    let mut cvk_a = Zeroizing::new([0_u8; 8]);
    cvk_a.copy_from_slice(&cvk.expose()[..8]);
    let mut block1 = Zeroizing::new([0_u8; 8]);
    block1.copy_from_slice(&data[..8]);
    let mut chained = Zeroizing::new(des_encrypt_block(&cvk_a, &block1));
    xor_in_place(chained.as_mut(), &data[8..16]);
    let result = Zeroizing::new(tdes_encrypt_ecb(cvk.expose(), chained.as_ref())?);
    let hex_text = Zeroizing::new(hex::encode_upper(result.as_slice()));
    let mut out = Zeroizing::new(String::with_capacity(16));
    out.extend(hex_text.chars().filter(char::is_ascii_digit));
    out.extend(
        hex_text
            .bytes()
            .filter(|byte| (b'A'..=b'F').contains(byte))
            .map(|byte| char::from(byte - b'A' + b'0')),
    );
    out.truncate(len);
    Ok(out)
}

/// Computes the 3-digit CVV/CVC (magnetic stripe) for the card's service code.
pub fn generate_cvv(
    cvk: &SecretBytes,
    pan: &Pan,
    expiry: &str,
    service_code: &str,
) -> Result<Zeroizing<String>, CryptoError> {
    generate_cvv_digits(cvk, pan, expiry, service_code, 3)
}

/// Computes the CVV2 (service code `000`).
pub fn generate_cvv2(
    cvk: &SecretBytes,
    pan: &Pan,
    expiry: &str,
) -> Result<Zeroizing<String>, CryptoError> {
    generate_cvv(cvk, pan, expiry, CVV2_SERVICE_CODE)
}

/// Computes the iCVV (service code `999`).
pub fn generate_icvv(
    cvk: &SecretBytes,
    pan: &Pan,
    expiry: &str,
) -> Result<Zeroizing<String>, CryptoError> {
    generate_cvv(cvk, pan, expiry, ICVV_SERVICE_CODE)
}

/// Verifies a CVV of any supported length (its length is the number of digits compared) in
/// constant time; a mismatch is [`CryptoError::VerificationFailed`].
pub fn verify_cvv(
    cvk: &SecretBytes,
    pan: &Pan,
    expiry: &str,
    service_code: &str,
    cvv: &str,
) -> Result<(), CryptoError> {
    if cvv.is_empty() || cvv.len() > 16 || !cvv.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CryptoError::format(
            "CVV",
            "expected 1 to 16 decimal digits",
        ));
    }
    let expected = generate_cvv_digits(cvk, pan, expiry, service_code, cvv.len())?;
    if bool::from(expected.as_bytes().ct_eq(cvv.as_bytes())) {
        Ok(())
    } else {
        Err(CryptoError::VerificationFailed("CVV"))
    }
}

/// Verifies a CVV2 (service code `000`).
pub fn verify_cvv2(
    cvk: &SecretBytes,
    pan: &Pan,
    expiry: &str,
    cvv2: &str,
) -> Result<(), CryptoError> {
    verify_cvv(cvk, pan, expiry, CVV2_SERVICE_CODE, cvv2)
}

/// Verifies an iCVV (service code `999`).
pub fn verify_icvv(
    cvk: &SecretBytes,
    pan: &Pan,
    expiry: &str,
    icvv: &str,
) -> Result<(), CryptoError> {
    verify_cvv(cvk, pan, expiry, ICVV_SERVICE_CODE, icvv)
}
