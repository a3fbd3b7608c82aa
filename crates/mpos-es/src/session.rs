//! One aggregate loaded once and changed by several commands of one request.
//!
//! [`crate::execute`] loads the aggregate (snapshot, then events) before every command. A
//! request that runs several commands on the same aggregate in a row — a payment submitted,
//! then approved — would read it back each time although it holds it. An [`Aggregates`] loads
//! it once into a [`Loaded`], and each [`Aggregates::execute`] decides the command on the state
//! it holds, commits through cqrs-es's own persisted event store and keeps the new state.
//! Nothing is lost to a concurrent writer: the commit carries the sequence the state was loaded
//! at, and a sequence taken meanwhile is refused as `AggregateConflict` (the state held is then
//! left as it was, and the caller loads again).

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore as _};

use crate::{CommandMetadata, EventRepository, EventStore};

/// Applies `events` (an aggregate's, in sequence order) to `state` as cqrs-es folds them, and
/// returns the sequence of the last one (`None` without events). The events are decoded by
/// the aggregate's own event type: an event it cannot decode is an error, nothing is skipped.
pub fn fold<A: Aggregate>(
    state: &mut A,
    events: &[crate::StoredEvent],
) -> Result<Option<usize>, AggregateError<A::Error>> {
    let mut last = None;
    for stored in events {
        let serialized = crate::to_serialized(stored).map_err(|error| {
            AggregateError::from(cqrs_es::persist::PersistenceError::from(error))
        })?;
        let envelope = cqrs_es::EventEnvelope::<A>::try_from(serialized)?;
        last = Some(envelope.sequence);
        state.apply(envelope.payload);
    }
    Ok(last)
}

/// Loads and changes aggregates of type `A` in a service's log.
pub struct Aggregates<A: Aggregate> {
    store: PersistedEventStore<EventRepository, A>,
    log: EventStore,
    services: A::Services,
    snapshot_every: usize,
}

impl<A: Aggregate> std::fmt::Debug for Aggregates<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregates")
            .field("type", &A::TYPE)
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
}

/// An aggregate as a request holds it: its state and the sequence of its last event.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    aggregate_id: String,
    state: A,
    sequence: usize,
    snapshot: Option<usize>,
}

impl<A> Loaded<A> {
    /// The aggregate's state after its last event.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The sequence of its last event (0: none).
    pub fn sequence(&self) -> usize {
        self.sequence
    }

    /// Its id.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }
}

