//! Block-cipher building blocks over the RustCrypto ciphers: single DES, TDES (2-key and
//! 3-key) and AES (128/192/256) in ECB and CBC mode, on whole blocks (no padding here; each
//! scheme pads as its standard says).

use aes::{Aes128, Aes192, Aes256};
use cipher::generic_array::GenericArray;
use cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::{Des, TdesEde2, TdesEde3};

use crate::CryptoError;

/// TDES and DES block size.
pub const DES_BLOCK: usize = 8;
/// AES block size.
pub const AES_BLOCK: usize = 16;

enum Tdes {
    Two(TdesEde2),
    Three(TdesEde3),
}

impl Tdes {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        match key.len() {
            16 => Ok(Self::Two(TdesEde2::new(GenericArray::from_slice(key)))),
            24 => Ok(Self::Three(TdesEde3::new(GenericArray::from_slice(key)))),
            actual => Err(CryptoError::InvalidLength {
                what: "TDES key",
                expected: "16 or 24 bytes",
                actual,
            }),
        }
    }

    fn encrypt(&self, block: &mut [u8]) {
        let block = GenericArray::from_mut_slice(block);
        match self {
            Self::Two(cipher) => cipher.encrypt_block(block),
            Self::Three(cipher) => cipher.encrypt_block(block),
        }
    }

    fn decrypt(&self, block: &mut [u8]) {
        let block = GenericArray::from_mut_slice(block);
        match self {
            Self::Two(cipher) => cipher.decrypt_block(block),
            Self::Three(cipher) => cipher.decrypt_block(block),
        }
    }
}

enum Aes {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Aes {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        match key.len() {
            16 => Ok(Self::A128(Aes128::new(GenericArray::from_slice(key)))),
            24 => Ok(Self::A192(Aes192::new(GenericArray::from_slice(key)))),
            32 => Ok(Self::A256(Aes256::new(GenericArray::from_slice(key)))),
            actual => Err(CryptoError::InvalidLength {
                what: "AES key",
                expected: "16, 24 or 32 bytes",
                actual,
            }),
        }
    }

    fn encrypt(&self, block: &mut [u8]) {
        let block = GenericArray::from_mut_slice(block);
        match self {
            Self::A128(cipher) => cipher.encrypt_block(block),
            Self::A192(cipher) => cipher.encrypt_block(block),
            Self::A256(cipher) => cipher.encrypt_block(block),
        }
    }

    fn decrypt(&self, block: &mut [u8]) {
        let block = GenericArray::from_mut_slice(block);
        match self {
            Self::A128(cipher) => cipher.decrypt_block(block),
            Self::A192(cipher) => cipher.decrypt_block(block),
            Self::A256(cipher) => cipher.decrypt_block(block),
        }
    }
}

fn check_blocks(what: &'static str, data: &[u8], block: usize) -> Result<(), CryptoError> {
    if data.is_empty() || !data.len().is_multiple_of(block) {
        let expected = if block == DES_BLOCK {
            "a non-empty multiple of 8 bytes"
        } else {
            "a non-empty multiple of 16 bytes"
        };
        return Err(CryptoError::InvalidLength {
            what,
            expected,
            actual: data.len(),
        });
    }
    Ok(())
}

/// XORs `other` into `target` (up to the shorter length).
pub fn xor_in_place(target: &mut [u8], other: &[u8]) {
    for (byte, mask) in target.iter_mut().zip(other) {
        *byte ^= mask;
    }
}

/// Single DES encryption of one block.
pub fn des_encrypt_block(key: &[u8; 8], block: &[u8; 8]) -> [u8; 8] {
    let cipher = Des::new(GenericArray::from_slice(key));
    let mut out = *block;
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut out));
    out
}

/// Single DES decryption of one block.
pub fn des_decrypt_block(key: &[u8; 8], block: &[u8; 8]) -> [u8; 8] {
    let cipher = Des::new(GenericArray::from_slice(key));
    let mut out = *block;
    cipher.decrypt_block(GenericArray::from_mut_slice(&mut out));
    out
}

