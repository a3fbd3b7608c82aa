//! The OpenAPI document: generated from the route tables the routers are built from,
//! published in `docs/openapi/`, served at `GET /openapi.json`, and every route it documents
//! answered by a handler.

mod common;

use common::pki::TestCa;
use common::{TOKEN, TestService, embedded};
use mpos_openapi::Route;
use serde_json::{Value, json};
use terminal_management::api::routes::{self, ADMIN_ROUTES, DEVICE_ROUTES};

fn document() -> Value {
    routes::openapi().expect("the route tables document")
}

#[test]
fn the_published_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/openapi/terminal-management.json");
    if let Err(error) = mpos_openapi::check_published(&document(), &path) {
        panic!("{error}");
    }
}

#[test]
fn the_document_has_every_route_of_both_apis() {
    let doc = document();
    let operations: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .map(|operation| operation["operationId"].as_str().expect("operation id"))
        .collect();
    for route in ADMIN_ROUTES {
        assert!(
            operations.contains(&route.operation_id),
            "{}",
            route.operation_id
        );
    }
    // The signing key is on both listeners and documented once, on the admin API.
    for route in DEVICE_ROUTES {
        let documented = operations.contains(&route.operation_id);
        assert_eq!(
            documented,
            route.path != "/v1/parameter-signing-key",
            "{}",
            route.operation_id
        );
    }
    assert_eq!(
        operations.len(),
        ADMIN_ROUTES.len() + DEVICE_ROUTES.len() - 1
    );

    // The special bodies.
    let import = &doc["paths"]["/v1/tenants/{tenant_id}/terminal-imports"]["post"];
    let content = import["requestBody"]["content"]
        .as_object()
        .expect("content");
    assert_eq!(
        content.keys().collect::<Vec<_>>(),
        ["application/json", "text/csv"]
    );
    assert_eq!(import["parameters"][1]["name"], json!("parent"));
    assert_eq!(import["parameters"][1]["required"], json!(true));
    let download = &doc["paths"]["/v1/devices/{terminal_id}/parameters"]["get"];
    let answers = download["responses"]["200"]["content"]
        .as_object()
        .expect("content");
    assert_eq!(
        answers.keys().collect::<Vec<_>>(),
        ["application/json", "application/x-protobuf"]
    );
    assert_eq!(download["x-mpos-auth"], json!({"kind": "device_mtls"}));
    assert_eq!(download["tags"], json!(["Devices"]));
    // Operator-only routes name the 403 a tenant key gets.
    let create = &doc["paths"]["/v1/tenants"]["post"];
    assert!(create["responses"].get("403").is_some());
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/mpos.terminal_management.v1.Tenant")
    );
}

#[tokio::test]
async fn the_service_serves_the_document_without_credentials() {
    let service = embedded().await;
    let response = service
        .client
        .get(service.url("/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("application/json")
    );
    let served: Value = response.json().await.expect("json");
    assert_eq!(served, document());
    let parsed: openapiv3::OpenAPI = serde_json::from_value(served).expect("parses as OpenAPI 3.0");
    assert_eq!(parsed.openapi, "3.0.3");
    assert_eq!(parsed.info.title, routes::INFO.title);
    service.stop().await;
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    route: &Route,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = client.request(
        route.method.http(),
        format!("{base}{}", route.example_path("x-1")),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if route.method.allows_body() {
        request = request.json(&json!({}));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn is_fallback(status: u16, body: &Value) -> bool {
    status == 404 && body["message"] == json!("no such route")
}

#[tokio::test]
async fn every_documented_route_has_a_handler() {
    let service: TestService = embedded().await;
    // The fallback itself, for reference.
    let (status, body) = service
        .call_as(
            TOKEN,
            reqwest::Method::POST,
            "/v1/tenants/x-1/terminals/x-1/explode",
            Some(json!({})),
        )
        .await;
    assert!(is_fallback(status, &body), "{status} {body}");

    for route in ADMIN_ROUTES {
        let (status, body) = call(&service.client, &service.base, route, Some(TOKEN)).await;
        assert!(
            !is_fallback(status, &body),
            "{} {} is not routed",
            route.method.as_str(),
            route.path
        );
        // And every admin route is behind authentication.
        let (status, body) = call(&service.client, &service.base, route, None).await;
        assert_eq!(
            status,
            401,
            "{} {}: {body}",
            route.method.as_str(),
            route.path
        );
    }

    // The device API, with a verified (but unbound) device certificate.
    let vendor = TestCa::new("Vendor O Device CA");
    let (status, body) = service
        .post(
            "/v1/manufacturer-cas",
            json!({"name": "Vendor O", "certificatePem": vendor.pem}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let device = vendor.device(&[0x0C, 0x01]).client();
    let (status, body) = call(
        &device,
        &service.device_base,
        &Route {
            path: "/v1/devices/nothing-here",
            ..DEVICE_ROUTES[0]
        },
        None,
    )
    .await;
    assert!(is_fallback(status, &body), "{status} {body}");
    for route in DEVICE_ROUTES {
        let (status, body) = call(&device, &service.device_base, route, None).await;
        assert!(
            !is_fallback(status, &body),
            "{} {} is not routed on the device API",
            route.method.as_str(),
            route.path
        );
    }
    service.stop().await;
}
