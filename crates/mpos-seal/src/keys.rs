//! Process sealing keys: the X25519 key pair each process creates at start, and the
//! public half other processes seal to.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use mpos_proto::common as pb;
use sha2::{Digest, Sha256};
use x25519_dalek::{SharedSecret, StaticSecret};

use crate::SealError;
use crate::primitive::{self, KEY_LEN};

/// Length in characters of a key id (8 bytes as lowercase hex).
pub const KEY_ID_LEN: usize = 16;

/// An X25519 public key (32 bytes, RFC 7748 encoding) with its key id.
///
/// Equality and hashing compare the 32 bytes. `Debug` shows the key id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    bytes: [u8; KEY_LEN],
    id: [u8; KEY_ID_LEN / 2],
}

impl PublicKey {
    /// The key with these 32 bytes. Any 32 bytes are accepted here; a low-order point is
    /// refused when it is sealed to ([`SealError::WeakKey`]).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut id = [0_u8; KEY_ID_LEN / 2];
        id.copy_from_slice(&digest[..KEY_ID_LEN / 2]);
        Self { bytes, id }
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The key id: the first 8 bytes of SHA-256(public key) as 16 lowercase hex digits.
    /// Names the key in [`Sealed::recipient_key_id`](crate::Sealed::recipient_key_id) and
    /// in logs; a collision only makes opening fail, never succeed with a wrong key (the
    /// full key is bound into every seal).
    pub fn key_id(&self) -> String {
        hex::encode(self.id)
    }
}

impl From<[u8; KEY_LEN]> for PublicKey {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        Self::from_bytes(bytes)
    }
}

impl TryFrom<&[u8]> for PublicKey {
    type Error = SealError;

    /// Exactly 32 bytes, or [`SealError::Malformed`].
    fn try_from(bytes: &[u8]) -> Result<Self, SealError> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(Self::from_bytes)
            .map_err(|_| SealError::Malformed("a public key must be 32 bytes"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.key_id()).finish()
    }
}

impl From<&PublicKey> for pb::SealingKey {
    fn from(key: &PublicKey) -> Self {
        pb::SealingKey {
            public_key: key.bytes.to_vec(),
            key_id: key.key_id(),
        }
    }
}

impl TryFrom<&pb::SealingKey> for PublicKey {
    type Error = SealError;

    /// A 32-byte key whose `key_id` is its own, or [`SealError::Malformed`].
    fn try_from(key: &pb::SealingKey) -> Result<Self, SealError> {
        let public = PublicKey::try_from(key.public_key.as_slice())?;
        if public.key_id() != key.key_id {
            return Err(SealError::Malformed(
                "key_id is not the key id of public_key",
            ));
        }
        Ok(public)
    }
}

/// A process's X25519 key pair, with the number of fields sealed under it.
///
/// Created from the operating system's random number generator when the process starts
/// ([`SealingKeyPair::generate`]), held only in memory, never stored or exported: the
/// secret has no getter, and it is wiped when the key pair is dropped (`x25519-dalek`'s
/// `zeroize` feature). `Debug` shows only the key id and the seal count.
pub struct SealingKeyPair {
    secret: StaticSecret,
    public: PublicKey,
    key_id: String,
    seals: AtomicU64,
}

impl SealingKeyPair {
    /// A new key pair from the operating system's random number generator.
    pub fn generate() -> Result<Self, SealError> {
        Ok(Self::from_secret(primitive::random_secret()?))
    }

    /// The key pair of a given secret: tests with published vectors, never services.
    pub(crate) fn from_secret(secret: StaticSecret) -> Self {
        let public = PublicKey::from_bytes(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self {
            secret,
            key_id: public.key_id(),
            public,
            seals: AtomicU64::new(0),
        }
    }

    /// The public key, to hand to the processes that seal fields for this one.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// How many fields were sealed (or reserved to be sealed) under this key pair.
    pub fn seal_count(&self) -> u64 {
        self.seals.load(Ordering::Relaxed)
    }

    /// Counts one seal if fewer than `limit` were counted; `false` (counting nothing) if
    /// the key pair has reached `limit` and must be replaced.
    pub(crate) fn try_count_seal(&self, limit: u64) -> bool {
        self.seals
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                (count < limit).then_some(count + 1)
            })
            .is_ok()
    }

    /// X25519 with `peer`, `None` for a low-order peer key.
    pub(crate) fn shared_secret(&self, peer: &[u8; KEY_LEN]) -> Option<SharedSecret> {
        primitive::x25519(&self.secret, peer)
    }
}

impl fmt::Debug for SealingKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKeyPair")
            .field("key_id", &self.key_id)
            .field("seals", &self.seal_count())
            .finish_non_exhaustive()
    }
}
