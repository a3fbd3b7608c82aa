//! EMV: ICC master key derivation (options A and B), session keys, ARQC and ARPC.
//!
//! References: EMV Book 2 (v4.3/4.4) Annex A1.3 (common session key derivation), A1.4.1
//! (master key derivation option A), A1.4.2 (option B, SHA-1 based, for PANs longer than 16
//! digits), section 8.1 (application cryptograms: ISO 9797-1 MAC algorithm 3 over the CDOL
//! data) and 8.2 (ARPC methods 1 and 2).
//!
//! All keys here are double-length TDES keys (16 bytes); derived keys get odd DES parity.
//! Derived keys are [`SecretBytes`].

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::mac::{MacAlgorithm, Padding};
use crate::pin::Pan;
use crate::primitives::{tdes_encrypt_ecb, xor_in_place};
use crate::{CryptoError, SecretBytes};

fn check_tdes_key(what: &'static str, key: &SecretBytes) -> Result<(), CryptoError> {
    if key.len() != 16 {
        return Err(CryptoError::InvalidLength {
            what,
            expected: "16 bytes",
            actual: key.len(),
        });
    }
    Ok(())
}

/// Sets odd parity on every byte (DES key parity, least significant bit).
fn set_odd_parity(key: &mut [u8]) {
    for byte in key {
        let ones = (*byte & 0xFE).count_ones();
        *byte = (*byte & 0xFE) | u8::from(ones.is_multiple_of(2));
    }
}

fn psn_digits(psn: Option<&str>) -> Result<&str, CryptoError> {
    let psn = psn.unwrap_or("00");
    if psn.len() != 2 || !psn.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CryptoError::format(
            "PAN sequence number",
            "expected 2 decimal digits",
        ));
    }
    Ok(psn)
}

/// Option A core: Y (8 bytes) → TDES(IMK, Y) ‖ TDES(IMK, Y XOR FF…FF), odd parity.
fn mk_from_y(imk: &SecretBytes, y: &[u8]) -> Result<SecretBytes, CryptoError> {
    let mut data = Zeroizing::new([0_u8; 16]);
    data[..8].copy_from_slice(y);
    data[8..].copy_from_slice(y);
    xor_in_place(&mut data[8..], &[0xFF; 8]);
    let mut key = Zeroizing::new(tdes_encrypt_ecb(imk.expose(), data.as_ref())?);
    set_odd_parity(&mut key);
    Ok(SecretBytes::from_slice(&key))
}

/// ICC master key derivation option A (EMV Book 2 A1.4.1): Y is the rightmost 16 digits of
/// PAN ‖ PSN (zero-padded on the left if shorter); the key is TDES(IMK, Y) ‖ TDES(IMK, Y ⊕ FF…FF)
/// with odd parity. `psn` is the 2-digit PAN sequence number, `None` meaning `00`.
pub fn derive_icc_mk_option_a(
    imk: &SecretBytes,
    pan: &Pan,
    psn: Option<&str>,
) -> Result<SecretBytes, CryptoError> {
    check_tdes_key("issuer master key", imk)?;
    let psn = psn_digits(psn)?;
    let mut digits = Zeroizing::new(String::with_capacity(21));
    digits.push_str(pan.expose());
    digits.push_str(psn);
    let start = digits.len().saturating_sub(16);
    let mut y_text = Zeroizing::new("0".repeat(16 - (digits.len() - start)));
    y_text.push_str(&digits[start..]);
    let y =
        Zeroizing::new(hex::decode(y_text.as_bytes()).map_err(|_| CryptoError::InvalidHex("PAN"))?);
    mk_from_y(imk, &y)
}

