//! The integrator contract, from outside Rust: `examples/integrator-python/consumer.py`
//! follows each service's stream on the real NATS server and decodes every event type of the
//! platform with nothing but the `.proto` files. One event of each type is published through
//! the platform's bus adapter, every field of its payload set (strings, numbers, enums, bytes,
//! nested messages, lists, maps, one member of each oneof); the consumer must name each event,
//! re-encode each payload to exactly the bytes that were sent, and print the same proto3 JSON
//! as the platform's own decoder.
//!
//! Needs the Python of `infra/pyiso8583.sh` with the consumer's packages (`MPOS_TEST_PYTHON`,
//! set by `infra/test.sh`); without it the test says so and checks nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;

use mpos_bus::EventEnvelope;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, Value};
use serde_json::Value as Json;

mod common;

use common::every_event_type;

/// A value for every field of `descriptor`, nested messages filled down to `depth`.
fn filled(descriptor: &MessageDescriptor, depth: u32) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    if descriptor.full_name() == "google.protobuf.Timestamp" {
        message.set_field_by_number(1, Value::I64(1_796_601_600));
        message.set_field_by_number(2, Value::I32(123_000_000));
        return message;
    }
    let mut oneofs_set = Vec::new();
    for field in descriptor.fields() {
        if let Some(oneof) = field.containing_oneof() {
            if oneofs_set.contains(&oneof.name().to_owned()) {
                continue;
            }
            oneofs_set.push(oneof.name().to_owned());
        }
        let kind = field.kind();
        let value = if field.is_map() {
            let Some(entry) = kind.as_message() else {
                continue;
            };
            let key = match scalar(&entry.map_entry_key_field().kind(), field.name(), depth) {
                Some(Value::String(key)) => MapKey::String(key),
                Some(Value::I32(key)) => MapKey::I32(key),
                Some(Value::I64(key)) => MapKey::I64(key),
                Some(Value::U32(key)) => MapKey::U32(key),
                Some(Value::U64(key)) => MapKey::U64(key),
                Some(Value::Bool(key)) => MapKey::Bool(key),
                _ => continue,
            };
            let Some(value) = scalar(&entry.map_entry_value_field().kind(), field.name(), depth)
            else {
                continue;
            };
            Value::Map(HashMap::from([(key, value)]))
        } else {
            let Some(value) = scalar(&kind, field.name(), depth) else {
                continue;
            };
            if field.is_list() {
                Value::List(vec![value])
            } else {
                value
            }
        };
        message.set_field(&field, value);
    }
    message
}

/// A non-default value of a kind (`None`: a message below the depth limit).
fn scalar(kind: &Kind, name: &str, depth: u32) -> Option<Value> {
    Some(match kind {
        Kind::String => Value::String(format!("{name}-1")),
        Kind::Bytes => Value::Bytes(vec![1, 2, 3].into()),
        Kind::Bool => Value::Bool(true),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-7),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-7_000_000_000),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(7),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(7_000_000_000),
        Kind::Float => Value::F32(1.5),
        Kind::Double => Value::F64(2.25),
        Kind::Enum(enumeration) => Value::EnumNumber(
            enumeration
                .values()
                .map(|value| value.number())
                .find(|number| *number != 0)
                .unwrap_or(0),
        ),
        Kind::Message(message) if depth > 0 => Value::Message(filled(message, depth - 1)),
        Kind::Message(_) => return None,
    })
}

#[tokio::test]
async fn a_python_consumer_decodes_every_event_type_with_the_proto_files() {
    let Ok(python) = std::env::var("MPOS_TEST_PYTHON") else {
        eprintln!("MPOS_TEST_PYTHON is not set (infra/test.sh sets it): nothing checked");
        return;
    };
    let pool = DescriptorPool::decode(mpos_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let nats =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let bus = mpos_bus::connect(&format!("{nats}?namespace={namespace}"))
        .await
        .expect("nats (infra/nats.sh)");

    let mut sent: BTreeMap<&str, Vec<EventEnvelope>> = BTreeMap::new();
    // Each payload in the proto3 JSON mapping, as the platform's own tools print it.
    let mut json: HashMap<String, Json> = HashMap::new();
    for (service, aggregate_type, types) in every_event_type() {
        for event_type in types {
            let descriptor = pool
                .get_message_by_name(&event_type)
                .unwrap_or_else(|| panic!("{event_type} is not in proto/"));
            let message = filled(&descriptor, 3);
            let payload = prost_reflect::prost::Message::encode_to_vec(&message);
            assert!(!payload.is_empty(), "{event_type}");
            json.insert(
                event_type.clone(),
                serde_json::to_value(&message).expect("proto3 JSON"),
            );
            let events = sent.entry(service).or_default();
            events.push(EventEnvelope {
                event_id: uuid::Uuid::now_v7().to_string(),
                tenant_id: "acme".into(),
                aggregate_type: aggregate_type.into(),
                aggregate_id: format!("{aggregate_type}-1"),
                sequence: events.len() as u64 + 1,
                global_position: events.len() as u64 + 1,
                occurred_at: Some(mpos_proto::timestamp_from_micros(1_796_601_600_000_000)),
                event_type: event_type.clone(),
                event_version: "1.0".into(),
                payload,
                previous_hash: vec![0; 32],
                hash: vec![0xab; 32],
                correlation_id: "corr-1".into(),
                causation_id: "cause-1".into(),
                traceparent: String::new(),
                actor: "service:test".into(),
                service: service.into(),
            });
        }
    }
    let total: usize = sent.values().map(Vec::len).sum();
    assert!(total > 50, "{total} event types");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/integrator-python/consumer.py");
    for (service, events) in &sent {
        bus.publisher.publish(events).await.expect("publish");
        let output = Command::new(&python)
            .arg(&script)
            .args([
                "--nats",
                &nats,
                "--namespace",
                &namespace,
                "--service",
                service,
            ])
            .args(["--tenant", "acme", "--count", &events.len().to_string()])
            .output()
            .expect("run the python consumer");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{service}: {stderr}");
        let lines: Vec<Json> = String::from_utf8(output.stdout)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), events.len(), "{service}: {stderr}");
        for (line, event) in lines.iter().zip(events) {
            assert_eq!(line["event_id"], event.event_id.as_str(), "{line}");
            assert_eq!(line["event_type"], event.event_type.as_str(), "{line}");
            assert_eq!(line["tenant_id"], "acme", "{line}");
            assert_eq!(
                line["payload_reencoded"],
                hex::encode(&event.payload).as_str(),
                "{}: the consumer did not decode every field",
                event.event_type
            );
            // Unknown fields would be re-encoded too but left out of the JSON: the JSON
            // proves every field was decoded by name, the same as the platform reads it.
            assert_eq!(
                line["payload"], json[&event.event_type],
                "{}: the consumer's JSON differs from the platform's",
                event.event_type
            );
        }
    }
    eprintln!(
        "{total} event types of {} services decoded by the python consumer",
        sent.len()
    );
    if let Some(address) = nats.strip_prefix("nats://")
        && let Ok(client) = async_nats::connect(address).await
    {
        let jetstream = async_nats::jetstream::new(client);
        for service in sent.keys() {
            let _ = jetstream
                .delete_stream(mpos_bus::stream_name(Some(&namespace), service))
                .await;
        }
    }
}
