//! The payment API's OpenAPI document is generated from the route tables and published in
//! `docs/openapi/authorization.json` (run with `MPOS_UPDATE_OPENAPI=1` to rewrite it after an
//! API change); every route of the tables is in it, and the routers are built from the same
//! tables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use authorization::routes::{self, ADMIN_ROUTES, DEVICE_ROUTES};

#[test]
fn the_published_openapi_document_is_current_and_complete() {
    let document = routes::openapi().expect("the route tables document");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/openapi/authorization.json");
    if let Err(error) = mpos_openapi::check_published(&document, &path) {
        panic!("{error}");
    }
    let operations: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    assert_eq!(operations.len(), DEVICE_ROUTES.len() + ADMIN_ROUTES.len());
    for route in DEVICE_ROUTES.iter().chain(ADMIN_ROUTES) {
        assert!(
            operations.contains(&route.operation_id),
            "{}",
            route.operation_id
        );
    }
    // The request and answer bodies are the protobuf messages, by their JSON names.
    let text = document.to_string();
    for field in [
        "idempotencyKey",
        "encryptedCardData",
        "declineReason",
        "issuerEmvData",
    ] {
        assert!(text.contains(field), "{field} missing from the document");
    }
}
