//! Events as the log stores them, and the metadata every command carries.

use std::collections::HashMap;

use mpos_proto::common::EventEnvelope;
use serde::{Deserialize, Serialize};

/// Tenant id used for events that belong to the platform itself rather than a tenant.
pub const PLATFORM_TENANT: &str = "_platform";

/// Metadata keys the kernel reads from a cqrs-es command's metadata map.
pub mod metadata_keys {
    /// The tenant the event belongs to.
    pub const TENANT_ID: &str = "tenant_id";
    /// Correlates every event and message of one business operation.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// The id of the message or event that caused this one.
    pub const CAUSATION_ID: &str = "causation_id";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Who caused the event.
    pub const ACTOR: &str = "actor";
}

/// The metadata of one command: who, for which tenant, in which trace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMetadata {
    /// The tenant the command acts for ([`PLATFORM_TENANT`] for platform-level aggregates).
    pub tenant_id: String,
    /// Correlates everything caused by one request.
    pub correlation_id: String,
    /// What caused this command (message or event id), if anything.
    pub causation_id: String,
    /// W3C `traceparent` of the request.
    pub traceparent: String,
    /// Who: `operator:<name>`, `tenant-admin:<key id>`, `device:<id>`, `service:<name>`.
    pub actor: String,
}

impl CommandMetadata {
    /// The metadata map cqrs-es carries into every event of the command.
    pub fn into_map(self) -> HashMap<String, String> {
        HashMap::from([
            (metadata_keys::TENANT_ID.to_owned(), self.tenant_id),
            (
                metadata_keys::CORRELATION_ID.to_owned(),
                self.correlation_id,
            ),
            (metadata_keys::CAUSATION_ID.to_owned(), self.causation_id),
            (metadata_keys::TRACEPARENT.to_owned(), self.traceparent),
            (metadata_keys::ACTOR.to_owned(), self.actor),
        ])
    }

    /// Reads the metadata back from a stored metadata map; absent keys are empty.
    pub fn from_map(map: &HashMap<String, String>) -> Self {
        let get = |key: &str| map.get(key).cloned().unwrap_or_default();
        Self {
            tenant_id: get(metadata_keys::TENANT_ID),
            correlation_id: get(metadata_keys::CORRELATION_ID),
            causation_id: get(metadata_keys::CAUSATION_ID),
            traceparent: get(metadata_keys::TRACEPARENT),
            actor: get(metadata_keys::ACTOR),
        }
    }
}

/// An event to append: everything but its global position and hashes, which the store assigns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// UUIDv7 in canonical text form.
    pub event_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Aggregate type, e.g. `tenant`.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Position in the aggregate's stream, from 1.
    pub sequence: u64,
    /// Full protobuf name of the payload.
    pub event_type: String,
    /// Payload schema version.
    pub event_version: String,
    /// Payload as canonical JSON text (object keys sorted).
    pub payload: String,
    /// Metadata as canonical JSON text (object keys sorted).
    pub metadata: String,
    /// Microseconds since the Unix epoch.
    pub occurred_at_us: i64,
}

/// An event as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Gap-free position in the service log, from 1.
    pub global_position: u64,
    /// The event itself.
    pub event: NewEvent,
    /// Hash of the previous event in the log (zeros for the first).
    pub previous_hash: [u8; 32],
    /// Hash of this event's canonical encoding.
    pub hash: [u8; 32],
}

impl StoredEvent {
    /// The metadata the command carried.
    pub fn metadata(&self) -> CommandMetadata {
        let map: HashMap<String, String> =
            serde_json::from_str(&self.event.metadata).unwrap_or_default();
        CommandMetadata::from_map(&map)
    }

    /// The protobuf envelope, with `payload` already encoded by the caller.
    pub fn to_envelope(&self, service: &str, payload: Vec<u8>) -> EventEnvelope {
        let metadata = self.metadata();
        EventEnvelope {
            event_id: self.event.event_id.clone(),
            tenant_id: self.event.tenant_id.clone(),
            aggregate_type: self.event.aggregate_type.clone(),
            aggregate_id: self.event.aggregate_id.clone(),
            sequence: self.event.sequence,
            global_position: self.global_position,
            occurred_at: Some(mpos_proto::timestamp_from_micros(self.event.occurred_at_us)),
            event_type: self.event.event_type.clone(),
            event_version: self.event.event_version.clone(),
            payload,
            previous_hash: self.previous_hash.to_vec(),
            hash: self.hash.to_vec(),
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            traceparent: metadata.traceparent,
            actor: metadata.actor,
            service: service.to_owned(),
        }
    }
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}
