//! Bodies that are not protobuf JSON: raw uploads and alternative response encodings.

mod common;

use common::{INFO, descriptors, parse_openapi, post};
use mpos_openapi::{Method, OpenApiError, RawBody, Route, RouteMedia, openapi, openapi_with_media};
use serde_json::json;

const PROTO: &str = r#"
syntax = "proto3";
package test.v1;
message Thing { string id = 1; }
message Things { repeated Thing things = 1; }
"#;

const IMPORT: Route = post(
    "importThings",
    "/v1/thing-imports",
    None,
    Some("test.v1.Things"),
);

const GET: Route = Route {
    method: Method::Get,
    ..post("getThing", "/v1/things/{id}", None, Some("test.v1.Thing"))
};

const MEDIA: &[RouteMedia] = &[
    RouteMedia {
        operation_id: "importThings",
        raw_request: &[
            RawBody {
                content_type: "text/csv",
                description: "A header row `id`, then one id a row.",
            },
            RawBody {
                content_type: "application/json",
                description: "An array of ids.",
            },
        ],
        response_alternatives: &[],
    },
    RouteMedia {
        operation_id: "getThing",
        raw_request: &[],
        response_alternatives: &[RawBody {
            content_type: "application/x-protobuf",
            description: "The binary protobuf encoding of `test.v1.Thing`.",
        }],
    },
];

#[test]
fn a_raw_request_body_is_documented_by_media_type() {
    let doc = openapi_with_media(INFO, &[IMPORT, GET], MEDIA, &descriptors(PROTO)).expect("doc");
    let body = &doc["paths"]["/v1/thing-imports"]["post"]["requestBody"];
    assert_eq!(body["required"], json!(true));
    assert_eq!(
        body["content"]["text/csv"]["schema"],
        json!({ "type": "string" })
    );
    assert_eq!(body["content"]["application/json"]["schema"], json!({}));
    let description = body["description"].as_str().expect("description");
    assert!(
        description.contains("- `text/csv`: A header row"),
        "{description}"
    );
    assert!(
        description.contains("- `application/json`: An array"),
        "{description}"
    );
    // A raw body can be malformed: 400 is implied as for a message body.
    assert!(
        doc["paths"]["/v1/thing-imports"]["post"]["responses"]
            .get("400")
            .is_some()
    );
    parse_openapi(&doc);
}

#[test]
fn a_response_alternative_sits_beside_the_json_body() {
    let doc = openapi_with_media(INFO, &[IMPORT, GET], MEDIA, &descriptors(PROTO)).expect("doc");
    let success = &doc["paths"]["/v1/things/{id}"]["get"]["responses"]["200"];
    assert_eq!(
        success["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/test.v1.Thing")
    );
    assert_eq!(
        success["content"]["application/x-protobuf"]["schema"],
        json!({ "type": "string", "format": "binary" })
    );
    let description = success["description"].as_str().expect("description");
    assert!(description.contains("`Accept`"), "{description}");
    // No request body and no query: no implied 400.
    assert!(
        doc["paths"]["/v1/things/{id}"]["get"]["responses"]
            .get("400")
            .is_none()
    );
}

#[test]
fn without_media_the_document_is_the_plain_one() {
    let descriptors = descriptors(PROTO);
    assert_eq!(
        openapi_with_media(INFO, &[IMPORT, GET], &[], &descriptors).expect("with"),
        openapi(INFO, &[IMPORT, GET], &descriptors).expect("plain")
    );
}

#[test]
fn inconsistent_media_is_refused() {
    let descriptors = descriptors(PROTO);
    let unknown = [RouteMedia {
        operation_id: "nope",
        ..MEDIA[0]
    }];
    assert!(matches!(
        openapi_with_media(INFO, &[IMPORT, GET], &unknown, &descriptors),
        Err(OpenApiError::UnknownMediaOperation {
            operation_id: "nope"
        })
    ));

    let with_message = post(
        "importThings",
        "/v1/thing-imports",
        Some("test.v1.Things"),
        None,
    );
    let error = openapi_with_media(INFO, &[with_message], &MEDIA[..1], &descriptors)
        .expect_err("raw and message body");
    assert!(
        error
            .to_string()
            .contains("raw request body and a protobuf"),
        "{error}"
    );

    let raw_on_get = [RouteMedia {
        operation_id: "getThing",
        ..MEDIA[0]
    }];
    let error = openapi_with_media(INFO, &[GET], &raw_on_get, &descriptors).expect_err("GET body");
    assert!(
        error.to_string().contains("GET request has no body"),
        "{error}"
    );

    let no_response = post("importThings", "/v1/thing-imports", None, None);
    let alternative = [RouteMedia {
        operation_id: "importThings",
        ..MEDIA[1]
    }];
    let error = openapi_with_media(INFO, &[no_response], &alternative, &descriptors)
        .expect_err("no message");
    assert!(
        error.to_string().contains("without a response message"),
        "{error}"
    );

    let json_again = [RouteMedia {
        operation_id: "getThing",
        raw_request: &[],
        response_alternatives: &[RawBody {
            content_type: "application/json",
            description: "",
        }],
    }];
    assert!(openapi_with_media(INFO, &[GET], &json_again, &descriptors).is_err());

    let twice = [MEDIA[0], MEDIA[0]];
    let error = openapi_with_media(INFO, &[IMPORT], &twice, &descriptors).expect_err("twice");
    assert!(error.to_string().contains("declared twice"), "{error}");

    let not_a_type = [RouteMedia {
        operation_id: "importThings",
        raw_request: &[RawBody {
            content_type: "csv",
            description: "",
        }],
        response_alternatives: &[],
    }];
    let error = openapi_with_media(INFO, &[IMPORT], &not_a_type, &descriptors).expect_err("type");
    assert!(error.to_string().contains("is not a media type"), "{error}");
}
