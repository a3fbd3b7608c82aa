//! MACs: ISO 9797-1 algorithms 1 and 3 (padding methods 1, 2, 3), AES-CMAC, TDES-CMAC, HMAC-SHA-256.
//!
//! * [`MacAlgorithm::Iso9797Alg1`]: CBC-MAC (zero IV) with single DES (8-byte key) or TDES
//!   (16- or 24-byte key) as the block cipher.
//! * [`MacAlgorithm::Iso9797Alg3`]: the retail MAC of ANSI X9.19: single-DES CBC under K1,
//!   then the last block is DES-decrypted under K2 and DES-encrypted under K1 (16-byte key K1‖K2).
//! * [`MacAlgorithm::AesCmac`] and [`MacAlgorithm::TdesCmac`]: NIST SP 800-38B (RFC 4493 for AES).
//! * [`MacAlgorithm::HmacSha256`]: RFC 2104 / FIPS 198-1 with SHA-256.
//!
//! Every MAC can be truncated to its leftmost bytes (`mac_len`, from 4 bytes to the full
//! output). Verification recomputes the MAC and compares in constant time; a mismatch is
//! [`CryptoError::VerificationFailed`].

use cmac::{Cmac, Mac};
use des::{TdesEde2, TdesEde3};
use hmac::Hmac;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::primitives::{
    DES_BLOCK, des_decrypt_block, des_encrypt_block, tdes_encrypt_ecb, xor_in_place,
};
use crate::{CryptoError, SecretBytes};

/// Shortest MAC this module produces or accepts (32 bits, the usual payment truncation).
pub const MIN_MAC_LEN: usize = 4;

/// ISO/IEC 9797-1 padding methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Method 1: append zero bytes up to a block boundary (empty data becomes one zero block).
    Method1,
    /// Method 2: append 0x80, then zero bytes up to a block boundary (ISO/IEC 7816-4 padding).
    Method2,
    /// Method 3: prefix a block holding the data length in bits (big-endian), then pad the
    /// data with zero bytes up to a block boundary (no padding when already aligned).
    Method3,
}

/// Pads `data` to a multiple of `block` bytes with the given ISO 9797-1 method.
///
/// `block` must be 8 or 16 (the only block sizes used here); other values are an error.
pub fn pad(data: &[u8], block: usize, padding: Padding) -> Result<Vec<u8>, CryptoError> {
    if block != 8 && block != 16 {
        return Err(CryptoError::InvalidLength {
            what: "padding block size",
            expected: "8 or 16 bytes",
            actual: block,
        });
    }
    let zero_fill = |out: &mut Vec<u8>| {
        while !out.len().is_multiple_of(block) {
            out.push(0);
        }
    };
    match padding {
        Padding::Method1 => {
            let mut out = data.to_vec();
            if out.is_empty() {
                out.resize(block, 0);
            }
            zero_fill(&mut out);
            Ok(out)
        }
        Padding::Method2 => {
            let mut out = Vec::with_capacity(data.len() + block);
            out.extend_from_slice(data);
            out.push(0x80);
            zero_fill(&mut out);
            Ok(out)
        }
        Padding::Method3 => {
            let bits = u64::try_from(data.len())
                .ok()
                .and_then(|len| len.checked_mul(8))
                .ok_or_else(|| CryptoError::OutOfRange {
                    what: "MAC data",
                    reason: "too long".into(),
                })?;
            let mut out = vec![0_u8; block - 8];
            out.extend_from_slice(&bits.to_be_bytes());
            out.extend_from_slice(data);
            zero_fill(&mut out);
            Ok(out)
        }
    }
}

/// A MAC algorithm and, for the ISO 9797-1 ones, its padding method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    /// ISO 9797-1 MAC algorithm 1 (CBC-MAC, zero IV); DES for 8-byte keys, TDES for 16/24-byte keys.
    Iso9797Alg1(Padding),
    /// ISO 9797-1 MAC algorithm 3 / ANSI X9.19 retail MAC; 16-byte key K1‖K2.
    Iso9797Alg3(Padding),
    /// AES-CMAC (NIST SP 800-38B, RFC 4493); 16-, 24- or 32-byte key.
    AesCmac,
    /// TDES-CMAC (NIST SP 800-38B); 16- or 24-byte key.
    TdesCmac,
    /// HMAC-SHA-256 (RFC 2104); key of any length.
    HmacSha256,
}