/// ICC master key derivation option B (EMV Book 2 A1.4.2) for PANs of 17 to 19 digits:
/// SHA-1 over PAN ‖ PSN (left-padded to an even number of digits, as BCD), decimalized (the
/// decimal digits of the hex digest in order, then if needed its letters a–f as 0–5), the
/// first 16 digits are Y, then as option A. PANs of 16 digits or fewer use option A, as the
/// standard specifies.
pub fn derive_icc_mk_option_b(
    imk: &SecretBytes,
    pan: &Pan,
    psn: Option<&str>,
) -> Result<SecretBytes, CryptoError> {
    check_tdes_key("issuer master key", imk)?;
    if pan.len() <= 16 {
        return derive_icc_mk_option_a(imk, pan, psn);
    }
    let psn = psn_digits(psn)?;
    let mut digits = Zeroizing::new(String::with_capacity(22));
    if (pan.len() + psn.len()) % 2 == 1 {
        digits.push('0');
    }
    digits.push_str(pan.expose());
    digits.push_str(psn);
    let bcd =
        Zeroizing::new(hex::decode(digits.as_bytes()).map_err(|_| CryptoError::InvalidHex("PAN"))?);
    let digest = Zeroizing::new(hex::encode(Sha1::digest(bcd.as_slice())));
    let mut y_text = Zeroizing::new(String::with_capacity(16));
    y_text.extend(digest.chars().filter(char::is_ascii_digit).take(16));
    let missing = 16 - y_text.len();
    y_text.extend(
        digest
            .bytes()
            .filter(|byte| (b'a'..=b'f').contains(byte))
            .take(missing)
            .map(|byte| char::from(byte - b'a' + b'0')),
    );
    let y =
        Zeroizing::new(hex::decode(y_text.as_bytes()).map_err(|_| CryptoError::InvalidHex("PAN"))?);
    if y.len() != 8 {
        return Err(CryptoError::format(
            "option B",
            "hash did not yield 16 digits",
        ));
    }
    mk_from_y(imk, &y)
}

/// Common session key derivation (EMV Book 2 A1.3): with the 8-byte diversification value
/// R, SK = TDES(MK, R with byte 3 = F0) ‖ TDES(MK, R with byte 3 = 0F), odd parity.
pub fn derive_session_key_csk(
    icc_mk: &SecretBytes,
    r: &[u8; 8],
) -> Result<SecretBytes, CryptoError> {
    check_tdes_key("ICC master key", icc_mk)?;
    let mut data = Zeroizing::new([0_u8; 16]);
    data[..8].copy_from_slice(r);
    data[8..].copy_from_slice(r);
    data[2] = 0xF0;
    data[10] = 0x0F;
    let mut key = Zeroizing::new(tdes_encrypt_ecb(icc_mk.expose(), data.as_ref())?);
    set_odd_parity(&mut key);
    Ok(SecretBytes::from_slice(&key))
}

/// How the application cryptogram session key is obtained from the ICC master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKeyDerivation {
    /// No session key: the ICC master key is used directly (Visa CVN 10).
    None,
    /// EMV common session key with R = ATC ‖ 00 00 00 00 00 00 (EMV CSK, Visa CVN 18/22).
    EmvCsk {
        /// Application transaction counter (tag 9F36).
        atc: [u8; 2],
    },
    /// Mastercard SKD: CSK with R = ATC ‖ 00 00 ‖ unpredictable number (M/Chip CVN 16/17).
    MastercardSkd {
        /// Application transaction counter (tag 9F36).
        atc: [u8; 2],
        /// Unpredictable number (tag 9F37).
        un: [u8; 4],
    },
}

/// Derives the application cryptogram session key.
pub fn derive_ac_session_key(
    icc_mk: &SecretBytes,
    derivation: SessionKeyDerivation,
) -> Result<SecretBytes, CryptoError> {
    check_tdes_key("ICC master key", icc_mk)?;
    match derivation {
        SessionKeyDerivation::None => Ok(icc_mk.clone()),
        SessionKeyDerivation::EmvCsk { atc } => {
            derive_session_key_csk(icc_mk, &[atc[0], atc[1], 0, 0, 0, 0, 0, 0])
        }
        SessionKeyDerivation::MastercardSkd { atc, un } => {
            derive_session_key_csk(icc_mk, &[atc[0], atc[1], 0, 0, un[0], un[1], un[2], un[3]])
        }
    }
}

/// Computes an application cryptogram (ARQC, TC or AAC): ISO 9797-1 MAC algorithm 3 under the
/// session key over the CDOL data, with padding method 2 (EMV) or method 1 (Visa CVN 10).
pub fn generate_ac(
    session_key: &SecretBytes,
    data: &[u8],
    padding: Padding,
) -> Result<[u8; 8], CryptoError> {
    check_tdes_key("AC session key", session_key)?;
    let mac = MacAlgorithm::Iso9797Alg3(padding).generate(session_key, data, 8)?;
    let mut out = [0_u8; 8];
    out.copy_from_slice(&mac);
    Ok(out)
}

