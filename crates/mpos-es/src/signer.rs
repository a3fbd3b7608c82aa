//! Signs the head of the log periodically, so that a rewritten chain is detectable.

use std::future::Future;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use crate::chain::Checkpoint;
use crate::error::StoreError;
use crate::event::now_micros;
use crate::store::EventStore;

/// Writes signed checkpoints of a log.
#[derive(Debug)]
pub struct ChainSigner {
    store: EventStore,
    key: SigningKey,
}

impl ChainSigner {
    /// A signer of `store`'s head with `key`.
    pub fn new(store: EventStore, key: SigningKey) -> Self {
        Self { store, key }
    }

    /// Signs the current head if it moved since the last checkpoint.
    pub async fn sign_head(&self) -> Result<Option<Checkpoint>, StoreError> {
        let (position, head_hash) = self.store.head().await?;
        if position == 0 {
            return Ok(None);
        }
        let last = self
            .store
            .checkpoints()
            .await?
            .last()
            .map_or(0, |checkpoint| checkpoint.position);
        if last >= position {
            return Ok(None);
        }
        let checkpoint = Checkpoint::sign(
            &self.key,
            self.store.service(),
            position,
            head_hash,
            now_micros(),
        );
        self.store.save_checkpoint(&checkpoint).await?;
        tracing::debug!(position, "signed chain checkpoint");
        Ok(Some(checkpoint))
    }

    /// Signs every `interval` until `shutdown` resolves, and once more at shutdown.
    pub async fn run(self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.sign_head().await {
                tracing::warn!(%error, "signing chain checkpoint failed");
            }
        }
        if let Err(error) = self.sign_head().await {
            tracing::warn!(%error, "signing chain checkpoint at shutdown failed");
        }
    }
}
