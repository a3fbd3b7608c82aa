//! The bounded cache of pair keys per peer, so that only the first field to or from a
//! peer costs an X25519.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;

use crate::primitive::KEY_LEN;

/// Both directional keys with one peer, as ready AES-256-GCM instances (round keys and
/// GHASH key wiped on drop).
pub(crate) struct PairKeys {
    /// Own key → peer: used to seal.
    pub(crate) seal: Aes256Gcm,
    /// Peer → own key: used to open.
    pub(crate) open: Aes256Gcm,
}

impl fmt::Debug for PairKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairKeys(..)")
    }
}

/// Least-recently-used map from a peer's public key to its [`PairKeys`].
///
/// A miss when full evicts the entry used longest ago (a scan of at most `capacity`
/// entries, next to the X25519 that the miss costs anyway).
#[derive(Debug)]
pub(crate) struct PairKeyCache {
    capacity: usize,
    clock: u64,
    entries: HashMap<[u8; KEY_LEN], (Arc<PairKeys>, u64)>,
}

impl PairKeyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
        }
    }

    pub(crate) fn get(&mut self, peer: &[u8; KEY_LEN]) -> Option<Arc<PairKeys>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(peer).map(|(keys, used)| {
            *used = clock;
            Arc::clone(keys)
        })
    }

    pub(crate) fn insert(&mut self, peer: [u8; KEY_LEN], keys: Arc<PairKeys>) {
        self.clock += 1;
        if !self.entries.contains_key(&peer) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(peer, _)| *peer);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(peer, (keys, self.clock));
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
