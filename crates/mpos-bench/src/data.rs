//! The events the benchmarks write: `TenantRenamed` with realistic ids and metadata.

use std::sync::Arc;

use mpos_es::{EventCodec, NewEvent, ProtoEvent, now_micros};
use mpos_proto::terminal_management as pb;
use serde::{Deserialize, Serialize};

pub(crate) const AGGREGATE_TYPE: &str = "tenant";
pub(crate) const EVENT_TYPE: &str = "mpos.terminal_management.v1.TenantRenamed";

/// The domain event of the benchmark aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "@type")]
pub(crate) enum BenchEvent {
    #[serde(rename = "mpos.terminal_management.v1.TenantRenamed")]
    Renamed(pb::TenantRenamed),
}

impl ProtoEvent for BenchEvent {
    fn encode_payload(&self) -> Vec<u8> {
        match self {
            Self::Renamed(message) => prost::Message::encode_to_vec(message),
        }
    }
    fn decode_payload(event_type: &str, payload: &[u8]) -> Result<Self, String> {
        if event_type != EVENT_TYPE {
            return Err(format!("unknown event type {event_type:?}"));
        }
        <pb::TenantRenamed as prost::Message>::decode(payload)
            .map(Self::Renamed)
            .map_err(|error| error.to_string())
    }
    fn type_names() -> Vec<(&'static str, String)> {
        vec![(EVENT_TYPE, <pb::TenantRenamed as prost::Name>::full_name())]
    }
}

pub(crate) fn codec() -> Arc<EventCodec> {
    Arc::new(EventCodec::new().register::<BenchEvent>(AGGREGATE_TYPE))
}

/// Canonical JSON (keys sorted) of a value.
fn canonical(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .map(|value| value.to_string())
        .unwrap_or_default()
}

/// One event of aggregate `aggregate_id` at `sequence`, occurring now.
pub(crate) fn event(tenant: &str, aggregate_id: &str, sequence: u64) -> NewEvent {
    let payload = BenchEvent::Renamed(pb::TenantRenamed {
        tenant_id: aggregate_id.to_owned(),
        old_name: format!("Merchant {aggregate_id} rev {}", sequence.saturating_sub(1)),
        new_name: format!("Merchant {aggregate_id} rev {sequence}"),
    });
    let event_id = uuid::Uuid::now_v7().to_string();
    let metadata = serde_json::json!({
        "actor": "operator:bench",
        "causation_id": event_id,
        "correlation_id": uuid::Uuid::now_v7().to_string(),
        "tenant_id": tenant,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    });
    NewEvent {
        event_id,
        tenant_id: tenant.to_owned(),
        aggregate_type: AGGREGATE_TYPE.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        event_type: EVENT_TYPE.to_owned(),
        event_version: "1.0".to_owned(),
        payload: canonical(&payload),
        metadata: canonical(&metadata),
        occurred_at_us: now_micros(),
    }
}

/// Hands out events round-robin over `aggregates` aggregates, keeping their sequences.
#[derive(Debug)]
pub(crate) struct Generator {
    prefix: String,
    sequences: Vec<u64>,
    next: usize,
}

impl Generator {
    pub(crate) fn new(prefix: &str, aggregates: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            sequences: vec![0; aggregates.max(1)],
            next: 0,
        }
    }

    /// `count` consecutive events of the next aggregate (one command's events).
    pub(crate) fn batch(&mut self, tenant: &str, count: usize) -> Vec<NewEvent> {
        let index = self.next;
        self.next = (self.next + 1) % self.sequences.len();
        let id = format!("{}-{index:04}", self.prefix);
        (0..count)
            .map(|_| {
                self.sequences[index] += 1;
                event(tenant, &id, self.sequences[index])
            })
            .collect()
    }
}
