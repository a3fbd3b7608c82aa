//! The cqrs-es persistence port, implemented on [`EventStore`].

use std::collections::HashMap;

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    EventUpcaster, PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use serde_json::Value;

use crate::error::StoreError;
use crate::event::{CommandMetadata, NewEvent, PLATFORM_TENANT, StoredEvent, now_micros};
use crate::store::{EventStore, Snapshot};

/// cqrs-es repository over a service's event log.
#[derive(Clone, Debug)]
pub struct EventRepository {
    store: EventStore,
}

impl EventRepository {
    /// A repository writing to `store`.
    pub fn new(store: EventStore) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }
}

impl EventRepository {
    /// The aggregate's state after `events`, from its last snapshot and the stored events
    /// since; `None` (no snapshot this time) if an event cannot be read without upcasting.
    async fn fold_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
        events: &[SerializedEvent],
        snapshot_version: usize,
    ) -> Option<Snapshot> {
        let result: Result<Snapshot, StoreError> = async {
            let (mut state, after) = match self.store.snapshot(A::TYPE, aggregate_id).await? {
                Some(snapshot) => (
                    serde_json::from_str::<A>(&snapshot.payload)?,
                    snapshot.last_sequence,
                ),
                None => (A::default(), 0),
            };
            for stored in self
                .store
                .read_aggregate(A::TYPE, aggregate_id, after)
                .await?
            {
                state.apply(serde_json::from_str::<A::Event>(&stored.event.payload)?);
            }
            let mut last_sequence = after;
            for event in events {
                state.apply(serde_json::from_value::<A::Event>(event.payload.clone())?);
                last_sequence = u64::try_from(event.sequence).unwrap_or(u64::MAX);
            }
            Ok(Snapshot {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                last_sequence,
                snapshot_version: u64::try_from(snapshot_version).unwrap_or(u64::MAX),
                payload: serde_json::to_string(&state)?,
            })
        }
        .await;
        match result {
            Ok(snapshot) => Some(snapshot),
            Err(error) => {
                tracing::warn!(aggregate_type = A::TYPE, aggregate_id, %error, "snapshot skipped");
                None
            }
        }
    }
}

/// The event as cqrs-es sees it.
pub fn to_serialized(stored: &StoredEvent) -> Result<SerializedEvent, StoreError> {
    Ok(SerializedEvent {
        aggregate_id: stored.event.aggregate_id.clone(),
        sequence: usize::try_from(stored.event.sequence)
            .map_err(|_| StoreError::Corrupt("sequence exceeds usize".into()))?,
        aggregate_type: stored.event.aggregate_type.clone(),
        event_type: stored.event.event_type.clone(),
        event_version: stored.event.event_version.clone(),
        payload: serde_json::from_str(&stored.event.payload)?,
        metadata: serde_json::from_str(&stored.event.metadata)?,
    })
}

/// Applies every upcaster that accepts the event, in order (as cqrs-es does on load).
pub fn upcast(event: SerializedEvent, upcasters: &[Box<dyn EventUpcaster>]) -> SerializedEvent {
    upcasters.iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    })
}

fn to_new_event(event: &SerializedEvent) -> Result<NewEvent, StoreError> {
    let metadata_map: HashMap<String, String> = serde_json::from_value(event.metadata.clone())?;
    let metadata = CommandMetadata::from_map(&metadata_map);
    let tenant_id = if metadata.tenant_id.is_empty() {
        PLATFORM_TENANT.to_owned()
    } else {
        metadata.tenant_id
    };
    Ok(NewEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        sequence: u64::try_from(event.sequence)
            .map_err(|_| StoreError::Encoding("sequence exceeds u64".into()))?,
        event_type: event.event_type.clone(),
        event_version: event.event_version.clone(),
        // serde_json's maps are ordered by key, so this text is canonical.
        payload: serde_json::to_string(&event.payload)?,
        metadata: serde_json::to_string(&event.metadata)?,
        occurred_at_us: now_micros(),
    })
}

fn to_serialized_all(events: Vec<StoredEvent>) -> Result<Vec<SerializedEvent>, PersistenceError> {
    events
        .iter()
        .map(|event| to_serialized(event).map_err(PersistenceError::from))
        .collect()
}

async fn feed(
    events: Result<Vec<StoredEvent>, StoreError>,
) -> Result<ReplayStream, PersistenceError> {
    let events = events?;
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    for event in &events {
        feed.push(to_serialized(event).map_err(PersistenceError::from))
            .await?;
    }
    Ok(stream)
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        to_serialized_all(self.store.read_aggregate(A::TYPE, aggregate_id, 0).await?)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after = u64::try_from(last_sequence).unwrap_or(u64::MAX);
        to_serialized_all(
            self.store
                .read_aggregate(A::TYPE, aggregate_id, after)
                .await?,
        )
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let Some(snapshot) = self.store.snapshot(A::TYPE, aggregate_id).await? else {
            return Ok(None);
        };
        Ok(Some(SerializedSnapshot {
            aggregate_id: snapshot.aggregate_id,
            aggregate: serde_json::from_str(&snapshot.payload)?,
            current_sequence: usize::try_from(snapshot.last_sequence).unwrap_or(usize::MAX),
            current_snapshot: usize::try_from(snapshot.snapshot_version).unwrap_or(usize::MAX),
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let new_events = events
            .iter()
            .map(to_new_event)
            .collect::<Result<Vec<_>, _>>()?;
        // cqrs-es 0.5.0 hands over a state with the new events applied twice (EventSink::write
        // applies them, then the snapshot update applies them again), so the snapshot is
        // refolded here from the previous snapshot and the events (see docs/adr/0004).
        let snapshot = match snapshot_update {
            Some((aggregate_id, _, snapshot_version)) => {
                self.fold_snapshot::<A>(&aggregate_id, events, snapshot_version)
                    .await
            }
            None => None,
        };
        self.store.append(new_events, snapshot).await?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        feed(self.store.read_aggregate(A::TYPE, aggregate_id, 0).await).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        feed(self.store.read_aggregate_type(A::TYPE).await).await
    }
}
