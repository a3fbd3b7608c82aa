//! Each proto3 JSON mapping rule, on small inline protos.

mod common;

use common::{INFO, check, descriptors, parse_openapi, post};
use mpos_openapi::{Route, openapi};
use serde_json::{Value, json};

const PROTO: &str = r#"
syntax = "proto3";

package test.v1;

import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

// Every scalar type.
message Scalars {
  double a_double = 1;
  float a_float = 2;
  int32 a_int32 = 3;
  int64 a_int64 = 4;
  uint32 a_uint32 = 5;
  uint64 a_uint64 = 6;
  sint32 a_sint32 = 7;
  sint64 a_sint64 = 8;
  fixed32 a_fixed32 = 9;
  fixed64 a_fixed64 = 10;
  sfixed32 a_sfixed32 = 11;
  sfixed64 a_sfixed64 = 12;
  bool a_bool = 13;
  // A name.
  string a_string = 14;
  bytes a_bytes = 15; // Raw bytes.
}

// How a thing is.
enum Colour {
  COLOUR_UNSPECIFIED = 0;
  // Like the sky.
  COLOUR_BLUE = 1;
  COLOUR_RED = 2;
}

message Shapes {
  repeated string tags = 1;
  repeated Colour colours = 2;
  map<string, int64> counters = 3;
  map<int32, Leaf> leaves = 4;
  Colour colour = 5;
  oneof target {
    string email = 6;
    Leaf leaf = 7;
  }
  optional string nickname = 8;
  string old = 9 [deprecated = true];
  // The leaf in charge.
  Leaf main_leaf = 10;
}

message Leaf {
  string id = 1;
  Outer.Inner inner = 2;
}

message Outer {
  message Inner {
    Node root = 1;
  }
}

// A tree: refers to itself.
message Node {
  repeated Node children = 1;
}

message Unreachable {
  string x = 1;
}

message WellKnown {
  google.protobuf.Timestamp at = 1;
  google.protobuf.Duration after = 2;
  google.protobuf.Struct attributes = 3;
  google.protobuf.Value anything = 4;
  google.protobuf.ListValue list = 5;
  google.protobuf.Empty nothing = 6;
  google.protobuf.Any packed = 7;
  google.protobuf.FieldMask mask = 8;
  google.protobuf.Int64Value big = 9;
  google.protobuf.UInt32Value small = 10;
  google.protobuf.BoolValue flag = 11;
  google.protobuf.StringValue label = 12;
  google.protobuf.BytesValue blob = 13;
  google.protobuf.DoubleValue ratio = 14;
  repeated google.protobuf.Timestamp history = 15;
}
"#;

fn document(routes: &[Route]) -> Value {
    openapi(INFO, routes, &descriptors(PROTO)).expect("document")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no component schema {name}");
    schema
}

fn scalars_doc() -> Value {
    document(&[post("scalars", "/scalars", Some("test.v1.Scalars"), None)])
}

#[test]
fn scalars_follow_the_proto3_json_mapping() {
    let doc = scalars_doc();
    let properties = &schema(&doc, "test.v1.Scalars")["properties"];
    let int32 = json!({"type": "integer", "format": "int32"});
    let uint32 =
        json!({"type": "integer", "format": "uint32", "minimum": 0, "maximum": 4_294_967_295_u32});
    let int64 = json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"});
    let uint64 = json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"});
    assert_eq!(
        properties["aDouble"],
        json!({"type": "number", "format": "double"})
    );
    assert_eq!(
        properties["aFloat"],
        json!({"type": "number", "format": "float"})
    );
    for name in ["aInt32", "aSint32", "aSfixed32"] {
        assert_eq!(properties[name], int32, "{name}");
    }
    for name in ["aUint32", "aFixed32"] {
        assert_eq!(properties[name], uint32, "{name}");
    }
    for name in ["aInt64", "aSint64", "aSfixed64"] {
        assert_eq!(properties[name], int64, "{name}");
    }
    for name in ["aUint64", "aFixed64"] {
        assert_eq!(properties[name], uint64, "{name}");
    }
    assert_eq!(properties["aBool"], json!({"type": "boolean"}));
    assert_eq!(
        properties["aString"],
        json!({"type": "string", "description": "A name."})
    );
    // A trailing comment documents the field too; bytes are base64 strings.
    assert_eq!(
        properties["aBytes"],
        json!({"type": "string", "format": "byte", "description": "Raw bytes."})
    );
    assert_eq!(
        properties.as_object().expect("properties").len(),
        15,
        "one property per field, named in lowerCamelCase"
    );
}

