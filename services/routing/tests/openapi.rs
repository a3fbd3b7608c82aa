//! The admin API: its OpenAPI document is generated from the route table and published in
//! `docs/openapi/`; rules with optimistic versions, acquirers, take-out and put-back, the
//! dry run and a payment's exchange over HTTP with the operator's token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use routing::routes::{self, ADMIN_ROUTES};
use serde_json::{Value, json};

#[test]
fn the_published_openapi_document_is_current() {
    let document = routes::openapi().expect("the route table documents");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi/routing.json");
    if let Err(error) = mpos_openapi::check_published(&document, &path) {
        panic!("{error}");
    }
    let operations: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(operations.len(), ADMIN_ROUTES.len());
    for route in ADMIN_ROUTES {
        assert!(
            operations.contains(&route.operation_id),
            "{}",
            route.operation_id
        );
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends::sqlite(dir.path());
    let _hsm = Hsm::start(&backends, dir.path()).await;
    let routing = Routing::start(&backends).await;
    let a = sim("{}", None).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: routing.http.clone(),
    };
    use reqwest::Method;
    // Without credentials: 401.
    let anonymous = api
        .http
        .get(format!("{}/v1/tenants/acme/routing-rules", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    for id in ["acq-a", "acq-b"] {
        let (status, body) = api
            .call(
                Method::PUT,
                &format!("/v1/tenants/acme/acquirers/{id}"),
                Some(json!({
                    "address": a.addr().to_string(),
                    "spec": "ascii-1987",
                    "lengthPrefix": "binary2",
                    "acquiringInstitutionId": "12345678",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["settings"]["responseTimeoutMs"],
            json!(5000),
            "defaults filled in"
        );
    }
    let (status, body) = api
        .call(
            Method::PUT,
            "/v1/tenants/acme/acquirers/acq-c",
            Some(json!({"address": "nowhere", "spec": "ascii-1987", "lengthPrefix": "binary2"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = api
        .call(Method::GET, "/v1/tenants/acme/acquirers", None)
        .await;
    assert_eq!(body["acquirers"].as_array().unwrap().len(), 2);

    let rules = serde_json::to_value(common::rules("acq-a", "acq-b")).unwrap();
    let (status, body) = api
        .call(
            Method::PUT,
            "/v1/tenants/acme/routing-rules?expected_version=0",
            Some(rules.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], json!("1"));
    let (status, _) = api
        .call(
            Method::PUT,
            "/v1/tenants/acme/routing-rules?expected_version=0",
            Some(rules),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a stale version");
    let (status, _) = api
        .call(Method::DELETE, "/v1/tenants/acme/acquirers/acq-a", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the rules name it");

    // Take A out: the dry run leaves it out and says why.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/tenants/acme/acquirers/acq-a/take-out?note=maintenance",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["to"], json!("HEALTH_STATE_OPEN"), "{body}");
    assert!(
        body["reason"].as_str().unwrap().starts_with("forced_open"),
        "{body}"
    );
    let dry = serde_json::to_value(decide_request("dry-1", 100)).unwrap();
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/tenants/acme/routing-rules/dry-run",
            Some(dry.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["candidates"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["candidates"][0]["acquirerId"], json!("acq-b"));
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/tenants/acme/acquirers/acq-a/put-back",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = api
        .call(
            Method::POST,
            "/v1/tenants/acme/routing-rules/dry-run",
            Some(dry),
        )
        .await;
    assert_eq!(body["candidates"].as_array().unwrap().len(), 2, "{body}");
    // A dry run records nothing.
    let (status, _) = api
        .call(Method::GET, "/v1/tenants/acme/payments/dry-1/routing", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A routed payment's exchange.
    let client = client(&backends).await;
    let decision = client.decide(&decide_request("h-1", 100)).await.unwrap();
    client
        .authorize(authorize_request("h-1", &decision.decision_id, 100), card())
        .await
        .unwrap();
    let (status, body) = api
        .call(Method::GET, "/v1/tenants/acme/payments/h-1/routing", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decided"]["ruleId"], json!("visa-first"));
    assert_eq!(body["attempts"].as_array().unwrap().len(), 1);
    assert!(!body.to_string().contains(PAN), "no card data");
    let (status, body) = api
        .call(Method::GET, "/v1/tenants/acme/acquirers/acq-a/health", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["requests"], json!(1), "{body}");
    assert_eq!(body["to"], json!("HEALTH_STATE_CLOSED"), "{body}");
    routing.stop().await;
}
