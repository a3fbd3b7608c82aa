//! Read models built from the log, with checkpoints stored beside them; replay drops a read
//! model and rebuilds it from position 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::event::StoredEvent;
use crate::store::{Document, EventStore};
use crate::tail::Horizon;

/// Events read per page while catching up.
const BATCH: u32 = 5_000;
/// A catch-up commits when this many documents changed...
const COMMIT_DOCUMENTS: usize = 10_000;
/// ...or this many events were applied since its last commit.
const COMMIT_EVENTS: u64 = 50_000;
/// Documents kept in memory between commits of one catch-up, at most.
const CACHED_DOCUMENTS: usize = 100_000;

/// A document as a catch-up holds it.
#[derive(Debug)]
struct Loaded<V> {
    tenant_id: String,
    position: u64,
    view: V,
    /// The read model holds this document (read from it, or written to it since): a
    /// document that is not retained is removed only then.
    stored: bool,
}

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

    /// Whether a document is kept: one that is not is removed from the read model (and
    /// starts again from the default view if a later event names it). For read models of
    /// what is outstanding, which would otherwise grow with every aggregate ever seen.
    fn retains(&self, _view: &Self::View) -> bool {
        true
    }
}

/// Keeps a projection up to date with the log.
#[derive(Debug)]
pub struct ProjectionRunner<P> {
    store: EventStore,
    projection: P,
    /// One catch-up at a time in this process; other processes are fenced by the
    /// compare-and-set on the checkpoint.
    running: tokio::sync::Mutex<()>,
    /// The checkpoint as this runner last read or moved it, so that a catch-up does not
    /// read it again; forgotten on any failure (another process may have moved it: the
    /// compare-and-set refuses the stale value, and the next try reads it).
    checkpoint: std::sync::Mutex<Option<u64>>,
}

impl<P: Projection> ProjectionRunner<P> {
    /// A runner of `projection` over `store`.
    pub fn new(store: EventStore, projection: P) -> Self {
        Self {
            store,
            projection,
            running: tokio::sync::Mutex::new(()),
            checkpoint: std::sync::Mutex::new(None),
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

    /// The store it reads and writes.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Applies every event after the checkpoint; returns how many events were read.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        self.catch_up_to(Horizon::Log).await
    }

    /// Applies the events after the checkpoint up to the `horizon`: [`Horizon::Appended`]
    /// after an append of this process, which is then applied from memory.
    pub async fn catch_up_to(&self, horizon: Horizon) -> Result<u64, StoreError> {
        let _running = self.running.lock().await;
        let mut attempts = 0;
        loop {
            let result = self.catch_up_once(horizon).await;
            if result.is_err() {
                self.remember_checkpoint(None);
            }
            match result {
                Err(StoreError::Conflict { .. }) if attempts < 5 => attempts += 1,
                result => return result,
            }
        }
    }

    fn remember_checkpoint(&self, position: Option<u64>) {
        *self
            .checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = position;
    }

    fn remembered_checkpoint(&self) -> Option<u64> {
        *self
            .checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn catch_up_once(&self, horizon: Horizon) -> Result<u64, StoreError> {
        let consumer = self.consumer_name();
        let name = self.projection.name();
        let mut committed = match self.remembered_checkpoint() {
            Some(position) => position,
            None => self.store.consumer_position(&consumer).await?,
        };
        let mut position = committed;
        let mut read = 0_u64;
        // Documents read or written during this catch-up, so that a long catch-up (a rebuild)
        // does not read back what it wrote a page earlier.
        let mut documents: HashMap<String, Loaded<P::View>> = HashMap::new();
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        loop {
            let events = self.store.read_new(position, BATCH, horizon).await?;
            let Some(last) = events.last() else { break };
            let last_position = last.global_position;
            read += u64::try_from(events.len()).unwrap_or(0);

            let mut missing: Vec<String> = events
                .iter()
                .filter_map(|event| self.projection.document_id(event))
                .filter(|id| !documents.contains_key(id))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            for document in self.store.documents(name, &missing).await? {
                let view: P::View = serde_json::from_str(&document.payload)?;
                documents.insert(
                    document.id,
                    Loaded {
                        tenant_id: document.tenant_id,
                        position: document.position,
                        view,
                        stored: true,
                    },
                );
            }
            for event in &events {
                if let Some(id) = fold(&self.projection, &mut documents, event)? {
                    dirty.insert(id);
                }
            }
            position = last_position;
            if dirty.len() >= COMMIT_DOCUMENTS || position - committed >= COMMIT_EVENTS {
                self.commit(&mut documents, &mut dirty, &consumer, committed, position)
                    .await?;
                committed = position;
                self.remember_checkpoint(Some(position));
                if documents.len() > CACHED_DOCUMENTS {
                    documents.clear();
                }
            }
        }
        if position != committed {
            self.commit(&mut documents, &mut dirty, &consumer, committed, position)
                .await?;
        }
        self.remember_checkpoint(Some(position));
        Ok(read)
    }

    async fn commit(
        &self,
        documents: &mut HashMap<String, Loaded<P::View>>,
        dirty: &mut BTreeSet<String>,
        consumer: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for id in dirty.iter() {
            let Some(loaded) = documents.get(id) else {
                continue;
            };
            if self.projection.retains(&loaded.view) {
                changed.push(Document {
                    id: id.clone(),
                    tenant_id: loaded.tenant_id.clone(),
                    position: loaded.position,
                    payload: serde_json::to_string(&loaded.view)?,
                });
            } else if loaded.stored {
                removed.push(id.clone());
            }
            // A document never stored and not retained (outstanding and settled within
            // one catch-up) costs nothing.
        }
        self.store
            .commit_document_changes(
                self.projection.name(),
                &changed,
                &removed,
                consumer,
                from,
                to,
            )
            .await?;
        for document in &changed {
            if let Some(loaded) = documents.get_mut(&document.id) {
                loaded.stored = true;
            }
        }
        for id in &removed {
            if let Some(loaded) = documents.get_mut(id) {
                loaded.stored = false;
            }
        }
        dirty.clear();
        Ok(())
    }

    /// Drops the read model and rebuilds it from the whole log.
    pub async fn rebuild(&self) -> Result<u64, StoreError> {
        let running = self.running.lock().await;
        self.remember_checkpoint(None);
        self.store
            .drop_documents(self.projection.name(), &self.consumer_name())
            .await?;
        drop(running);
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

    /// Follows the log until `shutdown` resolves, waking on appends of this process (applied
    /// from memory) and polling every `poll` for other writers (reading the log to its end).
    pub async fn run(self, poll: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut horizon = Horizon::Log;
        loop {
            let appended = self.store.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Err(error) = self.catch_up_to(horizon).await {
                tracing::warn!(projection = self.projection.name(), %error, "projection catch-up failed");
            }
            horizon = tokio::select! {
                () = &mut shutdown => break,
                () = appended => Horizon::Appended,
                () = tokio::time::sleep(poll) => Horizon::Log,
            };
        }
    }
}

/// Folds `event` into the document it names (a new one from the default view), the one step
/// of a catch-up and of a replay in memory; the document's id, if the event names one.
fn fold<P: Projection>(
    projection: &P,
    documents: &mut HashMap<String, Loaded<P::View>>,
    event: &StoredEvent,
) -> Result<Option<String>, StoreError> {
    let Some(id) = projection.document_id(event) else {
        return Ok(None);
    };
    let loaded = documents.entry(id.clone()).or_insert_with(|| Loaded {
        tenant_id: event.event.tenant_id.clone(),
        position: 0,
        view: P::View::default(),
        stored: false,
    });
    projection.apply(&mut loaded.view, event)?;
    loaded.position = event.global_position;
    Ok(Some(id))
}

/// A fresh copy of a read model, replayed in memory: the documents `projection` makes of
/// events given in log order, as a runner catching up on them from an empty read model
/// stores them (only the documents it retains). `mposctl replay --read-model` compares it
/// with the live read model.
pub struct Replayed<P: Projection> {
    projection: P,
    documents: HashMap<String, Loaded<P::View>>,
    /// The position of the last event applied.
    position: u64,
}

impl<P: Projection> std::fmt::Debug for Replayed<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayed")
            .field("read_model", &self.projection.name())
            .field("documents", &self.documents.len())
            .field("position", &self.position)
            .finish()
    }
}

impl<P: Projection> Replayed<P> {
    /// An empty copy of `projection`'s read model.
    pub fn new(projection: P) -> Self {
        Self {
            projection,
            documents: HashMap::new(),
            position: 0,
        }
    }
}

/// A read model replayed in memory, whatever its projection's view type: what a tool holds
/// for each of a service's read models (see [`Replayed`]).
pub trait ReplayedReadModel: Send {
    /// The read model's name.
    fn name(&self) -> &'static str;
    /// Applies `events` (in log order, after those applied before).
    fn apply(&mut self, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// The documents the read model holds now, in id order.
    fn documents(&self) -> Result<Vec<Document>, StoreError>;
}

impl<P: Projection> ReplayedReadModel for Replayed<P> {
    fn name(&self) -> &'static str {
        self.projection.name()
    }

