//! Key check values (KCV): TDES and AES, "encrypt zeros" and CMAC forms.
//!
//! Two methods exist (ANSI X9.24-1:2017, PCI PIN requirement 15-1, AWS Payment
//! Cryptography `KeyCheckValueAlgorithm`):
//!
//! * [`KcvMethod::EncryptZeros`] (AWS `ANSI_X9_24`, TR-31 `KC`/`KP` algorithm `00`): encrypt
//!   one block of binary zeros under the key in ECB mode and keep the leftmost bytes. The usual
//!   method for DES and TDES keys, and the legacy form for AES keys.
//! * [`KcvMethod::Cmac`] (AWS `CMAC`, TR-31 algorithm `01`): the CMAC (NIST SP 800-38B) of one
//!   block of binary zeros (16 bytes for AES, 8 bytes for TDES) under the key, leftmost bytes.
//!   X9.24-1:2017 requires this method for AES keys.
//!
//! The usual KCV is 3 bytes (6 hex digits); [`check_value`] returns up to a whole block for
//! formats that carry longer check values (TR-31 `KP` blocks carry 5 bytes).

use std::fmt;

use aes::{Aes128, Aes192, Aes256};
use cmac::{Cmac, Mac};
use des::{TdesEde2, TdesEde3};
use subtle::ConstantTimeEq;

use crate::primitives::{
    AES_BLOCK, DES_BLOCK, aes_encrypt_ecb, des_encrypt_block, tdes_encrypt_ecb,
};
use crate::{CryptoError, SecretBytes};

/// The usual length of a key check value in bytes (6 hex digits).
pub const KCV_LEN: usize = 3;

/// The block cipher a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Single-length DES (8 bytes).
    Des,
    /// TDES: double length (16 bytes, K1‖K2) or triple length (24 bytes).
    Tdes,
    /// AES-128, AES-192 or AES-256 (16, 24 or 32 bytes).
    Aes,
}

impl KeyAlgorithm {
    /// The cipher's block size in bytes.
    pub fn block_size(self) -> usize {
        match self {
            Self::Des | Self::Tdes => DES_BLOCK,
            Self::Aes => AES_BLOCK,
        }
    }
}

/// How a key check value is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KcvMethod {
    /// Encrypt one block of binary zeros (ECB) and keep the leftmost bytes. X9.24-1 "first
    /// method"; AWS Payment Cryptography `ANSI_X9_24`; legacy for AES.
    EncryptZeros,
    /// CMAC of one block of binary zeros, leftmost bytes. X9.24-1:2017 "second method"; AWS
    /// Payment Cryptography `CMAC`; the only method X9.24-1:2017 allows for AES.
    Cmac,
}

impl KcvMethod {
    /// The method the standards expect by default for `algorithm`: CMAC for AES, encrypt
    /// zeros for DES and TDES.
    pub fn default_for(algorithm: KeyAlgorithm) -> Self {
        match algorithm {
            KeyAlgorithm::Aes => Self::Cmac,
            KeyAlgorithm::Des | KeyAlgorithm::Tdes => Self::EncryptZeros,
        }
    }
}

/// A 3-byte key check value. Not secret; displays as upper-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv([u8; KCV_LEN]);

impl Kcv {
    /// Wraps three bytes.
    pub fn new(bytes: [u8; KCV_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses 6 hex digits (either case, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(text.trim()).map_err(|_| CryptoError::InvalidHex("KCV"))?;
        let array: [u8; KCV_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::InvalidLength {
                    what: "KCV",
                    expected: "3 bytes (6 hex digits)",
                    actual: bytes.len(),
                })?;
        Ok(Self(array))
    }

    /// The three bytes.
    pub fn as_bytes(&self) -> &[u8; KCV_LEN] {
        &self.0
    }

    /// Upper-case hex (6 digits).
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }
}

impl fmt::Display for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kcv({})", self.to_hex())
    }
}

