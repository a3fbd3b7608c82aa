//! Paths, parameters, security, errors and route validation.

mod common;

use common::{INFO, descriptors, parse_openapi, post};
use mpos_errors::ErrorCode;
use mpos_openapi::{Auth, Method, OpenApiError, QueryParam, Route, openapi, render};
use serde_json::{Value, json};

const PROTO: &str = r#"
syntax = "proto3";
package test.v1;
message Thing { string id = 1; }
message Things { repeated Thing things = 1; }
"#;

const LIST: Route = Route {
    method: Method::Get,
    path: "/v1/groups/{group_id}/things",
    operation_id: "listThings",
    summary: "List things",
    description: "Newest first.",
    tag: "things",
    request: None,
    response: Some("test.v1.Things"),
    success_status: 200,
    auth: Auth::OperatorOrTenantKey("read_only"),
    query: &[
        QueryParam {
            name: "page_token",
            description: "Where the previous page ended.",
            required: false,
        },
        QueryParam {
            name: "colour",
            description: "",
            required: true,
        },
    ],
    errors: &[404],
};

const CREATE: Route = Route {
    method: Method::Post,
    path: "/v1/groups/{group_id}/things",
    operation_id: "createThing",
    summary: "Create a thing",
    description: "",
    tag: "things",
    request: Some("test.v1.Thing"),
    response: Some("test.v1.Thing"),
    success_status: 201,
    auth: Auth::Operator,
    query: &[],
    errors: &[409],
};

const DELETE: Route = Route {
    method: Method::Delete,
    path: "/v1/groups/{group_id}/things/{*thing_path}",
    operation_id: "deleteThing",
    summary: "Delete a thing",
    description: "",
    tag: "admin",
    request: None,
    response: None,
    success_status: 204,
    auth: Auth::TenantKey("admin"),
    query: &[],
    errors: &[],
};

const HEARTBEAT: Route = Route {
    method: Method::Put,
    path: "/v1/heartbeat",
    operation_id: "heartbeat",
    summary: "Report liveness",
    description: "",
    tag: "devices",
    request: Some("test.v1.Thing"),
    response: None,
    success_status: 202,
    auth: Auth::DeviceMtls,
    query: &[],
    errors: &[503, 504],
};

const HEALTH: Route = Route {
    method: Method::Get,
    path: "/v1/health",
    operation_id: "health",
    summary: "Health",
    description: "",
    tag: "meta",
    request: None,
    response: None,
    success_status: 200,
    auth: Auth::None,
    query: &[],
    errors: &[],
};

const ALL: &[Route] = &[LIST, CREATE, DELETE, HEARTBEAT, HEALTH];

fn document(routes: &[Route]) -> Value {
    openapi(INFO, routes, &descriptors(PROTO)).expect("document")
}

fn statuses(operation: &Value) -> Vec<&str> {
    operation["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn top_level_fields() {
    let doc = document(ALL);
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(
        doc["info"],
        json!({"title": "test API", "version": "0.1.0", "description": "For tests."})
    );
    // Tags sorted and unique.
    assert_eq!(
        doc["tags"],
        json!([{"name": "admin"}, {"name": "devices"}, {"name": "meta"}, {"name": "things"}])
    );
    parse_openapi(&doc);
}

#[test]
fn operations_of_one_path_share_its_item_and_take_path_and_query_parameters() {
    let doc = document(ALL);
    let item = &doc["paths"]["/v1/groups/{group_id}/things"];
    assert_eq!(
        item.as_object().expect("item").keys().collect::<Vec<_>>(),
        ["get", "post"]
    );
    let list = &item["get"];
    assert_eq!(list["operationId"], "listThings");
    assert_eq!(list["summary"], "List things");
    assert_eq!(list["tags"], json!(["things"]));
    assert_eq!(
        list["parameters"],
        json!([
            {"name": "group_id", "in": "path", "required": true, "schema": {"type": "string"}},
            {
                "name": "page_token",
                "in": "query",
                "required": false,
                "description": "Where the previous page ended.",
                "schema": {"type": "string"},
            },
            {"name": "colour", "in": "query", "required": true, "schema": {"type": "string"}},
        ])
    );
    assert!(list.get("requestBody").is_none());
    assert_eq!(
        list["responses"]["200"],
        json!({
            "description": "Success.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/test.v1.Things"}}},
        })
    );
}