    fn apply(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        for event in events {
            self.position = event.global_position;
            fold(&self.projection, &mut self.documents, event)?;
        }
        Ok(())
    }

    fn documents(&self) -> Result<Vec<Document>, StoreError> {
        let mut documents = Vec::new();
        for (id, loaded) in &self.documents {
            if self.projection.retains(&loaded.view) {
                documents.push(Document {
                    id: id.clone(),
                    tenant_id: loaded.tenant_id.clone(),
                    position: loaded.position,
                    payload: serde_json::to_string(&loaded.view)?,
                });
            }
        }
        documents.sort_unstable_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        Ok(documents)
    }
}

/// The digest of a list of documents (see [`ProjectionRunner::digest`]): SHA-256 over each
/// document's id, tenant and content in the byte order of the ids, whatever order the list
/// is in (a database's collation may sort ids otherwise).
pub fn digest_documents(documents: &[Document]) -> String {
    let mut sorted: Vec<&Document> = documents.iter().collect();
    sorted.sort_unstable_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    let mut hasher = Sha256::new();
    for document in sorted {
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

/// A broker's deliveries put back in log order, for folding a read model from a stream:
/// an event waits until every position before it has come (Kafka's partitions interleave);
/// a position seen before is dropped (a broker may deliver twice).
#[derive(Debug, Default)]
pub struct InOrder {
    next: u64,
    held: BTreeMap<u64, StoredEvent>,
}

impl InOrder {
    /// The last position released.
    pub fn folded(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// Events waiting for an earlier position.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether no event is waiting.
    pub fn is_drained(&self) -> bool {
        self.held.is_empty()
    }

    /// Takes one delivery; the events now in order, in order.
    pub fn push(&mut self, event: StoredEvent) -> Vec<StoredEvent> {
        if self.next == 0 {
            self.next = 1;
        }
        if event.global_position < self.next {
            return Vec::new();
        }
        self.held.entry(event.global_position).or_insert(event);
        let mut released = Vec::new();
        while let Some(event) = self.held.remove(&self.next) {
            released.push(event);
            self.next += 1;
        }
        released
    }
}
