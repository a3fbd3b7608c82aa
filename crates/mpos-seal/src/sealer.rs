//! The [`Sealer`]: a process's key pair, its predecessor after a rotation, and the pair
//! keys it derived per peer.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use zeroize::Zeroizing;

use crate::cache::{PairKeyCache, PairKeys};
use crate::primitive::{self, KEY_LEN};
use crate::{PublicKey, SealError, Sealed, SealingKeyPair};

/// Seals allowed under one key pair before the [`Sealer`] replaces it: 2^31.
///
/// AES-GCM with random 96-bit nonces must not be used for more than 2^32 messages per key
/// (NIST SP 800-38D §8.3). Counting per key pair bounds every pair key derived from it as
/// sender; at 2^31 the chance that any two nonces under one pair key collide is below
/// n²/2^97 = 2^-35.
pub const MAX_SEALS_PER_KEY: u64 = 1 << 31;

/// Peers whose pair keys each key pair remembers (least recently used evicted first).
pub const PAIR_KEY_CACHE_CAPACITY: usize = 1024;

/// One key pair with the pair keys derived from it.
struct KeyState {
    pair: SealingKeyPair,
    cache: Mutex<PairKeyCache>,
}

impl KeyState {
    fn new(pair: SealingKeyPair, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            pair,
            cache: Mutex::new(PairKeyCache::new(capacity)),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, PairKeyCache> {
        // Nothing panics while the lock is held; a poisoned cache is still consistent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered pair keys with `peer`, or freshly derived ones (`true`: not yet
    /// remembered). [`SealError::WeakKey`] if `peer` is a low-order point.
    fn pair_keys(&self, peer: &[u8; KEY_LEN]) -> Result<(Arc<PairKeys>, bool), SealError> {
        if let Some(keys) = self.cache().get(peer) {
            return Ok((keys, false));
        }
        let shared = self.pair.shared_secret(peer).ok_or(SealError::WeakKey)?;
        let own = self.pair.public_key().as_bytes();
        let seal = primitive::pair_key(&shared, own, peer)?;
        let open = primitive::pair_key(&shared, peer, own)?;
        let keys = Arc::new(PairKeys {
            seal: primitive::cipher(&seal),
            open: primitive::cipher(&open),
        });
        Ok((keys, true))
    }

    fn remember(&self, peer: [u8; KEY_LEN], keys: Arc<PairKeys>) {
        self.cache().insert(peer, keys);
    }
}

struct Keys {
    current: Arc<KeyState>,
    /// The key pair before the last rotation: still opens fields sealed to it, never seals.
    previous: Option<Arc<KeyState>>,
}

/// Seals fields for other processes and opens the fields they sealed for this one.
///
/// One per process, shared (`Send + Sync`, in an `Arc`): it holds the process's
/// [`SealingKeyPair`] and, per peer public key, the two directional pair keys derived
/// from it (at most [`PAIR_KEY_CACHE_CAPACITY`] peers). With the pair keys remembered, a
/// seal or an open is one AES-256-GCM call plus a nonce from the operating system; the
/// first field to or from a new peer costs one X25519 more.
///
/// After [`MAX_SEALS_PER_KEY`] seals the key pair is replaced by a new one
/// ([`Sealer::rotate`]); the replaced one still opens fields sealed to it until the next
/// rotation, after which they fail with [`SealError::UnknownRecipient`].
pub struct Sealer {
    keys: RwLock<Keys>,
    max_seals: u64,
    cache_capacity: usize,
}

impl Sealer {
    /// A sealer with a new key pair from the operating system's random number generator.
    pub fn new() -> Result<Self, SealError> {
        Ok(Self::with_key_pair(SealingKeyPair::generate()?))
    }

    /// A sealer holding `pair`.
    pub fn with_key_pair(pair: SealingKeyPair) -> Self {
        Self::with_limits(pair, MAX_SEALS_PER_KEY, PAIR_KEY_CACHE_CAPACITY)
    }

    /// Small limits for tests of rotation and eviction.
    pub(crate) fn with_limits(pair: SealingKeyPair, max_seals: u64, cache_capacity: usize) -> Self {
        Self {
            keys: RwLock::new(Keys {
                current: KeyState::new(pair, cache_capacity),
                previous: None,
            }),
            max_seals,
            cache_capacity,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Arc<KeyState> {
        Arc::clone(&self.read().current)
    }

    /// This process's current public key: what other processes seal to.
    pub fn public_key(&self) -> PublicKey {
        *self.current().pair.public_key()
    }

    /// The current public key's id.
    pub fn key_id(&self) -> String {
        self.current().pair.key_id().to_owned()
    }

    /// How many fields were sealed under the current key pair.
    pub fn seal_count(&self) -> u64 {
        self.current().pair.seal_count()
    }

    /// How many peers the current key pair remembers pair keys for.
    pub fn cached_peers(&self) -> usize {
        self.current().cache().len()
    }

    /// Replaces the key pair by a new one. The replaced key pair still opens fields sealed
    /// to it (those in flight) until the next rotation; the new one seals from now on.
    /// Peers learn the new public key from the next request or from
    /// [`SealError::UnknownRecipient`].
    pub fn rotate(&self) -> Result<(), SealError> {
        let replaced = self.current();
        self.rotate_from(&replaced)
    }

    /// Rotates unless another thread already replaced `replaced`.
    fn rotate_from(&self, replaced: &Arc<KeyState>) -> Result<(), SealError> {
        let fresh = KeyState::new(SealingKeyPair::generate()?, self.cache_capacity);
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if Arc::ptr_eq(&keys.current, replaced) {
            let old = std::mem::replace(&mut keys.current, fresh);
            keys.previous = Some(old);
        }
        Ok(())
    }

    /// The current key pair with one seal counted, rotating first if it is used up.
    fn reserve_seal(&self) -> Result<Arc<KeyState>, SealError> {
        loop {
            let state = self.current();
            if state.pair.try_count_seal(self.max_seals) {
                return Ok(state);
            }
            self.rotate_from(&state)?;
        }
    }

    /// Seals `plaintext` for the process holding `recipient`, bound to `context`.
    ///
    /// `context` names the field and the request it travels in (see [`crate::context`]),
    /// e.g. `context("hsm.DecryptDataResponse.plaintext", request_id)`; the recipient must
    /// open with the same context, so a sealed field cannot be moved into another field or
    /// another request. It is authenticated, not sent.
    ///
    /// Fails with [`SealError::WeakKey`] if `recipient` is a low-order point,
    /// [`SealError::Random`] if no nonce could be drawn, [`SealError::TooLong`] beyond
    /// AES-GCM's limits.
    pub fn seal(
        &self,
        recipient: &PublicKey,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Sealed, SealError> {
        let state = self.reserve_seal()?;
        let peer = recipient.as_bytes();
        let (keys, fresh) = state.pair_keys(peer)?;
        if fresh {
            state.remember(*peer, Arc::clone(&keys));
        }
        let sender = state.pair.public_key().as_bytes();
        let nonce = primitive::random_nonce()?;
        let aad = primitive::associated_data(context, peer, sender);
        let ciphertext = primitive::seal_with_nonce(&keys.seal, &nonce, &aad, plaintext)?;
        Ok(Sealed {
            sender: *sender,
            recipient_key_id: recipient.key_id(),
            nonce,
            ciphertext,
        })
    }

    /// Opens a field sealed for this process under `context`.
    ///
    /// [`SealError::UnknownRecipient`] if it was sealed to a key this process does not
    /// hold (the sender should fetch the current one and seal again); otherwise every
    /// failure is [`SealError::Invalid`]. A sender's pair keys are remembered only once a
    /// field from it opened, so forged fields with made-up sender keys cost one X25519
    /// each but never push real peers out of the cache.
    pub fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let state = {
            let keys = self.read();
            if keys.current.pair.key_id() == sealed.recipient_key_id {
                Arc::clone(&keys.current)
            } else {
                match &keys.previous {
                    Some(previous) if previous.pair.key_id() == sealed.recipient_key_id => {
                        Arc::clone(previous)
                    }
                    _ => return Err(SealError::UnknownRecipient),
                }
            }
        };
        let (keys, fresh) = state
            .pair_keys(&sealed.sender)
            .map_err(|_| SealError::Invalid)?;
        let aad =
            primitive::associated_data(context, state.pair.public_key().as_bytes(), &sealed.sender);
        let plaintext =
            primitive::open_with_nonce(&keys.open, &sealed.nonce, &aad, &sealed.ciphertext)?;
        if fresh {
            state.remember(sealed.sender, keys);
        }
        Ok(plaintext)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.read();
        f.debug_struct("Sealer")
            .field("current", &keys.current.pair)
            .field(
                "previous_key_id",
                &keys
                    .previous
                    .as_ref()
                    .map(|previous| previous.pair.key_id()),
            )
            .field("cached_peers", &keys.current.cache().len())
            .finish()
    }
}