impl std::str::FromStr for Kcv {
    type Err = CryptoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

fn check_key_length(algorithm: KeyAlgorithm, key: &[u8]) -> Result<(), CryptoError> {
    let (ok, what, expected) = match algorithm {
        KeyAlgorithm::Des => (key.len() == 8, "DES key", "8 bytes"),
        KeyAlgorithm::Tdes => (matches!(key.len(), 16 | 24), "TDES key", "16 or 24 bytes"),
        KeyAlgorithm::Aes => (
            matches!(key.len(), 16 | 24 | 32),
            "AES key",
            "16, 24 or 32 bytes",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(CryptoError::InvalidLength {
            what,
            expected,
            actual: key.len(),
        })
    }
}

fn cmac_zero_block<M: Mac + cmac::digest::KeyInit>(
    key: &[u8],
    block: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut mac = <M as cmac::digest::KeyInit>::new_from_slice(key).map_err(|_| {
        CryptoError::InvalidLength {
            what: "CMAC key",
            expected: "a key of the cipher's length",
            actual: key.len(),
        }
    })?;
    mac.update(&vec![0_u8; block]);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// The full check block: the encryption or the CMAC of one zero block (8 bytes for DES and
/// TDES, 16 for AES). Not secret in itself, but only its leftmost bytes are meant to be shown.
fn full_check_block(
    key: &[u8],
    algorithm: KeyAlgorithm,
    method: KcvMethod,
) -> Result<Vec<u8>, CryptoError> {
    check_key_length(algorithm, key)?;
    match (algorithm, method) {
        (KeyAlgorithm::Des, KcvMethod::EncryptZeros) => {
            let mut single = [0_u8; 8];
            single.copy_from_slice(key);
            let out = des_encrypt_block(&single, &[0; DES_BLOCK]).to_vec();
            zeroize::Zeroize::zeroize(&mut single);
            Ok(out)
        }
        (KeyAlgorithm::Des, KcvMethod::Cmac) => Err(CryptoError::Unsupported(
            "CMAC key check values for single-length DES keys".into(),
        )),
        (KeyAlgorithm::Tdes, KcvMethod::EncryptZeros) => tdes_encrypt_ecb(key, &[0; DES_BLOCK]),
        (KeyAlgorithm::Tdes, KcvMethod::Cmac) => match key.len() {
            16 => cmac_zero_block::<Cmac<TdesEde2>>(key, DES_BLOCK),
            _ => cmac_zero_block::<Cmac<TdesEde3>>(key, DES_BLOCK),
        },
        (KeyAlgorithm::Aes, KcvMethod::EncryptZeros) => aes_encrypt_ecb(key, &[0; AES_BLOCK]),
        (KeyAlgorithm::Aes, KcvMethod::Cmac) => match key.len() {
            16 => cmac_zero_block::<Cmac<Aes128>>(key, AES_BLOCK),
            24 => cmac_zero_block::<Cmac<Aes192>>(key, AES_BLOCK),
            _ => cmac_zero_block::<Cmac<Aes256>>(key, AES_BLOCK),
        },
    }
}

/// The leftmost `length` bytes of the check block (1 up to the block size: 8 for DES/TDES,
/// 16 for AES). Use [`kcv`] for the usual 3 bytes.
///
/// Errors: [`CryptoError::InvalidLength`] for a key of the wrong length,
/// [`CryptoError::OutOfRange`] for `length` 0 or longer than a block,
/// [`CryptoError::Unsupported`] for CMAC with single-length DES.
pub fn check_value(
    key: &SecretBytes,
    algorithm: KeyAlgorithm,
    method: KcvMethod,
    length: usize,
) -> Result<Vec<u8>, CryptoError> {
    if length == 0 || length > algorithm.block_size() {
        return Err(CryptoError::OutOfRange {
            what: "check value length",
            reason: format!("{length} bytes; 1 to {} accepted", algorithm.block_size()),
        });
    }
    let mut block = full_check_block(key.expose(), algorithm, method)?;
    block.truncate(length);
    Ok(block)
}

/// The 3-byte key check value of `key` by `method`.
pub fn kcv(
    key: &SecretBytes,
    algorithm: KeyAlgorithm,
    method: KcvMethod,
) -> Result<Kcv, CryptoError> {
    let block = full_check_block(key.expose(), algorithm, method)?;
    let mut out = [0_u8; KCV_LEN];
    out.copy_from_slice(&block[..KCV_LEN]);
    Ok(Kcv(out))
}

/// KCV of a single-length DES key (encrypt 8 zero bytes, first 3 bytes).
pub fn des_kcv(key: &SecretBytes) -> Result<Kcv, CryptoError> {
    kcv(key, KeyAlgorithm::Des, KcvMethod::EncryptZeros)
}

/// KCV of a TDES key (encrypt 8 zero bytes, first 3 bytes; X9.24-1 first method).
pub fn tdes_kcv(key: &SecretBytes) -> Result<Kcv, CryptoError> {
    kcv(key, KeyAlgorithm::Tdes, KcvMethod::EncryptZeros)
}

/// KCV of an AES key by CMAC of 16 zero bytes (first 3 bytes; X9.24-1:2017, AWS `CMAC`).
pub fn aes_kcv_cmac(key: &SecretBytes) -> Result<Kcv, CryptoError> {
    kcv(key, KeyAlgorithm::Aes, KcvMethod::Cmac)
}

/// Legacy KCV of an AES key: encrypt 16 zero bytes (ECB), first 3 bytes.
pub fn aes_kcv_encrypt_zeros(key: &SecretBytes) -> Result<Kcv, CryptoError> {
    kcv(key, KeyAlgorithm::Aes, KcvMethod::EncryptZeros)
}

/// Checks a received check value (1 byte up to a block, e.g. 3 or 5 bytes) against `key`, in
/// constant time. Fails with [`CryptoError::VerificationFailed`] when it does not match.
pub fn verify_check_value(
    key: &SecretBytes,
    algorithm: KeyAlgorithm,
    method: KcvMethod,
    expected: &[u8],
) -> Result<(), CryptoError> {
    let actual = check_value(key, algorithm, method, expected.len())?;
    if bool::from(actual.ct_eq(expected)) {
        Ok(())
    } else {
        Err(CryptoError::VerificationFailed("key check value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_key_lengths_are_typed_errors() {
        let key = SecretBytes::new(vec![0; 15]);
        for algorithm in [KeyAlgorithm::Des, KeyAlgorithm::Tdes, KeyAlgorithm::Aes] {
            for method in [KcvMethod::EncryptZeros, KcvMethod::Cmac] {
                assert!(
                    matches!(
                        kcv(&key, algorithm, method),
                        Err(CryptoError::InvalidLength { .. })
                    ),
                    "{algorithm:?} {method:?}"
                );
            }
        }
    }

    #[test]
    fn check_value_length_bounds() {
        let key = SecretBytes::new(vec![1; 16]);
        assert!(matches!(
            check_value(&key, KeyAlgorithm::Tdes, KcvMethod::EncryptZeros, 0),
            Err(CryptoError::OutOfRange { .. })
        ));
        assert!(matches!(
            check_value(&key, KeyAlgorithm::Tdes, KcvMethod::EncryptZeros, 9),
            Err(CryptoError::OutOfRange { .. })
        ));
        assert_eq!(
            check_value(&key, KeyAlgorithm::Aes, KcvMethod::Cmac, 16).map(|v| v.len()),
            Ok(16)
        );
    }
}
