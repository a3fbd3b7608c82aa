//! The three primitives and how they are composed, each in one function that the
//! [`Sealer`](crate::Sealer) calls and the known-answer tests call too (`src/tests/kat.rs`):
//!
//! - [`x25519`]: X25519 (RFC 7748) through `x25519-dalek`, refusing a non-contributory
//!   (all-zero) result;
//! - [`hkdf_sha256`]: HKDF-SHA256 (RFC 5869), used by [`pair_key`];
//! - [`seal_with_nonce`] / [`open_with_nonce`]: AES-256-GCM (NIST SP 800-38D) with a
//!   caller-supplied nonce, so that a known answer can fix it; the public API draws the
//!   nonce from the operating system ([`random_nonce`]) and nothing else chooses one.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use x25519_dalek::{SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use crate::SealError;

/// The construction's name and version: HKDF salt and first bytes of the associated data.
pub const LABEL: &[u8] = b"mpos-seal v1";
/// X25519 public key length.
pub(crate) const KEY_LEN: usize = 32;
/// AES-GCM nonce length (96 bits, the length GCM is specified and analysed for).
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length (128 bits, the full tag).
pub(crate) const TAG_LEN: usize = 16;

/// X25519(`secret`, `peer`), or `None` if the result is all zero, i.e. `peer` is a
/// low-order point (RFC 7748 §6.1: "check whether the computed value is all-zero and
/// abort if so"). The shared secret is wiped when dropped.
pub(crate) fn x25519(secret: &StaticSecret, peer: &[u8; KEY_LEN]) -> Option<SharedSecret> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
    shared.was_contributory().then_some(shared)
}

/// HKDF-SHA256 (RFC 5869): extract with `salt` from `ikm`, expand with `info` into `okm`.
/// Fails only if `okm` is longer than 255 × 32 bytes.
pub(crate) fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    okm: &mut [u8],
) -> Result<(), SealError> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm)
        .map_err(|_| SealError::TooLong)
}

/// The pair key for messages from `sender` to `recipient`:
/// `HKDF-SHA256(salt = "mpos-seal v1", ikm = X25519 shared secret, info = sender || recipient)`.
///
/// The order in `info` makes the key directional: A→B and B→A use different keys from the
/// same shared secret, so a field cannot be reflected back to its sender.
pub(crate) fn pair_key(
    shared: &SharedSecret,
    sender: &[u8; KEY_LEN],
    recipient: &[u8; KEY_LEN],
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let mut info = [0_u8; 2 * KEY_LEN];
    info[..KEY_LEN].copy_from_slice(sender);
    info[KEY_LEN..].copy_from_slice(recipient);
    let mut key = Zeroizing::new([0_u8; 32]);
    hkdf_sha256(LABEL, shared.as_bytes(), &info, key.as_mut_slice())?;
    Ok(key)
}

/// An AES-256-GCM instance for `key` (AES round keys and GHASH key precomputed once; both
/// are wiped on drop: `aes` and `polyval` are built with their `zeroize` feature).
pub(crate) fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// The associated data: `"mpos-seal v1" || context || recipient || sender`.
///
/// Unambiguous although `context` has no length prefix: the label and both keys have
/// fixed lengths, so the context is whatever lies between them.
pub(crate) fn associated_data(
    context: &[u8],
    recipient: &[u8; KEY_LEN],
    sender: &[u8; KEY_LEN],
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(LABEL.len() + context.len() + 2 * KEY_LEN);
    aad.extend_from_slice(LABEL);
    aad.extend_from_slice(context);
    aad.extend_from_slice(recipient);
    aad.extend_from_slice(sender);
    aad
}

/// AES-256-GCM encryption of `plaintext` under `nonce` and `aad`: ciphertext || tag.
///
/// Never call it with a nonce that is not fresh from [`random_nonce`], except in a
/// known-answer test: GCM under a repeated nonce loses confidentiality and authenticity.
pub(crate) fn seal_with_nonce(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    // Room for the tag up front: the buffer never reallocates, so no copy of the
    // plaintext is left behind in freed memory.
    let mut buffer = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buffer.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut buffer)
        .map_err(|_| SealError::TooLong)?;
    buffer.extend_from_slice(&tag);
    Ok(buffer)
}

/// AES-256-GCM decryption of ciphertext || tag under `nonce` and `aad`; the plaintext only
/// if the tag verifies (checked in constant time before anything is decrypted). Every
/// failure is [`SealError::Invalid`].
pub(crate) fn open_with_nonce(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let Some(body_len) = sealed.len().checked_sub(TAG_LEN) else {
        return Err(SealError::Invalid);
    };
    let (body, tag) = sealed.split_at(body_len);
    let mut buffer = Zeroizing::new(body.to_vec());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            buffer.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| SealError::Invalid)?;
    Ok(buffer)
}

/// A fresh 96-bit nonce from the operating system's generator.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], SealError> {
    let mut nonce = [0_u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| SealError::Random)?;
    Ok(nonce)
}

/// A fresh X25519 secret from the operating system's generator.
pub(crate) fn random_secret() -> Result<StaticSecret, SealError> {
    let mut bytes = Zeroizing::new([0_u8; 32]);
    OsRng
        .try_fill_bytes(bytes.as_mut_slice())
        .map_err(|_| SealError::Random)?;
    Ok(StaticSecret::from(*bytes))
}
