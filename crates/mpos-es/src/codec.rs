//! From stored events (canonical JSON) to the protobuf payloads every bus carries.

use std::collections::HashMap;

use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::event::StoredEvent;

/// A domain event enum whose variants are protobuf messages (see [`proto_events!`](crate::proto_events)).
pub trait ProtoEvent: DeserializeOwned {
    /// The protobuf encoding of the variant's message.
    fn encode_payload(&self) -> Vec<u8>;
    /// The event of type `event_type` (a variant's protobuf name) from its protobuf
    /// encoding: what a bus carries back into the event the log holds.
    fn decode_payload(event_type: &str, payload: &[u8]) -> Result<Self, String>
    where
        Self: Sized;
    /// `(name used in the store, the message's own protobuf full name)` per variant; they
    /// must be equal, which [`ProtoEvent::check_type_names`] verifies.
    fn type_names() -> Vec<(&'static str, String)>;
    /// Fails if a variant's declared event type differs from its message's protobuf name.
    fn check_type_names() -> Result<(), String> {
        for (declared, actual) in Self::type_names() {
            if declared != actual {
                return Err(format!(
                    "event type {declared:?} declared for message {actual:?}"
                ));
            }
        }
        Ok(())
    }
}

type Encoder = fn(&str) -> Result<Vec<u8>, StoreError>;
type Decoder = fn(&str, &[u8]) -> Result<String, StoreError>;

fn encode_as<E: ProtoEvent>(payload: &str) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::from_str::<E>(payload)?.encode_payload())
}

fn decode_as<E: ProtoEvent + serde::Serialize>(
    event_type: &str,
    payload: &[u8],
) -> Result<String, StoreError> {
    let event = E::decode_payload(event_type, payload).map_err(StoreError::Encoding)?;
    Ok(serde_json::to_string(&event)?)
}

/// Which event enum encodes each aggregate type's events.
#[derive(Clone, Debug, Default)]
pub struct EventCodec {
    encoders: HashMap<String, (Encoder, Decoder)>,
}

impl EventCodec {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the event enum of an aggregate type.
    pub fn register<E: ProtoEvent + serde::Serialize>(mut self, aggregate_type: &str) -> Self {
        self.encoders
            .insert(aggregate_type.to_owned(), (encode_as::<E>, decode_as::<E>));
        self
    }

    /// The protobuf payload of a stored event.
    pub fn encode(&self, event: &StoredEvent) -> Result<Vec<u8>, StoreError> {
        let encoder = self
            .encoders
            .get(&event.event.aggregate_type)
            .ok_or_else(|| {
                StoreError::Encoding(format!(
                    "no codec registered for aggregate type {:?}",
                    event.event.aggregate_type
                ))
            })?;
        encoder.0(&event.event.payload)
    }

    /// The event a bus delivered, as the service's log holds it: its payload decoded from
    /// protobuf back into the log's JSON, so a read model can be folded from a broker's
    /// stream with the service's own projection.
    pub fn stored_from_envelope(
        &self,
        envelope: &mpos_proto::common::EventEnvelope,
    ) -> Result<StoredEvent, StoreError> {
        let (_, decoder) = self.encoders.get(&envelope.aggregate_type).ok_or_else(|| {
            StoreError::Encoding(format!(
                "no codec registered for aggregate type {:?}",
                envelope.aggregate_type
            ))
        })?;
        Ok(StoredEvent {
            global_position: envelope.global_position,
            event: crate::event::NewEvent {
                event_id: envelope.event_id.clone(),
                tenant_id: envelope.tenant_id.clone(),
                aggregate_type: envelope.aggregate_type.clone(),
                aggregate_id: envelope.aggregate_id.clone(),
                sequence: envelope.sequence,
                event_type: envelope.event_type.clone(),
                event_version: envelope.event_version.clone(),
                payload: decoder(&envelope.event_type, &envelope.payload)?,
                metadata: metadata_of(envelope)?,
                occurred_at_us: envelope
                    .occurred_at
                    .as_ref()
                    .map_or(0, mpos_proto::timestamp_to_micros),
            },
            previous_hash: hash_of("previous_hash", &envelope.previous_hash)?,
            hash: hash_of("hash", &envelope.hash)?,
        })
    }
}

fn hash_of(field: &str, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| StoreError::Encoding(format!("envelope {field}: not 32 bytes")))
}

/// The metadata the envelope carries (correlation, causation, trace and actor; not the
/// command's tenant, which an envelope does not carry), as a metadata map.
fn metadata_of(envelope: &mpos_proto::common::EventEnvelope) -> Result<String, StoreError> {
    let metadata = crate::event::CommandMetadata {
        tenant_id: String::new(),
        correlation_id: envelope.correlation_id.clone(),
        causation_id: envelope.causation_id.clone(),
        traceparent: envelope.traceparent.clone(),
        actor: envelope.actor.clone(),
    };
    let map: std::collections::BTreeMap<_, _> = metadata
        .into_map()
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    Ok(serde_json::to_string(&map)?)
}

/// Declares a domain event enum whose variants wrap protobuf messages.
///
/// The enum serialises as the message's proto3 JSON with an `@type` member naming the full
/// protobuf message name (like `google.protobuf.Any`), implements cqrs-es `DomainEvent`
/// (event type = that name) and [`ProtoEvent`].
///
/// ```ignore
/// mpos_es::proto_events! {
///     pub enum TenantEvent {
///         Created(pb::TenantCreated) = "mpos.terminal_management.v1.TenantCreated",
///     }
/// }
/// ```
#[macro_export]
macro_rules! proto_events {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident($message:ty) = $type_name:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(tag = "@type")]
        $vis enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $type_name)] $variant($message), )+
        }

        impl ::cqrs_es::DomainEvent for $name {
            fn event_type(&self) -> String {
                match self { $( Self::$variant(_) => $type_name.to_owned(), )+ }
            }
            fn event_version(&self) -> String {
                "1.0".to_owned()
            }
        }

        impl $crate::ProtoEvent for $name {
            fn encode_payload(&self) -> Vec<u8> {
                match self { $( Self::$variant(message) => ::prost::Message::encode_to_vec(message), )+ }
            }
            fn decode_payload(event_type: &str, payload: &[u8]) -> Result<Self, String> {
                match event_type {
                    $( $type_name => <$message as ::prost::Message>::decode(payload)
                        .map(Self::$variant)
                        .map_err(|error| format!("{}: {error}", $type_name)), )+
                    other => Err(format!("unknown event type {other:?}")),
                }
            }
            fn type_names() -> Vec<(&'static str, String)> {
                vec![ $( ($type_name, <$message as ::prost::Name>::full_name()), )+ ]
            }
        }
    };
}
