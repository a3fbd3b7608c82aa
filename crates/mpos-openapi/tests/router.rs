//! Routers built from the route table, and the document handler.

#![cfg(feature = "axum")]

use axum::body::{Body, to_bytes};
use axum::extract::Path;
use axum::http::{Request, StatusCode, header};
use axum::routing::on;
use mpos_openapi::{
    ApiRouter, Auth, Method, OPENAPI_PATH, OpenApiError, Route, RouterError, serve_document,
};
use serde_json::json;
use tower::ServiceExt;

const fn route(method: Method, path: &'static str, operation_id: &'static str) -> Route {
    Route {
        method,
        path,
        operation_id,
        summary: "Test",
        description: "",
        tag: "test",
        request: None,
        response: None,
        success_status: 200,
        auth: Auth::None,
        query: &[],
        errors: &[],
    }
}

const ROUTES: &[Route] = &[
    route(Method::Get, "/v1/things/{id}", "getThing"),
    route(Method::Delete, "/v1/things/{id}", "deleteThing"),
    route(Method::Patch, "/v1/things/{id}/rest/{*rest}", "patchRest"),
];

async fn call(router: &axum::Router, method: &str, uri: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

fn full_router() -> axum::Router {
    ApiRouter::new(ROUTES)
        .expect("valid table")
        .handle("getThing", |Path(id): Path<String>| async move {
            format!("got {id}")
        })
        .expect("bind")
        .handle("deleteThing", |Path(id): Path<String>| async move {
            format!("deleted {id}")
        })
        .expect("bind")
        .handle_with("patchRest", |method| {
            on(
                method.filter(),
                |Path((id, rest)): Path<(String, String)>| async move {
                    format!("patched {id} at {rest}")
                },
            )
        })
        .expect("bind")
        .finish()
        .expect("complete")
}

#[tokio::test]
async fn each_route_answers_its_method_at_its_path() {
    let router = full_router();
    assert_eq!(
        call(&router, "GET", "/v1/things/7").await,
        (StatusCode::OK, "got 7".to_owned())
    );
    assert_eq!(
        call(&router, "DELETE", "/v1/things/7").await,
        (StatusCode::OK, "deleted 7".to_owned())
    );
    assert_eq!(
        call(&router, "PATCH", "/v1/things/7/rest/a/b").await,
        (StatusCode::OK, "patched 7 at a/b".to_owned())
    );
    // Nothing else: no method or path outside the table.
    assert_eq!(
        call(&router, "POST", "/v1/things/7").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&router, "GET", "/v1/other").await.0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn a_route_without_a_handler_fails_the_build() {
    let error = ApiRouter::<()>::new(ROUTES)
        .expect("valid table")
        .handle("getThing", || async { "x" })
        .expect("bind")
        .finish()
        .expect_err("two unbound");
    assert!(
        matches!(&error, RouterError::Unbound { operation_ids } if operation_ids == &["deleteThing", "patchRest"]),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "operations without a handler: deleteThing, patchRest"
    );
}

#[test]
fn a_handler_without_a_route_or_bound_twice_is_refused() {
    let builder = ApiRouter::<()>::new(ROUTES).expect("valid table");
    let error = builder
        .handle("getThings", || async { "x" })
        .expect_err("no such operation");
    assert!(
        matches!(&error, RouterError::UnknownOperation { operation_id } if operation_id == "getThings"),
        "{error:?}"
    );
    let error = ApiRouter::<()>::new(ROUTES)
        .expect("valid table")
        .handle("getThing", || async { "x" })
        .expect("bind")
        .handle("getThing", || async { "y" })
        .expect_err("twice");
    assert!(
        matches!(
            error,
            RouterError::AlreadyBound {
                operation_id: "getThing"
            }
        ),
        "{error:?}"
    );
}

#[test]
fn an_invalid_table_builds_no_router() {
    static CLASH: &[Route] = &[
        route(Method::Get, "/v1/things/{id}", "a"),
        route(Method::Post, "/v1/things/{thing_id}", "b"),
    ];
    let error = ApiRouter::<()>::new(CLASH).expect_err("conflicting spellings");
    assert!(
        matches!(
            error,
            RouterError::Routes(OpenApiError::InvalidRoute {
                operation_id: "b",
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_document_is_served_as_json() {
    let doc = json!({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}});
    let router: axum::Router = full_router().route(OPENAPI_PATH, serve_document(&doc));
    let request = Request::builder()
        .uri("/openapi.json")
        .body(Body::empty())
        .expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let served: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(served, doc);
}
