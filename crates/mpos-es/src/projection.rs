//! Read models built from the log, with checkpoints stored beside them; replay drops a read
//! model and rebuilds it from position 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::event::StoredEvent;
use crate::store::{Document, EventStore};

/// Events read per transaction while catching up.
const BATCH: u32 = 5_000;

/// A read model made of JSON documents, one per id, each owned by a tenant.
pub trait Projection: Send + Sync + 'static {
    /// The document type.
    type View: Serialize + DeserializeOwned + Default + Send;
    /// The read model's name (also its storage key).
    fn name(&self) -> &'static str;
    /// Which document an event changes, if any.
    fn document_id(&self, event: &StoredEvent) -> Option<String>;
    /// Folds an event into its document.
    fn apply(&self, view: &mut Self::View, event: &StoredEvent) -> Result<(), StoreError>;
}

/// Keeps a projection up to date with the log.
#[derive(Debug)]
pub struct ProjectionRunner<P> {
    store: EventStore,
    projection: P,
    /// One catch-up at a time in this process; other processes are fenced by the
    /// compare-and-set on the checkpoint.
    running: tokio::sync::Mutex<()>,
}

impl<P: Projection> ProjectionRunner<P> {
    /// A runner of `projection` over `store`.
    pub fn new(store: EventStore, projection: P) -> Self {
        Self {
            store,
            projection,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The key of the projection's checkpoint.
    pub fn consumer_name(&self) -> String {
        format!("projection:{}", self.projection.name())
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Applies every event after the checkpoint; returns how many events were read.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let _running = self.running.lock().await;
        let mut attempts = 0;
        loop {
            match self.catch_up_once().await {
                Err(StoreError::Conflict { .. }) if attempts < 5 => attempts += 1,
                result => return result,
            }
        }
    }

    async fn catch_up_once(&self) -> Result<u64, StoreError> {
        let consumer = self.consumer_name();
        let name = self.projection.name();
        let mut position = self.store.consumer_position(&consumer).await?;
        let mut read = 0_u64;
        loop {
            let events = self.store.read_after(position, BATCH).await?;
            let Some(last) = events.last() else { break };
            let last_position = last.global_position;
            read += u64::try_from(events.len()).unwrap_or(0);

            let mut touched: BTreeMap<String, (String, u64, P::View)> = BTreeMap::new();
            let ids: Vec<String> = {
                let mut ids: Vec<String> = events
                    .iter()
                    .filter_map(|event| self.projection.document_id(event))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            };
            for document in self.store.documents(name, &ids).await? {
                let view: P::View = serde_json::from_str(&document.payload)?;
                touched.insert(document.id, (document.tenant_id, document.position, view));
            }
            for event in &events {
                let Some(id) = self.projection.document_id(event) else {
                    continue;
                };
                let entry = touched
                    .entry(id)
                    .or_insert_with(|| (event.event.tenant_id.clone(), 0, P::View::default()));
                self.projection.apply(&mut entry.2, event)?;
                entry.1 = event.global_position;
            }
            let documents = touched
                .into_iter()
                .map(|(id, (tenant_id, position, view))| {
                    Ok(Document {
                        id,
                        tenant_id,
                        position,
                        payload: serde_json::to_string(&view)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.store
                .commit_documents(name, &documents, &consumer, position, last_position)
                .await?;
            position = last_position;
        }
        Ok(read)
    }

    /// Drops the read model and rebuilds it from the whole log.
    pub async fn rebuild(&self) -> Result<u64, StoreError> {
        self.store
            .drop_documents(self.projection.name(), &self.consumer_name())
            .await?;
        self.catch_up().await
    }

    /// SHA-256 (hex) over every document's id, tenant and content in id order: equal digests
    /// mean equal read models.
    pub async fn digest(&self) -> Result<String, StoreError> {
        let documents = self
            .store
            .list_documents(self.projection.name(), None)
            .await?;
        Ok(digest_documents(&documents))
    }

    /// Follows the log until `shutdown` resolves, waking on appends of this process and
    /// polling every `poll` for other writers.
    pub async fn run(self, poll: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let appended = self.store.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Err(error) = self.catch_up().await {
                tracing::warn!(projection = self.projection.name(), %error, "projection catch-up failed");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = appended => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// The digest of a list of documents (see [`ProjectionRunner::digest`]).
pub fn digest_documents(documents: &[Document]) -> String {
    let mut hasher = Sha256::new();
    for document in documents {
        for field in [
            document.id.as_bytes(),
            document.tenant_id.as_bytes(),
            document.payload.as_bytes(),
        ] {
            hasher.update(u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            hasher.update(field);
        }
    }
    hex::encode(hasher.finalize())
}
