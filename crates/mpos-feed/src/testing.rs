//! What the unit tests share: embedded (SQLite) stores and envelopes.

#![allow(clippy::unwrap_used)]

use mpos_bus::EventEnvelope;
use mpos_es::EventStore;

/// A fresh SQLite store of `service` in `dir`.
pub(crate) async fn sqlite(dir: &tempfile::TempDir, service: &str) -> EventStore {
    let url = format!("sqlite://{}/{service}.db", dir.path().display());
    EventStore::connect(&url, service).await.unwrap()
}

/// An envelope at `position` of `event_type` with a protobuf `payload`.
pub(crate) fn envelope(
    position: u64,
    tenant_id: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: Vec<u8>,
) -> EventEnvelope {
    EventEnvelope {
        event_id: format!("00000000-0000-7000-8000-{position:012}"),
        tenant_id: tenant_id.to_owned(),
        aggregate_type: "test".to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence: position,
        global_position: position,
        event_type: event_type.to_owned(),
        event_version: "1.0".to_owned(),
        payload,
        service: "followed".to_owned(),
        ..EventEnvelope::default()
    }
}
