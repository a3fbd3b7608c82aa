//! A service's live read models compared with fresh copies replayed from its log: what
//! `mposctl replay --read-model` and the operator console's audit page prove.
//!
//! Each live read model is read at one position — its checkpoint, its documents, its
//! checkpoint again, until the two agree (a running service may be moving it) — and its fresh
//! copy is replayed up to that same position with the service's own projection
//! ([`crate::Replayed`]). Equal digests ([`crate::digest_documents`]) prove the live read
//! model is what its events make.

use crate::error::StoreError;
use crate::event::StoredEvent;
use crate::projection::ReplayedReadModel;
use crate::store::{Document, EventStore};

/// Events read from the log per statement.
const PAGE: u32 = 5_000;
/// Reads of a live read model before giving up on finding its checkpoint still.
const STILL_TRIES: usize = 20;

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The log or the read model could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The live read model moved at every read.
    #[error("the read model {0} kept moving; stop the service or retry")]
    Moving(String),
    /// A copy refused an event (its projection failed).
    #[error("{read_model}: {message}")]
    Apply {
        /// The read model.
        read_model: String,
        /// What failed.
        message: String,
    },
}

/// One read model: the live one at its checkpoint, and its fresh copy.
pub struct Compared {
    /// The fresh copy.
    pub copy: Box<dyn ReplayedReadModel>,
    /// The live read model's checkpoint: the copy is replayed up to it.
    pub position: u64,
    /// The live read model's documents at that checkpoint.
    pub live: Vec<Document>,
}

impl std::fmt::Debug for Compared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compared")
            .field("read_model", &self.copy.name())
            .field("position", &self.position)
            .field("live_documents", &self.live.len())
            .finish()
    }
}

/// A live read model at a still checkpoint: the checkpoint `consumer`, the documents of
/// `projection`, the checkpoint again, until the two agree.
pub async fn still(
    store: &EventStore,
    consumer: &str,
    projection: &str,
) -> Result<(u64, Vec<Document>), CompareError> {
    for _ in 0..STILL_TRIES {
        let before = store.consumer_position(consumer).await?;
        let live = store.list_documents(projection, None).await?;
        let after = store.consumer_position(consumer).await?;
        if before == after {
            return Ok((before, live));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(CompareError::Moving(projection.to_owned()))
}

/// Reads each live read model at a still checkpoint, then replays the log once up to the
/// furthest of them, each copy up to its own; the copies and the events read.
pub async fn compare_read_models(
    store: &EventStore,
    models: Vec<Box<dyn ReplayedReadModel>>,
) -> Result<(Vec<Compared>, u64), CompareError> {
    let mut compared = live_at_checkpoints(store, models).await?;
    let read = fold_from_log(store, &mut compared).await?;
    Ok((compared, read))
}

/// Each live read model (a projection of the service's own log, checkpoint
/// `projection:<name>`) at a still checkpoint, beside its empty copy.
pub async fn live_at_checkpoints(
    store: &EventStore,
    models: Vec<Box<dyn ReplayedReadModel>>,
) -> Result<Vec<Compared>, CompareError> {
    let mut compared = Vec::new();
    for copy in models {
        let consumer = format!("projection:{}", copy.name());
        let (position, live) = still(store, &consumer, copy.name()).await?;
        compared.push(Compared {
            copy,
            position,
            live,
        });
    }
    Ok(compared)
}

/// Folds the log into each copy up to its position; the events read.
async fn fold_from_log(store: &EventStore, compared: &mut [Compared]) -> Result<u64, CompareError> {
    let last = compared
        .iter()
        .map(|model| model.position)
        .max()
        .unwrap_or(0);
    let mut position = 0_u64;
    let mut read = 0_u64;
    while position < last {
        let page = store.read_after(position, PAGE).await?;
        let Some(end) = page.last() else { break };
        position = end.global_position;
        read += u64::try_from(page.len()).unwrap_or(u64::MAX);
        apply_each(compared, &page)?;
    }
    Ok(read)
}

/// Applies `events` (in log order) to each copy, up to that copy's position.
pub fn apply_each(compared: &mut [Compared], events: &[StoredEvent]) -> Result<(), CompareError> {
    for model in compared.iter_mut() {
        let upto = events.partition_point(|event| event.global_position <= model.position);
        if let Some(events) = events.get(..upto).filter(|events| !events.is_empty()) {
            model
                .copy
                .apply(events)
                .map_err(|error| CompareError::Apply {
                    read_model: model.copy.name().to_owned(),
                    message: error.to_string(),
                })?;
        }
    }
    Ok(())
}