/// Verifies an application cryptogram in constant time ([`CryptoError::VerificationFailed`]
/// on mismatch).
pub fn verify_ac(
    session_key: &SecretBytes,
    data: &[u8],
    padding: Padding,
    cryptogram: &[u8],
) -> Result<(), CryptoError> {
    if cryptogram.len() != 8 {
        return Err(CryptoError::InvalidLength {
            what: "application cryptogram",
            expected: "8 bytes",
            actual: cryptogram.len(),
        });
    }
    let expected = generate_ac(session_key, data, padding)?;
    if bool::from(expected.ct_eq(cryptogram)) {
        Ok(())
    } else {
        Err(CryptoError::VerificationFailed("ARQC"))
    }
}

/// Visa CVN 10 ARQC: no session key (ICC master key), padding method 1 (zeros).
pub fn visa_cvn10_arqc(icc_mk: &SecretBytes, data: &[u8]) -> Result<[u8; 8], CryptoError> {
    generate_ac(icc_mk, data, Padding::Method1)
}

/// Visa CVN 18 ARQC: EMV common session key from the ATC, padding method 2.
pub fn visa_cvn18_arqc(
    icc_mk: &SecretBytes,
    atc: [u8; 2],
    data: &[u8],
) -> Result<[u8; 8], CryptoError> {
    let sk = derive_ac_session_key(icc_mk, SessionKeyDerivation::EmvCsk { atc })?;
    generate_ac(&sk, data, Padding::Method2)
}

/// ARPC method 1 (EMV Book 2 8.2.1): TDES(key, ARQC ⊕ (ARC ‖ 00…00)), with the 2-byte
/// authorisation response code. `key` is the ICC master key or the session key, as the
/// card's scheme prescribes.
pub fn arpc_method1(
    key: &SecretBytes,
    arqc: &[u8; 8],
    arc: &[u8; 2],
) -> Result<[u8; 8], CryptoError> {
    check_tdes_key("ARPC key", key)?;
    let mut block = *arqc;
    xor_in_place(&mut block[..2], arc);
    let enciphered = tdes_encrypt_ecb(key.expose(), &block)?;
    let mut out = [0_u8; 8];
    out.copy_from_slice(&enciphered);
    Ok(out)
}

/// ARPC method 2 (EMV Book 2 8.2.2): the leftmost 4 bytes of MAC algorithm 3 (padding
/// method 2) under the session key over ARQC ‖ CSU ‖ proprietary authentication data
/// (0 to 8 bytes).
pub fn arpc_method2(
    session_key: &SecretBytes,
    arqc: &[u8; 8],
    csu: &[u8; 4],
    proprietary: &[u8],
) -> Result<[u8; 4], CryptoError> {
    check_tdes_key("ARPC key", session_key)?;
    if proprietary.len() > 8 {
        return Err(CryptoError::InvalidLength {
            what: "proprietary authentication data",
            expected: "0 to 8 bytes",
            actual: proprietary.len(),
        });
    }
    let mut data = Vec::with_capacity(20);
    data.extend_from_slice(arqc);
    data.extend_from_slice(csu);
    data.extend_from_slice(proprietary);
    let mac = MacAlgorithm::Iso9797Alg3(Padding::Method2).generate(session_key, &data, 4)?;
    let mut out = [0_u8; 4];
    out.copy_from_slice(&mac);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_is_odd() {
        let mut key = [0_u8, 1, 2, 3, 0xFE, 0xFF];
        set_odd_parity(&mut key);
        assert!(key.iter().all(|byte| byte.count_ones() % 2 == 1));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let imk = SecretBytes::new(vec![1; 8]);
        let pan = Pan::new("1234567890123456").expect("pan");
        assert!(derive_icc_mk_option_a(&imk, &pan, None).is_err());
        let imk = SecretBytes::new(vec![1; 16]);
        assert!(derive_icc_mk_option_a(&imk, &pan, Some("1")).is_err());
        assert!(derive_icc_mk_option_a(&imk, &pan, Some("1a")).is_err());
        assert!(arpc_method2(&imk, &[0; 8], &[0; 4], &[0; 9]).is_err());
        assert!(verify_ac(&imk, b"x", Padding::Method2, &[0; 7]).is_err());
    }
}