/// TDES-ECB encryption (16-byte keys are K1‖K2 with K3 = K1).
pub fn tdes_encrypt_ecb(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("TDES data", data, DES_BLOCK)?;
    let cipher = Tdes::new(key)?;
    let mut out = data.to_vec();
    out.chunks_exact_mut(DES_BLOCK)
        .for_each(|block| cipher.encrypt(block));
    Ok(out)
}

/// TDES-ECB decryption.
pub fn tdes_decrypt_ecb(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("TDES data", data, DES_BLOCK)?;
    let cipher = Tdes::new(key)?;
    let mut out = data.to_vec();
    out.chunks_exact_mut(DES_BLOCK)
        .for_each(|block| cipher.decrypt(block));
    Ok(out)
}

/// TDES-CBC encryption.
pub fn tdes_encrypt_cbc(key: &[u8], iv: &[u8; 8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("TDES data", data, DES_BLOCK)?;
    let cipher = Tdes::new(key)?;
    let mut out = data.to_vec();
    let mut chain = *iv;
    for block in out.chunks_exact_mut(DES_BLOCK) {
        xor_in_place(block, &chain);
        cipher.encrypt(block);
        chain.copy_from_slice(block);
    }
    Ok(out)
}

/// TDES-CBC decryption.
pub fn tdes_decrypt_cbc(key: &[u8], iv: &[u8; 8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("TDES data", data, DES_BLOCK)?;
    let cipher = Tdes::new(key)?;
    let mut out = data.to_vec();
    let mut chain = *iv;
    for block in out.chunks_exact_mut(DES_BLOCK) {
        let mut next = [0_u8; DES_BLOCK];
        next.copy_from_slice(block);
        cipher.decrypt(block);
        xor_in_place(block, &chain);
        chain = next;
    }
    Ok(out)
}

/// AES-ECB encryption.
pub fn aes_encrypt_ecb(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("AES data", data, AES_BLOCK)?;
    let cipher = Aes::new(key)?;
    let mut out = data.to_vec();
    out.chunks_exact_mut(AES_BLOCK)
        .for_each(|block| cipher.encrypt(block));
    Ok(out)
}

/// AES-ECB decryption.
pub fn aes_decrypt_ecb(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("AES data", data, AES_BLOCK)?;
    let cipher = Aes::new(key)?;
    let mut out = data.to_vec();
    out.chunks_exact_mut(AES_BLOCK)
        .for_each(|block| cipher.decrypt(block));
    Ok(out)
}

/// AES-CBC encryption.
pub fn aes_encrypt_cbc(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("AES data", data, AES_BLOCK)?;
    let cipher = Aes::new(key)?;
    let mut out = data.to_vec();
    let mut chain = *iv;
    for block in out.chunks_exact_mut(AES_BLOCK) {
        xor_in_place(block, &chain);
        cipher.encrypt(block);
        chain.copy_from_slice(block);
    }
    Ok(out)
}

/// AES-CBC decryption.
pub fn aes_decrypt_cbc(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    check_blocks("AES data", data, AES_BLOCK)?;
    let cipher = Aes::new(key)?;
    let mut out = data.to_vec();
    let mut chain = *iv;
    for block in out.chunks_exact_mut(AES_BLOCK) {
        let mut next = [0_u8; AES_BLOCK];
        next.copy_from_slice(block);
        cipher.decrypt(block);
        xor_in_place(block, &chain);
        chain = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Vec<u8> {
        hex::decode(text.replace(' ', "")).expect("hex")
    }

    /// NIST SP 800-17, Table B.1 (variable plaintext known answer test), first entry.
    #[test]
    fn des_sp800_17_variable_plaintext() {
        let key = [1_u8; 8];
        let plain: [u8; 8] = h("8000000000000000").try_into().expect("8");
        let cipher = des_encrypt_block(&key, &plain);
        assert_eq!(cipher.to_vec(), h("95F8A5E5DD31D900"));
        assert_eq!(des_decrypt_block(&key, &cipher), plain);
    }

    /// NIST SP 800-67 Rev. 1, Appendix B: TDEA-ECB encryption example (3-key).
    #[test]
    fn tdes_sp800_67_example() {
        let key = h("0123456789ABCDEF 23456789ABCDEF01 456789ABCDEF0123");
        let plain = b"The qufck brown fox jump";
        let cipher = tdes_encrypt_ecb(&key, plain).expect("encrypt");
        assert_eq!(
            cipher,
            h("A826FD8CE53B855F CCE21C8112256FE6 68D5C05DD9B6B900")
        );
        assert_eq!(
            tdes_decrypt_ecb(&key, &cipher).expect("decrypt"),
            plain.to_vec()
        );
    }

    /// A 2-key TDES key K1‖K2 behaves as the 3-key K1‖K2‖K1.
    #[test]
    fn two_key_tdes_is_k1_k2_k1() {
        let two = h("0123456789ABCDEF FEDCBA9876543210");
        let three = h("0123456789ABCDEF FEDCBA9876543210 0123456789ABCDEF");
        let data = h("0011223344556677 8899AABBCCDDEEFF");
        assert_eq!(
            tdes_encrypt_ecb(&two, &data).expect("two"),
            tdes_encrypt_ecb(&three, &data).expect("three")
        );
    }

    /// FIPS-197 Appendix C.1, C.2 and C.3.
    #[test]
    fn aes_fips197_appendix_c() {
        let plain = h("00112233445566778899aabbccddeeff");
        let cases = [
            (
                "000102030405060708090a0b0c0d0e0f",
                "69c4e0d86a7b0430d8cdb78070b4c55a",
            ),
            (
                "000102030405060708090a0b0c0d0e0f1011121314151617",
                "dda97ca4864cdfe06eaf70a0ec0d7191",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "8ea2b7ca516745bfeafc49904b496089",
            ),
        ];
        for (key, expected) in cases {
            let cipher = aes_encrypt_ecb(&h(key), &plain).expect("encrypt");
            assert_eq!(cipher, h(expected), "key {key}");
            assert_eq!(aes_decrypt_ecb(&h(key), &cipher).expect("decrypt"), plain);
        }
    }

    /// NIST SP 800-38A, F.2.1 / F.2.2 (CBC-AES128), first two blocks.
    #[test]
    fn aes_cbc_sp800_38a() {
        let key = h("2b7e151628aed2a6abf7158809cf4f3c");
        let iv: [u8; 16] = h("000102030405060708090a0b0c0d0e0f")
            .try_into()
            .expect("16");
        let plain = h("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51");
        let cipher = aes_encrypt_cbc(&key, &iv, &plain).expect("encrypt");
        assert_eq!(
            cipher,
            h("7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2")
        );
        assert_eq!(aes_decrypt_cbc(&key, &iv, &cipher).expect("decrypt"), plain);
    }

    #[test]
    fn cbc_round_trips_tdes() {
        let key = h("0123456789ABCDEF FEDCBA9876543210");
        let iv = [7_u8; 8];
        let data = h("0011223344556677 8899AABBCCDDEEFF 0123456789ABCDEF");
        let cipher = tdes_encrypt_cbc(&key, &iv, &data).expect("encrypt");
        assert_ne!(cipher, data);
        assert_eq!(tdes_decrypt_cbc(&key, &iv, &cipher).expect("decrypt"), data);
    }

    #[test]
    fn bad_lengths_are_typed_errors() {
        assert!(matches!(
            tdes_encrypt_ecb(&[0; 15], &[0; 8]),
            Err(CryptoError::InvalidLength { .. })
        ));
        assert!(matches!(
            tdes_encrypt_ecb(&[0; 16], &[0; 7]),
            Err(CryptoError::InvalidLength { .. })
        ));
        assert!(matches!(
            tdes_encrypt_ecb(&[0; 16], &[]),
            Err(CryptoError::InvalidLength { .. })
        ));
        assert!(matches!(
            aes_encrypt_ecb(&[0; 20], &[0; 16]),
            Err(CryptoError::InvalidLength { .. })
        ));
        assert!(matches!(
            aes_encrypt_cbc(&[0; 16], &[0; 16], &[0; 17]),
            Err(CryptoError::InvalidLength { .. })
        ));
    }
}
