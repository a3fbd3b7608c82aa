//! Protobuf messages of the mPOS Platform, generated from `proto/` at build time.
//!
//! Every event, command and RPC body is a message here. Each message implements
//! [`prost::Message`], [`prost::Name`] (its full protobuf name) and serde following the
//! proto3 JSON mapping, so the same schema serves the binary bus encoding and JSON APIs.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all, clippy::pedantic)]

pub use prost;
pub use prost::{Message, Name};

/// The encoded `FileDescriptorSet` of every proto file, for reflection-based tools.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mpos_descriptor.bin"));

pub mod mpos {
    pub mod attestation {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mpos.attestation.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/mpos.attestation.v1.serde.rs"));
        }
    }
    pub mod authorization {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mpos.authorization.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/mpos.authorization.v1.serde.rs"));
        }
    }
    pub mod common {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mpos.common.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/mpos.common.v1.serde.rs"));
        }
    }
    pub mod hsm {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mpos.hsm.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/mpos.hsm.v1.serde.rs"));
        }
    }
    pub mod key_injection {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mpos.key_injection.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/mpos.key_injection.v1.serde.rs"));
        }
    }
    pub mod routing {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mpos.routing.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/mpos.routing.v1.serde.rs"));
        }
    }
    pub mod terminal_management {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mpos.terminal_management.v1.rs"));
            include!(concat!(
                env!("OUT_DIR"),
                "/mpos.terminal_management.v1.serde.rs"
            ));
        }
    }
}

pub use mpos::attestation::v1 as attestation;
pub use mpos::authorization::v1 as authorization;
pub use mpos::common::v1 as common;
pub use mpos::hsm::v1 as hsm;
pub use mpos::key_injection::v1 as key_injection;
pub use mpos::routing::v1 as routing;
pub use mpos::terminal_management::v1 as terminal_management;

/// A UTC instant as a protobuf timestamp.
pub fn timestamp_from_micros(micros: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// Microseconds since the Unix epoch of a protobuf timestamp.
pub fn timestamp_to_micros(timestamp: &pbjson_types::Timestamp) -> i64 {
    timestamp.seconds.saturating_mul(1_000_000) + i64::from(timestamp.nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_are_the_protobuf_names() {
        assert_eq!(
            common::EventEnvelope::full_name(),
            "mpos.common.v1.EventEnvelope"
        );
        assert_eq!(
            terminal_management::TenantCreated::full_name(),
            "mpos.terminal_management.v1.TenantCreated"
        );
    }

    #[test]
    fn json_follows_the_proto3_mapping() {
        let created = terminal_management::TenantCreated {
            tenant_id: "acme".into(),
            name: "Acme Pay".into(),
        };
        let json = serde_json::to_value(&created).expect("serialize");
        // proto3 JSON mapping: lowerCamelCase field names.
        assert_eq!(
            json,
            serde_json::json!({"tenantId": "acme", "name": "Acme Pay"})
        );
        let back: terminal_management::TenantCreated =
            serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, created);
    }

    #[test]
    fn binary_round_trip_of_the_envelope() {
        let envelope = common::EventEnvelope {
            event_id: "0190f5a0-0000-7000-8000-000000000001".into(),
            global_position: 42,
            occurred_at: Some(timestamp_from_micros(1_700_000_000_123_456)),
            hash: vec![7; 32],
            ..Default::default()
        };
        let bytes = envelope.encode_to_vec();
        let decoded = common::EventEnvelope::decode(bytes.as_slice()).expect("decode");
        assert_eq!(decoded, envelope);
        assert_eq!(
            timestamp_to_micros(decoded.occurred_at.as_ref().expect("time")),
            1_700_000_000_123_456
        );
    }

    #[test]
    fn timestamps_before_the_epoch_round_trip() {
        for micros in [-1_i64, -1_000_001, 0, 999_999] {
            assert_eq!(timestamp_to_micros(&timestamp_from_micros(micros)), micros);
        }
    }
}
