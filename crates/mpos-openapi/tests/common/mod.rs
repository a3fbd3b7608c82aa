//! Shared test helpers: descriptors compiled from inline proto source, and a small JSON
//! checker for the OpenAPI 3.0 schema subset the generator emits.

#![allow(dead_code, unreachable_pub)]

use mpos_openapi::{ApiInfo, Auth, Method, Route};
use serde_json::Value;

pub const INFO: ApiInfo = ApiInfo {
    title: "test API",
    version: "0.1.0",
    description: "For tests.",
};

/// The encoded `FileDescriptorSet` (with imports and source info, as `mpos-proto` builds
/// it) of one inline proto file.
pub fn descriptors(source: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("test.proto"), source).expect("write proto");
    protox::Compiler::new([dir.path()])
        .expect("compiler")
        .include_imports(true)
        .include_source_info(true)
        .open_file("test.proto")
        .expect("compile")
        .encode_file_descriptor_set()
}

/// A POST route with the given bodies.
pub const fn post(
    operation_id: &'static str,
    path: &'static str,
    request: Option<&'static str>,
    response: Option<&'static str>,
) -> Route {
    Route {
        method: Method::Post,
        path,
        operation_id,
        summary: "Do it",
        description: "",
        tag: "things",
        request,
        response,
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[],
    }
}

/// Follows a `#/components/schemas/...` reference.
pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .expect("component reference");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Checks `value` against `schema` for the keywords the generator emits; panics with the
/// JSON path of the first mismatch.
pub fn check(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    assert!(!schema.is_null(), "{at}: dangling reference");
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check(doc, part, value, at);
        }
        return;
    }
    if value.is_null() {
        assert_eq!(schema["nullable"], true, "{at}: null where not nullable");
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        assert!(allowed.contains(value), "{at}: {value} not in {allowed:?}");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => {
            let text = value
                .as_str()
                .unwrap_or_else(|| panic!("{at}: not a string: {value}"));
            match schema.get("format").and_then(Value::as_str) {
                Some("int64") => assert!(text.parse::<i64>().is_ok(), "{at}: {text}"),
                Some("uint64") => assert!(text.parse::<u64>().is_ok(), "{at}: {text}"),
                // RFC 3339 `date-time`; pbjson-types writes a `+00:00` offset, not `Z`.
                Some("date-time") => assert!(
                    text.len() >= 20
                        && text.as_bytes()[10] == b'T'
                        && (text.ends_with('Z') || text.ends_with("+00:00")),
                    "{at}: not RFC 3339: {text}"
                ),
                _ => {}
            }
        }
        Some("integer") => assert!(value.is_i64() || value.is_u64(), "{at}: {value}"),
        Some("number") => assert!(value.is_number(), "{at}: {value}"),
        Some("boolean") => assert!(value.is_boolean(), "{at}: {value}"),
        Some("array") => {
            let items = value
                .as_array()
                .unwrap_or_else(|| panic!("{at}: not an array"));
            for (index, item) in items.iter().enumerate() {
                check(doc, &schema["items"], item, &format!("{at}[{index}]"));
            }
        }
        Some("object") => {
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("{at}: not an object"));
            for (key, inner) in object {
                let property = schema
                    .get("properties")
                    .and_then(|properties| properties.get(key));
                match (property, schema.get("additionalProperties")) {
                    (Some(property), _) => check(doc, property, inner, &format!("{at}.{key}")),
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(additional)) if additional.is_object() => {
                        check(doc, additional, inner, &format!("{at}.{key}"));
                    }
                    _ => panic!("{at}: property {key:?} is not in the schema"),
                }
            }
        }
        Some(other) => panic!("{at}: unexpected type {other}"),
        None => {}
    }
}

/// Parses the document with the `openapiv3` crate, as OpenAPI 3.0.
pub fn parse_openapi(doc: &Value) -> openapiv3::OpenAPI {
    let parsed: openapiv3::OpenAPI =
        serde_json::from_value(doc.clone()).expect("document parses as OpenAPI 3.0");
    assert_eq!(parsed.openapi, "3.0.3");
    parsed
}
