//! `docs/events-reference.md` is generated from `proto/` and from the services' own event
//! lists: every service's NATS stream and subjects and its Kafka topic, every event of every
//! aggregate with each field (number, name, JSON name, type, and the comment written in the
//! `.proto` file), the envelope, and the Kafka CloudEvents headers as the bus adapter writes
//! them. This test fails when the file is not what the sources say; regenerate it with
//! `MPOS_DOCS_BLESS=1 cargo test -p mposctl --test events_reference`.

use std::fmt::Write as _;
use std::path::PathBuf;

use prost_reflect::{Cardinality, DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

mod common;

use common::every_event_type;

/// The leading comment of the element at `path` in its file, on one line.
fn comment(file: &prost_reflect::FileDescriptor, path: &[i32]) -> String {
    file.file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|location| location.path == path))
        .map(|location| {
            location
                .leading_comments()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace('|', "\\|")
        })
        .unwrap_or_default()
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(message) => format!("`{}`", message.full_name()),
        Kind::Enum(enumeration) => format!("`{}`", enumeration.full_name()),
        scalar => format!("{scalar:?}").to_lowercase(),
    }
}

fn type_of(field: &FieldDescriptor) -> String {
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        return format!(
            "map<{}, {}>",
            kind_name(&entry.map_entry_key_field().kind()),
            kind_name(&entry.map_entry_value_field().kind())
        );
    }
    let name = kind_name(&field.kind());
    match field.cardinality() {
        Cardinality::Repeated => format!("repeated {name}"),
        _ if field.supports_presence() && !matches!(field.kind(), Kind::Message(_)) => {
            format!("optional {name}")
        }
        _ => name,
    }
}

/// A message's comment and its fields as a table.
fn message_section(out: &mut String, message: &MessageDescriptor) {
    let file = message.parent_file();
    let about = comment(&file, message.path());
    if !about.is_empty() {
        let _ = writeln!(out, "{about}\n");
    }
    let _ = writeln!(out, "| # | field | JSON | type | description |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for field in message.fields() {
        let oneof = field
            .containing_oneof()
            .map(|oneof| format!(" (one of `{}`)", oneof.name()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | `{}` | `{}` | {}{oneof} | {} |",
            field.number(),
            field.name(),
            field.json_name(),
            type_of(&field),
            comment(&file, field.path()),
        );
    }
    let _ = writeln!(out);
}

fn render() -> String {
    let pool = DescriptorPool::decode(mpos_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Event reference\n\n\
         Generated from `proto/` and the services' event lists by \
         `crates/mposctl/tests/events_reference.rs`; do not edit by hand (regenerate with \
         `MPOS_DOCS_BLESS=1 cargo test -p mposctl --test events_reference`). How events \
         travel, the hash chain and the compatibility rules are in [events.md](events.md).\n"
    );
    let envelope = pool
        .get_message_by_name("mpos.common.v1.EventEnvelope")
        .expect("the envelope");
    let _ = writeln!(out, "## The envelope: `mpos.common.v1.EventEnvelope`\n");
    message_section(&mut out, &envelope);

    let _ = writeln!(
        out,
        "## Kafka record headers (CloudEvents binary mode)\n\n\
         The record's key is the aggregate id and its value the payload alone; the headers \
         carry the envelope. The example is an event of routing's `exchange` aggregate.\n\n\
         | header | example |\n|---|---|"
    );
    let sample = mpos_bus::EventEnvelope {
        event_id: "0190f5a0-0000-7000-8000-000000000001".into(),
        tenant_id: "acme".into(),
        aggregate_type: "exchange".into(),
        aggregate_id: "acme/p-1".into(),
        sequence: 2,
        global_position: 812,
        occurred_at: Some(mpos_proto::timestamp_from_micros(1_796_601_600_123_456)),
        event_type: "mpos.routing.v1.AcquirerResponded".into(),
        event_version: "1.0".into(),
        payload: Vec::new(),
        previous_hash: vec![0x11; 32],
        hash: vec![0x22; 32],
        correlation_id: "c-1".into(),
        causation_id: "d-1".into(),
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        actor: "service:routing".into(),
        service: "routing".into(),
    };
    for (name, value) in mpos_bus::kafka_headers(&sample) {
        let _ = writeln!(out, "| `{name}` | `{value}` |");
    }
    let _ = writeln!(out);

    let mut services: Vec<&str> = Vec::new();
    for (service, aggregate_type, events) in every_event_type() {
        if !services.contains(&service) {
            services.push(service);
            let _ = writeln!(
                out,
                "## {service}\n\n\
                 - NATS: stream `{}`, subjects `mpos.events.{service}.<tenant>.<aggregate type>.<event>`\n\
                 - Kafka: topic `{}`\n",
                mpos_bus::stream_name(None, service),
                mpos_bus::kafka_topic(None, service),
            );
        }
        let _ = writeln!(out, "### Aggregate `{aggregate_type}`\n");
        for event in events {
            let message = pool
                .get_message_by_name(&event)
                .unwrap_or_else(|| panic!("{event} is not in proto/"));
            let short = event.rsplit('.').next().unwrap_or(&event);
            let _ = writeln!(
                out,
                "#### `{event}`\n\nNATS subject: `mpos.events.{service}.<tenant>.{aggregate_type}.{short}`\n"
            );
            message_section(&mut out, &message);
        }
    }
    out
}

#[test]
fn the_event_reference_is_generated_from_the_sources() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/events-reference.md");
    let generated = render();
    assert!(generated.contains("#### `mpos.authorization.v1.PaymentApproved`"));
    assert!(generated.contains("`ce_id`"));
    if std::env::var_os("MPOS_DOCS_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write");
        return;
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "docs/events-reference.md is not what proto/ and the services say: run MPOS_DOCS_BLESS=1 cargo test -p mposctl --test events_reference"
    );
}
