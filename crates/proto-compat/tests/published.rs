//! The platform's schema (`proto/`, as `mpos-proto` builds it) against the published one
//! (`proto/published.txt`), and the rules themselves on small schemas.
//!
//! After a compatible change (a new message, field or value), record it as published:
//! `MPOS_PROTO_BLESS=1 cargo test -p proto-compat`. A breaking change fails here whatever the
//! variable says: reserve the number and name of what is removed, and add rather than change.

use std::path::PathBuf;

use proto_compat::{Breaking, Field, Schema, breaking_changes};

const HEADER: &str = "\
# The published protobuf schema of the mPOS Platform: every message and enum of proto/, each
# field and value by number, and the reserved numbers. CI fails on a change that would break a
# consumer of it (crates/proto-compat). After a compatible change, record it:
#   MPOS_PROTO_BLESS=1 cargo test -p proto-compat
";

fn published_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/published.txt")
}

#[test]
fn the_schema_breaks_nothing_published_and_records_every_addition() {
    let current = Schema::from_descriptor_set(mpos_proto::FILE_DESCRIPTOR_SET)
        .expect("the platform's descriptors");
    assert!(
        current
            .messages
            .contains_key("mpos.authorization.v1.PaymentApproved"),
        "the descriptors hold the platform's messages"
    );
    let path = published_path();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let published = Schema::parse(&text).expect("proto/published.txt parses");
    let breaking = breaking_changes(&published, &current);
    assert!(
        breaking.is_empty(),
        "breaking changes to the published schema:\n{}",
        breaking
            .iter()
            .map(|change| format!("  - {change}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    if std::env::var_os("MPOS_PROTO_BLESS").is_some() {
        std::fs::write(&path, format!("{HEADER}{}", current.render())).expect("write");
        return;
    }
    assert!(
        published == current,
        "proto/ changed compatibly but proto/published.txt does not record it yet: run MPOS_PROTO_BLESS=1 cargo test -p proto-compat"
    );
}

const PUBLISHED: &str = "\
# a comment
message mpos.test.v1.Paid
  field 1 tenant_id single string
  field 2 amount single uint64
  field 3 tags repeated string
  field 4 status single enum:mpos.test.v1.Status
  field 5 card optional message:mpos.test.v1.Card
  reserved 9 10
message mpos.test.v1.Card
  field 1 bin single string
enum mpos.test.v1.Status
  value 0 STATUS_UNSPECIFIED
  value 1 STATUS_OK
  value 2 STATUS_GONE
  reserved 5 5
";

fn published() -> Schema {
    Schema::parse(PUBLISHED).expect("parses")
}

/// `PUBLISHED` with one line replaced (or removed when `new` is empty) and lines added.
fn changed(old: &str, new: &str, added: &str) -> Schema {
    assert!(PUBLISHED.contains(old), "{old}");
    let text = PUBLISHED.replacen(old, new, 1);
    Schema::parse(&format!("{text}{added}")).expect("parses")
}

#[test]
fn additions_break_nothing() {
    let current = changed(
        "  field 5 card optional message:mpos.test.v1.Card\n",
        "  field 5 card optional message:mpos.test.v1.Card\n  field 6 note single string\n",
        "message mpos.test.v1.New\n  field 1 x single bool\nenum mpos.test.v1.Other\n  value 0 OTHER_UNSPECIFIED\n",
    );
    assert_eq!(breaking_changes(&published(), &current), Vec::new());
    assert_eq!(breaking_changes(&published(), &published()), Vec::new());
}

#[test]
fn a_removed_field_must_leave_its_number_reserved() {
    let current = changed("  field 2 amount single uint64\n", "", "");
    assert_eq!(
        breaking_changes(&published(), &current),
        vec![Breaking::FieldRemoved {
            message: "mpos.test.v1.Paid".into(),
            number: 2,
            name: "amount".into(),
        }]
    );
    let reserved = changed("  field 2 amount single uint64\n", "  reserved 2 2\n", "");
    assert_eq!(breaking_changes(&published(), &reserved), Vec::new());
}

#[test]
fn a_changed_type_cardinality_or_name_is_breaking() {
    for (old, new) in [
        (
            "  field 2 amount single uint64\n",
            "  field 2 amount single int64\n",
        ),
        (
            "  field 3 tags repeated string\n",
            "  field 3 tags single string\n",
        ),
        (
            "  field 1 tenant_id single string\n",
            "  field 1 tenant single string\n",
        ),
        (
            "  field 5 card optional message:mpos.test.v1.Card\n",
            "  field 5 card optional message:mpos.test.v1.OtherCard\n",
        ),
    ] {
        let current = changed(old, new, "");
        let breaking = breaking_changes(&published(), &current);
        assert_eq!(breaking.len(), 1, "{new}: {breaking:?}");
        assert!(
            matches!(&breaking[0], Breaking::FieldChanged { message, .. } if message == "mpos.test.v1.Paid"),
            "{breaking:?}"
        );
    }
    let current = changed(
        "  field 2 amount single uint64\n",
        "  field 2 amount single int64\n",
        "",
    );
    assert_eq!(
        breaking_changes(&published(), &current)[0].to_string(),
        "mpos.test.v1.Paid: field 2 changed from single uint64 amount to single int64 amount"
    );
    assert_eq!(
        breaking_changes(&published(), &current),
        vec![Breaking::FieldChanged {
            message: "mpos.test.v1.Paid".into(),
            number: 2,
            was: Field {
                name: "amount".into(),
                cardinality: "single".into(),
                kind: "uint64".into()
            },
            now: Field {
                name: "amount".into(),
                cardinality: "single".into(),
                kind: "int64".into()
            },
        }]
    );
}

#[test]
fn a_reserved_number_is_never_used_again() {
    let current = changed(
        "  reserved 9 10\n",
        "  field 10 revived single string\n",
        "",
    );
    assert_eq!(
        breaking_changes(&published(), &current),
        vec![Breaking::ReservedReused {
            container: "mpos.test.v1.Paid".into(),
            number: 10,
        }]
    );
    let value = changed("  reserved 5 5\n", "  value 5 STATUS_BACK\n", "");
    assert_eq!(
        breaking_changes(&published(), &value),
        vec![Breaking::ReservedReused {
            container: "mpos.test.v1.Status".into(),
            number: 5,
        }]
    );
}

#[test]
fn enum_values_keep_their_number_and_name() {
    let renamed = changed("  value 2 STATUS_GONE\n", "  value 2 STATUS_LEFT\n", "");
    assert_eq!(
        breaking_changes(&published(), &renamed),
        vec![Breaking::ValueRenamed {
            enumeration: "mpos.test.v1.Status".into(),
            number: 2,
            was: "STATUS_GONE".into(),
            now: "STATUS_LEFT".into(),
        }]
    );
    let removed = changed("  value 2 STATUS_GONE\n", "", "");
    assert_eq!(
        breaking_changes(&published(), &removed),
        vec![Breaking::ValueRemoved {
            enumeration: "mpos.test.v1.Status".into(),
            number: 2,
            name: "STATUS_GONE".into(),
        }]
    );
    let reserved = changed("  value 2 STATUS_GONE\n", "", "");
    let mut reserved = reserved;
    if let Some(status) = reserved.enums.get_mut("mpos.test.v1.Status") {
        status.reserved.push((2, 2));
    }
    assert_eq!(breaking_changes(&published(), &reserved), Vec::new());
}

#[test]
fn removed_messages_and_enums_are_breaking() {
    let current = changed(
        "message mpos.test.v1.Card\n  field 1 bin single string\n",
        "",
        "",
    );
    let mut current = current;
    current.enums.clear();
    assert_eq!(
        breaking_changes(&published(), &current),
        vec![
            Breaking::MessageRemoved("mpos.test.v1.Card".into()),
            Breaking::EnumRemoved("mpos.test.v1.Status".into()),
        ]
    );
}

#[test]
fn the_text_form_round_trips_and_bad_lines_are_named() {
    let schema = published();
    assert_eq!(Schema::parse(&schema.render()).expect("parses"), schema);
    let platform =
        Schema::from_descriptor_set(mpos_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    assert_eq!(Schema::parse(&platform.render()).expect("parses"), platform);
    for (text, line) in [
        ("field 1 x single string\n", 1),
        ("message m\n  field x y single string\n", 2),
        ("message m\n  field 1 y sometimes string\n", 2),
        ("enum e\n  value 1\n", 2),
        ("message m\n  reserved 1\n", 2),
        ("message m n\n", 1),
        ("message m\n  value 1 A\n", 2),
    ] {
        match Schema::parse(text) {
            Err(proto_compat::SchemaError::Text { line: found, .. }) => {
                assert_eq!(found, line, "{text:?}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    assert!(Schema::from_descriptor_set(b"\xff\xff").is_err());
}
