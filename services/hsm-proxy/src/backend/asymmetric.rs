//! RSA and EC key pairs of the software backend: generated with the RustCrypto crates, kept
//! as PKCS#8 DER (inside a TR-31 block under the LMK like every soft key), the public half
//! given out as a DER SubjectPublicKeyInfo.

use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use paycrypto::SecretBytes;
use sha2::{Digest, Sha256};

use crate::error::HsmError;
use crate::spec::KeyAlgorithm;

fn internal(what: &str) -> impl Fn(String) -> HsmError + '_ {
    move |error| HsmError::Internal(format!("{what}: {error}"))
}

/// A new key pair's private key as PKCS#8 DER. RSA generation is slow: call it on a
/// blocking thread.
pub fn generate(algorithm: KeyAlgorithm) -> Result<SecretBytes, HsmError> {
    let mut rng = rand::rngs::OsRng;
    let der = match algorithm {
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            let bits = match algorithm {
                KeyAlgorithm::Rsa2048 => 2048,
                KeyAlgorithm::Rsa3072 => 3072,
                _ => 4096,
            };
            let key = rsa::RsaPrivateKey::new(&mut rng, bits)
                .map_err(|error| internal("rsa key generation")(error.to_string()))?;
            rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&key)
                .map_err(|error| internal("rsa key encoding")(error.to_string()))?
        }
        KeyAlgorithm::EccP256 => p256::SecretKey::random(&mut rng)
            .to_pkcs8_der()
            .map_err(|error| internal("p-256 key encoding")(error.to_string()))?,
        KeyAlgorithm::EccP384 => p384::SecretKey::random(&mut rng)
            .to_pkcs8_der()
            .map_err(|error| internal("p-384 key encoding")(error.to_string()))?,
        other => {
            return Err(HsmError::Internal(format!("{other:?} is not a key pair")));
        }
    };
    Ok(SecretBytes::from_slice(der.as_bytes()))
}

/// The DER SubjectPublicKeyInfo of a stored private key.
pub fn public_key(algorithm: KeyAlgorithm, private: &SecretBytes) -> Result<Vec<u8>, HsmError> {
    let unreadable =
        |error: String| HsmError::Internal(format!("stored key pair unreadable: {error}"));
    let der = match algorithm {
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            let key = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(
                private.expose(),
            )
            .map_err(|error| unreadable(error.to_string()))?;
            rsa::pkcs8::EncodePublicKey::to_public_key_der(&key.to_public_key())
                .map_err(|error| unreadable(error.to_string()))?
        }
        KeyAlgorithm::EccP256 => p256::SecretKey::from_pkcs8_der(private.expose())
            .map_err(|error| unreadable(error.to_string()))?
            .public_key()
            .to_public_key_der()
            .map_err(|error| unreadable(error.to_string()))?,
        KeyAlgorithm::EccP384 => p384::SecretKey::from_pkcs8_der(private.expose())
            .map_err(|error| unreadable(error.to_string()))?
            .public_key()
            .to_public_key_der()
            .map_err(|error| unreadable(error.to_string()))?,
        other => {
            return Err(HsmError::WrongKeyUsage(format!(
                "{other:?} has no public key"
            )));
        }
    };
    Ok(der.as_bytes().to_vec())
}

/// The check value of a key pair (the platform's convention, ADR 9): the first 3 bytes of
/// SHA-256 over the DER SubjectPublicKeyInfo.
pub fn check_value(public_key: &[u8]) -> String {
    hex::encode_upper(&Sha256::digest(public_key)[..3])
}