#[test]
fn bodies_reference_component_schemas() {
    let doc = document(ALL);
    let create = &doc["paths"]["/v1/groups/{group_id}/things"]["post"];
    assert_eq!(
        create["requestBody"],
        json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/test.v1.Thing"}}},
        })
    );
    assert_eq!(create["responses"]["201"]["description"], "Created.");
    // Without a response message: a description and no content.
    let delete = &doc["paths"]["/v1/groups/{group_id}/things/{thing_path}"]["delete"];
    assert_eq!(
        delete["responses"]["204"],
        json!({"description": "Done; no body."})
    );
    // The axum wildcard is an ordinary path parameter in OpenAPI.
    assert_eq!(delete["parameters"][1]["name"], "thing_path");
}

#[test]
fn error_statuses_are_the_declared_and_the_implied_ones() {
    let doc = document(ALL);
    let paths = &doc["paths"];
    // Query parameters → 400; operator or key → 401, 403; declared 404; always 500.
    assert_eq!(
        statuses(&paths["/v1/groups/{group_id}/things"]["get"]),
        ["200", "400", "401", "403", "404", "500"]
    );
    // Body → 400; operator → 401 (no 403 without a role); declared 409.
    assert_eq!(
        statuses(&paths["/v1/groups/{group_id}/things"]["post"]),
        ["201", "400", "401", "409", "500"]
    );
    assert_eq!(
        statuses(&paths["/v1/groups/{group_id}/things/{thing_path}"]["delete"]),
        ["204", "401", "403", "500"]
    );
    assert_eq!(
        statuses(&paths["/v1/heartbeat"]["put"]),
        ["202", "400", "401", "500", "503", "504"]
    );
    assert_eq!(statuses(&paths["/v1/health"]["get"]), ["200", "500"]);
    assert_eq!(
        paths["/v1/groups/{group_id}/things"]["post"]["responses"]["409"],
        json!({"$ref": "#/components/responses/Error409"})
    );
}

#[test]
fn error_responses_carry_the_shared_error_body() {
    let doc = document(ALL);
    let responses = &doc["components"]["responses"];
    assert_eq!(
        responses
            .as_object()
            .expect("responses")
            .keys()
            .collect::<Vec<_>>(),
        [
            "Error400", "Error401", "Error403", "Error404", "Error409", "Error500", "Error503",
            "Error504"
        ]
    );
    assert_eq!(
        responses["Error409"],
        json!({
            "description": "A shared error with code `already_exists` or `conflict`.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceError"}}},
        })
    );
    let error = &doc["components"]["schemas"]["ServiceError"];
    assert_eq!(error["required"], json!(["code", "message"]));
    let codes: Vec<&str> = ErrorCode::ALL.into_iter().map(ErrorCode::as_str).collect();
    assert_eq!(error["properties"]["code"]["enum"], json!(codes));
    // The schema describes what `ServiceError` really serialises to.
    let body = serde_json::to_value(mpos_errors::ServiceError::conflict("stale")).expect("json");
    common::check(
        &doc,
        &json!({"$ref": "#/components/schemas/ServiceError"}),
        &body,
        "error",
    );
}