#[test]
fn messages_carry_their_comments_and_require_nothing() {
    let doc = scalars_doc();
    let scalars = schema(&doc, "test.v1.Scalars");
    assert_eq!(scalars["type"], "object");
    assert_eq!(scalars["description"], "Every scalar type.");
    // proto3 JSON omits default values on output: no field is ever required.
    assert!(scalars.get("required").is_none());
}

#[test]
fn enums_are_strings_of_their_value_names() {
    let doc = document(&[post("shapes", "/shapes", Some("test.v1.Shapes"), None)]);
    assert_eq!(
        schema(&doc, "test.v1.Colour"),
        &json!({
            "type": "string",
            "enum": ["COLOUR_UNSPECIFIED", "COLOUR_BLUE", "COLOUR_RED"],
            "description": "How a thing is.\n\n- `COLOUR_BLUE`: Like the sky.",
        })
    );
    let properties = &schema(&doc, "test.v1.Shapes")["properties"];
    assert_eq!(
        properties["colour"],
        json!({"$ref": "#/components/schemas/test.v1.Colour"})
    );
}

#[test]
fn repeated_fields_are_arrays_and_maps_are_objects() {
    let doc = document(&[post("shapes", "/shapes", Some("test.v1.Shapes"), None)]);
    let properties = &schema(&doc, "test.v1.Shapes")["properties"];
    assert_eq!(
        properties["tags"],
        json!({"type": "array", "items": {"type": "string"}})
    );
    assert_eq!(
        properties["colours"],
        json!({"type": "array", "items": {"$ref": "#/components/schemas/test.v1.Colour"}})
    );
    assert_eq!(
        properties["counters"],
        json!({
            "type": "object",
            "additionalProperties": {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
        })
    );
    assert_eq!(
        properties["leaves"],
        json!({
            "type": "object",
            "additionalProperties": {"$ref": "#/components/schemas/test.v1.Leaf"},
        })
    );
    // Map entries are no schemas of their own.
    let names: Vec<&String> = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
        .collect();
    assert!(
        !names.iter().any(|name| name.contains("Entry")),
        "{names:?}"
    );
}

#[test]
fn oneof_members_and_proto3_optional_fields_are_optional_properties() {
    let doc = document(&[post("shapes", "/shapes", Some("test.v1.Shapes"), None)]);
    let shapes = schema(&doc, "test.v1.Shapes");
    assert!(shapes.get("required").is_none());
    let properties = &shapes["properties"];
    let note = "Member of oneof `target`: at most one of `email`, `leaf` is set.";
    assert_eq!(
        properties["email"],
        json!({"type": "string", "description": note})
    );
    // A `$ref` takes no siblings in OpenAPI 3.0: the description wraps it in `allOf`.
    assert_eq!(
        properties["leaf"],
        json!({"allOf": [{"$ref": "#/components/schemas/test.v1.Leaf"}], "description": note})
    );
    // proto3 `optional` is a synthetic oneof: a plain property without a oneof note.
    assert_eq!(properties["nickname"], json!({"type": "string"}));
    assert_eq!(
        properties["old"],
        json!({"type": "string", "deprecated": true})
    );
    assert_eq!(
        properties["mainLeaf"],
        json!({
            "allOf": [{"$ref": "#/components/schemas/test.v1.Leaf"}],
            "description": "The leaf in charge.",
        })
    );
}

#[test]
fn schemas_cover_exactly_the_reachable_messages() {
    let doc = document(&[post("shapes", "/shapes", Some("test.v1.Shapes"), None)]);
    let names: Vec<&str> = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
        .map(String::as_str)
        .collect();
    // Shapes → Leaf → Outer.Inner → Node → Node (recursion ends); Colour; the error body.
    assert_eq!(
        names,
        [
            "ServiceError",
            "test.v1.Colour",
            "test.v1.Leaf",
            "test.v1.Node",
            "test.v1.Outer.Inner",
            "test.v1.Shapes",
        ]
    );
    assert_eq!(
        schema(&doc, "test.v1.Node"),
        &json!({
            "type": "object",
            "description": "A tree: refers to itself.",
            "properties": {
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/test.v1.Node"}},
            },
        })
    );
}

#[test]
fn well_known_types_take_their_json_forms_inline() {
    let doc = document(&[post("wkt", "/wkt", Some("test.v1.WellKnown"), None)]);
    let properties = &schema(&doc, "test.v1.WellKnown")["properties"];
    let expected = json!({
        "at": {"type": "string", "format": "date-time"},
        "after": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$", "example": "1.5s"},
        "attributes": {"type": "object", "additionalProperties": true},
        "anything": {"nullable": true},
        "list": {"type": "array", "items": {"nullable": true}},
        "nothing": {"type": "object"},
        "packed": {
            "type": "object",
            "required": ["@type"],
            "properties": {"@type": {"type": "string"}},
            "additionalProperties": true,
        },
        "mask": {"type": "string", "example": "name,tenantId"},
        "big": {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
        "small": {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 4_294_967_295_u32},
        "flag": {"type": "boolean"},
        "label": {"type": "string"},
        "blob": {"type": "string", "format": "byte"},
        "ratio": {"type": "number", "format": "double"},
        "history": {"type": "array", "items": {"type": "string", "format": "date-time"}},
    });
    assert_eq!(properties, &expected);
    // No google.protobuf component schemas: all inline.
    assert!(
        !doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
            .any(|name| name.starts_with("google.")),
    );
}

#[test]
fn a_well_known_body_is_inline_too() {
    let doc = document(&[post(
        "ping",
        "/ping",
        Some("google.protobuf.Empty"),
        Some("google.protobuf.Timestamp"),
    )]);
    let operation = &doc["paths"]["/ping"]["post"];
    assert_eq!(
        operation["requestBody"]["content"]["application/json"]["schema"],
        json!({"type": "object"})
    );
    assert_eq!(
        operation["responses"]["200"]["content"]["application/json"]["schema"],
        json!({"type": "string", "format": "date-time"})
    );
}

#[test]
fn sample_values_match_their_schemas() {
    let doc = document(&[
        post("shapes", "/shapes", Some("test.v1.Shapes"), None),
        post("wkt", "/wkt", Some("test.v1.WellKnown"), None),
        post("scalars", "/scalars", Some("test.v1.Scalars"), None),
    ]);
    let samples = [
        (
            "test.v1.Shapes",
            json!({
                "tags": ["a"],
                "colours": ["COLOUR_RED"],
                "counters": {"x": "-9007199254740993"},
                "leaves": {"7": {"id": "l", "inner": {"root": {"children": [{}]}}}},
                "leaf": {"id": "l"},
                "nickname": "",
            }),
        ),
        (
            "test.v1.WellKnown",
            json!({
                "at": "2026-12-05T22:00:00Z",
                "anything": null,
                "list": [1, "two", null],
                "attributes": {"k": [true]},
                "packed": {"@type": "type.googleapis.com/test.v1.Leaf", "id": "x"},
                "big": "18",
            }),
        ),
        (
            "test.v1.Scalars",
            json!({"aUint64": "18446744073709551615", "aInt32": -5, "aBytes": "AAE="}),
        ),
    ];
    for (name, value) in samples {
        check(
            &doc,
            &json!({"$ref": format!("#/components/schemas/{name}")}),
            &value,
            name,
        );
    }
}

#[test]
fn documents_with_every_mapping_parse_as_openapi_3_0() {
    let doc = document(&[
        post("shapes", "/shapes", Some("test.v1.Shapes"), None),
        post(
            "wkt",
            "/wkt",
            Some("test.v1.WellKnown"),
            Some("test.v1.Scalars"),
        ),
    ]);
    let parsed = parse_openapi(&doc);
    assert_eq!(parsed.paths.paths.len(), 2);
    let schemas = parsed.components.expect("components").schemas;
    assert!(schemas.contains_key("test.v1.Shapes"));
}