impl MacAlgorithm {
    /// Length of the untruncated MAC in bytes.
    pub fn full_len(self) -> usize {
        match self {
            Self::Iso9797Alg1(_) | Self::Iso9797Alg3(_) | Self::TdesCmac => 8,
            Self::AesCmac => 16,
            Self::HmacSha256 => 32,
        }
    }

    fn check_len(self, mac_len: usize) -> Result<(), CryptoError> {
        if (MIN_MAC_LEN..=self.full_len()).contains(&mac_len) {
            return Ok(());
        }
        let expected = match self.full_len() {
            8 => "4 to 8 bytes",
            16 => "4 to 16 bytes",
            _ => "4 to 32 bytes",
        };
        Err(CryptoError::InvalidLength {
            what: "MAC length",
            expected,
            actual: mac_len,
        })
    }

    /// Computes the MAC of `data` under `key`, truncated to its leftmost `mac_len` bytes.
    pub fn generate(
        self,
        key: &SecretBytes,
        data: &[u8],
        mac_len: usize,
    ) -> Result<Vec<u8>, CryptoError> {
        self.check_len(mac_len)?;
        let mut full = match self {
            Self::Iso9797Alg1(padding) => cbc_mac(key.expose(), data, padding)?,
            Self::Iso9797Alg3(padding) => retail_mac(key.expose(), data, padding)?,
            Self::AesCmac => aes_cmac(key.expose(), data)?,
            Self::TdesCmac => tdes_cmac(key.expose(), data)?,
            Self::HmacSha256 => hmac_sha256(key.expose(), data)?,
        };
        full.truncate(mac_len);
        Ok(full)
    }

    /// Recomputes the MAC (truncated to `mac.len()`) and compares in constant time.
    ///
    /// A MAC of an unacceptable length is [`CryptoError::InvalidLength`]; a mismatch is
    /// [`CryptoError::VerificationFailed`].
    pub fn verify(self, key: &SecretBytes, data: &[u8], mac: &[u8]) -> Result<(), CryptoError> {
        let expected = self.generate(key, data, mac.len())?;
        if bool::from(expected.ct_eq(mac)) {
            Ok(())
        } else {
            Err(CryptoError::VerificationFailed("MAC"))
        }
    }
}

/// ISO 9797-1 MAC algorithm 1 (CBC-MAC), truncated to `mac_len` bytes.
pub fn iso9797_alg1(
    key: &SecretBytes,
    data: &[u8],
    padding: Padding,
    mac_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    MacAlgorithm::Iso9797Alg1(padding).generate(key, data, mac_len)
}

/// ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC), truncated to `mac_len` bytes.
pub fn retail_mac_x919(
    key: &SecretBytes,
    data: &[u8],
    padding: Padding,
    mac_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    MacAlgorithm::Iso9797Alg3(padding).generate(key, data, mac_len)
}

fn des_key(part: &[u8]) -> [u8; 8] {
    let mut key = [0_u8; 8];
    key.copy_from_slice(&part[..8]);
    key
}

/// CBC chaining with single DES under `k1` over whole 8-byte blocks; returns the last output.
fn des_cbc_last(k1: &[u8; 8], padded: &[u8]) -> [u8; 8] {
    let mut chain = [0_u8; DES_BLOCK];
    for block in padded.chunks_exact(DES_BLOCK) {
        xor_in_place(&mut chain, block);
        chain = des_encrypt_block(k1, &chain);
    }
    chain
}

