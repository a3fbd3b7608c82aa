//! From stored events (canonical JSON) to the protobuf payloads every bus carries.

use std::collections::HashMap;

use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::event::StoredEvent;

/// A domain event enum whose variants are protobuf messages (see [`proto_events!`](crate::proto_events)).
pub trait ProtoEvent: DeserializeOwned {
    /// The protobuf encoding of the variant's message.
    fn encode_payload(&self) -> Vec<u8>;
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

fn encode_as<E: ProtoEvent>(payload: &str) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::from_str::<E>(payload)?.encode_payload())
}

/// Which event enum encodes each aggregate type's events.
#[derive(Clone, Debug, Default)]
pub struct EventCodec {
    encoders: HashMap<String, Encoder>,
}

impl EventCodec {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the event enum of an aggregate type.
    pub fn register<E: ProtoEvent>(mut self, aggregate_type: &str) -> Self {
        self.encoders
            .insert(aggregate_type.to_owned(), encode_as::<E>);
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
        encoder(&event.event.payload)
    }
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
            fn type_names() -> Vec<(&'static str, String)> {
                vec![ $( ($type_name, <$message as ::prost::Name>::full_name()), )+ ]
            }
        }
    };
}