impl<A> Aggregates<A>
where
    A: Aggregate + Clone,
{
    /// Aggregates of `store`, snapshotted every `snapshot_every` events (as
    /// [`crate::snapshot_framework`] does).
    pub fn new(store: &EventStore, snapshot_every: usize, services: A::Services) -> Self {
        let snapshot_every = snapshot_every.max(1);
        Self {
            store: PersistedEventStore::new_snapshot_store(
                EventRepository::new(store.clone()),
                snapshot_every,
            ),
            log: store.clone(),
            services,
            snapshot_every,
        }
    }

    /// The aggregate as the log holds it now (its default state if it has no events): its
    /// snapshot and the events after it, read together ([`EventStore::load_stream`], one
    /// statement on PostgreSQL where cqrs-es's `load_aggregate` takes two), folded as cqrs-es
    /// folds them. A snapshot that no longer deserializes is ignored and every event is
    /// folded, as cqrs-es does.
    pub async fn load(&self, aggregate_id: &str) -> Result<Loaded<A>, AggregateError<A::Error>> {
        let persistence = |error: crate::StoreError| {
            AggregateError::from(cqrs_es::persist::PersistenceError::from(error))
        };
        let (snapshot, mut events) = self
            .log
            .load_stream(A::TYPE, aggregate_id)
            .await
            .map_err(persistence)?;
        let mut loaded = Loaded {
            aggregate_id: aggregate_id.to_owned(),
            state: A::default(),
            sequence: 0,
            snapshot: None,
        };
        if let Some(snapshot) = snapshot {
            match serde_json::from_str::<A>(&snapshot.payload) {
                Ok(state) => {
                    loaded.state = state;
                    loaded.sequence = usize::try_from(snapshot.last_sequence).map_err(|_| {
                        persistence(crate::StoreError::Corrupt("sequence exceeds usize".into()))
                    })?;
                    loaded.snapshot =
                        Some(usize::try_from(snapshot.snapshot_version).map_err(|_| {
                            persistence(crate::StoreError::Corrupt(
                                "snapshot version exceeds usize".into(),
                            ))
                        })?);
                }
                Err(error) => {
                    tracing::warn!(%error, aggregate_type = A::TYPE, "snapshot unreadable; folding every event");
                    events = self
                        .log
                        .read_aggregate(A::TYPE, aggregate_id, 0)
                        .await
                        .map_err(persistence)?;
                }
            }
        }
        if let Some(sequence) = fold(&mut loaded.state, &events)? {
            loaded.sequence = sequence;
        }
        Ok(loaded)
    }

    /// An aggregate the caller expects to be new, not read from the log: its default state
    /// at sequence 0. The first [`Aggregates::execute`] on it commits at sequence 1, which the
    /// log refuses as `AggregateConflict` when the aggregate exists after all; the caller then
    /// [`Aggregates::load`]s it and goes on as for one that existed (ADR 27). For a request
    /// that almost always creates its aggregate (a payment's first submission) this saves
    /// the read that would find nothing.
    pub fn assume_new(&self, aggregate_id: &str) -> Loaded<A> {
        Loaded {
            aggregate_id: aggregate_id.to_owned(),
            state: A::default(),
            sequence: 0,
            snapshot: None,
        }
    }

    /// Decides `command` on the state held, commits the events it yields (refused as a
    /// conflict if another writer appended to the aggregate since it was loaded) and keeps
    /// the new state. On any error the state held is unchanged.
    pub async fn execute(
        &self,
        loaded: &mut Loaded<A>,
        command: A::Command,
        metadata: CommandMetadata,
    ) -> Result<(), AggregateError<A::Error>> {
        let mut state = loaded.state.clone();
        let sink = EventSink::default();
        // cqrs-es 0.5: the sink applies every event it takes to the state.
        state
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(());
        }
        let count = events.len();
        let snapshot_taken = count >= self.snapshot_every - (loaded.sequence % self.snapshot_every);
        let context = EventStoreAggregateContext {
            aggregate_id: loaded.aggregate_id.clone(),
            aggregate: state.clone(),
            current_sequence: loaded.sequence,
            current_snapshot: loaded.snapshot,
        };
        let metadata: HashMap<String, String> = metadata.into_map();
        self.store.commit(events, context, metadata).await?;
        loaded.state = state;
        loaded.sequence += count;
        if snapshot_taken {
            loaded.snapshot = Some(loaded.snapshot.map_or(1, |version| version + 1));
        }
        Ok(())
    }

    /// [`Aggregates::execute`], decided again on the state reloaded from the log when another
    /// writer appended meanwhile, up to `attempts` times in all (as
    /// [`crate::execute_retrying`]): for commands that are safe to decide again.
    pub async fn execute_retrying(
        &self,
        loaded: &mut Loaded<A>,
        command: A::Command,
        metadata: CommandMetadata,
        attempts: u32,
    ) -> Result<(), AggregateError<A::Error>>
    where
        A::Command: Clone,
    {
        let mut attempt = 1;
        loop {
            match self
                .execute(loaded, command.clone(), metadata.clone())
                .await
            {
                Err(AggregateError::AggregateConflict) if attempt < attempts => {
                    attempt += 1;
                    // A short, growing pause lets the other writer finish.
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 2))
                        .await;
                    *loaded = self.load(&loaded.aggregate_id).await?;
                }
                result => return result,
            }
        }
    }
}