fn cbc_mac(key: &[u8], data: &[u8], padding: Padding) -> Result<Vec<u8>, CryptoError> {
    let padded = pad(data, DES_BLOCK, padding)?;
    match key.len() {
        8 => {
            let mut k = des_key(key);
            let out = des_cbc_last(&k, &padded).to_vec();
            k.zeroize();
            Ok(out)
        }
        16 | 24 => {
            let mut chain = [0_u8; DES_BLOCK];
            for block in padded.chunks_exact(DES_BLOCK) {
                xor_in_place(&mut chain, block);
                let next = tdes_encrypt_ecb(key, &chain)?;
                chain.copy_from_slice(&next);
            }
            Ok(chain.to_vec())
        }
        actual => Err(CryptoError::InvalidLength {
            what: "CBC-MAC key",
            expected: "8, 16 or 24 bytes",
            actual,
        }),
    }
}

fn retail_mac(key: &[u8], data: &[u8], padding: Padding) -> Result<Vec<u8>, CryptoError> {
    if key.len() != 16 {
        return Err(CryptoError::InvalidLength {
            what: "retail MAC key",
            expected: "16 bytes",
            actual: key.len(),
        });
    }
    let padded = pad(data, DES_BLOCK, padding)?;
    let mut k1 = des_key(&key[..8]);
    let mut k2 = des_key(&key[8..]);
    let last = des_cbc_last(&k1, &padded);
    let out = des_encrypt_block(&k1, &des_decrypt_block(&k2, &last)).to_vec();
    k1.zeroize();
    k2.zeroize();
    Ok(out)
}

fn aes_cmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    fn run<M: Mac + cipher::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut mac = <M as Mac>::new_from_slice(key).map_err(|_| CryptoError::InvalidLength {
            what: "AES key",
            expected: "16, 24 or 32 bytes",
            actual: key.len(),
        })?;
        mac.update(data);
        Ok(mac.finalize().into_bytes().to_vec())
    }
    match key.len() {
        16 => run::<Cmac<aes::Aes128>>(key, data),
        24 => run::<Cmac<aes::Aes192>>(key, data),
        32 => run::<Cmac<aes::Aes256>>(key, data),
        actual => Err(CryptoError::InvalidLength {
            what: "AES key",
            expected: "16, 24 or 32 bytes",
            actual,
        }),
    }
}

fn tdes_cmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let bad = |actual| CryptoError::InvalidLength {
        what: "TDES key",
        expected: "16 or 24 bytes",
        actual,
    };
    let out = match key.len() {
        16 => {
            let mut mac =
                <Cmac<TdesEde2> as Mac>::new_from_slice(key).map_err(|_| bad(key.len()))?;
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        24 => {
            let mut mac =
                <Cmac<TdesEde3> as Mac>::new_from_slice(key).map_err(|_| bad(key.len()))?;
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        actual => return Err(bad(actual)),
    };
    Ok(out)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| CryptoError::InvalidLength {
            what: "HMAC key",
            expected: "any length",
            actual: key.len(),
        })?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_shapes() {
        assert_eq!(pad(&[], 8, Padding::Method1).expect("pad"), vec![0; 8]);
        assert_eq!(pad(&[1; 8], 8, Padding::Method2).expect("pad").len(), 16);
        assert_eq!(
            pad(&[1; 3], 8, Padding::Method3).expect("pad")[..8],
            [0, 0, 0, 0, 0, 0, 0, 24]
        );
        assert!(pad(&[1], 7, Padding::Method1).is_err());
    }

    #[test]
    fn bad_lengths_are_errors() {
        let key = SecretBytes::new(vec![1; 16]);
        assert!(MacAlgorithm::AesCmac.generate(&key, b"x", 3).is_err());
        assert!(MacAlgorithm::AesCmac.generate(&key, b"x", 17).is_err());
        assert!(
            MacAlgorithm::Iso9797Alg3(Padding::Method1)
                .generate(&SecretBytes::new(vec![1; 8]), b"x", 8)
                .is_err()
        );
        assert!(
            MacAlgorithm::TdesCmac
                .generate(&SecretBytes::new(vec![1; 8]), b"x", 8)
                .is_err()
        );
    }
}