#[test]
fn security_follows_the_auth_of_each_route() {
    let doc = document(ALL);
    let paths = &doc["paths"];
    let list = &paths["/v1/groups/{group_id}/things"]["get"];
    assert_eq!(
        list["security"],
        json!([{"operatorToken": []}, {"tenantApiKey": []}])
    );
    assert_eq!(
        list["x-mpos-auth"],
        json!({"kind": "operator_or_tenant_key", "role": "read_only"})
    );
    assert_eq!(
        list["description"],
        "Newest first.\n\n**Authentication:** the platform operator's bearer token, or a tenant \
         API key with role `read_only` or above."
    );
    let create = &paths["/v1/groups/{group_id}/things"]["post"];
    assert_eq!(create["security"], json!([{"operatorToken": []}]));
    let delete = &paths["/v1/groups/{group_id}/things/{thing_path}"]["delete"];
    assert_eq!(delete["security"], json!([{"tenantApiKey": []}]));
    assert_eq!(
        delete["x-mpos-auth"],
        json!({"kind": "tenant_key", "role": "admin"})
    );
    // mTLS has no OpenAPI 3.0 scheme: said in words and in the extension.
    let heartbeat = &paths["/v1/heartbeat"]["put"];
    assert_eq!(heartbeat["security"], json!([]));
    assert_eq!(heartbeat["x-mpos-auth"], json!({"kind": "device_mtls"}));
    assert!(
        heartbeat["description"]
            .as_str()
            .expect("description")
            .contains("mutual-TLS client certificate")
    );
    let health = &paths["/v1/health"]["get"];
    assert_eq!(health["security"], json!([]));
    assert_eq!(health["x-mpos-auth"], json!({"kind": "none"}));
    assert_eq!(
        doc["components"]["securitySchemes"]
            .as_object()
            .expect("schemes")
            .keys()
            .collect::<Vec<_>>(),
        ["operatorToken", "tenantApiKey"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["operatorToken"]["scheme"],
        "bearer"
    );
}

#[test]
fn only_used_security_schemes_are_declared() {
    let doc = document(&[HEALTH, HEARTBEAT]);
    assert!(doc["components"].get("securitySchemes").is_none());
    parse_openapi(&doc);
}

#[test]
fn the_document_is_deterministic_and_sorted() {
    let first = render(&document(ALL));
    let reversed: Vec<Route> = ALL.iter().rev().copied().collect();
    let second = render(&document(&reversed));
    assert_eq!(first, second, "route order does not matter");
    assert!(first.ends_with("}\n"));
    fn assert_sorted(value: &Value) {
        match value {
            Value::Object(object) => {
                let keys: Vec<&String> = object.keys().collect();
                let mut sorted = keys.clone();
                sorted.sort();
                assert_eq!(keys, sorted);
                object.values().for_each(assert_sorted);
            }
            Value::Array(items) => items.iter().for_each(assert_sorted),
            _ => {}
        }
    }
    let reparsed: Value = serde_json::from_str(&first).expect("json");
    assert_sorted(&reparsed);
}

#[test]
fn an_unknown_message_names_the_route() {
    let routes = [post("makeWidget", "/widgets", Some("test.v1.Widget"), None)];
    let error = openapi(INFO, &routes, &descriptors(PROTO)).expect_err("unknown message");
    assert!(
        matches!(
            error,
            OpenApiError::UnknownMessage {
                operation_id: "makeWidget",
                body: "request",
                name: "test.v1.Widget",
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "route makeWidget: request message \"test.v1.Widget\" is not in the protobuf descriptors"
    );
    let routes = [post("makeThing", "/things", None, Some(".test.v1.Thing"))];
    assert_eq!(
        invalid_reason(&routes),
        "response: write the full message name without a leading dot"
    );
}

#[test]
fn broken_descriptors_are_an_error() {
    let error = openapi(INFO, &[], b"\xff\xff").expect_err("garbage");
    assert!(matches!(error, OpenApiError::Descriptors(_)), "{error:?}");
}

fn invalid_reason(routes: &[Route]) -> String {
    match openapi(INFO, routes, &descriptors(PROTO)) {
        Err(OpenApiError::InvalidRoute { reason, .. }) => reason,
        other => panic!("expected an invalid route, got {other:?}"),
    }
}

#[test]
fn inconsistent_routes_are_rejected_with_the_reason() {
    let get_with_body = Route {
        request: Some("test.v1.Thing"),
        ..LIST
    };
    assert_eq!(
        invalid_reason(&[get_with_body]),
        "request: a GET request has no body"
    );

    let no_content_with_body = Route {
        success_status: 204,
        ..CREATE
    };
    assert_eq!(
        invalid_reason(&[no_content_with_body]),
        "success_status 204 (no content) with a response body"
    );
    let not_success = Route {
        success_status: 302,
        ..CREATE
    };
    assert_eq!(
        invalid_reason(&[not_success]),
        "success_status 302 is not a 2xx status"
    );

    let teapot = Route {
        errors: &[418],
        ..CREATE
    };
    assert_eq!(
        invalid_reason(&[teapot]),
        "errors: 418 is not the HTTP status of any shared error code"
    );

    for (path, reason) in [
        ("v1/things", "path: must start with '/'"),
        ("/v1/things?x=1", "path: must not hold a query or fragment"),
        ("/v1/{a}/{a}", "path: parameter \"a\" appears twice"),
        (
            "/v1/x{a}",
            "path: segment \"x{a}\": a parameter must be a whole segment",
        ),
        (
            "/v1/{*a}/b",
            "path: segment \"{*a}\": a wildcard must come last",
        ),
        ("/v1/{1a}", "path: segment \"{1a}\": invalid parameter name"),
        ("/v1/{}", "path: segment \"{}\": invalid parameter name"),
    ] {
        let route = Route { path, ..CREATE };
        assert_eq!(invalid_reason(&[route]), reason, "{path}");
    }

    let shadowing = Route {
        query: &[QueryParam {
            name: "group_id",
            description: "",
            required: false,
        }],
        ..LIST
    };
    assert_eq!(
        invalid_reason(&[shadowing]),
        "query: parameter \"group_id\" is also a path parameter"
    );
    let twice = Route {
        query: &[
            QueryParam {
                name: "q",
                description: "",
                required: false,
            },
            QueryParam {
                name: "q",
                description: "",
                required: true,
            },
        ],
        ..LIST
    };
    assert_eq!(
        invalid_reason(&[twice]),
        "query: parameter \"q\" is declared twice"
    );

    for (field, route) in [
        (
            "operation_id",
            Route {
                operation_id: "list things",
                ..LIST
            },
        ),
        (
            "summary",
            Route {
                summary: "",
                ..LIST
            },
        ),
        ("tag", Route { tag: "", ..LIST }),
    ] {
        assert!(invalid_reason(&[route]).starts_with(field), "{field}");
    }
}

#[test]
fn duplicate_operations_and_endpoints_are_rejected() {
    let same_id = Route {
        path: "/v2/things",
        ..CREATE
    };
    assert!(matches!(
        openapi(INFO, &[CREATE, same_id], &descriptors(PROTO)),
        Err(OpenApiError::DuplicateOperationId {
            operation_id: "createThing"
        })
    ));
    let same_endpoint = Route {
        operation_id: "createThing2",
        ..CREATE
    };
    let error = openapi(INFO, &[CREATE, same_endpoint], &descriptors(PROTO))
        .expect_err("same method and path");
    assert_eq!(
        error.to_string(),
        "routes createThing and createThing2 both answer POST /v1/groups/{group_id}/things"
    );
    // Another spelling of the same path is the same path, to axum and to OpenAPI.
    let respelled = Route {
        path: "/v1/groups/{id}/things",
        operation_id: "putThing",
        method: Method::Put,
        ..CREATE
    };
    let reason = invalid_reason(&[CREATE, respelled]);
    assert_eq!(
        reason,
        "path: same as /v1/groups/{group_id}/things of createThing but for parameter names"
    );
}
